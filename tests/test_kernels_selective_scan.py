"""Mamba-1 selective scan: both references equal a literal per-step loop written from the
equations, the chunked one has exact gradients, and the Triton kernel (run by Triton's CPU
interpreter when there is no GPU) equals the reference, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
# kernel_checks (tests/) sets TRITON_INTERPRET on a machine without CUDA before anything imports triton
from kernel_checks import DEVICE, requires_triton

from genoseq.kernels import (
    selective_scan,
    selective_scan_chunked_reference,
    selective_scan_recurrent_reference,
)


def make_inputs(batch=2, dim=6, length=23, dstate=5, *, groups=None, c_groups="same", skip=True, gate=True,
                bias=True, softplus=True, dtype=torch.float32, device=DEVICE, seed=0):
    """Random inputs; ``groups=None`` gives B (and C) the 3-D shape (batch, dstate, length)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    def bc(ngroups):
        shape = (batch, dstate, length) if ngroups is None else (batch, ngroups, dstate, length)
        return randn(*shape, scale=0.7)

    return {
        "u": randn(batch, dim, length),
        # raw step sizes: softplus makes them positive; without it they must already be
        "delta": randn(batch, dim, length, scale=0.5) if softplus else randn(batch, dim, length).abs() * 0.5,
        "A": -torch.rand(dim, dstate, generator=g).add(0.3).to(device=device, dtype=dtype),
        "B": bc(groups),
        "C": bc(groups if c_groups == "same" else c_groups),
        "D": randn(dim) if skip else None,
        "z": randn(batch, dim, length) if gate else None,
        "delta_bias": randn(dim, scale=0.5) if bias else None,
        "delta_softplus": softplus,
    }


def literal_loop(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The equations, one batch row, channel and step at a time, in float64."""
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    batch, dim, L = u.shape
    y = torch.zeros(batch, dim, L, dtype=torch.float64)
    for b in range(batch):
        for d in range(dim):
            h = torch.zeros(A.shape[1], dtype=torch.float64)
            for t in range(L):
                dt = delta[b, d, t] + (delta_bias[d].double() if delta_bias is not None else 0.0)
                dt = F.softplus(dt) if delta_softplus else dt
                B_t = B[b, :, t] if B.dim() == 3 else B[b, d // (dim // B.shape[1]), :, t]
                C_t = C[b, :, t] if C.dim() == 3 else C[b, d // (dim // C.shape[1]), :, t]
                h = torch.exp(dt * A[d]) * h + dt * u[b, d, t] * B_t
                out = (h * C_t).sum() + (D[d].double() * u[b, d, t] if D is not None else 0.0)
                y[b, d, t] = out * F.silu(z[b, d, t].double()) if z is not None else out
    return y


def assert_close(actual, expected, atol=1e-4, rtol=1e-4):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def float64(inputs):
    return {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


# --- the references are exact -----------------------------------------------------------------

CASES = {
    "shared-BC-all-options": dict(),
    "groups-2": dict(groups=2),
    "groups-3-plain": dict(groups=3, skip=False, gate=False, bias=False, softplus=False),
    "B-shared-C-grouped": dict(groups=None, c_groups=2, skip=False),
    "bias-no-softplus": dict(groups=6, softplus=False, gate=False),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_references_equal_literal_loop(case):
    inputs = float64(make_inputs(batch=2, dim=6, length=11, device="cpu", **case))
    expected = literal_loop(**inputs)
    assert_close(selective_scan_recurrent_reference(**inputs), expected, atol=1e-12, rtol=1e-12)
    assert_close(selective_scan_chunked_reference(**inputs), expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("length,chunk_size", [(1, None), (7, 1), (30, 8), (32, 8), (50, None), (9, 64)])
def test_chunked_reference_equals_recurrence(length, chunk_size):
    inputs = float64(make_inputs(length=length, groups=3, device="cpu"))
    y = selective_scan_chunked_reference(**inputs, chunk_size=chunk_size)
    assert y.shape == inputs["u"].shape
    assert_close(y, selective_scan_recurrent_reference(**inputs), atol=1e-12, rtol=1e-12)


def test_chunked_reference_is_stable_under_strong_decay():
    """Decays down to exp(-80) a step underflow to zero without overflowing anywhere."""
    inputs = make_inputs(length=64, device="cpu")
    inputs["A"] = inputs["A"] * 100
    y = selective_scan_chunked_reference(**inputs, chunk_size=16)
    assert torch.isfinite(y).all()
    assert_close(y, selective_scan_recurrent_reference(**inputs))


def test_public_function_on_cpu_is_the_reference_and_keeps_the_dtype():
    inputs = make_inputs(device="cpu")
    assert_close(selective_scan(**inputs), selective_scan_recurrent_reference(**inputs))
    assert_close(selective_scan(**inputs, backend="reference"), selective_scan_chunked_reference(**inputs), 0, 0)


def test_low_precision_inputs_accumulate_in_fp32():
    inputs32 = make_inputs(length=40, groups=2, device="cpu")
    inputs16 = {k: (v.to(torch.bfloat16) if isinstance(v, torch.Tensor) and k != "A" else v) for k, v in inputs32.items()}
    y16 = selective_scan(**inputs16)
    assert y16.dtype == torch.bfloat16
    rounded = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in inputs16.items()}
    assert_close(y16.float(), selective_scan(**rounded), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("case", [dict(), dict(groups=2, softplus=False, c_groups=None)], ids=["shared", "grouped"])
def test_reference_gradcheck(case):
    inputs = float64(make_inputs(batch=1, dim=4, length=6, dstate=3, device="cpu", **case))
    names = [k for k, v in inputs.items() if isinstance(v, torch.Tensor)]
    leaves = tuple(inputs[k].clone().requires_grad_(True) for k in names)

    def fn(*tensors):
        return selective_scan(**{**inputs, **dict(zip(names, tensors))}, backend="reference")

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-8)


def test_bad_inputs_raise():
    def call(**changes):
        selective_scan(**{**make_inputs(device="cpu", groups=2), **changes})

    with pytest.raises(ValueError, match="A must be"):
        call(A=torch.zeros(5, 5))
    with pytest.raises(ValueError, match="delta must have shape"):
        call(delta=torch.zeros(2, 6, 22))
    with pytest.raises(ValueError, match="must divide dim"):
        call(B=torch.zeros(2, 4, 5, 23))
    with pytest.raises(ValueError, match="dstate 4 but A has 5"):
        call(C=torch.zeros(2, 4, 23))
    with pytest.raises(ValueError, match=r"B must be \(batch, dstate, length\)"):
        call(B=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="u must be"):
        call(u=torch.zeros(6, 23))
    with pytest.raises(ValueError, match="D must have shape"):
        call(D=torch.zeros(5))
    with pytest.raises(TypeError, match="A must be a real floating-point"):
        call(A=torch.zeros(6, 5, dtype=torch.complex64))
    with pytest.raises(TypeError, match="u must be a real floating-point"):
        call(u=torch.zeros(2, 6, 23, dtype=torch.int64))


# --- the Triton kernel equals the reference -------------------------------------------------


def forward_backward(inputs, backend):
    """``y`` and the gradients of a weighted sum of it with respect to every float input."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    y = selective_scan(**{**inputs, **leaves}, backend=backend)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.device)
    grads = torch.autograd.grad((y.float() * weights).sum(), list(leaves.values()))
    return y, dict(zip(leaves, grads))


TRITON_CASES = {
    "shared-BC-all-options": dict(batch=2, dim=5, length=12),
    "groups-B3-C2-plain": dict(batch=1, dim=6, length=5, groups=3, c_groups=2, skip=False, gate=False,
                               bias=False, softplus=False),
    "one-step": dict(batch=1, dim=2, length=1, groups=2),
    "grouped-B-shared-C-skip-bias-no-gate": dict(batch=2, dim=4, length=17, groups=2, c_groups=None, gate=False,
                                                 softplus=False),
}


@requires_triton
@pytest.mark.parametrize("case", list(TRITON_CASES.values()), ids=list(TRITON_CASES))
def test_triton_matches_reference(case):
    inputs = make_inputs(**case)
    y_ref, g_ref = forward_backward(inputs, "reference")
    y, g = forward_backward(inputs, "triton")
    assert y.dtype == y_ref.dtype
    assert_close(y, y_ref)
    assert g.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], atol=2e-4, rtol=2e-4, msg=lambda m, n=name: f"grad of {n}: {m}")


@requires_triton
def test_triton_checkpoints_between_chunks(monkeypatch):
    """The backward recomputes each chunk from the state saved at its start: with 8-step chunks
    a 21-step sequence has three, the last one short."""
    from genoseq.kernels import selective_scan_triton

    monkeypatch.setattr(selective_scan_triton, "_CHUNK", 8)
    inputs = make_inputs(batch=1, dim=3, length=21, dstate=3)
    y_ref, g_ref = forward_backward(inputs, "reference")
    y, g = forward_backward(inputs, "triton")
    assert_close(y, y_ref)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], atol=2e-4, rtol=2e-4, msg=lambda m, n=name: f"grad of {n}: {m}")


@requires_triton
def test_triton_non_contiguous_inputs():
    """The Mamba-1 block passes its (batch, length, channels) activations transposed, as views."""
    inputs = make_inputs(batch=2, dim=4, length=9, dstate=3)
    strided = {k: (v.transpose(1, 2).contiguous().transpose(1, 2) if isinstance(v, torch.Tensor) and v.dim() == 3 else v)
               for k, v in inputs.items()}
    assert not strided["u"].is_contiguous() and not strided["B"].is_contiguous()
    y_ref, g_ref = forward_backward(inputs, "reference")
    y, g = forward_backward(strided, "triton")
    assert_close(y, y_ref)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], atol=2e-4, rtol=2e-4, msg=lambda m, n=name: f"grad of {n}: {m}")


@requires_triton
def test_triton_bfloat16_inputs():
    """bf16 loads and stores with float32 accumulation stay within bf16 rounding of the reference."""
    inputs = make_inputs(batch=1, dim=4, length=10, groups=2)
    inputs = {k: (v.to(torch.bfloat16) if isinstance(v, torch.Tensor) and k != "A" else v) for k, v in inputs.items()}
    y_ref, g_ref = forward_backward(inputs, "reference")
    y, g = forward_backward(inputs, "triton")
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref.float(), atol=5e-2, rtol=5e-2)
    for name in g_ref:
        assert g[name].dtype == g_ref[name].dtype
        error = (g[name].float() - g_ref[name].float()).abs().max() / g_ref[name].float().abs().max()
        assert error < 5e-2, f"grad of {name}: relative error {error:.3g}"


@requires_triton
def test_triton_forward_without_gradients():
    inputs = make_inputs(batch=1, dim=4, length=12, groups=4)
    with torch.no_grad():
        assert_close(selective_scan(**inputs, backend="triton"), selective_scan(**inputs, backend="reference"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_triton_long_sequence_on_gpu(dtype):
    """Thousands of steps across many checkpoints, in the shapes of a Mamba-1 layer."""
    inputs = make_inputs(batch=2, dim=64, length=3000, dstate=16, groups=None, dtype=dtype)
    y_ref, g_ref = forward_backward(inputs, "reference")
    y, g = forward_backward(inputs, "triton")
    torch.testing.assert_close(y.float(), y_ref.float(), atol=5e-2, rtol=5e-2)
    for name in g_ref:
        scale = g_ref[name].float().abs().max().clamp_min(1.0)
        assert (g[name].float() - g_ref[name].float()).abs().max() / scale < 5e-2, name
