"""Causal depthwise short convolution, channels-last, as used before the SSM in Mamba-2 and in Hyena.

For channel ``d`` with taps ``weight[d, 0..K-1]`` (the last tap multiplies the current input)::

    y[b, t, d] = act(bias[d] + sum_k weight[d, k] * x[b, t - (K-1) + k, d])

Inputs before position 0 come from ``initial_state`` (B, D, K-1), oldest first (zeros if not
given). With ``seq_idx`` an output only sees inputs of its own packed sequence (a new sequence
starts wherever ``seq_idx`` changes); ``initial_state`` belongs to the first sequence. The final
state is the last K-1 inputs of the last sequence (zeros where that sequence is shorter), which
is exactly the ``initial_state`` that continues the sequence in the next call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._dispatch import resolve_backend
from ._utils import accumulation_dtype, check_shape, final_conv_state, segment_ids

__all__ = ["causal_conv1d", "causal_conv1d_step", "causal_conv1d_reference"]

ACTIVATIONS = (None, "silu")


def _check_conv_args(x, weight, bias, activation, seq_idx, initial_state) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must be (batch, length, channels), got shape {tuple(x.shape)}")
    batch, L, dim = x.shape
    if weight.dim() != 2 or weight.shape[0] != dim or weight.shape[1] < 1:
        raise ValueError(f"weight must be (channels={dim}, kernel_size), got shape {tuple(weight.shape)}")
    check_shape("bias", bias, (dim,))
    check_shape("seq_idx", seq_idx, (batch, L))
    check_shape("initial_state", initial_state, (batch, dim, weight.shape[1] - 1))
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def _activate(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    return F.silu(y) if activation == "silu" else y


def causal_conv1d_reference(x, weight, bias=None, activation=None, seq_idx=None, initial_state=None,
                            return_final_state=False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Plain PyTorch causal depthwise conv, :func:`causal_conv1d`'s reference backend, with its
    arguments (but ``backend``); float32 accumulation, output in the dtype of ``x``.

    Returns ``(y, final_state or None)``; the final state (B, D, K-1) has the dtype of ``x``.
    """
    _check_conv_args(x, weight, bias, activation, seq_idx, initial_state)
    batch, L, dim = x.shape
    width = weight.shape[1]
    if initial_state is None:
        history = x.new_zeros(batch, width - 1, dim)
    else:
        history = initial_state.to(x.dtype).transpose(1, 2)
    padded = torch.cat([history, x], dim=1)  # (b, K-1+L, d): padded[:, s + K-1] = x[:, s]

    seg = segment_ids(seq_idx) if seq_idx is not None else None
    if seg is not None:  # the history belongs to the first sequence
        seg_padded = torch.cat([seg[:, :1].expand(batch, width - 1), seg], dim=1)

    acc = accumulation_dtype(x)
    w = weight.to(acc)
    if seg is None:  # one sequence per row: a depthwise conv1d over the padded input
        y = F.conv1d(padded.to(acc).transpose(1, 2), w[:, None, :], None if bias is None else bias.to(acc), groups=dim)
        y = y.transpose(1, 2)
    else:  # packed rows: tap by tap, each masked to the output's own sequence
        y = x.new_zeros(batch, L, dim, dtype=acc)
        if bias is not None:
            y = y + bias.to(acc)
        for k in range(width):
            tap = padded[:, k : k + L].to(acc)  # x[t - (K-1) + k]
            tap = tap * (seg_padded[:, k : k + L] == seg)[..., None]
            y = y + tap * w[:, k]
    y = _activate(y, activation).to(x.dtype)

    final_state = final_conv_state(x, initial_state, seg, width) if return_final_state else None
    return y, final_state


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    seq_idx: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Causal depthwise conv over ``x`` (B, L, D) with ``weight`` (D, K); see the module docstring.

    Returns ``y`` (B, L, D), or ``(y, final_state)`` with ``final_state`` (B, D, K-1) when
    ``return_final_state`` is true. Differentiable with respect to ``x``, ``weight``, ``bias``
    and ``initial_state``. ``backend`` overrides the automatic choice (see :mod:`genoseq.kernels`).
    """
    _check_conv_args(x, weight, bias, activation, seq_idx, initial_state)
    args = (x, weight, bias, activation, seq_idx, initial_state, return_final_state)
    if resolve_backend(backend, x, weight, bias, initial_state) == "triton":
        from .conv1d_triton import causal_conv1d_triton  # Triton is optional: imported once chosen

        y, final_state = causal_conv1d_triton(*args)
    else:
        y, final_state = causal_conv1d_reference(*args)
    return (y, final_state) if return_final_state else y


def causal_conv1d_step(
    x_t: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step: ``x_t`` (B, D), ``conv_state`` (B, D, K-1) -> ``(y_t (B, D), new_state)``.

    Pure function (``conv_state`` is not modified); ``y_t`` has the dtype of ``x_t``.
    """
    batch, dim = x_t.shape
    width = weight.shape[-1]
    check_shape("conv_state", conv_state, (batch, dim, width - 1))
    check_shape("weight", weight, (dim, width))
    check_shape("bias", bias, (dim,))
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    window = torch.cat([conv_state.to(x_t.dtype), x_t[..., None]], dim=-1)  # (b, d, K)
    acc = accumulation_dtype(x_t)
    y = (window.to(acc) * weight.to(acc)).sum(-1)
    if bias is not None:
        y = y + bias.to(acc)
    y = _activate(y, activation).to(x_t.dtype)
    return y, window[..., 1:].to(conv_state.dtype)
