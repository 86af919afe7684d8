"""Scores from a bidirectional (masked) language model such as Caduceus, in bounded memory.

A masked LM gives ``P(x_t | every other base)`` for a position replaced by ``[MASK]``
(:data:`genoseq.tokenizer.MASK`; Caduceus' ``[MASK]`` is mapped onto it when it is converted), not
next-base probabilities. The entry points of :mod:`genoseq.models.inference` dispatch here on
``model.bidirectional``, so ``score``, ``vep``, ``interpret ism``, the API and the Python API use
these scores without code of their own:

* **Pseudo-log-likelihood** (PLL, Salazar et al. 2020; the masked-LM "likelihood" of ESM and the
  Nucleotide Transformer): every base masked once, ``sum_t log P(x_t | x_without_t)``. It is not a
  normalised probability of the sequence, so it is comparable between sequences of one model, not
  with a causal model's log-likelihood. Position 1 is scored (it has context on the right).
* **Masked marginals** (Meier et al. 2021): mask the positions of a substitution together and read
  ``log P(alt) - log P(ref)`` there, with the rest of the reference as context.

Cost: a PLL is one forward pass *per base*, each over a whole window: ``L x width`` tokens for a
sequence of ``L`` bases, against ``L`` (plus overlaps) for a causal model. The masked copies of a
window run ``rows`` at a time (one forward pass of ``(rows, width)`` tokens), which is where
batching pays. A sequence longer than ``chunk_size`` is cut into windows of ``chunk_size`` bases
overlapping by ``2 x context``, so that every base is scored with at least ``context`` bases on each
side (all there are near the ends); memory is one pass of ``rows x width`` tokens plus the output.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from genoseq.tokenizer import MASK, A, T


def mask_id(model) -> int:
    """The ``[MASK]`` token id of ``model``'s tokenizer (genoseq's tokenizer has one id for it)."""
    return MASK


def acgt_positions(ids: torch.Tensor) -> torch.Tensor:
    """Sorted positions (P,) of the A, C, G and T tokens of ``ids``: the ones a masked model scores
    (N is never scored, as for a causal model)."""
    return torch.nonzero((ids >= A) & (ids <= T)).reshape(-1)


def masked_windows(n: int, width: int, context: int) -> list[tuple[int, int, int]]:
    """``(start, lo, hi)`` of each window of ``width`` bases over a sequence of ``n``: the window
    ``[start, start + width)`` scores positions ``[lo, hi)``, each of which has at least ``context``
    bases inside the window on either side (or everything up to the sequence's end). The scored
    ranges tile ``[0, n)``."""
    width = min(width, n)
    if n > width and not 0 <= 2 * context < width:
        raise ValueError(f"context ({context}) must be in [0, chunk_size / 2) for a masked model: each base keeps "
                         f"context on both sides of a window of {width}")
    windows, covered, start = [], 0, 0
    while covered < n:
        start = min(start, n - width)
        end = start + width
        hi = n if end == n else end - context
        windows.append((start, covered, hi))
        covered, start = hi, hi - context
    return windows


def _masked_logits(model, batch: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, bf16: bool) -> torch.Tensor:
    """Float32 log-probabilities (len(rows), V) at ``(rows, cols)`` of ``batch``, whose masked
    positions the caller has set."""
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(batch)
    return torch.log_softmax(logits[rows, cols].float(), dim=-1)


@torch.inference_mode()
def masked_scan(model, ids: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], width: int, *,
                positions: torch.Tensor | None = None, chunk_size: int, context: int, rows: int, device=None,
                bf16: bool = False, on_progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """``fn(log_probs, pos)`` for every position of ``positions`` (default: the A/C/G/T bases of
    ``ids``), each masked alone in its window (:func:`masked_windows`); returns a float32 CPU
    tensor (len(positions), width).

    ``fn`` gets the log-probabilities (r, V) at ``r`` masked positions and those positions (r,)
    (sequence coordinates, on the model's device) and returns (r, ``width``). ``rows`` masked
    copies of a window run per forward pass. ``on_progress(k)``: after each pass, the sequence
    positions it finished (every position of the sequence is counted once, masked or not).
    """
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    ids = ids.long().reshape(-1).cpu()
    n = ids.numel()
    if positions is None:
        positions = acgt_positions(ids)
    out = torch.full((positions.numel(), width), float("nan"), dtype=torch.float32)
    if n == 0 or positions.numel() == 0:
        if on_progress is not None and n:
            on_progress(n)
        return out
    rows = max(1, int(rows))
    for start, lo, hi in masked_windows(n, chunk_size, context):
        window = ids[start : start + min(chunk_size, n)].to(device)
        first, last = torch.searchsorted(positions, torch.tensor([lo, hi])).tolist()
        if first == last and on_progress is not None:
            on_progress(hi - lo)
        for b in range(first, last, rows):
            pos = positions[b : min(b + rows, last)].to(device)
            r = torch.arange(pos.numel(), device=device)
            batch = window.expand(pos.numel(), -1).clone()
            batch[r, pos - start] = mask_id(model)
            out[b : b + pos.numel()] = fn(_masked_logits(model, batch, r, pos - start, bf16), pos).cpu()
            if on_progress is not None:  # positions up to the next masked one (or the window's end) are done
                done = (int(positions[b + pos.numel()]) if b + pos.numel() < last else hi)
                on_progress(done - (lo if b == first else int(positions[b])))
    return out


def pseudo_log_probs(model, ids: torch.Tensor, *, chunk_size: int, context: int, batch_size: int = 4,
                     max_rows: int | None = None, device=None, bf16: bool = False,
                     on_progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """``log P(x_t | x_without_t)`` of every position ``t = 0 .. L-1`` (float32 CPU (L,), NaN
    where the base is not A/C/G/T: those are neither masked nor scored).

    Rows per forward pass: ``max_rows``, or by default as many masked copies as fill the tokens of
    ``batch_size`` windows of ``chunk_size`` (the memory of a causal model's pass with the same
    options): ``batch_size * chunk_size // width``, but at most ``batch_size`` on a CPU, where
    wider passes cost more per row (``benchmarks/bench_masked.py``: 0.43 masked bases/s with one
    row, 0.10 with 64, at 1 kb).
    """
    ids = ids.long().reshape(-1).cpu()
    n = ids.numel()
    width = max(1, min(chunk_size, n))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    rows = max_rows if max_rows is not None else max(1, batch_size * chunk_size // width)
    if max_rows is None and device.type == "cpu":
        rows = min(rows, max(1, batch_size))
    positions = acgt_positions(ids)
    on_device = ids.to(device)

    def target(log_probs: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return log_probs.gather(-1, on_device[pos][:, None])

    found = masked_scan(model, ids, target, 1, positions=positions, chunk_size=chunk_size, context=context,
                        rows=rows, device=device, bf16=bf16, on_progress=on_progress)
    out = torch.full((n,), float("nan"), dtype=torch.float32)
    out[positions] = found[:, 0]
    return out


def pseudo_log_likelihood(model, windows: Sequence[np.ndarray], *, max_rows: int = 64, device=None,
                          bf16: bool = False) -> tuple[np.ndarray, int]:
    """The PLL (float64, nats: A/C/G/T positions only) of each of many short windows, each in one
    window of its own length, and the forward-pass rows run (one per scored base)."""
    out = np.zeros(len(windows), dtype=np.float64)
    run = 0
    for j, w in enumerate(windows):
        ids = torch.from_numpy(np.asarray(w).astype(np.int64))
        lp = pseudo_log_probs(model, ids, chunk_size=max(1, len(ids)), context=0, max_rows=max_rows, device=device,
                              bf16=bf16)
        scored = ~torch.isnan(lp)
        out[j] = float(lp[scored].double().sum())
        run += int(scored.sum())
    return out, run


@torch.inference_mode()
def masked_marginal_log_likelihood(model, windows: Sequence[np.ndarray], masked: Sequence[Sequence[int]],
                                   targets: Sequence[Sequence[int]], *, max_rows: int = 64, device=None,
                                   bf16: bool = False) -> tuple[np.ndarray, int]:
    """``sum_k log P(targets[j][k] at masked[j][k] | windows[j] with every masked[j] position masked)``
    for each ``j`` (float64), and the forward-pass rows run.

    Entries with the same window and masked positions (a site's reference and its alternative
    alleles) share one row: the masked-marginal score of a substitution is the difference of two
    such sums over the same row. Rows of one length run ``max_rows`` at a time.
    """
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    row_of: dict[tuple, int] = {}
    inputs: list[tuple[np.ndarray, tuple[int, ...]]] = []
    for w, m in zip(windows, masked):
        key = (len(w), np.asarray(w).tobytes(), tuple(int(p) for p in m))
        if key not in row_of:
            row_of[key] = len(inputs)
            inputs.append((np.asarray(w), key[2]))
    keys = [(len(w), np.asarray(w).tobytes(), tuple(int(p) for p in m)) for w, m in zip(windows, masked)]
    log_probs: list = [None] * len(inputs)  # (k, V) per row
    by_length: dict[int, list[int]] = {}
    for i, (w, _) in enumerate(inputs):
        by_length.setdefault(len(w), []).append(i)
    for members in by_length.values():
        for b in range(0, len(members), max_rows):
            group = [i for i in members[b : b + max_rows] if inputs[i][1]]
            if not group:
                continue
            batch = torch.from_numpy(np.stack([inputs[i][0] for i in group]).astype(np.int64)).to(device)
            r = torch.tensor([row for row, i in enumerate(group) for _ in inputs[i][1]], device=device)
            c = torch.tensor([p for i in group for p in inputs[i][1]], device=device)
            batch[r, c] = mask_id(model)
            found = _masked_logits(model, batch, r, c, bf16).cpu()
            k = 0
            for i in group:
                log_probs[i] = found[k : k + len(inputs[i][1])]
                k += len(inputs[i][1])
    out = np.zeros(len(windows), dtype=np.float64)
    for j, (key, t) in enumerate(zip(keys, targets)):
        lp = log_probs[row_of[key]]
        if lp is not None:
            out[j] = float(lp.gather(-1, torch.as_tensor(list(t), dtype=torch.long)[:, None]).double().sum())
    return out, sum(1 for _, m in inputs if m)


__all__ = ["acgt_positions", "mask_id", "masked_marginal_log_likelihood", "masked_scan", "masked_windows", "pseudo_log_likelihood",
           "pseudo_log_probs"]
