"""Which bases a DNA language model cares about: zero-shot saturation mutagenesis (ISM)
and nucleotide dependency maps.

**Saturation mutagenesis.** For every position ``i`` of a region and each of the three
substitutions ``b`` there, the log-likelihood ratio of ``genoseq vep`` (natural log)::

    LLR(i, b) = sum_{t = i}^{i + radius} [ log P(x_t | x_<t; x_i = b) - log P(x_t | x_<t; reference) ]

on the forward strand and the same on the reverse complement (where ``t`` runs the other
way), averaged (``strands="both"``, as ``genoseq vep``). For a causal model the positions
before ``i`` are unchanged, so they are not rescored; after it the change of every
prediction is summed over ``radius`` bases (default 128: what ``genoseq vep``'s default
256-base window scores downstream of a variant; ``radius=None`` sums to the end of the
window). The context before ``i`` is everything before it in the sequence given (the region
plus its flanks), up to the model's training window (:func:`~genoseq.models.inference.scoring_window`).
The result is an ``(L, 4)`` matrix (columns A C G T; 0 at the reference base, NaN at an N)
and a per-base **importance**, the mean ``|LLR|`` of the three substitutions.

*Prefix reuse.* The mutants of a block of ``block`` consecutive positions form one family
with the reference: they share the sequence up to the block start, which runs once through
the inference cache, and each member continues only over the block and ``radius`` bases
(:func:`genoseq.models.inference.shared_prefix_map`). The reference is a member of every
family, so each LLR compares two continuations of the same cached prefix. Scoring every
mutant window from scratch costs a whole window per mutant; this costs ``block + radius``
positions per mutant plus one prefix per block (``benchmarks/bench_interpret.py`` measures
both and the agreement).

**Dependency maps** (nucleotide dependencies, Da Silva et al. 2024): how substituting the base
at query ``i`` changes the model's prediction at target ``j``::

    dep[i, j] = max_{b != x_i} max_{n in ACGT} | logit P_b(x_j = n | x_<j) - logit P(x_j = n | x_<j) |

where ``P`` is the model's distribution over A C G T at ``j`` (renormalised over the four
bases), ``P_b`` the same with ``x_i = b``, and ``logit p = log(p / (1 - p))`` (natural log).
The forward strand gives ``j > i``, the reverse complement ``j < i`` (a causal model sees
only one side per strand); the diagonal is 0.

**Bidirectional (masked) models** such as Caduceus: ``LLR(i, b)`` is the **masked marginal** of
``genoseq vep`` (:mod:`genoseq.models.masked`): position ``i`` masked, the rest of the sequence as
context on both sides (windows of the model's training window with at least the scoring context
on each side, :func:`~genoseq.models.inference.scoring_window`)::

    LLR(i, b) = log P(x_i = b | x_without_i) - log P(x_i = ref | x_without_i)

One forward pass per position and strand gives all three substitutions, so ``radius`` and
``block`` do not apply; ``strands="both"`` averages the reverse complement's as above.
Dependency maps compare next-base predictions and need a causal model.

Limits: a region of at most ``max_length`` bases (default :data:`MAX_ISM_LENGTH`, 10 kb) for
ISM and :data:`MAX_DEPENDENCY_LENGTH` (1 kb, an L x L map of full continuations) for
dependencies, which must also fit in one training window. Longer input, a sequence without
A/C/G/T, or a classifier given as the model is an :class:`~genoseq.errors.InputError`.

Nothing heavy is imported at module level.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

from genoseq.errors import InputError
from genoseq.tokenizer import A, T

if TYPE_CHECKING:  # pragma: no cover
    import torch

BASES = "ACGT"
DEFAULT_RADIUS = 128  # = what genoseq vep's default 256-base window scores after a variant
DEFAULT_BLOCK = 16  # positions per family: one prefix per block, block + radius positions per mutant
DEFAULT_ROWS = 128  # forward-pass rows (families of 3 x block + 1 members each)
MAX_ISM_LENGTH = 10_000  # bases of a region (the CLI's default --max_length)
MAX_DEPENDENCY_LENGTH = 1_000  # an L x L map: every mutant continues to the end of the sequence
_COMPLEMENT = np.array([3, 2, 1, 0])  # A C G T -> T G C A, as column indices


@dataclass
class Mutagenesis:
    """Saturation mutagenesis of one region: ``llr[i, b]`` is the LLR (nats) of base ``BASES[b]``
    at position ``i`` of ``sequence`` (0 at the reference base, NaN where the reference is N)."""

    sequence: str
    llr: np.ndarray  # (L, 4) float32: mean over the strands scored
    llr_forward: np.ndarray  # (L, 4) float32
    llr_reverse: np.ndarray | None  # (L, 4) float32, or None with strands="forward"
    radius: int | None
    strands: str

    @property
    def importance(self) -> np.ndarray:
        """Per-base importance (L,): mean ``|LLR|`` over the three substitutions (NaN at an N)."""
        return (np.abs(self.llr).sum(1) / 3.0).astype(np.float32)


@dataclass
class Dependencies:
    """A nucleotide dependency map: ``dep[i, j]`` is the largest change of log-odds at target
    ``j`` when the base at query ``i`` is substituted (see the module docstring)."""

    sequence: str
    dep: np.ndarray  # (L, L) float32, 0 on the diagonal (NaN for j < i with strands="forward")
    strands: str


# ---------------------------------------------------------------------------- checks
def language_model(model, device: str | None = "auto"):
    """A :class:`~genoseq.models.lm.GenoSeqLM` in eval mode on ``device``: ``model`` as it is, or
    loaded from a folder; a folder of another kind (a classifier) is an InputError that says so."""
    from genoseq.models.lm import GenoSeqLM
    from genoseq.runtime import resolve_device

    if not isinstance(model, (str, os.PathLike)):
        if not isinstance(model, GenoSeqLM):
            raise InputError(f"interpretation by mutagenesis needs a GenoSeqLM language model, got "
                             f"{type(model).__name__}", field="model", kind="not_a_language_model")
        return model.eval()
    config = Path(model) / "config.json"
    kind = None
    if config.is_file():
        try:
            kind = json.loads(config.read_text()).get("model_type")
        except (OSError, ValueError):
            kind = None  # from_pretrained names the problem
    if kind is not None and kind != "GenoSeqLM":
        hint = " (use `genoseq interpret attributions` for a classifier)" if kind == "GenoSeqClassifier" else ""
        raise InputError(f"is a {kind} folder, not a language model: saturation mutagenesis and dependency maps "
                         f"need a model from `genoseq pretrain`{hint}", path=str(model), field="model",
                         kind="not_a_language_model")
    return GenoSeqLM.from_pretrained(model, map_location=resolve_device(device)).eval()


def _check_options(radius: int | None, strands: str, block: int, batch_size: int) -> None:
    if radius is not None and radius < 0:
        raise InputError(f"radius must be >= 0 (or None: to the end of the window), got {radius}", field="radius")
    if strands not in ("both", "forward"):
        raise InputError(f"strands must be 'both' or 'forward', got {strands!r}", field="strands")
    if block < 1:
        raise InputError(f"block must be >= 1, got {block}", field="block")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}", field="batch_size")


def _encode(model, seq, index: int, what: str = "sequence") -> np.ndarray:
    if isinstance(seq, (str, bytes)):
        seq = seq.decode() if isinstance(seq, bytes) else seq
        return model.tokenizer.encode(seq, name=f"#{index + 1}").astype(np.uint8)
    return np.asarray(seq, dtype=np.uint8)


def _region(ids: np.ndarray, region, index: int, max_length: int, field: str) -> tuple[int, int]:
    start, end = (0, len(ids)) if region is None else (int(region[0]), int(region[1]))
    if not 0 <= start < end <= len(ids):
        raise InputError(f"{field} #{index + 1}: region [{start}, {end}) is not inside the sequence of "
                         f"{len(ids)} bases", field=field, kind="out_of_bounds")
    if end - start > max_length:
        raise InputError(f"{field} #{index + 1}: {end - start} bases is longer than the limit of {max_length} "
                         "(interpret a shorter region, or raise max_length)", field=field, kind="too_long")
    if len(ids) < 2:
        raise InputError(f"{field} #{index + 1}: needs at least 2 bases", field=field, kind="too_short")
    if not ((ids[start:end] >= A) & (ids[start:end] <= T)).any():
        raise InputError(f"{field} #{index + 1}: no A, C, G or T in the region (only N): nothing to mutate",
                         field=field, kind="no_bases")
    return start, end


# ---------------------------------------------------------------------------- planning
@dataclass
class _Family:
    """The windows of one block on one strand: the reference (member 0) and its mutants."""

    item: int  # which sequence
    strand: str
    start: int  # window start in strand coordinates
    offset: int  # block start inside the window (the shared prefix length)
    queries: list[tuple[int, int]]  # (window position, base column) of each mutant, members 1..


def _families(seq: np.ndarray, item: int, strand: str, lo: int, hi: int, block: int, radius: int | None,
              window: int) -> list[tuple[_Family, list[np.ndarray]]]:
    """The families of positions ``[lo, hi)`` of one strand sequence, each with its windows."""
    out = []
    n = len(seq)
    for b0 in range(lo, hi, block):
        b1 = min(b0 + block, hi)
        end = n if radius is None else min(n, b1 + radius)
        start = max(0, end - window)
        if start > b0:
            raise InputError(f"block + radius ({b1 - b0} + {radius}) does not fit in the model's window of "
                             f"{window} bases", field="radius", kind="too_long")
        ref = seq[start:end]
        windows, queries = [ref], []
        for i in range(b0, b1):
            if not A <= seq[i] <= T:
                continue
            for col in range(4):
                if A + col != seq[i]:
                    mutant = ref.copy()
                    mutant[i - start] = A + col
                    windows.append(mutant)
                    queries.append((i - start, col))
        if queries:
            out.append((_Family(item, strand, start, b0 - start, queries), windows))
    return out


def _strand_plan(model, ids: np.ndarray, lo: int, hi: int, strands: tuple[str, ...]):
    """(strand, strand sequence, lo, hi) for each strand scored."""
    n = len(ids)
    for strand in strands:
        if strand == "+":
            yield strand, ids, lo, hi
        else:
            yield strand, model.tokenizer.reverse_complement(ids), n - hi, n - lo


def _run_families(model, plan, fn, *, batch_size: int, device, bf16: bool, bar, consume) -> int:
    """Run the planned families in chunks of about ``4 x batch_size`` windows; ``consume(family,
    outputs)`` gets each family's per-window outputs. Returns the windows run."""
    from genoseq.models.inference import shared_prefix_map

    run = 0
    pending: list[tuple[_Family, list[np.ndarray]]] = []

    def flush() -> None:
        nonlocal run
        windows = [w for _, ws in pending for w in ws]
        offsets = [f.offset for f, ws in pending for _ in ws]
        found, n = shared_prefix_map(model, windows, offsets, fn, batch_size=batch_size, max_rows=batch_size,
                                     device=device, bf16=bf16)
        run += n
        k = 0
        for family, ws in pending:
            consume(family, found[k : k + len(ws)])
            k += len(ws)
            if bar is not None:
                bar.update(len(family.queries) // 3)
        pending.clear()

    size = 0
    for family, windows in plan:
        pending.append((family, windows))
        size += len(windows)
        if size >= 4 * batch_size:
            flush()
            size = 0
    if pending:
        flush()
    return run


# ---------------------------------------------------------------------------- ISM
def _block_major(model, seqs: list[np.ndarray], bounds: list[tuple[int, int]], strand_list: tuple[str, ...],
                 block: int, radius: int | None, window: int):
    """The families of every sequence and strand, block-major across sequences, so equal-shaped
    blocks of equal-length sequences share passes."""
    jobs = [(k, strand, seq, lo, hi) for k, (ids, (lo0, hi0)) in enumerate(zip(seqs, bounds))
            for strand, seq, lo, hi in _strand_plan(model, ids, lo0, hi0, strand_list)]
    iters = [iter(_families(seq, k, strand, lo, hi, block, radius, window)) for k, strand, seq, lo, hi in jobs]
    while iters:
        alive = []
        for it in iters:
            nxt = next(it, None)
            if nxt is not None:
                alive.append(it)
                yield nxt
        iters = alive


def _mutagenesis(model, ids: np.ndarray, lo: int, hi: int, fwd: np.ndarray, rev: np.ndarray | None,
                 radius: int | None, strands: str) -> Mutagenesis:
    """One sequence's result from its per-strand LLRs (N positions: NaN; both strands: their mean)."""
    unknown = ~((ids[lo:hi] >= A) & (ids[lo:hi] <= T))
    both = fwd if rev is None else (fwd + rev) / 2
    for arr in (fwd, rev, both):
        if arr is not None:
            arr[unknown] = np.nan
    return Mutagenesis(sequence=model.tokenizer.decode(ids[lo:hi]), llr=both.astype(np.float32),
                       llr_forward=fwd.astype(np.float32), llr_reverse=None if rev is None else rev.astype(np.float32),
                       radius=radius, strands=strands)


def _masked_llrs(model, seqs: list[np.ndarray], bounds: list[tuple[int, int]], strand_list: tuple[str, ...],
                 window: int, batch_size: int, device, bf16: bool, bar) -> dict:
    """Per-strand LLRs (region length, 4) of a bidirectional model: the masked marginal of every
    A/C/G/T position of each region (:func:`genoseq.models.masked.masked_scan`, ``batch_size``
    masked copies per forward pass)."""
    import torch

    from genoseq.models.inference import scoring_window
    from genoseq.models.masked import masked_scan

    chunk_size, context = scoring_window(model, window)
    out = {}
    for k, (ids, (lo, hi)) in enumerate(zip(seqs, bounds)):
        n = len(ids)
        for strand, seq, a, b in _strand_plan(model, ids, lo, hi, strand_list):
            pos = a + np.flatnonzero((seq[a:b] >= A) & (seq[a:b] <= T))
            log_probs = masked_scan(model, torch.from_numpy(seq.astype(np.int64)), lambda lp, _: lp[:, A : T + 1], 4,
                                    positions=torch.from_numpy(pos), chunk_size=chunk_size, context=context,
                                    rows=batch_size, device=device, bf16=bf16).double().numpy()
            llr = log_probs - log_probs[np.arange(len(pos)), seq[pos].astype(np.int64) - A][:, None]
            found = np.zeros((hi - lo, 4), dtype=np.float64)
            if strand == "+":
                found[pos - lo] = llr
            else:  # strand position p is base n - 1 - p; its columns are complemented
                found[n - 1 - pos - lo] = llr[:, _COMPLEMENT]
            out[(k, strand)] = found
            if bar is not None:
                bar.update(len(pos))
    return out


def saturation_mutagenesis(
    model,
    sequences: Sequence,
    *,
    regions: Sequence[tuple[int, int] | None] | None = None,
    radius: int | None = DEFAULT_RADIUS,
    strands: Literal["both", "forward"] = "both",
    block: int = DEFAULT_BLOCK,
    max_length: int = MAX_ISM_LENGTH,
    batch_size: int = DEFAULT_ROWS,
    window: int | None = None,
    device: str | None = "auto",
    bf16: bool = False,
    progress: bool | str = False,
) -> list[Mutagenesis]:
    """Saturation mutagenesis of each sequence (a string or token ids): one :class:`Mutagenesis` each.

    ``regions[k] = (start, end)`` mutates only that 0-based half-open part of sequence ``k``;
    the rest is context (genome flanks). ``radius``: bases after a substitution whose change
    is summed (None: to the end of the window). ``window``: the longest stretch one forward
    pass sees (default the model's training window). ``batch_size``: rows per forward pass.
    Sequences of one length (and region) run their blocks in shared passes.
    """
    from genoseq.models.inference import gather_log_probs, is_masked, scoring_window
    from genoseq.progress import Progress
    from genoseq.runtime import resolve_device

    _check_options(radius, strands, block, batch_size)
    model = language_model(model, device)
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    model = model.to(dev)
    window = scoring_window(model)[0] if window is None else int(window)
    seqs = [_encode(model, s, k) for k, s in enumerate(sequences)]
    regions = list(regions) if regions is not None else [None] * len(seqs)
    if len(regions) != len(seqs):
        raise InputError(f"regions has {len(regions)} entries for {len(seqs)} sequences", field="regions")
    bounds = [_region(ids, r, k, max_length, "sequence") for k, (ids, r) in enumerate(zip(seqs, regions))]
    masked = is_masked(model)  # masked marginals: no radius, whatever the length
    for k, (ids, (lo, hi)) in enumerate(zip(seqs, bounds)):
        if radius is None and len(ids) > window and not masked:
            raise InputError(f"sequence #{k + 1}: radius=None scores to the end of the sequence, which must fit "
                             f"in the model's window of {window} bases (got {len(ids)})", field="radius",
                             kind="too_long")
    strand_list = ("+", "-") if strands == "both" else ("+",)
    per_strand = {(k, s): np.zeros((hi - lo, 4), dtype=np.float64)
                  for k, (lo, hi) in enumerate(bounds) for s in strand_list}

    def log_probs(logits: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        return gather_log_probs(logits, targets) * model.tokenizer.is_base(targets)

    def consume(family: _Family, found: list) -> None:
        ids, (lo0, hi0) = seqs[family.item], bounds[family.item]
        n = len(ids)
        ref = found[0].double().numpy()
        p = max(family.offset, 1)  # targets start at window position p
        out = per_strand[(family.item, family.strand)]
        for m, (w, col) in enumerate(family.queries, start=1):
            first = max(w, p) - p
            last = len(ref) if radius is None else min(len(ref), w + radius - p + 1)
            llr = float((found[m].double().numpy()[first:last] - ref[first:last]).sum())
            i = family.start + w  # strand coordinate
            if family.strand == "+":
                out[i - lo0, col] = llr
            else:
                out[n - 1 - i - lo0, _COMPLEMENT[col]] = llr

    total = sum(int(((ids[lo:hi] >= A) & (ids[lo:hi] <= T)).sum()) for ids, (lo, hi) in zip(seqs, bounds))
    with Progress(total * len(strand_list), desc="ism", unit="pos", mode=progress) as bar:
        if masked:
            per_strand = _masked_llrs(model, seqs, bounds, strand_list, window, batch_size, dev,
                                      bf16 and dev.type == "cuda", bar)
        else:
            _run_families(model, _block_major(model, seqs, bounds, strand_list, block, radius, window), log_probs,
                          batch_size=batch_size, device=dev, bf16=bf16 and dev.type == "cuda", bar=bar, consume=consume)

    return [_mutagenesis(model, ids, lo, hi, per_strand[(k, "+")], per_strand.get((k, "-")), radius, strands)
            for k, (ids, (lo, hi)) in enumerate(zip(seqs, bounds))]


# ---------------------------------------------------------------------------- dependencies
def dependency_map(
    model,
    sequence,
    *,
    strands: Literal["both", "forward"] = "both",
    block: int = DEFAULT_BLOCK,
    max_length: int = MAX_DEPENDENCY_LENGTH,
    batch_size: int = DEFAULT_ROWS,
    device: str | None = "auto",
    bf16: bool = False,
    progress: bool | str = False,
) -> Dependencies:
    """The nucleotide dependency map of one sequence (see the module docstring): (L, L), at most
    ``max_length`` bases (default 1 kb), which must also fit in the model's training window."""
    import torch

    from genoseq.models.inference import require_causal, scoring_window
    from genoseq.progress import Progress
    from genoseq.runtime import resolve_device

    _check_options(None, strands, block, batch_size)
    model = language_model(model, device)
    require_causal(model, "make dependency maps (they compare next-base predictions)")
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    model = model.to(dev)
    ids = _encode(model, sequence, 0)
    lo, hi = _region(ids, None, 0, max_length, "sequence")
    window = scoring_window(model)[0]
    if len(ids) > window:
        raise InputError(f"sequence #1: a dependency map needs the whole sequence in one window of the model "
                         f"({window} bases); got {len(ids)}", field="sequence", kind="too_long")
    n = len(ids)
    dep = np.zeros((n, n), dtype=np.float32)
    if strands == "forward":
        dep[np.tril_indices(n, -1)] = np.nan
    strand_list = ("+", "-") if strands == "both" else ("+",)

    def log_odds(logits: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        lp = torch.log_softmax(logits[..., A : T + 1].float(), dim=-1)
        return lp - torch.log1p(-lp.exp().clamp(max=1 - 1e-7))

    def consume(family: _Family, found: list) -> None:
        ref = found[0]
        p = max(family.offset, 1)
        for m, (w, col) in enumerate(family.queries, start=1):
            first = w + 1 - p  # the targets after the query; the query's own prediction is unchanged
            change = (found[m][first:] - ref[first:]).abs().amax(-1).numpy()
            i = family.start + w
            targets = np.arange(i + 1, i + 1 + len(change))
            if family.strand == "+":
                dep[i, targets] = np.maximum(dep[i, targets], change)
            else:
                qi, tj = n - 1 - i, n - 1 - targets
                dep[qi, tj] = np.maximum(dep[qi, tj], change)

    plan = (fam for strand, seq, a, b in _strand_plan(model, ids, lo, hi, strand_list)
            for fam in _families(seq, 0, strand, a, b, block, None, window))
    total = int(((ids >= A) & (ids <= T)).sum()) * len(strand_list)
    with Progress(total, desc="dependencies", unit="pos", mode=progress) as bar:
        _run_families(model, plan, log_odds, batch_size=batch_size, device=dev, bf16=bf16 and dev.type == "cuda",
                      bar=bar, consume=consume)
    unknown = (ids < A) | (ids > T)
    dep[unknown, :] = np.nan  # no substitution of an N is made
    return Dependencies(sequence=model.tokenizer.decode(ids), dep=dep, strands=strands)


__all__ = ["BASES", "DEFAULT_BLOCK", "DEFAULT_RADIUS", "MAX_DEPENDENCY_LENGTH", "MAX_ISM_LENGTH", "Dependencies",
           "Mutagenesis", "dependency_map", "language_model", "saturation_mutagenesis"]
