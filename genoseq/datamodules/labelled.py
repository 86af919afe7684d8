"""Sequence classification (or numeric-target regression) batches from labelled tables or GenomicBenchmarks folders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from genoseq.errors import InputError
from genoseq.tables import LabelledSequence, is_genomic_benchmarks, numeric_targets, read_labelled
from genoseq.tokenizer import Tokenizer

from .sampling import plan_sampler

__all__ = ["LabelledSequenceDataset", "LabelledSequenceDataModule", "stratified_split"]


class LabelledSequenceDataset(Dataset):
    """Encoded sequences and label indices (or float target rows); the index is ``(row, reverse)``."""

    def __init__(self, ids: list[np.ndarray], labels: np.ndarray) -> None:
        self.ids, self.labels = ids, labels
        self._tokenizer = Tokenizer()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: tuple[int, int]) -> tuple[np.ndarray, int | np.ndarray]:
        row, reverse = index
        ids = self.ids[row]
        label = self.labels[row]
        return (self._tokenizer.reverse_complement(ids) if reverse else ids), (int(label) if label.ndim == 0 else label)


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
        labels = [label for _, label in items]
        if isinstance(labels[0], np.ndarray):  # regression: float targets (B, T)
            batch["targets"] = torch.from_numpy(np.stack(labels).astype(np.float32))
        else:
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
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

    With ``targets`` (numeric columns of a table) the batches carry ``"targets"`` (B, T)
    float32 instead of ``"labels"``, there are no classes, and the validation split is a
    random ``val_fraction`` of the rows.

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
        targets: Numeric target columns for regression (no label column is read then).
        nonnegative: Refuse negative targets (losses on counts or log1p values).
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
        targets: list[str] | None = None,
        nonnegative: bool = False,
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
        self.targets, self.nonnegative = (list(targets) if targets else None), nonnegative
        if self.targets and classes:
            raise ValueError("classes are for classification; targets make a regression DataModule")
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
        label_column = None if self.targets else self.label_column
        return read_labelled(path, split=split, sequence_column=self.sequence_column, label_column=label_column)

    def _encode(self, rows: list[LabelledSequence], path: str) -> LabelledSequenceDataset:
        tokenizer = Tokenizer()
        if self.targets:
            values = numeric_targets(rows, self.targets, path, nonnegative=self.nonnegative).astype(np.float32)
            ids = [tokenizer.encode(r.sequence, add_bos=self.add_bos, name=f"row {i + 1}", path=path)
                   for i, r in enumerate(rows)]
            return LabelledSequenceDataset(ids, values)
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
            # regression rows share one "label" (""), so the stratified split is a plain random one
            train_idx, val_idx = stratified_split([r.label for r in train_rows], self.val_fraction, self.seed)
            val_rows = [train_rows[i] for i in val_idx]
            train_rows = [train_rows[i] for i in train_idx]
        if self._classes is None:
            self._classes = [] if self.targets else sorted({r.label for r in train_rows})
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
        planner = _ExamplePlanner(len(dataset), shuffle=train, rc_augment=train and self.rc_augment, seed=self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=plan_sampler(self, planner, train=train, batch_size=self.batch_size),
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
