"""``genoseq pretrain``: train a DNA language model on genomes.

Reads FASTA files or HDF5 token stores through :class:`genoseq.datamodules.GenomeWindowDataModule`
(or, with ``window.buckets``, the length curriculum :class:`~genoseq.datamodules.CurriculumWindowDataModule`),
trains :class:`genoseq.models.GenoSeqLM` with Lightning, and writes a run folder::

    RUN_DIR/
      config.yaml          every option of this run (reusable with --config)
      checkpoints/last.ckpt   exact training state (model, optimiser, scheduler, step)
      model/               the released model: config.json, tokenizer.json, model.safetensors
      metrics.csv          training and validation curves (Lightning's CSVLogger)
      metrics.json         final numbers: validation bits/base, steps, tokens, time
      training_curve.png   loss curves as a picture

Multi-GPU and multi-node training go through Lightning's strategies (``--trainer.strategy ddp``,
``fsdp``), not code of ours.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from genoseq.models.config import ModelConfig, OptimConfig
from genoseq.progress import ProgressChoice
from genoseq.pipelines.training import TrainerConfig, coerce, make_trainer
from genoseq.runtime import LoggerChoice, require_file


def _default_model() -> ModelConfig:
    """A small hybrid that trains on a CPU in minutes: three Mamba2 blocks and one attention."""
    return ModelConfig(d_model=128, pattern="MMMA", n_repeats=1, n_heads=4, d_state=32, headdim=32)


@dataclass
class WindowConfig:
    """How genome windows are cut and batched.

    Args:
        length: Bases per training window.
        batch_size: Windows per batch (per device).
        sampling: ``random`` positions (``windows_per_epoch`` of them, new each epoch) or
            ``sliding`` windows every ``stride`` bases.
        windows_per_epoch: Training windows per epoch with random sampling.
        stride: Step between sliding windows (default: the window length).
        rc_augment: Take each training window from a random strand.
        max_n_fraction: Skip windows with more than this fraction of N.
        val_fraction: Hold out this fraction of every contig (contiguous blocks) for validation
            when no ``val_data`` is given.
        val_block_length: Block length for ``val_fraction``.
        val_contigs: Contigs held out whole for validation.
        max_val_windows: Cap on validation windows (evenly spaced over the held-out data).
        num_workers: DataLoader worker processes.
        buckets: Window lengths of a sequence-length curriculum, e.g. ``[512, 1024, 2048, 4096]``.
            Set, every batch holds windows of one bucket's length at random positions, and
            ``length``, ``batch_size``, ``sampling`` and ``stride`` do not apply; an epoch holds
            as many tokens as ``windows_per_epoch`` windows of the longest bucket, and the
            released model's window length is the longest bucket.
        tokens_per_batch: Tokens in every batch with ``buckets`` (per device), as
            ``tokens_per_batch // length`` windows; a multiple of every bucket. Default:
            ``batch_size`` windows of the longest bucket.
        curriculum: With ``buckets``: ``short_to_long`` (training starts on the shortest
            bucket, each longer one is unlocked in turn over ``curriculum_steps`` while the
            shorter ones stay in the mix, then all are equally likely) or ``uniform`` (all
            equally likely from the start).
        curriculum_steps: Training steps over which ``short_to_long`` unlocks the buckets
            (default: the learning-rate schedule's, ``optim.total_steps``, else
            ``trainer.max_steps``).
        val_length: Validation window length with ``buckets`` (default: the longest bucket).
    """

    length: int = 1024
    batch_size: int = 8
    sampling: str = "random"
    windows_per_epoch: int = 4096
    stride: int | None = None
    rc_augment: bool = True
    max_n_fraction: float = 0.1
    val_fraction: float = 0.05
    val_block_length: int = 100_000
    val_contigs: list[str] | None = None
    max_val_windows: int | None = 256
    num_workers: int = 0
    buckets: list[int] | None = None
    tokens_per_batch: int | None = None
    curriculum: str = "short_to_long"
    curriculum_steps: int | None = None
    val_length: int | None = None

    @property
    def train_length(self) -> int:
        """The longest training window: the longest bucket, else ``length``."""
        return max(self.buckets) if self.buckets else self.length

    @property
    def batch_tokens(self) -> int:
        """Tokens in one training batch (per device)."""
        if self.buckets:
            return self.tokens_per_batch or self.batch_size * self.train_length
        return self.batch_size * self.length

    def describe(self) -> str:
        """The batches in words, for the start-of-run line."""
        if self.buckets:
            lengths = "/".join(str(b) for b in sorted(self.buckets))
            return f"{self.batch_tokens} tokens in windows of {lengths} bases ({self.curriculum})"
        return f"{self.batch_size} x {self.length} bases"


def pretrain(
    data: list[str] | str | None = None,
    out: str = "runs/pretrain",
    val_data: list[str] | str | None = None,
    model: ModelConfig = _default_model(),
    optim: OptimConfig = OptimConfig(),
    window: WindowConfig = WindowConfig(),
    trainer: TrainerConfig = TrainerConfig(),
    seq_len_warmup: list[tuple[int, int]] | None = None,
    copy_augment: float = 0.0,
    resume: bool = False,
    overwrite: bool = False,
    convert_gzip: bool = False,
    seed: int = 0,
    progress: bool | ProgressChoice = "auto",
    logger: LoggerChoice = "csv",
) -> dict:
    """Pretrain a DNA language model; write the run folder (checkpoints, released model, metrics).

    Args:
        data: Genomes to train on: FASTA (plain or bgzip) or HDF5 token stores from
            ``genoseq prepare``. Default: the bundled phage lambda genome.
        out: Run folder.
        val_data: Genomes held out whole for validation (e.g. another species). Without it,
            ``window.val_fraction`` of every training contig is held out.
        model: Model architecture.
        optim: Optimiser and learning-rate schedule.
        window: Window sampling, batching and the validation split.
        trainer: Lightning Trainer options.
        seq_len_warmup: Staged sequence-length warmup as ``[[step, length], ...]``
            (HyenaDNA-style; tokens per step stay constant).
        copy_augment: Fraction of training windows into which a copy of one of their own
            segments (64-1024 bases) is planted further on, at near and far distances alike: it
            teaches the model to look back and copy (real repeats), which windows of a genome
            rarely ask for. 0 (default) plants none.
        resume: Continue from ``out/checkpoints/last.ckpt`` exactly where it stopped.
        overwrite: Start afresh even if ``out`` already holds a run.
        convert_gzip: Convert plain-gzip FASTA inputs to bgzip instead of refusing them.
        seed: Seed for initialisation and window sampling.
        progress: ``bar`` (a live bar), ``lines`` (a plain line every 30 s and at each
            validation, for log files), ``none``, or ``auto``: a bar on a terminal, else lines.
        logger: ``csv`` (``metrics.csv``, the default) or ``tensorboard`` (the CSV too, plus
            TensorBoard event files in ``out/tensorboard``; needs ``pip install 'genoseq[tensorboard]'``).
    """
    # Over 80 lines for its signature and Args, which are the command's options and help.
    model, optim = coerce(ModelConfig, model), coerce(OptimConfig, optim)
    window, trainer = coerce(WindowConfig, window), coerce(TrainerConfig, trainer)

    import lightning as L

    import genoseq
    from genoseq.models.lm import GenoSeqLM
    from genoseq.runtime import atomic_output

    run_dir = Path(out)
    last_ckpt = _check_run_dir(run_dir, resume, overwrite)
    train_sources = _paths(data) or [genoseq.default_genome()]
    val_sources = _paths(val_data)
    L.seed_everything(seed, workers=True, verbose=False)
    if window.buckets and seq_len_warmup:
        from genoseq.errors import InputError

        raise InputError("seq_len_warmup and window.buckets both schedule the training length; use one of them",
                         field="seq_len_warmup")
    # The curriculum spans the learning-rate schedule (optim.total_steps, else max_steps): one
    # planned run length, the same in every leg of a run that is stopped and resumed.
    datamodule = _datamodule(window, train_sources, val_sources, seed, convert_gzip,
                             optim.total_steps or trainer.max_steps)
    lm = GenoSeqLM(model, optim, seq_len_warmup=seq_len_warmup, window_length=window.train_length,
                   copy_augment=copy_augment)
    lm.context_parallel_size = _context_parallel(model, window, trainer, seq_len_warmup)
    with atomic_output(run_dir / "config.yaml") as fh:
        _write_yaml(fh, {
            "data": train_sources, "out": str(run_dir), "val_data": val_sources or None,
            "model": model.to_dict(), "optim": optim.to_dict(), "window": asdict(window),
            "trainer": asdict(trainer), "seq_len_warmup": seq_len_warmup, "copy_augment": copy_augment, "seed": seed,
        })
    has_val = bool(val_sources or window.val_fraction > 0 or window.val_contigs)
    fit = _trainer(trainer, run_dir, has_val, logger, progress)
    if fit.is_global_zero:
        from genoseq.progress import format_count

        n_params = sum(p.numel() for p in lm.parameters())
        print(f"genoseq pretrain: {model.pattern} x{model.n_repeats}, d_model {model.d_model}, {format_count(n_params)} parameters; "
              f"{trainer.max_steps} steps of {window.describe()} -> {run_dir}", flush=True)
    train_seconds, train_bpb, final_val = _fit(fit, lm, datamodule, last_ckpt if resume else None, has_val)
    if not fit.is_global_zero:
        return {}
    metrics = _write_results(run_dir, fit, lm, window, trainer, train_seconds, train_bpb, final_val)
    val_text = f"{final_val:.4f}" if final_val is not None else "n/a (no validation data)"
    print(f"genoseq pretrain: {metrics['steps']} steps in {train_seconds:.0f} s; validation bits/base {val_text}; "
          f"model in {run_dir / 'model'}")
    return metrics


def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> Path:
    """The checkpoint --resume continues from; refuse to write over a run without --overwrite."""
    last_ckpt = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        require_file(last_ckpt, "no checkpoint to resume from")
    elif not overwrite and (last_ckpt.exists() or (run_dir / "model").exists()):
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to start again")
    run_dir.mkdir(parents=True, exist_ok=True)
    return last_ckpt


def _datamodule(window: WindowConfig, train_sources: list[str], val_sources: list[str], seed: int, convert_gzip: bool,
                schedule_steps: int):
    """The training data: the length curriculum with ``window.buckets``, else fixed-length windows;
    ``schedule_steps`` (the run's planned length) is the default ``curriculum_steps``."""
    from genoseq.datamodules import CurriculumWindowDataModule, GenomeWindowDataModule

    common = dict(
        sources=train_sources + val_sources,
        val_sources=val_sources or None,
        max_n_fraction=window.max_n_fraction,
        rc_augment=window.rc_augment,
        val_contigs=window.val_contigs,
        val_fraction=0.0 if val_sources else window.val_fraction,
        val_block_length=window.val_block_length,
        max_val_windows=window.max_val_windows,
        num_workers=window.num_workers,
        seed=seed,
        convert_gzip=convert_gzip,
    )
    if window.buckets:
        return CurriculumWindowDataModule(
            buckets=window.buckets,
            tokens_per_batch=window.batch_tokens,
            curriculum=window.curriculum,
            curriculum_steps=window.curriculum_steps or (schedule_steps if schedule_steps > 0 else None),
            batches_per_epoch=max(1, window.windows_per_epoch * window.train_length // window.batch_tokens),
            val_length=window.val_length,
            **common,
        )
    return GenomeWindowDataModule(
        window_length=window.length,
        stride=window.stride,
        sampling=window.sampling,
        windows_per_epoch=window.windows_per_epoch if window.sampling == "random" else None,
        batch_size=window.batch_size,
        **common,
    )


def _context_parallel(model: ModelConfig, window: WindowConfig, trainer: TrainerConfig, seq_len_warmup) -> int:
    """``trainer.context_parallel``, checked against the model, every window length and the
    processes before any training: an InputError naming the options and numbers otherwise."""
    size = trainer.context_parallel
    if size == 1:
        return 1
    from genoseq.errors import InputError
    from genoseq.models.parallel import context_parallel_problems

    if size < 1:
        raise InputError(f"trainer.context_parallel must be >= 1, got {size}", field=("trainer", "context_parallel"))
    lengths = sorted({*(window.buckets or [window.length]), *(n for _, n in seq_len_warmup or () if n),
                      *([window.val_length] if window.buckets and window.val_length else [])})
    problems = context_parallel_problems(model, size, lengths)
    devices = trainer.devices if isinstance(trainer.devices, int) else None
    if devices is None or (devices * trainer.num_nodes) % size:
        problems.append(f"trainer.devices ({trainer.devices}) x trainer.num_nodes ({trainer.num_nodes}) processes must be "
                        f"a multiple of trainer.context_parallel={size}")
    if problems:
        raise InputError("cannot split windows over context-parallel ranks: " + "; ".join(problems),
                         field=("trainer", "context_parallel"))
    return size


def _trainer(trainer: TrainerConfig, run_dir: Path, has_val: bool, logger: str, progress):
    from lightning.pytorch.callbacks import LearningRateMonitor

    from genoseq.models.resume import StepCheckpoint

    callbacks = [
        # last.ckpt only, refreshed every val_check_interval steps and where a max_time guard stops
        # the run: the state --resume continues. Always that one file: with the version counter, a
        # run folder copied or moved and then resumed wrote last-v1.ckpt beside it, and the next
        # --resume went back to the old last.ckpt.
        StepCheckpoint(run_dir / "checkpoints", trainer.val_check_interval),
        LearningRateMonitor(logging_interval="step"),
    ]
    return make_trainer(trainer, job="pretrain", root_dir=run_dir, logger=logger, progress=progress, callbacks=callbacks,
                        resume_hint=f"run the same command with --resume true (from {run_dir / 'checkpoints'})",
                        max_epochs=-1, check_val_every_n_epoch=None,
                        limit_val_batches=trainer.limit_val_batches if has_val else 0)


def _fit(fit, lm, datamodule, ckpt_path: Path | None, has_val: bool) -> tuple[float, float | None, float | None]:
    """Train, then validate once: seconds, last training batch's and final validation bits/base."""
    from genoseq.runtime import quiet_lightning

    started = time.time()
    with quiet_lightning():
        fit.fit(lm, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    train_seconds = time.time() - started
    train_bpb = _metric(fit, "train/bits_per_base")  # read before validate() replaces the metrics
    final_val = None
    if has_val:
        with quiet_lightning():
            results = fit.validate(lm, datamodule=datamodule, verbose=False)
        final_val = float(results[0]["val/bits_per_base"]) if results else None
    return train_seconds, train_bpb, final_val


def _write_results(run_dir: Path, fit, lm, window: WindowConfig, trainer: TrainerConfig, train_seconds: float,
                   train_bpb: float | None, final_val: float | None) -> dict:
    """The released model, metrics.json and the training-curve PNG."""
    import genoseq
    from genoseq.runtime import atomic_output

    lm.save_pretrained(run_dir / "model")
    metrics = {
        "genoseq_version": genoseq.__version__,
        "steps": int(fit.global_step),
        "train_tokens": int(fit.global_step) * window.batch_tokens
        * trainer.accumulate_grad_batches * max(1, fit.world_size),
        "train_seconds": round(train_seconds, 1),
        "final_val_bits_per_base": final_val,
        "last_train_batch_bits_per_base": train_bpb,
        "parameters": sum(p.numel() for p in lm.parameters()),
        "model_dir": str(run_dir / "model"),
    }
    with atomic_output(run_dir / "metrics.json") as fh:
        json.dump(metrics, fh, indent=2)
        fh.write("\n")
    _plot_curves(run_dir / "metrics.csv", run_dir / "training_curve.png")
    return metrics


def _paths(value: list[str] | str | None) -> list[str]:
    """One path, or several (``--data a.fa --data+ b.fa`` or ``--data [a.fa,b.fa]``)."""
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def _metric(fit, name: str) -> float | None:
    value = fit.callback_metrics.get(name)
    return None if value is None else round(float(value), 4)


def _write_yaml(handle, data: dict) -> None:
    import yaml

    yaml.safe_dump(json.loads(json.dumps(data)), handle, sort_keys=False)


def _plot_curves(csv_path: Path, png_path: Path) -> None:
    """Training and validation bits/base against step, from Lightning's metrics.csv."""
    import csv

    if not csv_path.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genoseq.runtime import atomic_path

    series: dict[str, list[tuple[int, float]]] = {"train/bits_per_base": [], "val/bits_per_base": []}
    with open(csv_path) as fh:
        for row in csv.DictReader(fh):
            for key, points in series.items():
                if row.get(key):
                    points.append((int(row["step"]), float(row[key])))
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, points in series.items():
        if points:
            ax.plot(*zip(*points), label=key.split("/")[0], marker="o" if key.startswith("val") else None)
    ax.set_xlabel("step")
    ax.set_ylabel("bits per base")
    ax.axhline(2.0, color="grey", lw=0.5, ls="--")
    ax.legend()
    ax.set_title("genoseq pretrain")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
