"""Causal depthwise conv: the reference against torch's own conv1d and against the step form, and
the Triton kernels (CPU interpreter when there is no GPU) against the reference."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():  # must precede the first import of the Triton kernel modules
    os.environ.setdefault("TRITON_INTERPRET", "1")

from genoseq.kernels import causal_conv1d, causal_conv1d_reference, causal_conv1d_step  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


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
        seq_idx = torch.zeros(batch, length, dtype=torch.int32)
        for row in range(batch):
            cuts = torch.randperm(length - 1, generator=g)[:4] + 1
            for c in cuts.tolist():
                seq_idx[row, c:] += 1
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
