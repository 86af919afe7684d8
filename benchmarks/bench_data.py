"""Data-path throughput: tokenising, and streaming windows from the HDF5 store vs FASTA (pyfaidx).

Prints one JSON object. Uses the shared E. coli genome from ``<repo>/../shared/data`` (or
``$GENOSEQ_SHARED_DATA``), decompressed into a temporary folder.

    python benchmarks/bench_data.py [--windows 2000] [--seed 0]

Window streaming reads windows at random positions, on random strands, through
``Genome.fetch`` - the same call the DataModules make - in one process. Store numbers are
given cold (a fresh file handle per pass, so chunks are decompressed) and warm (the HDF5
chunk cache already holds the genome, as it does after a while for a bacterial genome).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENOSEQ_SHARED_DATA", REPO.parent / "shared" / "data"))


def _best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _stream(genome, contig: str, length: int, window: int, count: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, length - window + 1, size=count)
    strands = np.where(rng.random(count) < 0.5, "+", "-")
    start_time = time.perf_counter()
    for s, strand in zip(starts.tolist(), strands.tolist()):
        genome.fetch(contig, s, s + window, strand)
    return time.perf_counter() - start_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=2000, help="windows per measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from genoseq import Tokenizer, __version__
    from genoseq.fasta import iter_fasta
    from genoseq.genome import open_genome
    from genoseq.genome import StoreGenome
    from genoseq.store import write_store

    source = DATA / "ecoli_k12_mg1655.fa.gz"
    if not source.exists():
        sys.exit(f"shared data not found at {DATA}; set GENOSEQ_SHARED_DATA")
    tmp = Path(tempfile.mkdtemp(prefix="genoseq-bench-"))
    try:
        fasta_path = tmp / "ecoli.fa"
        with gzip.open(source, "rb") as fin, open(fasta_path, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        (record,) = list(iter_fasta(fasta_path))
        sequence = record.sequence
        tok = Tokenizer()

        encode_s = _best_of(lambda: tok.encode(sequence))
        ids = tok.encode(sequence)
        decode_s = _best_of(lambda: tok.decode(ids))
        rc_s = _best_of(lambda: tok.reverse_complement(ids))
        mb = len(sequence) / 1e6

        store_path = tmp / "ecoli.h5"
        start = time.perf_counter()
        write_store([fasta_path], store_path, progress=False)
        prepare_s = time.perf_counter() - start

        contig, length = record.name, len(sequence)
        fasta = open_genome(fasta_path)
        results = {}
        for window in (1024, 32_768):
            count = args.windows if window <= 1024 else max(args.windows // 4, 100)
            cold_store = StoreGenome(store_path)  # fresh handle: empty chunk cache
            cold = _stream(cold_store, contig, length, window, count, args.seed)
            warm = _stream(cold_store, contig, length, window, count, args.seed + 1)
            from_fasta = _stream(fasta, contig, length, window, count, args.seed + 1)
            cold_store.close()
            for name, seconds in (("store_cold", cold), ("store_warm", warm), ("fasta_pyfaidx", from_fasta)):
                results[f"{name}_{window // 1024}kb"] = {
                    "windows": count,
                    "windows_per_s": round(count / seconds, 1),
                    "mb_per_s": round(count * window / seconds / 1e6, 1),
                }
        fasta.close()
        report = {
            "benchmark": "data",
            "genoseq_version": __version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "genome": {"file": source.name, "contig": contig, "bases": length},
            "tokenizer": {
                "encode_mb_per_s": round(mb / encode_s, 1),
                "decode_mb_per_s": round(mb / decode_s, 1),
                "reverse_complement_mb_per_s": round(mb / rc_s, 1),
                "encode_genome_s": round(encode_s, 4),
            },
            "prepare": {
                "seconds": round(prepare_s, 3),
                "mb_per_s": round(mb / prepare_s, 1),
                "store_bytes": store_path.stat().st_size,
                "bytes_per_base": round(store_path.stat().st_size / length, 3),
            },
            "window_streaming": results,
        }
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
