"""Mamba-1 selective scan (the S6 layer of Mamba and Caduceus' BiMamba), channels-first.

Per channel ``d`` with a real diagonal ``A[d]`` of size N and input-dependent ``B_t``, ``C_t``::

    delta_t = softplus(delta_t + delta_bias)      (bias and softplus optional)
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t        (h: N values, h_{-1} = 0)
    y_t = C_t . h_t + D * u_t,   then   y_t *= silu(z_t)

exactly mamba_ssm's ``selective_scan_fn``. ``B`` and ``C`` are shared by all channels
(``(batch, N, L)``) or by the channels of a group (``(batch, groups, N, L)``, channel ``d`` in group
``d // (dim / groups)``). ``selective_scan_recurrent_reference`` is the recurrence one step at a
time; ``selective_scan_chunked_reference`` computes the same thing in about ``3 sqrt(L)`` Python
steps instead of ``L`` (all chunks of about ``sqrt(L)`` steps advance together, and a short pass
carries the state across chunks); ``selective_scan`` dispatches to the Triton kernel or the
chunked reference.
Everything accumulates in float32 (float64 for float64 inputs); ``y`` has the dtype of ``u``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._dispatch import resolve_backend
from ._utils import accumulation_dtype, check_shape
from .ssd import _skip_and_gate

__all__ = ["selective_scan", "selective_scan_chunked_reference", "selective_scan_recurrent_reference"]


def _check_groups(name: str, t: torch.Tensor, batch: int, dim: int, L: int) -> None:
    if t.dim() == 3:
        check_shape(name, t, (batch, t.shape[1], L))
    elif t.dim() == 4:
        check_shape(name, t, (batch, t.shape[1], t.shape[2], L))
        if t.shape[1] == 0 or dim % t.shape[1] != 0:
            raise ValueError(f"the number of groups of {name} ({t.shape[1]}) must divide dim ({dim})")
    else:
        raise ValueError(f"{name} must be (batch, dstate, length) or (batch, groups, dstate, length), got shape {tuple(t.shape)}")


def check_scan_args(u, delta, A, B, C, D, z, delta_bias) -> None:
    """Raise ``ValueError`` on inconsistent shapes, ``TypeError`` on non-real-floating tensors."""
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    for name, t in named.items():
        if t is not None and (not t.is_floating_point() or t.is_complex()):
            raise TypeError(f"{name} must be a real floating-point tensor, got {t.dtype}")
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, length), got shape {tuple(u.shape)}")
    batch, dim, L = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (dim={dim}, dstate), got shape {tuple(A.shape)}")
    dstate = A.shape[1]
    check_shape("delta", delta, (batch, dim, L))
    _check_groups("B", B, batch, dim, L)
    _check_groups("C", C, batch, dim, L)
    for name, t in (("B", B), ("C", C)):
        if t.shape[-2] != dstate:
            raise ValueError(f"{name} has dstate {t.shape[-2]} but A has {dstate}")
    check_shape("D", D, (dim,))
    check_shape("z", z, (batch, dim, L))
    check_shape("delta_bias", delta_bias, (dim,))


def _as_groups(t: torch.Tensor) -> torch.Tensor:
    """``B`` or ``C`` as (batch, groups, N, L): the 3-D form is one group."""
    return t[:, None] if t.dim() == 3 else t


def per_channel(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``B`` or ``C`` as (batch, dim, L, N): each channel gets its group's values."""
    if t.dim() == 3:
        return t.transpose(1, 2)[:, None].expand(-1, dim, -1, -1)
    return t.repeat_interleave(dim // t.shape[1], dim=1).transpose(2, 3)


def _step_size(delta, delta_bias, delta_softplus, acc):
    """``softplus(delta + delta_bias)`` (each optional) in the accumulation dtype ``acc``."""
    delta = delta.to(acc)
    if delta_bias is not None:
        delta = delta + delta_bias.to(acc)[:, None]
    return F.softplus(delta) if delta_softplus else delta


def _discretize(u, delta, A, B, delta_bias, delta_softplus):
    """``(delta * A, delta * u * B)``: the log-decay and the input of every step, (b, d, L, N)."""
    acc = accumulation_dtype(u)
    delta = _step_size(delta, delta_bias, delta_softplus, acc)
    log_decay = delta[..., None] * A.to(acc)[:, None, :]
    inputs = (delta * u.to(acc))[..., None] * per_channel(B.to(acc), u.shape[1])
    return log_decay, inputs


def selective_scan_recurrent_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The recurrence step by step, like mamba_ssm's ``selective_scan_ref``: slow, obviously
    right. :func:`selective_scan`'s arguments (but ``backend``)."""
    check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    log_decay, inputs = _discretize(u, delta, A, B, delta_bias, delta_softplus)
    Cd = per_channel(C.to(log_decay.dtype), u.shape[1])
    h = log_decay.new_zeros(log_decay.shape[:2] + log_decay.shape[3:])  # (b, d, N)
    y = log_decay.new_zeros(u.shape)
    ys = []
    # unbind, not indexing: the backward of L slices of one tensor would be L full-size tensors
    for decay_t, input_t, C_t in zip(*(torch.unbind(t, dim=2) for t in (torch.exp(log_decay), inputs, Cd))):
        h = decay_t * h + input_t
        ys.append((h * C_t).sum(-1))
    if ys:
        y = torch.stack(ys, dim=2)
    return _skip_and_gate(y, u, D, z).to(u.dtype)


def _advance(h, decay, du, B_t):
    """One step of every chunk at once: ``h`` and ``decay = exp(dt * A)`` (b, d, c, N),
    ``du = dt * u`` (b, d, c), ``B_t`` (b, groups, c, N) shared by the channels of a group."""
    batch, dim, nchunks = du.shape
    groups = B_t.shape[1]
    inputs = du.reshape(batch, groups, dim // groups, nchunks)[..., None] * B_t[:, :, None]
    return decay * h + inputs.reshape(h.shape)


def selective_scan_chunked_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                                     chunk_size=None):
    """:func:`selective_scan` in plain PyTorch (its reference backend), with its arguments (but
    ``backend``). ``chunk_size`` defaults to about ``sqrt(L)``, which minimises the Python steps.

    The sequence is cut into chunks of ``T`` steps and all chunks advance together, one step of
    each at a time. A first pass from zero states gives the state each chunk leaves behind of its
    own inputs; a pass over the chunks carries them forward (chunk ``c`` decays the carried state
    by ``exp(A * sum of its step sizes)``); a second pass from the carried states gives ``y``.
    That is ``2 T + L / T`` Python steps, each on tensors of ``L / T`` steps. Only products of
    decays are formed (never a division by one), so it is as stable as the plain recurrence; like
    it, it keeps every step's decay and state for the backward (batch x dim x L x N floats each).
    """
    check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    batch, dim, L = u.shape
    if L == 0:
        return selective_scan_recurrent_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    T = chunk_size or math.isqrt(L - 1) + 1  # ceil(sqrt(L))
    nchunks = -(-L // T)
    acc = accumulation_dtype(u)
    dt = _step_size(delta, delta_bias, delta_softplus, acc)
    A = A.to(acc)

    def steps_first(t):  # (..., L) -> (T, ..., c): padded steps have dt = 0, no decay and no input
        t = F.pad(t, (0, nchunks * T - L)).reshape(*t.shape[:-1], nchunks, T)
        return t.movedim(-1, 0).contiguous()

    dts, dus = steps_first(dt), steps_first(dt * u.to(acc))  # (T, b, d, c)
    Bs = steps_first(_as_groups(B).to(acc)).transpose(-1, -2).contiguous()  # (T, b, groups, c, N)
    Cs = steps_first(_as_groups(C).to(acc)).transpose(-1, -2).contiguous()

    # unbind, not indexing: the backward of T slices of one tensor would be T full-size tensors
    decays = [torch.exp(dt_t[..., None] * A[:, None, :]) for dt_t in dts.unbind()]  # (b, d, c, N) each
    h = dts.new_zeros(batch, dim, nchunks, A.shape[1])
    for decay_t, du_t, B_t in zip(decays, dus.unbind(), Bs.unbind()):
        h = _advance(h, decay_t, du_t, B_t)
    chunk_decay = torch.exp(dts.sum(0)[..., None] * A[:, None, :])  # (b, d, c, N)
    carried, state = [], torch.zeros_like(h[:, :, 0])
    for decay_c, h_c in zip(chunk_decay.unbind(2), h.unbind(2)):
        carried.append(state)  # the state entering each chunk
        state = decay_c * state + h_c

    h, ys = torch.stack(carried, dim=2), []
    gc = Cs.shape[2]
    for decay_t, du_t, B_t, C_t in zip(decays, dus.unbind(), Bs.unbind(), Cs.unbind()):
        h = _advance(h, decay_t, du_t, B_t)
        ys.append((h.reshape(batch, gc, dim // gc, nchunks, -1) * C_t[:, :, None]).sum(-1))
    y = torch.stack(ys, dim=-1).reshape(batch, dim, nchunks * T)[:, :, :L]
    return _skip_and_gate(y, u, D, z).to(u.dtype)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    backend: str | None = None,
) -> torch.Tensor:
    """Mamba-1 selective scan over whole sequences (mamba_ssm's ``selective_scan_fn``); returns ``y``.

    Shapes: ``u``, ``delta``, ``z`` (batch, dim, L); ``A`` (dim, N) real (negative for a
    decaying state); ``B``, ``C`` (batch, N, L) or (batch, groups, N, L) with groups dividing
    dim; ``D``, ``delta_bias`` (dim,). ``y`` (batch, dim, L) has the dtype of ``u``; the scan
    itself runs in float32 whatever the input dtypes. Differentiable with respect to every
    floating-point input. ``backend`` overrides the automatic choice (see :mod:`genoseq.kernels`).
    """
    check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if resolve_backend(backend, u, delta, A, B, C, D, z, delta_bias) == "triton":
        from .selective_scan_triton import selective_scan_triton

        return selective_scan_triton(*args)
    return selective_scan_chunked_reference(*args)
