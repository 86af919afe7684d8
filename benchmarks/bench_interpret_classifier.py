"""Scientific checks of classifier attributions on upstream regions (the bases before a start codon).

1. **Shine-Dalgarno enrichment**: on upstream-class sequences (``--length`` bases ending right
   before the start codon) the mean |contribution| at positions -15..-4 relative to the start
   codon (the last 15..4 bases) over the mean elsewhere; pass at >= ``--min_enrichment``.
2. **MoDISco recovers an SD-like motif**: TF-MoDISco on those attributions; TOMTOM against a MEME
   file this script writes (``known.meme``): an AGGAGG PWM ("SD", 0.85/0.15 A/G at the A
   positions, G elsewhere), the sigma-70 -10 (TATAAT) and -35 (TTGACA) boxes, a T-run, and 26
   random Dirichlet(0.5) 8-mers (seed 0) so TOMTOM has a null of 30 targets. Pass when a
   positive motif's best match is SD with p <= ``--max_p`` and it has >= ``--min_seqlets``.

The classifier is given (``--classifier``) or fitted as a frozen probe on ``--regions`` with
``--model`` (``genoseq classify fit --frozen true``). Attributions: ``genoseq interpret
attributions`` (integrated gradients, dinucleotide-shuffled references, the upstream class's
logit), motifs: ``genoseq interpret motifs``. Prints JSON and writes it to ``--out``; with
``--figures DIR`` also one sequence's contribution logo and the SD motif's logo.
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

import numpy as np

from genoseq.runtime import print_json

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENOSEQ_SHARED_DATA", ROOT.parent / "shared" / "data"))


def known_motifs() -> dict[str, np.ndarray]:
    def exact(word: str, p: float = 0.85) -> np.ndarray:
        m = np.full((len(word), 4), (1 - p) / 3)
        for i, b in enumerate(word):
            m[i, "ACGT".index(b)] = p
        return m

    sd = np.array([[.85, 0, .15, 0], [0, 0, 1, 0], [0, 0, 1, 0], [.85, 0, .15, 0], [0, 0, 1, 0], [0, 0, 1, 0]]) + 0.01
    rng = np.random.default_rng(0)
    out = {"SD": sd / sd.sum(1, keepdims=True), "box-10": exact("TATAAT"), "box-35": exact("TTGACA"),
           "T-run": exact("TTTTTTT")}
    out.update({f"random{i}": rng.dirichlet(np.full(4, 0.5), 8) for i in range(26)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "runs/recipe/model"), help="language model for the probe")
    ap.add_argument("--classifier", default=None, help="a classifier folder (skip fitting)")
    ap.add_argument("--regions", default=str(DATA / "ecoli_regions.tsv.gz"))
    ap.add_argument("--upstream_class", default="upstream")
    ap.add_argument("--n", type=int, default=200, help="upstream sequences to explain")
    ap.add_argument("--method", default="ig")
    ap.add_argument("--n_shuffles", type=int, default=5)
    ap.add_argument("--n_steps", type=int, default=8)
    ap.add_argument("--min_enrichment", type=float, default=1.5)
    ap.add_argument("--max_p", type=float, default=0.01)
    ap.add_argument("--min_seqlets", type=int, default=20)
    ap.add_argument("--work", default="/tmp/bench_interpret_classifier")
    ap.add_argument("--figures", default=None)
    ap.add_argument("--reuse", action="store_true",
                    help="keep the classifier and attributions already in --work (rerun the motif search only)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/2026-12-02e-cpu2/interpret_classifier.json"))
    args = ap.parse_args()

    from genoseq.pipelines.classify import fit
    from genoseq.pipelines.interpret_classifier import attributions, motifs, read_attributions
    from genoseq.motif_files import write_meme

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    clf_dir = args.classifier
    if clf_dir is None:
        clf_dir = str(work / "classifier")
    if args.classifier is None and not (args.reuse and (Path(clf_dir) / "config.json").exists()):
        t = time.perf_counter()
        fit(args.model, args.regions, clf_dir, frozen=True, device="cpu", progress="none")
        timings["fit_probe_s"] = round(time.perf_counter() - t, 1)
    opener = gzip.open if args.regions.endswith(".gz") else open
    with opener(args.regions, "rt") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["label"] == args.upstream_class]
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in sorted(rng.choice(len(rows), min(args.n, len(rows)), replace=False))]
    table = work / "upstream.tsv"
    table.write_text("name\tsequence\tlabel\n" + "".join(f"up{i}\t{r['sequence']}\t{r['label']}\n"
                                                          for i, r in enumerate(rows)))
    t = time.perf_counter()
    if args.reuse and (work / "attributions" / "attributions.json").exists():
        summary = json.loads((work / "attributions" / "attributions.json").read_text())
        if Path(args.out).exists():  # the timings of the run that made them
            timings = {k: v for k, v in json.loads(Path(args.out).read_text())["timings"].items() if k != "motifs_s"}
    else:
        summary = attributions(clf_dir, {"input": str(table)}, str(work / "attributions"),
                               class_name=args.upstream_class, method=args.method, n_shuffles=args.n_shuffles,
                               n_steps=args.n_steps, logos=1, device="cpu", progress="none")
        timings["attributions_s"] = round(time.perf_counter() - t, 1)
    arrays = read_attributions(work / "attributions")
    lengths = arrays["lengths"]
    per_base = np.abs(arrays["contributions"].sum(-1))
    enrich = []
    for i, L in enumerate(lengths):
        window = np.zeros(L, dtype=bool)
        window[L - 15:L - 3] = True  # -15..-4 before the start codon
        enrich.append((per_base[i, :L][window].mean(), per_base[i, :L][~window].mean()))
    inside, outside = np.array(enrich).T
    enrichment = float(inside.mean() / outside.mean())
    per_seq_above = float((inside / outside >= 1.0).mean())

    meme = work / "known.meme"
    write_meme(meme, known_motifs())
    t = time.perf_counter()
    found = motifs(str(work / "attributions"), str(work / "motifs"), motifs=str(meme))
    timings["motifs_s"] = round(time.perf_counter() - t, 1)
    positive = [m for m in found["motifs"] if m["sign"] == "positive"]
    sd = [m for m in positive if m["best_match"] == "SD"]
    best = min(sd, key=lambda m: m["p_value"]) if sd else None
    if best:  # where its sites lie: bases from a site's centre to the start codon (which follows the region)
        with open(work / "motifs" / "seqlets.tsv") as handle:
            sites = [r for r in csv.DictReader(handle, delimiter="\t") if r["motif"] == best["name"]]
        offsets = np.array([(int(r["start"]) + int(r["end"])) / 2 for r in sites]) - np.array(
            [lengths[int(r["sequence"][2:])] for r in sites])
        best = {**best, "site_centre_to_start_codon": {"median": float(np.median(offsets)),
                                                       "iqr": [float(np.percentile(offsets, 25)),
                                                               float(np.percentile(offsets, 75))]}}
    checks = {
        "sd_enrichment": {"number": round(enrichment, 3), "threshold": f">= {args.min_enrichment}",
                          "pass": enrichment >= args.min_enrichment,
                          "detail": "mean |contribution| at -15..-4 over the mean elsewhere, over all sequences; "
                                    f"share of sequences with a ratio >= 1: {per_seq_above:.3f}"},
        "modisco_sd_motif": {"number": None if best is None else best["p_value"], "threshold": f"p <= {args.max_p}, "
                             f"seqlets >= {args.min_seqlets}",
                             "pass": bool(best and best["p_value"] <= args.max_p and best["n_seqlets"] >= args.min_seqlets),
                             "motif": best, "positive_motifs": positive},
    }
    result = {"benchmark": "interpret_classifier", "machine": f"{platform.machine()} CPU, 2 cores",
              "classifier": clf_dir, "model": args.model, "regions": args.regions, "n_sequences": len(rows),
              "method": args.method, "baseline": "dinucleotide shuffles", "n_shuffles": args.n_shuffles,
              "n_steps": args.n_steps, "completeness_gap_mean": summary.get("completeness_gap_mean"),
              "known_motifs": "SD (AGGAGG), box-10, box-35, T-run, 26 random 8-mers", "timings": timings,
              "checks": checks, "pass": all(c["pass"] for c in checks.values())}
    if args.figures:
        fig_dir = Path(args.figures)
        fig_dir.mkdir(parents=True, exist_ok=True)
        logo = next((work / "attributions" / "logos").glob("*.png"))
        shutil.copy(logo, fig_dir / "upstream_contribution_logo.png")
        if best:
            shutil.copy(work / "motifs" / "logos" / f"{best['name']}.png", fig_dir / "sd_motif_logo.png")
    print_json(result, args.out)
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
