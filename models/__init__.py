"""Blocks, the hybrid backbone, the language model and long-sequence inference.

Imports are lazy: ``import genoseq.models.config`` (the CLI does) loads no torch; the torch
modules load when one of their names is first used, e.g. ``from genoseq.models import GenoSeqLM``.
"""

from __future__ import annotations

from genoseq._lazy import lazy_getattr

_EXPORTS = {
    "ModelConfig": "config",
    "OptimConfig": "config",
    "TrainingConfig": "config",
    "Backbone": "backbone",
    "InferenceCache": "backbone",
    "GenoSeqLM": "lm",
    "StripedHyenaLM": "striped_hyena",
    "token_log_probs": "inference",
    "sequence_log_likelihood": "inference",
    "generate": "inference",
    "SequenceScores": "inference",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
