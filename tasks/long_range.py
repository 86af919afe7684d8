"""What long context buys, measured on real DNA: recall of a copied segment and bits/base by context.

* :func:`copy_recall`: a real segment (``segment`` bases, after ``prefix`` bases of its own
  context) is followed by the ``D`` bases that really follow it in the genome and then by a
  copy of itself. A model that reaches ``D + segment`` bases back and uses what it sees predicts
  the copy far better than the first occurrence; one that does not scores both alike (about
  1.9 bits/base for bacterial DNA).
* :func:`context_curve`: the same ``target`` bases of a genome scored with ``c`` bases of
  context before them, for each ``c``: bits/base against context length.

Each construct is scored in one forward pass (so nothing is cut into windows) in inference
mode; ``attention_window`` limits attention layers to a sliding window (see
:func:`genoseq.models.inference.limit_attention`) for models trained on shorter windows.
Positions are drawn at random (``seed``) where no N falls in what is scored.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from genoseq.errors import InputError
from genoseq.tokenizer import N

LN2 = math.log(2.0)


@dataclass(frozen=True)
class RecallPoint:
    """Bits/base of a segment's first occurrence and of its copy ``distance`` bases after it."""

    distance: int
    first_bits_per_base: float
    copy_bits_per_base: float
    trials: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ContextPoint:
    """Bits/base of the target bases with ``context`` bases before them."""

    context: int
    bits_per_base: float
    windows: int

    def to_dict(self) -> dict:
        return asdict(self)


def _positions(genome, before: int, after: int, count: int, seed: int) -> list[tuple[str, int]]:
    """``count`` random ``(contig, p)`` with ``before`` bases before ``p`` and ``after`` from it, no N in them."""
    contigs = [(name, n) for name, n in genome.contigs.items() if n >= before + after]
    if not contigs:
        longest = max(genome.contigs.values(), default=0)
        raise InputError(f"no contig holds {before + after} bases (the longest has {longest}); "
                         "use shorter distances or contexts", field="genome")
    rng = np.random.default_rng(seed)
    weights = np.array([n - before - after + 1 for _, n in contigs], dtype=float)
    found: list[tuple[str, int]] = []
    for _ in range(100 * count):
        name, length = contigs[rng.choice(len(contigs), p=weights / weights.sum())]
        p = int(rng.integers(before, length - after + 1))
        if not (genome.fetch(name, p - before, p + after) == N).any():
            found.append((name, p))
            if len(found) == count:
                return found
    raise InputError(f"found only {len(found)} of {count} stretches of {before + after} bases without N", field="genome")


def _log_probs(model, ids: np.ndarray, device) -> np.ndarray:
    from genoseq.models.inference import token_log_probs

    return token_log_probs(model, ids.astype(np.int64), chunk_size=len(ids), context=0, batch_size=1,
                           device=device).numpy()


def _bits(log_probs: np.ndarray, start: int, end: int) -> float:
    """Mean bits/base of targets ``start .. end - 1`` (``log_probs[t - 1]`` is target ``t``)."""
    return float(-log_probs[start - 1 : end - 1].mean() / LN2)


def copy_recall(model, genome, distances: Sequence[int], *, segment: int = 500, prefix: int = 1000,
                trials: int = 8, seed: int = 0, attention_window: int | None = None, device=None,
                on_progress: Callable[[int], None] | None = None) -> list[RecallPoint]:
    """Recall of a copied real segment at each distance (see the module docstring).

    Each trial draws one segment; every distance uses it, so the first occurrence is the same
    across distances. ``on_progress(n)`` gets the tokens of each construct scored.
    """
    from genoseq.models.inference import limit_attention

    distances = sorted(int(d) for d in distances)
    if segment < 1 or prefix < 1 or trials < 1 or not distances or distances[0] < 0:
        raise InputError("segment, prefix and trials must be positive and distances non-negative", field="distances")
    sites = _positions(genome, prefix, segment + distances[-1], trials, seed)
    first = {d: [] for d in distances}
    copy = {d: [] for d in distances}
    with limit_attention(model, attention_window):
        for name, p in sites:
            for d in distances:
                ids = np.concatenate([genome.fetch(name, p - prefix, p + segment + d), genome.fetch(name, p, p + segment)])
                lp = _log_probs(model, ids, device)
                first[d].append(_bits(lp, prefix, prefix + segment))
                copy[d].append(_bits(lp, len(ids) - segment, len(ids)))
                if on_progress is not None:
                    on_progress(len(ids))
    return [RecallPoint(d, float(np.mean(first[d])), float(np.mean(copy[d])), trials) for d in distances]


def context_curve(model, genome, contexts: Sequence[int], *, target: int = 1000, windows: int = 8, seed: int = 0,
                  attention_window: int | None = None, device=None,
                  on_progress: Callable[[int], None] | None = None) -> list[ContextPoint]:
    """Bits/base of the same ``target`` bases with each context length before them."""
    from genoseq.models.inference import limit_attention

    contexts = sorted(int(c) for c in contexts)
    if target < 1 or windows < 1 or not contexts or contexts[0] < 1:
        raise InputError("target and windows must be positive and contexts >= 1", field="contexts")
    sites = _positions(genome, contexts[-1], target, windows, seed)
    bits = {c: [] for c in contexts}
    with limit_attention(model, attention_window):
        for name, p in sites:
            for c in contexts:
                lp = _log_probs(model, genome.fetch(name, p - c, p + target), device)
                bits[c].append(_bits(lp, c, c + target))
                if on_progress is not None:
                    on_progress(c + target)
    return [ContextPoint(c, float(np.mean(bits[c])), windows) for c in contexts]


__all__ = ["ContextPoint", "RecallPoint", "context_curve", "copy_recall"]
