"""FASTQ streaming (plain or gzip), four lines per record, with precise errors.

Multi-line FASTQ (sequence wrapped over several lines) is not supported: nearly every tool
writes four-line records, and a wrapped file is reported as malformed with the line to look at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from genoseq.errors import InputError
from genoseq.fasta import _check_exists, invalid_column, open_text

# Phred+33 quality characters: '!' (Q0) to '~' (Q93).
_QUALITY_BYTES = bytes(range(33, 127))


@dataclass(frozen=True)
class FastqRecord:
    """One read: ``name`` is the first word after ``@``, ``description`` the rest."""

    name: str
    description: str
    sequence: str
    quality: str

    def __len__(self) -> int:
        return len(self.sequence)

    def phred(self, offset: int = 33) -> np.ndarray:
        """Quality scores as a ``uint8`` array (Phred+33 by default)."""
        return (np.frombuffer(self.quality.encode("ascii"), dtype=np.uint8) - offset).astype(np.uint8)


def iter_fastq(path: str | os.PathLike) -> Iterator[FastqRecord]:
    """Stream the reads of a FASTQ file (plain or gzip/bgzip, detected from the content).

    Raises :class:`InputError` naming the file, the read and the line for: a header that does
    not start with ``@``, a missing ``+`` separator, a truncated record, invalid sequence or
    quality characters, a quality string whose length differs from the sequence, or an empty
    file. Blank lines between records are skipped.
    """
    path = Path(path)
    _check_exists(path)
    spath = str(path)
    count = 0
    with open_text(path) as handle:
        line_no = 0

        def next_line() -> str | None:
            nonlocal line_no
            raw = handle.readline()
            if not raw:
                return None
            line_no += 1
            return raw.rstrip("\r\n")

        while True:
            header = next_line()
            while header is not None and not header.strip():
                header = next_line()
            if header is None:
                break
            if not header.startswith("@"):
                raise InputError(
                    f"expected a read header starting with '@', found {header[:30]!r}",
                    path=spath, line=line_no,
                )
            fields = header[1:].split(None, 1)
            if not fields:
                raise InputError("read header has no name", path=spath, line=line_no)
            name = fields[0]
            description = fields[1] if len(fields) > 1 else ""
            sequence, plus, quality = next_line(), next_line(), next_line()
            if quality is None:
                raise InputError("truncated record (fewer than 4 lines)", path=spath, record=name, line=line_no)
            seq_line = line_no - 2
            if not plus.startswith("+"):
                raise InputError(
                    f"expected the '+' separator line, found {plus[:30]!r} "
                    "(wrapped multi-line FASTQ is not supported)",
                    path=spath, record=name, line=line_no - 1,
                )
            col = invalid_column(sequence)
            if col is not None:
                raise InputError(
                    f"invalid sequence character {sequence[col]!r} at column {col + 1}",
                    path=spath, record=name, line=seq_line,
                )
            if len(quality) != len(sequence):
                raise InputError(
                    f"quality length {len(quality)} differs from sequence length {len(sequence)}",
                    path=spath, record=name, line=line_no,
                )
            if quality.encode("ascii", "surrogateescape").translate(None, _QUALITY_BYTES):
                raise InputError("quality string has characters outside '!'..'~'", path=spath, record=name, line=line_no)
            count += 1
            yield FastqRecord(name, description, sequence, quality)
    if count == 0:
        raise InputError("empty file: no FASTQ records", path=spath)
