"""Regression heads on targets with a known answer: GC content and the CpG observed/expected ratio
of each sequence, learnt on one genome's regions and predicted on another genus's.

The targets are computed from the sequences themselves (GC = (G + C) / L; CpG o/e =
count(CG) * L / (count(C) * count(G))), so the model must read its input base by base. A
multi-task ridge probe of the language model's embeddings (``genoseq classify fit --task
regression --target_columns [gc,cpg] --frozen true``; the command's default pooling,
``phase+ends`` of both strands) is fitted on ``--train`` (E. coli regions) and evaluated with
``genoseq classify evaluate`` on ``--test`` (S. aureus regions: another phylum, 33% GC against
E. coli's 51%). Pass when Pearson r >= ``--min_pearson`` for both targets. Prints JSON and
writes it to ``--out``; ``--figure PNG`` copies the GC scatter plot.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from genoseq.runtime import print_json

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENOSEQ_SHARED_DATA", ROOT.parent / "shared" / "data"))


def targets(seq: str) -> tuple[float, float]:
    s = seq.upper()
    n = sum(s.count(b) for b in "ACGT")
    c, g = s.count("C"), s.count("G")
    cg = sum(1 for i in range(len(s) - 1) if s[i] == "C" and s[i + 1] == "G")
    return (c + g) / n, (cg * n / (c * g)) if c and g else 0.0


def write_table(src: str, dst: Path, limit: int | None) -> int:
    opener = gzip.open if src.endswith(".gz") else open
    with opener(src, "rt") as handle, open(dst, "w") as out:
        out.write("sequence\tgc\tcpg\n")
        n = 0
        for row in csv.DictReader(handle, delimiter="\t"):
            gc, cpg = targets(row["sequence"])
            out.write(f"{row['sequence']}\t{gc:.6f}\t{cpg:.6f}\n")
            n += 1
            if limit and n >= limit:
                break
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "runs/recipe/model"))
    ap.add_argument("--train", default=str(DATA / "ecoli_regions.tsv.gz"))
    ap.add_argument("--test", default=str(DATA / "saureus_regions.tsv.gz"))
    ap.add_argument("--max_train", type=int, default=None, help="use only the first rows of --train")
    ap.add_argument("--min_pearson", type=float, default=0.95)
    ap.add_argument("--work", default="/tmp/bench_regression")
    ap.add_argument("--figure", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch

    from genoseq.pipelines.classify import evaluate, fit

    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    n_train = write_table(args.train, work / "train.tsv", args.max_train)
    n_test = write_table(args.test, work / "test.tsv", None)
    t = time.perf_counter()
    fit(args.model, str(work / "train.tsv"), str(work / "reg"), task="regression", target_columns=["gc", "cpg"],
        frozen=True, device="cpu", progress="none")
    fit_seconds = time.perf_counter() - t
    t = time.perf_counter()
    evaluate(str(work / "reg"), {"input": str(work / "test.tsv")}, str(work / "eval"), device="cpu", progress="none")
    eval_seconds = time.perf_counter() - t
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    per_target = metrics["per_target"]
    report = {
        "model": args.model, "train": args.train, "test": args.test, "n_train": n_train, "n_test": n_test,
        "method": "ridge probe (RidgeCV), phase+ends pooling of both strands", "fit_seconds": round(fit_seconds, 1),
        "evaluate_seconds": round(eval_seconds, 1), "per_target": per_target,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
        "checks": {t: {"pearson": per_target[t]["pearson"], "threshold": args.min_pearson,
                       "pass": per_target[t]["pearson"] >= args.min_pearson} for t in ("gc", "cpg")},
    }
    if args.figure:
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / "eval" / "scatter_gc.png", args.figure)
        report["figure"] = args.figure
    print_json(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
