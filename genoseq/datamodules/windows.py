"""Language-model windows read from genomes (FASTA files, HDF5 token stores)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from genoseq.errors import InputError
from genoseq.genome import Genome, open_genome

from .regions import Region, count_n, split_regions
from .sampling import plan_sampler, saved_position, with_position

__all__ = ["GenomeSplit", "GenomeSplitDataModule", "GenomeWindowDataset", "GenomeWindowDataModule", "open_split"]


@dataclass
class GenomeSplit:
    """Opened genomes and their train / validation regions, each keyed by contig id
    (``contig_keys[id] = (source index, contig name)``), with the N runs of every contig used."""

    genomes: list[Genome]
    contig_keys: list[tuple[int, str]]
    train: list[tuple[int, Region]]
    val: list[tuple[int, Region]]
    n_runs: dict[int, np.ndarray]


def open_split(sources: list[str], *, convert_gzip: bool, val_contigs: list[str], val_sources: list[str],
               val_fraction: float, val_block_length: int) -> GenomeSplit:
    """Open ``sources`` and split them as :func:`split_regions` does (what every genome DataModule
    reads from)."""
    genomes = [open_genome(s, convert_gzip=convert_gzip) for s in sources]
    train_regions, val_regions = split_regions(
        [g.contigs for g in genomes], val_contigs=val_contigs, val_sources=[sources.index(s) for s in val_sources],
        val_fraction=val_fraction, val_block_length=val_block_length,
    )
    contig_keys = [(i, name) for i, g in enumerate(genomes) for name in g.contigs]
    cid = {key: n for n, key in enumerate(contig_keys)}
    train = [(cid[(r.source, r.contig)], r) for r in train_regions]
    val = [(cid[(r.source, r.contig)], r) for r in val_regions]
    n_runs = {c: genomes[contig_keys[c][0]].n_runs(contig_keys[c][1]) for c in {c for c, _ in train + val}}
    return GenomeSplit(genomes, contig_keys, train, val, n_runs)


class _WindowPlanner:
    """Makes each epoch's window plan: rows of (contig id, start, reverse strand flag)."""

    def __init__(
        self,
        regions: list[tuple[int, Region]],
        n_runs: dict[int, np.ndarray],
        *,
        window_length: int,
        max_n: int,
        stride: int | None = None,
        sampling: str = "random",
        windows_per_epoch: int | None = None,
        shuffle: bool = False,
        rc_augment: bool = False,
        seed: int = 0,
        stream: int = 0,
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
        self.sliding = self._sliding_windows(stride or window_length, max_windows) if sampling == "sliding" else None

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

    def random_windows(self, rng: np.random.Generator, wanted: int) -> np.ndarray:
        """``wanted`` rows of (contig id, start) at uniformly random positions of the regions,
        skipping windows with more than ``max_n`` N bases."""
        total = int(self.region_starts.sum())
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
            f"could not sample {wanted} windows of {self.window_length} bases with at most {self.max_n} N bases each; "
            "raise max_n_fraction or check the genome"
        )

    def __call__(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.stream, epoch])
        if self.sliding is not None:
            windows = self.sliding[rng.permutation(len(self.sliding))] if self.shuffle else self.sliding
        else:
            windows = self.random_windows(rng, int(self.windows_per_epoch))
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


class GenomeSplitDataModule(L.LightningDataModule):
    """What the genome window DataModules (:class:`GenomeWindowDataModule`, the curriculum's)
    share: their sources and the options of their validation split (checked and kept by
    :meth:`_keep_split_options`), the opened split (:meth:`_open_split`), validation batches and
    the resume position. A subclass plans ``self._val_planner`` in ``setup`` and reads it with
    its ``_loader(planner, train)``."""

    def _keep_split_options(self, *, max_n_fraction: float, rc_augment: bool, val_contigs: list[str] | None,
                            val_sources: list[str] | None, val_fraction: float, val_block_length: int,
                            max_val_windows: int | None, num_workers: int, seed: int, convert_gzip: bool) -> None:
        if not 0.0 <= max_n_fraction <= 1.0:
            raise ValueError("max_n_fraction must be in [0, 1]")
        val_sources = [str(s) for s in (val_sources or [])]
        unknown = [s for s in val_sources if s not in self.sources]
        if unknown:
            raise ValueError(f"val_sources must be among sources: {unknown}")
        self.max_n_fraction = max_n_fraction
        self.rc_augment = rc_augment
        self.val_contigs = list(val_contigs or [])
        self.val_sources = val_sources
        self.val_fraction = val_fraction
        self.val_block_length = val_block_length
        self.max_val_windows = max_val_windows
        self.num_workers = num_workers
        self.seed = seed
        self.convert_gzip = convert_gzip
        self.genomes: list[Genome] | None = None
        self._resume_position: tuple[int, int] | None = None

    def _open_split(self) -> GenomeSplit:
        """Open the sources and split them into training and validation regions (kept as
        ``genomes``, ``contig_keys``, ``train_regions``, ``val_regions``)."""
        split = open_split(self.sources, convert_gzip=self.convert_gzip, val_contigs=self.val_contigs,
                           val_sources=self.val_sources, val_fraction=self.val_fraction,
                           val_block_length=self.val_block_length)
        self.genomes, self.contig_keys = split.genomes, split.contig_keys
        self.train_regions, self.val_regions = [r for _, r in split.train], [r for _, r in split.val]
        return split

    def _training_sources(self) -> tuple[str, str]:
        """The training sources' file names, and what ``val_fraction`` held out of them, for an
        error that no window fits."""
        names = ", ".join(Path(s).name for s in self.sources if s not in self.val_sources)
        held_out = (f" after holding out {self.val_fraction:g} of every {self.val_block_length}-base block"
                    if self.val_fraction else "")
        return names, held_out

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        if not self.val_regions:
            return []  # Lightning skips validation
        return self._loader(self._val_planner, train=False)

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_position = saved_position(state_dict)


def source_list(sources: str | os.PathLike | list) -> list[str]:
    """One or more sources as a list of path strings; at least one."""
    found = [str(sources)] if isinstance(sources, (str, os.PathLike)) else [str(s) for s in sources]
    if not found:
        raise ValueError("at least one source is needed")
    return found


class GenomeWindowDataModule(GenomeSplitDataModule):
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
        self.sources = source_list(sources)
        if window_length < 1:
            raise ValueError("window_length must be positive")
        if sampling not in ("sliding", "random"):
            raise ValueError(f"sampling must be 'sliding' or 'random', not {sampling!r}")
        if sampling == "random" and not windows_per_epoch:
            raise ValueError("sampling='random' needs windows_per_epoch")
        self._keep_split_options(
            max_n_fraction=max_n_fraction, rc_augment=rc_augment, val_contigs=val_contigs, val_sources=val_sources,
            val_fraction=val_fraction, val_block_length=val_block_length, max_val_windows=max_val_windows,
            num_workers=num_workers, seed=seed, convert_gzip=convert_gzip)
        self.window_length = window_length
        self.stride = stride or window_length
        self.sampling = sampling
        self.windows_per_epoch = windows_per_epoch
        self.batch_size = batch_size
        self.shuffle = shuffle

    def setup(self, stage: str | None = None) -> None:
        if self.genomes is not None:
            return
        split = self._open_split()
        max_n = int(math.floor(self.max_n_fraction * self.window_length))
        common = dict(window_length=self.window_length, max_n=max_n, seed=self.seed)
        self._train_planner = _WindowPlanner(
            split.train, split.n_runs,
            stride=self.stride, sampling=self.sampling, windows_per_epoch=self.windows_per_epoch,
            shuffle=self.shuffle, rc_augment=self.rc_augment, stream=0, **common,
        )
        self._val_planner = _WindowPlanner(
            split.val, split.n_runs,
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
        names, held_out = self._training_sources()
        return (f"no training windows of {self.window_length} bases fit in {names}: its longest training region is "
                f"{longest} bases{held_out} (or every window has too many N); use a shorter window length")

    def _loader(self, planner: _WindowPlanner, train: bool) -> DataLoader:
        dataset = GenomeWindowDataset(self.genomes, self.contig_keys, self.window_length)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=plan_sampler(self, planner, train=train, batch_size=self.batch_size),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self._train_planner, train=True)

    def state_dict(self) -> dict:
        """Saved in Lightning checkpoints, with the position in the epoch for exact resume."""
        state = {"sources": self.sources, "window_length": self.window_length, "seed": self.seed}
        return with_position(state, self.trainer)
