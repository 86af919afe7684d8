"""Scientific checks and speed of language-model saturation mutagenesis (``genoseq interpret ism``).

The labelled regions (``--regions``: 200 bp ``coding`` regions in frame on the gene's strand,
``upstream`` = the 200 bp before a start codon) are found in the genome (``--genome``, either
strand), so each is mutated with the genome around it as context (``--flank`` bases each side,
default the model's window), in the gene's orientation. Both strands are scored, as ``genoseq
vep`` does (radius 128).

1. **Codon periodicity** (coding regions): mean |LLR| of substitutions at the first and second
   codon positions over the third; pass at >= ``--min_codon_ratio``.
2. **Stop codons** (coding regions): AUROC of -LLR separating the substitutions that create an
   in-frame stop codon (TAA, TAG, TGA) from all other substitutions; pass at >= ``--min_stop_auroc``.
3. **Shine-Dalgarno** (upstream regions plus the start codon): mean importance (mean |LLR| of
   a base's three substitutions) at positions -15..-4 before the start codon over the mean at
   the rest of the 200 upstream bases (the definition of ``bench_interpret_classifier.py``); pass
   at >= ``--min_sd_enrichment``. The start codon's enrichment is reported beside it.
4. **Speed**: positions per second for one ``--speed_length`` region (default 1 kb), and the
   same mutants scored from scratch (one forward pass over each mutant's whole window, the
   windows batched as ``--batch_size`` rows) on ``--scratch_positions`` of its positions,
   extrapolated; the two must agree (max |difference| reported). Pass at a speed-up >= 5.

Prints JSON and writes it to ``--out``; ``--figures DIR`` also writes the ISM figure of one
upstream region and the dependency map of its last 120 bases.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STOPS = {"TAA", "TAG", "TGA"}
_COMP = str.maketrans("ACGTN", "TGCAN")


def revcomp(s: str) -> str:
    return s.translate(_COMP)[::-1]


def locate(rows, genome: str, label: str, n: int, flank: int, extra_after: int, seed: int):
    """Up to ``n`` regions of ``label`` found once in the genome: (sequence with flanks, lo, hi),
    in the region's orientation; ``extra_after`` bases after the region join it (the start codon)."""
    rc = revcomp(genome)
    picked = [r for r in rows if r[1] == label]
    order = np.random.default_rng(seed).permutation(len(picked))
    out = []
    for k in order:
        seq = picked[k][0].upper()
        for strand_seq in (genome, rc):
            pos = strand_seq.find(seq)
            if pos >= 0 and strand_seq.find(seq, pos + 1) < 0:
                end = pos + len(seq) + extra_after
                left, right = max(0, pos - flank), min(len(strand_seq), end + flank)
                out.append((strand_seq[left:right], pos - left, end - left))
                break
        if len(out) == n:
            break
    return out


def codon_checks(results) -> dict:
    from sklearn.metrics import roc_auc_score

    by_pos = [[], [], []]
    stop_scores, labels = [], []
    for r in results:
        seq, llr = r.sequence, r.llr
        for i in range(len(seq) - len(seq) % 3):
            if seq[i] not in "ACGT":
                continue
            frame = i % 3
            subs = [b for b in range(4) if "ACGT"[b] != seq[i]]
            by_pos[frame].append(np.abs(llr[i, subs]).mean())
            codon = seq[i - frame:i - frame + 3]
            if codon in STOPS or "N" in codon:
                continue
            for b in subs:
                mutant = codon[:frame] + "ACGT"[b] + codon[frame + 1:]
                labels.append(mutant in STOPS)
                stop_scores.append(-float(llr[i, b]))
    means = [float(np.mean(p)) for p in by_pos]
    return {"mean_abs_llr_by_codon_position": [round(m, 4) for m in means],
            "codon_ratio": round((means[0] + means[1]) / 2 / means[2], 3),
            "stop_auroc": round(float(roc_auc_score(labels, stop_scores)), 4),
            "stop_substitutions": int(np.sum(labels)), "other_substitutions": int(len(labels) - np.sum(labels)),
            "stop_mean_llr": round(-float(np.mean(np.array(stop_scores)[np.array(labels)])), 4),
            "other_mean_llr": round(-float(np.mean(np.array(stop_scores)[~np.array(labels)])), 4)}


def sd_checks(results) -> dict:
    imp = np.stack([r.importance for r in results])  # (n, 203): 200 upstream + the start codon
    upstream = imp[:, :200]
    sd = upstream[:, 200 - 15:200 - 3].mean()
    rest = np.concatenate([upstream[:, :200 - 15], upstream[:, 200 - 3:]], axis=1).mean()
    starts = [r.sequence[200:203] for r in results]
    profile = upstream.mean(0)
    return {"sd_enrichment": round(float(sd / rest), 3),
            "start_codon_enrichment": round(float(imp[:, 200:203].mean() / rest), 3),
            "start_codons": {c: starts.count(c) for c in sorted(set(starts))},
            "mean_importance_minus_30_to_minus_1": [round(float(x), 4) for x in profile[-30:]]}


def from_scratch(model, ids: np.ndarray, lo: int, positions: list[int], radius: int, window: int,
                 batch_size: int):
    """LLR of the mutants at ``positions`` (forward strand), each mutant window run whole."""
    import torch

    from genoseq.models.inference import batched_log_probs

    windows, keys = [], []
    for i in positions:
        end = min(len(ids), i + 1 + radius)
        start = max(0, end - window)
        ref = torch.from_numpy(ids[start:end].astype(np.int64))
        windows.append(ref)
        keys.append((i, None, start))
        for col in range(4):
            if 5 + col != ids[i]:
                mut = ref.clone()
                mut[i - start] = 5 + col
                windows.append(mut)
                keys.append((i, col, start))
    found = {}
    t = time.perf_counter()
    ref_lp = {}
    for b in range(0, len(windows), batch_size):
        chunk = windows[b:b + batch_size]
        lengths = {len(w) for w in chunk}
        groups = [torch.stack([w for w in chunk if len(w) == n]) for n in sorted(lengths)]
        outs = [batched_log_probs(model, g) for g in groups]
        lp_of = {n: iter(o) for n, o in zip(sorted(lengths), outs)}
        for w, key in zip(chunk, keys[b:b + batch_size]):
            lp = next(lp_of[len(w)]).double()
            i, col, start = key
            w0 = i - start
            a, z = max(w0, 1) - 1, min(len(w), w0 + radius + 1) - 1
            if col is None:
                ref_lp[i] = lp
            else:
                found[(i, col)] = float((lp[a:z] - ref_lp[i][a:z]).sum())
    return found, time.perf_counter() - t, len(windows)


def figures(lm, upstream, upstream_res, fig_dir: Path) -> list[str]:
    """The ISM figure of the upstream region (of the first 10) whose SD window matters most, and
    the dependency map of its last 120 bases; positions count from the start codon's A (0)."""
    from genoseq.tasks.interpret import plots
    from genoseq.tasks.interpret.ism import dependency_map

    k = int(np.argmax([r.importance[200 - 15:200 - 3].mean() for r in upstream_res[:10]]))
    r = upstream_res[k]
    plots.save(plots.lm_ism_figure(r.llr[-80:], r.sequence[-80:], start=-77,
                                   title="LM saturation mutagenesis: an E. coli start codon (0-2) and the 77 bases "
                                         "before it"),
               fig_dir / "lm_ism_upstream.png")
    seq, _, s_hi = upstream[k]
    dep = dependency_map(lm, seq[s_hi - 120:s_hi], device="cpu")
    plots.save(plots.dependency_heatmap(dep.dep, dep.sequence, start=-117,
                                        title="Nucleotide dependencies: a start codon (0-2) and the 117 bases before it"),
               fig_dir / "lm_dependencies_upstream.png")
    return [str(fig_dir / "lm_ism_upstream.png"), str(fig_dir / "lm_dependencies_upstream.png")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "runs/recipe/model"))
    ap.add_argument("--genome", default=str(ROOT / "data/ecoli_k12_mg1655.fa"))
    ap.add_argument("--regions", default="/work/shared/data/ecoli_regions.tsv.gz")
    ap.add_argument("--n_coding", type=int, default=40)
    ap.add_argument("--n_upstream", type=int, default=40)
    ap.add_argument("--flank", type=int, default=None, help="context each side (default: the model's window)")
    ap.add_argument("--radius", type=int, default=128)
    ap.add_argument("--batch_size", type=int, default=128)
    ap.add_argument("--speed_length", type=int, default=1000)
    ap.add_argument("--scratch_positions", type=int, default=24)
    ap.add_argument("--min_codon_ratio", type=float, default=1.2)
    ap.add_argument("--min_stop_auroc", type=float, default=0.75)
    ap.add_argument("--min_sd_enrichment", type=float, default=1.5)
    ap.add_argument("--min_speedup", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figures", default=None)
    ap.add_argument("--figures_only", action="store_true", help="only the figures (ISM of 10 upstream regions)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch

    from genoseq.fasta import iter_fasta
    from genoseq.models.inference import scoring_window
    from genoseq.tasks.interpret.ism import language_model, saturation_mutagenesis

    lm = language_model(args.model, "cpu")
    window = scoring_window(lm)[0]
    flank = window if args.flank is None else args.flank
    records = list(iter_fasta(args.genome))
    genome = records[0].sequence.upper()
    opener = gzip.open if args.regions.endswith(".gz") else open
    with opener(args.regions, "rt") as handle:
        rows = [(r["sequence"], r["label"]) for r in csv.DictReader(handle, delimiter="\t")]

    def run(items):
        t = time.perf_counter()
        res = saturation_mutagenesis(lm, [s for s, _, _ in items], regions=[(lo, hi) for _, lo, hi in items],
                                     radius=args.radius, batch_size=args.batch_size, device="cpu", progress="lines")
        return res, time.perf_counter() - t

    if args.figures_only:
        upstream = locate(rows, genome, "upstream", 10, flank, 3, args.seed)
        print(json.dumps({"figures": figures(lm, upstream, run(upstream)[0], Path(args.figures or "."))}))
        return 0
    report = {"model": args.model, "genome": args.genome, "regions": args.regions, "radius": args.radius,
              "flank": flank, "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
                                         f"{torch.get_num_threads()} threads"}
    coding = locate(rows, genome, "coding", args.n_coding, flank, 0, args.seed)
    coding_res, seconds = run(coding)
    report["coding"] = {"n": len(coding), "seconds": round(seconds, 1), **codon_checks(coding_res)}
    upstream = locate(rows, genome, "upstream", args.n_upstream, flank, 3, args.seed)
    upstream_res, seconds = run(upstream)
    report["upstream"] = {"n": len(upstream), "seconds": round(seconds, 1), **sd_checks(upstream_res)}

    # speed: one region of speed_length bases from the middle of the genome, with its flanks
    mid = len(genome) // 2
    lo, hi = mid, mid + args.speed_length
    ids = lm.tokenizer.encode(genome[lo - flank:hi + flank]).astype(np.uint8)
    torch.set_grad_enabled(False)
    t = time.perf_counter()
    fast = saturation_mutagenesis(lm, [ids], regions=[(flank, flank + args.speed_length)], radius=args.radius,
                                  strands="forward", batch_size=args.batch_size, device="cpu")[0]
    fast_seconds = time.perf_counter() - t
    both_t = time.perf_counter()
    saturation_mutagenesis(lm, [ids], regions=[(flank, flank + args.speed_length)], radius=args.radius,
                           batch_size=args.batch_size, device="cpu")
    both_seconds = time.perf_counter() - both_t
    rng = np.random.default_rng(args.seed)
    positions = sorted(int(x) for x in rng.choice(args.speed_length, args.scratch_positions, replace=False) + flank)
    scratch, scratch_seconds, scratch_windows = from_scratch(lm, ids, flank, positions, args.radius, window,
                                                             args.batch_size)
    diffs = [abs(scratch[(i, col)] - float(fast.llr_forward[i - flank, col])) for i, col in scratch]
    per_position_scratch = scratch_seconds / len(positions)
    per_position_fast = fast_seconds / args.speed_length
    report["speed"] = {
        "length": args.speed_length, "forward_strand_seconds": round(fast_seconds, 2),
        "both_strands_seconds": round(both_seconds, 2),
        "positions_per_second_forward": round(args.speed_length / fast_seconds, 2),
        "positions_per_second_both_strands": round(args.speed_length / both_seconds, 2),
        "from_scratch_positions": len(positions), "from_scratch_windows": scratch_windows,
        "from_scratch_seconds": round(scratch_seconds, 2),
        "from_scratch_positions_per_second": round(1 / per_position_scratch, 2),
        "speedup": round(per_position_scratch / per_position_fast, 2),
        "max_abs_difference_nats": float(f"{max(diffs):.3g}"),
        "difference_from": "each from-scratch window ends radius bases after its position, an ISM window radius "
                           "bases after its block of 16: the first bases of context differ",
    }
    report["checks"] = {
        "codon_ratio": {"value": report["coding"]["codon_ratio"], "threshold": args.min_codon_ratio,
                        "pass": report["coding"]["codon_ratio"] >= args.min_codon_ratio},
        "stop_auroc": {"value": report["coding"]["stop_auroc"], "threshold": args.min_stop_auroc,
                       "pass": report["coding"]["stop_auroc"] >= args.min_stop_auroc},
        "sd_enrichment": {"value": report["upstream"]["sd_enrichment"], "threshold": args.min_sd_enrichment,
                          "pass": report["upstream"]["sd_enrichment"] >= args.min_sd_enrichment},
        "speedup": {"value": report["speed"]["speedup"], "threshold": args.min_speedup,
                    "pass": report["speed"]["speedup"] >= args.min_speedup},
    }
    if args.figures:
        report["figures"] = figures(lm, upstream, upstream_res, Path(args.figures))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
