"""genoseq: DNA language models at single-nucleotide resolution.

Importing ``genoseq`` is cheap (no torch); heavy parts load when first used.
"""

from genoseq.errors import InputError
from genoseq.tokenizer import Tokenizer

__version__ = "0.1.0"

__all__ = ["InputError", "Tokenizer", "__version__", "default_genome"]


def default_genome() -> str:
    """Path of the bundled default genome (phage lambda, NC_001416.1, 48,502 bp)."""
    from importlib.resources import files

    return str(files("genoseq.data") / "lambda_phage.fa")
