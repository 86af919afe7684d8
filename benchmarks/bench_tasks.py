"""Quality on the downstream tasks, cross-genus: train on E. coli, test on S. aureus. Prints JSON.

For a released model (``MODEL_DIR``) and the order-k Markov baseline (:mod:`genoseq.markov`):

* **variant effects** (``saureus_snvs.vcf.gz`` against the S. aureus genome): AUROC of -LLR
  for stop-gained vs synonymous and for missense vs synonymous (the damaging class is the
  positive one; an AUROC above 0.5 means damaging variants get lower LLRs). The model's LLR
  is ``genoseq vep``'s (window centred on the variant, both strands averaged); the Markov LLR
  uses the same windows and strands, with a chain trained on the E. coli genome.
* **regions** (upstream / coding / downstream, 200 bp): a classifier trained on
  ``ecoli_regions`` and tested on ``saureus_regions``: the frozen probe and the fine-tuned
  model; the Markov baseline is one chain per class (trained on the E. coli regions of that
  class), predicting the class of highest likelihood.

    python benchmarks/bench_tasks.py --model runs/recipe/model [--device cuda] [--finetune-epochs 5]

The region classifiers default to ``--pooling phase+ends --strands concat --layer final``: a
mean per codon phase and the means of the first and last 16 tokens, of both strands. A
causal model's forward states at the start of a window have seen nothing of it; the reverse
complement's states there have seen it all.

The shared data folder is ``../shared/data`` (or ``$GENOSEQ_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENOSEQ_SHARED_DATA", ROOT.parent / "shared" / "data"))


def gunzip(src: Path, dest_dir: Path) -> Path:
    dest = dest_dir / src.name.removesuffix(".gz")
    with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dest


def read_effects(vcf: Path) -> list[tuple[str, int, str, str, str]]:
    import pysam

    from genoseq.pipelines.vep import readable_vcf

    with readable_vcf(vcf) as path, pysam.VariantFile(str(path)) as handle:
        return [(r.chrom, r.pos, r.ref, r.alts[0], r.info["EFFECT"]) for r in handle]


def effect_aurocs(llr: np.ndarray, effect: np.ndarray) -> dict:
    """AUROC of -LLR: stop-gained vs synonymous, missense vs synonymous (NaN scores dropped)."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for damaging in ("stop_gained", "missense"):
        keep = np.isin(effect, [damaging, "synonymous"]) & np.isfinite(llr)
        y = effect[keep] == damaging
        out[f"auroc_{damaging}_vs_synonymous"] = float(roc_auc_score(y, -llr[keep])) if 0 < y.sum() < len(y) else None
        out[f"n_{damaging}"] = int(y.sum())
    out["n_synonymous"] = int((effect == "synonymous").sum())
    return out


def markov_llrs(markov, genome, variants, window_length: int) -> np.ndarray:
    """The vep LLR with a Markov chain: same windows, both strands averaged, in nats."""
    from genoseq.tasks.variants import window_bounds
    from genoseq.tokenizer import Tokenizer

    tok = Tokenizer()
    out = np.full(len(variants), np.nan)
    for n, (chrom, pos, ref, alt, _) in enumerate(variants):
        start, end = window_bounds(genome.contigs[chrom], pos - 1, len(ref), window_length)
        window = genome.fetch(chrom, start, end)
        i = pos - 1 - start
        if tok.decode(window[i : i + len(ref)]) != ref.upper():
            continue
        out[n] = markov.llr(window, np.concatenate([window[:i], tok.encode(alt), window[i + len(ref):]]))
    return out


def markov_region_accuracy(train_rows, test_rows, k: int) -> dict:
    from genoseq.markov import MarkovModel
    from genoseq.tokenizer import Tokenizer

    tok = Tokenizer()
    classes = sorted({r.label for r in train_rows})
    chains = {c: MarkovModel(k=k).fit(tok.encode(r.sequence) for r in train_rows if r.label == c) for c in classes}
    scores = np.array([[chains[c].log2_probs(tok.encode(r.sequence)).sum() for c in classes] for r in test_rows])
    predicted = np.array(classes)[scores.argmax(1)]
    truth = np.array([r.label for r in test_rows])
    return {"accuracy": float((predicted == truth).mean()), "k": k}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="released GenoSeqLM directory")
    parser.add_argument("--window-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--markov-k", type=int, default=6, help="Markov order for the variant LLR baseline")
    parser.add_argument("--region-markov-k", type=int, default=4, help="Markov order of the per-class region chains")
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--pooling", default="phase+ends", help="pooling of the region classifiers (see genoseq embed)")
    parser.add_argument("--layer", default="final", help="hidden layer of the region classifiers: an int, or 'final'")
    parser.add_argument("--strands", default="concat", choices=["forward", "average", "concat"],
                        help="region classifiers: the forward strand alone, or with the reverse complement's "
                             "vector averaged in or concatenated")
    parser.add_argument("--probe-c", type=float, default=0.01, help="inverse L2 strength of the frozen probe")
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--skip-vep", action="store_true")
    parser.add_argument("--max-variants", type=int, default=None, help="subsample (smoke runs only)")
    parser.add_argument("--max-rows", type=int, default=None, help="subsample region tables (smoke runs only)")
    args = parser.parse_args(argv)

    from genoseq.genome import open_genome
    from genoseq.markov import MarkovModel
    from genoseq.pipelines.classify import evaluate, fit
    from genoseq.tasks.variants import Variant, VariantEffectScorer
    from genoseq.tables import read_labelled

    result: dict = {"model": args.model, "train_genome": "E. coli K-12 MG1655", "test_genome": "S. aureus N315"}
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        tmp = Path(tmp)
        ecoli = open_genome(gunzip(DATA / "ecoli_k12_mg1655.fa.gz", tmp))
        saureus = open_genome(gunzip(DATA / "saureus_n315.fa.gz", tmp))

        # ---- variant effects
        if not args.skip_vep:
            variants = read_effects(DATA / "saureus_snvs.vcf.gz")
            if args.max_variants:
                variants = variants[: args.max_variants]
            effect = np.array([v[4] for v in variants])
            started = time.perf_counter()
            scorer = VariantEffectScorer(args.model, saureus, window_length=args.window_length,
                                         batch_size=args.batch_size, device=args.device)
            effects = scorer.score([Variant(*v[:4]) for v in variants], progress=True)
            llr = np.array([np.nan if e.llr is None else e.llr for e in effects])
            result["vep"] = {"window_length": args.window_length, "strands": "both", **effect_aurocs(llr, effect),
                             "seconds": round(time.perf_counter() - started, 1)}
            contig = next(iter(ecoli.contigs))
            markov = MarkovModel(k=args.markov_k).fit([ecoli.fetch(contig, 0, ecoli.contigs[contig])])
            result["vep_markov"] = {"k": args.markov_k, **effect_aurocs(markov_llrs(markov, saureus, variants, args.window_length), effect)}

        # ---- regions
        train_rows = read_labelled(DATA / "ecoli_regions.tsv.gz")
        test_rows = read_labelled(DATA / "saureus_regions.tsv.gz")
        train_path, test_path = DATA / "ecoli_regions.tsv.gz", DATA / "saureus_regions.tsv.gz"
        if args.max_rows:
            rng = np.random.default_rng(0)
            train_rows = [train_rows[i] for i in rng.permutation(len(train_rows))[: args.max_rows]]
            test_rows = [test_rows[i] for i in rng.permutation(len(test_rows))[: args.max_rows]]
            train_path, test_path = tmp / "train.tsv", tmp / "test.tsv"
            for path, rows in ((train_path, train_rows), (test_path, test_rows)):
                path.write_text("sequence\tlabel\n" + "".join(f"{r.sequence}\t{r.label}\n" for r in rows))
        regions: dict = {}
        embedding = {"pooling": args.pooling, "layer": None if args.layer == "final" else int(args.layer),
                     "rc_average": args.strands == "average", "rc_concat": args.strands == "concat"}
        for method in ("probe",) + (() if args.skip_finetune else ("finetune",)):
            started = time.perf_counter()
            clf_dir = tmp / method
            fit(args.model, str(train_path), str(clf_dir), frozen=method == "probe", embedding=embedding,
                probe_c=args.probe_c, max_epochs=args.finetune_epochs, lr=args.finetune_lr, device=args.device,
                progress=False)
            metrics = evaluate(str(clf_dir), {"input": str(test_path)}, str(tmp / f"{method}_report"), device=args.device,
                               progress=False)
            regions[method] = {k: metrics[k] for k in ("accuracy", "mcc", "macro_f1", "auroc_ovr")}
            regions[method]["seconds"] = round(time.perf_counter() - started, 1)
        result["regions"] = {**clf_options, "probe_c": args.probe_c, **regions}
        result["regions_markov"] = markov_region_accuracy(train_rows, test_rows, args.region_markov_k)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
