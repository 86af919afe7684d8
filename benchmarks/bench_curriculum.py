"""Sequence-length curriculum against fixed-length windows: held-out bits/base by tokens and by time.

The same model (same initial weights, optimiser and learning-rate schedule) is trained twice
or more at equal tokens per step and equal steps: once on fixed windows of the longest
bucket (``GenomeWindowDataModule``, random positions) and once per ``--curricula`` entry on
the length buckets (``CurriculumWindowDataModule``: ``short_to_long`` unlocks the longer
buckets over ``--curriculum-steps``, ``uniform`` mixes them all from the start). Every
``--eval-every`` steps, and at the end, each run scores the same held-out windows (the
longest bucket's length, forward strand: the last ``--val-fraction`` of every 100 kb of the
training genomes, or whole ``--val-data`` genomes). Training seconds exclude validation.
Prints JSON (per run: step, tokens, seconds, held-out bits/base at each point; a summary at
equal tokens and at equal wall clock) and writes ``--plot`` (bits/base against seconds and
against tokens)::

    python benchmarks/bench_curriculum.py \\
        --data ../shared/data/ecoli_k12_mg1655.fa.gz ../shared/data/saureus_n315.fa.gz \\
        --buckets 512 1024 2048 4096 8192 --tokens-per-batch 16384 --steps 1000 --eval-every 100 \\
        --curricula short_to_long uniform --plot benchmarks/results/curriculum.png

Genomes are FASTA (plain, gzip or bgzip) or token stores; plain gzip ones are decompressed
once into ``--out``. Without ``--data``, the shared E. coli genome (``../shared/data`` or
``$GENOSEQ_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENOSEQ_SHARED_DATA", ROOT.parent / "shared" / "data"))


def readable_genome(path: str, folder: Path) -> str:
    """The path itself, or for a plain-gzip FASTA a decompressed copy in ``folder`` (made once)."""
    source = Path(path)
    with open(source, "rb") as fh:
        head = fh.read(16)
    bgzip = head[:2] == b"\x1f\x8b" and head[12:14] == b"BC"
    if head[:2] != b"\x1f\x8b" or bgzip:
        return str(source)
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / source.name.removesuffix(".gz")
    if not plain.exists():
        with gzip.open(source, "rb") as fin, open(plain.with_suffix(".tmp"), "wb") as fout:
            shutil.copyfileobj(fin, fout)
        plain.with_suffix(".tmp").rename(plain)
    return str(plain)


def training_clock(tokens_per_step: int):
    """A Lightning callback that keeps training seconds (validation excluded) and, at every
    validation, the step, tokens, seconds and held-out bits/base in ``.points``."""
    import torch
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.trainer.states import TrainerFn

    class TrainingClock(Callback):
        def __init__(self) -> None:
            self.seconds = 0.0
            self.points: list[dict] = []
            self._since: float | None = None

        def on_train_start(self, trainer, pl_module) -> None:
            self._since = time.perf_counter()

        def on_validation_start(self, trainer, pl_module) -> None:
            if self._since is not None:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()  # the last training step's kernels count as training
                self.seconds += time.perf_counter() - self._since
                self._since = None

        def on_validation_end(self, trainer, pl_module) -> None:
            value = trainer.callback_metrics.get("val/bits_per_base")
            step = int(trainer.global_step)
            if value is not None and step > 0 and (not self.points or self.points[-1]["step"] != step):
                self.points.append({"step": step, "tokens": step * tokens_per_step, "seconds": round(self.seconds, 2),
                                    "val_bits_per_base": round(float(value), 4)})
            if trainer.state.fn == TrainerFn.FITTING:  # back to training
                self._since = time.perf_counter()

        def on_train_end(self, trainer, pl_module) -> None:
            self.on_validation_start(trainer, pl_module)

    return TrainingClock()


def run(name: str, datamodule, args, out: Path) -> dict:
    """Train one model on ``datamodule``; its held-out curve and totals."""
    import lightning as L

    from genoseq.models import GenoSeqLM
    from genoseq.models.config import ModelConfig, OptimConfig
    from genoseq.pipelines.training import TrainerConfig, make_trainer
    from genoseq.runtime import quiet_lightning

    L.seed_everything(args.seed, workers=True, verbose=False)  # the same initial weights for every run
    model = ModelConfig(d_model=args.d_model, pattern=args.pattern, n_heads=args.n_heads)
    optim = OptimConfig(lr=args.lr, warmup_steps=min(args.warmup_steps, args.steps // 10), total_steps=args.steps)
    lm = GenoSeqLM(model, optim, window_length=max(args.buckets))
    clock = training_clock(args.tokens_per_batch)
    config = TrainerConfig(max_steps=args.steps, val_check_interval=args.eval_every, accelerator=args.accelerator,
                           devices=1, log_every_n_steps=max(1, args.eval_every // 2))
    trainer = make_trainer(config, job=f"bench_curriculum {name}", root_dir=out / name, callbacks=[clock],
                           progress=args.progress, max_epochs=-1, check_val_every_n_epoch=None,
                           enable_checkpointing=False)
    with quiet_lightning():
        trainer.fit(lm, datamodule=datamodule)
        trainer.validate(lm, datamodule=datamodule, verbose=False)  # the final point, if not just taken
    return {"points": clock.points, "train_seconds": round(clock.seconds, 2),
            "final_val_bits_per_base": clock.points[-1]["val_bits_per_base"] if clock.points else None,
            "parameters": sum(p.numel() for p in lm.parameters())}


def at_seconds(points: list[dict], seconds: float) -> float | None:
    """Held-out bits/base at ``seconds`` of training, linear between evaluation points (None
    before the first)."""
    previous = None
    for point in points:
        if point["seconds"] >= seconds:
            if previous is None:
                return point["val_bits_per_base"] if point["seconds"] == seconds else None
            share = (seconds - previous["seconds"]) / (point["seconds"] - previous["seconds"])
            return round(previous["val_bits_per_base"] + share * (point["val_bits_per_base"] - previous["val_bits_per_base"]), 4)
        previous = point
    return previous["val_bits_per_base"] if previous else None


def plot(runs: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, result in runs.items():
        points = result["points"]
        for ax, key in zip(axes, ("seconds", "tokens")):
            ax.plot([p[key] for p in points], [p["val_bits_per_base"] for p in points], marker="o", label=name)
    axes[0].set_xlabel("training seconds (validation excluded)")
    axes[1].set_xlabel("training tokens")
    for ax in axes:
        ax.set_ylabel("held-out bits per base")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=None,
                        help="training genomes (default: the shared E. coli genome)")
    parser.add_argument("--val-data", nargs="+", default=None,
                        help="genomes held out whole for validation (default: --val-fraction of the training genomes)")
    parser.add_argument("--val-fraction", type=float, default=0.05,
                        help="share of every 100 kb of the training genomes held out (without --val-data)")
    parser.add_argument("--max-val-windows", type=int, default=64, help="held-out windows scored at each point")
    parser.add_argument("--buckets", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192],
                        help="window lengths of the curriculum; the fixed run uses the longest")
    parser.add_argument("--tokens-per-batch", type=int, default=16384, help="tokens in every batch of every run")
    parser.add_argument("--curricula", nargs="+", default=["short_to_long"], choices=["short_to_long", "uniform"],
                        help="curriculum runs beside the fixed-length one")
    parser.add_argument("--curriculum-steps", type=int, default=None,
                        help="steps over which short_to_long unlocks the buckets (default: --steps)")
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps of every run")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between held-out evaluations")
    parser.add_argument("--d-model", type=int, default=128, help="model width")
    parser.add_argument("--pattern", default="HHMA", help="block pattern (H Hyena, M Mamba2, A attention)")
    parser.add_argument("--n-heads", type=int, default=4, help="attention heads")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine schedule over --steps)")
    parser.add_argument("--warmup-steps", type=int, default=100, help="learning-rate warmup (at most a tenth of --steps)")
    parser.add_argument("--accelerator", default="auto", help="auto, cpu or gpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of every plan")
    parser.add_argument("--progress", default="none", help="bar, lines or none (training progress on stderr)")
    parser.add_argument("--out", default="runs/bench_curriculum", help="folder for Lightning logs and decompressed genomes")
    parser.add_argument("--plot", default=None, help="PNG of held-out bits/base against time and tokens "
                                                     "(default: OUT/curriculum.png)")
    args = parser.parse_args()

    import torch

    from genoseq.datamodules import CurriculumWindowDataModule, GenomeWindowDataModule

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.data is None and not (DATA / "README.md").exists():
        sys.exit(f"shared data not found at {DATA}; set GENOSEQ_SHARED_DATA or pass --data")
    data = [readable_genome(p, out / "genomes") for p in (args.data or [str(DATA / "ecoli_k12_mg1655.fa.gz")])]
    val_data = [readable_genome(p, out / "genomes") for p in (args.val_data or [])]
    longest = max(args.buckets)
    held_out = dict(sources=data + val_data, val_sources=val_data or None,
                    val_fraction=0.0 if val_data else args.val_fraction, max_val_windows=args.max_val_windows,
                    rc_augment=True, num_workers=args.num_workers, seed=args.seed)
    batches_per_epoch = max(1, args.steps // 4)  # a few epochs, so epoch changes are part of every run
    modules = {"fixed": GenomeWindowDataModule(
        window_length=longest, sampling="random", batch_size=args.tokens_per_batch // longest,
        windows_per_epoch=batches_per_epoch * (args.tokens_per_batch // longest), **held_out)}
    for curriculum in args.curricula:
        modules[curriculum] = CurriculumWindowDataModule(
            buckets=args.buckets, tokens_per_batch=args.tokens_per_batch, curriculum=curriculum,
            curriculum_steps=args.curriculum_steps or args.steps, batches_per_epoch=batches_per_epoch, **held_out)

    started, runs = time.time(), {}
    for name, datamodule in modules.items():
        with contextlib.redirect_stdout(sys.stderr):  # stdout is this benchmark's JSON
            runs[name] = run(name, datamodule, args, out)
        print(json.dumps({name: runs[name]["points"][-1:]}), file=sys.stderr, flush=True)

    equal_time = min(r["train_seconds"] for r in runs.values())
    summary = {
        "at_equal_tokens": {name: r["final_val_bits_per_base"] for name, r in runs.items()},
        "equal_seconds": equal_time,
        "at_equal_seconds": {name: at_seconds(r["points"], equal_time) for name, r in runs.items()},
        "train_seconds": {name: r["train_seconds"] for name, r in runs.items()},
    }
    plot_path = Path(args.plot) if args.plot else out / "curriculum.png"
    plot(runs, plot_path, f"{args.pattern} d_model {args.d_model}, {args.tokens_per_batch} tokens/step, "
                          f"buckets {min(args.buckets)}-{longest}")
    print(json.dumps({
        "benchmark": "curriculum", "data": data, "val_data": val_data or None, "val_fraction": args.val_fraction,
        "buckets": sorted(args.buckets), "tokens_per_batch": args.tokens_per_batch, "steps": args.steps,
        "curriculum_steps": args.curriculum_steps or args.steps,
        "model": {"d_model": args.d_model, "pattern": args.pattern, "parameters": runs["fixed"]["parameters"]},
        "runs": {name: {k: v for k, v in r.items() if k != "parameters"} for name, r in runs.items()},
        "summary": summary, "plot": str(plot_path), "seconds": round(time.time() - started, 1),
        "machine": {"device": "cuda" if torch.cuda.is_available() and args.accelerator != "cpu" else "cpu",
                    "cpu_threads": torch.get_num_threads(), "processor": platform.machine()},
    }, indent=2))


if __name__ == "__main__":
    main()
