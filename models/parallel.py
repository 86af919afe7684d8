"""Context parallelism: one sequence split along its length over the ranks of a process group.

Everything in a block but the sequence mixer works token by token, so each rank holds one
contiguous slice of the window (sequence-sharded: (B, L / N, C)). Each mixer mixes along the
sequence but separately per channel or head (Hyena's long convolution, Mamba2's SSD, attention
heads), so around the mixer an all-to-all swaps the sharding (DeepSpeed Ulysses): every rank gets
the whole sequence for 1/N of the channels, runs the mixer on them, and a second all-to-all
gives the sequence slices back. The all-to-alls are PyTorch's, which
carry gradients (PyTorch's functional collectives); gloo runs them on CPU processes and NCCL on GPUs.

Parameters are shared: each rank applies every projection to its own tokens and the mixers'
per-channel parameters to its own channels, so summing the gradients over the group gives the
gradient of the whole window (the language model scales its loss so that the data-parallel
average of Lightning's DDP strategy is that sum; see ``GenoSeqLM.lm_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
from torch.distributed._functional_collectives import all_to_all_single_autograd


def context_parallel_problems(cfg, size: int, lengths: Sequence[int] = ()) -> list[str]:
    """What stops ``cfg`` from training windows of ``lengths`` split over ``size`` ranks (empty: nothing).

    Each mixer shares its channels or heads out over the ranks, and every window splits into
    ``size`` equal slices.
    """
    problems = [f"window length {n} is not divisible by context_parallel={size}" for n in lengths if n % size]
    kinds = set(cfg.layer_types)
    if "hyena" in kinds and cfg.d_model % size:
        problems.append(f"Hyena's d_model={cfg.d_model} is not divisible by context_parallel={size}")
    if "mamba2" in kinds:
        if cfg.mamba_heads % size:
            problems.append(f"Mamba2's {cfg.mamba_heads} heads (expand * d_model / headdim) are not divisible by "
                            f"context_parallel={size}")
        if cfg.n_groups > 1 and cfg.n_groups % size:
            problems.append(f"Mamba2's n_groups={cfg.n_groups} is neither 1 nor divisible by context_parallel={size}")
    if "attention" in kinds and (cfg.n_heads % size or cfg.kv_heads % size):
        problems.append(f"attention's n_heads={cfg.n_heads} and n_kv_heads={cfg.kv_heads} must both be divisible by "
                        f"context_parallel={size}")
    return problems


@dataclass
class ContextParallel:
    """The process group that shares one window, and this process's place in it."""

    group: object
    rank: int
    size: int
    first: int = 0  # global rank of the group's rank 0

    @classmethod
    def create(cls, size: int) -> "ContextParallel":
        """Split the default process group into groups of ``size`` consecutive ranks; this
        process's group. Every rank must call this, in the same order (``new_group`` is collective)."""
        if not dist.is_initialized():
            raise RuntimeError("context parallelism needs an initialised torch.distributed process group")
        world, rank = dist.get_world_size(), dist.get_rank()
        if world % size:
            raise ValueError(f"context_parallel={size} does not divide the {world} processes")
        mine = None
        for first in range(0, world, size):
            group = dist.new_group(list(range(first, first + size)))
            if first <= rank < first + size:
                mine = group
        return cls(mine, rank % size, size, rank - rank % size)

    # ---------------------------------------------------------------- sequence slices
    def shard(self, t: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's contiguous slice of ``t`` along ``dim`` (whose length ``size`` divides)."""
        n = t.shape[dim] // self.size
        return t.narrow(dim, self.rank * n, n)

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over the group (no gradient): counts and logged losses."""
        t = t.detach().clone()
        dist.all_reduce(t, group=self.group)
        return t

    def broadcast(self, t: torch.Tensor) -> torch.Tensor:
        """The group's rank 0's ``t`` on every rank (random choices every rank must share)."""
        t = t.contiguous()
        dist.broadcast(t, src=self.first, group=self.group)
        return t

    # ---------------------------------------------------------------- the all-to-alls
    def _all_to_all(self, send: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (N, ...): row ``j`` goes to rank ``j``; row ``i`` of the result came from rank ``i``.
        Differentiable (the backward pass is the reverse all-to-all)."""
        return all_to_all_single_autograd(send, None, None, self.group)

    def seq_to_channels(self, x: torch.Tensor, streams: Sequence[int]) -> torch.Tensor:
        """(B, L/N, sum(streams)) sequence-sharded -> (B, L, sum(streams)/N): the whole sequence
        for this rank's share of the channels. The last axis is a concatenation of ``streams``
        (channel counts, each divisible by N: e.g. query, key and value heads); the rank gets
        the ``r``-th N-th of every stream, in the same order."""
        B, S, _ = x.shape
        parts = [p.unflatten(-1, (self.size, -1)) for p in x.split(list(streams), dim=-1)]
        send = torch.cat(parts, dim=-1).permute(2, 0, 1, 3).contiguous()  # (N, B, S, C/N)
        received = self._all_to_all(send)
        return received.permute(1, 0, 2, 3).reshape(B, self.size * S, -1)  # slices in rank order

    def channels_to_seq(self, y: torch.Tensor) -> torch.Tensor:
        """The inverse for one stream: (B, L, C/N) -> (B, L/N, C), channels back in order."""
        B, L, c = y.shape
        send = y.reshape(B, self.size, L // self.size, c).transpose(0, 1).contiguous()  # (N, B, S, C/N)
        received = self._all_to_all(send)
        return received.permute(1, 2, 0, 3).reshape(B, L // self.size, self.size * c)

    def gather_seq(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L/N, C) -> (B, L, C) on every rank (the gradient goes back to each slice's owner)."""
        send = x.expand(self.size, *x.shape).contiguous()  # the same slice to every rank
        received = self._all_to_all(send)
        return received.transpose(0, 1).flatten(1, 2)

    def channel_slice(self, t: torch.Tensor, streams: Sequence[int], dim: int = 0) -> torch.Tensor:
        """This rank's share of a parameter whose axis ``dim`` holds ``streams`` (as in
        :meth:`seq_to_channels`): e.g. the short-conv weights of its channels."""
        out = []
        for part in t.split(list(streams), dim=dim):
            n = part.shape[dim] // self.size
            out.append(part.narrow(dim, self.rank * n, n))
        return torch.cat(out, dim=dim)
