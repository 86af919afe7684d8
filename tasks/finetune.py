"""Fine-tuning a LightningModule with early stopping, keeping the best validation epoch's weights.

Shared by every fine-tuned head (classifier, regression model, segmenter): :func:`finetune`
trains ``model`` on a DataModule with a Trainer the caller builds (the command decides folders,
loggers and progress), stops when the monitored validation metric has not improved for
``patience`` epochs, and loads back the weights of the best epoch, which
:class:`BestWeights` keeps in memory. Given a ``checkpoint_dir`` it also writes ``last.ckpt``
there after every epoch (model, optimiser, schedule, early stopping, the best weights so far and
the random state), and ``resume`` continues from it exactly: the weights at the end equal an
uninterrupted run's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from genoseq.errors import InputError
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
        if trainer.sanity_checking:
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


class RandomState(Callback):
    """Saves the random generators (torch, CUDA, numpy, Python) in each checkpoint and restores
    them on resume, so dropout after a resume draws what it would have drawn."""

    def state_dict(self) -> dict:
        # tensors and plain tuples only: checkpoints are read with torch.load(weights_only=True)
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                           has_gauss, gauss), "python": random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state_dict["python"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def checkpoint_dir(out: str | Path) -> Path:
    """Where a fine-tuning that writes ``out`` keeps its ``last.ckpt`` until it ends:
    ``<out>.checkpoints``, beside the output (which is written whole at the end)."""
    return Path(f"{out}.checkpoints")


def check_resume(out: str | Path, resume: bool, *, fine_tunes: bool = True) -> Path:
    """The checkpoint folder of a fine-tuning into ``out``, checked before any work: with
    ``resume`` its ``last.ckpt`` must exist; without, an interrupted run's checkpoint is never
    overwritten unasked (an input error says how to continue or start again). A run that
    does not fine-tune (``fine_tunes=False``: a probe) has nothing to resume."""
    folder = checkpoint_dir(out)
    if not fine_tunes:
        if resume:
            raise InputError("--resume continues a fine-tuning; a probe trains without checkpoints and has nothing to "
                             "resume", field="resume", kind="conflict")
        return folder
    if resume:
        require_file(folder / "last.ckpt", "no checkpoint to resume from")
    elif (folder / "last.ckpt").exists():
        raise InputError(f"an interrupted fine-tuning into {out} left {folder / 'last.ckpt'}: add --resume true to "
                         f"continue it, or delete {folder} to start again", field="resume", kind="exists")
    return folder


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
    callbacks: list[Callback] = [EarlyStopping(monitor=monitor, mode=mode, patience=patience), best] if validate else []
    last = None
    if checkpoint_dir is not None:
        # the newest epoch only, always as last.ckpt (save_last alone saves nothing without a top-k save)
        callbacks += [RandomState(), ModelCheckpoint(dirpath=checkpoint_dir, filename="last", save_top_k=1,
                                                     every_n_epochs=1, enable_version_counter=False)]
        last = Path(checkpoint_dir) / "last.ckpt"
    if resume:
        if last is None:
            raise ValueError("resume needs a checkpoint_dir")
        require_file(last, "no checkpoint to resume from")
    trainer = make_trainer(callbacks)
    with quiet_lightning():
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(last) if resume else None)
    best.restore(model)
    return FinetuneResult(monitor, best.best_epoch, best.best, trainer.current_epoch, best.history)


__all__ = ["BestWeights", "FinetuneResult", "RandomState", "check_resume", "checkpoint_dir", "finetune"]
