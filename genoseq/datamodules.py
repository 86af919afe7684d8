"""Lightning DataModules: genome windows for language modelling, labelled sequences for classification.

Both follow one pattern that makes them deterministic and safe with workers and DDP:

* The **sampler** runs in the main process and decides everything random for an epoch -
  which windows or examples, in which order, on which strand - from ``seed`` and the epoch
  number alone. It yields small index tuples such as ``(contig_id, start, reverse)``.
* The **dataset** is stateless: it turns an index tuple into tensors by reading the genome.
  Genome objects carry no file handle when pickled; each worker process opens its own.

So the same seed gives the same batches with ``num_workers=0`` or ``num_workers=4``, each epoch
reshuffles (Lightning calls ``sampler.set_epoch``), and under DDP every rank takes an
interleaved, equal-sized share of the same epoch plan. The samplers subclass
:class:`torch.utils.data.DistributedSampler` only so that Lightning does not wrap them in a
second distributed sampler: they shard themselves, using the trainer's global rank and world
size (or ``torch.distributed`` when it is initialised outside Lightning).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from genoseq.errors import InputError
from genoseq.genome import Genome, open_genome
from genoseq.tables import LabelledSequence, is_genomic_benchmarks, read_labelled
from genoseq.tokenizer import BOS, Tokenizer

__all__ = [
    "Region",
    "split_regions",
    "count_n",
    "PlanSampler",
    "GenomeWindowDataset",
    "GenomeWindowDataModule",
    "LabelledSequenceDataset",
    "LabelledSequenceDataModule",
    "PackedSequenceDataModule",
    "pack_rows",
]


# ============================================================================ shared pieces
def _distributed_context(module: L.LightningDataModule) -> tuple[int, int]:
    """(global rank, world size): from the attached trainer, else torch.distributed, else (0, 1)."""
    trainer = getattr(module, "trainer", None)
    if trainer is not None:
        return int(trainer.global_rank), int(trainer.world_size)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _with_position(state: dict, trainer) -> dict:
    """Add the training position (epoch, batches done in it) while fitting, for exact resume."""
    if trainer is not None and trainer.training:
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        # `processed` counts the batch whose end triggered this save; `completed` lags by it
        state["position"] = {"epoch": int(trainer.current_epoch), "batches": int(progress.processed)}
    return state


def _saved_position(state: dict) -> tuple[int, int] | None:
    position = state.get("position")
    return (int(position["epoch"]), int(position["batches"])) if position else None


class PlanSampler(DistributedSampler):
    """Yields the rows of an epoch plan (an int64 array made by ``planner(epoch)``) as tuples.

    Rank ``r`` of ``w`` takes rows ``r, r + w, r + 2w, ...``; with ``drop_tail`` the plan is
    first cut to a multiple of ``w`` so every rank gets the same number of batches (training),
    without it nothing is dropped (evaluation). ``DistributedSampler.__init__`` is not called:
    it would demand an initialised process group.
    """

    def __init__(self, planner, *, rank: int = 0, world_size: int = 1, drop_tail: bool = True) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.planner = planner
        self.rank, self.num_replicas = rank, world_size
        self.drop_tail = drop_tail
        self.epoch = 0
        self._cached: tuple[int, np.ndarray] | None = None
        # (epoch, rows): on exact resume, the first pass over that epoch skips the rows (of
        # this rank) already trained on. len() stays the full epoch, as Lightning counts the
        # restored batches towards it.
        self.resume_at: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rows(self) -> np.ndarray:
        if self._cached is None or self._cached[0] != self.epoch:
            plan = self.planner(self.epoch)
            if self.drop_tail:
                plan = plan[: len(plan) - len(plan) % self.num_replicas]
            self._cached = (self.epoch, plan[self.rank :: self.num_replicas])
        return self._cached[1]

    def __iter__(self):
        rows = self._rows()
        if self.resume_at is not None and self.resume_at[0] == self.epoch:
            rows = rows[self.resume_at[1] :]
            self.resume_at = None
        return (tuple(row) for row in rows.tolist())

    def __len__(self) -> int:
        return len(self._rows())


# ============================================================================ genome windows
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


class _WindowPlanner:
    """Makes each epoch's window plan: rows of (contig id, start, reverse strand flag)."""

    def __init__(
        self,
        regions: list[tuple[int, Region]],
        n_runs: dict[int, np.ndarray],
        *,
        window_length: int,
        stride: int,
        sampling: str,
        windows_per_epoch: int | None,
        max_n: int,
        shuffle: bool,
        rc_augment: bool,
        seed: int,
        stream: int,
        max_windows: int | None = None,
    ) -> None:
        self.window_length, self.sampling = window_length, sampling
        self.windows_per_epoch, self.max_n = windows_per_epoch, max_n
        self.shuffle, self.rc_augment = shuffle, rc_augment
        self.seed, self.stream = seed, stream
        self.n_runs = n_runs
        # region table: contig id, first start, number of possible starts
        self.region_cid = np.array([cid for cid, _ in regions], dtype=np.int64)
        self.region_start = np.array([r.start for _, r in regions], dtype=np.int64)
        self.region_starts = np.array([max(len(r) - window_length + 1, 0) for _, r in regions], dtype=np.int64)
        self.sliding = self._sliding_windows(stride, max_windows) if sampling == "sliding" else None

    def _filter_n(self, cids: np.ndarray, starts: np.ndarray) -> np.ndarray:
        keep = np.ones(len(starts), dtype=bool)
        for cid in np.unique(cids):
            runs = self.n_runs[int(cid)]
            if len(runs):
                sel = cids == cid
                keep[sel] = count_n(runs, starts[sel], self.window_length) <= self.max_n
        return keep

    def _sliding_windows(self, stride: int, max_windows: int | None) -> np.ndarray:
        cids, starts = [], []
        for cid, first, count in zip(self.region_cid, self.region_start, self.region_starts):
            s = first + np.arange(0, count, stride, dtype=np.int64)
            cids.append(np.full(len(s), cid, dtype=np.int64))
            starts.append(s)
        cid_arr = np.concatenate(cids) if cids else np.zeros(0, np.int64)
        start_arr = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        keep = self._filter_n(cid_arr, start_arr)
        windows = np.stack([cid_arr[keep], start_arr[keep]], axis=1)
        if max_windows is not None and len(windows) > max_windows:
            windows = windows[np.linspace(0, len(windows) - 1, max_windows).astype(np.int64)]
        return windows

    def __len__(self) -> int:
        return len(self.sliding) if self.sliding is not None else int(self.windows_per_epoch or 0)

    def _random_windows(self, rng: np.random.Generator) -> np.ndarray:
        total = int(self.region_starts.sum())
        wanted = int(self.windows_per_epoch)
        found: list[np.ndarray] = []
        have = 0
        for _ in range(100):
            draw = rng.integers(0, total, size=max(2 * (wanted - have), 16))
            bounds = np.cumsum(self.region_starts)
            region = np.searchsorted(bounds, draw, side="right")
            offset = draw - (bounds[region] - self.region_starts[region])
            cids, starts = self.region_cid[region], self.region_start[region] + offset
            keep = self._filter_n(cids, starts)
            found.append(np.stack([cids[keep], starts[keep]], axis=1))
            have += int(keep.sum())
            if have >= wanted:
                return np.concatenate(found)[:wanted]
        raise InputError(
            f"could not sample {wanted} windows with at most {self.max_n} N bases each; "
            "raise max_n_fraction or check the genome"
        )

    def __call__(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.stream, epoch])
        if self.sliding is not None:
            windows = self.sliding[rng.permutation(len(self.sliding))] if self.shuffle else self.sliding
        else:
            windows = self._random_windows(rng)
        if self.rc_augment:
            strand = rng.integers(0, 2, size=len(windows), dtype=np.int64)
        else:
            strand = np.zeros(len(windows), dtype=np.int64)
        return np.concatenate([windows, strand[:, None]], axis=1)


class GenomeWindowDataset(Dataset):
    """Reads windows named by ``(contig id, start, reverse)`` index tuples from genomes.

    ``contig_keys[contig id]`` is ``(source index, contig name)``. Returns
    ``{"input_ids": LongTensor (window_length,)}``.
    """

    def __init__(self, genomes: list[Genome], contig_keys: list[tuple[int, str]], window_length: int) -> None:
        self.genomes = genomes
        self.contig_keys = contig_keys
        self.window_length = window_length

    def __getitem__(self, index: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        cid, start, reverse = index
        source, contig = self.contig_keys[cid]
        ids = self.genomes[source].fetch(contig, start, start + self.window_length, "-" if reverse else "+")
        return {"input_ids": torch.from_numpy(ids.astype(np.int64))}


class GenomeWindowDataModule(L.LightningDataModule):
    """Language-model windows from FASTA files and/or HDF5 token stores.

    Batches are ``{"input_ids": LongTensor (batch_size, window_length)}``.

    Args:
        sources: FASTA (plain/bgzip) or token store paths; one or more.
        window_length: Bases per window.
        stride: Step between sliding windows (default: ``window_length``, no overlap).
        sampling: ``"sliding"`` (every ``stride``-th window, shuffled per epoch) or ``"random"``
            (``windows_per_epoch`` windows at uniformly random positions, new each epoch).
        windows_per_epoch: Training windows per epoch for random sampling.
        max_n_fraction: Skip windows with more than this fraction of N bases.
        rc_augment: Read each training window from a random strand.
        val_contigs: Contig names held out whole for validation.
        val_sources: Sources (as given in ``sources``) held out whole for validation.
        val_fraction: Of every other contig, hold out this fraction as contiguous blocks (the
            last ``val_fraction`` of every ``val_block_length`` bases).
        val_block_length: Block length for ``val_fraction``.
        max_val_windows: Cap on validation windows (evenly spaced); validation windows never
            overlap each other (stride = window length) and are always forward strand.
        batch_size: Windows per batch (per device).
        num_workers: DataLoader worker processes.
        seed: Seed for window order, random positions and strands (epoch plans derive from it).
        shuffle: Shuffle sliding training windows each epoch.
        convert_gzip: Convert plain-gzip FASTA sources to bgzip instead of refusing them.
    """

    def __init__(
        self,
        sources: str | list[str],
        window_length: int = 1024,
        stride: int | None = None,
        sampling: Literal["sliding", "random"] = "sliding",
        windows_per_epoch: int | None = None,
        max_n_fraction: float = 0.1,
        rc_augment: bool = False,
        val_contigs: list[str] | None = None,
        val_sources: list[str] | None = None,
        val_fraction: float = 0.0,
        val_block_length: int = 100_000,
        max_val_windows: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        convert_gzip: bool = False,
    ) -> None:
        super().__init__()
        # Kept in checkpoints, not sent to loggers: Lightning refuses to log a DataModule and a
        # LightningModule whose hparams share a key with different values (both have rc_augment).
        self.save_hyperparameters(logger=False)
        self.sources = [str(sources)] if isinstance(sources, (str, os.PathLike)) else [str(s) for s in sources]
        if not self.sources:
            raise ValueError("at least one source is needed")
        if window_length < 1:
            raise ValueError("window_length must be positive")
        if sampling not in ("sliding", "random"):
            raise ValueError(f"sampling must be 'sliding' or 'random', not {sampling!r}")
        if sampling == "random" and not windows_per_epoch:
            raise ValueError("sampling='random' needs windows_per_epoch")
        if not 0.0 <= max_n_fraction <= 1.0:
            raise ValueError("max_n_fraction must be in [0, 1]")
        val_sources = [str(s) for s in (val_sources or [])]
        unknown = [s for s in val_sources if s not in self.sources]
        if unknown:
            raise ValueError(f"val_sources must be among sources: {unknown}")
        self.window_length = window_length
        self.stride = stride or window_length
        self.sampling = sampling
        self.windows_per_epoch = windows_per_epoch
        self.max_n_fraction = max_n_fraction
        self.rc_augment = rc_augment
        self.val_contigs = list(val_contigs or [])
        self.val_sources = list(val_sources or [])
        self.val_fraction = val_fraction
        self.val_block_length = val_block_length
        self.max_val_windows = max_val_windows
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.shuffle = shuffle
        self.convert_gzip = convert_gzip
        self.genomes: list[Genome] | None = None
        self._resume_position: tuple[int, int] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.genomes is not None:
            return
        self.genomes = [open_genome(s, convert_gzip=self.convert_gzip) for s in self.sources]
        self.train_regions, self.val_regions = split_regions(
            [g.contigs for g in self.genomes],
            val_contigs=self.val_contigs,
            val_sources=[self.sources.index(s) for s in self.val_sources],
            val_fraction=self.val_fraction,
            val_block_length=self.val_block_length,
        )
        self.contig_keys = [(i, name) for i, g in enumerate(self.genomes) for name in g.contigs]
        cid = {key: n for n, key in enumerate(self.contig_keys)}
        used = {cid[(r.source, r.contig)] for r in self.train_regions + self.val_regions}
        n_runs = {c: self.genomes[self.contig_keys[c][0]].n_runs(self.contig_keys[c][1]) for c in used}
        max_n = int(math.floor(self.max_n_fraction * self.window_length))
        common = dict(window_length=self.window_length, max_n=max_n, seed=self.seed)
        self._train_planner = _WindowPlanner(
            [(cid[(r.source, r.contig)], r) for r in self.train_regions], n_runs,
            stride=self.stride, sampling=self.sampling, windows_per_epoch=self.windows_per_epoch,
            shuffle=self.shuffle, rc_augment=self.rc_augment, stream=0, **common,
        )
        self._val_planner = _WindowPlanner(
            [(cid[(r.source, r.contig)], r) for r in self.val_regions], n_runs,
            stride=self.window_length, sampling="sliding", windows_per_epoch=None,
            shuffle=False, rc_augment=False, stream=1, max_windows=self.max_val_windows, **common,
        )
        empty = (len(self._train_planner) == 0 if self.sampling == "sliding"
                 else int(self._train_planner.region_starts.sum()) == 0)
        if empty:
            raise InputError(self._no_room_message())
        if self.val_regions and len(self._val_planner) == 0:
            raise InputError(f"validation regions hold no window of {self.window_length} bases; "
                             "raise val_fraction / val_block_length or shorten the window")

    def _no_room_message(self) -> str:
        longest = max((len(r) for r in self.train_regions), default=0)
        names = ", ".join(Path(str(s)).name for s in self.sources if s not in self.val_sources)
        split = (f" after holding out {self.val_fraction:g} of every {self.val_block_length}-base block"
                 if self.val_fraction else "")
        return (f"no training windows of {self.window_length} bases fit in {names}: its longest training region is "
                f"{longest} bases{split} (or every window has too many N); use a shorter window length")

    def _loader(self, planner, drop_tail: bool) -> DataLoader:
        rank, world = _distributed_context(self)
        dataset = GenomeWindowDataset(self.genomes, self.contig_keys, self.window_length)
        sampler = PlanSampler(planner, rank=rank, world_size=world, drop_tail=drop_tail)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        loader = self._loader(self._train_planner, drop_tail=True)
        if self._resume_position is not None:
            epoch, batches = self._resume_position
            loader.sampler.resume_at = (epoch, batches * self.batch_size)
            self._resume_position = None
        return loader

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        if not self.val_regions:
            return []  # Lightning skips validation
        return self._loader(self._val_planner, drop_tail=False)

    def state_dict(self) -> dict:
        """Saved in Lightning checkpoints, with the position in the epoch for exact resume."""
        state = {"sources": self.sources, "window_length": self.window_length, "seed": self.seed}
        return _with_position(state, self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_position = _saved_position(state_dict)


# ============================================================================ labelled sequences
class LabelledSequenceDataset(Dataset):
    """Encoded sequences and label indices; the index is ``(row, reverse)``."""

    def __init__(self, ids: list[np.ndarray], labels: np.ndarray) -> None:
        self.ids, self.labels = ids, labels
        self._tokenizer = Tokenizer()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: tuple[int, int]) -> tuple[np.ndarray, int]:
        row, reverse = index
        ids = self.ids[row]
        return (self._tokenizer.reverse_complement(ids) if reverse else ids), int(self.labels[row])


class _PadCollator:
    """Pads a list of (ids, label) with Tokenizer.encode_batch; picklable for workers."""

    def __init__(self, max_length: int | None, side: str) -> None:
        self.max_length, self.side = max_length, side
        self.tokenizer = Tokenizer()

    def __call__(self, items: list[tuple[np.ndarray, int]]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer.encode_batch(
            [ids for ids, _ in items],
            padding="longest",
            max_length=self.max_length,
            truncation=self.max_length is not None,
            side=self.side,
        )
        batch["labels"] = torch.tensor([label for _, label in items], dtype=torch.long)
        return batch


class _ExamplePlanner:
    def __init__(self, n: int, *, shuffle: bool, rc_augment: bool, seed: int) -> None:
        self.n, self.shuffle, self.rc_augment, self.seed = n, shuffle, rc_augment, seed

    def __call__(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2, epoch])
        rows = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        strand = rng.integers(0, 2, size=self.n) if self.rc_augment else np.zeros(self.n, dtype=np.int64)
        return np.stack([rows, strand], axis=1).astype(np.int64)


def stratified_split(labels: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, val): each class gives ``round(fraction * n)`` rows (>= 1 if n >= 2)."""
    rng = np.random.default_rng([seed, 3])
    labels_arr = np.asarray(labels)
    val_rows = []
    for label in sorted(set(labels)):
        rows = np.flatnonzero(labels_arr == label)
        k = int(round(fraction * len(rows)))
        if fraction > 0 and len(rows) >= 2:
            k = min(max(k, 1), len(rows) - 1)
        val_rows.append(rng.permutation(rows)[:k])
    val = np.sort(np.concatenate(val_rows)) if val_rows else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(len(labels_arr)), val)
    return train, val


class LabelledSequenceDataModule(L.LightningDataModule):
    """Sequence classification from a labelled TSV/CSV table or a GenomicBenchmarks folder.

    Batches are ``{"input_ids": (B, L) int64, "attention_mask": (B, L) bool, "labels": (B,)
    int64}``, padded to the longest sequence in the batch. ``classes`` lists the labels in
    index order (sorted training labels unless given); it is also kept in the datamodule's
    ``state_dict`` (so in Lightning checkpoints) and can be written with :meth:`save_classes`.

    Args:
        train: Training table, or GenomicBenchmarks root (its ``train`` split is read).
        val: Validation table or GenomicBenchmarks root (its ``test`` split). Default: a
            stratified ``val_fraction`` of ``train``.
        test: Test table or GenomicBenchmarks root (its ``test`` split). Default: the
            ``test`` split when ``train`` is a GenomicBenchmarks root.
        val_fraction: Share of each class held out for validation when ``val`` is not given.
        classes: Label order (index = position); default sorted training labels.
        sequence_column: Sequence column of a table.
        label_column: Label column of a table.
        max_length: Truncate longer sequences to this many tokens (keeps the start, or the end
            with ``padding_side="left"``).
        padding_side: Pad on the right (default) or the left.
        add_bos: Prepend a [BOS] token to every sequence.
        rc_augment: Use the reverse complement of each training sequence with probability 1/2.
        batch_size: Sequences per batch (per device).
        num_workers: DataLoader worker processes.
        seed: Seed for the validation split, shuffling and strands.
    """

    def __init__(
        self,
        train: str,
        val: str | None = None,
        test: str | None = None,
        val_fraction: float = 0.1,
        classes: list[str] | None = None,
        sequence_column: str = "sequence",
        label_column: str = "label",
        max_length: int | None = None,
        padding_side: Literal["right", "left"] = "right",
        add_bos: bool = False,
        rc_augment: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        self.train_path, self.val_path, self.test_path = str(train), val, test
        if test is None and is_genomic_benchmarks(train) and (Path(train) / "test").is_dir():
            self.test_path = str(train)
        self.val_fraction = val_fraction
        self._classes = list(classes) if classes else None
        self.sequence_column, self.label_column = sequence_column, label_column
        self.max_length, self.padding_side = max_length, padding_side
        self.add_bos, self.rc_augment = add_bos, rc_augment
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.datasets: dict[str, LabelledSequenceDataset] | None = None

    # -- label mapping
    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            self.setup()
        return list(self._classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def label_to_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.classes)}

    def save_classes(self, path: str | os.PathLike) -> Path:
        """Write ``{"classes": [...]}`` as JSON."""
        path = Path(path)
        path.write_text(json.dumps({"classes": self.classes}, indent=2) + "\n")
        return path

    def state_dict(self) -> dict:
        return {"classes": self.classes}

    def load_state_dict(self, state_dict: dict) -> None:
        self._classes = list(state_dict["classes"])

    # -- data
    def _read(self, path: str, split: str) -> list[LabelledSequence]:
        return read_labelled(path, split=split, sequence_column=self.sequence_column, label_column=self.label_column)

    def _encode(self, rows: list[LabelledSequence], path: str) -> LabelledSequenceDataset:
        tokenizer = Tokenizer()
        index = {label: i for i, label in enumerate(self._classes)}
        unknown = sorted({r.label for r in rows} - set(index))
        if unknown:
            raise InputError(f"labels not among the classes {self._classes}: {unknown}", path=path)
        ids = [tokenizer.encode(r.sequence, add_bos=self.add_bos, name=f"row {i + 1}", path=path)
               for i, r in enumerate(rows)]
        return LabelledSequenceDataset(ids, np.array([index[r.label] for r in rows], dtype=np.int64))

    def setup(self, stage: str | None = None) -> None:
        if self.datasets is not None:
            return
        train_rows = self._read(self.train_path, "train")
        if self.val_path is not None:
            val_rows = self._read(self.val_path, "test")
        else:
            train_idx, val_idx = stratified_split([r.label for r in train_rows], self.val_fraction, self.seed)
            val_rows = [train_rows[i] for i in val_idx]
            train_rows = [train_rows[i] for i in train_idx]
        if self._classes is None:
            self._classes = sorted({r.label for r in train_rows})
        datasets = {"train": self._encode(train_rows, self.train_path)}
        if val_rows:
            datasets["val"] = self._encode(val_rows, self.val_path or self.train_path)
        if self.test_path is not None:
            datasets["test"] = self._encode(self._read(self.test_path, "test"), self.test_path)
        self.datasets = datasets

    def _loader(self, split: str, train: bool) -> DataLoader | list:
        self.setup()
        if split not in self.datasets:
            return []
        dataset = self.datasets[split]
        rank, world = _distributed_context(self)
        planner = _ExamplePlanner(len(dataset), shuffle=train, rc_augment=train and self.rc_augment, seed=self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=PlanSampler(planner, rank=rank, world_size=world, drop_tail=train),
            collate_fn=_PadCollator(self.max_length, self.padding_side),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader | list:
        return self._loader("test", train=False)


# ============================================================================ packed sequences
def pack_rows(lengths: Sequence[int], pack_length: int) -> list[list[int]]:
    """Next-fit packing: consecutive items fill a row until the next one would not fit.

    Returns rows as lists of item positions. An item longer than ``pack_length`` is an error:
    cut it first (``PackedSequenceDataModule`` does).
    """
    rows: list[list[int]] = []
    used = pack_length
    for i, n in enumerate(lengths):
        if n > pack_length:
            raise ValueError(f"item {i} has {n} tokens, more than pack_length={pack_length}")
        if used + n > pack_length:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += n
    return rows


class _PackCollator:
    """Packs a batch of token arrays into rows of ``pack_length`` with ``seq_idx``.

    Row ``r`` holds sequences 0, 1, 2, ... of its segment list back to back; ``seq_idx`` numbers
    them, the padded tail gets its own number and ``attention_mask`` False, so no state,
    convolution or attention crosses a boundary and the loss counts nothing across one.
    """

    def __init__(self, pack_length: int, rows_per_batch: int) -> None:
        self.pack_length, self.rows_per_batch = pack_length, rows_per_batch

    def __call__(self, items: list[np.ndarray]) -> dict[str, torch.Tensor]:
        rows = pack_rows([len(x) for x in items], self.pack_length)
        n_rows = max(len(rows), 1)
        ids = torch.zeros((n_rows, self.pack_length), dtype=torch.long)
        seq_idx = torch.zeros((n_rows, self.pack_length), dtype=torch.int32)
        mask = torch.zeros((n_rows, self.pack_length), dtype=torch.bool)
        for r, members in enumerate(rows):
            pos = 0
            for s, i in enumerate(members):
                n = len(items[i])
                ids[r, pos : pos + n] = torch.from_numpy(items[i].astype(np.int64))
                seq_idx[r, pos : pos + n] = s
                mask[r, pos : pos + n] = True
                pos += n
            seq_idx[r, pos:] = len(members)
        return {"input_ids": ids, "seq_idx": seq_idx, "attention_mask": mask}


class _PackedBatchSampler(torch.utils.data.Sampler):
    """Per epoch: shuffle the sequences (seed + epoch), pack them into rows of ``pack_length``,
    and yield ``rows_per_batch`` rows' worth of sequence indices at a time. Under DDP rank ``r``
    takes batches ``r, r + w, ...`` (the tail is cut so every rank has as many). On exact
    resume the first pass over the saved epoch skips the batches already trained on."""

    def __init__(self, lengths: np.ndarray, pack_length: int, rows_per_batch: int, *, shuffle: bool,
                 rc_augment: bool, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.lengths, self.pack_length, self.rows_per_batch = lengths, pack_length, rows_per_batch
        self.shuffle, self.rc_augment, self.seed = shuffle, rc_augment, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.resume_at: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _batches(self) -> list[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, 3, self.epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        strand = rng.integers(0, 2, size=len(order)) if self.rc_augment else np.zeros(len(order), np.int64)
        rows = pack_rows(self.lengths[order].tolist(), self.pack_length)
        batches = []
        for b in range(0, len(rows), self.rows_per_batch):
            members = [m for row in rows[b : b + self.rows_per_batch] for m in row]
            batches.append([(int(order[m]), int(strand[m])) for m in members])
        if self.world_size > 1:
            batches = batches[: len(batches) - len(batches) % self.world_size] if self.shuffle else batches
        return batches[self.rank :: self.world_size]

    def __iter__(self):
        batches = self._batches()
        if self.resume_at is not None and self.resume_at[0] == self.epoch:
            batches = batches[self.resume_at[1] :]
            self.resume_at = None
        return iter(batches)

    def __len__(self) -> int:
        return len(self._batches())


class _SequenceDataset(Dataset):
    """Token arrays indexed by ``(i, reverse)``; condition tokens (if any) stay in front on RC."""

    def __init__(self, ids: list[np.ndarray], prefix_lengths: np.ndarray) -> None:
        self.ids, self.prefix = ids, prefix_lengths
        self._tokenizer = Tokenizer()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: tuple[int, int]) -> np.ndarray:
        i, reverse = index
        ids = self.ids[i]
        if not reverse:
            return ids
        p = int(self.prefix[i])
        return np.concatenate([ids[:p], self._tokenizer.reverse_complement(ids[p:])])


class PackedSequenceDataModule(L.LightningDataModule):
    """Language modelling on many variable-length sequences, packed without padding waste.

    Sequences (FASTA records, or the ``sequence`` column of a labelled table) are cut to at
    most ``pack_length`` tokens and packed back to back into rows of ``pack_length``; batches
    are ``{"input_ids", "seq_idx", "attention_mask"}`` of shape ``(rows_per_batch, pack_length)``
    and the model keeps every sequence separate (see ``seq_idx`` in the kernels and blocks).
    With ``condition_column``, each sequence is prefixed with its label's condition token
    (``tokenizer.add_condition_tokens``), as conditional fine-tuning needs.

    Args:
        sources: FASTA files or labelled tables (TSV/CSV) of sequences.
        pack_length: Tokens per packed row.
        rows_per_batch: Rows per batch (per device).
        val_fraction: Share of the sequences held out for validation.
        condition_column: Table column whose value becomes a condition token (e.g. ``label``).
        tokenizer: Tokenizer that receives the condition tokens (default: a new one).
        add_bos: Start every sequence with [BOS] (after the condition token).
        rc_augment: Use the reverse complement of each training sequence with probability 1/2.
        num_workers: DataLoader worker processes.
        seed: Seed for the split, the order of sequences (a new one each epoch) and strands.
    """

    def __init__(
        self,
        sources: str | list[str],
        pack_length: int = 1024,
        rows_per_batch: int = 8,
        val_fraction: float = 0.05,
        condition_column: str | None = None,
        tokenizer: Tokenizer | None = None,
        add_bos: bool = False,
        rc_augment: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if pack_length < 2 or rows_per_batch < 1:
            raise ValueError("pack_length must be >= 2 and rows_per_batch >= 1")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        self.sources = [str(sources)] if isinstance(sources, (str, os.PathLike)) else [str(s) for s in sources]
        self.pack_length, self.rows_per_batch = pack_length, rows_per_batch
        self.val_fraction, self.condition_column = val_fraction, condition_column
        self.tokenizer = tokenizer or Tokenizer()
        self.add_bos, self.rc_augment = add_bos, rc_augment
        self.num_workers, self.seed = num_workers, seed
        self.datasets: dict[str, _SequenceDataset] | None = None
        self._resume_position: tuple[int, int] | None = None

    def _read(self) -> tuple[list[np.ndarray], list[int]]:
        from genoseq.fasta import iter_fasta, open_text

        ids, prefixes = [], []
        for path in self.sources:
            with open_text(path) as fh:
                is_fasta = fh.read(1) == ">"
            if is_fasta:
                if self.condition_column:
                    raise InputError("condition_column needs a labelled table, not FASTA", path=path)
                records = [(r.name, r.sequence, None) for r in iter_fasta(path)]
            else:
                column = self.condition_column
                records = [(f"row {i + 1}", r.sequence, r.label if column == "label" else r.extra.get(column) if column else None)
                           for i, r in enumerate(read_labelled(path))]
            for name, seq, condition in records:
                prefix = []
                if self.condition_column:
                    if condition in (None, ""):
                        raise InputError(f"no value in column {self.condition_column!r}", path=path, record=name)
                    prefix = self.tokenizer.add_condition_tokens([condition])
                prefix += [BOS] if self.add_bos else []
                body = self.tokenizer.encode(seq, name=name, path=path)
                room = self.pack_length - len(prefix)
                for start in range(0, len(body), room):  # a long record becomes several sequences
                    ids.append(np.concatenate([np.array(prefix, np.uint8), body[start : start + room]]))
                    prefixes.append(len(prefix))
        if not ids:
            raise InputError("no sequences", path=", ".join(self.sources))
        return ids, prefixes

    def setup(self, stage: str | None = None) -> None:
        if self.datasets is not None:
            return
        ids, prefixes = self._read()
        rng = np.random.default_rng([self.seed, 4])
        order = rng.permutation(len(ids))
        n_val = int(round(len(ids) * self.val_fraction))
        parts = {"val": order[:n_val], "train": order[n_val:]}
        prefixes = np.asarray(prefixes)
        self.datasets = {name: _SequenceDataset([ids[i] for i in idx], prefixes[idx])
                         for name, idx in parts.items() if len(idx)}

    def _loader(self, split: str, train: bool) -> DataLoader | list:
        self.setup()
        if split not in self.datasets:
            return []
        dataset = self.datasets[split]
        rank, world = _distributed_context(self)
        sampler = _PackedBatchSampler(
            np.array([len(x) for x in dataset.ids]), self.pack_length, self.rows_per_batch,
            shuffle=train, rc_augment=train and self.rc_augment, seed=self.seed, rank=rank, world_size=world,
        )
        if train and self._resume_position is not None:
            sampler.resume_at, self._resume_position = self._resume_position, None
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=_PackCollator(self.pack_length, self.rows_per_batch),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", train=False)

    def state_dict(self) -> dict:
        """Saved in Lightning checkpoints, with the position in the epoch for exact resume."""
        return _with_position({"condition_labels": list(self.tokenizer.condition_labels)}, self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_position = _saved_position(state_dict)
