"""What the kernel tests share: the device, whether the Triton kernels can run here (on CUDA,
or in Triton's CPU interpreter) and the outputs and gradients of an op."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    # Triton reads TRITON_INTERPRET when it is first imported (its own tl.* helpers are jit
    # functions), so this must run before anything imports triton.
    os.environ.setdefault("TRITON_INTERPRET", "1")
try:
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
except ImportError:  # no triton on this platform: only the reference tests run
    tl = InterpretedFunction = None

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

requires_triton = pytest.mark.skipif(
    tl is None or (DEVICE == "cpu" and not isinstance(tl.cumsum, InterpretedFunction)),
    reason="needs CUDA, or triton imported under TRITON_INTERPRET=1 (run the kernel tests in their own process)",
)


def random_packing(batch: int, length: int, cuts: int, generator: torch.Generator) -> torch.Tensor:
    """Packed-sequence ids (batch, length), int32: each row cut at ``cuts`` random points (some
    mid-chunk, some on chunk boundaries)."""
    seq_idx = torch.zeros(batch, length, dtype=torch.int32)
    for row in range(batch):
        for c in (torch.randperm(length - 1, generator=generator)[:cuts] + 1).tolist():
            seq_idx[row, c:] += 1
    return seq_idx


def outputs_and_gradients(op, inputs: dict, state_loss, **options):
    """``op``'s output and final state, and the gradients of a loss touching both (``state_loss``
    of the state) with respect to every floating-point input."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if v is not None and v.is_floating_point()}
    y, state = op(**{**inputs, **leaves}, return_final_state=True, **options)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.device)
    loss = (y.float() * weights).sum() + state_loss(state)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return y, state, dict(zip(leaves, grads))
