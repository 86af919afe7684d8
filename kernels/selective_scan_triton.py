"""Triton kernels for the Mamba-1 selective scan (forward and backward).

One program per (batch row, block of channels) walks the sequence in order with the state
``h`` (channels x dstate) in registers, as mamba_ssm's CUDA kernel does per thread block:

- ``_scan_fwd_kernel``: ``h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t``, ``y_t = C_t . h_t``,
  then ``+ D u_t`` and ``* silu(z_t)``, with ``delta_bias`` and softplus applied on the fly. When
  a gradient is needed it also keeps the float32 output before ``D`` and ``z`` and the state
  entering every chunk of ``CHUNK`` steps (a checkpoint: ``dstate`` floats per channel and chunk).
- ``_scan_bwd_kernel``: walks the chunks backwards. For each it recomputes the chunk's states
  from its checkpoint into a small per-program scratch buffer, then runs the adjoint
  ``g_t = exp(delta_{t+1} A) g_{t+1} + dy_t C_t`` (the gradient of ``h_t``) backwards through
  the chunk, from which every gradient follows step by step:
  ``du_t = delta_t (g_t . B_t)``, ``d delta_t = u_t (g_t . B_t) + sum_n A g_t exp(delta_t A) h_{t-1}``,
  ``dA += delta_t g_t exp(delta_t A) h_{t-1}``, ``dB_t = sum_d delta_t u_t g_t``,
  ``dC_t = sum_d dy_t h_t``.

``dB`` and ``dC`` are sums over channels: each program writes its block's partial sums and
PyTorch adds them up (deterministic, no atomics). A block never straddles a group of ``B`` or of
``C``. The gate, the skip and the softplus of ``delta`` are differentiated in PyTorch around the
kernel from the saved pre-gate output.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .selective_scan import _as_groups

_CHUNK = 64  # steps between checkpoints (the backward's scratch holds one chunk of states)


@triton.jit
def _step_size(delta_ptrs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """``softplus(delta + bias)`` (each optional) in float32, 0 where ``mask`` is off."""
    dt = tl.load(delta_ptrs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += bias
    if SOFTPLUS:
        dt = tl.maximum(dt, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(dt)))
    return tl.where(mask, dt, 0.0)


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, bias_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, out_ptr, ssm_ptr, ckpt_ptr,
    dim, seqlen, dstate, seg_channels, blocks_per_seg, b_channels, c_channels,
    s_b_b, s_b_g, s_b_n, s_b_l,
    s_c_b, s_c_g, s_c_n, s_c_l,
    CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    SAVE: tl.constexpr,
):
    pid_b, pid = tl.program_id(0), tl.program_id(1)
    first = (pid // blocks_per_seg) * seg_channels  # first channel of this block's segment
    local = (pid % blocks_per_seg) * BLOCK_D + tl.arange(0, BLOCK_D)
    valid_d = local < seg_channels
    offs_d = first + local
    offs_n = tl.arange(0, BLOCK_N)
    valid_n = offs_n < dstate
    valid_dn = valid_d[:, None] & valid_n[None, :]

    A = tl.load(a_ptr + offs_d[:, None] * dstate + offs_n[None, :], mask=valid_dn, other=0.0).to(tl.float32)
    bias = tl.load(bias_ptr + offs_d, mask=valid_d, other=0.0).to(tl.float32) if HAS_BIAS else 0.0
    skip = tl.load(d_ptr + offs_d, mask=valid_d, other=0.0).to(tl.float32) if HAS_D else 0.0
    pid_b = pid_b.to(tl.int64)  # offsets of long sequences overflow int32
    row = (pid_b * dim + offs_d) * seqlen  # offsets of (batch, channel, 0) in u, delta, z, out
    b_row = b_ptr + pid_b * s_b_b + (first // b_channels) * s_b_g + offs_n * s_b_n
    c_row = c_ptr + pid_b * s_c_b + (first // c_channels) * s_c_g + offs_n * s_c_n
    nchunks = tl.cdiv(seqlen, CHUNK)
    ckpt_rows = ckpt_ptr + ((pid_b * dim + offs_d[:, None]) * nchunks) * dstate + offs_n[None, :]

    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for k in range(nchunks):
        if SAVE:
            tl.store(ckpt_rows + k * dstate, h, mask=valid_dn)
        for t in range(k * CHUNK, tl.minimum(k * CHUNK + CHUNK, seqlen)):
            u = tl.load(u_ptr + row + t, mask=valid_d, other=0.0).to(tl.float32)
            dt = _step_size(delta_ptr + row + t, valid_d, bias, HAS_BIAS, SOFTPLUS)
            B_t = tl.load(b_row + t * s_b_l, mask=valid_n, other=0.0).to(tl.float32)
            C_t = tl.load(c_row + t * s_c_l, mask=valid_n, other=0.0).to(tl.float32)
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * B_t[None, :]
            y = tl.sum(h * C_t[None, :], axis=1)
            if SAVE:
                tl.store(ssm_ptr + row + t, y, mask=valid_d)
            if HAS_D:
                y += skip * u
            if HAS_Z:
                z = tl.load(z_ptr + row + t, mask=valid_d, other=0.0).to(tl.float32)
                y *= z * tl.sigmoid(z)
            tl.store(out_ptr + row + t, y.to(out_ptr.dtype.element_ty), mask=valid_d)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, bias_ptr, a_ptr, b_ptr, c_ptr, dy_ptr, ckpt_ptr, scratch_ptr,
    du_ptr, ddelta_ptr, da_ptr, db_ptr, dc_ptr,
    dim, seqlen, dstate, seg_channels, blocks_per_seg, b_channels, c_channels,
    s_b_b, s_b_g, s_b_n, s_b_l,
    s_c_b, s_c_g, s_c_n, s_c_l,
    CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):
    pid_b, pid = tl.program_id(0), tl.program_id(1)
    pid_b = pid_b.to(tl.int64)  # offsets of long sequences overflow int32
    program = pid_b * tl.num_programs(1) + pid
    first = (pid // blocks_per_seg) * seg_channels
    local = (pid % blocks_per_seg) * BLOCK_D + tl.arange(0, BLOCK_D)
    valid_d = local < seg_channels
    offs_d = first + local
    offs_n = tl.arange(0, BLOCK_N)
    valid_n = offs_n < dstate
    valid_dn = valid_d[:, None] & valid_n[None, :]

    A = tl.load(a_ptr + offs_d[:, None] * dstate + offs_n[None, :], mask=valid_dn, other=0.0).to(tl.float32)
    bias = tl.load(bias_ptr + offs_d, mask=valid_d, other=0.0).to(tl.float32) if HAS_BIAS else 0.0
    row = (pid_b * dim + offs_d) * seqlen
    b_row = b_ptr + pid_b * s_b_b + (first // b_channels) * s_b_g + offs_n * s_b_n
    c_row = c_ptr + pid_b * s_c_b + (first // c_channels) * s_c_g + offs_n * s_c_n
    part_row = (program * dstate + offs_n) * seqlen  # this program's partial sums of dB and dC
    nchunks = tl.cdiv(seqlen, CHUNK)
    ckpt_rows = ckpt_ptr + ((pid_b * dim + offs_d[:, None]) * nchunks) * dstate + offs_n[None, :]
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]
    scratch = scratch_ptr + program * (CHUNK + 1) * BLOCK_D * BLOCK_N + tile  # slot i: the state before step i
    g = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # d loss / d h_t
    decay_next = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # exp(delta_{t+1} A)
    dA = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for kk in range(nchunks):
        k = nchunks - 1 - kk
        h = tl.load(ckpt_rows + k * dstate, mask=valid_dn, other=0.0)
        tl.store(scratch, h)
        steps = tl.minimum(seqlen - k * CHUNK, CHUNK)
        for i in range(steps):  # recompute the chunk's states
            t = k * CHUNK + i
            u = tl.load(u_ptr + row + t, mask=valid_d, other=0.0).to(tl.float32)
            dt = _step_size(delta_ptr + row + t, valid_d, bias, HAS_BIAS, SOFTPLUS)
            B_t = tl.load(b_row + t * s_b_l, mask=valid_n, other=0.0).to(tl.float32)
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * B_t[None, :]
            tl.store(scratch + (i + 1) * BLOCK_D * BLOCK_N, h)
        tl.debug_barrier()
        for ii in range(steps):  # the adjoint, backwards through the chunk
            i = steps - 1 - ii
            t = k * CHUNK + i
            u = tl.load(u_ptr + row + t, mask=valid_d, other=0.0).to(tl.float32)
            dt = _step_size(delta_ptr + row + t, valid_d, bias, HAS_BIAS, SOFTPLUS)
            dy = tl.load(dy_ptr + row + t, mask=valid_d, other=0.0)
            B_t = tl.load(b_row + t * s_b_l, mask=valid_n, other=0.0).to(tl.float32)
            C_t = tl.load(c_row + t * s_c_l, mask=valid_n, other=0.0).to(tl.float32)
            h = tl.load(scratch + (i + 1) * BLOCK_D * BLOCK_N)
            h_prev = tl.load(scratch + i * BLOCK_D * BLOCK_N)
            g = g * decay_next + dy[:, None] * C_t[None, :]
            decay = tl.exp(dt[:, None] * A)
            d_log_decay = g * decay * h_prev  # d loss / d (delta_t A)
            g_b = tl.sum(g * B_t[None, :], axis=1)
            tl.store(du_ptr + row + t, g_b * dt, mask=valid_d)
            tl.store(ddelta_ptr + row + t, g_b * u + tl.sum(d_log_decay * A, axis=1), mask=valid_d)
            tl.store(db_ptr + part_row + t, tl.sum(g * (dt * u)[:, None], axis=0), mask=valid_n)
            tl.store(dc_ptr + part_row + t, tl.sum(h * dy[:, None], axis=0), mask=valid_n)
            dA += d_log_decay * dt[:, None]
            decay_next = decay
        tl.debug_barrier()
    tl.store(da_ptr + (pid_b * dim + offs_d[:, None]) * dstate + offs_n[None, :], dA, mask=valid_dn)


class _Layout:
    """How channels map to programs: blocks of ``block_d`` channels inside segments that lie
    within one group of ``B`` and one group of ``C``."""

    def __init__(self, dim: int, dstate: int, b_groups: int, c_groups: int):
        self.b_channels, self.c_channels = dim // b_groups, dim // c_groups
        self.seg_channels = math.gcd(self.b_channels, self.c_channels)
        self.segments = dim // self.seg_channels
        self.block_d = min(triton.next_power_of_2(self.seg_channels), 16)
        self.block_n = max(triton.next_power_of_2(dstate), 2)
        if self.block_n > 256:
            raise ValueError(f"the Triton selective scan supports dstate up to 256, got {dstate}")
        self.blocks_per_seg = triton.cdiv(self.seg_channels, self.block_d)
        self.programs = self.segments * self.blocks_per_seg

    def args(self) -> tuple[int, ...]:
        return self.seg_channels, self.blocks_per_seg, self.b_channels, self.c_channels

    def per_group(self, partial: torch.Tensor, groups: int) -> torch.Tensor:
        """Partial sums (b, programs, N, L) -> (b, groups, N, L)."""
        b, _, n, L = partial.shape
        per_segment = partial.reshape(b, self.segments, self.blocks_per_seg, n, L).sum(2)
        return per_segment.reshape(b, groups, self.segments // groups, n, L).sum(2)


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus):
        u, delta, A = u.contiguous(), delta.contiguous(), A.contiguous()
        D, z, delta_bias = (t.contiguous() if t is not None else None for t in (D, z, delta_bias))
        B4, C4 = _as_groups(B), _as_groups(C)
        batch, dim, seqlen = u.shape
        layout = _Layout(dim, A.shape[1], B4.shape[1], C4.shape[1])
        save = any(ctx.needs_input_grad)
        chunk = min(_CHUNK, max(seqlen, 1))
        out = torch.empty_like(u)
        ssm = torch.empty(u.shape, device=u.device, dtype=torch.float32) if save else out
        nchunks = triton.cdiv(seqlen, chunk)
        ckpt = torch.empty(batch, dim, nchunks, A.shape[1], device=u.device, dtype=torch.float32) if save else out
        _scan_fwd_kernel[(batch, layout.programs)](
            u, delta, delta_bias if delta_bias is not None else u, A, B4, C4,
            D if D is not None else u, z if z is not None else u, out, ssm, ckpt,
            dim, seqlen, A.shape[1], *layout.args(), *B4.stride(), *C4.stride(),
            CHUNK=chunk, BLOCK_D=layout.block_d, BLOCK_N=layout.block_n,
            HAS_BIAS=delta_bias is not None, SOFTPLUS=softplus, HAS_D=D is not None, HAS_Z=z is not None,
            SAVE=save, num_warps=1,
        )
        ctx.layout, ctx.softplus, ctx.chunk, ctx.b_dim = layout, softplus, chunk, B.dim()
        ctx.c_dim = C.dim()
        ctx.save_for_backward(u, delta, A, B4, C4, D, z, delta_bias, ssm if save else None, ckpt if save else None)
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B4, C4, D, z, delta_bias, ssm, ckpt = ctx.saved_tensors
        layout, chunk = ctx.layout, ctx.chunk
        batch, dim, seqlen = u.shape
        uf, dy = u.float(), dout.float()
        dz = dD = None
        if z is not None:  # undo the gate, then the skip: dy becomes d loss / d (C . h)
            zf = z.float()
            gate = torch.sigmoid(zf)
            pre_gate = ssm + (D.float()[:, None] * uf if D is not None else 0.0)
            dz = (dy * pre_gate * gate * (1 + zf * (1 - gate))).to(z.dtype)
            dy = dy * zf * gate
        if D is not None:
            dD = (dy * uf).sum((0, 2)).to(D.dtype)
        dy = dy.contiguous()

        du = torch.empty(u.shape, device=u.device, dtype=torch.float32)
        ddt = torch.empty_like(du)
        dA = torch.empty(batch, dim, A.shape[1], device=u.device, dtype=torch.float32)
        db_part = torch.empty(batch, layout.programs, A.shape[1], seqlen, device=u.device, dtype=torch.float32)
        dc_part = torch.empty_like(db_part)
        scratch = torch.empty(batch * layout.programs * (chunk + 1) * layout.block_d * layout.block_n,
                              device=u.device, dtype=torch.float32)
        _scan_bwd_kernel[(batch, layout.programs)](
            u, delta, delta_bias if delta_bias is not None else u, A, B4, C4, dy, ckpt, scratch,
            du, ddt, dA, db_part, dc_part,
            dim, seqlen, A.shape[1], *layout.args(), *B4.stride(), *C4.stride(),
            CHUNK=chunk, BLOCK_D=layout.block_d, BLOCK_N=layout.block_n,
            HAS_BIAS=delta_bias is not None, SOFTPLUS=ctx.softplus, num_warps=1,
        )
        if D is not None:
            du += dy * D.float()[:, None]
        if ctx.softplus:  # d softplus(x) / dx = sigmoid(x)
            raw = delta.float() + (delta_bias.float()[:, None] if delta_bias is not None else 0.0)
            ddt = ddt * torch.sigmoid(raw)
        d_bias = ddt.sum((0, 2)).to(delta_bias.dtype) if delta_bias is not None else None
        dB = layout.per_group(db_part, B4.shape[1])
        dC = layout.per_group(dc_part, C4.shape[1])
        if ctx.b_dim == 3:
            dB = dB[:, 0]
        if ctx.c_dim == 3:
            dC = dC[:, 0]
        return (du.to(u.dtype), ddt.to(delta.dtype), dA.sum(0).to(A.dtype), dB.to(B4.dtype), dC.to(C4.dtype),
                dD, dz, d_bias, None)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The Triton implementation behind :func:`genoseq.kernels.selective_scan` (same arguments)."""
    return _SelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))
