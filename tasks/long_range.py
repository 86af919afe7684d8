"""What long context buys, measured on real DNA: recall of a copied segment and bits/base by context.

* :func:`copy_recall`: a real segment (``segment`` bases, after ``prefix`` bases of its own
  context) is followed by the ``D`` bases that really follow it in the genome and then by a
  copy of itself. A model that reaches ``D + segment`` bases back and uses what it sees predicts
  the copy far better than the first occurrence; one that does not scores both alike (about
  1.9 bits/base for bacterial DNA).
* :func:`context_curve`: the same ``target`` bases of a genome scored with ``c`` bases of
  context before them, for each ``c``: bits/base against context length.
* :func:`find_repeats` and :func:`repeat_recall`: the genome's own direct repeats (rRNA operons,
  insertion sequences, paralogues), found by exact k-mer seeds chained along a diagonal, and
  bits/base of each later copy scored with its earlier copy in the window, beside the earlier
  copy and the bases around them. A model that reaches the earlier copy scores the later one
  well below the earlier one; one that does not scores both copies alike.

Recall and context constructs are scored in one forward pass (so nothing is cut into
windows), repeats the way ``genoseq score`` scores a sequence (:func:`token_log_probs`, the
model's own windows unless ``chunk_size`` and ``context`` are given), all in inference mode; ``attention_window`` limits attention layers to a sliding window (see
:func:`genoseq.models.inference.limit_attention`) for models trained on shorter windows.
Positions are drawn at random (``seed``) where no N falls in what is scored.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from genoseq.errors import InputError
from genoseq.tokenizer import A, N

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


@dataclass(frozen=True)
class Repeat:
    """A direct repeat on one contig: ``length`` bases at ``first`` seen again at ``later``."""

    contig: str
    first: int
    later: int
    length: int
    identity: float  # fraction of equal bases between the two copies

    @property
    def distance(self) -> int:
        return self.later - self.first

    def to_dict(self) -> dict:
        return {**asdict(self), "distance": self.distance}


@dataclass(frozen=True)
class RepeatScore:
    """Bits/base of a repeat's earlier copy, its later copy, and the other bases of the window."""

    repeat: Repeat
    first_bits_per_base: float
    later_bits_per_base: float
    background_bits_per_base: float

    def to_dict(self) -> dict:
        return {**self.repeat.to_dict(), "first_bits_per_base": self.first_bits_per_base,
                "later_bits_per_base": self.later_bits_per_base,
                "background_bits_per_base": self.background_bits_per_base}


def _kmer_codes(ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The 2-bit code of the k-mer at each start (uint64) and whether it is all A/C/G/T."""
    base = ids.astype(np.int64) - A
    valid = (base >= 0) & (base < 4)
    n = len(ids) - k + 1
    bits = np.where(valid, base, 0).astype(np.uint64)
    codes = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        codes = (codes << np.uint64(2)) | bits[j : j + n]
    bad = np.concatenate([[0], np.cumsum(~valid)])
    return codes, bad[k:] - bad[:n] == 0


def _chain(pairs: np.ndarray, k: int, max_gap: int) -> list[tuple[int, int, int]]:
    """Seeds ``(earlier, later)`` on one diagonal and near each other joined: ``(first, later, length)``."""
    diag = pairs[:, 1] - pairs[:, 0]
    order = np.lexsort((pairs[:, 1], diag))
    diag, later = diag[order], pairs[order, 1]
    breaks = np.flatnonzero((np.diff(diag) != 0) | (np.diff(later) > max_gap)) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(later)]]) - 1
    return [(int(later[s] - diag[s]), int(later[s]), int(later[e] - later[s] + k)) for s, e in zip(starts, ends)]


def find_repeats(ids, *, contig: str = "", k: int = 32, min_length: int = 200, min_distance: int = 2048,
                 max_distance: int = 131072, max_occurrences: int = 64) -> list[Repeat]:
    """Direct repeats of one sequence of token ids, longest first, no two later copies overlapping.

    Every k-mer of A/C/G/T that occurs again is paired with its nearest earlier occurrence (what a
    model reading left to right could copy from); pairs ``min_distance .. max_distance`` apart are
    chained along their diagonal while consecutive seeds are at most ``2k`` apart (a few
    substitutions; an indel starts another repeat), and chains of at least ``min_length`` bases
    whose copies do not overlap are repeats. k-mers seen more than ``max_occurrences`` times (low
    complexity) seed nothing.
    """
    if not 8 <= k <= 32:
        raise InputError(f"k must be in 8..32 (a k-mer is packed in 64 bits), got {k}", field="k")
    if min_length < k or min_distance < 1 or max_distance < min_distance:
        raise InputError(f"need min_length >= k ({min_length} < {k}?) and 1 <= min_distance <= max_distance "
                         f"(got {min_distance}, {max_distance})", field="min_length")
    ids = np.asarray(ids)
    if len(ids) < 2 * k:
        return []
    codes, ok = _kmer_codes(ids, k)
    starts = np.flatnonzero(ok)
    order = starts[np.argsort(codes[starts], kind="stable")]  # by code, then position
    sorted_codes = codes[order]
    same = sorted_codes[1:] == sorted_codes[:-1]
    run_start = np.concatenate([[True], ~same])
    run_id = np.cumsum(run_start) - 1
    run_size = np.bincount(run_id)
    keep = same & (run_size[run_id[1:]] <= max_occurrences)
    pairs = np.stack([order[:-1][keep], order[1:][keep]], axis=1).astype(np.int64)
    distance = pairs[:, 1] - pairs[:, 0]
    pairs = pairs[(distance >= min_distance) & (distance <= max_distance)]
    if len(pairs) == 0:
        return []
    chains = sorted(_chain(pairs, k, 2 * k), key=lambda c: -c[2])
    taken = np.zeros(len(ids), dtype=bool)
    repeats = []
    for first, later, length in chains:
        if length < min_length or later - first < length or taken[later : later + length].any():
            continue
        taken[later : later + length] = True
        identity = float((ids[first : first + length] == ids[later : later + length]).mean())
        repeats.append(Repeat(contig, first, later, length, identity))
    return repeats


def genome_repeats(genome, *, limit: int | None = None, **options) -> list[Repeat]:
    """:func:`find_repeats` of every contig of ``genome``, the ``limit`` longest (all by default).
    A contig is read whole (8 bytes per base while its k-mers are sorted)."""
    repeats = [rep for name, length in genome.contigs.items()
               for rep in find_repeats(genome.fetch(name, 0, length), contig=name, **options)]
    repeats.sort(key=lambda r: (-r.length, r.contig, r.later))
    return repeats[:limit]


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


def _mean_bits(log_probs: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> float:
    """Mean bits/base of the A/C/G/T targets where ``mask`` (over ``ids``; target 0 is never scored)."""
    mask = mask.copy()
    mask[0] = False
    mask &= (ids >= A) & (ids < N)
    return float(-log_probs[np.flatnonzero(mask) - 1].mean() / LN2) if mask.any() else float("nan")


def repeat_recall(model, genome, repeats: Sequence[Repeat], *, flank: int = 1000, chunk_size: int | None = None,
                  context: int | None = None, device=None,
                  on_progress: Callable[[int], None] | None = None) -> list[RepeatScore]:
    """Each repeat scored in one window from ``flank`` bases before its earlier copy to the end of
    its later copy, as ``genoseq score`` scores a sequence (``chunk_size`` and ``context`` as
    there; by default the model's own). ``on_progress(n)`` gets the bases of each window."""
    from genoseq.models.inference import token_log_probs

    scores = []
    for rep in repeats:
        start, end = max(rep.first - flank, 0), rep.later + rep.length
        ids = genome.fetch(rep.contig, start, end)
        lp = token_log_probs(model, ids.astype(np.int64), chunk_size=chunk_size, context=context, batch_size=1,
                             device=device).numpy()
        first, later = np.zeros(len(ids), dtype=bool), np.zeros(len(ids), dtype=bool)
        first[rep.first - start : rep.first - start + rep.length] = True
        later[rep.later - start :] = True
        scores.append(RepeatScore(rep, _mean_bits(lp, ids, first), _mean_bits(lp, ids, later),
                                  _mean_bits(lp, ids, ~(first | later))))
        if on_progress is not None:
            on_progress(len(ids))
    return scores


__all__ = ["ContextPoint", "RecallPoint", "Repeat", "RepeatScore", "context_curve", "copy_recall", "find_repeats",
           "genome_repeats", "repeat_recall"]
