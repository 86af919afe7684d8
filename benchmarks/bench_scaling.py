"""Scaling table: held-out bits/base for several model sizes and token budgets.

Each (size, budget) is a separate ``genoseq pretrain`` run of the recipe (``--config``) with
``model.d_model`` (and the attention heads) set to the size and ``trainer.max_steps`` set to
the budget, so each run has its own full learning-rate schedule. Every run validates on the
same held-out regions (the recipe's ``val_fraction`` split of the same genomes); with
``--genome`` each model also scores that unseen genome (its first ``--max-bases`` bases). Runs
already in ``--out`` are reused. Prints JSON and writes ``--plot`` (bits/base against training
tokens, one line per size)::

    python benchmarks/bench_scaling.py --config configs/recipe_cpu_small.yaml \\
        --data data/ecoli_k12_mg1655.fa data/saureus_n315.fa data/hpylori_g27.fa \\
        --sizes 64 128 192 --steps 250 500 1000 --genome unseen.fa \\
        --out runs/scaling --plot benchmarks/results/scaling.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from genoseq.genome import open_genome
from genoseq.models import GenoSeqLM
from genoseq.models.inference import token_log_probs
from genoseq.pipelines.pretrain import pretrain
from genoseq.tokenizer import A, T


def unseen_bits(lm, path: str, max_bases: int) -> float:
    genome = open_genome(path)
    bits, n = 0.0, 0
    for contig, length in genome.contigs.items():
        take = min(length, max_bases - n)
        if take < 2:
            break
        ids = genome.fetch(contig, 0, take)
        lp = token_log_probs(lm, ids).numpy().astype(np.float64)
        ok = (ids[1:] >= A) & (ids[1:] <= T)
        bits += -lp[ok].sum() / math.log(2)
        n += int(ok.sum())
    genome.close()
    return round(bits / n, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="pretraining recipe (YAML)")
    parser.add_argument("--data", nargs="+", required=True, help="training genomes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 192], help="d_model of each size")
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000], help="optimiser steps of each budget")
    parser.add_argument("--genome", default=None, help="an unseen genome to score with every model")
    parser.add_argument("--max-bases", type=int, default=500_000, help="bases of --genome to score")
    parser.add_argument("--out", default="runs/scaling")
    parser.add_argument("--plot", default=None, help="PNG of bits/base against training tokens")
    args = parser.parse_args()

    recipe = yaml.safe_load(Path(args.config).read_text())
    window = recipe.get("window", {})
    tokens_per_step = int(window.get("length", 1024)) * int(window.get("batch_size", 8))
    started, rows = time.time(), []
    for d_model in args.sizes:
        for steps in args.steps:
            run = Path(args.out) / f"d{d_model}_s{steps}"
            options = {k: v for k, v in recipe.items() if k not in ("data", "out", "val_data")}
            heads = int(options["model"].get("n_heads", 4))
            while d_model % heads or (d_model // heads) % 2:
                heads //= 2
            options["model"] = {**options["model"], "d_model": d_model, "n_heads": max(heads, 1)}
            options["trainer"] = {**options.get("trainer", {}), "max_steps": steps,
                                  "val_check_interval": max(1, steps // 4)}
            options["optim"] = {**options.get("optim", {}), "warmup_steps": min(options.get("optim", {}).get("warmup_steps", 100), steps // 10)}
            if options.get("seq_len_warmup"):  # stage starts scale with the budget
                full = int(recipe["trainer"]["max_steps"])
                options["seq_len_warmup"] = [[int(s * steps / full), length] for s, length in options["seq_len_warmup"]]
            if not (run / "metrics.json").exists():
                with contextlib.redirect_stdout(sys.stderr):  # stdout is this benchmark's JSON
                    pretrain(data=list(args.data), out=str(run), overwrite=True, **options)
            metrics = json.loads((run / "metrics.json").read_text())
            row = {"d_model": d_model, "steps": steps, "train_tokens": steps * tokens_per_step,
                   "parameters": metrics["parameters"], "train_seconds": metrics["train_seconds"],
                   "val_bits_per_base": metrics["final_val_bits_per_base"]}
            if args.genome:
                with torch.inference_mode():
                    row["unseen_bits_per_base"] = unseen_bits(GenoSeqLM.from_pretrained(run / "model"), args.genome,
                                                              args.max_bases)
            rows.append(row)
            print(json.dumps(row), flush=True, file=sys.stderr)

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = ["val_bits_per_base"] + (["unseen_bits_per_base"] if args.genome else [])
        fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
        for ax, key in zip(axes[0], keys):
            for d_model in args.sizes:
                pts = sorted((r["train_tokens"], r[key]) for r in rows if r["d_model"] == d_model)
                params = next(r["parameters"] for r in rows if r["d_model"] == d_model)
                ax.plot(*zip(*pts), marker="o", label=f"d_model {d_model} ({params / 1e6:.2f} M)")
            ax.set_xscale("log")
            ax.set_xlabel("training tokens")
            ax.set_ylabel("bits per base")
            ax.set_title("held-out regions" if key.startswith("val") else f"unseen: {Path(args.genome).name}")
            ax.legend()
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
    print(json.dumps({
        "benchmark": "pretrain_scaling", "config": args.config, "data": args.data, "genome": args.genome,
        "rows": rows, "seconds": round(time.time() - started, 1),
        "machine": {"cpus": torch.get_num_threads(), "processor": platform.machine()},
    }, indent=2))


if __name__ == "__main__":
    main()
