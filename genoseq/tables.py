"""Labelled sequences for classification: TSV/CSV tables and the GenomicBenchmarks layout.

* A table (``.tsv``, ``.csv``, optionally ``.gz``) with a header row holding a ``sequence``
  and a ``label`` column; other columns (e.g. ``activity``) are kept in ``extra``. The
  delimiter follows the extension (``.csv`` -> comma, anything else -> tab).
* A GenomicBenchmarks folder: ``<root>/<split>/<class>/*.txt``, one sequence per file, the
  class being the folder name.

:func:`read_labelled` accepts either. :func:`read_sequence_inputs` also takes FASTA files and
unlabelled tables (the input of ``predict``-like commands); :func:`read_target_inputs` reads
numeric target columns beside the sequences (regression).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from genoseq.errors import InputError
from genoseq.fasta import SEQUENCE_BYTES, _check_exists, invalid_column, is_fasta, iter_fasta, open_text
from genoseq.runtime import require_file


@dataclass(frozen=True)
class LabelledSequence:
    """A sequence with its class label and any extra table columns (as strings); ``line`` is
    the row's line in its table (None for a GenomicBenchmarks file)."""

    sequence: str
    label: str
    extra: dict[str, str] = field(default_factory=dict)
    line: int | None = None


def _check_sequence(seq: str, path: str, record: str, line: int | None) -> None:
    if not seq:
        raise InputError("empty sequence", path=path, record=record, line=line)
    col = invalid_column(seq)
    if col is not None:
        raise InputError(
            f"invalid character {seq[col]!r} at sequence position {col + 1}",
            path=path, record=record, line=line,
        )


def read_labelled_table(
    path: str | os.PathLike,
    *,
    sequence_column: str = "sequence",
    label_column: str | None = "label",
) -> list[LabelledSequence]:
    """Read a labelled TSV/CSV table (gzip is detected from the content).

    Errors name the file and line: a missing column, a row with the wrong number of fields, an
    empty or invalid sequence, an empty label. ``label_column=None`` reads a table without
    labels (``label`` is then ""), e.g. one with numeric targets in other columns.
    """
    path = Path(path)
    _check_exists(path)
    spath = str(path)
    delimiter = "," if path.name.removesuffix(".gz").lower().endswith(".csv") else "\t"
    rows: list[LabelledSequence] = []
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise InputError("empty file: expected a header row", path=spath)
        header = [h.strip() for h in header]
        for column in (sequence_column, label_column):
            if column is not None and column not in header:
                raise InputError(
                    f"missing column {column!r} (header has: {', '.join(header)})", path=spath, line=1
                )
        i_seq = header.index(sequence_column)
        i_label = header.index(label_column) if label_column is not None else None
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise InputError(f"expected {len(header)} fields, found {len(row)}", path=spath, line=line)
            seq, label = row[i_seq].strip(), row[i_label].strip() if i_label is not None else ""
            record = f"row {len(rows) + 1}"
            _check_sequence(seq, spath, record, line)
            if not label and i_label is not None:
                raise InputError("empty label", path=spath, record=record, line=line)
            extra = {h: v for j, (h, v) in enumerate(zip(header, row)) if j not in (i_seq, i_label)}
            rows.append(LabelledSequence(seq, label, extra, line))
    if not rows:
        raise InputError("table has a header but no rows", path=spath)
    return rows


def read_genomic_benchmarks(root: str | os.PathLike, split: str = "train") -> list[LabelledSequence]:
    """Read one split of a GenomicBenchmarks folder: ``root/split/<class>/*.txt``.

    Classes and files are read in sorted order, so the result is the same on every machine.
    Each file holds one sequence (line breaks inside it are joined).
    """
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise InputError(f"no {split!r} folder (expected {split}/<class>/*.txt)", path=str(root))
    class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not class_dirs:
        raise InputError("no class folders", path=str(split_dir))
    rows: list[LabelledSequence] = []
    for class_dir in class_dirs:
        files = sorted(class_dir.glob("*.txt"))
        if not files:
            raise InputError("class folder has no .txt files", path=str(class_dir))
        for file in files:
            with open_text(file) as handle:
                seq = "".join(line.strip() for line in handle)
            _check_sequence(seq, str(file), file.stem, None)
            rows.append(LabelledSequence(seq, class_dir.name, {"id": file.stem}))
    return rows


def is_genomic_benchmarks(path: str | os.PathLike) -> bool:
    """A folder with a ``train`` or ``test`` subfolder is taken for the GenomicBenchmarks layout."""
    path = Path(path)
    return path.is_dir() and any((path / split).is_dir() for split in ("train", "test"))


def read_labelled(
    path: str | os.PathLike,
    *,
    split: str = "train",
    sequence_column: str = "sequence",
    label_column: str = "label",
) -> list[LabelledSequence]:
    """Read a labelled table, or one ``split`` of a GenomicBenchmarks folder."""
    if is_genomic_benchmarks(path):
        return read_genomic_benchmarks(path, split)
    return read_labelled_table(path, sequence_column=sequence_column, label_column=label_column)


def numeric_targets(rows: list[LabelledSequence], columns: list[str], path: str | os.PathLike, *,
                    nonnegative: bool = False) -> "np.ndarray":
    """The float values of ``columns`` (kept in each row's ``extra``) as an (N, len(columns)) array.

    Errors name the file, line and column: a column the table lacks, a value that is not a
    number, NaN or infinite values, and (``nonnegative``) a negative value.
    """
    import math

    import numpy as np

    spath = str(path)
    header = list(rows[0].extra) if rows else []
    for column in columns:
        if rows and column not in rows[0].extra:
            raise InputError(f"missing target column {column!r} (other columns: {', '.join(header) or 'none'})",
                             path=spath, line=1 if rows[0].line is not None else None)
    values = np.zeros((len(rows), len(columns)), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            text = row.extra[column].strip()
            where = dict(path=spath, record=f"row {i + 1}", line=row.line)
            try:
                value = float(text)
            except ValueError:
                raise InputError(f"column {column!r}: {text!r} is not a number", **where) from None
            if not math.isfinite(value):
                raise InputError(f"column {column!r}: {text!r} is not a finite number", **where)
            if nonnegative and value < 0:
                raise InputError(f"column {column!r}: {text!r} is negative (this loss needs targets >= 0)", **where)
            values[i, j] = value
    return values


@dataclass
class SequenceInputs:
    """Sequences read from a FASTA file or a table, with their names and (optional) labels."""

    names: list[str]
    sequences: list[str]
    labels: list[str] | None


def _read_unlabelled_table(path: Path, sequence_column: str, name_column: str) -> SequenceInputs:
    delimiter = "," if path.name.removesuffix(".gz").lower().endswith(".csv") else "\t"
    names, sequences = [], []
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = [h.strip() for h in next(reader, [])]
        if sequence_column not in header:
            raise InputError(f"missing column {sequence_column!r} (header has: {', '.join(header) or 'nothing'})", path=str(path), line=1)
        i_seq = header.index(sequence_column)
        i_name = header.index(name_column) if name_column in header else None
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise InputError(f"expected {len(header)} fields, found {len(row)}", path=str(path), line=reader.line_num)
            seq = row[i_seq].strip()
            if not seq or seq.encode("ascii", "surrogateescape").translate(None, SEQUENCE_BYTES):
                raise InputError("empty sequence or invalid character (allowed: A C G T and IUPAC codes)", path=str(path), line=reader.line_num)
            sequences.append(seq)
            names.append(row[i_name].strip() if i_name is not None else f"row{len(sequences)}")
    if not sequences:
        raise InputError("table has no rows", path=str(path))
    return SequenceInputs(names, sequences, None)


def read_sequences(
    fasta: str | os.PathLike | None = None,
    tsv: str | os.PathLike | None = None,
    *,
    split: str = "train",
    sequence_column: str = "sequence",
    label_column: str = "label",
    name_column: str = "name",
) -> SequenceInputs:
    """Read exactly one of a FASTA file or a table (labelled, unlabelled, or GenomicBenchmarks)."""
    if (fasta is None) == (tsv is None):
        raise InputError("give exactly one input: --fasta or --tsv")
    if fasta is not None:
        records = list(iter_fasta(fasta))
        return SequenceInputs([r.name for r in records], [r.sequence for r in records], None)
    path = require_file(tsv)
    if not is_genomic_benchmarks(path):
        delimiter = "," if path.name.removesuffix(".gz").lower().endswith(".csv") else "\t"
        with open_text(path) as handle:
            header = [h.strip() for h in next(csv.reader(handle, delimiter=delimiter), [])]
        if label_column not in header:
            return _read_unlabelled_table(path, sequence_column, name_column)
    rows = read_labelled(path, split=split, sequence_column=sequence_column, label_column=label_column)
    names = [r.extra.get(name_column) or r.extra.get("id") or f"row{i + 1}" for i, r in enumerate(rows)]
    return SequenceInputs(names, [r.sequence for r in rows], [r.label for r in rows])


def read_sequence_inputs(path: str | os.PathLike, *, split: str = "train", sequence_column: str = "sequence",
                         label_column: str = "label") -> SequenceInputs:
    """Names, sequences and labels (None when unlabelled) of a FASTA file (by its content), a
    table or one ``split`` of a GenomicBenchmarks folder."""
    path = require_file(path)
    fasta = path.is_file() and is_fasta(path)
    return read_sequences(fasta=path if fasta else None, tsv=None if fasta else path, split=split,
                          sequence_column=sequence_column, label_column=label_column)


def read_target_inputs(path: str | os.PathLike, targets: list[str], *, split: str = "train",
                       sequence_column: str = "sequence", required: bool = True) -> tuple[SequenceInputs, "np.ndarray | None"]:
    """Names and sequences of a table, GenomicBenchmarks folder or FASTA file, and the values
    (N, len(targets)) of its numeric ``targets`` columns: None when the input lacks them and
    ``required`` is false (a FASTA file never has them)."""
    path = require_file(path)
    if path.is_file() and is_fasta(path):
        if required:
            raise InputError(f"a FASTA file has no target values: give a table with the columns {', '.join(targets)}",
                             path=str(path))
        records = list(iter_fasta(path))
        return SequenceInputs([r.name for r in records], [r.sequence for r in records], None), None
    rows = read_labelled(path, split=split, sequence_column=sequence_column, label_column=None)
    names = [r.extra.get("name") or r.extra.get("id") or f"row{i + 1}" for i, r in enumerate(rows)]
    known = required or all(t in rows[0].extra for t in targets)
    values = numeric_targets(rows, targets, path) if known else None
    return SequenceInputs(names, [r.sequence for r in rows], None), values
