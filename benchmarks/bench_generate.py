"""Conditional design on the E. coli regions task (upstream | coding | downstream). Prints JSON.

The CRE-generation evaluation: a pretrained language model is fine-tuned with one condition
token per region class (``genoseq generate fit``) on a stratified training split of
``ecoli_regions.tsv.gz``; for each class ``--num`` designs of ``--length`` bases are sampled
(``genoseq generate sample``) and scored by an oracle classifier (``genoseq classify``). Per
class it reports, designs next to real held-out sequences of the class:

* oracle **success rate** (the oracle predicts the requested class) next to the oracle's
  **recall** on the real held-out sequences of that class (what a perfect generator would get);
* **diversity**: mean pairwise edit distance of the designs, and of as many real held-out
  sequences;
* **novelty**: fraction of designs that are not a copy of a training sequence, and the mean
  edit distance to the nearest one (for real held-out sequences too);
* k-mer (k = 3..6) Jensen-Shannon divergence from the training sequences of the class, for the
  designs and for the real held-out sequences (the floor a sample of real data sets);
* GC content of designs, held-out and training sequences.

With ``--select top-k`` the sampler keeps the designs a classifier likes best. Selecting and
judging with the same classifier measures how well designs fool it, not how good they are: give
``--guide`` a second classifier to select with, and ``--oracle`` still judges.

The oracle should not have seen the held-out split: when ``--oracle`` names a folder that does
not hold a classifier yet, one is fitted there on the training split (fine-tuned for
``--oracle-epochs``, or a frozen-embedding probe with ``--oracle-frozen``). Likewise ``--gen``
reuses a conditional model, otherwise one is fitted into ``WORKDIR/gen``.

    python benchmarks/bench_generate.py --model runs/recipe/model --oracle runs/oracle_regions \\
        --workdir runs/bench_generate --num 200 --device cuda

The shared data folder is ``../shared/data`` (or ``$GENOSEQ_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENOSEQ_SHARED_DATA", ROOT.parent / "shared" / "data"))
CLASSES = ("upstream", "coding", "downstream")


def split_regions(path: Path, test_fraction: float, seed: int, workdir: Path) -> tuple[Path, Path]:
    """Stratified train / held-out split of a labelled table, written as two TSVs."""
    with gzip.open(path, "rt") as fh:
        rows = [(r["sequence"].upper(), r["label"]) for r in csv.DictReader(fh, delimiter="\t")]
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in sorted({label for _, label in rows}):
        of_label = [r for r in rows if r[1] == label]
        order = rng.permutation(len(of_label))
        n_test = int(round(test_fraction * len(of_label)))
        test += [of_label[i] for i in order[:n_test]]
        train += [of_label[i] for i in order[n_test:]]
    paths = workdir / "train.tsv", workdir / "test.tsv"
    for out, part in zip(paths, (train, test)):
        out.write_text("sequence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in part))
    return paths


def read_fasta_sequences(path: Path) -> list[str]:
    from genoseq.fasta import iter_fasta

    return [rec.sequence for rec in iter_fasta(path)]


def real_stats(held_out: list[str], train: list[str], num: int, seed: int) -> dict:
    """The design metrics for up to ``num`` real held-out sequences of a class."""
    from genoseq.design import gc_content, kmer_divergences, mean_pairwise_distance, nearest_distances, novelty

    rng = np.random.default_rng(seed)
    sample = [held_out[i] for i in rng.permutation(len(held_out))[:num]]
    nearest, _ = nearest_distances(sample, train)
    return {
        "n": len(sample),
        "gc_mean": float(np.mean([gc_content(s) for s in sample])),
        "diversity": mean_pairwise_distance(sample),
        "novelty": novelty(nearest),
        "nearest_distance_mean": float(nearest.mean()),
        "kmer_js": kmer_divergences(sample, train),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="pretrained language model folder")
    parser.add_argument("--oracle", required=True, help="classifier folder (fitted on the training split if absent)")
    parser.add_argument("--workdir", default="runs/bench_generate", help="split, conditional model and designs")
    parser.add_argument("--gen", help="an existing conditional model to use instead of fitting one")
    parser.add_argument("--num", type=int, default=200, help="designs per class")
    parser.add_argument("--length", type=int, default=200, help="bases per design (the real regions have 200)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--fit-epochs", type=int, default=5)
    parser.add_argument("--fit-lr", type=float, default=3e-4)
    parser.add_argument("--fit-batch-size", type=int, default=8, help="packed rows of 1024 tokens")
    parser.add_argument("--oracle-epochs", type=int, default=5)
    parser.add_argument("--oracle-frozen", action="store_true", help="fit a frozen-embedding probe as the oracle")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--select", choices=("all", "top-k"), default="all")
    parser.add_argument("--oversample", type=int, default=4)
    parser.add_argument("--guide", help="classifier that selects designs with --select top-k (default: the oracle)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    from genoseq.design import gc_content
    from genoseq.models.classifier import SequenceClassifier
    from genoseq.pipelines.classify import fit as classify_fit
    from genoseq.pipelines.generate import fit as generate_fit
    from genoseq.pipelines.generate import sample
    from genoseq.runtime import resolve_device

    started = time.perf_counter()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    train_path, test_path = split_regions(DATA / "ecoli_regions.tsv.gz", args.test_fraction, args.seed, workdir)
    train = {c: [] for c in CLASSES}
    test = {c: [] for c in CLASSES}
    for path, table in ((train_path, train), (test_path, test)):
        with open(path) as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                table[row["label"]].append(row["sequence"])
    accelerator = "cpu" if resolve_device(args.device).type == "cpu" else "gpu"

    timings = {}
    oracle = Path(args.oracle)
    if not (oracle / "config.json").exists():
        t = time.perf_counter()
        classify_fit(args.model, str(train_path), str(oracle), frozen=args.oracle_frozen, max_epochs=args.oracle_epochs,
                     accelerator=accelerator, device=args.device, seed=args.seed, progress=args.progress)
        timings["oracle_fit_s"] = round(time.perf_counter() - t, 1)
    gen = Path(args.gen) if args.gen else workdir / "gen"
    fit_metrics = None
    if not (gen / "config.json").exists():
        t = time.perf_counter()
        fit_metrics = generate_fit(args.model, str(train_path), str(gen), max_epochs=args.fit_epochs, lr=args.fit_lr,
                                   batch_size=args.fit_batch_size, accelerator=accelerator, seed=args.seed,
                                   progress=args.progress)
        timings["generator_fit_s"] = round(time.perf_counter() - t, 1)

    clf = SequenceClassifier.from_pretrained(oracle, map_location=resolve_device(args.device))
    guide = Path(args.guide) if args.guide else oracle
    per_class = {}
    for c in CLASSES:
        proba = clf.predict_proba(test[c], batch_size=64)
        recall = float(np.mean(np.array(clf.classes)[proba.argmax(1)] == c))
        t = time.perf_counter()
        summary = sample(str(gen), condition=c, num_samples=args.num, max_new_tokens=args.length, seed=args.seed,
                         temperature=args.temperature, top_p=args.top_p, out=str(workdir / f"designs_{c}.fa"),
                         device=args.device, oracle=str(guide), select=args.select, oversample=args.oversample,
                         reference=str(train_path))
        seconds = time.perf_counter() - t
        designs = {k: summary[k] for k in ("n_designs", "success_rate", "oracle_p_mean", "gc_mean", "diversity",
                                           "novelty", "nearest_distance_mean", "kmer_js")}
        if guide != oracle:  # the guide's verdict is in the summary: judge with the oracle
            designs["guide_success_rate"] = designs.pop("success_rate")
            designs["guide_p_mean"] = designs.pop("oracle_p_mean")
            judged = clf.predict_proba(read_fasta_sequences(workdir / f"designs_{c}.fa"), batch_size=64)
            designs["success_rate"] = float(np.mean(np.array(clf.classes)[judged.argmax(1)] == c))
            designs["oracle_p_mean"] = float(judged[:, clf.classes.index(c)].mean())
        designs["seconds"] = round(seconds, 1)
        per_class[c] = {
            "designs": designs,
            "oracle_recall_real_held_out": recall,
            "real_held_out": real_stats(test[c], train[c], args.num, args.seed),
            "train_gc_mean": float(np.mean([gc_content(s) for s in train[c]])),
        }
    result = {
        "benchmark": "generate_ecoli_regions",
        "model": args.model, "oracle": str(oracle), "gen": str(gen),
        "num": args.num, "length": args.length, "temperature": args.temperature, "top_p": args.top_p,
        "select": args.select, "oversample": args.oversample if args.select == "top-k" else None,
        "guide": str(guide), "seed": args.seed,
        "n_train": {c: len(v) for c, v in train.items()}, "n_held_out": {c: len(v) for c, v in test.items()},
        "generator_fit": fit_metrics and {k: fit_metrics[k] for k in ("steps", "val_bits_per_base_before",
                                                                      "best_val_bits_per_base", "seconds")},
        "classes": per_class,
        "mean_success_rate": float(np.mean([v["designs"]["success_rate"] for v in per_class.values()])),
        "mean_oracle_recall": float(np.mean([v["oracle_recall_real_held_out"] for v in per_class.values()])),
        "timings": timings,
        "seconds": round(time.perf_counter() - started, 1),
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
