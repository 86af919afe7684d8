"""Causal depthwise conv: the reference against torch's own conv1d and against the step form, and
the Triton kernels (CPU interpreter when there is no GPU) against the reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
# kernel_checks (tests/) sets TRITON_INTERPRET on a machine without CUDA before anything imports triton
from kernel_checks import DEVICE, outputs_and_gradients, random_packing, requires_triton

from genoseq.kernels import causal_conv1d, causal_conv1d_reference, causal_conv1d_step


def make_inputs(batch=2, length=29, dim=12, width=4, *, bias=True, initial=True, packed=False,
                dtype=torch.float32, device=DEVICE, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "x": torch.randn(batch, length, dim, generator=g).to(device, dtype),
        "weight": torch.randn(dim, width, generator=g).to(device, dtype),
        "bias": torch.randn(dim, generator=g).to(device, dtype) if bias else None,
        "initial_state": torch.randn(batch, dim, width - 1, generator=g).to(device, dtype) if initial else None,
        "seq_idx": None,
    }
    if packed:
        seq_idx = random_packing(batch, length, 4, g)
        # a sequence of length 1 right at the end exercises the final-state masking
        seq_idx[0, -1] = seq_idx[0, -2] + 1
        inputs["seq_idx"] = seq_idx.to(device)
    return inputs


def torch_conv(x, weight, bias, activation):
    """``F.conv1d`` with left padding: the textbook causal depthwise conv (no state, no packing)."""
    width = weight.shape[1]
    y = F.conv1d(F.pad(x.transpose(1, 2), (width - 1, 0)), weight[:, None, :], bias, groups=x.shape[2])
    y = y.transpose(1, 2)
    return F.silu(y) if activation == "silu" else y


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_reference_equals_torch_conv1d(width, activation):
    inputs = make_inputs(width=width, initial=False, device="cpu")
    y = causal_conv1d_reference(inputs["x"], inputs["weight"], inputs["bias"], activation)[0]
    torch.testing.assert_close(y, torch_conv(inputs["x"], inputs["weight"], inputs["bias"], activation))


@pytest.mark.parametrize("width", [2, 4])
@pytest.mark.parametrize("packed", [False, True])
def test_reference_equals_steps(width, packed):
    """Feeding one input at a time through ``causal_conv1d_step`` gives the same outputs and state."""
    inputs = make_inputs(width=width, packed=packed, device="cpu")
    y, final = causal_conv1d(**inputs, activation="silu", return_final_state=True, backend="reference")
    state = inputs["initial_state"]
    for t in range(inputs["x"].shape[1]):
        if packed and t > 0 and (inputs["seq_idx"][:, t] != inputs["seq_idx"][:, t - 1]).any():
            state = state * (inputs["seq_idx"][:, t] == inputs["seq_idx"][:, t - 1])[:, None, None]
        y_t, state = causal_conv1d_step(inputs["x"][:, t], state, inputs["weight"], inputs["bias"], "silu")
        torch.testing.assert_close(y_t, y[:, t])
    torch.testing.assert_close(state, final)


def test_packed_equals_each_sequence_alone():
    lengths = [5, 1, 9, 2]
    inputs = make_inputs(batch=1, length=sum(lengths), initial=False, device="cpu")
    seq_idx = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))[None].int()
    y, final = causal_conv1d(**{**inputs, "seq_idx": seq_idx}, return_final_state=True, backend="reference")
    start = 0
    for n in lengths:
        y_alone, final_alone = causal_conv1d(inputs["x"][:, start : start + n], inputs["weight"], inputs["bias"],
                                             return_final_state=True, backend="reference")
        torch.testing.assert_close(y[:, start : start + n], y_alone)
        start += n
    torch.testing.assert_close(final, final_alone)  # last sequence (length 2 < K-1 = 3): zero-padded


def test_split_sequence_with_carried_state():
    inputs = make_inputs(length=20, device="cpu")
    y, final = causal_conv1d(**inputs, return_final_state=True, backend="reference")
    y1, s1 = causal_conv1d(inputs["x"][:, :2], inputs["weight"], inputs["bias"],
                           initial_state=inputs["initial_state"], return_final_state=True, backend="reference")
    y2, s2 = causal_conv1d(inputs["x"][:, 2:], inputs["weight"], inputs["bias"], initial_state=s1,
                           return_final_state=True, backend="reference")
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y)
    torch.testing.assert_close(s2, final)


def test_low_precision_output_dtype():
    inputs = make_inputs(dtype=torch.bfloat16, device="cpu")
    y, state = causal_conv1d(**inputs, activation="silu", return_final_state=True, backend="reference")
    assert y.dtype == torch.bfloat16 and state.dtype == torch.bfloat16
    ref = causal_conv1d_reference(**{k: (v.float() if v is not None and v.is_floating_point() else v)
                                      for k, v in inputs.items()}, activation="silu")[0]
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=2e-2)


def test_bad_arguments_raise():
    inputs = make_inputs(device="cpu")
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(**inputs, activation="relu")
    with pytest.raises(ValueError, match="initial_state"):
        causal_conv1d(**{**inputs, "initial_state": inputs["initial_state"][..., :1]})


# --- the Triton kernels equal the reference ------------------------------------------------

def forward_backward(inputs, backend, activation):
    def state_loss(state):
        return (state.float() * state.detach().float().cos()).sum()

    return outputs_and_gradients(causal_conv1d, inputs, state_loss, activation=activation, backend=backend)


@requires_triton
@pytest.mark.parametrize(
    "width,activation,options",
    [
        (4, "silu", dict(packed=True)),
        (3, None, dict(packed=True, length=70)),  # two position tiles: boundaries across tiles
        (2, "silu", dict(bias=False, initial=False, dim=70)),  # ragged channel tiles
        (4, None, dict(length=2)),  # shorter than the kernel: the state is mostly the initial state
    ],
    ids=["k4-silu-packed", "k3-packed-two-tiles", "k2-plain-odd-channels", "k4-shorter-than-kernel"],
)
def test_triton_matches_reference(width, activation, options):
    inputs = make_inputs(width=width, **options)
    y_ref, s_ref, g_ref = forward_backward(inputs, "reference", activation)
    y, s, g = forward_backward(inputs, "triton", activation)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s, s_ref)
    assert g.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"grad of {n}: {m}")


@requires_triton
def test_triton_packed_equals_each_sequence_alone():
    lengths = [5, 1, 9, 2]
    inputs = make_inputs(batch=1, length=sum(lengths), initial=False)
    seq_idx = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))[None].int().to(DEVICE)
    y = causal_conv1d(**{**inputs, "seq_idx": seq_idx}, activation="silu", backend="triton")
    start = 0
    for n in lengths:
        alone = causal_conv1d(inputs["x"][:, start : start + n], inputs["weight"], inputs["bias"], "silu", backend="triton")
        torch.testing.assert_close(y[:, start : start + n], alone)
        start += n


@requires_triton
def test_triton_non_contiguous_input():
    """x as a channel slice of a wider projection (as in Mamba-2's in_proj output)."""
    inputs = make_inputs()
    wide = torch.randn(2, 29, 30, device=DEVICE)
    inputs["x"] = wide[..., 5:17]
    assert not inputs["x"].is_contiguous()
    y_ref, _, g_ref = forward_backward(inputs, "reference", "silu")
    y, _, g = forward_backward(inputs, "triton", "silu")
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(g["x"], g_ref["x"], atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_half_precision_on_gpu(dtype):
    inputs = make_inputs(batch=2, length=3000, dim=256, packed=True, dtype=dtype)
    y_ref, s_ref, g_ref = forward_backward(inputs, "reference", "silu")
    y, s, g = forward_backward(inputs, "triton", "silu")
    assert y.dtype == dtype
    torch.testing.assert_close(y, y_ref, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(s, s_ref)
    for name in g_ref:
        scale = g_ref[name].float().abs().max().clamp_min(1.0)
        assert (g[name].float() - g_ref[name].float()).abs().max() / scale < 2e-2, name


@requires_triton
def test_triton_bfloat16_inputs():
    inputs = make_inputs(packed=True, dtype=torch.bfloat16)
    y_ref, s_ref, g_ref = forward_backward(inputs, "reference", "silu")
    y, s, g = forward_backward(inputs, "triton", "silu")
    assert y.dtype == torch.bfloat16 and s.dtype == torch.bfloat16
    torch.testing.assert_close(y, y_ref, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(s, s_ref)
    for name in g_ref:
        error = (g[name].float() - g_ref[name].float()).abs().max() / g_ref[name].float().abs().max()
        assert error < 2e-2, f"grad of {name}: relative error {error:.3g}"
