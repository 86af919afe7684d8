"""``genoseq subset``: a plain copy of part of a VCF, table, FASTA or FASTQ file.

The workflow stages its inputs with it: a genome FASTA decompressed (genoseq indexes plain or
bgzip FASTA, not plain gzip), optionally each record cut to its first bases, and datasets cut to
their first records, or to those whose name line matches a pattern, for quick runs.
Nothing heavy is imported, so building the CLI parser stays fast.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Iterator, Literal

from genoseq.runtime import require_file

RecordFormat = Literal["vcf", "tsv", "csv", "fasta", "fastq"]


def subset(
    input: str,
    out: str,
    format: RecordFormat,
    max_records: int | None = None,
    match: str | None = None,
    max_bases: int | None = None,
) -> dict:
    """Copy part of a VCF / TSV / CSV / FASTA / FASTQ file (plain, gzip or bgzip) to a plain file.

    A record is a VCF data line, a table row after the header line, a FASTA record (its ``>``
    line and sequence lines) or a four-line FASTQ record. Header lines (VCF ``#`` lines, the
    first line of a table) are always kept. Kept lines are copied as they are, ending in ``\\n``;
    blank lines are dropped, except inside a kept FASTA record, which keeps them. With no option
    set the copy is the decompressed file. The copy is written under a temporary name and
    renamed when complete.

    Args:
        input: The file to read, plain or gzip/bgzip (told apart by its first bytes).
        out: The plain file to write.
        format: The record layout of ``input``: vcf, tsv, csv, fasta or fastq.
        max_records: Keep only the first ``max_records`` records (of those that ``match``);
            null keeps them all.
        match: A Python regular expression (``re.search``): keep only the records whose name line
            (FASTA ``>``, FASTQ ``@`` line) or line (VCF record, table row) matches it.
        max_bases: FASTA only: cut every kept record to its first ``max_bases`` bases, keeping
            its line layout; null keeps whole records.

    Returns:
        ``{"input", "out", "format", "records"}``, ``records`` being the number kept.

    Raises:
        InputError: an empty or malformed input (a sequence line before any FASTA header, a FASTQ
            record without its ``@`` header or ``+`` line, or cut short), a negative
            ``max_records``, ``max_bases`` below 1 or for another format than FASTA, or a
            ``match`` that is not a regular expression.
    """
    import re

    from genoseq.errors import InputError
    from genoseq.fasta import open_text
    from genoseq.runtime import atomic_output

    if max_records is not None and max_records < 0:
        raise InputError(f"max_records must be 0 or more (or null for all), got {max_records}")
    if max_bases is not None and format != "fasta":
        raise InputError(f"max_bases cuts FASTA records; it cannot be used with format {format}")
    if max_bases is not None and max_bases < 1:
        raise InputError(f"max_bases must be 1 or more (or null for whole records), got {max_bases}")
    try:
        pattern = re.compile(match) if match else None
    except re.error as err:
        raise InputError(f"match: {match!r} is not a regular expression ({err})") from None
    path = Path(input)
    if path.is_dir():
        raise InputError(f"is a directory, expected a {format} file", path=str(path))
    require_file(path)

    selector = _Selector(pattern, max_records)
    with open_text(path) as handle, atomic_output(out, "wb") as dest:
        lines = _Lines(handle)
        for batch in _batches(_FILTERS[format](lines, selector, max_bases, str(path))):
            dest.write(("\n".join(batch) + "\n").encode("ascii", "surrogateescape"))
        if not lines.seen:
            raise InputError("empty file", path=str(path))
    summary = {"input": str(path), "out": str(out), "format": format, "records": selector.kept}
    print(f"genoseq subset: {selector.kept} {format} record(s) of {path} written to {out}", file=sys.stderr)
    return summary


class _Selector:
    """Which records are kept: those matching ``pattern`` (all if None), the first ``limit``."""

    def __init__(self, pattern, limit: int | None) -> None:
        self.pattern, self.limit, self.kept = pattern, limit, 0

    @property
    def full(self) -> bool:
        return self.limit is not None and self.kept >= self.limit

    def take(self, line: str) -> bool:
        if self.pattern is not None and not self.pattern.search(line):
            return False
        self.kept += 1
        return True


class _Lines:
    """A text file's lines as (line number, line without its newline); ``seen`` turns True at
    the first line that is not blank, and :meth:`present` skips blank lines."""

    def __init__(self, handle) -> None:
        self.numbered, self.seen = enumerate(handle, start=1), False

    def __iter__(self):
        return self

    def __next__(self) -> tuple[int, str]:
        number, line = next(self.numbered)
        line = line.rstrip("\n")
        self.seen = self.seen or bool(line.strip())
        return number, line

    def present(self) -> Iterator[tuple[int, str]]:
        return ((number, line) for number, line in self if line.strip())


def _vcf(lines: _Lines, selector: _Selector, max_bases, path: str) -> Iterator[str]:
    for _, line in lines.present():
        if line.startswith("#"):
            yield line
        elif selector.full:
            return
        elif selector.take(line):
            yield line


def _table(lines: _Lines, selector: _Selector, max_bases, path: str) -> Iterator[str]:
    rows = lines.present()
    for _, header in itertools.islice(rows, 1):
        yield header
    for _, line in rows:
        if selector.full:
            return
        if selector.take(line):
            yield line


def _fasta(lines: _Lines, selector: _Selector, max_bases: int | None, path: str) -> Iterator[str]:
    from genoseq.errors import InputError

    keep, left, started = False, 0, False
    for number, line in lines:
        if line.startswith(">"):
            if selector.full:
                return
            keep, left, started = selector.take(line), max_bases, True
            if keep:
                yield line
        elif not line.strip():
            if keep and (left is None or left > 0):
                yield line
        elif not started:
            raise InputError("sequence line before any '>' header (is this a FASTA file?)", path=path, line=number)
        elif keep and left is None:
            yield line
        elif keep and left > 0:
            line = line[:left]
            left -= len(line)
            yield line


def _fastq(lines: _Lines, selector: _Selector, max_bases, path: str) -> Iterator[str]:
    from genoseq.errors import InputError

    for number, header in lines.present():
        if not header.startswith("@"):
            raise InputError(f"expected a read header starting with '@', found {header[:30]!r}", path=path, line=number)
        record = [header] + [line for _, line in itertools.islice(lines, 3)]
        if len(record) < 4:
            raise InputError("truncated record (fewer than 4 lines)", path=path, line=number)
        if not record[2].startswith("+"):
            raise InputError(f"expected the '+' separator line, found {record[2][:30]!r}", path=path, line=number + 2)
        if selector.full:
            return
        if selector.take(header):
            yield from record


_FILTERS = {"vcf": _vcf, "tsv": _table, "csv": _table, "fasta": _fasta, "fastq": _fastq}


def _batches(lines: Iterator[str], size: int = 4096) -> Iterator[list[str]]:
    while batch := list(itertools.islice(lines, size)):
        yield batch
