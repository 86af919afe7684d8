"""Language-model windows of several lengths, mixed short to long: a sequence-length curriculum.

As in Dataset Decomposition (Pouransari et al., 2024), training data comes in *buckets* of one
window length each, and every batch is drawn from one bucket with a batch size inversely
proportional to its length, so every step trains on the same number of tokens. Early batches
are short (cheap, and most of what a model first learns is local); longer buckets are unlocked
one after another over ``curriculum_steps`` training steps while the shorter ones stay in the
mix, and by the end every bucket is equally likely.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from genoseq.errors import InputError
from genoseq.genome import Genome

from .sampling import distributed_context, plan_sampler, with_position
from .windows import GenomeSplitDataModule, _WindowPlanner, source_list

__all__ = ["CURRICULA", "bucket_weights", "CurriculumWindowDataset", "CurriculumWindowDataModule"]

CURRICULA = ("short_to_long", "uniform")


def bucket_weights(progress: np.ndarray | float, n_buckets: int, curriculum: str = "short_to_long") -> np.ndarray:
    """Sampling weight of each of ``n_buckets`` buckets (shortest first) at training ``progress``.

    ``short_to_long``: at progress ``p`` (clipped to [0, 1]) the frontier is ``f = p * (K - 1)``;
    every bucket up to ``floor(f)`` has weight 1, the next one ``f - floor(f)`` and the longer
    ones 0. Training starts on the shortest bucket alone and ends with all equally likely.
    ``uniform``: weight 1 for every bucket throughout (the ablation). Returns shape
    ``progress.shape + (n_buckets,)``.
    """
    progress = np.clip(np.asarray(progress, dtype=np.float64), 0.0, 1.0)
    if curriculum == "uniform":
        return np.ones(progress.shape + (n_buckets,))
    if curriculum != "short_to_long":
        raise ValueError(f"curriculum must be one of {CURRICULA}, not {curriculum!r}")
    frontier = progress[..., None] * (n_buckets - 1)
    return np.clip(frontier - np.arange(n_buckets) + 1.0, 0.0, 1.0)


class _CurriculumPlanner:
    """Makes each epoch's plan: ``batches_per_epoch`` batches, each an int64 array of rows
    ``(contig id, start, reverse, length)`` of one bucket's length.

    Batch ``i`` of epoch ``e`` is batch ``g = e * batches_per_epoch + i`` of the run; it is
    trained in step ``g // batches_per_step`` (``batches_per_step`` > 1 under data parallelism
    or gradient accumulation), whose progress ``min(1, step / curriculum_steps)`` sets the
    bucket weights it is drawn with.
    """

    def __init__(
        self,
        bucket_planners: list[_WindowPlanner],
        *,
        tokens_per_batch: int,
        batches_per_epoch: int,
        curriculum: str,
        curriculum_steps: int | None,
        rc_augment: bool,
        seed: int,
    ) -> None:
        self.bucket_planners = bucket_planners
        self.buckets = [p.window_length for p in bucket_planners]
        self.tokens_per_batch, self.batches_per_epoch = tokens_per_batch, batches_per_epoch
        self.curriculum, self.curriculum_steps = curriculum, curriculum_steps
        self.rc_augment, self.seed = rc_augment, seed
        self.batches_per_step = 1

    def progress(self, epoch: int) -> np.ndarray:
        """Curriculum progress in [0, 1] of each batch of ``epoch``."""
        if self.curriculum_steps is None:  # uniform: progress plays no part
            return np.ones(self.batches_per_epoch)
        batch = epoch * self.batches_per_epoch + np.arange(self.batches_per_epoch)
        return np.minimum(1.0, (batch // self.batches_per_step) / self.curriculum_steps)

    def __call__(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, 5, epoch])
        weights = bucket_weights(self.progress(epoch), len(self.buckets), self.curriculum)
        cumulative = np.cumsum(weights, axis=1)
        draw = rng.random(self.batches_per_epoch) * cumulative[:, -1]
        bucket = (draw[:, None] < cumulative).argmax(axis=1)
        batches: dict[int, np.ndarray] = {}
        for k, planner in enumerate(self.bucket_planners):
            chosen = np.flatnonzero(bucket == k)
            if len(chosen) == 0:
                continue
            length = planner.window_length
            size = self.tokens_per_batch // length
            windows = planner.random_windows(rng, len(chosen) * size)
            if self.rc_augment:
                strand = rng.integers(0, 2, size=len(windows), dtype=np.int64)
            else:
                strand = np.zeros(len(windows), dtype=np.int64)
            rows = np.column_stack([windows, strand, np.full(len(windows), length, dtype=np.int64)])
            for j, b in enumerate(chosen.tolist()):
                batches[b] = rows[j * size : (j + 1) * size]
        return [batches[b] for b in range(self.batches_per_epoch)]


class _ValidationPlanner:
    """Validation batches: a sliding window plan (forward strand, in order) cut into batches
    of ``batch_size`` rows ``(contig id, start, 0, length)``; the same every epoch."""

    def __init__(self, planner: _WindowPlanner, batch_size: int) -> None:
        rows = planner(0)
        rows = np.column_stack([rows, np.full(len(rows), planner.window_length, dtype=np.int64)])
        self.batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]

    def __call__(self, epoch: int) -> list[np.ndarray]:
        return self.batches


class CurriculumWindowDataset(Dataset):
    """Reads a whole batch of windows named by rows ``(contig id, start, reverse, length)``.

    ``contig_keys[contig id]`` is ``(source index, contig name)``. The rows of one batch share
    their length; returns ``{"input_ids": LongTensor (rows, length)}``.
    """

    def __init__(self, genomes: list[Genome], contig_keys: list[tuple[int, str]]) -> None:
        self.genomes = genomes
        self.contig_keys = contig_keys

    def __getitem__(self, batch: np.ndarray) -> dict[str, torch.Tensor]:
        windows = []
        for cid, start, reverse, length in np.asarray(batch).tolist():
            source, contig = self.contig_keys[cid]
            windows.append(self.genomes[source].fetch(contig, start, start + length, "-" if reverse else "+"))
        return {"input_ids": torch.from_numpy(np.stack(windows).astype(np.int64))}


class CurriculumWindowDataModule(GenomeSplitDataModule):
    """Language-model windows from genomes in length buckets, mixed short to long over training.

    Every training batch holds ``tokens_per_batch // length`` windows of one ``length`` from
    ``buckets``, at uniformly random positions of the training regions (windows with too many
    N skipped), each on a random strand with ``rc_augment``. Which bucket a batch comes from is
    drawn with the weights of :func:`bucket_weights` at its step's progress through
    ``curriculum_steps``: the shortest bucket alone at first, each longer one unlocked in turn,
    all equally likely at the end (``curriculum="uniform"``: all equally likely throughout).
    Validation batches are forward-strand, non-overlapping windows of ``val_length`` in order.
    Batches are ``{"input_ids": LongTensor (tokens_per_batch // length, length)}``.

    The epoch plan depends on ``seed`` and the epoch alone (and on how many batches make one
    optimiser step: data-parallel ranks x gradient accumulation, which the progress is counted
    in), so batches are the same for any ``num_workers`` and resume is exact.

    Args:
        sources: FASTA (plain/bgzip) or token store paths; one or more.
        buckets: Window lengths, e.g. ``[512, 1024, 2048, 4096]`` (sorted here).
        tokens_per_batch: Tokens in every training batch (per device); a multiple of every
            bucket and at least the longest.
        curriculum: ``short_to_long`` or ``uniform``.
        curriculum_steps: Training steps over which the longer buckets are unlocked
            (``short_to_long`` needs it); after them every bucket is equally likely.
        batches_per_epoch: Training batches per epoch (each epoch draws new windows).
        max_n_fraction: Skip windows with more than this fraction of N bases.
        rc_augment: Read each training window from a random strand.
        val_length: Validation window length (default: the longest bucket).
        val_contigs: Contig names held out whole for validation.
        val_sources: Sources (as given in ``sources``) held out whole for validation.
        val_fraction: Of every other contig, hold out this fraction as contiguous blocks (the
            last ``val_fraction`` of every ``val_block_length`` bases).
        val_block_length: Block length for ``val_fraction``.
        max_val_windows: Cap on validation windows (evenly spaced).
        num_workers: DataLoader worker processes.
        seed: Seed for buckets, positions and strands (epoch plans derive from it).
        convert_gzip: Convert plain-gzip FASTA sources to bgzip instead of refusing them.
    """

    def __init__(
        self,
        sources: str | list[str],
        buckets: Sequence[int],
        tokens_per_batch: int,
        curriculum: Literal["short_to_long", "uniform"] = "short_to_long",
        curriculum_steps: int | None = None,
        batches_per_epoch: int = 1000,
        max_n_fraction: float = 0.1,
        rc_augment: bool = False,
        val_length: int | None = None,
        val_contigs: list[str] | None = None,
        val_sources: list[str] | None = None,
        val_fraction: float = 0.0,
        val_block_length: int = 100_000,
        max_val_windows: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        convert_gzip: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # as GenomeWindowDataModule: not sent to loggers
        self.sources = source_list(sources)
        self.buckets = _check_buckets(buckets)
        _check_tokens_per_batch(tokens_per_batch, self.buckets)
        if curriculum not in CURRICULA:
            raise InputError(f"curriculum must be one of {', '.join(CURRICULA)}, not {curriculum!r}", field="curriculum")
        if curriculum == "short_to_long" and (curriculum_steps is None or curriculum_steps < 1):
            raise InputError(
                f"curriculum='short_to_long' needs curriculum_steps, a positive number of training steps over which "
                f"the longer buckets are unlocked (got {curriculum_steps})", field="curriculum_steps")
        if batches_per_epoch < 1:
            raise InputError(f"batches_per_epoch must be positive, not {batches_per_epoch}", field="batches_per_epoch")
        if val_length is not None and val_length < 1:
            raise InputError(f"val_length must be positive, not {val_length}", field="val_length")
        self._keep_split_options(
            max_n_fraction=max_n_fraction, rc_augment=rc_augment, val_contigs=val_contigs, val_sources=val_sources,
            val_fraction=val_fraction, val_block_length=val_block_length, max_val_windows=max_val_windows,
            num_workers=num_workers, seed=seed, convert_gzip=convert_gzip)
        self.tokens_per_batch = tokens_per_batch
        self.curriculum = curriculum
        self.curriculum_steps = curriculum_steps if curriculum == "short_to_long" else None
        self.batches_per_epoch = batches_per_epoch
        self.val_length = val_length or self.buckets[-1]
        self._resume_schedule: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.genomes is not None:
            return
        split = self._open_split()
        bucket_planners = [
            _WindowPlanner(split.train, split.n_runs, window_length=length, max_n=self._max_n(length))
            for length in self.buckets
        ]
        longest = max((len(r) for r in self.train_regions), default=0)
        for planner in bucket_planners:
            if int(planner.region_starts.sum()) == 0:
                raise InputError(self._no_room_message(planner.window_length, longest), field="buckets")
        self._train_planner = _CurriculumPlanner(
            bucket_planners, tokens_per_batch=self.tokens_per_batch, batches_per_epoch=self.batches_per_epoch,
            curriculum=self.curriculum, curriculum_steps=self.curriculum_steps, rc_augment=self.rc_augment,
            seed=self.seed,
        )
        val_windows = _WindowPlanner(
            split.val, split.n_runs, window_length=self.val_length,
            max_n=self._max_n(self.val_length), sampling="sliding", max_windows=self.max_val_windows,
        )
        if self.val_regions and len(val_windows) == 0:
            raise InputError(f"validation regions hold no window of {self.val_length} bases; "
                             "raise val_fraction / val_block_length or set a shorter val_length", field="val_length")
        self._val_planner = _ValidationPlanner(val_windows, max(1, self.tokens_per_batch // self.val_length))

    def _max_n(self, length: int) -> int:
        return int(math.floor(self.max_n_fraction * length))

    def _no_room_message(self, bucket: int, longest: int) -> str:
        names, held_out = self._training_sources()
        return (f"bucket {bucket} is longer than every training region of {names}: the longest is {longest} bases"
                f"{held_out}; drop the bucket or use shorter ones")

    def _loader(self, planner, train: bool) -> DataLoader:
        # Plan items are whole batches, which the dataset reads at once (batch_size=None): the
        # DataLoader's sampler is then the PlanSampler itself, which Lightning gives the epoch
        # and leaves unwrapped under DDP.
        return DataLoader(
            CurriculumWindowDataset(self.genomes, self.contig_keys),
            batch_size=None,
            sampler=plan_sampler(self, planner, train=train),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _batches_per_step(self) -> int:
        """Plan batches that make one optimiser step: data-parallel ranks x gradient accumulation."""
        _, world = distributed_context(self)
        accumulate = int(self.trainer.accumulate_grad_batches) if self.trainer is not None else 1
        return world * accumulate

    def train_dataloader(self) -> DataLoader:
        self.setup()
        self._train_planner.batches_per_step = self._batches_per_step()
        self._check_resumed_schedule()
        return self._loader(self._train_planner, train=True)

    def _schedule(self) -> dict:
        """What, beside the seed, places each batch of the run on the curriculum."""
        return {"curriculum_steps": self.curriculum_steps, "batches_per_step": self._train_planner.batches_per_step}

    def _check_resumed_schedule(self) -> None:
        """Warn (once) when a resumed run places its batches on another curriculum than the
        run that wrote the checkpoint: the resume is then not exact."""
        saved, self._resume_schedule = self._resume_schedule, None
        if saved is None or self.curriculum != "short_to_long" or saved == self._schedule():
            return
        now = self._schedule()
        changed = ", ".join(f"{key} {saved.get(key)} -> {now[key]}" for key in now if saved.get(key) != now[key])
        rank_zero_warn(
            f"resuming the length curriculum on another schedule than the run that wrote the checkpoint ({changed}; "
            "batches_per_step is data-parallel ranks x gradient accumulation): the batches from here on are drawn for "
            "the new schedule, those already trained were drawn for the old one, so the resume is not exact; resume "
            "with the run's own curriculum_steps, processes and gradient accumulation to continue it exactly"
        )

    def state_dict(self) -> dict:
        """Saved in Lightning checkpoints, with the position in the epoch for exact resume."""
        state = {"sources": self.sources, "buckets": self.buckets, "tokens_per_batch": self.tokens_per_batch,
                 "curriculum": self.curriculum, "seed": self.seed}
        if getattr(self, "_train_planner", None) is not None:
            state["schedule"] = self._schedule()
        return with_position(state, self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._resume_schedule = state_dict.get("schedule")


def _check_buckets(buckets: Sequence[int]) -> list[int]:
    lengths = sorted(int(b) for b in buckets)
    if not lengths:
        raise InputError("buckets needs at least one window length", field="buckets")
    if lengths[0] < 2:
        raise InputError(f"bucket lengths must be at least 2 bases, not {lengths[0]}", field="buckets")
    repeated = sorted({b for b in lengths if lengths.count(b) > 1})
    if repeated:
        raise InputError(f"bucket length(s) given more than once: {', '.join(map(str, repeated))}", field="buckets")
    return lengths


def _check_tokens_per_batch(tokens_per_batch: int, buckets: list[int]) -> None:
    if tokens_per_batch < buckets[-1]:
        raise InputError(f"tokens_per_batch={tokens_per_batch} is less than the longest bucket, {buckets[-1]}: "
                         "every batch holds at least one window", field="tokens_per_batch")
    odd = [b for b in buckets if tokens_per_batch % b]
    if odd:
        raise InputError(f"tokens_per_batch={tokens_per_batch} is not a multiple of bucket(s) {', '.join(map(str, odd))}: "
                         "each batch holds tokens_per_batch // length windows of one length, and every batch the same "
                         "number of tokens", field="tokens_per_batch")
