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

Each check is also reported for two references computed from the same data, so a value reads
against what k-mer statistics alone give: an order-``--markov_k`` Markov chain fitted on both
strands of the genome (its ISM is the same LLR, both strands), and, for the codon checks, a
codon-usage table that knows the reading frame (counted from the ``coding`` regions not
evaluated; a substitution's LLR is log f(mutant codon) - log f(codon)). The coding report also
gives the AUROC of -LLR separating missense from synonymous substitutions (stops left out).

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

from genoseq.runtime import print_json

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENOSEQ_SHARED_DATA", ROOT.parent / "shared" / "data"))
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
    from Bio.Data.CodonTable import unambiguous_dna_by_id
    from sklearn.metrics import roc_auc_score

    amino_acid = unambiguous_dna_by_id[11].forward_table  # bacterial code; stops are not in it
    by_pos = [[], [], []]
    stop_scores, labels = [], []
    effect_scores, missense = [], []
    for r in results:
        seq, llr = r.sequence, r.llr
        for i in range(len(seq) - len(seq) % 3):
            if seq[i] not in "ACGT":
                continue
            frame = i % 3
            subs = [b for b in range(4) if "ACGT"[b] != seq[i]]
            if np.isfinite(llr[i, subs]).all():
                by_pos[frame].append(np.abs(llr[i, subs]).mean())
            codon = seq[i - frame:i - frame + 3]
            if codon in STOPS or "N" in codon:
                continue
            for b in subs:
                mutant = codon[:frame] + "ACGT"[b] + codon[frame + 1:]
                labels.append(mutant in STOPS)
                stop_scores.append(-float(llr[i, b]))
                if mutant not in STOPS:
                    missense.append(amino_acid[mutant] != amino_acid[codon])
                    effect_scores.append(-float(llr[i, b]))
    means = [float(np.mean(p)) for p in by_pos]
    scores, labels, missense = np.array(stop_scores), np.array(labels), np.array(missense)
    effect_scores = np.array(effect_scores)
    return {"mean_abs_llr_by_codon_position": [round(m, 4) for m in means],
            "codon_ratio": round((means[0] + means[1]) / 2 / means[2], 3),
            "stop_auroc": round(float(roc_auc_score(labels, scores)), 4),
            "stop_substitutions": int(labels.sum()), "other_substitutions": int(len(labels) - labels.sum()),
            "stop_mean_llr": round(-float(scores[labels].mean()), 4),
            "other_mean_llr": round(-float(scores[~labels].mean()), 4),
            "missense_vs_synonymous_auroc": round(float(roc_auc_score(missense, effect_scores)), 4),
            "missense_mean_llr": round(-float(effect_scores[missense].mean()), 4),
            "synonymous_mean_llr": round(-float(effect_scores[~missense].mean()), 4)}


def markov_ism(markov, items) -> list:
    """What an order-k Markov chain gives as :func:`saturation_mutagenesis` of the same regions:
    the vep LLR (nats, both strands averaged) of every substitution; a substitution changes the
    k + 1 predictions from its own base on, on each strand."""
    from genoseq.tasks.interpret.ism import Mutagenesis
    from genoseq.tokenizer import A, Tokenizer

    tok, k = Tokenizer(), markov.k
    out = []
    for seq, lo, hi in items:
        ids = tok.encode(seq)
        strands = np.zeros((2, hi - lo, 4))
        for i in range(lo, hi):
            ref = ids[i - k:i + k + 1]
            if len(ref) < 2 * k + 1 or not A <= ids[i] < A + 4:
                strands[:, i - lo] = np.nan
                continue
            for col in range(4):
                if A + col != ids[i]:
                    alt = ref.copy()
                    alt[k] = A + col
                    strands[:, i - lo, col] = markov.strand_llrs(ref, alt)
        out.append(Mutagenesis(sequence=seq[lo:hi], llr=strands.mean(0), llr_forward=strands[0],
                               llr_reverse=strands[1], radius=k, strands="both"))
    return out


def codon_usage_ism(training: list[str], items) -> list:
    """The LLR of every substitution of in-frame coding regions under a codon-usage table that
    knows the frame: log f(mutant codon) - log f(codon), f counted from ``training`` (+0.5)."""
    from collections import Counter
    from itertools import product

    from genoseq.tasks.interpret.ism import Mutagenesis

    counts = Counter(s[i:i + 3] for s in training for i in range(0, len(s) - 2, 3))
    log_f = {"".join(c): np.log(counts["".join(c)] + 0.5) for c in product("ACGT", repeat=3)}
    out = []
    for seq, lo, hi in items:
        region = seq[lo:hi]
        llr = np.full((len(region), 4), np.nan)
        for i in range(len(region) - len(region) % 3):
            frame = i % 3
            codon = region[i - frame:i - frame + 3]
            if codon in log_f:
                llr[i] = [log_f[codon[:frame] + b + codon[frame + 1:]] - log_f[codon] for b in "ACGT"]
        out.append(Mutagenesis(sequence=region, llr=llr, llr_forward=llr, llr_reverse=None, radius=0,
                               strands="forward"))
    return out


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
    from genoseq.figures import dependency_heatmap, lm_ism_figure
    from genoseq.runtime import save_figure
    from genoseq.tasks.interpret.ism import dependency_map

    k = int(np.argmax([r.importance[200 - 15:200 - 3].mean() for r in upstream_res[:10]]))
    r = upstream_res[k]
    save_figure(lm_ism_figure(r.llr[-80:], r.sequence[-80:], start=-77,
                                    title="LM saturation mutagenesis: an E. coli start codon (0-2) and the 77 bases "
                                          "before it"),
                fig_dir / "lm_ism_upstream.png", dpi=110)
    seq, _, s_hi = upstream[k]
    dep = dependency_map(lm, seq[s_hi - 120:s_hi], device="cpu")
    save_figure(dependency_heatmap(dep.dep, dep.sequence, start=-117,
                                         title="Nucleotide dependencies: a start codon (0-2) and the 117 bases before it"),
                fig_dir / "lm_dependencies_upstream.png", dpi=110)
    return [str(fig_dir / "lm_ism_upstream.png"), str(fig_dir / "lm_dependencies_upstream.png")]


def checks_figure(report: dict, path: Path) -> str:
    """Two panels a person reads at a glance: mean |LLR| by codon position (the model beside its
    references) and the mean importance of the 30 bases before the start codon, SD window shaded."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    refs = report["references"]
    markov_key = next(k for k in refs if k.startswith("markov"))
    markov_name = f"Markov {markov_key[len('markov_'):]}"
    coding = {"language model": report["coding"], markov_name: refs[markov_key]["coding"],
              "codon usage (knows the frame)": refs["codon_usage"]}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
    for k, (name, c) in enumerate(coding.items()):
        left.bar(np.arange(3) + (k - 1) * 0.27, c["mean_abs_llr_by_codon_position"], width=0.27,
                 label=f"{name}: ratio {c['codon_ratio']:.2f}")
    left.set_xticks(range(3), ["1st", "2nd", "3rd"])
    left.set_xlabel("codon position")
    left.set_ylabel("mean |LLR| (nats)")
    left.set_title(f"coding regions (n={report['coding']['n']})", fontsize=10, loc="left")
    left.set_ylim(0, 1.45 * max(max(c["mean_abs_llr_by_codon_position"]) for c in coding.values()))
    left.legend(fontsize=7, loc="upper left")
    x = np.arange(-30, 0)
    for name, up in (("language model", report["upstream"]), (markov_name, refs[markov_key]["upstream"])):
        right.plot(x, up["mean_importance_minus_30_to_minus_1"], marker=".",
                   label=f"{name}: SD enrichment {up['sd_enrichment']:.2f}")
    right.axvspan(-15.5, -3.5, color="0.9", zorder=0, label="Shine-Dalgarno window (-15..-4)")
    right.set_xlabel("position before the start codon")
    right.set_ylabel("mean importance (nats)")
    right.set_title(f"upstream regions (n={report['upstream']['n']})", fontsize=10, loc="left")
    right.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def references(markov_k: int, genome: str, rows, coding, upstream) -> dict:
    """The checks for a Markov chain fitted on the genome and for a frame-aware codon-usage table
    counted from the coding regions not evaluated."""
    from genoseq.markov import MarkovModel
    from genoseq.tokenizer import Tokenizer

    t = time.perf_counter()
    markov = MarkovModel(markov_k).fit([Tokenizer().encode(genome)])
    evaluated = {seq[lo:hi] for seq, lo, hi in coding}
    training = [s.upper() for s, label in rows if label == "coding" and s.upper() not in evaluated]
    return {f"markov_k{markov_k}": {"coding": codon_checks(markov_ism(markov, coding)),
                                    "upstream": sd_checks(markov_ism(markov, upstream))},
            "codon_usage": {"training_regions": len(training), **codon_checks(codon_usage_ism(training, coding))},
            "seconds": round(time.perf_counter() - t, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "runs/recipe/model"))
    ap.add_argument("--genome", default=str(ROOT / "data/ecoli_k12_mg1655.fa"))
    ap.add_argument("--regions", default=str(DATA / "ecoli_regions.tsv.gz"))
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
    ap.add_argument("--markov_k", type=int, default=5, help="order of the Markov reference (5: 6-mer counts)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figures", default=None)
    ap.add_argument("--figures_only", action="store_true", help="only the figures (ISM of 10 upstream regions)")
    ap.add_argument("--replot", default=None, metavar="JSON",
                    help="draw FIGURES/lm_checks.png from a report this script wrote, and stop")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    if args.replot:
        print(json.dumps({"figures": [checks_figure(json.loads(Path(args.replot).read_text()),
                                                    Path(args.figures or ".") / "lm_checks.png")]}))
        return 0
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
    report["references"] = references(args.markov_k, genome, rows, coding, upstream)
    markov, codon = report["references"][f"markov_k{args.markov_k}"], report["references"]["codon_usage"]

    def check(value, threshold, **reference):
        return {"value": value, "threshold": threshold, "pass": value >= threshold, **reference}

    report["checks"] = {
        "codon_ratio": check(report["coding"]["codon_ratio"], args.min_codon_ratio,
                             markov=markov["coding"]["codon_ratio"], codon_usage=codon["codon_ratio"]),
        "stop_auroc": check(report["coding"]["stop_auroc"], args.min_stop_auroc,
                            markov=markov["coding"]["stop_auroc"], codon_usage=codon["stop_auroc"]),
        "sd_enrichment": check(report["upstream"]["sd_enrichment"], args.min_sd_enrichment,
                               markov=markov["upstream"]["sd_enrichment"]),
        "speedup": check(report["speed"]["speedup"], args.min_speedup),
    }
    if args.figures:
        report["figures"] = figures(lm, upstream, upstream_res, Path(args.figures))
        report["figures"].append(checks_figure(report, Path(args.figures) / "lm_checks.png"))
    print_json(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
