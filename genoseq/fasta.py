"""FASTA reading: validation, indexed random access (pyfaidx) and a streaming record iterator.

Two ways in:

* :func:`open_indexed_fasta` for random access. Plain and bgzip files are indexed by pyfaidx
  (``.fai``, plus ``.gzi`` for bgzip). A plain-gzip file cannot be indexed: it gets a clear
  :class:`~genoseq.InputError`, or is recompressed to bgzip when ``convert_gzip=True``.
  Whenever an index is (re)built, the file is first checked by :func:`validate_fasta`, so a
  malformed file fails with the file, record and line instead of a pyfaidx traceback.
* :func:`iter_fasta` for files read once, front to back (plain, gzip or bgzip).

Contig names are the first word of the header line, as pyfaidx and samtools use them.

The small helpers :func:`detect_compression` and :func:`open_text` are shared by the other
readers (FASTQ, BED, tables).
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Literal

from genoseq.errors import InputError
from genoseq.runtime import require_file

Compression = Literal["plain", "gzip", "bgzip"]

# Bytes a sequence line may hold: A C G T, the IUPAC ambiguity codes, any case.
SEQUENCE_BYTES = b"ACGTRYSWKMBDHVNacgtryswkmbdhvn"


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record: ``name`` is the first word of the header, ``description`` the rest."""

    name: str
    description: str
    sequence: str

    def __len__(self) -> int:
        return len(self.sequence)


# ---------------------------------------------------------------------------- file helpers
def detect_compression(path: str | os.PathLike) -> Compression:
    """Tell plain, gzip and bgzip (BGZF) files apart by their first bytes, not their name."""
    with open(path, "rb") as handle:
        head = handle.read(18)
    if head[:2] != b"\x1f\x8b":
        return "plain"
    # BGZF: a gzip member with the FEXTRA flag whose first extra subfield is 'BC'.
    if len(head) >= 14 and head[3] & 0x04 and head[12:14] == b"BC":
        return "bgzip"
    return "gzip"


def open_text(path: str | os.PathLike, newline: str | None = None) -> IO[str]:
    """Open a text file for reading, decompressing gzip/bgzip transparently. Lines end at
    ``\n``, ``\r\n`` or ``\r``; ``newline=""`` keeps the line endings as they are in the file."""
    if detect_compression(path) == "plain":
        return open(path, encoding="ascii", errors="surrogateescape", newline=newline)
    return io.TextIOWrapper(gzip.open(path, "rb"), encoding="ascii", errors="surrogateescape", newline=newline)


def is_fasta(path: str | os.PathLike) -> bool:
    """Whether a file (plain, gzip or bgzip) is FASTA rather than FASTQ or a table: its text
    starts with ``>``. The one sniff every reader of "FASTA or something else" uses."""
    with open_text(path) as handle:
        return handle.read(1) == ">"


def _check_exists(path: Path) -> None:
    require_file(path)
    if path.is_dir():
        raise InputError("is a directory, expected a FASTA file", path=str(path))


def _bad_char_message(line: str, col: int) -> str:
    char = line[col]
    shown = repr(char) if char.isprintable() else f"byte 0x{ord(char) & 0xFF:02x}"
    return (
        f"invalid character {shown} at column {col + 1} of a sequence line; "
        "allowed: A C G T and IUPAC codes (R Y S W K M B D H V N), any case"
    )


def invalid_column(text: str) -> int | None:
    """The index of the first character of ``text`` that is not a base (A C G T or an IUPAC
    code, any case), or None when there is none."""
    leftover = text.encode("ascii", "surrogateescape").translate(None, SEQUENCE_BYTES)
    if not leftover:
        return None
    return next(i for i, ch in enumerate(text) if ch.encode("ascii", "surrogateescape") in leftover)


# ---------------------------------------------------------------------------- streaming
def _header(line: str, line_no: int, seen: dict[str, int], spath: str) -> tuple[str, str]:
    """The record name and description of a header line, checked (a name, not seen before);
    ``seen`` (name -> header line) gains it."""
    fields = line[1:].strip().split(None, 1)
    if not fields:
        raise InputError("header line has no record name", path=spath, line=line_no)
    name = fields[0]
    if name in seen:
        raise InputError(f"duplicate record name (first seen on line {seen[name]})", path=spath, record=name,
                         line=line_no)
    seen[name] = line_no
    return name, fields[1] if len(fields) > 1 else ""


class _Layout:
    """What stops a FASTA file from being indexed as it is, line by line: the first such thing
    is appended to ``found`` (when it is a list) as ``(message, line number)``."""

    def __init__(self, found: list | None) -> None:
        self.found = found
        self.ending: str | None = None  # the file's first line ending
        self.width = 0  # the record's first line length
        self.short_line = 0  # a line shorter than `width` (must be the record's last) or a blank line

    def irregular(self, message: str, at: int) -> None:
        if self.found is not None and not self.found:
            self.found.append((message, at))

    def line_end(self, end: str, line_no: int) -> None:
        """A line ending other than the first one's (or the first one)."""
        if not end:  # the last line, without one
            return
        if self.ending is None:
            self.ending = end
        else:
            self.irregular(f"line endings change from {self.ending!r} to {end!r}", line_no)
        if end == "\r":
            self.irregular("lines end in a bare carriage return (classic Mac)", line_no)

    def new_record(self) -> None:
        self.width = self.short_line = 0

    def blank(self, line_no: int) -> None:
        self.short_line = self.short_line or line_no  # blank lines are read past

    def sequence_line(self, line: str, stripped: str, line_no: int) -> None:
        """A sequence line as it is (``line``) and without whitespace (``stripped``)."""
        if stripped != line:
            self.irregular("whitespace inside a sequence line", line_no)
        if self.short_line:
            self.irregular("a blank or shorter line inside a record", self.short_line)
        if not self.width:
            self.width = len(line)
        elif len(line) > self.width:
            self.irregular(f"a line longer than the record's first line ({len(line)} > {self.width})", line_no)
        if len(line) < self.width:
            self.short_line = line_no


def _scan(path: Path, keep_sequence: bool, layout: list | None = None) -> Iterator[tuple[str, str, int, list[str] | int]]:
    """Walk a FASTA file once, checking it; yield (name, description, header line, body).

    ``body`` is the list of sequence lines when ``keep_sequence`` else the sequence length.
    Blank lines, ``\r`` line endings and spaces or tabs inside sequence lines are read past;
    when ``layout`` is a list, the first thing that stops the file from being indexed as it is
    (such a line, a line ending unlike the first one, or a line of another length than the
    record's first one before its last line) is appended to it as ``(message, line number)``.
    """
    seen: dict[str, int] = {}
    name: str | None = None
    description = ""
    header_line = line_no = length = 0
    chunks: list[str] = []
    spath = str(path)
    shape = _Layout(layout)

    def finish():
        if length == 0:
            raise InputError("record has no sequence", path=spath, record=name, line=header_line)
        return name, description, header_line, (chunks if keep_sequence else length)

    with open_text(path, newline="") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            end = raw[len(line):]
            if end != shape.ending:
                shape.line_end(end, line_no)
            if line.startswith(">"):
                if name is not None:
                    yield finish()
                name, description = _header(line, line_no, seen, spath)
                header_line, chunks, length = line_no, [], 0
                shape.new_record()
                continue
            stripped = "".join(line.split())
            if not stripped:
                shape.blank(line_no)
                continue
            if name is None:
                raise InputError("sequence line before any '>' header (is this a FASTA file?)", path=spath,
                                 line=line_no)
            if stripped.encode("ascii", "surrogateescape").translate(None, SEQUENCE_BYTES):
                raise InputError(_bad_char_message(stripped, invalid_column(stripped)), path=spath, record=name,
                                 line=line_no)
            if len(line) != shape.width or shape.short_line or stripped != line:  # else nothing to note
                shape.sequence_line(line, stripped, line_no)
            if keep_sequence:
                chunks.append(stripped)
            length += len(stripped)
    if name is None:
        if line_no == 0:
            raise InputError("empty file", path=spath)
        raise InputError("no FASTA record ('>' header) found", path=spath)
    yield finish()


def iter_fasta(path: str | os.PathLike) -> Iterator[FastaRecord]:
    """Stream the records of a FASTA file (plain, gzip or bgzip), checking each as it is read.

    Raises :class:`InputError` for an empty file, a sequence line before any header, a header
    without a name, a duplicate record name, a record without sequence or an invalid
    character, naming the file, the record and the line.
    """
    path = Path(path)
    _check_exists(path)
    for name, description, _, chunks in _scan(path, keep_sequence=True):
        yield FastaRecord(name, description, "".join(chunks))


def validate_fasta(path: str | os.PathLike) -> dict[str, int]:
    """Check a FASTA file from end to end; return ``{record name: length}`` in file order."""
    return check_fasta(path)[0]


def check_fasta(path: str | os.PathLike) -> tuple[dict[str, int], str | None]:
    """:func:`validate_fasta`, and why the file cannot be indexed as it is (``None`` if it can):
    blank lines or lines of uneven length inside a record, ``\r``-only or mixed line endings,
    whitespace inside sequence lines."""
    path = Path(path)
    _check_exists(path)
    layout: list = []
    lengths = {name: length for name, _, _, length in _scan(path, keep_sequence=False, layout=layout)}
    return lengths, (f"{layout[0][0]} (line {layout[0][1]})" if layout else None)


def _copy_is_current(path: Path, dest: Path, read_only_message: str) -> bool:
    """True if ``dest``, a copy made from ``path``, is newer than it and can be reused; else
    check that it can be written (an :class:`InputError` with ``read_only_message`` if not)."""
    if dest.exists() and dest.stat().st_mtime >= path.stat().st_mtime:
        return True
    if not os.access(dest.parent, os.W_OK):
        raise InputError(read_only_message, path=str(path))
    return False


def normalized_path(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`write_normalized` writes: ``x.fa`` / ``x.fa.gz`` -> ``x.normalized.fa``."""
    path = Path(path)
    stem = path.name
    for suffix in (".gz", ".bgz"):
        stem = stem.removesuffix(suffix)
    stem, dot, ext = stem.rpartition(".")
    name = f"{stem}.normalized.{ext}" if dot else f"{ext}.normalized.fa"
    return (Path(out_dir) if out_dir is not None else path.parent) / name


def write_normalized(path: str | os.PathLike, out_dir: str | os.PathLike | None = None, width: int = 80) -> Path:
    """A plain copy of a FASTA file that can be indexed: the same records (names, descriptions,
    sequences, case), ``width`` bases per line, ``\n`` line endings. An existing copy newer than
    the input is reused; the copy is written under a temporary name and renamed."""
    from genoseq.runtime import atomic_output

    path = Path(path)
    dest = normalized_path(path, out_dir)
    if _copy_is_current(path, dest, (
            f"this FASTA cannot be indexed as it is and {dest.parent} is read-only, so no normalised copy "
            f"can be written beside it; rewrite it with even lines somewhere writable (e.g. "
            f"seqkit seq -w 80 {path.name} > fixed.fa) or pass a writable folder")):
        return dest
    with atomic_output(dest) as out:
        for record in iter_fasta(path):
            out.write(f">{record.name} {record.description}".rstrip() + "\n")
            seq = record.sequence
            out.writelines(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
    for stale in (Path(str(dest) + ".fai"),):
        stale.unlink(missing_ok=True)
    return dest


# ---------------------------------------------------------------------------- indexed access
def bgzip_path(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`convert_gzip_to_bgzip` writes: ``x.fa.gz`` -> ``x.fa.bgz`` (in ``out_dir``)."""
    path = Path(path)
    name = path.name.removesuffix(".gz") + ".bgz"
    return (Path(out_dir) if out_dir is not None else path.parent) / name


def convert_gzip_to_bgzip(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Recompress a plain-gzip file as bgzip (via pysam) so that it can be indexed.

    The result goes next to the input, or into ``out_dir``. An existing conversion newer than
    the input is reused. Writing goes to a temporary name first, so an interrupted conversion
    never leaves a truncated ``.bgz`` behind.
    """
    import pysam

    path = Path(path)
    dest = bgzip_path(path, out_dir)
    if _copy_is_current(path, dest, f"cannot write the bgzip copy to read-only directory {dest.parent}; "
                                    "decompress the file or bgzip it somewhere writable"):
        return dest
    from genoseq.runtime import atomic_path

    with atomic_path(dest) as tmp:
        # pysam.tabix_compress would compress the gzip bytes a second time: decompress first.
        with gzip.open(path, "rb") as fin, pysam.BGZFile(str(tmp), "wb") as fout:
            while block := fin.read(1 << 22):
                fout.write(block)
    for stale in (Path(str(dest) + ".fai"), Path(str(dest) + ".gzi")):
        stale.unlink(missing_ok=True)
    return dest


def _index_is_current(path: Path) -> bool:
    fai = Path(str(path) + ".fai")
    if not fai.exists() or fai.stat().st_mtime < path.stat().st_mtime:
        return False
    if str(path).endswith((".gz", ".bgz")):
        gzi = Path(str(path) + ".gzi")
        return gzi.exists() and gzi.stat().st_mtime >= path.stat().st_mtime
    return True


def resolve_fasta(
    path: str | os.PathLike,
    *,
    convert_gzip: bool = False,
    convert_dir: str | os.PathLike | None = None,
) -> Path:
    """Return a path pyfaidx can index: the file itself, or its bgzip copy for plain gzip.

    A plain-gzip input raises :class:`InputError` telling the user what to do, unless
    ``convert_gzip`` is set. A bgzip file must end in ``.gz`` or ``.bgz`` (pyfaidx picks its
    reader by the name).
    """
    path = Path(path)
    _check_exists(path)
    kind = detect_compression(path)
    if kind == "gzip":
        if not convert_gzip:
            raise InputError(
                "FASTA is plain gzip, which cannot be indexed for random access; decompress it "
                f"(gunzip -k {path.name}), recompress it with bgzip (gunzip -c {path.name} | "
                "bgzip > out.fa.gz), or pass convert_gzip=True / --convert_gzip true to "
                "convert it to bgzip automatically",
                path=str(path),
            )
        return convert_gzip_to_bgzip(path, convert_dir)
    if kind == "bgzip" and not path.name.endswith((".gz", ".bgz")):
        raise InputError("bgzip-compressed FASTA must be named *.gz or *.bgz", path=str(path))
    if kind == "plain" and path.name.endswith((".gz", ".bgz")):
        raise InputError("file is named like gzip but is not compressed; rename it", path=str(path))
    return path


def open_indexed_fasta(
    path: str | os.PathLike,
    *,
    convert_gzip: bool = False,
    convert_dir: str | os.PathLike | None = None,
    validate: bool | Literal["auto"] = "auto",
):
    """Open a FASTA file for random access through pyfaidx (``as_raw``, original case).

    ``validate="auto"`` checks the whole file with :func:`check_fasta` only when the index
    has to be (re)built, so re-opening an indexed file (e.g. in every DataLoader worker) is
    cheap. A file pyfaidx cannot index as it is (blank lines or uneven lines inside a record,
    ``\r`` or mixed line endings, spaces in sequence lines) is read through a normalised copy,
    ``x.normalized.fa`` beside it (or in ``convert_dir``), written once with a warning and reused
    while newer than the input. pyfaidx's own indexing errors are re-raised as
    :class:`InputError`.
    """
    import warnings

    import pyfaidx

    resolved = resolve_fasta(path, convert_gzip=convert_gzip, convert_dir=convert_dir)
    copy = normalized_path(resolved, convert_dir)
    if copy.exists() and copy.stat().st_mtime >= resolved.stat().st_mtime:
        resolved = copy
    elif validate is True or (validate == "auto" and not _index_is_current(resolved)):
        _, problem = check_fasta(resolved)
        if problem:
            resolved = write_normalized(resolved, convert_dir)
            warnings.warn(f"{path}: cannot be indexed as it is ({problem}); reading the normalised copy {resolved}",
                          stacklevel=2)
    try:
        return pyfaidx.Fasta(str(resolved), as_raw=True, sequence_always_upper=False, rebuild=True)
    except pyfaidx.FastaIndexingError as err:
        raise InputError(f"cannot index FASTA: {err}", path=str(resolved)) from None
    except ValueError as err:  # pyfaidx reports duplicate names like this
        raise InputError(f"cannot index FASTA: {err}", path=str(resolved)) from None
