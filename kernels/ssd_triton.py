"""Triton kernels for the Mamba-2 SSD chunked scan (forward and backward).

The forward is the SSD decomposition in three kernels, one program per (batch, chunk, head, tile):

1. ``_chunk_state_kernel``: the cumulative log-decay inside the chunk and the state each chunk
   leaves behind from its own inputs, ``sum_s exp(a_last - a_s) dt_s x_s (outer) B_s``;
2. ``_state_passing_kernel``: a short sequential loop over chunks turning those into the state
   entering every chunk (and the final state), resetting at packed-sequence boundaries;
3. ``_chunk_scan_kernel``: each chunk's outputs, the masked quadratic form ``(C B^T * decay) @ x``
   plus the incoming state read out through ``C``, then the ``D`` skip and the ``silu(z)`` gate.

All three run on :func:`ssd_core`, a scan with a free log-decay ``dA`` and input scale. The
backward reuses it (no separate backward kernels): the gradient of the state runs the same scan
backwards in time (the adjoint), and ``dB``/``dC`` are scans with the roles of ``x`` and ``B``
swapped. The log-decay gradient follows from the identity

    d loss / d dA_t = sum_{l >= t} (dy_l . y_l - dt_l x_l . dxdt_l)   (within t's sequence)
                      + <d final_state, final_state>                 (if t is in the last one)

where ``dxdt = d loss / d (dt x)``; it is accumulated in float64 so long sequences stay accurate.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._dispatch import triton_interpreting
from ._utils import segment_ids

_HALF = (torch.float16, torch.bfloat16)


@triton.jit
def _dot(a, b, FP32: tl.constexpr):
    """``a @ b`` accumulated in float32: IEEE float32 products, or in the operands' half type."""
    if FP32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b.to(a.dtype))


@triton.jit
def _chunk_state_kernel(
    x_ptr, dA_ptr, scale_ptr, b_ptr, seg_ptr, states_ptr,
    seqlen, headdim, dstate, heads_per_group_b,
    s_x_b, s_x_l, s_x_h, s_x_p,
    s_dA_b, s_dA_l, s_dA_h,
    s_sc_b, s_sc_l, s_sc_h,
    s_b_b, s_b_l, s_b_g, s_b_n,
    s_seg_b, s_seg_l,
    s_st_b, s_st_c, s_st_h, s_st_p, s_st_n,
    CHUNK: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_SCALE: tl.constexpr, HAS_SEG: tl.constexpr, FP32: tl.constexpr,
):
    pid_bc, pid_h, pid_pn = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    nchunks = tl.cdiv(seqlen, CHUNK)
    pid_b, pid_c = pid_bc // nchunks, pid_bc % nchunks
    n_blocks_n = tl.cdiv(dstate, BLOCK_N)
    pid_p, pid_n = pid_pn // n_blocks_n, pid_pn % n_blocks_n

    offs_l = pid_c * CHUNK + tl.arange(0, CHUNK)
    valid_l = offs_l < seqlen
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)

    dA = tl.load(dA_ptr + pid_b * s_dA_b + pid_h * s_dA_h + offs_l * s_dA_l, mask=valid_l, other=0.0)
    a = tl.cumsum(dA, axis=0)
    weight = tl.exp(tl.sum(dA, axis=0) - a)  # decay from each position to the end of the chunk
    if HAS_SCALE:
        weight *= tl.load(scale_ptr + pid_b * s_sc_b + pid_h * s_sc_h + offs_l * s_sc_l, mask=valid_l, other=0.0).to(tl.float32)
    if HAS_SEG:  # only the chunk's last sequence reaches its end
        last = tl.minimum(pid_c * CHUNK + CHUNK, seqlen) - 1
        seg = tl.load(seg_ptr + pid_b * s_seg_b + offs_l * s_seg_l, mask=valid_l, other=-1)
        seg_last = tl.load(seg_ptr + pid_b * s_seg_b + last * s_seg_l)
        weight = tl.where(seg == seg_last, weight, 0.0)
    weight = tl.where(valid_l, weight, 0.0)

    x = tl.load(
        x_ptr + pid_b * s_x_b + pid_h * s_x_h + offs_l[:, None] * s_x_l + offs_p[None, :] * s_x_p,
        mask=valid_l[:, None] & (offs_p[None, :] < headdim), other=0.0,
    )
    group = pid_h // heads_per_group_b
    Bm = tl.load(
        b_ptr + pid_b * s_b_b + group * s_b_g + offs_l[:, None] * s_b_l + offs_n[None, :] * s_b_n,
        mask=valid_l[:, None] & (offs_n[None, :] < dstate), other=0.0,
    )
    xw = (x.to(tl.float32) * weight[:, None]).to(x.dtype)
    state = _dot(tl.trans(xw), Bm, FP32)  # (P, N)
    tl.store(
        states_ptr + pid_b * s_st_b + pid_c * s_st_c + pid_h * s_st_h + offs_p[:, None] * s_st_p + offs_n[None, :] * s_st_n,
        state, mask=(offs_p[:, None] < headdim) & (offs_n[None, :] < dstate),
    )


@triton.jit
def _state_passing_kernel(
    states_ptr, dA_ptr, seg_ptr, init_ptr, final_ptr,
    seqlen, statesize,
    s_st_b, s_st_c, s_st_h,
    s_dA_b, s_dA_l, s_dA_h,
    s_seg_b, s_seg_l,
    s_init_b, s_init_h,
    s_fin_b, s_fin_h,
    CHUNK: tl.constexpr, BLOCK: tl.constexpr, HAS_INIT: tl.constexpr, HAS_SEG: tl.constexpr,
):
    """In place: the per-chunk local states become the states entering each chunk."""
    pid_b, pid_h, pid_m = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs = pid_m * BLOCK + tl.arange(0, BLOCK)
    mask = offs < statesize
    if HAS_INIT:
        state = tl.load(init_ptr + pid_b * s_init_b + pid_h * s_init_h + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        state = tl.zeros((BLOCK,), dtype=tl.float32)
    seg_prev = 0
    if HAS_SEG:
        seg_prev = tl.load(seg_ptr + pid_b * s_seg_b)  # the initial state belongs to the first sequence
    nchunks = tl.cdiv(seqlen, CHUNK)
    for c in range(nchunks):
        offs_l = c * CHUNK + tl.arange(0, CHUNK)
        dA = tl.load(dA_ptr + pid_b * s_dA_b + pid_h * s_dA_h + offs_l * s_dA_l, mask=offs_l < seqlen, other=0.0)
        decay = tl.exp(tl.sum(dA, axis=0))
        if HAS_SEG:
            seg_last = tl.load(seg_ptr + pid_b * s_seg_b + (tl.minimum(c * CHUNK + CHUNK, seqlen) - 1) * s_seg_l)
            decay = tl.where(seg_last == seg_prev, decay, 0.0)
            seg_prev = seg_last
        ptrs = states_ptr + pid_b * s_st_b + c * s_st_c + pid_h * s_st_h + offs
        local = tl.load(ptrs, mask=mask, other=0.0)
        tl.store(ptrs, state, mask=mask)
        state = state * decay + local
    tl.store(final_ptr + pid_b * s_fin_b + pid_h * s_fin_h + offs, state, mask=mask)


@triton.jit
def _tile(ptr, rows, s_rows, row_ok, cols, s_cols, col_ok):
    """Load the (rows, cols) tile at ``ptr`` with the given strides; zeros outside the masks."""
    return tl.load(ptr + rows[:, None] * s_rows + cols[None, :] * s_cols, mask=row_ok[:, None] & col_ok[None, :], other=0.0)


@triton.jit
def _chunk_scan_kernel(
    x_ptr, dA_ptr, scale_ptr, b_ptr, c_ptr, seg_ptr, states_ptr, d_ptr, z_ptr, out_ptr, ssm_ptr,
    seqlen, headdim, dstate, heads_per_group_b, heads_per_group_c,
    s_x_b, s_x_l, s_x_h, s_x_p,
    s_dA_b, s_dA_l, s_dA_h,
    s_sc_b, s_sc_l, s_sc_h,
    s_b_b, s_b_l, s_b_g, s_b_n,
    s_c_b, s_c_l, s_c_g, s_c_n,
    s_seg_b, s_seg_l,
    s_st_b, s_st_c, s_st_h, s_st_p, s_st_n,
    s_z_b, s_z_l, s_z_h, s_z_p,
    s_o_b, s_o_l, s_o_h, s_o_p,
    CHUNK: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_SCALE: tl.constexpr, HAS_SEG: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    STORE_SSM: tl.constexpr, FP32: tl.constexpr,
):
    pid_bc, pid_h, pid_p = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    nchunks = tl.cdiv(seqlen, CHUNK)
    pid_b, pid_c = pid_bc // nchunks, pid_bc % nchunks
    offs_l = pid_c * CHUNK + tl.arange(0, CHUNK)
    valid_l = offs_l < seqlen
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    valid_p = offs_p < headdim
    offs_n = tl.arange(0, BLOCK_N)
    valid_n = offs_n < dstate

    dA = tl.load(dA_ptr + pid_b * s_dA_b + pid_h * s_dA_h + offs_l * s_dA_l, mask=valid_l, other=0.0)
    a = tl.cumsum(dA, axis=0)

    Cm = _tile(c_ptr + pid_b * s_c_b + (pid_h // heads_per_group_c) * s_c_g, offs_l, s_c_l, valid_l, offs_n, s_c_n, valid_n)
    Bm = _tile(b_ptr + pid_b * s_b_b + (pid_h // heads_per_group_b) * s_b_g, offs_l, s_b_l, valid_l, offs_n, s_b_n, valid_n)
    x = _tile(x_ptr + pid_b * s_x_b + pid_h * s_x_h, offs_l, s_x_l, valid_l, offs_p, s_x_p, valid_p)

    # Inside the chunk: y_l = sum_{s <= l, same sequence} (C_l . B_s) exp(a_l - a_s) dt_s x_s.
    keep = offs_l[:, None] >= offs_l[None, :]
    incoming = tl.exp(a)  # how much of the state entering the chunk is left at each position
    if HAS_SEG:
        seg = tl.load(seg_ptr + pid_b * s_seg_b + offs_l * s_seg_l, mask=valid_l, other=-1)
        keep &= seg[:, None] == seg[None, :]
        seg_in = tl.load(seg_ptr + pid_b * s_seg_b + tl.maximum(pid_c * CHUNK - 1, 0) * s_seg_l)
        incoming = tl.where(seg == seg_in, incoming, 0.0)
    scores = _dot(Cm, tl.trans(Bm), FP32)
    scores *= tl.exp(tl.where(keep, a[:, None] - a[None, :], float("-inf")))
    if HAS_SCALE:
        scores *= tl.load(scale_ptr + pid_b * s_sc_b + pid_h * s_sc_h + offs_l * s_sc_l, mask=valid_l, other=0.0).to(tl.float32)[None, :]
    y = _dot(scores.to(x.dtype), x, FP32)

    # The state entering the chunk, read out through C.
    prev = _tile(states_ptr + pid_b * s_st_b + pid_c * s_st_c + pid_h * s_st_h, offs_n, s_st_n, valid_n, offs_p, s_st_p, valid_p)
    y += _dot(Cm, prev.to(Cm.dtype), FP32) * incoming[:, None]

    io_mask = valid_l[:, None] & valid_p[None, :]
    if STORE_SSM:
        tl.store(ssm_ptr + pid_b * s_o_b + pid_h * s_o_h + offs_l[:, None] * s_o_l + offs_p[None, :] * s_o_p, y, mask=io_mask)
    if HAS_D:
        y += tl.load(d_ptr + pid_h).to(tl.float32) * x.to(tl.float32)
    if HAS_Z:
        z = _tile(z_ptr + pid_b * s_z_b + pid_h * s_z_h, offs_l, s_z_l, valid_l, offs_p, s_z_p, valid_p).to(tl.float32)
        y *= z * tl.sigmoid(z)
    tl.store(
        out_ptr + pid_b * s_o_b + pid_h * s_o_h + offs_l[:, None] * s_o_l + offs_p[None, :] * s_o_p,
        y.to(out_ptr.dtype.element_ty), mask=io_mask,
    )


def _block(n: int, cap: int) -> int:
    return min(max(16, triton.next_power_of_2(n)), cap)


def ssd_core(
    x: torch.Tensor,
    dA: torch.Tensor,
    scale: torch.Tensor | None,
    B: torch.Tensor,
    C: torch.Tensor,
    seg: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    chunk_size: int,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    store_ssm: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``h_t = exp(dA_t) h_{t-1} + scale_t x_t B_t^T``, ``y_t = h_t C_t`` (+ D x, * silu(z)).

    ``x`` (b, L, h, p); ``dA`` (b, L, h) float32 log-decays; ``scale`` (b, L, h) or None;
    ``B`` (b, L, gb, n) and ``C`` (b, L, gc, n) with gb and gc dividing h; ``seg`` (b, L) int32
    non-increasing or non-decreasing segment ids or None. Returns ``(y, y_ssm, final_state)``:
    ``y`` in ``out_dtype``, ``y_ssm`` the float32 output before ``D`` and ``z`` (if
    ``store_ssm``), ``final_state`` (b, h, p, n) float32.
    """
    batch, seqlen, nheads, headdim = x.shape
    dstate = B.shape[-1]
    nchunks = triton.cdiv(seqlen, chunk_size)
    # Half-precision operands use half tensor-core dots (float32 accumulation). Triton's CPU
    # interpreter computes bfloat16 dots wrongly (triton 3.x), so it always gets float32 dots.
    fp32 = triton_interpreting() or not (x.dtype in _HALF and B.dtype == x.dtype and C.dtype == x.dtype)
    block_p, block_n = _block(headdim, 64), _block(dstate, 64)
    full_n = _block(dstate, 256)
    if full_n < dstate:
        raise ValueError(f"the Triton SSD kernel supports dstate up to 256, got {dstate}")

    states = torch.empty(batch, nchunks, nheads, headdim, dstate, device=x.device, dtype=torch.float32)
    final = torch.empty(batch, nheads, headdim, dstate, device=x.device, dtype=torch.float32)
    sc = scale if scale is not None else dA  # placeholder pointer when there is no scale
    sg = seg if seg is not None else dA
    seg_strides = (seg.stride(0), seg.stride(1)) if seg is not None else (0, 0)

    grid = (batch * nchunks, nheads, triton.cdiv(headdim, block_p) * triton.cdiv(dstate, block_n))
    _chunk_state_kernel[grid](
        x, dA, sc, B, sg, states,
        seqlen, headdim, dstate, nheads // B.shape[2],
        *x.stride(), *dA.stride(), *sc.stride(), *B.stride(), *seg_strides, *states.stride(),
        CHUNK=chunk_size, BLOCK_P=block_p, BLOCK_N=block_n,
        HAS_SCALE=scale is not None, HAS_SEG=seg is not None, FP32=fp32,
    )

    statesize = headdim * dstate
    block = min(triton.next_power_of_2(statesize), 1024)
    init = initial_state.contiguous() if initial_state is not None else final
    _state_passing_kernel[(batch, nheads, triton.cdiv(statesize, block))](
        states, dA, sg, init, final,
        seqlen, statesize,
        states.stride(0), states.stride(1), states.stride(2),
        *dA.stride(), *seg_strides,
        init.stride(0), init.stride(1), final.stride(0), final.stride(1),
        CHUNK=chunk_size, BLOCK=block, HAS_INIT=initial_state is not None, HAS_SEG=seg is not None,
    )

    out = torch.empty(x.shape, device=x.device, dtype=out_dtype or x.dtype)
    ssm = torch.empty(x.shape, device=x.device, dtype=torch.float32) if store_ssm else out
    zz = z if z is not None else x
    block_p_scan = _block(headdim, 64 if full_n <= 128 else 32)
    _chunk_scan_kernel[(batch * nchunks, nheads, triton.cdiv(headdim, block_p_scan))](
        x, dA, sc, B, C, sg, states, D if D is not None else dA, zz, out, ssm,
        seqlen, headdim, dstate, nheads // B.shape[2], nheads // C.shape[2],
        *x.stride(), *dA.stride(), *sc.stride(), *B.stride(), *C.stride(), *seg_strides,
        *states.stride(), *zz.stride(), *out.stride(),
        CHUNK=chunk_size, BLOCK_P=block_p_scan, BLOCK_N=full_n,
        HAS_SCALE=scale is not None, HAS_SEG=seg is not None, HAS_D=D is not None, HAS_Z=z is not None,
        STORE_SSM=store_ssm, FP32=fp32,
    )
    return out, (ssm if store_ssm else None), final


def _per_group(t: torch.Tensor, ngroups: int) -> torch.Tensor:
    """Sum a per-head tensor (b, L, h, n) over the heads of each group -> (b, L, g, n)."""
    b, L, h, n = t.shape
    return t.reshape(b, L, ngroups, h // ngroups, n).sum(3)


def _segmented_reverse_cumsum(v: torch.Tensor, seg: torch.Tensor | None) -> torch.Tensor:
    """``out[:, t] = sum of v[:, l]`` over ``l >= t`` in the same segment; ``v`` is (b, L, h)."""
    total = torch.flip(torch.cumsum(torch.flip(v, [1]), dim=1), [1])
    if seg is None:
        return total
    # Subtract what lies beyond the end of each position's segment.
    ends = torch.searchsorted(seg.contiguous(), seg.contiguous(), right=True)  # first index of the next segment
    padded = torch.cat([total, total.new_zeros(total.shape[0], 1, total.shape[2])], dim=1)
    beyond = torch.gather(padded, 1, ends.long()[..., None].expand(-1, -1, v.shape[2]))
    return total - beyond


class _SSDScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, z, initial_state, seg, chunk_size):
        dA = (dt.float() * A.float()).contiguous()
        y, y_ssm, final = ssd_core(
            x, dA, dt, B, C, seg, initial_state, chunk_size, D=D, z=z, store_ssm=any(ctx.needs_input_grad)
        )
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(x, dt, A, B, C, D, z, initial_state, seg, dA, y_ssm, final)
        return y, final

    @staticmethod
    def backward(ctx, dy, dfinal):
        x, dt, A, B, C, D, z, initial_state, seg, dA, y_ssm, final = ctx.saved_tensors
        chunk = ctx.chunk_size
        batch, seqlen, nheads, headdim = x.shape
        ngroups = B.shape[2]
        rep = nheads // ngroups
        dtf, xf = dt.float(), x.float()

        # Undo the gate and the skip: dy_ssm is the gradient of the scan's own output.
        dy = dy.float()
        dz = dD = None
        if z is not None:
            zf = z.float()
            gate = torch.sigmoid(zf)
            y_pre = y_ssm + (D.float()[:, None] * xf if D is not None else 0.0)
            dz = (dy * y_pre * gate * (1 + zf * (1 - gate))).to(z.dtype)
            dy = dy * zf * gate
        if D is not None:
            dD = (dy * xf).sum((0, 1, 3)).to(D.dtype)
        dy_in = dy.to(x.dtype) if x.dtype in _HALF else dy

        def rev(t):
            return None if t is None else torch.flip(t, [1])

        # The adjoint: the state gradient g_t = dy_t C_t^T + exp(dA_{t+1}) g_{t+1}, backwards in time.
        dA_adj = torch.zeros_like(dA)
        dA_adj[:, 1:] = rev(dA)[:, :-1]
        seg_rev = rev(seg)
        dxdt_rev, _, g0 = ssd_core(rev(dy_in), dA_adj, None, rev(C), rev(B), seg_rev, dfinal, chunk, out_dtype=torch.float32)
        dxdt = rev(dxdt_rev)  # d loss / d (dt x)
        dx = dxdt * dtf[..., None]
        if D is not None:
            dx = dx + dy * D.float()[:, None]
        d_init = None
        if initial_state is not None:
            d_init = (torch.exp(dA[:, 0])[..., None, None] * g0).to(initial_state.dtype)

        # dC_t = h_t^T dy_t: the forward scan with x and B swapped.
        B_heads = B.repeat_interleave(rep, dim=2)
        init_t = initial_state.transpose(-1, -2) if initial_state is not None else None
        dC, _, _ = ssd_core(B_heads, dA, dt, x, dy_in, seg, init_t, chunk, out_dtype=torch.float32)
        dC = _per_group(dC, ngroups)

        # dB_t = dt_t g_t^T x_t: the adjoint with x and B swapped.
        C_heads = C.repeat_interleave(rep, dim=2)
        dfinal_t = dfinal.transpose(-1, -2) if dfinal is not None else None
        dB_rev, _, _ = ssd_core(rev(C_heads), dA_adj, None, rev(dy_in), rev(x), seg_rev, dfinal_t, chunk, out_dtype=torch.float32)
        dB = _per_group(rev(dB_rev) * dtf[..., None], ngroups)

        # Log-decay gradient (module docstring), in float64 to keep the long sums accurate.
        x_dxdt = (xf * dxdt).sum(-1)
        v = (dy * y_ssm).sum(-1).double() - (dtf * x_dxdt).double()
        ddA = _segmented_reverse_cumsum(v, seg)
        if dfinal is not None:
            in_last = (seg == seg[:, -1:]) if seg is not None else torch.ones_like(dtf, dtype=torch.bool)[..., 0]
            ddA = ddA + (dfinal.double() * final.double()).sum((-1, -2))[:, None, :] * in_last[..., None]
        ddA = ddA.float()
        ddt = ddA * A.float() + x_dxdt
        dA_param = (ddA * dtf).sum((0, 1))
        return (dx.to(x.dtype), ddt.to(dt.dtype), dA_param.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
                dD, dz, d_init, None, None)


def ssd_scan_triton(
    x, dt, A, B, C, chunk_size=64, D=None, z=None, initial_state=None, seq_idx=None, return_final_state=False
):
    """The Triton implementation behind :func:`genoseq.kernels.ssd_scan` (same arguments)."""
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"the Triton SSD kernel needs a power-of-two chunk_size >= 16, got {chunk_size}")
    seg = segment_ids(seq_idx) if seq_idx is not None else None
    y, final = _SSDScan.apply(x, dt, A, B, C, D, z, initial_state, seg, chunk_size)
    return y, (final if return_final_state else None)
