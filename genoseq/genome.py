"""One way to read genome windows as token ids, from FASTA or from the HDF5 token store.

>>> import genoseq
>>> from genoseq.genome import open_genome
>>> genome = open_genome(genoseq.default_genome())
>>> genome.contigs
{'NC_001416.1': 48502}
>>> genoseq.Tokenizer().decode(genome.fetch("NC_001416.1", 0, 10))
'GGGCGGCGAC'

Coordinates are 0-based and half-open. ``fetch(..., strand="-")`` returns the reverse
complement of the same interval. A genome object holds no open file handle when it is
pickled: every process (each DataLoader worker, each DDP rank) opens its own on first use,
and a handle inherited through ``fork`` is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from genoseq.errors import InputError
from genoseq.runtime import require_file
from genoseq.tokenizer import N, Tokenizer

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
FORMAT = "genoseq.token_store"  # the token store's root attributes (written by genoseq.store)
FORMAT_VERSION = 1
_TOKENIZER = Tokenizer()


def n_runs_of(ids: np.ndarray, offset: int = 0) -> np.ndarray:
    """Runs of N tokens in ``ids`` as an ``(k, 2)`` int64 array of [start, end) + ``offset``."""
    is_n = np.concatenate(([False], ids == N, [False]))
    edges = np.flatnonzero(is_n[1:] != is_n[:-1])
    return edges.reshape(-1, 2).astype(np.int64) + offset


def merge_runs(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate sorted run arrays from consecutive blocks, joining runs that touch."""
    runs = [r for r in parts if len(r)]
    if not runs:
        return np.zeros((0, 2), dtype=np.int64)
    merged = [runs[0]]
    for r in runs[1:]:
        prev = merged[-1]
        if prev[-1, 1] == r[0, 0]:
            joined = prev.copy()
            joined[-1, 1] = r[0, 1]
            merged[-1] = joined
            r = r[1:]
        if len(r):
            merged.append(r)
    return np.concatenate(merged)


class Genome:
    """Random access to token ids of named contigs. Use :func:`open_genome` to make one."""

    #: bases read per call when a whole contig is streamed (N runs, store writing)
    block_size = 1 << 22

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._handle = None
        self._handle_pid: int | None = None
        self.contigs: dict[str, int] = {}
        self._n_runs_cache: dict[str, np.ndarray] = {}

    # -- subclasses implement these two
    def _open(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _read(self, contig: str, start: int, end: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    # -- handles: one per process, opened lazily
    @property
    def handle(self):
        if self._handle is None or self._handle_pid != os.getpid():
            # A handle inherited through fork shares file state with the parent: never reuse it.
            self._handle = self._open()
            self._handle_pid = os.getpid()
        return self._handle

    def close(self) -> None:
        if self._handle is not None and self._handle_pid == os.getpid():
            self._handle.close()
        self._handle = None
        self._handle_pid = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_handle_pid"] = None
        state.pop("_datasets", None)  # subclasses may cache objects tied to the handle
        return state

    def __enter__(self) -> "Genome":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the interface
    def check_interval(self, contig: str, start: int, end: int) -> None:
        """Raise :class:`InputError` unless ``contig:[start, end)`` lies inside the genome."""
        if contig not in self.contigs:
            known = ", ".join(list(self.contigs)[:5]) + (", ..." if len(self.contigs) > 5 else "")
            raise InputError(f"unknown contig (known: {known})", path=str(self.path), record=contig)
        length = self.contigs[contig]
        if not (0 <= start <= end <= length):
            raise InputError(
                f"interval [{start}, {end}) is outside the contig (length {length}, 0-based half-open)",
                path=str(self.path), record=contig,
            )

    def fetch(self, contig: str, start: int, end: int, strand: str = "+") -> np.ndarray:
        """Token ids (``uint8``) of ``contig:[start, end)``; reverse complement for ``strand="-"``."""
        if strand not in ("+", "-"):
            raise ValueError(f"strand must be '+' or '-', not {strand!r}")
        start, end = int(start), int(end)
        self.check_interval(contig, start, end)
        ids = self._read(contig, start, end)
        return _TOKENIZER.reverse_complement(ids) if strand == "-" else ids

    def iter_blocks(self, contig: str, block_size: int | None = None):
        """Yield ``(start, ids)`` blocks covering a whole contig, without loading it at once."""
        block = block_size or self.block_size
        length = self.contigs[contig]
        for start in range(0, length, block):
            yield start, self.fetch(contig, start, min(start + block, length))

    def n_runs(self, contig: str) -> np.ndarray:
        """Runs of N in a contig as ``(k, 2)`` [start, end) rows (computed once, then cached)."""
        if contig not in self._n_runs_cache:
            runs = [n_runs_of(ids, start) for start, ids in self.iter_blocks(contig)]
            self._n_runs_cache[contig] = merge_runs(runs)
        return self._n_runs_cache[contig]

    def __len__(self) -> int:
        return len(self.contigs)

    def __repr__(self) -> str:
        total = sum(self.contigs.values())
        return f"{type(self).__name__}({str(self.path)!r}, contigs={len(self.contigs)}, bases={total:,})"


class FastaGenome(Genome):
    """A FASTA file (plain or bgzip) read through pyfaidx; see :func:`open_genome`."""

    def __init__(self, path: str | os.PathLike, *, convert_gzip: bool = False) -> None:
        from genoseq.fasta import open_indexed_fasta

        super().__init__(path)
        # Validates and indexes once here; workers then reopen the indexed file cheaply.
        fasta = open_indexed_fasta(path, convert_gzip=convert_gzip)
        self.source = Path(path)
        self.path = Path(fasta.filename)
        self.contigs = {name: len(record) for name, record in fasta.records.items()}
        self._handle, self._handle_pid = fasta, os.getpid()

    def _open(self):
        from genoseq.fasta import open_indexed_fasta

        return open_indexed_fasta(self.path, validate=False)

    def _read(self, contig: str, start: int, end: int) -> np.ndarray:
        if start == end:
            return np.zeros(0, dtype=np.uint8)
        seq = self.handle.faidx.from_file(contig, start + 1, end)
        return _TOKENIZER.encode(seq, name=contig, path=self.path, offset=start)


class MemoryGenome(Genome):
    """Contigs held in memory as token ids: sequences sent with a request, or whole reference
    files read once (:meth:`from_files`, what the aligner maps against).

    >>> g = MemoryGenome({"a": "ACGTN"})
    >>> g.contigs, Tokenizer().decode(g.fetch("a", 1, 4, strand="-"))
    ({'a': 5}, 'ACG')
    """

    def __init__(self, sequences, path: str | os.PathLike = "<memory>", sources: list[str] | None = None) -> None:
        super().__init__(path)
        self._ids: dict[str, np.ndarray] = {}
        for name, seq in sequences.items():
            ids = seq if isinstance(seq, np.ndarray) else _TOKENIZER.encode(seq, name=name, path=path)
            self._ids[name] = np.ascontiguousarray(ids, dtype=np.uint8)
        self.contigs = {name: len(ids) for name, ids in self._ids.items()}
        self.sources = list(sources or [])  # the files read by from_files
        self._md5: list[str] | None = None

    @classmethod
    def from_files(cls, paths: list[str] | str, convert_gzip: bool = False) -> "MemoryGenome":
        """Every contig of one or more FASTA files or token stores, read into memory.

        Contig names must be unique across the files (an :class:`InputError` names the second).
        """
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if not paths:
            raise InputError("no reference given")
        sequences: dict[str, np.ndarray] = {}
        for path in paths:
            with open_genome(path, convert_gzip=convert_gzip) as genome:
                for contig, length in genome.contigs.items():
                    if contig in sequences:
                        raise InputError("contig name appears twice in the reference", path=str(path), record=contig)
                    sequences[contig] = genome.fetch(contig, 0, length)
        return cls(sequences, path=", ".join(str(p) for p in paths), sources=[str(Path(p).resolve()) for p in paths])

    @property
    def names(self) -> list[str]:
        return list(self._ids)

    @property
    def ids(self) -> list[np.ndarray]:
        return list(self._ids.values())

    @property
    def lengths(self) -> list[int]:
        return list(self.contigs.values())

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(self._ids)

    @property
    def md5(self) -> list[str]:
        """MD5 of each contig's normalised sequence (upper case, IUPAC ambiguity codes as N)."""
        if self._md5 is None:
            self._md5 = [hashlib.md5(_TOKENIZER.decode(ids).encode("ascii")).hexdigest() for ids in self._ids.values()]
        return self._md5

    def sequences(self) -> list[bytes]:
        """Contigs as upper-case ``ACGTN`` bytes."""
        return [_TOKENIZER.decode(ids).encode("ascii") for ids in self._ids.values()]

    def _open(self):  # nothing to open: the ids are in memory
        return None

    def _read(self, contig: str, start: int, end: int) -> np.ndarray:
        return self._ids[contig][start:end]


class StoreGenome(Genome):
    """A finished token store (written by :func:`genoseq.store.write_store`) opened for reading; see
    :func:`open_genome`."""

    #: HDF5 chunk cache per open file: neighbouring windows reuse decompressed chunks
    cache_bytes = 16 << 20

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        handle = self._open()
        try:
            attrs = handle.attrs
            if attrs.get("format") != FORMAT:
                raise InputError("HDF5 file is not a genoseq token store", path=str(self.path))
            if int(attrs.get("format_version", -1)) != FORMAT_VERSION:
                raise InputError(
                    f"token store format_version {attrs.get('format_version')} is not supported "
                    f"(this genoseq reads {FORMAT_VERSION})",
                    path=str(self.path),
                )
            if not attrs.get("complete", False) or "manifest" not in handle:
                raise InputError(
                    "token store is incomplete (an interrupted 'genoseq prepare'?); run prepare again",
                    path=str(self.path),
                )
            self.manifest: dict = json.loads(handle["manifest"][()])
        except BaseException:
            handle.close()
            raise
        self._keys = {c["name"]: c["dataset"].split("/")[-1] for c in self.manifest["contigs"]}
        self.contigs = {c["name"]: int(c["length"]) for c in self.manifest["contigs"]}
        self._handle, self._handle_pid = handle, os.getpid()

    def _open(self):
        import h5py

        try:
            return h5py.File(self.path, "r", rdcc_nbytes=self.cache_bytes)
        except OSError as err:
            raise InputError(f"cannot open HDF5 token store: {err}", path=str(self.path)) from None

    def _dataset(self, contig: str):
        # h5py resolves a path on every lookup (slow): keep the dataset objects, per handle.
        handle = self.handle
        cache = self.__dict__.get("_datasets")
        if cache is None or cache[0] is not handle:
            cache = self._datasets = (handle, {})
        datasets = cache[1]
        if contig not in datasets:
            datasets[contig] = handle["tokens"][self._keys[contig]]
        return datasets[contig]

    def _read(self, contig: str, start: int, end: int) -> np.ndarray:
        return self._dataset(contig)[start:end]

    def n_runs(self, contig: str) -> np.ndarray:
        if contig not in self.contigs:
            self.check_interval(contig, 0, 0)
        return self.handle["n_runs"][self._keys[contig]][()].reshape(-1, 2)

    def verify(self) -> None:
        """Re-hash every contig's stored ids against the manifest; raise on a mismatch."""
        for info in self.manifest["contigs"]:
            digest = hashlib.md5()
            for _, ids in self.iter_blocks(info["name"]):
                digest.update(ids.tobytes())
            if digest.hexdigest() != info["tokens_md5"]:
                raise InputError("stored tokens do not match their checksum (corrupted file?)",
                                 path=str(self.path), record=info["name"])


def is_token_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file (the token store format), by its signature."""
    with open(path, "rb") as handle:
        return handle.read(8) == HDF5_SIGNATURE


def open_genome(path: str | os.PathLike, *, convert_gzip: bool = False) -> Genome:
    """Open a FASTA file or an HDF5 token store (made by ``genoseq prepare``) by its content.

    ``convert_gzip`` recompresses a plain-gzip FASTA to bgzip next to it (see
    :func:`genoseq.fasta.resolve_fasta`); without it such a file is an :class:`InputError`.
    """
    path = require_file(path)
    if path.is_file() and is_token_store(path):
        return StoreGenome(path)
    return FastaGenome(path, convert_gzip=convert_gzip)
