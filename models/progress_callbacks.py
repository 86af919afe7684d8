"""Training progress for every job that trains: one bar on a terminal, plain lines in a log.

:class:`TrainingProgress` is the Lightning progress bar of ``pretrain``, ``classify fit``,
``generate fit`` and ``align train``. It counts optimiser steps against the run's total (no
"epoch 1/-2"), shows the metrics that matter (loss, bits/base, tokens/s, the last validation)
and the ETA; in ``lines`` mode (see :mod:`genoseq.progress`) it writes a line such as::

    [pretrain] step=250/2000 pct=12.5 loss=1.912 bpb=1.898 tok/s=13.2k elapsed=0:02:35 eta=0:18:05

every ``GENOSEQ_PROGRESS_INTERVAL`` seconds, one ``val`` line after each validation, and a
last line when training ends. Validation runs draw no bar of their own.
"""

from __future__ import annotations

import math
import time

from lightning.pytorch.callbacks.progress import ProgressBar

from genoseq.progress import emit_line, format_count, format_duration, line_interval, resolve_progress

# (shown name, logged metric): the first ones found are shown
TRAIN_FIELDS = (("loss", "train/loss"), ("bpb", "train/bits_per_base"), ("acc", "train/acc"))
VAL_FIELDS = (("val_loss", "val/loss"), ("val_bpb", "val/bits_per_base"), ("val_acc", "val/acc"))


class TrainingProgress(ProgressBar):
    """Lightning progress bar over optimiser steps, as a tqdm bar or as plain lines."""

    def __init__(self, job: str, mode: bool | str | None = "auto", interval: float | None = None) -> None:
        super().__init__()
        self.job = job
        self.mode = resolve_progress(mode)
        self.interval = line_interval() if interval is None else interval
        self._enabled = self.mode != "none"
        self._bar = None
        self._tokens = 0
        self._started = self._last_line = 0.0
        self._total: float = math.inf

    # ------------------------------------------------------------------ ProgressBar API
    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = self.mode != "none"

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer, pl_module) -> None:
        self._started = self._last_line = time.monotonic()
        self._tokens = 0
        self._step0 = trainer.global_step
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else trainer.estimated_stepping_batches
        self._total = float(total) if total and math.isfinite(total) else math.inf
        if not self._enabled:
            return
        if self.mode == "bar":
            from tqdm.auto import tqdm

            total_steps = None if math.isinf(self._total) else int(self._total)
            self._bar = tqdm(total=total_steps, initial=trainer.global_step, desc=self.job, unit="step", dynamic_ncols=True)
        else:
            emit_line(f"[{self.job}] start step={trainer.global_step}/{self._fmt_total()}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        ids = batch.get("input_ids") if isinstance(batch, dict) else None
        if ids is not None:
            self._tokens += int(ids.numel())
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.n = trainer.global_step
            self._bar.set_postfix(self._fields(trainer, TRAIN_FIELDS + VAL_FIELDS, rate=True), refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._write(trainer, "")

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._enabled or trainer.sanity_checking or trainer.state.fn != "fit":
            return  # only the validations inside training (not trainer.validate)
        if self._bar is None:
            fields = self._fields(trainer, VAL_FIELDS)
            if fields:
                emit_line(f"[{self.job}] val step={trainer.global_step} " + " ".join(f"{k}={v}" for k, v in fields.items()))

    def on_train_end(self, trainer, pl_module) -> None:
        if self._bar is not None:
            self._bar.n = trainer.global_step
            self._bar.refresh()
            self._bar.close()
            self._bar = None
        elif self._enabled:
            self._write(trainer, "finished")

    # ------------------------------------------------------------------ helpers
    def _fmt_total(self) -> str:
        return "?" if math.isinf(self._total) else str(int(self._total))

    def _fields(self, trainer, names, rate: bool = False) -> dict[str, str]:
        metrics = trainer.callback_metrics
        out: dict[str, str] = {}
        for shown, key in names:
            value = metrics.get(key)
            if value is not None:
                out[shown] = f"{float(value):.4g}"
        if rate and self._tokens:
            elapsed = time.monotonic() - self._started
            if elapsed > 0:
                out["tok/s"] = format_count(self._tokens / elapsed)
        return out

    def _write(self, trainer, tag: str) -> None:
        step = trainer.global_step
        elapsed = time.monotonic() - self._started
        parts = [f"[{self.job}]"] + ([tag] if tag else []) + [f"step={step}/{self._fmt_total()}"]
        if not math.isinf(self._total) and self._total > 0:
            parts.append(f"pct={100.0 * step / self._total:.1f}")
        parts += [f"{k}={v}" for k, v in self._fields(trainer, TRAIN_FIELDS, rate=True).items()]
        parts.append(f"elapsed={format_duration(elapsed)}")
        done = step - self._step0
        if not tag and done > 0 and not math.isinf(self._total):
            parts.append(f"eta={format_duration(elapsed / done * (self._total - step))}")
        emit_line(" ".join(parts))


def training_callbacks(job: str, progress: bool | str | None) -> tuple[list, bool]:
    """``(callbacks, enable_progress_bar)`` for a Trainer: the :class:`TrainingProgress` of the
    chosen mode, or none at all for ``none``."""
    mode = resolve_progress(progress)
    if mode == "none":
        return [], False
    return [TrainingProgress(job, mode)], True
