"""Kill a training job with SIGKILL at a chosen epoch, for the resume tests.

The job runs in a child process that sends itself SIGKILL when its ``epoch``-th epoch starts
(after the previous epoch's checkpoint): what an out-of-memory kill or a scheduler's hard limit
does, with no exception, no ``finally`` and no cleanup, at a point the test can name exactly.
The child uses the test process's torch thread count, so its arithmetic is the parent's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

CHILD = """
import importlib, json, os, signal, sys
import torch
from genoseq.models.resume import RandomState
target, epoch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
args, kwargs = json.loads(sys.argv[4]), json.loads(sys.argv[5])
torch.set_num_threads(threads)

def die(self, trainer, pl_module):
    if trainer.current_epoch == epoch:
        os.kill(os.getpid(), signal.SIGKILL)

RandomState.on_train_epoch_start = die
module, name = target.rsplit(".", 1)
getattr(importlib.import_module(module), name)(*args, **kwargs)
"""


def sigkill_at_epoch(target: str, args: list, kwargs: dict, epoch: int, log: Path) -> None:
    """Run ``target`` (``"package.module.function"``) with ``args`` and ``kwargs`` (JSON-able) in a
    child process killed by SIGKILL as epoch ``epoch`` (0-based) starts; fail if it ends otherwise."""
    with open(log, "w") as sink:
        job = subprocess.run([sys.executable, "-c", CHILD, target, str(epoch), str(torch.get_num_threads()),
                              json.dumps([str(a) for a in args]), json.dumps(kwargs)],
                             env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
                             stdout=sink, stderr=sink, timeout=600)
    assert job.returncode == -signal.SIGKILL, f"exit {job.returncode}, not SIGKILL: {log.read_text()[-3000:]}"
