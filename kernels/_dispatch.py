"""Backend selection shared by every dispatching function in ``genoseq.kernels``.

Each op exists twice: a readable PyTorch reference (any device, differentiable through plain
autograd) and a Triton kernel (CUDA, or CPU under ``TRITON_INTERPRET=1`` for testing). Which one
runs is decided, first match wins, by

1. the ``backend=`` argument of the op,
2. the innermost active :func:`use_backend` context manager,
3. the ``GENOSEQ_KERNELS`` environment variable (``reference``, ``triton`` or ``auto``),
4. ``auto``: Triton for CUDA tensors when Triton is importable, the reference otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator

import torch

BACKENDS = ("auto", "reference", "triton")
ENV_VAR = "GENOSEQ_KERNELS"

_context_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "genoseq_kernels_backend", default=None
)


def _check(name: str, source: str) -> str:
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r} from {source}; expected one of {BACKENDS}")
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run every kernel op in this block with backend ``name`` ("auto", "reference", "triton")."""
    token = _context_backend.set(_check(name, "use_backend()"))
    try:
        yield
    finally:
        _context_backend.reset(token)


@functools.cache
def triton_available() -> bool:
    """True when Triton imports (it is absent on macOS / Windows installs)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def resolve_backend(backend: str | None, *tensors: torch.Tensor | None) -> str:
    """Return "reference" or "triton" for an op on ``tensors``, following the module's rules."""
    if backend is not None:
        name = _check(backend, "the backend argument")
    elif _context_backend.get() is not None:
        name = _context_backend.get()
    elif os.environ.get(ENV_VAR):
        name = _check(os.environ[ENV_VAR], f"${ENV_VAR}")
    else:
        name = "auto"

    on_cuda = all(t.is_cuda for t in tensors if t is not None)
    if name == "auto":
        return "triton" if on_cuda and triton_available() else "reference"
    if name == "triton":
        if not triton_available():
            raise RuntimeError("the triton kernel backend was requested but triton is not installed")
        if not on_cuda and not triton_interpreting():
            raise RuntimeError(
                "the triton kernel backend needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU "
                "interpreter); use backend='reference' on CPU"
            )
    return name
