"""BED intervals: BED3 and up, 0-based half-open, plain or gzip; bedGraph tracks of per-base values.

Columns 4-6 (name, score, strand) are read when present; any further columns are kept as
strings in ``extra``. ``track``, ``browser``, ``#`` comment and blank lines are skipped.
Fields are tab-separated; a line without tabs is split on any whitespace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TextIO

import numpy as np

from genoseq.errors import InputError
from genoseq.fasta import _check_exists, open_text


@dataclass(frozen=True)
class BedInterval:
    """One BED line. ``score`` is ``None`` for ``.``; ``strand`` is ``"+"``, ``"-"`` or ``None``."""

    contig: str
    start: int
    end: int
    name: str | None = None
    score: float | None = None
    strand: str | None = None
    extra: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.end - self.start


def _int_field(value: str, what: str, path: str, line: int, record: str) -> int:
    digits = value[1:] if value.startswith("-") else value  # int() would also take "1_0", "+5" and " 5"
    if not (digits.isascii() and digits.isdigit()):
        raise InputError(f"{what} {value!r} is not an integer", path=path, record=record, line=line)
    return int(value)


def iter_bed(path: str | os.PathLike) -> Iterator[BedInterval]:
    """Stream the intervals of a BED file.

    Raises :class:`InputError` naming the file, line and interval name (or contig) for: fewer
    than three columns, a non-integer or negative coordinate, start > end, a non-numeric
    score, or a strand other than ``+``, ``-`` or ``.``.
    """
    path = Path(path)
    _check_exists(path)
    spath = str(path)
    with open_text(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith("#") or line.split(maxsplit=1)[0] in ("track", "browser"):
                continue  # a contig may be called "track_1"
            fields = line.split("\t") if "\t" in line else line.split()
            if len(fields) < 3:
                raise InputError(
                    f"BED line needs at least 3 columns (contig, start, end), found {len(fields)}",
                    path=spath, line=line_no,
                )
            contig = fields[0]
            name = fields[3] if len(fields) > 3 and fields[3] not in ("", ".") else None
            record = name or contig
            start = _int_field(fields[1], "start", spath, line_no, record)
            end = _int_field(fields[2], "end", spath, line_no, record)
            if start < 0:
                raise InputError(f"negative start {start}", path=spath, record=record, line=line_no)
            if start > end:
                raise InputError(f"start {start} is greater than end {end}", path=spath, record=record, line=line_no)
            score = None
            if len(fields) > 4 and fields[4] not in ("", "."):
                try:
                    score = float(fields[4])
                except ValueError:
                    raise InputError(f"score {fields[4]!r} is not a number", path=spath, record=record, line=line_no) from None
            strand = None
            if len(fields) > 5:
                if fields[5] not in ("+", "-", "."):
                    raise InputError(f"strand {fields[5]!r} must be '+', '-' or '.'", path=spath, record=record, line=line_no)
                strand = None if fields[5] == "." else fields[5]
            yield BedInterval(contig, start, end, name, score, strand, tuple(fields[6:]))


def read_bed(path: str | os.PathLike) -> list[BedInterval]:
    """All intervals of a BED file, in file order (see :func:`iter_bed`)."""
    return list(iter_bed(path))


def bedgraph_lines(contig: str, start: int, values, *, digits: int = 4) -> Iterator[str]:
    """bedGraph lines (``contig  start  end  value``, 0-based half-open) of per-base ``values``
    beginning at 0-based ``start``: equal neighbouring values (after rounding to ``digits``
    decimals) are merged into one line, and NaN bases (no value) are left out."""
    values = np.round(np.asarray(values, dtype=np.float64), digits)
    if values.ndim != 1:
        raise ValueError("bedGraph values must be one per base (a 1-D array)")
    if not len(values):
        return
    missing = np.isnan(values)
    # a run ends where the value changes or NaN-ness changes
    change = np.flatnonzero((values[1:] != values[:-1]) & ~(missing[1:] & missing[:-1]) | (missing[1:] != missing[:-1])) + 1
    bounds = np.concatenate([[0], change, [len(values)]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        if not missing[a]:
            yield f"{contig}\t{start + a}\t{start + b}\t{values[a]:.{digits}g}\n"


def write_bedgraph(handle: TextIO, tracks: Iterable[tuple[str, int, "np.ndarray"]], *, name: str | None = None,
                   description: str | None = None, digits: int = 4) -> None:
    """Write ``(contig, start, values)`` tracks to an open text handle as one bedGraph (with a
    ``track type=bedGraph`` header line when ``name`` is given). Tracks should come sorted by
    contig and start, as genome browsers expect; pair with :func:`genoseq.runtime.atomic_output`
    so that a failed run leaves no partial file."""
    if name is not None:
        desc = f' description="{description}"' if description else ""
        handle.write(f'track type=bedGraph name="{name}"{desc}\n')
    for contig, start, values in tracks:
        handle.writelines(bedgraph_lines(contig, int(start), values, digits=digits))
