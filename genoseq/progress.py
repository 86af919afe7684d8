"""Progress of long jobs: one live bar on a terminal, plain lines in a log file.

Every long job reports through :class:`Progress` (work done: bases, variants, reads...) or, for
training, through :class:`genoseq.models.progress_callbacks.TrainingProgress`; both follow one choice:

=========  ===========================================================================
``bar``    a live tqdm bar (what a terminal shows)
``lines``  a plain line every ``GENOSEQ_PROGRESS_INTERVAL`` seconds (default 30), at each
           validation and at the end, e.g. ``[score] done=1.20M/5.47M bp pct=21.9
           rate=17.1k/s elapsed=0:01:10 eta=0:04:10``: ``key=value`` fields, no carriage
           returns or control characters, so a Snakemake or SLURM log stays readable
``none``   nothing
``auto``   ``bar`` when standard error is a terminal, ``lines`` otherwise (the default)
=========  ===========================================================================

``GENOSEQ_PROGRESS`` (``bar``, ``lines`` or ``none``) replaces ``auto`` for every job, e.g. in
a workflow's environment. ``True`` means ``auto`` and ``False`` means ``none``, so the older
``progress=False`` keeps working.

This module imports neither torch nor Lightning.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Literal, TextIO

from genoseq.errors import InputError

ProgressChoice = Literal["auto", "bar", "lines", "none"]
MODES = ("bar", "lines", "none")
DEFAULT_INTERVAL = 30.0

__all__ = ["MODES", "Progress", "ProgressChoice", "end_bar_line", "emit_line", "format_count", "format_duration", "line_interval", "resolve_progress"]


def resolve_progress(progress: bool | str | None = "auto", stream: TextIO | None = None) -> str:
    """``bar``, ``lines`` or ``none`` for a job's ``progress`` option (see the module docstring)."""
    if progress is None or progress is True or progress == "auto":
        env = os.environ.get("GENOSEQ_PROGRESS", "").strip().lower()
        if env in MODES:
            return env
        stream = stream or sys.stderr
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):  # a closed or odd stream
            tty = False
        return "bar" if tty else "lines"
    if progress is False:
        return "none"
    if isinstance(progress, str) and progress.lower() in MODES:
        return progress.lower()
    raise InputError(f"progress must be one of auto, bar, lines, none; got {progress!r}")


def line_interval() -> float:
    """Seconds between progress lines (``GENOSEQ_PROGRESS_INTERVAL``, default 30)."""
    raw = os.environ.get("GENOSEQ_PROGRESS_INTERVAL")
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"GENOSEQ_PROGRESS_INTERVAL must be a number of seconds, got {raw!r}") from None
    if not value >= 0:
        raise InputError(f"GENOSEQ_PROGRESS_INTERVAL must be >= 0, got {raw!r}")
    return value


def format_duration(seconds: float | None) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(max(0.0, seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_count(value: float) -> str:
    """A count with a metric suffix: 950, 12.3k, 5.47M, 1.20G."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}" if abs(value) < 100 * scale else f"{value / scale:.0f}{suffix}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


class Progress:
    """Work done by a long job, as a tqdm bar or as plain lines (see the module docstring).

    Used like tqdm::

        with Progress(total=n_bases, desc="score", unit="bp", mode=progress) as bar:
            bar.update(len(chunk))

    ``set_fields`` adds ``key=value`` fields (a bar shows them as its postfix).
    """

    def __init__(
        self,
        total: float | None = None,
        *,
        desc: str,
        unit: str = "it",
        mode: bool | str | None = "auto",
        stream: TextIO | None = None,
        interval: float | None = None,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.mode = resolve_progress(mode, self.stream)
        self.interval = line_interval() if interval is None else interval
        self.n = 0.0
        self.fields: dict[str, object] = {}
        self.started = time.monotonic()
        self._last_line = self.started
        self._closed = False
        self._bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=_BarStream(self.stream),
                             dynamic_ncols=True)

    # ------------------------------------------------------------------ tqdm-like API
    def update(self, n: float = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._last_line >= self.interval:
                self._last_line = now
                self.write_line()

    def set_fields(self, **fields) -> None:
        self.fields.update(fields)
        if self._bar is not None:
            self._bar.set_postfix({k: _plain(v) for k, v in self.fields.items()}, refresh=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines":
            self.write_line(final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._bar is not None:
            self._bar.close()
        self._closed = True

    # ------------------------------------------------------------------ lines
    def line(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.n / elapsed if elapsed > 0 else math.nan
        parts = [f"[{self.desc}]"]
        if self.total:
            parts.append(f"done={format_count(self.n)}/{format_count(self.total)} {self.unit}")
            parts.append(f"pct={100.0 * self.n / self.total:.1f}")
        else:
            parts.append(f"done={format_count(self.n)} {self.unit}")
        parts.append(f"rate={format_count(rate) if math.isfinite(rate) else '?'}/s")
        parts.append(f"elapsed={format_duration(elapsed)}")
        if final:
            parts.append("finished")
        elif self.total and rate > 0:
            parts.append(f"eta={format_duration((self.total - self.n) / rate)}")
        parts.extend(f"{k}={_plain(v)}" for k, v in self.fields.items())
        return " ".join(parts)

    def write_line(self, final: bool = False) -> None:
        emit_line(self.line(final), self.stream)


class _BarStream:
    """The stream a bar draws on, remembering whether its last write left a line open."""

    open: "_BarStream | None" = None  # the stream whose line a bar left unfinished, if any

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if text:
            _BarStream.open = None if text.endswith("\n") else self
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def end_bar_line() -> None:
    """End the line a progress bar left unfinished, so that what is printed next starts a line
    of its own. A job stopped by a signal (SIGTERM, Ctrl-C) can leave one: the signal may come
    while the bar is being drawn or made, where no ``with`` block closes it."""
    stream, _BarStream.open = _BarStream.open, None
    if stream is not None:
        stream.write("\n")
        stream.flush()


def emit_line(text: str, stream: TextIO | None = None) -> None:
    """Write one progress line (control characters removed) and flush, so a log shows it now."""
    stream = stream or sys.stderr
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    stream.write(clean + "\n")
    stream.flush()


def _plain(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace(" ", "_")
