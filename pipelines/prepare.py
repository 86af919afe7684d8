"""``genoseq prepare``: tokenise FASTA genomes into one HDF5 token store for training.

Nothing heavy is imported at module level, so building the CLI parser stays fast.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Literal

from genoseq.progress import ProgressChoice


def prepare(
    fasta: list[str] | str | None = None,
    out: str = "genome.h5",
    compression: Literal["gzip", "lzf", "none"] = "gzip",
    chunk_size: int = 65536,
    convert_gzip: bool = False,
    overwrite: bool = False,
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Tokenise FASTA genomes into an HDF5 token store for fast window streaming.

    Every input is validated first (bad characters, duplicate names, ... are reported with file,
    record and line). The store is written under a temporary name and renamed when complete, so
    an interrupted run never leaves a store that looks finished. A JSON summary (the manifest
    plus timing) is written next to the store as ``<out>.json``.

    Args:
        fasta: FASTA file(s), plain or bgzip: ``--fasta a.fa``, ``--fasta '[a.fa, b.fa]'`` or
            ``--fasta+ b.fa`` to add one. Contig names must be unique across files.
            Default: the bundled phage lambda genome.
        out: Path of the HDF5 store to write.
        compression: HDF5 compression of the token datasets: gzip (smallest), lzf (faster to
            write) or none (fastest to read, 1 byte per base).
        chunk_size: Bases per HDF5 chunk: the unit that is decompressed when a window is read.
        convert_gzip: Recompress plain-gzip FASTA files to bgzip (next to the input) instead of
            refusing them.
        overwrite: Replace an existing store at ``out``.
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.

    Returns:
        The summary that is also written to ``<out>.json``.
    """
    import genoseq
    from genoseq.runtime import write_json
    from genoseq.store import write_store

    if isinstance(fasta, str):
        fasta = [fasta]
    sources = list(fasta) if fasta else [genoseq.default_genome()]
    out_path = Path(out)
    summary_path = out_path.with_name(out_path.name + ".json")
    started = time.perf_counter()
    manifest = write_store(
        sources,
        out_path,
        compression=compression,
        chunk_size=chunk_size,
        convert_gzip=convert_gzip,
        overwrite=overwrite,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    summary = {
        "store": str(out_path),
        "store_bytes": out_path.stat().st_size,
        "seconds": round(seconds, 3),
        "compression": compression,
        "chunk_size": chunk_size,
        **manifest,
    }
    write_json(summary_path, summary)

    total = manifest["total_length"]
    print(
        f"wrote {out_path}: {len(manifest['contigs'])} contig(s), {total:,} bp from "
        f"{len(manifest['sources'])} file(s), {summary['store_bytes'] / 1e6:.1f} MB, "
        f"{seconds:.1f} s ({total / max(seconds, 1e-9) / 1e6:.1f} Mb/s); summary in {summary_path}",
        file=sys.stderr,
    )
    for contig in manifest["contigs"][:10]:
        print(f"  {contig['name']}\t{contig['length']:,} bp\tN {contig['n_bases_n']:,}\tmd5 {contig['md5']}", file=sys.stderr)
    if len(manifest["contigs"]) > 10:
        print(f"  ... and {len(manifest['contigs']) - 10} more", file=sys.stderr)
    return summary
