"""Triton kernels for the causal depthwise short convolution (forward and backward).

One program handles a tile of (positions x channels) of one batch row; the K taps are an
unrolled loop of shifted loads, so the whole op is a single pass over ``x``. Inputs before
position 0 come from the initial state, and a tap is dropped when it crosses a packed-sequence
boundary (segment ids differ). The backward recomputes the pre-activation (no activations are
saved), reduces the weight and bias gradients per tile (summed over tiles afterwards) and
computes ``dx`` and the initial-state gradient with the mirrored taps.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._utils import final_conv_state, segment_ids


@triton.jit
def _tap(x_ptr, init_ptr, seg_ptr, pid_b, src, seg_t, offs_d, valid_t, valid_d,
         s_x_b, s_x_l, s_x_d, s_i_b, s_i_d, s_i_k, s_seg_b, s_seg_l,
         WIDTH: tl.constexpr, HAS_INIT: tl.constexpr, HAS_SEG: tl.constexpr):
    """The input at positions ``src`` (possibly negative: the initial state), masked by segment."""
    mask = valid_t[:, None] & valid_d[None, :]
    v = tl.load(x_ptr + pid_b * s_x_b + src[:, None] * s_x_l + offs_d[None, :] * s_x_d,
                mask=mask & (src[:, None] >= 0), other=0.0).to(tl.float32)
    if HAS_INIT:
        v += tl.load(init_ptr + pid_b * s_i_b + offs_d[None, :] * s_i_d + (src[:, None] + WIDTH - 1) * s_i_k,
                     mask=mask & (src[:, None] < 0), other=0.0).to(tl.float32)
    if HAS_SEG:
        seg_s = tl.load(seg_ptr + pid_b * s_seg_b + tl.maximum(src, 0) * s_seg_l, mask=valid_t, other=-1)
        v = tl.where((seg_s == seg_t)[:, None], v, 0.0)
    return v


@triton.jit
def _tile(seg_ptr, seqlen, dim, s_seg_b, s_seg_l,
          BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, HAS_SEG: tl.constexpr):
    """This program's tile of one batch row: its positions and channels with their bounds masks,
    and the positions' segment ids (0 without packed sequences)."""
    pid_b, pid_l, pid_d = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_t = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    valid_t, valid_d = offs_t < seqlen, offs_d < dim
    seg_t = 0
    if HAS_SEG:
        seg_t = tl.load(seg_ptr + pid_b * s_seg_b + offs_t * s_seg_l, mask=valid_t, other=0)
    return pid_b, pid_l, offs_t, offs_d, valid_t, valid_d, seg_t


@triton.jit
def _preactivation(x_ptr, w_ptr, bias_ptr, init_ptr, seg_ptr, pid_b, offs_t, seg_t, offs_d, valid_t, valid_d,
                   s_x_b, s_x_l, s_x_d, s_w_d, s_w_k, s_i_b, s_i_d, s_i_k, s_seg_b, s_seg_l,
                   WIDTH: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
                   HAS_BIAS: tl.constexpr, HAS_INIT: tl.constexpr, HAS_SEG: tl.constexpr):
    """The convolution before its activation over the tile, in float32: bias + the K taps times
    their weights (the forward's output, and what the backward recomputes)."""
    acc = tl.zeros((BLOCK_L, BLOCK_D), dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_d, mask=valid_d, other=0.0).to(tl.float32)[None, :]
    for k in tl.static_range(WIDTH):
        v = _tap(x_ptr, init_ptr, seg_ptr, pid_b, offs_t - (WIDTH - 1) + k, seg_t, offs_d, valid_t, valid_d,
                 s_x_b, s_x_l, s_x_d, s_i_b, s_i_d, s_i_k, s_seg_b, s_seg_l, WIDTH, HAS_INIT, HAS_SEG)
        w = tl.load(w_ptr + offs_d * s_w_d + k * s_w_k, mask=valid_d, other=0.0).to(tl.float32)
        acc += v * w[None, :]
    return acc


@triton.jit
def _conv_fwd_kernel(
    x_ptr, w_ptr, bias_ptr, seg_ptr, init_ptr, out_ptr,
    seqlen, dim,
    s_x_b, s_x_l, s_x_d, s_w_d, s_w_k, s_seg_b, s_seg_l, s_i_b, s_i_d, s_i_k, s_o_b, s_o_l, s_o_d,
    WIDTH: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_SEG: tl.constexpr, HAS_INIT: tl.constexpr, SILU: tl.constexpr,
):
    pid_b, pid_l, offs_t, offs_d, valid_t, valid_d, seg_t = _tile(seg_ptr, seqlen, dim, s_seg_b, s_seg_l,
                                                                  BLOCK_L, BLOCK_D, HAS_SEG)
    acc = _preactivation(x_ptr, w_ptr, bias_ptr, init_ptr, seg_ptr, pid_b, offs_t, seg_t, offs_d, valid_t, valid_d,
                         s_x_b, s_x_l, s_x_d, s_w_d, s_w_k, s_i_b, s_i_d, s_i_k, s_seg_b, s_seg_l,
                         WIDTH, BLOCK_L, BLOCK_D, HAS_BIAS, HAS_INIT, HAS_SEG)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(out_ptr + pid_b * s_o_b + offs_t[:, None] * s_o_l + offs_d[None, :] * s_o_d,
             acc.to(out_ptr.dtype.element_ty), mask=valid_t[:, None] & valid_d[None, :])


@triton.jit
def _conv_bwd_weight_kernel(
    x_ptr, w_ptr, bias_ptr, seg_ptr, init_ptr, dy_ptr, du_ptr, dw_ptr, db_ptr,
    seqlen, dim,
    s_x_b, s_x_l, s_x_d, s_w_d, s_w_k, s_seg_b, s_seg_l, s_i_b, s_i_d, s_i_k, s_dy_b, s_dy_l, s_dy_d,
    s_dw_b, s_dw_l, s_dw_d, s_dw_k, s_db_b, s_db_l,
    WIDTH: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_SEG: tl.constexpr, HAS_INIT: tl.constexpr, SILU: tl.constexpr,
):
    """Gradient of the pre-activation (stored when there is an activation) and per-tile dw, db."""
    pid_b, pid_l, offs_t, offs_d, valid_t, valid_d, seg_t = _tile(seg_ptr, seqlen, dim, s_seg_b, s_seg_l,
                                                                  BLOCK_L, BLOCK_D, HAS_SEG)
    mask = valid_t[:, None] & valid_d[None, :]
    du = tl.load(dy_ptr + pid_b * s_dy_b + offs_t[:, None] * s_dy_l + offs_d[None, :] * s_dy_d, mask=mask, other=0.0).to(tl.float32)
    if SILU:  # recompute the pre-activation u, then du = dy * silu'(u)
        u = _preactivation(x_ptr, w_ptr, bias_ptr, init_ptr, seg_ptr, pid_b, offs_t, seg_t, offs_d, valid_t, valid_d,
                           s_x_b, s_x_l, s_x_d, s_w_d, s_w_k, s_i_b, s_i_d, s_i_k, s_seg_b, s_seg_l,
                           WIDTH, BLOCK_L, BLOCK_D, HAS_BIAS, HAS_INIT, HAS_SEG)
        sig = tl.sigmoid(u)
        du = du * sig * (1.0 + u * (1.0 - sig))
        tl.store(du_ptr + pid_b * seqlen * dim + offs_t[:, None] * dim + offs_d[None, :], du, mask=mask)

    part = dw_ptr + pid_b * s_dw_b + pid_l * s_dw_l + offs_d * s_dw_d
    if HAS_BIAS:
        tl.store(db_ptr + pid_b * s_db_b + pid_l * s_db_l + offs_d, tl.sum(du, axis=0), mask=valid_d)
    for k in tl.static_range(WIDTH):
        v = _tap(x_ptr, init_ptr, seg_ptr, pid_b, offs_t - (WIDTH - 1) + k, seg_t, offs_d, valid_t, valid_d,
                 s_x_b, s_x_l, s_x_d, s_i_b, s_i_d, s_i_k, s_seg_b, s_seg_l, WIDTH, HAS_INIT, HAS_SEG)
        tl.store(part + k * s_dw_k, tl.sum(du * v, axis=0), mask=valid_d)


@triton.jit
def _conv_bwd_input_kernel(
    du_ptr, w_ptr, seg_ptr, dx_ptr, dinit_ptr,
    seqlen, dim,
    s_du_b, s_du_l, s_du_d, s_w_d, s_w_k, s_seg_b, s_seg_l, s_dx_b, s_dx_l, s_dx_d, s_di_b, s_di_d, s_di_k,
    WIDTH: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr, HAS_SEG: tl.constexpr, HAS_INIT: tl.constexpr,
):
    """dx_s = sum_k w_k du_{s + K-1-k} (same sequence); positions s < 0 are the initial state."""
    pid_b, pid_l, pid_d = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_s = pid_l * BLOCK_L + tl.arange(0, BLOCK_L) - (WIDTH - 1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    valid_s, valid_d = offs_s < seqlen, offs_d < dim
    if HAS_SEG:
        seg_s = tl.load(seg_ptr + pid_b * s_seg_b + tl.maximum(offs_s, 0) * s_seg_l, mask=valid_s, other=-1)
    acc = tl.zeros((BLOCK_L, BLOCK_D), dtype=tl.float32)
    for k in tl.static_range(WIDTH):
        t = offs_s + (WIDTH - 1) - k
        valid_t = (t >= 0) & (t < seqlen)
        if HAS_SEG:
            seg_t = tl.load(seg_ptr + pid_b * s_seg_b + t * s_seg_l, mask=valid_t, other=-2)
            valid_t &= seg_t == seg_s
        du = tl.load(du_ptr + pid_b * s_du_b + t[:, None] * s_du_l + offs_d[None, :] * s_du_d,
                     mask=valid_t[:, None] & valid_d[None, :], other=0.0).to(tl.float32)
        acc += du * tl.load(w_ptr + offs_d * s_w_d + k * s_w_k, mask=valid_d, other=0.0).to(tl.float32)[None, :]
    in_x = (offs_s >= 0) & valid_s
    tl.store(dx_ptr + pid_b * s_dx_b + offs_s[:, None] * s_dx_l + offs_d[None, :] * s_dx_d,
             acc.to(dx_ptr.dtype.element_ty), mask=in_x[:, None] & valid_d[None, :])
    if HAS_INIT:
        in_init = offs_s < 0
        tl.store(dinit_ptr + pid_b * s_di_b + offs_d[None, :] * s_di_d + (offs_s[:, None] + WIDTH - 1) * s_di_k,
                 acc.to(dinit_ptr.dtype.element_ty), mask=in_init[:, None] & valid_d[None, :])


_BLOCK_L, _BLOCK_D = 64, 64


def _common_args(x, weight, seg, initial_state):
    seg_strides = (seg.stride(0), seg.stride(1)) if seg is not None else (0, 0)
    init_strides = initial_state.stride() if initial_state is not None else (0, 0, 0)
    return (*x.stride(), *weight.stride(), *seg_strides, *init_strides)


def _block_d(dim: int) -> int:
    return min(_BLOCK_D, max(16, triton.next_power_of_2(dim)))


class _CausalConv1d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, initial_state, seg, silu):
        batch, seqlen, dim = x.shape
        width = weight.shape[1]
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        block_d = _block_d(dim)
        grid = (batch, triton.cdiv(seqlen, _BLOCK_L), triton.cdiv(dim, block_d))
        _conv_fwd_kernel[grid](
            x, weight, bias if bias is not None else weight, seg if seg is not None else x,
            initial_state if initial_state is not None else x, out,
            seqlen, dim, *_common_args(x, weight, seg, initial_state), *out.stride(),
            WIDTH=width, BLOCK_L=_BLOCK_L, BLOCK_D=block_d,
            HAS_BIAS=bias is not None, HAS_SEG=seg is not None, HAS_INIT=initial_state is not None, SILU=silu,
        )
        ctx.silu = silu
        ctx.save_for_backward(x, weight, bias, initial_state, seg)
        return out

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias, initial_state, seg = ctx.saved_tensors
        batch, seqlen, dim = x.shape
        width = weight.shape[1]
        block_d = _block_d(dim)
        n_l = triton.cdiv(seqlen, _BLOCK_L)
        dw_part = torch.empty(batch, n_l, dim, width, dtype=torch.float32, device=x.device)
        db_part = torch.empty(batch, n_l, dim, dtype=torch.float32, device=x.device)
        du = torch.empty(x.shape, dtype=torch.float32, device=x.device) if ctx.silu else dy
        placeholder = x
        _conv_bwd_weight_kernel[(batch, n_l, triton.cdiv(dim, block_d))](
            x, weight, bias if bias is not None else weight, seg if seg is not None else placeholder,
            initial_state if initial_state is not None else placeholder, dy, du, dw_part, db_part,
            seqlen, dim, *_common_args(x, weight, seg, initial_state), *dy.stride(), *dw_part.stride(), db_part.stride(0), db_part.stride(1),
            WIDTH=width, BLOCK_L=_BLOCK_L, BLOCK_D=block_d,
            HAS_BIAS=bias is not None, HAS_SEG=seg is not None, HAS_INIT=initial_state is not None, SILU=ctx.silu,
        )
        dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        dinit = torch.empty_like(initial_state) if initial_state is not None else None
        seg_strides = (seg.stride(0), seg.stride(1)) if seg is not None else (0, 0)
        _conv_bwd_input_kernel[(batch, triton.cdiv(seqlen + width - 1, _BLOCK_L), triton.cdiv(dim, block_d))](
            du, weight, seg if seg is not None else placeholder, dx, dinit if dinit is not None else placeholder,
            seqlen, dim, *du.stride(), *weight.stride(), *seg_strides, *dx.stride(),
            *(dinit.stride() if dinit is not None else (0, 0, 0)),
            WIDTH=width, BLOCK_L=_BLOCK_L, BLOCK_D=block_d, HAS_SEG=seg is not None, HAS_INIT=dinit is not None,
        )
        dweight = dw_part.sum((0, 1)).to(weight.dtype)
        dbias = db_part.sum((0, 1)).to(bias.dtype) if bias is not None else None
        return dx, dweight, dbias, dinit, None, None


def causal_conv1d_triton(x, weight, bias=None, activation=None, seq_idx=None, initial_state=None,
                         return_final_state=False):
    """The Triton implementation behind :func:`genoseq.kernels.causal_conv1d` (same arguments)."""
    seg = segment_ids(seq_idx) if seq_idx is not None else None
    if initial_state is not None and initial_state.shape[-1] == 0:
        initial_state = None  # kernel size 1: nothing to carry
    y = _CausalConv1d.apply(x, weight, bias, initial_state, seg, activation == "silu")
    final_state = final_conv_state(x, initial_state, seg, weight.shape[1]) if return_final_state else None
    return y, final_state
