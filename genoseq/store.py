"""The HDF5 token store: a genome tokenised once, read as cheap window slices ever after.

Layout (``format_version`` 1)::

    /                  attrs: format="genoseq.token_store", format_version=1,
                              genoseq_version, complete=True (written last, see below)
    /manifest          scalar string dataset: JSON with every contig's name, length, source
                       file, md5 and dataset key, the tokenizer config and the genoseq version
    /tokens/<i>        uint8 token ids of contig i, chunked and compressed; attrs name,
                       source, length, md5 (of the upper-case sequence, IUPAC codes kept),
                       tokens_md5 (of the stored ids), alphabet
    /n_runs/<i>        int64 (k, 2): the [start, end) runs of N in contig i

Contigs are stored under their index, not their name, because FASTA names may hold ``/``.
Reading ``[start, end)`` decompresses only the chunks it touches, so memory per window does
not grow with the genome.

A store is written to a temporary file in the output's folder and renamed when complete; the
``complete`` attribute is set just before. The reader, :class:`genoseq.genome.StoreGenome`
(opened by :func:`genoseq.genome.open_genome`), refuses a file without it, so an interrupted
``genoseq prepare`` can never be mistaken for a finished store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal

import numpy as np

from genoseq.errors import InputError
from genoseq.genome import FORMAT, FORMAT_VERSION, merge_runs, n_runs_of
from genoseq.runtime import atomic_path
from genoseq.tokenizer import Tokenizer

ALPHABET = "PAD BOS EOS MASK UNK A C G T N"  # ids 0..9, see genoseq.tokenizer
Compression = Literal["gzip", "lzf", "none"]


@dataclass
class ContigInfo:
    """One contig as recorded in the manifest."""

    name: str
    length: int
    source: str
    md5: str
    tokens_md5: str
    n_bases_n: int
    dataset: str


class _ChunkWriter:
    """Writes consecutive token ids into a chunked dataset one whole chunk at a time."""

    def __init__(self, ds) -> None:
        self.ds = ds
        self.buffer = np.empty(ds.chunks[0] if ds.chunks else 0, dtype=np.uint8)
        self.filled = self.start = 0

    def write(self, ids: np.ndarray) -> None:
        done = 0
        while done < len(ids):
            take = min(len(self.buffer) - self.filled, len(ids) - done)
            self.buffer[self.filled : self.filled + take] = ids[done : done + take]
            self.filled += take
            done += take
            if self.filled == len(self.buffer):
                self.flush()

    def flush(self) -> None:
        """Write what is buffered: a whole chunk, or at a contig's end its last, partial one."""
        if self.filled:
            self.ds[self.start : self.start + self.filled] = self.buffer[: self.filled]
            self.start += self.filled
            self.filled = 0


class TokenStoreWriter:
    """Write contigs into a new store; :meth:`finalize` makes it visible under ``out``.

    >>> with TokenStoreWriter("genome.h5") as writer:          # doctest: +SKIP
    ...     writer.add_contig("chr1", length, blocks, source="genome.fa")
    ...     writer.finalize()

    Leaving the ``with`` block without :meth:`finalize` (e.g. on an exception) deletes the
    temporary file; ``out`` is never touched until the store is complete.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        *,
        compression: Compression = "gzip",
        chunk_size: int = 1 << 16,
        overwrite: bool = False,
    ) -> None:
        import h5py

        self.out = Path(out)
        if self.out.exists() and not overwrite:
            raise InputError("output already exists; pass overwrite=True (--overwrite true) to replace it", path=str(self.out))
        if compression not in ("gzip", "lzf", "none"):
            raise ValueError(f"compression must be 'gzip', 'lzf' or 'none', not {compression!r}")
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.compression = None if compression == "none" else compression
        self.chunk_size = chunk_size
        # Written under a temporary name, renamed by finalize() and removed by abort().
        self._output = contextlib.ExitStack()
        self.tmp_path = self._output.enter_context(atomic_path(self.out))
        self.contigs: list[ContigInfo] = []
        # No chunk cache: whole chunks go to disk as they are written (_ChunkWriter), so a full
        # disk fails that write, and nothing is left for HDF5 to flush when the file closes.
        self._file = h5py.File(self.tmp_path, "w", rdcc_nbytes=0)
        self._file.attrs["format"] = FORMAT
        self._file.attrs["format_version"] = FORMAT_VERSION
        self._file.create_group("tokens")
        self._file.create_group("n_runs")
        self._finalized = False

    def add_contig(
        self,
        name: str,
        length: int,
        blocks: Iterable[str | bytes],
        *,
        source: str,
        on_progress: Callable[[int], None] | None = None,
    ) -> ContigInfo:
        """Tokenise and store one contig from consecutive blocks of its sequence (text)."""
        if any(c.name == name for c in self.contigs):
            raise InputError("duplicate contig name in the store", path=source, record=name)
        tokenizer = Tokenizer()
        key = str(len(self.contigs))
        ds = self._file["tokens"].create_dataset(
            key,
            shape=(length,),
            dtype=np.uint8,
            chunks=(max(1, min(self.chunk_size, length)),) if length else None,
            compression=self.compression,
        )
        md5, tokens_md5 = hashlib.md5(), hashlib.md5()
        runs: list[np.ndarray] = []
        pos = 0
        chunks = _ChunkWriter(ds)
        for block in blocks:
            raw = block.encode("ascii") if isinstance(block, str) else bytes(block)
            ids = tokenizer.encode(raw, name=name, path=source, offset=pos)
            if pos + len(ids) > length:
                raise InputError(f"contig is longer than its declared length {length}", path=source, record=name)
            chunks.write(ids)
            md5.update(raw.upper())
            tokens_md5.update(ids.tobytes())
            runs.append(n_runs_of(ids, pos))
            pos += len(ids)
            if on_progress is not None:
                on_progress(len(ids))
        if pos != length:
            raise InputError(f"contig has {pos} bases, expected {length}", path=source, record=name)
        chunks.flush()
        n_runs = merge_runs(runs)
        self._file["n_runs"].create_dataset(key, data=n_runs.reshape(-1, 2))
        info = ContigInfo(
            name=name,
            length=length,
            source=str(source),
            md5=md5.hexdigest(),
            tokens_md5=tokens_md5.hexdigest(),
            n_bases_n=int((n_runs[:, 1] - n_runs[:, 0]).sum()) if len(n_runs) else 0,
            dataset=f"tokens/{key}",
        )
        for field, value in asdict(info).items():
            ds.attrs[field] = value
        ds.attrs["alphabet"] = ALPHABET
        self.contigs.append(info)
        return info

    def manifest(self) -> dict:
        from genoseq import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "genoseq_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tokenizer": Tokenizer().to_dict(),
            "alphabet": ALPHABET,
            "sources": sorted({c.source for c in self.contigs}),
            "total_length": sum(c.length for c in self.contigs),
            "contigs": [asdict(c) for c in self.contigs],
        }

    def finalize(self) -> dict:
        """Write the manifest and completion marker, then rename the file to ``out``."""
        from genoseq import __version__

        if not self.contigs:
            raise InputError("no contigs were written", path=str(self.out))
        manifest = self.manifest()
        self._file.create_dataset("manifest", data=json.dumps(manifest, indent=1))
        self._file.attrs["genoseq_version"] = __version__
        self._file.attrs["complete"] = True  # the marker StoreGenome requires; set last
        self._file.flush()  # fails (a full disk) with the file still open, so abort() can close it
        self._file.close()
        self._output.close()  # the rename
        self._finalized = True
        return manifest

    def abort(self, error: BaseException | None = None) -> None:
        """Close and delete the unfinished temporary file; a failed write (``error``, a full disk)
        is raised again naming the output."""
        if self._file.id.valid:
            # On a full disk the metadata HDF5 writes as it closes would fail too, leaving a file that
            # crashes the process as it exits: emptying it first frees the space (it goes anyway).
            with contextlib.suppress(OSError):
                os.truncate(self.tmp_path, 0)
            self._file.close()
        error = error if error is not None else RuntimeError("token store not finalized")
        self._output.__exit__(type(error), error, error.__traceback__)  # removes it

    def __enter__(self) -> "TokenStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._finalized:
            self.abort(exc)


def write_store(
    fastas: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    compression: Compression = "gzip",
    chunk_size: int = 1 << 16,
    block_size: int = 1 << 22,
    convert_gzip: bool = False,
    overwrite: bool = False,
    progress: bool | str = True,
) -> dict:
    """Tokenise FASTA files into a new store at ``out``; return its manifest.

    Every input is validated and indexed first, and contig names must be unique across all of
    them, so bad input fails before anything is written. Contigs are read in blocks of
    ``block_size`` bases, never as whole chromosome strings.
    """
    from genoseq.fasta import open_indexed_fasta
    from genoseq.progress import Progress

    if not fastas:
        raise InputError("no FASTA input given")
    opened, owner = [], {}
    for path in fastas:
        fasta = open_indexed_fasta(path, convert_gzip=convert_gzip)
        for name in fasta.keys():
            if name in owner:
                raise InputError(f"contig name also used in {owner[name]}", path=str(path), record=name)
            owner[name] = str(path)
        opened.append((str(path), fasta))
    total = sum(len(fasta[name]) for _, fasta in opened for name in fasta.keys())

    def blocks(fasta, name: str, length: int):
        for start in range(0, length, block_size):
            yield fasta.faidx.from_file(name, start + 1, min(start + block_size, length))

    with TokenStoreWriter(out, compression=compression, chunk_size=chunk_size, overwrite=overwrite) as writer:
        with Progress(total, desc="prepare", unit="bp", mode=progress) as bar:
            for source, fasta in opened:
                for name in fasta.keys():
                    bar.set_fields(contig=name[:40])
                    length = len(fasta[name])
                    writer.add_contig(name, length, blocks(fasta, name, length), source=source, on_progress=bar.update)
                fasta.close()
        return writer.finalize()
