"""Fine-tuning a LightningModule with early stopping, keeping the best validation epoch's weights.

Shared by every fine-tuned head (classifier, regression model, segmenter): :func:`finetune`
trains ``model`` on a DataModule with a Trainer the caller builds (the command decides folders,
loggers and progress), stops when the monitored validation metric has not improved for
``patience`` epochs, and loads back the weights of the best epoch, which
:class:`BestWeights` keeps in memory. Given a ``checkpoint_dir`` it also writes ``last.ckpt``
there after every epoch (model, optimiser, schedule, early stopping, the best weights so far and
the random state; :mod:`genoseq.models.resume`), and ``resume`` continues from it exactly: the
weights at the end equal an uninterrupted run's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, EarlyStopping

from genoseq.models.resume import LAST, RandomState, last_checkpoint
from genoseq.runtime import quiet_lightning, require_file


class BestWeights(Callback):
    """Lightning callback keeping a CPU copy of the weights of the best validation epoch, and
    the validation and training metrics of every epoch (``history``)."""

    def __init__(self, monitor: str, mode: Literal["min", "max"]) -> None:
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.state: dict | None = None
        self.history: list[dict] = []

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":  # a validate() outside fit chooses nothing
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        value = metrics.get(self.monitor)
        if value is None:
            return
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best, self.best_epoch = value, trainer.current_epoch
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state, "history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]
        self.state, self.history = state_dict["state"], list(state_dict["history"])

    def restore(self, module: LightningModule) -> None:
        """Load the best epoch's weights into ``module`` (nothing when no epoch was validated)."""
        if self.state is not None:
            module.load_state_dict(self.state)


@dataclass
class FinetuneResult:
    """What a fine-tuning run reports: the best epoch and its metric, epochs run, per-epoch metrics."""

    monitor: str
    best_epoch: int | None
    best: float | None
    epochs_run: int
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"best_epoch": self.best_epoch, f"best_{self.monitor.replace('/', '_')}": self.best,
                "epochs_run": self.epochs_run, "history": self.history}


def finetune(model: LightningModule, datamodule, make_trainer: Callable[[list[Callback]], Trainer], *,
             monitor: str = "val/loss", patience: int = 3, validate: bool = True,
             checkpoint_dir: str | Path | None = None, resume: bool = False) -> FinetuneResult:
    """Train ``model`` on ``datamodule`` and leave it holding the best validation epoch's weights.

    ``make_trainer(callbacks)`` builds the Trainer around the callbacks given to it (with
    ``checkpoint_dir``, one is a ``ModelCheckpoint``: the Trainer must allow checkpointing).
    ``monitor`` is minimised when it is ``val/loss`` and maximised otherwise (``val/acc``).
    Without ``validate`` (no validation data) the model trains for the Trainer's epochs and keeps
    its last weights. ``resume`` continues from ``checkpoint_dir/last.ckpt``.
    """
    mode = "min" if monitor == "val/loss" else "max"
    best = BestWeights(monitor, mode)
    model.train()  # from_pretrained returns the backbone in eval mode
    # strict=False: a run cut short by max_steps before its first validation is not an error
    stop = EarlyStopping(monitor=monitor, mode=mode, patience=patience, strict=False)
    callbacks: list[Callback] = [stop, best] if validate else []
    last = None
    if checkpoint_dir is not None:
        callbacks += [RandomState(), last_checkpoint(checkpoint_dir)]
        last = Path(checkpoint_dir) / LAST
    if resume:
        if last is None:
            raise ValueError("resume needs a checkpoint_dir")
        require_file(last, "no checkpoint to resume from")
    trainer = make_trainer(callbacks)
    with quiet_lightning():
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(last) if resume else None)
    best.restore(model)
    return FinetuneResult(monitor, best.best_epoch, best.best, trainer.current_epoch, best.history)


__all__ = ["BestWeights", "FinetuneResult", "finetune"]
