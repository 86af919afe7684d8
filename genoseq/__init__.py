"""genoseq: DNA language models at single-nucleotide resolution.

Importing ``genoseq`` is cheap (no torch); heavy parts load when first used.
"""

from genoseq.errors import InputError
from genoseq.tokenizer import Tokenizer

__version__ = "0.1.0"

__all__ = ["InputError", "Tokenizer", "__version__", "default_genome", "load"]


def load(path, device: str = "auto"):
    """Load a model folder for use from Python: ``genoseq.load("runs/x/model").score("ACGT...")``.

    Returns a :class:`genoseq.tasks.pretrained.LanguageModel`, ``Classifier`` or ``Aligner``
    (see :mod:`genoseq.tasks.pretrained`). The entry point only: the library loads on first call.
    """
    from genoseq.tasks.pretrained import load as load_pretrained

    return load_pretrained(path, device=device)


def default_genome() -> str:
    """Path of the bundled default genome (phage lambda, NC_001416.1, 48,502 bp)."""
    from importlib.resources import files

    return str(files("genoseq.data") / "lambda_phage.fa")
