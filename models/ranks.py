"""When one process of a multi-process training run dies, stop the others with a clear message.

A run over several processes on one machine (``--trainer.devices 2``, ``--trainer.context_parallel
2``) is started by Lightning's subprocess launcher: rank 0 is the command the user ran, ranks 1..N-1
its children. Without a watch, a child killed by the kernel (out of memory, ``kill -9``) takes
rank 0 down with a bare ``Killed`` and exit status 137 (Lightning's own observer), and a rank 0
that dies leaves its children waiting in a collective for the process group's timeout (30 minutes
for gloo). :class:`RankWatch` is a callback whose thread looks every ``period`` seconds:

* on rank 0, at the children: when one has ended with a non-zero status, it says which rank, how it
  ended and how to continue (``--resume true`` from the last checkpoint), stops the other children
  and exits with status 1. Lightning's own observer (every 5 seconds) would SIGKILL rank 0 at that
  point without a word; it logs the death first, and a handler on its logger runs the same check,
  so the message is never lost to that race;
* on the other ranks, at their parent: when rank 0 is gone, the rank says so and exits with status 1.

A rank waiting in a collective usually learns of the loss first, as an error from gloo or NCCL
("Connection reset by peer"); the callback gives the watch a moment to name the rank that died,
and otherwise says that the connection was lost, instead of a traceback.

Runs started otherwise (torchrun, SLURM: no parent-child relation between the ranks) are left to
the process group's timeout.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

import lightning as L

__all__ = ["RankWatch", "describe_exit"]


def describe_exit(returncode: int) -> str:
    """How a process ended, from its ``Popen.returncode``: ``exit status 3`` or ``killed by SIGKILL``
    (with the usual cause of that one)."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}" + (" (out of memory, or killed by hand)" if name == "SIGKILL" else "")


# Where Lightning's child-process observer logs a child's death, just before it kills every rank.
_OBSERVER_LOGGER = "lightning.fabric.strategies.launchers.subprocess_script"
_LOST_PEER = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Connection refused")


def _started_by_rank0(trainer: L.Trainer) -> bool:
    """Whether this rank is a child of rank 0 (Lightning's subprocess launcher), not of torchrun or
    a scheduler: then rank 0 is its parent process."""
    environment = getattr(trainer.strategy, "cluster_environment", None)
    return type(environment).__name__ == "LightningEnvironment" and os.getppid() != 1


class RankWatch(L.Callback):
    """Stop every rank of a single-machine multi-process run, with a message, when one dies.

    Args:
        job: The command's name, for the messages (``pretrain``).
        resume_hint: What continues the run, said after the failure (e.g. ``run the same command
            with --resume true``); None when the job cannot resume.
        period: Seconds between looks.
    """

    def __init__(self, job: str, resume_hint: str | None = None, period: float = 0.5) -> None:
        self.job, self.resume_hint, self.period = job, resume_hint, period
        self._stop, self._failed = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._restore = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.world_size < 2 or self._thread is not None:
            return
        children = getattr(getattr(trainer.strategy, "launcher", None), "procs", None)
        if trainer.global_rank == 0 and children:
            target, args = self._watch_children, (list(children),)
            self._hook(_OnObserverLog(lambda: self._check_children(args[0])))
        elif trainer.global_rank > 0 and _started_by_rank0(trainer):
            target, args = self._watch_parent, (os.getppid(), trainer.global_rank)
        else:
            return
        self._thread = threading.Thread(target=target, args=args, daemon=True, name=f"{self.job}-rank-watch")
        self._thread.start()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop.set()
        if self._restore is not None:
            self._restore()
            self._restore = None

    def _hook(self, handler: logging.Handler) -> None:
        """Put ``handler`` on the observer's logger, at INFO (its one record must reach it) and not
        passed up (the handler says it instead), until teardown."""
        log = logging.getLogger(_OBSERVER_LOGGER)
        level, propagate = log.level, log.propagate
        log.setLevel(logging.INFO)
        log.propagate = False
        log.addHandler(handler)

        def restore() -> None:
            log.removeHandler(handler)
            log.setLevel(level)
            log.propagate = propagate

        self._restore = restore

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._thread is None or not isinstance(exception, RuntimeError):
            return
        if not any(words in str(exception) for words in _LOST_PEER):
            return
        deadline = time.monotonic() + 3 * self.period + 1.0
        while time.monotonic() < deadline and self._thread.is_alive():  # the watch exits if it finds the cause
            time.sleep(self.period)
        first = str(exception).strip().splitlines()[0][:200]
        self._fail(f"rank {trainer.global_rank} lost its connection to another rank ({first}); it stops.")
        os._exit(1)

    def _watch_children(self, children: list) -> None:
        while not self._stop.wait(self.period):
            self._check_children(children)

    def _check_children(self, children: list) -> None:
        """Exit with a message (and stop the other children) if a child has failed."""
        for rank, proc in enumerate(children, start=1):
            if proc.poll():
                self._fail(f"rank {rank} of {len(children) + 1} (pid {proc.pid}) stopped: "
                           f"{describe_exit(proc.returncode)}; stopping the other ranks.")
                for other in children:
                    if other.poll() is None:
                        other.kill()
                os._exit(1)

    def _watch_parent(self, parent: int, rank: int) -> None:
        while not self._stop.wait(self.period):
            if os.getppid() != parent:
                self._fail(f"rank 0 (pid {parent}) is gone; rank {rank} stops too.")
                os._exit(1)

    def _fail(self, what: str) -> None:
        if self._failed.is_set():  # the watch and the observer's log can find the same death
            return
        self._failed.set()
        hint = f" The last checkpoint is kept: {self.resume_hint}." if self.resume_hint else ""
        print(f"\ngenoseq {self.job}: {what}{hint}", file=sys.stderr, flush=True)


class _OnObserverLog(logging.Handler):
    """Runs ``check`` on every record Lightning's child-process observer logs (it logs only a
    child's death), in the observer's thread, before the observer kills the ranks."""

    def __init__(self, check) -> None:
        super().__init__(level=logging.DEBUG)
        self.check = check

    def emit(self, record: logging.LogRecord) -> None:
        self.check()
