"""What every job that trains shares: the Trainer options and the one place a Lightning
``Trainer`` is built (option dataclasses given as instances or dicts: :func:`genoseq.options.coerce`).

Nothing heavy is imported at module level, so building the CLI parser stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from genoseq.options import coerce  # noqa: F401  (here too: every training job imports it from this module)


@dataclass
class TrainerConfig:
    """Lightning Trainer options (``None``: Lightning's own default).

    Args:
        max_steps: Optimiser steps to train for (-1: no limit, the epochs decide).
        max_time: Wall-clock limit as ``DD:HH:MM:SS`` (training stops cleanly, a checkpoint is kept).
        val_check_interval: Validate every this many training batches (``None``: once per epoch).
        limit_val_batches: Validation batches per check (an int) or a fraction.
        accelerator: ``auto``, ``cpu``, ``gpu``...
        devices: Number of devices or ``auto``.
        strategy: ``auto``, ``ddp``, ``fsdp``...
        num_nodes: Machines for multi-node training.
        precision: Lightning precision; default bf16-mixed on a capable GPU, else 32-true.
        gradient_clip_val: Clip the gradient norm to this value (0 disables).
        accumulate_grad_batches: Batches per optimiser step.
        log_every_n_steps: Logging interval.
        enable_progress_bar: Show progress at all (``false`` is ``--progress none``).
        context_parallel: Processes that split each training window along its length (``pretrain``
            only): with N > 1 every N consecutive ranks hold one window, each a 1/N slice of it,
            exchanging it by all-to-all around every sequence mixer (gloo on CPUs, NCCL on GPUs);
            ``devices * num_nodes`` must be a multiple of N, and the rest is data parallelism.
    """

    max_steps: int = 300
    max_time: str | None = None
    val_check_interval: int | None = 100
    limit_val_batches: int | float = 1.0
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str | None = None
    gradient_clip_val: float = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int | None = 10
    enable_progress_bar: bool = True
    context_parallel: int = 1


def make_trainer(config: TrainerConfig, *, job: str, root_dir, logger: str = "csv", log_dir=None, csv_name: str = "",
                 callbacks: list | tuple = (), progress="auto", resume_hint: str | None = None, **options):
    """The Lightning ``Trainer`` of a training job.

    ``config`` gives the options a user may set; ``options`` are the job's own fixed choices
    (``max_epochs``, ``enable_checkpointing``...), which win. Loggers come from ``logger``
    (:func:`genoseq.runtime.training_loggers` in ``log_dir``, default ``root_dir``), progress from ``progress``
    (:func:`genoseq.models.progress_callbacks.training_callbacks`, after the job's ``callbacks``).
    No model summary, no sanity validation, and none of Lightning's construction noise. A run over
    several processes stops all of them with a message when one dies
    (:class:`genoseq.models.ranks.RankWatch`; ``resume_hint`` says how to continue).
    """
    import lightning as L

    from genoseq.models.progress_callbacks import training_callbacks
    from genoseq.models.ranks import RankWatch
    from genoseq.runtime import quiet_lightning, trainer_precision, training_loggers

    if config.context_parallel > 1 and job != "pretrain":
        from genoseq.errors import InputError

        raise InputError(f"{job} does not split windows over processes; trainer.context_parallel is for pretrain",
                         field=("trainer", "context_parallel"))
    progress_callbacks, show_progress = training_callbacks(job, progress if config.enable_progress_bar else "none")
    kwargs = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "context_parallel"}
    if config.context_parallel > 1 and config.strategy == "auto":
        kwargs["strategy"] = "ddp"  # the ranks of one window are DDP processes
    kwargs["precision"] = trainer_precision(config.accelerator, config.precision)
    kwargs["gradient_clip_val"] = config.gradient_clip_val or None
    kwargs.update(
        default_root_dir=str(root_dir), enable_progress_bar=show_progress, enable_model_summary=False,
        num_sanity_val_steps=0, logger=training_loggers(logger, log_dir or root_dir, csv_name=csv_name),
        callbacks=[*callbacks, RankWatch(job, resume_hint), *progress_callbacks],
    )
    kwargs.update(options)
    with quiet_lightning():  # no hardware lines or tips at construction
        return L.Trainer(**kwargs)


__all__ = ["TrainerConfig", "coerce", "make_trainer"]
