"""Embed-Search-Align: accuracy, throughput and Recall@k next to bwa mem and minimap2.

    python benchmarks/bench_align.py [--model ENCODER_DIR] [--genome G.fa[.gz]] [--reads R.fq.gz]
                                     [--workdir DIR] [--threads 2] [--top_k 8 ...]

Decompresses the genome (default: the shared E. coli) into ``--workdir``, builds the genoseq
index (reused when present), maps the reads (default: ``ecoli_reads_250bp.fq.gz``) with the
``genoseq align map`` command and, when installed, with ``bwa mem`` and ``minimap2 -ax sr`` on
the same reads and threads. Every SAM is scored with :func:`genoseq.pipelines.align.evaluate_sam`
(contig + strand + leftmost position with soft clips added back within 10 bp of the truth in the
read name). Each tool's ``reads_per_s_wall`` is the whole command's wall clock (start-up and
loading its index included, as bwa's and minimap2's are); genoseq's ``reads_per_s`` is its own
mapping loop. Recall@k is the vector search alone. Without ``--model`` an encoder is trained
first on the genome (``--train_steps``, the rest ``genoseq align train``'s defaults). Prints
one JSON document.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENOSEQ_SHARED_DATA", REPO.parent / "shared" / "data"))


def gunzip(src: Path, dest: Path) -> Path:
    if not dest.exists():
        with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return dest


def timed(cmd: list[str], stdout=None) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=stdout, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="encoder directory (genoseq align train); trained here if absent")
    parser.add_argument("--workdir", default="/tmp/genoseq_bench_align")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top_k", type=int, nargs="+", default=[8])
    parser.add_argument("--train_steps", type=int, default=1000)
    parser.add_argument("--genome", default=str(DATA / "ecoli_k12_mg1655.fa.gz"))
    parser.add_argument("--reads", default=str(DATA / "ecoli_reads_250bp.fq.gz"))
    args = parser.parse_args()

    from genoseq.pipelines import align
    from genoseq.tasks.align import load_index

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    source = Path(args.genome)
    stem = source.name.removesuffix(".gz").rsplit(".", 1)[0]
    genome = gunzip(source, work / f"{stem}.fa") if source.suffix == ".gz" else source
    reads = Path(args.reads)
    run = f"{stem}_{reads.name.split('.')[0]}"  # output names: genome and reads
    n_reads = sum(1 for _ in align.iter_reads(reads))
    result: dict = {"genome": str(source), "reads": str(reads), "n_reads": n_reads, "threads": args.threads,
                    "cpu_count": os.cpu_count()}

    model = args.model
    if not model:
        model = str(work / f"encoder_{stem}")
        result["train"] = align.train(str(genome), model, steps=args.train_steps, threads=args.threads,
                                      progress=False, overwrite=True)
    index_dir = work / f"index_{stem}"
    manifest_path = index_dir / "manifest.json"
    if not manifest_path.exists() or json.loads(manifest_path.read_text())["model_source"] != str(Path(model).resolve()):
        started = time.perf_counter()
        align.index(model, str(genome), str(index_dir), threads=args.threads, progress=False, overwrite=True)
        result["index_seconds"] = round(time.perf_counter() - started, 1)
    result["index"] = {k: v for k, v in json.loads(manifest_path.read_text()).items() if k not in ("contigs",)}

    idx = load_index(index_dir)
    started = time.perf_counter()
    result["search_recall"] = align.search_recall(idx, reads, ks=(1, 5, 20))
    result["search_recall"]["seconds"] = round(time.perf_counter() - started, 1)

    result["genoseq"] = {}
    for k in args.top_k:
        out = work / f"genoseq_{run}_k{k}.sam"
        command = [sys.executable, "-m", "genoseq.cli", "align", "map", "--index", str(index_dir), "--reads", str(reads),
                   "--out", str(out), "--top_k", str(k), "--threads", str(args.threads), "--progress", "false"]
        seconds = timed(command)
        summary = json.loads(Path(str(out) + ".json").read_text())
        result["genoseq"][f"top_k={k}"] = {
            **align.evaluate_sam(out),
            "seconds_wall": round(seconds, 2), "reads_per_s_wall": round(n_reads / seconds, 1),
            "seconds": summary["seconds"], "reads_per_s": summary["reads_per_s"], "rescued": summary["rescued"],
            "embed_seconds": summary["embed_seconds"], "search_seconds": summary["search_seconds"],
        }

    t = str(args.threads)
    if shutil.which("bwa"):
        if not Path(str(genome) + ".bwt").exists():
            timed(["bwa", "index", str(genome)])
        out = work / f"bwa_{run}.sam"
        with open(out, "w") as fh:
            seconds = timed(["bwa", "mem", "-t", t, str(genome), str(reads)], stdout=fh)
        result["bwa_mem"] = {**align.evaluate_sam(out), "seconds_wall": round(seconds, 2),
                             "reads_per_s_wall": round(n_reads / seconds, 1)}
        for k in args.top_k:  # where genoseq and bwa disagree, and whether those are repeat ties
            result["genoseq"][f"top_k={k}"]["vs_bwa_mem"] = align.compare_sams(work / f"genoseq_{run}_k{k}.sam", out)
    if shutil.which("minimap2"):
        mmi = work / f"{stem}.sr.mmi"
        if not mmi.exists():
            timed(["minimap2", "-x", "sr", "-d", str(mmi), str(genome)])
        out = work / f"minimap2_{run}.sam"
        with open(out, "w") as fh:
            seconds = timed(["minimap2", "-ax", "sr", "-t", t, str(mmi), str(reads)], stdout=fh)
        result["minimap2_sr"] = {**align.evaluate_sam(out), "seconds_wall": round(seconds, 2),
                                 "reads_per_s_wall": round(n_reads / seconds, 1)}
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
