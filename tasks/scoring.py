"""Log-likelihood and bits per base of sequences under a language model.

Under a causal model position 1 of a sequence has no context and is not scored; N bases are
never scored. Under a bidirectional (masked) model such as Caduceus the score is a
**pseudo-log-likelihood** (every base masked once, ``sum_t log P(x_t | x_without_t)``,
:mod:`genoseq.models.masked`) and position 1 is scored too: the same fields, another quantity
(:func:`likelihood_kind` says which; comparable between sequences of one model only). Long
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

CAUSAL, PSEUDO = "causal", "pseudo"
LIKELIHOOD_NOTES = {
    CAUSAL: "log_likelihood: sum of log P(x_t | x_<t) over scored bases (positions 2..L), nats",
    PSEUDO: "log_likelihood is a pseudo-log-likelihood: sum of log P(x_t | all other bases) with each base masked "
            "once (masked language model), over scored bases (positions 1..L), nats",
}


def likelihood_kind(model) -> str:
    """``"pseudo"`` for a bidirectional (masked) model, whose scores are pseudo-log-likelihoods,
    else ``"causal"``."""
    return PSEUDO if getattr(model, "bidirectional", False) else CAUSAL


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


def scored_positions(ids, log_probs):
    """Mask of the entries of ``log_probs`` that are scored: :func:`scored_targets` for a causal
    model's (L-1,), the A/C/G/T positions for a masked model's (L,) (position 1 included)."""
    from genoseq.tokenizer import A, T

    if len(log_probs) == len(ids):
        return (ids >= A) & (ids <= T)
    if len(log_probs) == max(len(ids) - 1, 0):
        return scored_targets(ids)
    raise ValueError(f"{len(log_probs)} log-probabilities for a sequence of {len(ids)} tokens")


def summarize_log_probs(ids, log_probs) -> tuple[float, int]:
    """Log-likelihood (nats, summed in float64) and number of scored bases of one sequence."""
    scored = scored_positions(ids, log_probs)
    return float(log_probs[scored].double().sum()), int(scored.sum())


def bits_per_base(log_likelihood: float, scored_bases: int) -> float:
    """``-log_likelihood / scored_bases`` in bits (NaN when nothing was scored)."""
    return -log_likelihood / scored_bases / math.log(2) if scored_bases else math.nan


def summarize(name: str, ids, log_probs) -> SequenceScore:
    """The :class:`SequenceScore` of token ids ``ids`` (L,) from their ``log_probs`` (L-1,)."""
    ll, n = summarize_log_probs(ids, log_probs)
    return SequenceScore(name, len(ids), n, ll, bits_per_base(ll, n))


def per_base_log_probs(ids, log_probs) -> list[float | None]:
    """``log P(x_t | x_<t)`` of every position (L,): None for position 1 and for unscored bases
    (a masked model's ``log P(x_t | x_without_t)``: None for unscored bases only)."""
    scored = scored_positions(ids, log_probs)
    first = [None] if len(log_probs) < len(ids) else []
    return first + [float(lp) if ok else None for lp, ok in zip(log_probs.tolist(), scored.tolist())]


def log_probs_many(model, sequences: Sequence, *, chunk_size: int | None = None, context: int | None = None,
                   batch_size: int = 4, max_rows: int = 16, device=None,
                   on_batch: Callable[[int], None] | None = None) -> list:
    """``log P(x_t | x_<t)`` of each of many sequences of token ids (1-D int64 tensors).

    Sequences that fit one window of a non-recurrent causal model are stacked by length into
    batches of up to ``max_rows`` rows; the others (streamed state, several windows) go one at a
    time, and so does each sequence of a masked model (its pseudo-log-likelihood terms, at most
    ``max_rows`` masked copies per pass).
    Each result is what :func:`~genoseq.models.inference.token_log_probs` gives for that sequence
    alone, to float rounding.
    ``on_batch(rows)`` is called after each stacked forward pass.
    """
    import torch

    from genoseq.models.inference import batched_log_probs, is_masked, scoring_window, token_log_probs

    chunk_size, context = scoring_window(model, chunk_size, context)
    masked = is_masked(model)
    results: list = [None] * len(sequences)
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(sequences):
        n = ids.numel()
        if 2 <= n <= chunk_size and not model.is_recurrent and not masked:
            by_length.setdefault(n, []).append(i)
        else:
            results[i] = token_log_probs(model, ids, chunk_size=chunk_size, context=context, batch_size=batch_size,
                                         device=device, max_rows=max_rows if masked else None)
    for rows in by_length.values():
        for b in range(0, len(rows), max_rows):
            group = rows[b : b + max_rows]
            log_probs = batched_log_probs(model, torch.stack([sequences[i] for i in group]))
            for row, i in enumerate(group):
                results[i] = log_probs[row]
            if on_batch is not None:
                on_batch(len(group))
    return results


__all__ = ["CAUSAL", "LIKELIHOOD_NOTES", "PSEUDO", "SequenceScore", "bits_per_base", "likelihood_kind", "log_probs_many",
           "per_base_log_probs", "scored_positions", "scored_targets", "summarize", "summarize_log_probs"]
