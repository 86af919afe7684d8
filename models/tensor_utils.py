"""Small tensor helpers shared by the blocks: accumulation dtype, packed positions, cache rows."""

from __future__ import annotations

import torch


def to_acc(t: torch.Tensor) -> torch.Tensor:
    """``t`` in its accumulation dtype: float32 for half types, float64 stays float64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def positions_in_segment(seg: torch.Tensor) -> torch.Tensor:
    """Position of each token inside its packed sequence, from non-decreasing segment numbers."""
    L = seg.shape[1]
    idx = torch.arange(L, device=seg.device).expand_as(seg)
    is_start = torch.ones_like(seg, dtype=torch.bool)
    is_start[:, 1:] = seg[:, 1:] != seg[:, :-1]
    start = torch.cummax(torch.where(is_start, idx, torch.zeros_like(idx)), dim=1).values
    return idx - start


def select_rows(t: torch.Tensor | None, rows: torch.Tensor, dim: int = 0) -> torch.Tensor | None:
    """``t`` with only ``rows`` (in that order) along ``dim``; ``None`` stays ``None``."""
    return None if t is None else t.index_select(dim, rows.to(t.device))
