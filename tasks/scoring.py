"""Log-likelihood and bits per base of sequences under a language model.

Position 1 of a sequence has no context and is not scored; N bases are never scored. Long
sequences are scored with bounded memory by :func:`genoseq.models.inference.token_log_probs`
(a pure-Mamba2 model streams its state exactly; other models use overlapping windows of
``chunk_size`` tokens in which every scored base sees at least ``context`` previous bases).
Many short sequences of one length run as one batch (:func:`log_probs_many`), with the same
result to float rounding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence



@dataclass(frozen=True)
class SequenceScore:
    """The score of one sequence: log-likelihood in nats, summed over its scored bases."""

    name: str
    length: int
    scored_bases: int
    log_likelihood: float
    bits_per_base: float  # NaN when nothing was scored

    def to_dict(self) -> dict:
        return asdict(self)


def scored_targets(ids):
    """Mask (L-1,) of the targets ``ids[1:]`` that are scored: A, C, G and T (never N).

    ``token_log_probs`` returns ``log P(x_t | x_<t)`` for ``t = 1 .. L-1``; position 1 (t = 0)
    has no context and is never among them.
    """
    from genoseq.tokenizer import A, T

    targets = ids[1:]
    return (targets >= A) & (targets <= T)


def summarize_log_probs(ids, log_probs) -> tuple[float, int]:
    """Log-likelihood (nats, summed in float64) and number of scored bases of one sequence."""
    scored = scored_targets(ids)
    return float(log_probs[scored].double().sum()), int(scored.sum())


def bits_per_base(log_likelihood: float, scored_bases: int) -> float:
    """``-log_likelihood / scored_bases`` in bits (NaN when nothing was scored)."""
    return -log_likelihood / scored_bases / math.log(2) if scored_bases else math.nan


def summarize(name: str, ids, log_probs) -> SequenceScore:
    """The :class:`SequenceScore` of token ids ``ids`` (L,) from their ``log_probs`` (L-1,)."""
    ll, n = summarize_log_probs(ids, log_probs)
    return SequenceScore(name, len(ids), n, ll, bits_per_base(ll, n))


def per_base_log_probs(ids, log_probs) -> list[float | None]:
    """``log P(x_t | x_<t)`` of every position (L,): None for position 1 and for unscored bases."""
    scored = scored_targets(ids)
    return [None] + [float(lp) if ok else None for lp, ok in zip(log_probs.tolist(), scored.tolist())]


def log_probs_many(model, sequences: Sequence, *, chunk_size: int | None = None, context: int | None = None,
                   batch_size: int = 4, max_rows: int = 16, device=None,
                   on_batch: Callable[[int], None] | None = None) -> list:
    """``log P(x_t | x_<t)`` of each of many sequences of token ids (1-D int64 tensors).

    Sequences that fit one window of a non-recurrent model are stacked by length into batches
    of up to ``max_rows`` rows; the others (streamed state, several windows) go one at a time.
    Each result is what :func:`~genoseq.models.inference.token_log_probs` gives for that sequence
    alone, to float rounding.
    ``on_batch(rows)`` is called after each stacked forward pass.
    """
    import torch

    from genoseq.models.inference import batched_log_probs, scoring_window, token_log_probs

    chunk_size, context = scoring_window(model, chunk_size, context)
    results: list = [None] * len(sequences)
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(sequences):
        n = ids.numel()
        if 2 <= n <= chunk_size and not model.is_recurrent:
            by_length.setdefault(n, []).append(i)
        else:
            results[i] = token_log_probs(model, ids, chunk_size=chunk_size, context=context, batch_size=batch_size,
                                         device=device)
    for rows in by_length.values():
        for b in range(0, len(rows), max_rows):
            group = rows[b : b + max_rows]
            log_probs = batched_log_probs(model, torch.stack([sequences[i] for i in group]))
            for row, i in enumerate(group):
                results[i] = log_probs[row]
            if on_batch is not None:
                on_batch(len(group))
    return results


__all__ = ["SequenceScore", "bits_per_base", "log_probs_many", "per_base_log_probs", "scored_targets", "summarize",
           "summarize_log_probs"]
