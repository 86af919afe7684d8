"""Inference with bounded memory: long-sequence scoring, batched likelihoods, generation.

``token_log_probs`` scores sequences far longer than one forward pass:

* a pure-Mamba2 model streams the sequence in chunks and carries its short-conv and SSD
  states from one chunk to the next, which is exact (identical to one forward pass);
* a model with attention or Hyena layers is scored in overlapping windows of ``chunk_size``
  tokens: every scored position sees at least ``context`` previous tokens (all of them near
  the start). Windows have equal length and run ``batch_size`` at a time.

Memory is bounded by one chunk (or ``batch_size`` windows) of activations plus the output
(4 bytes per position), whatever the sequence length.

A bidirectional (masked) model (``model.bidirectional``, e.g. a converted Caduceus) has no
next-base probabilities: ``token_log_probs``, ``sequence_log_likelihood`` and
``batched_log_probs`` give its pseudo-log-likelihood terms instead (every base masked once,
:mod:`genoseq.models.masked`), so every caller scores it without code of its own; generation
and the causal prefix sharing refuse it (:func:`require_causal`).

``generate`` decodes incrementally with per-layer caches: Mamba2 keeps its recurrent state
(``ssd_step``) and short-conv state (``causal_conv1d_step``), attention keeps keys and values,
Hyena keeps the inputs of its long convolutions so that each new token's convolution output is
one dot product with the cached history. ``recompute=True`` runs the full forward pass at every
step instead (for comparison and benchmarks).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from genoseq.errors import InputError
from genoseq.tokenizer import A, BOS, G, PAD, T, C

from .attention import WindowedAttention

DEFAULT_CHUNK = 8192  # for models whose training window is unknown
MIN_CONTEXT = 256  # bases of context the default never goes below (unless the chunk is short)


def scoring_window(model, chunk_size: int | None = None, context: int | None = None) -> tuple[int, int]:
    """``(chunk_size, context)`` of :func:`token_log_probs`, the ones not given from ``model``.

    A model trained on windows of W bases (``model.training_config.window_length``, recorded
    by ``genoseq pretrain``) is scored in windows of W bases, so no position lies beyond what
    it was trained on; without a recorded window, in windows of 8192. The default context is
    an eighth of the chunk but at least ``MIN_CONTEXT`` bases (and at most a quarter): the
    context curve of ``benchmarks/bench_quality.py`` flattens after a few hundred bases, so
    long windows need not rescore a quarter of each, and short ones keep enough.
    """
    window = getattr(getattr(model, "training_config", None), "window_length", None)
    chunk = (int(window) if window else DEFAULT_CHUNK) if chunk_size is None else int(chunk_size)
    return chunk, (min(chunk // 4, max(chunk // 8, MIN_CONTEXT)) if context is None else int(context))


@contextmanager
def limit_attention(model, window: int | None, sink: int = 0):
    """Within the block, every attention layer of ``model`` attends to at most the last ``window``
    positions (and to the first ``sink`` ones, LM-Infinite's Lambda-shaped mask): attention then
    never meets a distance it was not trained on, so a model runs on sequences longer than its
    training window while its Hyena and Mamba2 layers still see everything. ``window=None``
    changes nothing."""
    if window is None:
        yield model
        return
    if window < 1 or sink < 0:
        raise ValueError(f"attention window must be >= 1 and sink >= 0, got {window} and {sink}")
    layers = [m for m in model.modules() if isinstance(m, WindowedAttention)]
    saved = [(m.window, m.sink) for m in layers]
    for m in layers:
        m.window, m.sink = min(m.window or window, window), sink
    try:
        yield model
    finally:
        for m, (w, k) in zip(layers, saved):
            m.window, m.sink = w, k


def require_causal(model, what: str = "generate") -> None:
    """Refuse a bidirectional model (``model.bidirectional``: a masked LM such as Caduceus, which
    predicts each base from both sides) where next-base probabilities are needed: generation
    (here and ``conditional.sample_constrained``) and the causal prefix sharing of
    :func:`shared_prefix_map`. Scoring, variant effects and mutagenesis dispatch to
    :mod:`genoseq.models.masked` instead (pseudo-log-likelihoods and masked marginals)."""
    if getattr(model, "bidirectional", False):
        kind = getattr(model, "architecture", None) or type(model).__name__
        raise InputError(f"the model ({kind}) is bidirectional, a masked language model: it gives no next-base "
                         f"probabilities, so it cannot {what}; it scores sequences (pseudo-log-likelihood), "
                         "variants and mutations (masked marginals), and embeds and classifies", field="model")


def is_masked(model) -> bool:
    """True for a bidirectional (masked) language model: its scores come from :mod:`genoseq.models.masked`."""
    return bool(getattr(model, "bidirectional", False))


def _device_of(model, device) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


def as_ids(model, seq, name: str | None = None) -> torch.Tensor:
    """A sequence (str, bytes, numpy ids, tensor ids) as a 1-D int64 tensor on the CPU
    (``name`` is the record an encoding error names)."""
    if isinstance(seq, (str, bytes)):
        seq = model.tokenizer.encode(seq, name=name)
    if isinstance(seq, np.ndarray):
        return torch.from_numpy(seq.astype(np.int64, copy=False))
    ids = torch.as_tensor(seq)
    if ids.dtype.is_floating_point:
        raise TypeError("token ids must be integers")
    return ids.long().reshape(-1).cpu()


def gather_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target], in float32; logits (..., V), targets (...)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)


# ---------------------------------------------------------------------------- long sequences
@torch.inference_mode()
def token_log_probs(
    model,
    ids,
    *,
    chunk_size: int | None = None,
    context: int | None = None,
    batch_size: int = 4,
    device=None,
    on_progress: Callable[[int], None] | None = None,
    max_rows: int | None = None,
) -> torch.Tensor:
    """``log P(x_t | x_<t)`` for ``t = 1 .. L-1`` of one sequence, as a float32 CPU tensor (L-1,).

    A bidirectional (masked) model gives instead ``log P(x_t | x_without_t)`` for every
    ``t = 0 .. L-1`` (L,), NaN where the base is not A/C/G/T: the terms of the pseudo-log-likelihood
    (:func:`genoseq.models.masked.pseudo_log_probs`; windows of ``chunk_size`` overlapping so that
    every base has ``context`` bases on each side; ``max_rows`` masked copies per forward pass,
    by default the tokens of ``batch_size`` windows, at most ``batch_size`` rows on a CPU).

    ``ids`` is a 1-D tensor / numpy array of token ids (or a string). A pure-Mamba2 model is
    streamed exactly in chunks of ``chunk_size`` tokens; otherwise windows of ``chunk_size``
    tokens overlap by ``context`` (see the module docstring); either left ``None`` comes from
    :func:`scoring_window`. ``on_progress(n)`` is called
    after each forward pass with the number of positions it scored (they add up to L-1).
    """
    ids = as_ids(model, ids)
    if ids.dim() != 1:
        raise ValueError(f"token_log_probs scores one sequence: ids must be 1-D, got shape {tuple(ids.shape)}")
    chunk_size, context = scoring_window(model, chunk_size, context)
    if chunk_size < 2:
        raise ValueError("chunk_size must be >= 2")
    model.eval()
    device = _device_of(model, device)
    if is_masked(model):
        from .masked import pseudo_log_probs

        return pseudo_log_probs(model, ids, chunk_size=chunk_size, context=context, batch_size=batch_size,
                                max_rows=max_rows, device=device, on_progress=on_progress)
    n = ids.numel()
    out = torch.empty(max(n - 1, 0), dtype=torch.float32)
    if n < 2:
        return out
    if model.is_recurrent:
        cache = model.new_cache()
        for start in range(0, n - 1, chunk_size):
            end = min(start + chunk_size, n - 1)  # inputs start..end-1 predict start+1..end
            chunk = ids[start:end].to(device)[None]
            logits = model(chunk, cache=cache)[0]
            out[start:end] = gather_log_probs(logits, ids[start + 1 : end + 1].to(device)).cpu()
            if on_progress is not None:
                on_progress(end - start)
        return out

    if not 0 <= context < chunk_size:
        raise ValueError(f"context ({context}) must be in [0, chunk_size={chunk_size})")
    width = min(chunk_size, n)
    stride = width - context
    # (window start, first scored target, end of scored targets); windows all have `width` tokens.
    windows, covered, start = [], 1, 0
    while covered < n:
        start = min(start, n - width)
        end = start + width
        windows.append((start, covered, end))
        covered, start = end, start + stride
    for b in range(0, len(windows), batch_size):
        group = windows[b : b + batch_size]
        batch = torch.stack([ids[s : s + width] for s, _, _ in group]).to(device)
        log_probs = gather_log_probs(model(batch)[:, :-1], batch[:, 1:]).cpu()  # target s+1+j at j
        for row, (s, lo, hi) in enumerate(group):
            out[lo - 1 : hi - 1] = log_probs[row, lo - s - 1 : hi - s - 1]
        if on_progress is not None:
            on_progress(sum(hi - lo for _, lo, hi in group))
    return out


class SequenceScores(NamedTuple):
    log_likelihood: np.ndarray  # (n,) float64: sum of log P(x_t | x_<t) over scored positions, nats
    num_scored: np.ndarray  # (n,) int64: positions t >= 1 whose token is a nucleotide


@torch.inference_mode()
def sequence_log_likelihood(model, seqs: Sequence, *, batch_size: int = 64, device=None) -> SequenceScores:
    """Total log-likelihood of each of many short sequences (one forward pass each).

    Sequences are grouped by length, so equal-length windows (variant scoring) run as full
    batches without padding; shorter ones are right-padded, which a causal model ignores. A
    bidirectional model gives each sequence's pseudo-log-likelihood (every A/C/G/T base masked
    once, ``batch_size`` masked copies per pass), counting position 1 too.
    """
    if isinstance(seqs, (str, bytes)) or (isinstance(seqs, (np.ndarray, torch.Tensor)) and seqs.ndim == 1):
        raise TypeError("sequence_log_likelihood takes a list of sequences (or a 2-D array of ids); "
                        "for one sequence pass [seq]")
    if is_masked(model):
        from .masked import pseudo_log_likelihood

        encoded = [as_ids(model, s).numpy() for s in seqs]
        ll, _ = pseudo_log_likelihood(model, encoded, max_rows=batch_size, device=_device_of(model, device))
        return SequenceScores(ll, np.array([int(((e >= A) & (e <= T)).sum()) for e in encoded], dtype=np.int64))
    if not len(seqs):
        return SequenceScores(np.zeros(0), np.zeros(0, dtype=np.int64))
    model.eval()
    device = _device_of(model, device)
    encoded = [as_ids(model, s) for s in seqs]
    lengths = np.array([e.numel() for e in encoded])
    ll = np.zeros(len(encoded), dtype=np.float64)
    counts = np.zeros(len(encoded), dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    for b in range(0, len(order), batch_size):
        rows = order[b : b + batch_size]
        width = int(lengths[rows].max())
        if width < 2:
            continue
        batch = torch.full((len(rows), width), PAD, dtype=torch.long)
        for r, i in enumerate(rows):
            batch[r, : lengths[i]] = encoded[i]
        batch = batch.to(device)
        targets = batch[:, 1:]
        lp = gather_log_probs(model(batch)[:, :-1], targets)
        counted = model.tokenizer.is_base(targets)  # padding (id 0) is never counted
        ll[rows] = (lp * counted).sum(1).double().cpu().numpy()
        counts[rows] = counted.sum(1).cpu().numpy()
    return SequenceScores(ll, counts)


@torch.inference_mode()
def batched_log_probs(model, batch: torch.Tensor) -> torch.Tensor:
    """``log P(x_t | x_<t)`` (B, L-1) of a batch (B, L) of equal-length sequences, one forward pass.

    For sequences no longer than ``chunk_size`` (and a model with attention or Hyena layers)
    this is the single window :func:`token_log_probs` scores; batching rows only changes float
    rounding. A bidirectional model gives ``log P(x_t | x_without_t)`` (B, L) instead, each row in
    one window (:func:`token_log_probs`).
    """
    if is_masked(model):
        return torch.stack([token_log_probs(model, row, chunk_size=max(2, batch.shape[1]), context=0)
                            for row in batch]) if len(batch) else torch.zeros(0, batch.shape[1])
    ids = batch.to(next(model.parameters()).device)
    return gather_log_probs(model(ids)[:, :-1], ids[:, 1:]).cpu()


def _families(windows: Sequence[np.ndarray], offsets: Sequence[int]) -> dict[tuple[int, int], list[list[int]]]:
    """Windows grouped by (length, prefix length p) into families agreeing on their first p tokens."""
    families: dict[tuple, list[int]] = {}
    for j, (w, o) in enumerate(zip(windows, offsets)):
        p = max(int(o), 1)
        families.setdefault((len(w), p, w[:p].tobytes()), []).append(j)
    by_shape: dict[tuple[int, int], list[list[int]]] = {}
    for (length, p, _), members in families.items():
        by_shape.setdefault((length, p), []).append(members)
    return by_shape


def _passes(shape_families: list[list[int]], per_pass: int, max_rows: int | None) -> Iterator[list[list[int]]]:
    """Families cut into forward passes: ``per_pass`` families each, or as many as fit in
    ``max_rows`` rows (always at least one family)."""
    if max_rows is None:
        for b in range(0, len(shape_families), per_pass):
            yield shape_families[b : b + per_pass]
        return
    group: list[list[int]] = []
    rows = 0
    for family in shape_families:
        if group and rows + len(family) > max_rows:
            yield group
            group, rows = [], 0
        group.append(family)
        rows += len(family)
    if group:
        yield group


@torch.inference_mode()
def shared_prefix_map(model, windows: Sequence[np.ndarray], offsets: Sequence[int],
                      fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, batch_size: int = 64,
                      max_rows: int | None = None, device=None, bf16: bool = False) -> tuple[list, int]:
    """``fn(logits, targets)`` over the positions ``t >= p = max(offset, 1)`` of each window, sharing
    each family's prefix; returns one CPU tensor per window (None where nothing follows the
    prefix) and the number of windows run.

    ``logits`` (rows, T, V) predict ``targets`` (rows, T) = ``window[p:]`` (T = length - p) and
    ``fn`` returns a tensor with one row per window. Windows of one length whose first ``p``
    tokens agree (a reference window and its alternative alleles, on one strand; the mutants
    of a block of positions) are a family: the shared prefix runs once, through the inference
    cache (``InferenceCache.select`` copies its rows), and each member continues from it with
    its own tokens. For a causal model this is the same computation as a full pass per
    window, with the prefix done once. A pass holds ``batch_size // 2`` families, or with
    ``max_rows`` as many whole families as fit in that many rows (large families: saturation
    mutagenesis). ``bf16`` runs the model under bf16 autocast (on a GPU). Causal models only: a
    bidirectional model's variant and mutagenesis scores are masked marginals
    (:mod:`genoseq.models.masked`).
    """
    require_causal(model, "run next-base predictions over shared prefixes")
    device = _device_of(model, device)
    out: list = [None] * len(windows)
    run = 0
    per_pass = max(1, batch_size // 2)  # families per pass; their members fill the batch
    for (length, p), shape_families in _families(windows, offsets).items():
        if p >= length:  # nothing is scored after the prefix
            continue
        for group in _passes(shape_families, per_pass, max_rows):
            members = [j for family in group for j in family]
            owner = torch.tensor([f for f, family in enumerate(group) for _ in family], device=device)
            prefix = torch.from_numpy(np.stack([windows[family[0]][:p] for family in group]).astype(np.int64))
            rest = torch.from_numpy(np.stack([windows[j][p : length - 1] for j in members]).astype(np.int64))
            targets = torch.from_numpy(np.stack([windows[j][p:] for j in members]).astype(np.int64)).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                cache = model.new_cache(max_len=length)
                logits = model(prefix.to(device), cache=cache)[:, -1:][owner]  # predicts x_p
                if rest.shape[1]:
                    cache = cache.select(owner)
                    logits = torch.cat([logits, model(rest.to(device), cache=cache)], dim=1)
            found = fn(logits, targets).cpu()
            for row, j in enumerate(members):
                out[j] = found[row]
            run += len(members)
    return out, run


def shared_prefix_log_likelihood(model, windows: Sequence[np.ndarray], offsets: Sequence[int], *,
                                 batch_size: int = 64, device=None, bf16: bool = False) -> tuple[np.ndarray, int]:
    """Sum of ``log P(x_t | x_<t)`` over ``t >= max(offset, 1)`` of each window (float64), and the
    number of windows run (nucleotide targets only; :func:`shared_prefix_map` shares each
    family's prefix: a SNV in a 256-base window costs 384 positions instead of 512)."""

    def summed(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        counted = model.tokenizer.is_base(targets)
        return (gather_log_probs(logits, targets) * counted).sum(1).double()

    found, run = shared_prefix_map(model, windows, offsets, summed, batch_size=batch_size, device=device, bf16=bf16)
    return np.array([0.0 if x is None else float(x) for x in found], dtype=np.float64), run


# ---------------------------------------------------------------------------- generation
def _sample(logits: torch.Tensor, temperature: float, top_k, top_p, generator) -> torch.Tensor:
    """One token per row of ``logits`` (B, V), float32."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix reaching top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate(
    model,
    prompt="",
    max_new_tokens: int = 100,
    *,
    num_samples: int = 1,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    condition_ids: Sequence[int] | None = None,
    allowed_ids: Sequence[int] | None = (A, C, G, T),
    recompute: bool = False,
    device=None,
) -> torch.Tensor:
    """Sample ``num_samples`` continuations; returns ids (num_samples, prefix + max_new_tokens) on CPU.

    The prefix is ``condition_ids`` (e.g. ``[tokenizer.condition_id("phage")]``) followed by the
    prompt (a string or ids); an empty prefix starts from BOS. Sampling is restricted to
    ``allowed_ids`` (A C G T by default; ``None`` allows every token). ``temperature=0`` is
    greedy. ``seed`` makes the samples reproducible.
    """
    require_causal(model)
    if max_new_tokens < 0:
        raise ValueError("max_new_tokens must be >= 0")
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    model.eval()
    device = _device_of(model, device)
    prefix = torch.cat([torch.as_tensor(list(condition_ids or []), dtype=torch.long), as_ids(model, prompt)])
    if prefix.numel() == 0:
        prefix = torch.tensor([BOS])
    ids = prefix.to(device)[None].repeat(num_samples, 1)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    ban = None
    if allowed_ids is not None:
        ban = torch.ones(model.config.vocab_size, dtype=torch.bool, device=device)
        ban[torch.as_tensor(list(allowed_ids), device=device)] = False

    def next_token(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if ban is not None:
            logits = logits.masked_fill(ban, float("-inf"))
        return _sample(logits, temperature, top_k, top_p, generator)

    if max_new_tokens == 0:
        return ids.cpu()
    out = [ids]
    if recompute:
        for _ in range(max_new_tokens):
            token = next_token(model(torch.cat(out, dim=1))[:, -1])
            out.append(token[:, None])
        return torch.cat(out, dim=1).cpu()

    cache = model.new_cache(max_len=prefix.numel() + max_new_tokens)
    logits = model(ids, cache=cache)[:, -1]
    for step in range(max_new_tokens):
        token = next_token(logits)
        out.append(token[:, None])
        if step + 1 < max_new_tokens:
            logits = model(token[:, None], cache=cache)[:, -1]
    return torch.cat(out, dim=1).cpu()
