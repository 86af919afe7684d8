"""Exact resume of a training job that writes one output: where its checkpoint lives, the checks
before a run, the checkpoint itself and the random state in it.

A job that trains into ``out`` (``classify fit``, ``annotate fit``, ``generate fit``, ``align
train``) keeps ``last.ckpt`` in ``<out>.checkpoints`` (:func:`checkpoint_dir`) while it runs and
removes the folder when it ends; the same command with ``--resume true`` continues from it, and
the weights at the end equal an uninterrupted run's. :func:`check_resume` runs before any work:
``--resume`` needs the checkpoint, and a left one is never overwritten unasked (``--overwrite
true``, where a command has it, asks to start again).
:func:`last_checkpoint` is the Lightning callback that writes it, after every epoch or every
``n`` training steps and where a ``max_time`` guard stopped the run; :class:`RandomState` puts
the random generators in it. The data position inside an epoch is the DataModules' own state
(:mod:`genoseq.datamodules.sampling`).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from genoseq.errors import InputError
from genoseq.runtime import require_file

LAST = "last.ckpt"


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


class StepCheckpoint(ModelCheckpoint):
    """``dirpath/last.ckpt`` every ``every_n_train_steps`` optimiser steps (a run of one long
    epoch), and at the step where training is told to stop between those (the ``max_time``
    guard's Timer sets ``trainer.should_stop``): such a run resumes from the step it reached, not up to an
    interval earlier. Lightning runs checkpoint callbacks after all others, so a stop decided at
    a step is seen here at that step, while the loop state is still the step's (at the end of
    training it already counts the unfinished epoch as done)."""

    def __init__(self, dirpath: str | Path, every_n_train_steps: int | None) -> None:
        # save_top_k=0 with save_last: only last.ckpt; no last-v1.ckpt beside a copied run's
        super().__init__(dirpath=dirpath, save_last=True, save_top_k=0, every_n_train_steps=every_n_train_steps,
                         enable_version_counter=False)
        self.every = every_n_train_steps or 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if trainer.should_stop and not (self.every and trainer.global_step % self.every == 0):
            trainer.save_checkpoint(Path(self.dirpath) / LAST)


def checkpoint_dir(out: str | Path) -> Path:
    """Where a training run that writes ``out`` keeps its ``last.ckpt`` until it ends:
    ``<out>.checkpoints``, beside the output (which is written whole at the end)."""
    return Path(f"{out}.checkpoints")


def check_resume(out: str | Path, resume: bool, *, trains: bool = True, overwrite: bool | None = None) -> Path:
    """The checkpoint folder of a training run into ``out``, checked before any work: with
    ``resume`` its ``last.ckpt`` must exist; without, an interrupted run's checkpoint is never
    overwritten unasked (an input error says how to continue or start again). A command with an
    ``--overwrite`` option passes its value: ``overwrite=True`` asks to start again, and the left
    folder is deleted. A run that trains no network (``trains=False``: a probe) has nothing to resume."""
    folder = checkpoint_dir(out)
    if not trains:
        if resume:
            raise InputError("--resume continues a fine-tuning; a probe trains without checkpoints and has nothing to "
                             "resume", field="resume", kind="conflict")
        return folder
    if resume:
        require_file(folder / LAST, "no checkpoint to resume from")
    elif (folder / LAST).exists():
        if overwrite:
            shutil.rmtree(folder)
            return folder
        again = f"pass --overwrite true or delete {folder}" if overwrite is not None else f"delete {folder}"
        raise InputError(f"an interrupted training run into {out} left {folder / LAST}: add --resume true to "
                         f"continue it, or {again} to start again", field="resume", kind="exists")
    return folder


def last_checkpoint(folder: str | Path, *, every_n_train_steps: int | None = None) -> ModelCheckpoint:
    """The callback that keeps ``folder/last.ckpt``: the state after the newest epoch, or with
    ``every_n_train_steps`` after every that many optimiser steps (a run of one long epoch) and
    where a ``max_time`` guard stopped it (:class:`StepCheckpoint`).

    At an epoch's end, after its validations, never at a validation inside the epoch: a
    DataModule records its position in the epoch only while training
    (:func:`genoseq.datamodules.sampling.with_position`), and a resume from a step-end
    checkpoint skips a validation due at that step."""
    if every_n_train_steps is not None:
        return StepCheckpoint(folder, every_n_train_steps)
    # save_top_k=1 without a monitor: always the newest as last.ckpt (at epoch ends save_last
    # alone saves nothing in this Lightning version unless a top-k save happened); no last-v1.ckpt
    return ModelCheckpoint(dirpath=folder, filename=Path(LAST).stem, save_top_k=1, every_n_epochs=1,
                           save_on_train_epoch_end=True, enable_version_counter=False)


__all__ = ["LAST", "RandomState", "StepCheckpoint", "check_resume", "checkpoint_dir", "last_checkpoint"]
