"""Mamba-2 state space duality (SSD): the selective scan with scalar-times-identity A per head.

Per head, with state ``h`` of shape ``(P, N)``::

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * x_t (outer) B_t
    y_t = h_t @ C_t + D * x_t,   then   y_t *= silu(z_t)

``ssd_recurrent_reference`` runs this recurrence one step at a time. ``ssd_chunked_reference``
computes the same thing with the chunked SSD algorithm of the Mamba-2 paper (section 6): split
the sequence into chunks, do the quadratic ("attention-like") form inside each chunk, carry a
state between chunks. ``ssd_scan`` dispatches to the Triton kernels or the chunked reference.

Packed sequences: where ``seq_idx`` changes between ``t-1`` and ``t`` the state is reset to zero
before step ``t``. ``initial_state`` is the state before step 0 and belongs to the first packed
sequence; the final state is the state after the last step (of the last packed sequence).
All references accumulate in float32 (float64 for float64 inputs) and return ``y`` in the dtype of ``x`` and states in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._dispatch import resolve_backend
from ._utils import accumulation_dtype, check_shape, segment_ids

__all__ = ["ssd_scan", "ssd_step", "ssd_chunked_reference", "ssd_recurrent_reference"]


def _check_ssd_args(x, dt, A, B, C, D, z, initial_state, seq_idx) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be (batch, length, heads, headdim), got shape {tuple(x.shape)}")
    b, L, h, p = x.shape
    if B.dim() != 4:
        raise ValueError(f"B must be (batch, length, groups, dstate), got shape {tuple(B.shape)}")
    g, n = B.shape[2:]
    if h % g != 0:
        raise ValueError(f"the number of groups ({g}) must divide the number of heads ({h})")
    check_shape("dt", dt, (b, L, h))
    check_shape("A", A, (h,))
    check_shape("B", B, (b, L, g, n))
    check_shape("C", C, (b, L, g, n))
    check_shape("D", D, (h,))
    check_shape("z", z, (b, L, h, p))
    check_shape("initial_state", initial_state, (b, h, p, n))
    check_shape("seq_idx", seq_idx, (b, L))


class _PassStates(torch.autograd.Function):
    """``S_0 = own_0``, ``S_z = carry_z S_{z-1} + own_z``: the state after each chunk, from each
    chunk's own state ``own`` (b, c+1, ...) and the decay ``carry`` (b, c, ..., 1, 1) that takes
    a state through chunk z. A loop over chunks with its gradient written out: through autograd,
    each step of the loop would cost a node and a full-size gradient buffer in the backward pass."""

    @staticmethod
    def forward(ctx, own: torch.Tensor, carry: torch.Tensor) -> torch.Tensor:
        states = own.clone()
        for z in range(1, own.shape[1]):
            states[:, z].addcmul_(carry[:, z - 1], states[:, z - 1])
        ctx.save_for_backward(states, carry)
        return states

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states, carry = ctx.saved_tensors
        grad_own = grad.clone()  # dL/dS_z through every later state: dL/dS_z + carry_{z+1} dL/dS_{z+1}
        for z in range(grad.shape[1] - 1, 0, -1):
            grad_own[:, z - 1].addcmul_(carry[:, z - 1], grad_own[:, z])
        grad_carry = (grad_own[:, 1:] * states[:, :-1]).sum((-2, -1), keepdim=True)
        return grad_own, grad_carry


def ssd_chunked_reference(x, dt, A, B, C, chunk_size=64, D=None, z=None, initial_state=None, seq_idx=None,
                          return_final_state=False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The chunked SSD algorithm in plain PyTorch: :func:`ssd_scan`'s reference backend, with its
    arguments (but ``backend``; see the module docstring for the semantics)."""
    _check_ssd_args(x, dt, A, B, C, D, z, initial_state, seq_idx)
    batch, L, nheads, headdim = x.shape
    ngroups, dstate = B.shape[2:]
    out_dtype = x.dtype
    seg = segment_ids(seq_idx) if seq_idx is not None else x.new_zeros((batch, L), dtype=torch.int32)

    # Pad to whole chunks. Padded steps have dt = 0 (no decay, no input) and stay in the last
    # segment, so they change neither the outputs we keep nor the final state.
    pad = (-L) % chunk_size
    acc = accumulation_dtype(x)
    xf, dtf, Bf, Cf = (t.to(acc) for t in (x, dt, B, C))
    if pad:
        xf, Bf, Cf = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (xf, Bf, Cf))
        dtf = F.pad(dtf, (0, 0, 0, pad))
        seg = torch.cat([seg, seg[:, -1:].expand(batch, pad)], dim=1)
    nchunks = (L + pad) // chunk_size

    # Heads as (groups, heads of the group): a group's heads share B and C, so what depends on
    # B and C alone (C_i.B_j inside a chunk) is computed once per group, not once per head.
    k = nheads // ngroups
    chunked = lambda t: t.reshape(batch, nchunks, chunk_size, *t.shape[2:])  # noqa: E731  (b, c*l, ...) -> (b, c, l, ...)
    xdt = chunked(xf * dtf[..., None]).view(batch, nchunks, chunk_size, ngroups, k, headdim)
    xdt = xdt.permute(0, 1, 3, 4, 2, 5)  # (b, c, g, k, l, p)
    Bc, Cc = (chunked(t).transpose(2, 3) for t in (Bf, Cf))  # (b, c, g, l, n)
    segc = chunked(seg)  # (b, c, l)
    dA = chunked(dtf * A.to(acc)).view(batch, nchunks, chunk_size, ngroups, k).permute(0, 1, 3, 4, 2)  # (b, c, g, k, l)
    dA_cumsum = torch.cumsum(dA, dim=-1)

    # 1. Within each chunk: y_i += sum_{j <= i} C_i.B_j exp(dA_{j+1} + ... + dA_i) dt_j x_j, the
    #    decay a difference of cumulative sums (as Mamba-2's kernels form it), 0 across sequences.
    same = torch.tril(segc[..., :, None] == segc[..., None, :])[:, :, None, None]  # (b, c, 1, 1, l, l)
    decay = torch.exp((dA_cumsum[..., :, None] - dA_cumsum[..., None, :]).masked_fill(~same, float("-inf")))
    CB = Cc @ Bc.transpose(-1, -2)  # (b, c, g, l, l), once per group
    y_diag = (decay * CB[:, :, :, None]) @ xdt  # (b, c, g, k, l, p)

    # 2. The state each chunk leaves behind from its own inputs (those in its last segment).
    in_last_segment = (segc == segc[..., -1:]).to(acc)[:, :, None, None]  # (b, c, 1, 1, l)
    decay_to_end = torch.exp(dA_cumsum[..., -1:] - dA_cumsum) * in_last_segment  # (b, c, g, k, l)
    chunk_states = (xdt * decay_to_end[..., None]).transpose(-1, -2) @ Bc[:, :, :, None]  # (b, c, g, k, p, n)

    # 3. Pass states across chunks, one chunk after the other: S_z = exp(dA over chunk z) S_{z-1}
    #    + own_z, the carry zeroed where a sequence starts (linear in the number of chunks; the
    #    all-pairs form of the paper is quadratic in it).
    if initial_state is None:
        initial_state = xf.new_zeros(batch, nheads, headdim, dstate)
    states = torch.cat([initial_state.to(acc).view(batch, 1, ngroups, k, headdim, dstate), chunk_states], dim=1)
    seg_end = torch.cat([seg[:, :1], segc[..., -1]], dim=1)  # segment of each state: (b, c+1)
    carry = torch.exp(dA_cumsum[..., -1]) * (seg_end[:, 1:] == seg_end[:, :-1]).to(acc)[:, :, None, None]  # (b, c, g, k)
    states = _PassStates.apply(states, carry[..., None, None])  # (b, c+1, g, k, p, n)
    incoming, final_state = states[:, :-1], states[:, -1].reshape(batch, nheads, headdim, dstate)

    # 4. The incoming state's contribution to each output (same sequence only).
    uses_incoming = (segc == seg_end[:, :-1, None]).to(acc)[:, :, None, None]  # (b, c, 1, 1, l)
    y_off = (Cc[:, :, :, None] @ incoming.transpose(-1, -2)) * (torch.exp(dA_cumsum) * uses_incoming)[..., None]

    y = (y_diag + y_off).permute(0, 1, 4, 2, 3, 5).reshape(batch, nchunks * chunk_size, nheads, headdim)[:, :L]
    y = _skip_and_gate(y, x, D, z)
    return y.to(out_dtype), (final_state if return_final_state else None)


def _skip_and_gate(y: torch.Tensor, x: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """``y + D x``, then ``* silu(z)``, in the accumulation dtype of ``y``."""
    if D is not None:
        y = y + x.to(y.dtype) * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def ssd_step(
    state: torch.Tensor,
    x_t: torch.Tensor,
    dt_t: torch.Tensor,
    A: torch.Tensor,
    B_t: torch.Tensor,
    C_t: torch.Tensor,
    D: torch.Tensor | None = None,
    z_t: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One recurrent step for decoding; returns ``(y_t (B, H, P), new_state (B, H, P, N))``.

    ``state`` (B, H, P, N), ``x_t`` (B, H, P), ``dt_t`` (B, H), ``A`` (H,), ``B_t``/``C_t``
    (B, G, N), ``D`` (H,), ``z_t`` (B, H, P). Computes in float32; ``y_t`` has the dtype of
    ``x_t`` and the new state that of ``state``. Pure function: ``state`` is not modified.
    """
    batch, nheads, headdim = x_t.shape
    ngroups, dstate = B_t.shape[1:]
    check_shape("state", state, (batch, nheads, headdim, dstate))
    check_shape("dt_t", dt_t, (batch, nheads))
    check_shape("C_t", C_t, (batch, ngroups, dstate))
    if nheads % ngroups != 0:
        raise ValueError(f"the number of groups ({ngroups}) must divide the number of heads ({nheads})")
    rep = nheads // ngroups
    acc = accumulation_dtype(state)
    Bh = B_t.to(acc).repeat_interleave(rep, dim=1)  # (b, h, n)
    Ch = C_t.to(acc).repeat_interleave(rep, dim=1)
    dtf = dt_t.to(acc)
    decay = torch.exp(dtf * A.to(acc))  # (b, h)
    new_state = decay[..., None, None] * state.to(acc) + (dtf[..., None] * x_t.to(acc))[..., None] * Bh[:, :, None, :]
    y = torch.einsum("bhpn,bhn->bhp", new_state, Ch)
    y = _skip_and_gate(y, x_t, D, z_t)
    return y.to(x_t.dtype), new_state.to(state.dtype)


def ssd_recurrent_reference(x, dt, A, B, C, chunk_size=None, D=None, z=None, initial_state=None, seq_idx=None,
                            return_final_state=False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The SSD recurrence step by step: slow, obviously right. :func:`ssd_scan`'s arguments (but
    ``backend``); ``chunk_size`` is ignored."""
    _check_ssd_args(x, dt, A, B, C, D, z, initial_state, seq_idx)
    batch, L, nheads, headdim = x.shape
    dstate = B.shape[-1]
    state = x.new_zeros(batch, nheads, headdim, dstate, dtype=accumulation_dtype(x))
    if initial_state is not None:
        state = initial_state.to(state.dtype)
    ys = []
    for t in range(L):
        if seq_idx is not None and t > 0:
            keep = (seq_idx[:, t] == seq_idx[:, t - 1]).to(state.dtype)
            state = state * keep[:, None, None, None]
        z_t = z[:, t] if z is not None else None
        y_t, state = ssd_step(state, x[:, t], dt[:, t], A, B[:, t], C[:, t], D, z_t)
        ys.append(y_t)
    y = torch.stack(ys, dim=1).to(x.dtype)
    return y, (state if return_final_state else None)


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 64,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    return_final_state: bool = False,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mamba-2 SSD over a whole sequence; returns ``(y, final_state or None)``.

    Shapes: ``x`` (B, L, H, P), ``dt`` (B, L, H) positive step sizes, ``A`` (H,) negative,
    ``B``/``C`` (B, L, G, N) with G dividing H, ``D`` (H,), ``z`` (B, L, H, P),
    ``initial_state`` (B, H, P, N), ``seq_idx`` (B, L) integer packed-sequence ids.
    ``y`` has the dtype of ``x``; the final state (B, H, P, N) is float32. Differentiable with
    respect to every floating-point input. ``backend`` overrides the automatic choice
    (see :mod:`genoseq.kernels`).
    """
    _check_ssd_args(x, dt, A, B, C, D, z, initial_state, seq_idx)
    args = (x, dt, A, B, C, chunk_size, D, z, initial_state, seq_idx, return_final_state)
    if resolve_backend(backend, x, dt, A, B, C, D, z, initial_state) == "triton":
        from .ssd_triton import ssd_scan_triton

        return ssd_scan_triton(*args)
    return ssd_chunked_reference(*args)
