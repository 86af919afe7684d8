"""Genome regions: the train / validation split of contigs, and N counting over windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from genoseq.errors import InputError

__all__ = ["Region", "split_regions", "count_n"]


@dataclass(frozen=True)
class Region:
    """A stretch ``[start, end)`` of one contig of source ``source`` (index into the sources)."""

    source: int
    contig: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def split_regions(
    contigs: Sequence[dict[str, int]],
    *,
    val_contigs: Sequence[str] = (),
    val_sources: Sequence[int] = (),
    val_fraction: float = 0.0,
    val_block_length: int = 100_000,
) -> tuple[list[Region], list[Region]]:
    """Split genomes into disjoint train and validation regions.

    ``contigs[i]`` is source i's ``{contig: length}``. Whole sources (``val_sources``, by
    index) and named contigs (``val_contigs``, in any source) go to validation. Of every other
    contig, each block of ``val_block_length`` bases gives its last ``val_fraction`` to
    validation, so held-out data is spread along the genome in contiguous pieces. A window
    never crosses a region boundary, so train and validation windows cannot overlap.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    if val_block_length < 1:
        raise ValueError("val_block_length must be positive")
    all_names = {name for source in contigs for name in source}
    unknown = [name for name in val_contigs if name not in all_names]
    if unknown:
        raise InputError(f"validation contig(s) not in any source: {', '.join(unknown)}")
    train: list[Region] = []
    val: list[Region] = []
    for i, source in enumerate(contigs):
        for name, length in source.items():
            if i in val_sources or name in val_contigs:
                val.append(Region(i, name, 0, length))
                continue
            if val_fraction == 0.0:
                train.append(Region(i, name, 0, length))
                continue
            for block_start in range(0, length, val_block_length):
                block_end = min(block_start + val_block_length, length)
                cut = block_end - int(round((block_end - block_start) * val_fraction))
                if cut > block_start:
                    train.append(Region(i, name, block_start, cut))
                if block_end > cut:
                    val.append(Region(i, name, cut, block_end))
    return train, val


def count_n(runs: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Number of N bases in each window ``[s, s + length)``, from the contig's sorted N runs."""
    starts = np.asarray(starts, dtype=np.int64)
    if len(runs) == 0:
        return np.zeros(len(starts), dtype=np.int64)
    run_start, run_end = runs[:, 0], runs[:, 1]
    prefix = np.concatenate(([0], np.cumsum(run_end - run_start)))

    def n_before(x: np.ndarray) -> np.ndarray:
        k = np.searchsorted(run_start, x, side="left")  # runs starting before x
        last = np.maximum(k - 1, 0)
        partial = np.where(k > 0, np.minimum(x, run_end[last]) - run_start[last], 0)
        return prefix[last] + partial

    return n_before(starts + length) - n_before(starts)
