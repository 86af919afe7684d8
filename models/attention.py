"""Causal attention: rotary positions, grouped-query heads, full or sliding-window, in O(L) memory.

Three paths, chosen per call:

* full causal attention over one sequence per row: PyTorch's ``scaled_dot_product_attention``
  with ``is_causal`` (flash attention on CUDA and on the CPU: no L x L matrix is formed);
* a sliding window (``attention_window``) or packed rows (``seq_idx``): :func:`blockwise_attention`,
  queries in blocks of ``QUERY_BLOCK`` that each attend only to the keys they may see, so memory
  and compute grow with ``L * (window + block)``, never ``L**2``. SDPA's fused kernels (flash on
  the CPU, memory-efficient on CUDA) keep only each block's output and log-sum-exp for the
  backward pass, so memory is linear in L without recomputation; with dropout (SDPA's math path,
  which keeps the probabilities) each block is checkpointed instead;
* an inference cache: keys and values of earlier calls are kept (``AttentionCache``) and new
  queries attend to them (a sliding window masks the older ones).

A window of ``w`` lets position ``t`` see positions ``t - w + 1 .. t`` (itself included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from genoseq.kernels import causal_conv1d, segment_ids

from .config import ModelConfig
from .tensor_utils import positions_in_segment, select_rows, to_acc

QUERY_BLOCK = 512  # queries per block of the blockwise path
INDUCTION_LOGIT = 32.0  # an induction-initialised head's expected score for a query whose whole k-mer matches a key


@dataclass
class AttentionCache:
    max_len: int
    k: torch.Tensor | None = None  # (B, H_kv, max_len, d)
    v: torch.Tensor | None = None
    conv_state: torch.Tensor | None = None  # (B, qkv channels, attention_conv - 1) with attention_conv

    def select(self, rows: torch.Tensor) -> "AttentionCache":
        """A cache whose row ``j`` is a copy of row ``rows[j]`` of this one."""
        return AttentionCache(self.max_len, select_rows(self.k, rows), select_rows(self.v, rows),
                              select_rows(self.conv_state, rows))


def apply_rotary(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[:r/2], x[r/2:r]) of ``x`` (B, H, L, d) by ``positions`` (L,) or (B, L), where
    r = 2 * len(inv_freq) <= d; the last d - r dimensions pass unchanged."""
    rot = 2 * inv_freq.numel()
    if rot == 0:
        return x
    if rot < x.shape[-1]:
        return torch.cat([apply_rotary(x[..., :rot], positions, inv_freq), x[..., rot:]], dim=-1)
    angles = to_acc(positions)[..., None] * inv_freq  # (..., L, d/2)
    if angles.dim() == 3:  # per-row positions: broadcast over heads
        angles = angles[:, None]
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = to_acc(x).chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


def visible(query_pos: torch.Tensor, key_pos: torch.Tensor, window: int | None, sink: int = 0) -> torch.Tensor:
    """(Lq, Lk) bool: which keys each query may attend to: causal, within ``window`` if set, and
    the first ``sink`` positions always (LM-Infinite's Lambda-shaped mask)."""
    mask = key_pos[None, :] <= query_pos[:, None]
    if window is not None:
        mask &= (key_pos[None, :] > query_pos[:, None] - window) | (key_pos[None, :] < sink)
    return mask


def _masked_sdpa(q, k, v, mask, dropout_p: float):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def blockwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, window: int | None = None,
                        seg: torch.Tensor | None = None, sink: int = 0, dropout_p: float = 0.0,
                        block: int = QUERY_BLOCK) -> torch.Tensor:
    """Causal attention of ``q``, ``k``, ``v`` (B, H, L, d) computed ``block`` queries at a time.

    Each block of queries sees the keys from the earliest one any of its queries may attend to
    (``window`` back, or its packed sequence's start given by ``seg`` (B, L) segment numbers)
    up to its last query, and the first ``sink`` keys of the row (with a window; not with
    ``seg``). Exactly softmax attention; working memory ``O(block * (window + sink + block))``
    per block. With dropout each block is recomputed in the backward pass; otherwise SDPA's fused
    kernel keeps O(block) per block for it (recomputing every block made a training step of the
    long recipe's model 15-20% slower at 32k-131k tokens on a CPU, for 4-6% less peak memory).
    """
    if sink and seg is not None:
        raise ValueError("attention sinks apply to unpacked rows only")
    L = q.shape[2]
    pos = torch.arange(L, device=q.device)
    seg_start = None if seg is None else pos - positions_in_segment(seg)  # (B, L)
    recompute = dropout_p > 0 and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    outputs = []
    for s in range(0, L, block):
        e = min(s + block, L)
        lo = 0 if window is None else max(0, s - window + 1)
        if seg_start is not None:
            lo = max(lo, int(seg_start[:, s].min()))
        if window is not None and sink >= lo:
            lo = 0
        keys = pos[lo:e]
        kb, vb = k[:, :, lo:e], v[:, :, lo:e]
        if window is not None and 0 < sink < lo:  # the sink keys, then the window's
            keys = torch.cat([pos[:sink], keys])
            kb, vb = torch.cat([k[:, :, :sink], kb], dim=2), torch.cat([v[:, :, :sink], vb], dim=2)
        mask = visible(pos[s:e], keys, window, sink)
        if seg is not None:
            mask = mask & (seg[:, s:e, None] == seg[:, None, lo:e])[:, None]  # (B, 1, Lq, Lk)
        args = (q[:, :, s:e], kb, vb, mask, dropout_p)
        outputs.append(checkpoint(_masked_sdpa, *args, use_reentrant=False) if recompute else _masked_sdpa(*args))
    return torch.cat(outputs, dim=2)


def identity_taps(channels: int, width: int) -> torch.Tensor:
    """Conv weights (channels, width) that pass every channel through unchanged."""
    weight = torch.zeros(channels, width)
    weight[:, -1] = 1.0
    return weight


def induction_taps(n_heads: int, n_kv_heads: int, head_dim: int, width: int) -> torch.Tensor:
    """Conv weights over the q, k, v channels (the layout of ``Attention.qkv``) that make a k-mer
    induction head: the channels of every query head in ``width - 1`` groups, group ``a`` seeing
    the base ``a`` positions back; key heads alike, one position further back; values unchanged.
    Channels left over by the split see the current base. Tap ``width - 1 - a`` is delay ``a``."""
    groups = width - 1
    size = head_dim // groups
    delay = torch.zeros(head_dim, dtype=torch.long)
    delay[: groups * size] = torch.arange(groups * size) // size
    shifted = torch.where(torch.arange(head_dim) < groups * size, delay + 1, delay)
    delays = torch.cat([delay.repeat(n_heads), shifted.repeat(n_kv_heads), torch.zeros(n_kv_heads * head_dim, dtype=torch.long)])
    weight = torch.zeros(delays.numel(), width)
    weight[torch.arange(delays.numel()), width - 1 - delays] = 1.0
    return weight


class WindowedAttention(nn.Module):
    """What every attention layer of every model family has: ``window`` (attend to at most the last
    ``window`` positions; None: all) and ``sink`` (the first positions every query also sees), which
    :func:`genoseq.models.inference.limit_attention` sets for a call."""

    window: int | None = None
    sink: int = 0


class Attention(WindowedAttention):
    """Causal multi-head attention with rotary embeddings (on ``rope_fraction`` of each head),
    optional grouped-query heads, an optional short conv over q, k, v (``attention_conv``) and an
    optional sliding window (``window`` positions, the query's own included)."""

    def __init__(self, cfg: ModelConfig, window: int | None = None) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads = cfg.n_heads, cfg.kv_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.dropout = cfg.dropout
        self.window = window
        self.sink = 0  # first positions every query also sees (inference only: see models.inference.limit_attention)
        self.qkv = nn.Linear(cfg.d_model, (self.n_heads + 2 * self.n_kv_heads) * self.head_dim, bias=False)
        self.conv_weight = None
        self.init_style = cfg.attention_init
        if cfg.attention_conv:  # the conv learns which earlier bases to mix in; its start: reset_special_parameters
            self.conv_weight = nn.Parameter(identity_taps(self.qkv.out_features, cfg.attention_conv))
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        rot = 2 * round(cfg.rope_fraction * self.head_dim / 2)  # rotated dimensions of each head
        inv_freq = cfg.rope_base ** (-torch.arange(0, rot, 2, dtype=torch.float32) / max(rot, 1))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.reset_special_parameters()

    def reset_special_parameters(self) -> None:
        """The ``attention_init`` start (after the backbone's N(0, 0.02) of every projection)."""
        if self.conv_weight is None:
            return
        with torch.no_grad():
            self.conv_weight.copy_(induction_taps(self.n_heads, self.n_kv_heads, self.head_dim, self.conv_weight.shape[1])
                                   if self.init_style == "induction" else identity_taps(*self.conv_weight.shape))
            if self.init_style == "induction":
                q_rows, kv_rows = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
                d_model = self.qkv.in_features
                # the inputs are normed (entries ~1): a query entry ~ c, a head's full-match score ~ c^2 sqrt(head_dim)
                c = (INDUCTION_LOGIT / self.head_dim ** 0.5) ** 0.5
                q = self.qkv.weight[:q_rows].normal_(0.0, c / d_model ** 0.5)
                first_of_group = torch.arange(self.n_kv_heads) * (self.n_heads // self.n_kv_heads)
                self.qkv.weight[q_rows : q_rows + kv_rows] = q.view(self.n_heads, self.head_dim, -1)[first_of_group].reshape(kv_rows, -1)

    def new_cache(self, max_len: int | None) -> AttentionCache:
        if max_len is None:
            raise ValueError("an attention layer's cache needs max_len (the longest sequence it will hold)")
        return AttentionCache(max_len)

    def forward(self, x, seq_idx=None, cache: AttentionCache | None = None, offset: int = 0, cp=None):
        B, L, _ = x.shape
        qkv = self.qkv(x)
        n_q, n_kv = self.n_heads, self.n_kv_heads
        if cp is not None:  # sequence-sharded -> this rank's heads over the whole sequence
            streams = [n * self.head_dim for n in (n_q, n_kv, n_kv)]
            qkv = cp.seq_to_channels(qkv, streams)
            n_q, n_kv, L = n_q // cp.size, n_kv // cp.size, qkv.shape[1]
            if self.conv_weight is not None:
                qkv = causal_conv1d(qkv, cp.channel_slice(self.conv_weight, streams))
        elif self.conv_weight is not None:
            qkv = self._conv(qkv, seq_idx, cache)
        # the conv hands back channels-first strides: a head's dimensions must be contiguous, or
        # SDPA leaves its flash kernel for the math one and forms the L x L matrix (23 GiB at 32k)
        qkv = qkv.contiguous()
        q, k, v = qkv.split([n_q * self.head_dim, n_kv * self.head_dim, n_kv * self.head_dim], dim=-1)
        q, k, v = (t.view(B, L, -1, self.head_dim).transpose(1, 2) for t in (q, k, v))

        seg = None
        if seq_idx is not None:
            if cache is not None:
                raise ValueError("packed sequences (seq_idx) cannot be combined with an inference cache")
            seg = segment_ids(seq_idx)
            positions = positions_in_segment(seg)
        else:
            positions = torch.arange(offset, offset + L, device=x.device)
        q = apply_rotary(q, positions, self.inv_freq)
        k = apply_rotary(k, positions, self.inv_freq)

        if cache is not None:
            k, v, mask, causal = self._extend_cache(cache, k, v, offset)
        if n_kv != n_q:
            k, v = k.repeat_interleave(n_q // n_kv, dim=1), v.repeat_interleave(n_q // n_kv, dim=1)
        dropout_p = self.dropout if self.training else 0.0
        if cache is not None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout_p)
        elif seg is not None or (self.window is not None and self.window < L):
            y = blockwise_attention(q, k, v, window=self.window, seg=seg, sink=0 if seg is not None else self.sink,
                                    dropout_p=dropout_p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=L > 1, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(B, L, -1)
        if cp is not None:
            y = cp.channels_to_seq(y)
        return self.out_proj(y)

    def _conv(self, qkv: torch.Tensor, seq_idx, cache: AttentionCache | None) -> torch.Tensor:
        """The short conv over ``qkv`` (B, L, C); with a cache, continuing from its last inputs."""
        if cache is None:
            return causal_conv1d(qkv, self.conv_weight, seq_idx=seq_idx)
        if cache.conv_state is None:
            cache.conv_state = qkv.new_zeros(qkv.shape[0], qkv.shape[2], self.conv_weight.shape[1] - 1)
        qkv, cache.conv_state = causal_conv1d(qkv, self.conv_weight, initial_state=cache.conv_state,
                                              return_final_state=True)
        return qkv

    def _extend_cache(self, cache: AttentionCache, k, v, offset: int):
        """Write the new keys and values at ``offset``; the keys, values, mask and ``is_causal`` to attend with."""
        B, L = k.shape[0], k.shape[2]
        if offset + L > cache.max_len:
            raise ValueError(f"attention cache holds {cache.max_len} positions; got {offset + L}")
        if cache.k is None:
            cache.k = k.new_zeros(B, self.n_kv_heads, cache.max_len, self.head_dim)
            cache.v = v.new_zeros(B, self.n_kv_heads, cache.max_len, self.head_dim)
        cache.k[:, :, offset : offset + L] = k
        cache.v[:, :, offset : offset + L] = v
        k, v = cache.k[:, :, : offset + L], cache.v[:, :, : offset + L]
        within_window = self.window is None or self.window >= offset + L
        if offset == 0 and within_window:
            return k, v, None, L > 1
        if L == 1 and within_window:  # one query after the cache: it sees every cached key
            return k, v, None, False
        # queries at offset.. see the cached keys up to their own position (and within the window)
        mask = visible(torch.arange(offset, offset + L, device=k.device), torch.arange(offset + L, device=k.device),
                       self.window, self.sink)
        return k, v, mask, False
