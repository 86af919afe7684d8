"""A DataModule over a map-style dataset read in index order, the same order every epoch.

For datasets that draw each item from its index alone (the read encoder's simulated
``(fragment, read)`` pairs): batch ``k`` holds items ``k * batch_size`` up to ``(k + 1) *
batch_size``, so nothing needs shuffling, and like every module here it resumes exactly, also
in the middle of an epoch (a run of one long epoch), through its
:class:`~genoseq.datamodules.sampling.PlanSampler` and the position in its state.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from .sampling import plan_sampler, saved_position, with_position

__all__ = ["InOrderDataModule"]


class _InOrderPlanner:
    """The batches of an epoch: consecutive index ranges of ``batch_size`` (the last may be shorter)."""

    def __init__(self, size: int, batch_size: int) -> None:
        self.batches = [range(start, min(start + batch_size, size)) for start in range(0, size, batch_size)]

    def __call__(self, epoch: int) -> list[range]:
        return self.batches


class InOrderDataModule(L.LightningDataModule):
    """Training batches of ``train`` in index order, collated by ``collate_fn``; no validation data.

    Args:
        train: A map-style dataset (``len`` and ``dataset[i]``).
        batch_size: Items per batch.
        collate_fn: Turns a list of items into a batch (torch's default collation when None).
        num_workers: DataLoader worker processes.
    """

    def __init__(self, train: Dataset, batch_size: int, collate_fn: Callable | None = None, num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset, self.batch_size, self.collate_fn, self.num_workers = train, batch_size, collate_fn, num_workers
        self._resume_position: tuple[int, int] | None = None

    def train_dataloader(self) -> DataLoader:
        sampler = plan_sampler(self, _InOrderPlanner(len(self.dataset), self.batch_size), train=True)  # items: batches
        sampler.sampler = sampler  # Lightning sets the epoch on `loader.batch_sampler.sampler`
        # Each iterator draws its workers' base seed from the loader's generator: a generator of its
        # own leaves torch's global one alone, which a resume in the middle of an epoch restores
        # (genoseq.models.resume.RandomState) before making the iterator the uninterrupted run made
        # at the epoch's start; a draw from it there would shift every later dropout mask.
        return DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate_fn, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, generator=torch.Generator().manual_seed(0))

    def state_dict(self) -> dict:
        """Saved in Lightning checkpoints: the position in the epoch, for exact resume."""
        return with_position({}, self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_position = saved_position(state_dict)
