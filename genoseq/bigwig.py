"""bigWig signal tracks, read through pyBigWig (re-exported by :mod:`genoseq.annotation`).

A file is checked before libBigWig opens it, since libBigWig reads a truncated or damaged header
past the file's end (a crash, not an error): a bigWig starts and ends with its magic number, and
the offsets and zoom count of its 64-byte header lie inside the file. Values a damaged data block
cannot give are an :class:`~genoseq.errors.InputError` naming file and contig.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np

from genoseq.errors import InputError
from genoseq.fasta import _check_exists

__all__ = ["BigWigSignal"]

MAGIC = 0x888FFC26
HEADER = "IHHQQQHHQQIQ"  # magic, version, zoom levels, offsets of chromosome tree, data, index, ..., 64 bytes
ZOOM_HEADER = 24  # bytes per zoom level, after the header


def _check_header(path: str) -> None:
    """An :class:`InputError` unless ``path`` starts and ends with the bigWig magic number (either
    byte order) and its header's zoom levels and offsets lie inside the file."""
    with open(path, "rb") as raw:
        head = raw.read(struct.calcsize("<" + HEADER))
        size = raw.seek(0, os.SEEK_END)
        raw.seek(max(size - 4, 0))
        tail = raw.read(4)
    order = next((o for o in "<>" if head[:4] == struct.pack(o + "I", MAGIC)), None)
    if order is None:
        raise InputError("not a bigWig file (it does not start with the bigWig magic number)", path=path)
    if len(head) < struct.calcsize("<" + HEADER) or tail != head[:4]:
        raise InputError("a truncated bigWig file (it does not end with the bigWig magic number)", path=path)
    _, _, zooms, chrom_tree, data, index, *_, summary, _, extension = struct.unpack(order + HEADER, head)
    if len(head) + zooms * ZOOM_HEADER > chrom_tree or max(chrom_tree, data, index, summary, extension) >= size:
        raise InputError(f"a damaged bigWig header: {zooms} zoom levels, or offsets past the file's {size} bytes",
                         path=path)


class BigWigSignal:
    """A bigWig track (pyBigWig), opened lazily once per process (it pickles without its handle).

    With ``contigs`` (the genome's ``{name: length}``), contigs the track lacks are counted and
    warned about, and a track sharing no contig with the genome is an :class:`InputError`.
    ``missing`` is the value of bases without data (NaN in the file).
    """

    def __init__(self, path: str | os.PathLike, contigs: dict[str, int] | None = None, missing: float = 0.0) -> None:
        self.path = str(path)
        _check_exists(Path(path))
        _check_header(self.path)
        self.missing = missing
        self._handle = None
        self._pid = None
        handle = self.handle
        if not handle.isBigWig():
            raise InputError("not a bigWig file", path=self.path)
        self.chroms: dict[str, int] = dict(handle.chroms())
        self.absent: list[str] = []
        if contigs is not None:
            self.absent = [c for c in contigs if c not in self.chroms]
            if len(self.absent) == len(contigs):
                shown = ", ".join(list(contigs)[:3])
                raise InputError(f"the bigWig has none of the genome's contigs ({shown}...); its contigs: "
                                 f"{', '.join(list(self.chroms)[:3])}...", path=self.path)
            if self.absent:
                warnings.warn(f"{self.path}: {len(self.absent)} of {len(contigs)} genome contigs have no bigWig data "
                              f"(e.g. {self.absent[0]}); their signal is {missing}", stacklevel=2)

    @property
    def handle(self):
        if self._handle is None or self._pid != os.getpid():
            import pyBigWig

            try:
                self._handle = pyBigWig.open(self.path)
            except RuntimeError as err:
                raise InputError(f"cannot open as bigWig: {err}", path=self.path) from None
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"], state["_pid"] = None, None
        return state

    def values(self, contig: str, start: int, end: int) -> np.ndarray:
        """Per-base values of ``[start, end)`` (float32; ``missing`` where the track has none)."""
        out = np.full(end - start, self.missing, dtype=np.float32)
        end_in = min(end, self.chroms.get(contig, 0))  # no data past the end or on a contig the track lacks
        if end_in > start:
            try:
                vals = np.asarray(self.handle.values(contig, start, end_in, numpy=True), dtype=np.float32)
            except RuntimeError as err:  # a corrupt or truncated data block
                raise InputError(f"cannot read {start}-{end_in}: {err}", path=self.path, record=contig) from None
            if len(vals):  # none from a file without any interval
                out[: end_in - start] = np.where(np.isnan(vals), self.missing, vals)
        return out

    def mean(self, contig: str, start: int, end: int) -> float:
        return float(self.values(contig, start, end).mean()) if end > start else self.missing

    def profile(self, contig: str, start: int, end: int, bins: int) -> np.ndarray:
        """Mean signal in ``bins`` equal bins of ``[start, end)`` (its length a multiple of ``bins``)."""
        vals = self.values(contig, start, end)
        if len(vals) % bins:
            raise InputError(f"interval length {len(vals)} is not a multiple of {bins} bins", path=self.path,
                             field="bins", kind="bad_bins")
        return vals.reshape(bins, -1).mean(axis=1)
