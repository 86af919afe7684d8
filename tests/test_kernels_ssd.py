"""Mamba-2 SSD: the chunked reference equals the step-by-step recurrence, and the Triton kernels
(run by Triton's CPU interpreter when there is no GPU) equal the reference, values and gradients."""

from __future__ import annotations

import pytest
import torch
# kernel_checks (tests/) sets TRITON_INTERPRET on a machine without CUDA before anything imports triton
from kernel_checks import DEVICE, outputs_and_gradients, random_packing, requires_triton

from genoseq.kernels import (
    ssd_chunked_reference,
    ssd_recurrent_reference,
    ssd_scan,
    ssd_step,
    use_backend,
)


def make_inputs(
    batch=2,
    length=37,
    nheads=4,
    headdim=8,
    ngroups=2,
    dstate=16,
    *,
    gate=True,
    skip=True,
    initial=True,
    packed=False,
    dtype=torch.float32,
    device=DEVICE,
    seed=0,
):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    inputs = {
        "x": randn(batch, length, nheads, headdim),
        "dt": torch.nn.functional.softplus(randn(batch, length, nheads).float() - 1.0).to(dtype),
        "A": -torch.rand(nheads, generator=g).add(0.5).to(device),
        "B": randn(batch, length, ngroups, dstate, scale=0.5),
        "C": randn(batch, length, ngroups, dstate, scale=0.5),
        "D": torch.randn(nheads, generator=g).to(device) if skip else None,
        "z": randn(batch, length, nheads, headdim) if gate else None,
        "initial_state": torch.randn(batch, nheads, headdim, dstate, generator=g).to(device) if initial else None,
        "seq_idx": None,
    }
    if packed:
        inputs["seq_idx"] = random_packing(batch, length, 3, g).to(device)
    return inputs


def assert_close(actual, expected, atol=1e-4, rtol=1e-4):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


# --- the chunked reference is exact --------------------------------------------------------


@pytest.mark.parametrize("length,chunk_size", [(37, 8), (32, 8), (8, 8), (5, 16), (1, 4), (50, 16)])
@pytest.mark.parametrize("packed", [False, True])
def test_chunked_reference_equals_recurrence(length, chunk_size, packed):
    if packed and length < 4:
        pytest.skip("too short to pack")
    inputs = make_inputs(length=length, packed=packed, device="cpu", dtype=torch.float64)
    inputs["A"], inputs["D"], inputs["initial_state"] = (
        inputs["A"].double(), inputs["D"].double(), inputs["initial_state"].double()
    )
    y, state = ssd_chunked_reference(**inputs, chunk_size=chunk_size, return_final_state=True)
    y_ref, state_ref = ssd_recurrent_reference(**inputs, return_final_state=True)
    assert y.shape == inputs["x"].shape and state.shape == (2, 4, 8, 16)
    assert_close(y, y_ref.to(y.dtype), atol=1e-10, rtol=1e-10)
    assert_close(state, state_ref, atol=1e-10, rtol=1e-10)


def test_chunked_reference_without_optional_inputs():
    inputs = make_inputs(gate=False, skip=False, initial=False, device="cpu")
    y, state = ssd_chunked_reference(**inputs, chunk_size=16)
    assert state is None
    y_ref, _ = ssd_recurrent_reference(**inputs)
    assert_close(y, y_ref)


def test_state_resets_at_sequence_boundary():
    """Changing anything in the first packed sequence leaves the second one untouched."""
    inputs = make_inputs(length=24, device="cpu")
    inputs["seq_idx"] = torch.tensor([[0] * 10 + [1] * 14] * 2, dtype=torch.int32)
    y1, s1 = ssd_chunked_reference(**inputs, chunk_size=8, return_final_state=True)
    inputs["x"] = inputs["x"].clone()
    inputs["x"][:, :10] += 5.0
    inputs["initial_state"] = inputs["initial_state"] * 3
    y2, s2 = ssd_chunked_reference(**inputs, chunk_size=8, return_final_state=True)
    assert not torch.allclose(y1[:, :10], y2[:, :10])
    assert_close(y1[:, 10:], y2[:, 10:])
    assert_close(s1, s2)


def test_seq_idx_is_about_changes_not_values():
    inputs = make_inputs(length=20, device="cpu")
    inputs["seq_idx"] = torch.tensor([[4] * 7 + [2] * 6 + [4] * 7] * 2, dtype=torch.int32)
    y1, _ = ssd_chunked_reference(**inputs, chunk_size=8)
    inputs["seq_idx"] = torch.tensor([[0] * 7 + [1] * 6 + [2] * 7] * 2, dtype=torch.int32)
    y2, _ = ssd_chunked_reference(**inputs, chunk_size=8)
    y3, _ = ssd_recurrent_reference(**inputs)
    assert_close(y1, y2)
    assert_close(y1, y3)


def test_packed_equals_each_sequence_alone():
    lengths = [9, 16, 3, 12]
    inputs = make_inputs(batch=1, length=sum(lengths), initial=False, device="cpu")
    inputs["seq_idx"] = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))[None].int()
    y_packed, state_packed = ssd_chunked_reference(**inputs, chunk_size=8, return_final_state=True)
    start = 0
    for n in lengths:
        alone = {k: (v[:, start : start + n] if k in ("x", "dt", "B", "C", "z") else v) for k, v in inputs.items()}
        alone["seq_idx"] = None
        y_alone, state_alone = ssd_chunked_reference(**alone, chunk_size=8, return_final_state=True)
        assert_close(y_packed[:, start : start + n], y_alone)
        start += n
    assert_close(state_packed, state_alone)


def test_split_sequence_with_carried_state():
    """Running a long sequence in two calls, carrying the final state, equals one call."""
    inputs = make_inputs(length=40, device="cpu")
    y_full, s_full = ssd_chunked_reference(**inputs, chunk_size=8, return_final_state=True)
    first = {k: (v[:, :23] if k in ("x", "dt", "B", "C", "z") else v) for k, v in inputs.items()}
    second = {k: (v[:, 23:] if k in ("x", "dt", "B", "C", "z") else v) for k, v in inputs.items()}
    y1, s1 = ssd_chunked_reference(**first, chunk_size=8, return_final_state=True)
    second["initial_state"] = s1
    y2, s2 = ssd_chunked_reference(**second, chunk_size=8, return_final_state=True)
    assert_close(torch.cat([y1, y2], dim=1), y_full)
    assert_close(s2, s_full)


def test_step_matches_scan_for_decoding():
    inputs = make_inputs(length=6, device="cpu")
    y_scan, state_scan = ssd_scan(**inputs, chunk_size=4, return_final_state=True, backend="reference")
    state = inputs["initial_state"].clone()
    for t in range(6):
        y_t, state = ssd_step(
            state, inputs["x"][:, t], inputs["dt"][:, t], inputs["A"], inputs["B"][:, t], inputs["C"][:, t],
            D=inputs["D"], z_t=inputs["z"][:, t],
        )
        assert_close(y_t, y_scan[:, t])
    assert_close(state, state_scan)


def test_low_precision_inputs_accumulate_in_fp32():
    inputs32 = make_inputs(length=33, device="cpu")
    inputs16 = {k: (v.to(torch.bfloat16) if k in ("x", "dt", "B", "C", "z") else v) for k, v in inputs32.items()}
    y16, s16 = ssd_chunked_reference(**inputs16, chunk_size=16, return_final_state=True)
    assert y16.dtype == torch.bfloat16 and s16.dtype == torch.float32
    rounded = {k: (v.to(torch.bfloat16).float() if k in ("x", "dt", "B", "C", "z") else v) for k, v in inputs32.items()}
    y32, s32 = ssd_chunked_reference(**rounded, chunk_size=16, return_final_state=True)
    assert_close(y16.float(), y32, atol=2e-2, rtol=2e-2)
    assert_close(s16, s32, atol=1e-4, rtol=1e-4)


def test_reference_gradients_match_recurrence():
    inputs = make_inputs(length=13, packed=True, device="cpu", dtype=torch.float64)
    for k in ("A", "D", "initial_state"):
        inputs[k] = inputs[k].double()
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if v is not None and v.is_floating_point()}
    grads = []
    for fn in (ssd_chunked_reference, ssd_recurrent_reference):
        args = {**inputs, **leaves}
        y, s = fn(**args, chunk_size=4, return_final_state=True)
        w = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
        loss = (y * w).sum() + (s * s).sum()
        grads.append(torch.autograd.grad(loss, list(leaves.values())))
    for name, g1, g2 in zip(leaves, *grads):
        torch.testing.assert_close(g1, g2, atol=1e-9, rtol=1e-9, msg=lambda m, name=name: f"grad of {name}: {m}")


def test_bad_shapes_raise():
    inputs = make_inputs(device="cpu")
    inputs["A"] = inputs["A"][:3]
    with pytest.raises(ValueError, match="A must have shape"):
        ssd_scan(**inputs)
    inputs = make_inputs(device="cpu", ngroups=3, nheads=4)
    with pytest.raises(ValueError, match="must divide"):
        ssd_scan(**inputs)


def test_backend_selection(monkeypatch):
    from genoseq.kernels import resolve_backend

    cpu = torch.zeros(1)
    monkeypatch.delenv("GENOSEQ_KERNELS", raising=False)
    assert resolve_backend(None, cpu) == "reference"
    monkeypatch.setenv("GENOSEQ_KERNELS", "reference")
    assert resolve_backend(None, cpu) == "reference"
    monkeypatch.setenv("GENOSEQ_KERNELS", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        resolve_backend(None, cpu)
    monkeypatch.setenv("GENOSEQ_KERNELS", "auto")
    with use_backend("reference"):
        assert resolve_backend(None, cpu) == "reference"
        assert resolve_backend("auto", cpu) == "reference"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA"):
        resolve_backend("triton", cpu)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("triton", cpu) == "triton"


# --- the Triton kernels equal the reference ------------------------------------------------

def forward_backward(inputs, backend, chunk_size):
    """Outputs and gradients of a loss touching y and the final state, for every float input."""
    return outputs_and_gradients(ssd_scan, inputs, lambda state: (state * state.detach().sin()).sum(),
                                 chunk_size=chunk_size, backend=backend)


@requires_triton
@pytest.mark.parametrize(
    "case",
    [
        dict(length=37, packed=True),  # ragged, packed, initial state, D, z, 2 heads per group
        dict(length=32, gate=False, skip=False, initial=False, ngroups=4),  # whole chunks, nothing optional
        dict(length=5, batch=1, nheads=2, ngroups=1),  # shorter than a chunk
        dict(length=48, batch=1, nheads=2, ngroups=1, packed=True, headdim=20, dstate=24),  # non-power-of-2 dims
    ],
    ids=["ragged-packed-all-options", "exact-chunks-plain", "short", "odd-dims"],
)
def test_triton_matches_reference(case):
    inputs = make_inputs(**case)
    y_ref, s_ref, g_ref = forward_backward(inputs, "reference", 16)
    y, s, g = forward_backward(inputs, "triton", 16)
    assert_close(y, y_ref)
    assert_close(s, s_ref)
    assert g.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], atol=2e-4, rtol=2e-4, msg=lambda m, n=name: f"grad of {n}: {m}")


@requires_triton
def test_triton_packed_equals_each_sequence_alone():
    lengths = [20, 16, 3]  # boundaries inside a chunk and exactly on one (chunk 16)
    inputs = make_inputs(batch=1, nheads=2, ngroups=1, length=sum(lengths), initial=False)
    inputs["seq_idx"] = torch.repeat_interleave(torch.arange(3), torch.tensor(lengths))[None].int().to(DEVICE)
    y_packed, state_packed = ssd_scan(**inputs, chunk_size=16, return_final_state=True, backend="triton")
    start = 0
    for n in lengths:
        alone = {k: (v[:, start : start + n] if k in ("x", "dt", "B", "C", "z") else v) for k, v in inputs.items()}
        alone["seq_idx"] = None
        y_alone, state_alone = ssd_scan(**alone, chunk_size=16, return_final_state=True, backend="triton")
        assert_close(y_packed[:, start : start + n], y_alone)
        start += n
    assert_close(state_packed, state_alone)


@requires_triton
def test_triton_rejects_bad_chunk_size():
    with pytest.raises(ValueError, match="power-of-two"):
        ssd_scan(**make_inputs(length=8), chunk_size=12, backend="triton")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_half_precision_on_gpu(dtype):
    """Long sequences in half precision: fp32 accumulation keeps the kernel close to the reference."""
    inputs = make_inputs(batch=2, length=1000, nheads=8, headdim=64, ngroups=2, dstate=64, packed=True, dtype=dtype)
    y_ref, s_ref, g_ref = forward_backward(inputs, "reference", 64)
    y, s, g = forward_backward(inputs, "triton", 64)
    assert y.dtype == dtype and s.dtype == torch.float32
    torch.testing.assert_close(y.float(), y_ref.float(), atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(s, s_ref, atol=5e-2, rtol=5e-2)
    for name in g_ref:
        scale = g_ref[name].float().abs().max().clamp_min(1.0)
        assert (g[name].float() - g_ref[name].float()).abs().max() / scale < 5e-2, name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_backend_is_triton_on_gpu(monkeypatch):
    from genoseq.kernels import resolve_backend

    monkeypatch.delenv("GENOSEQ_KERNELS", raising=False)
    assert resolve_backend(None, torch.zeros(1, device="cuda")) == "triton"


@requires_triton
def test_triton_bfloat16_inputs():
    """bf16 loads/stores with float32 accumulation stay within bf16 rounding of the reference."""
    inputs = make_inputs(length=20, batch=1, nheads=2, ngroups=1, packed=True, dtype=torch.bfloat16)
    y_ref, s_ref, g_ref = forward_backward(inputs, "reference", 16)
    y, s, g = forward_backward(inputs, "triton", 16)
    assert y.dtype == torch.bfloat16 and s.dtype == torch.float32
    torch.testing.assert_close(y.float(), y_ref.float(), atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(s, s_ref, atol=2e-2, rtol=2e-2)
    for name in g_ref:
        error = (g[name].float() - g_ref[name].float()).abs().max() / g_ref[name].float().abs().max()
        assert error < 5e-2, f"grad of {name}: relative error {error:.3g}"
