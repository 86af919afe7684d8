"""What long context buys: recall of a copied segment, bits/base by context length, real repeats.

    python benchmarks/bench_long_range.py --model runs/recipe/model runs/recipe_long/model \
        --genome unseen.fa --png long_range.png > long_range.json
    python benchmarks/bench_long_range.py --replot a.json b.json --png both.png   # runs drawn together

For each model (a released genoseq model folder; its label is the folder's parent name):

  recall    a real 500-base segment, the D bases that follow it in the genome, then the segment
            again: bits/base of the copy against its first occurrence, for each D
            (``--distances``, 256 .. 131072 by default). A model that reaches D bases back and
            uses them predicts the copy; one that does not scores it like any DNA (~1.9).
  context   the same 1,000 target bases scored with c bases of context before them, for each c
            (``--contexts``): bits/base against context length.
  repeats   the genome's own direct repeats (rRNA operons, insertion sequences, paralogues;
            ``--repeat-min-length`` bases or more, their copies ``--repeat-distance`` apart), the
            ``--repeats`` longest: each scored from 1 kb before its earlier copy to the end of its
            later one as ``genoseq score`` scores a sequence, in the model's own windows unless
            ``--repeat-chunk`` / ``--repeat-context`` say otherwise (``--repeat-chunk 262144``:
            one pass). Bits/base of the later copies against the earlier ones (and the other
            bases of the same windows): a model that reaches the earlier copy scores the later one
            well below it; one that does not scores both alike (rRNA and IS elements need not
            score like the bases around them).

Recall and context constructs are scored in one pass (no windows). ``--attention-window W`` runs attention
layers with a sliding window of W (``genoseq.models.inference.limit_attention``), which is how a
model trained on short windows scores long ones; by default attention sees everything. Prints
JSON and draws both curves per model into ``--png``. The genome should be one the models never
saw. ``--sections`` picks what runs. Library: ``genoseq.tasks.long_range``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


def label_of(model_dir: str) -> str:
    path = Path(model_dir).resolve()
    return path.parent.name if path.name == "model" else path.name


def summarise_repeats(scores: list[dict]) -> dict:
    """Means over all repeats, each repeat weighted by its length."""
    weights = [s["length"] for s in scores]
    if not scores:
        return {"repeats": 0, "bases": 0}

    def mean(key: str) -> float:
        return round(sum(w * s[key] for w, s in zip(weights, scores)) / sum(weights), 4)

    first, later = mean("first_bits_per_base"), mean("later_bits_per_base")
    return {"repeats": len(scores), "bases": sum(weights), "first_bits_per_base": first, "later_bits_per_base": later,
            "background_bits_per_base": mean("background_bits_per_base"), "later_minus_first": round(later - first, 4)}


def plot(results: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genoseq.runtime import save_figure

    panels = [name for name in ("recall", "context", "repeats") if any(res.get(name) for res in results)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    ax_of = dict(zip(panels, axes[0]))
    for i, res in enumerate(results):
        color = f"C{i}"
        if res.get("recall"):
            d = [p["distance"] for p in res["recall"]]
            ax_of["recall"].plot(d, [p["copy_bits_per_base"] for p in res["recall"]], "o-", color=color,
                                 label=f"{res['label']}: copy")
            ax_of["recall"].plot(d, [p["first_bits_per_base"] for p in res["recall"]], ":", color=color,
                                 label=f"{res['label']}: first occurrence")
        if res.get("context"):
            ax_of["context"].plot([p["context"] for p in res["context"]],
                                  [p["bits_per_base"] for p in res["context"]], "o-", color=color, label=res["label"])
        if res.get("repeats"):
            reps = res["repeats"]
            ax_of["repeats"].scatter([r["distance"] for r in reps],
                                     [r["later_bits_per_base"] - r["first_bits_per_base"] for r in reps],
                                     s=[max(8.0, r["length"] / 40) for r in reps], color=color, alpha=0.6,
                                     label=res["label"])
    titles = {"recall": ("bases between the segment and its copy (D)", "bits per base",
                         "in-context recall of a 500-base copy"),
              "context": ("context before the scored bases", "bits per base", "bits per base by context length"),
              "repeats": ("bases from the earlier copy to the later one", "later copy minus earlier copy, bits/base",
                          "the genome's own repeats (area: length)")}
    for name, ax in ax_of.items():
        xlabel, ylabel, title = titles[name]
        ax.set(xscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
        if name == "repeats":
            ax.axhline(0, color="grey", lw=0.8)
            distances = [p["distance"] for r in results for p in r.get(name) or []]
            at = [2 ** e for e in range(8, 21, 2) if min(distances) / 4 <= 2 ** e <= max(distances) * 4]
            ax.set_xlim(min(distances) / 1.5, max(distances) * 1.5)
        else:
            key = "distance" if name == "recall" else "context"
            at = sorted({p[key] for r in results for p in r.get(name) or []})
        ax.set_xticks(at, [f"{n:,}" for n in at], rotation=30, fontsize=8)
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", help="released model folders")
    parser.add_argument("--genome", help="FASTA (or token store) of a genome the models never saw")
    parser.add_argument("--replot", nargs="+", type=Path, metavar="JSON",
                        help="draw --png from earlier runs' output instead (a model's sections from several runs together)")
    parser.add_argument("--distances", type=int, nargs="+", default=[256, 1024, 4096, 16384, 65536, 131072])
    parser.add_argument("--contexts", type=int, nargs="+", default=[64, 256, 1024, 4096, 16384, 65536, 131072])
    parser.add_argument("--segment", type=int, default=500)
    parser.add_argument("--trials", type=int, default=4, help="segments per distance")
    parser.add_argument("--windows", type=int, default=4, help="target stretches per context length")
    parser.add_argument("--attention-window", type=int, help="sliding attention window for every attention layer")
    parser.add_argument("--repeats", type=int, default=16, help="the longest direct repeats to score")
    parser.add_argument("--repeat-min-length", type=int, default=200)
    parser.add_argument("--repeat-distance", type=int, nargs=2, default=[2048, 131072], metavar=("MIN", "MAX"),
                        help="bases from an earlier copy's start to the later one's")
    parser.add_argument("--repeat-chunk", type=int, help="scoring window for repeats (default: each model's own)")
    parser.add_argument("--repeat-context", type=int, help="context kept between scoring windows (default: the model's)")
    parser.add_argument("--sections", nargs="+", choices=["recall", "context", "repeats"],
                        default=["recall", "context", "repeats"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--png", type=Path, help="figure of each section")
    args = parser.parse_args()
    if args.replot:
        if not args.png:
            parser.error("--replot draws into --png")
        merged: dict[str, dict] = {}  # one model's sections from several runs: one colour
        for path in args.replot:
            for res in json.loads(path.read_text())["results"]:
                merged.setdefault(res["label"], {}).update(res)
        plot(list(merged.values()), args.png)
        return
    if not args.model or not args.genome:
        parser.error("--model and --genome are required (or --replot)")

    import torch

    from genoseq.genome import open_genome
    from genoseq.models import GenoSeqLM
    from genoseq.progress import Progress
    from genoseq.runtime import resolve_device
    from genoseq.tasks.long_range import context_curve, copy_recall, genome_repeats, repeat_recall

    device = resolve_device(args.device)
    genome = open_genome(args.genome)
    sections = set(args.sections)
    repeats = []
    if "repeats" in sections:
        repeats = genome_repeats(genome, limit=args.repeats, min_length=args.repeat_min_length,
                                 min_distance=args.repeat_distance[0], max_distance=args.repeat_distance[1])
        print(f"{len(repeats)} direct repeats of {args.repeat_min_length}+ bases, "
              f"{args.repeat_distance[0]}-{args.repeat_distance[1]} bases apart", file=sys.stderr)
    work = ("recall" in sections) * args.trials * sum(1000 + args.segment * 2 + d for d in args.distances)
    work += ("context" in sections) * args.windows * sum(c + 1000 for c in args.contexts)
    work += sum(r.later + r.length - max(r.first - 1000, 0) for r in repeats)
    results = []
    for model_dir in args.model:
        lm = GenoSeqLM.from_pretrained(model_dir, map_location=device)
        started = time.time()
        res = {"label": label_of(model_dir), "model": model_dir, "training_window": lm.training_config.window_length}
        with Progress(work, desc=label_of(model_dir), unit="bp", mode="auto") as bar:
            if "recall" in sections:
                res["recall"] = [p.to_dict() for p in copy_recall(
                    lm, genome, args.distances, segment=args.segment, trials=args.trials, seed=args.seed,
                    attention_window=args.attention_window, device=device, on_progress=bar.update)]
            if "context" in sections:
                res["context"] = [p.to_dict() for p in context_curve(
                    lm, genome, args.contexts, windows=args.windows, seed=args.seed,
                    attention_window=args.attention_window, device=device, on_progress=bar.update)]
            if "repeats" in sections:
                res["repeats"] = [s.to_dict() for s in repeat_recall(
                    lm, genome, repeats, chunk_size=args.repeat_chunk, context=args.repeat_context, device=device,
                    on_progress=bar.update)]
                res["repeat_summary"] = summarise_repeats(res["repeats"])
        res["seconds"] = round(time.time() - started, 1)
        results.append(res)
        print(json.dumps(res), file=sys.stderr, flush=True)
    genome.close()
    if args.png:
        plot(results, args.png)
    print(json.dumps({"benchmark": "long_range", "genome": args.genome, "segment": args.segment,
                      "trials": args.trials, "windows": args.windows, "attention_window": args.attention_window,
                      "repeat_chunk": args.repeat_chunk, "repeat_context": args.repeat_context,
                      "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                      "device": str(device), "results": results}, indent=2))


if __name__ == "__main__":
    main()
