"""Language modelling on many variable-length sequences, packed into rows without padding waste."""

from __future__ import annotations

import os
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from genoseq.errors import InputError
from genoseq.tables import read_labelled
from genoseq.tokenizer import BOS, Tokenizer

from .sampling import plan_sampler, saved_position, with_position

__all__ = ["PackedSequenceDataModule", "pack_rows"]


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


class _PackPlanner:
    """Makes each epoch's plan of batches: shuffle the sequences (seed + epoch), pack them into
    rows of ``pack_length`` and group ``rows_per_batch`` rows' worth of ``(sequence, reverse)``
    index tuples into a batch."""

    def __init__(self, lengths: np.ndarray, pack_length: int, rows_per_batch: int, *, shuffle: bool,
                 rc_augment: bool, seed: int) -> None:
        self.lengths, self.pack_length, self.rows_per_batch = lengths, pack_length, rows_per_batch
        self.shuffle, self.rc_augment, self.seed = shuffle, rc_augment, seed

    def __call__(self, epoch: int) -> list[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, 3, epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        strand = rng.integers(0, 2, size=len(order)) if self.rc_augment else np.zeros(len(order), np.int64)
        rows = pack_rows(self.lengths[order].tolist(), self.pack_length)
        batches = []
        for b in range(0, len(rows), self.rows_per_batch):
            members = [m for row in rows[b : b + self.rows_per_batch] for m in row]
            batches.append([(int(order[m]), int(strand[m])) for m in members])
        return batches


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
        from genoseq.fasta import is_fasta, iter_fasta

        ids, prefixes = [], []
        for path in self.sources:
            if is_fasta(path):
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
        planner = _PackPlanner(
            np.array([len(x) for x in dataset.ids]), self.pack_length, self.rows_per_batch,
            shuffle=train, rc_augment=train and self.rc_augment, seed=self.seed,
        )
        sampler = plan_sampler(self, planner, train=train)  # each plan item is a whole batch
        # Lightning sets the epoch on `loader.sampler` and `loader.batch_sampler.sampler`; without
        # this every epoch would replay epoch 0's order and strands, and resume would skip nothing.
        sampler.sampler = sampler
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=_PackCollator(self.pack_length, self.rows_per_batch),
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", train=False)

    def state_dict(self) -> dict:
        """Saved in Lightning checkpoints, with the position in the epoch for exact resume."""
        return with_position({"condition_labels": list(self.tokenizer.condition_labels)}, self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        self._resume_position = saved_position(state_dict)
