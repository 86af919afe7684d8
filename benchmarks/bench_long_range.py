"""What long context buys: recall of a copied segment and bits/base by context length.

    python benchmarks/bench_long_range.py --model runs/recipe/model runs/recipe_long/model \
        --genome unseen.fa --png long_range.png > long_range.json

For each model (a released genoseq model folder; its label is the folder's parent name):

  recall    a real 500-base segment, the D bases that follow it in the genome, then the segment
            again: bits/base of the copy against its first occurrence, for each D
            (``--distances``, 256 .. 131072 by default). A model that reaches D bases back and
            uses them predicts the copy; one that does not scores it like any DNA (~1.9).
  context   the same 1,000 target bases scored with c bases of context before them, for each c
            (``--contexts``): bits/base against context length.

Every construct is scored in one pass (no windows). ``--attention-window W`` runs attention
layers with a sliding window of W (``genoseq.models.inference.limit_attention``), which is how a
model trained on short windows scores long ones; by default attention sees everything. Prints
JSON and draws both curves per model into ``--png``. The genome should be one the models never
saw. Library: ``genoseq.tasks.long_range``.
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


def plot(results: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genoseq.runtime import save_figure

    fig, (ax_recall, ax_context) = plt.subplots(1, 2, figsize=(11, 4))
    for i, res in enumerate(results):
        color = f"C{i}"
        d = [p["distance"] for p in res["recall"]]
        ax_recall.plot(d, [p["copy_bits_per_base"] for p in res["recall"]], "o-", color=color,
                       label=f"{res['label']}: copy")
        ax_recall.plot(d, [p["first_bits_per_base"] for p in res["recall"]], ":", color=color,
                       label=f"{res['label']}: first occurrence")
        c = [p["context"] for p in res["context"]]
        ax_context.plot(c, [p["bits_per_base"] for p in res["context"]], "o-", color=color, label=res["label"])
    ax_recall.set(xscale="log", xlabel="bases between the segment and its copy (D)", ylabel="bits per base",
                  title="in-context recall of a 500-base copy")
    ax_context.set(xscale="log", xlabel="context before the scored bases", ylabel="bits per base",
                   title="bits per base by context length")
    ticks = [sorted({p["distance"] for r in results for p in r["recall"]}),
             sorted({p["context"] for r in results for p in r["context"]})]
    for ax, at in zip((ax_recall, ax_context), ticks):
        ax.set_xticks(at, [f"{n:,}" for n in at], rotation=30, fontsize=8)
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", required=True, help="released model folders")
    parser.add_argument("--genome", required=True, help="FASTA (or token store) of a genome the models never saw")
    parser.add_argument("--distances", type=int, nargs="+", default=[256, 1024, 4096, 16384, 65536, 131072])
    parser.add_argument("--contexts", type=int, nargs="+", default=[64, 256, 1024, 4096, 16384, 65536, 131072])
    parser.add_argument("--segment", type=int, default=500)
    parser.add_argument("--trials", type=int, default=4, help="segments per distance")
    parser.add_argument("--windows", type=int, default=4, help="target stretches per context length")
    parser.add_argument("--attention-window", type=int, help="sliding attention window for every attention layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--png", type=Path, help="figure of both curves")
    args = parser.parse_args()

    import torch

    from genoseq.genome import open_genome
    from genoseq.models import GenoSeqLM
    from genoseq.progress import Progress
    from genoseq.runtime import resolve_device
    from genoseq.tasks.long_range import context_curve, copy_recall

    device = resolve_device(args.device)
    genome = open_genome(args.genome)
    work = args.trials * sum(1000 + args.segment * 2 + d for d in args.distances) + args.windows * sum(
        c + 1000 for c in args.contexts)
    results = []
    for model_dir in args.model:
        lm = GenoSeqLM.from_pretrained(model_dir, map_location=device)
        started = time.time()
        with Progress(work, desc=label_of(model_dir), unit="bp", mode="auto") as bar:
            recall = copy_recall(lm, genome, args.distances, segment=args.segment, trials=args.trials, seed=args.seed,
                                 attention_window=args.attention_window, device=device, on_progress=bar.update)
            context = context_curve(lm, genome, args.contexts, windows=args.windows, seed=args.seed,
                                    attention_window=args.attention_window, device=device, on_progress=bar.update)
        results.append({"label": label_of(model_dir), "model": model_dir,
                        "training_window": lm.training_config.window_length, "seconds": round(time.time() - started, 1),
                        "recall": [p.to_dict() for p in recall], "context": [p.to_dict() for p in context]})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    genome.close()
    if args.png:
        plot(results, args.png)
    print(json.dumps({"benchmark": "long_range", "genome": args.genome, "segment": args.segment,
                      "trials": args.trials, "windows": args.windows, "attention_window": args.attention_window,
                      "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                      "device": str(device), "results": results}, indent=2))


if __name__ == "__main__":
    main()
