"""Small helpers shared by the references and the Triton wrappers."""

from __future__ import annotations

import torch


def segment_ids(seq_idx: torch.Tensor) -> torch.Tensor:
    """Turn packed-sequence ids ``(B, L)`` into non-decreasing segment numbers starting at 0.

    A new segment starts wherever ``seq_idx`` changes between neighbours, so ``[7, 7, 3, 3, 7]``
    is three segments ``[0, 0, 1, 1, 2]``. With non-decreasing segments, "positions s <= t belong
    to the same sequence" is simply ``seg[s] == seg[t]``, which is how every kernel masks.
    """
    if seq_idx.dim() != 2:
        raise ValueError(f"seq_idx must be (batch, length), got shape {tuple(seq_idx.shape)}")
    change = (seq_idx[:, 1:] != seq_idx[:, :-1]).to(torch.int32)
    seg = torch.zeros(seq_idx.shape, dtype=torch.int32, device=seq_idx.device)
    seg[:, 1:] = torch.cumsum(change, dim=1, dtype=torch.int32)
    return seg


def accumulation_dtype(tensor: torch.Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs, float64 for float64 inputs (used by tests)."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def check_shape(name: str, tensor: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    if tensor is not None and tuple(tensor.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}")


def final_conv_state(
    x: torch.Tensor, initial_state: torch.Tensor | None, seg: torch.Tensor | None, width: int
) -> torch.Tensor:
    """The last K-1 inputs (B, D, K-1) of the last packed sequence, zeros before it starts.

    ``seg`` are segment ids from :func:`segment_ids` (or None). Plain differentiable PyTorch:
    it only gathers and masks K-1 inputs, so every backend shares it.
    """
    batch, L, dim = x.shape
    if initial_state is None:
        history = x.new_zeros(batch, width - 1, dim)
    else:
        history = initial_state.to(x.dtype).transpose(1, 2)
    window = torch.cat([history, x[:, max(0, L - (width - 1)) :]], dim=1)
    last = window[:, window.shape[1] - (width - 1) :]  # inputs at positions L-K+1 .. L-1
    if seg is not None:
        positions = torch.arange(L - (width - 1), L, device=x.device).clamp_min(0)  # history: segment of position 0
        last = last * (seg[:, positions] == seg[:, -1:])[..., None]
    return last.transpose(1, 2).contiguous()
