"""The one epoch-plan sampler of every DataModule: deterministic, sharded by rank, resumable.

A module's *planner* is a callable ``planner(epoch)`` that returns the epoch's plan from the
seed and the epoch number alone: an int64 array whose rows are index tuples (one example
each), or a list whose items are whole batches. :class:`PlanSampler` shards that plan by rank
and, after an exact resume, skips the batches already trained on. It serves as a DataLoader's
``sampler`` (array plans) or ``batch_sampler`` (batch plans).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DistributedSampler

__all__ = ["PlanSampler", "plan_sampler", "distributed_context", "with_position", "saved_position"]

Plan = np.ndarray | Sequence  # rows of index tuples, or whole batches


def distributed_context(module: L.LightningDataModule) -> tuple[int, int]:
    """(data-parallel rank, data-parallel size): from the attached trainer, else torch.distributed,
    else (0, 1). Under context parallelism (the model's ``context_parallel_size`` N > 1) the N
    consecutive ranks that split one window along its length read the same batches: rank // N of
    world // N."""
    trainer = getattr(module, "trainer", None)
    if trainer is not None:
        rank, world = int(trainer.global_rank), int(trainer.world_size)
        split = int(getattr(trainer.lightning_module, "context_parallel_size", 1) or 1)
        return rank // split, world // split
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def with_position(state: dict, trainer) -> dict:
    """Add the training position (epoch, batches done in it) while fitting, for exact resume."""
    if trainer is not None and trainer.training:
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        # `processed` counts the batch whose end triggered this save; `completed` lags by it
        state["position"] = {"epoch": int(trainer.current_epoch), "batches": int(progress.processed)}
    return state


def saved_position(state: dict) -> tuple[int, int] | None:
    """The ``(epoch, batches)`` that :func:`with_position` put in a state dict, if any."""
    position = state.get("position")
    return (int(position["epoch"]), int(position["batches"])) if position else None


class PlanSampler(DistributedSampler):
    """Yields the items of an epoch plan made by ``planner(epoch)``.

    Rows of an array plan come out as tuples of ints; items of a list plan (batches) as they
    are. Rank ``r`` of ``w`` takes items ``r, r + w, r + 2w, ...``; with ``drop_tail`` the plan
    is first cut to a multiple of ``w`` so every rank gets the same number of items (training),
    without it nothing is dropped (evaluation).

    ``resume_at = (epoch, batches)`` makes the first pass over that epoch skip the batches (of
    this rank, ``batch_size`` items each) already trained on; ``len()`` stays the full epoch,
    as Lightning counts the restored batches towards it.

    It subclasses ``DistributedSampler`` only so that Lightning does not wrap it in a second
    distributed sampler. ``DistributedSampler.__init__`` is not called: it would demand an
    initialised process group.
    """

    def __init__(
        self,
        planner: Callable[[int], Plan],
        *,
        rank: int = 0,
        world_size: int = 1,
        drop_tail: bool = True,
        batch_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.planner = planner
        self.rank, self.num_replicas = rank, world_size
        self.drop_tail = drop_tail
        self.batch_size = batch_size
        self.epoch = 0
        self._cached: tuple[int, Plan] | None = None
        self.resume_at: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _items(self) -> Plan:
        if self._cached is None or self._cached[0] != self.epoch:
            plan = self.planner(self.epoch)
            if self.drop_tail:
                plan = plan[: len(plan) - len(plan) % self.num_replicas]
            self._cached = (self.epoch, plan[self.rank :: self.num_replicas])
        return self._cached[1]

    def __iter__(self):
        # A generator: the plan is read, and a resume position used up, at the first item, not
        # when the iterator is made (a DataLoader with workers makes one it never reads from).
        items = self._items()
        if self.resume_at is not None and self.resume_at[0] == self.epoch:
            items = items[self.resume_at[1] * self.batch_size :]
            self.resume_at = None
        if isinstance(items, np.ndarray):
            yield from (tuple(row) for row in items.tolist())
        else:
            yield from items

    def __len__(self) -> int:
        return len(self._items())


def plan_sampler(
    module: L.LightningDataModule, planner: Callable[[int], Plan], *, train: bool, batch_size: int = 1
) -> PlanSampler:
    """A :class:`PlanSampler` for ``module``'s rank; a training one takes over the position the
    module's ``load_state_dict`` left in ``_resume_position`` (once)."""
    rank, world = distributed_context(module)
    sampler = PlanSampler(planner, rank=rank, world_size=world, drop_tail=train, batch_size=batch_size)
    if train and getattr(module, "_resume_position", None) is not None:
        sampler.resume_at, module._resume_position = module._resume_position, None
        # Resuming mid-epoch, Lightning makes the DataLoader's iterator (whose workers start
        # fetching at once) before it sets the epoch: start in the resumed epoch already.
        sampler.set_epoch(sampler.resume_at[0])
    return sampler
