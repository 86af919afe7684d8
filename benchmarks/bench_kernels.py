"""Forward+backward time of each kernel against its PyTorch reference (and mamba_ssm if installed).

    python benchmarks/bench_kernels.py                 # CUDA: L = 8k and 64k, bf16
    python benchmarks/bench_kernels.py --lengths 512   # any device, any lengths
    python benchmarks/bench_kernels.py --kernels selective_scan --lengths 1024 8192

Prints one JSON document. On a machine without CUDA it still runs (small lengths, float32,
the reference only: Triton's CPU interpreter is a correctness tool, not a fast path) and says
``"device": "cpu"``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from genoseq.kernels import causal_conv1d, selective_scan, selective_scan_recurrent_reference, ssd_scan

KERNELS = ("ssd", "conv1d", "selective_scan")


def _time(fn: Callable[[], None], device: torch.device, warmup: int, reps: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def _fwd_bwd(op: Callable[..., object], tensors: dict[str, torch.Tensor], **kwargs) -> Callable[[], None]:
    leaves = {k: v.detach().requires_grad_(v.is_floating_point()) for k, v in tensors.items()}

    def run() -> None:
        out = op(**leaves, **kwargs)
        y = out[0] if isinstance(out, tuple) else out
        y.float().sum().backward()

    return run


def ssd_inputs(length: int, device: torch.device, dtype: torch.dtype, heads=16, headdim=64, groups=1, dstate=128):
    g = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    return {
        "x": randn(1, length, heads, headdim),
        "dt": torch.nn.functional.softplus(randn(1, length, heads).float() - 2).to(dtype),
        "A": -torch.rand(heads, generator=g).add(0.5).to(device),
        "B": randn(1, length, groups, dstate),
        "C": randn(1, length, groups, dstate),
        "D": torch.ones(heads, device=device),
        "z": randn(1, length, heads, headdim),
    }


def conv_inputs(length: int, device: torch.device, dtype: torch.dtype, dim=2048, width=4):
    g = torch.Generator(device="cpu").manual_seed(0)
    return {
        "x": torch.randn(1, length, dim, generator=g).to(device, dtype),
        "weight": torch.randn(dim, width, generator=g).to(device, dtype),
        "bias": torch.randn(dim, generator=g).to(device, dtype),
    }


def scan_inputs(length: int, device: torch.device, dtype: torch.dtype, dim=1536, dstate=16):
    """A Mamba-1 layer's selective scan (mamba-130m: d_inner 1536, d_state 16, B and C shared by
    all channels, A = -(1..N) as initialised)."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    return {
        "u": randn(1, dim, length),
        "delta": randn(1, dim, length),
        "A": -torch.arange(1, dstate + 1, dtype=torch.float32).repeat(dim, 1).to(device),
        "B": randn(1, dstate, length),
        "C": randn(1, dstate, length),
        "D": torch.ones(dim, device=device),
        "z": randn(1, dim, length),
        "delta_bias": (torch.rand(dim, generator=g) * 4 - 5).to(device),  # softplus(-5..-1)
    }


def _import_mamba_ssd():
    """``mamba_chunk_scan_combined`` from an installed mamba_ssm, or from its source folder in
    ``$GENOSEQ_MAMBA_SSM_SRC`` (a package stub skips ``mamba_ssm/__init__``, which imports the
    compiled CUDA extension; the Triton SSD needs none of it)."""
    import os
    import sys
    import types

    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

        return mamba_chunk_scan_combined
    except ImportError:
        src = os.environ.get("GENOSEQ_MAMBA_SSM_SRC")
        if not src:
            raise
        for name in list(sys.modules):
            if name == "mamba_ssm" or name.startswith("mamba_ssm."):
                del sys.modules[name]
        stub = types.ModuleType("mamba_ssm")
        stub.__path__ = [str(Path(src) / "mamba_ssm")]
        sys.modules["mamba_ssm"] = stub
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

        return mamba_chunk_scan_combined


def _mamba_ssm_ops() -> dict[str, Callable[..., object]]:
    """mamba_ssm's fused SSD and selective scan and the causal-conv1d package's conv, where installed."""
    ops = {}
    try:
        mamba_chunk_scan_combined = _import_mamba_ssd()

        def mamba_ssd(x, dt, A, B, C, D, z):
            return mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size=64, D=D, z=z)

        ops["ssd"] = mamba_ssd
    except ImportError:
        pass
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        def mamba_selective_scan(u, delta, A, B, C, D, z, delta_bias):
            return selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)

        ops["selective_scan"] = mamba_selective_scan
    except ImportError:
        pass
    try:
        from causal_conv1d import causal_conv1d_fn

        def dao_conv(x, weight, bias):
            return causal_conv1d_fn(x.transpose(1, 2), weight, bias, activation="silu").transpose(1, 2)

        ops["conv1d"] = dao_conv
    except ImportError:
        pass
    return ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="*", help="sequence lengths (default: 8192 65536 on CUDA, 256 1024 on CPU)")
    parser.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = device.type == "cuda"
    dtype = torch.bfloat16 if on_cuda else torch.float32
    lengths = args.lengths or ([8192, 65536] if on_cuda else [256, 1024])
    backends = ["reference", "triton"] if on_cuda else ["reference"]
    external = _mamba_ssm_ops() if on_cuda else {}

    results = []
    for length in lengths:
        cases = {  # name: (inputs, op, options)
            "ssd": (ssd_inputs, ssd_scan, {"chunk_size": 64}),
            "conv1d": (conv_inputs, causal_conv1d, {"activation": "silu"}),
            "selective_scan": (scan_inputs, selective_scan, {"delta_softplus": True}),
        }
        for name in args.kernels:
            make_inputs, op, kwargs = cases[name]
            tensors = make_inputs(length, device, dtype)
            row = {"kernel": name, "length": length, "shapes": {k: "x".join(map(str, v.shape)) for k, v in tensors.items()}}
            for backend in backends:
                try:
                    fn = _fwd_bwd(op, tensors, backend=backend, **kwargs)
                    row[f"{backend}_fwd_bwd_ms"] = round(_time(fn, device, args.warmup, args.reps), 3)
                except torch.OutOfMemoryError:
                    row[f"{backend}_fwd_bwd_ms"] = "out of memory"
                    torch.cuda.empty_cache()
            if name == "selective_scan" and not on_cuda:  # what the chunked reference saves
                fn = _fwd_bwd(selective_scan_recurrent_reference, tensors, **kwargs)
                row["recurrent_reference_fwd_bwd_ms"] = round(_time(fn, device, args.warmup, args.reps), 3)
            if name in external:
                fn = _fwd_bwd(external[name], tensors)
                row["mamba_ssm_fwd_bwd_ms"] = round(_time(fn, device, args.warmup, args.reps), 3)
            if isinstance(row.get("triton_fwd_bwd_ms"), float) and isinstance(row.get("reference_fwd_bwd_ms"), float):
                row["speedup_vs_reference"] = round(row["reference_fwd_bwd_ms"] / row["triton_fwd_bwd_ms"], 2)
            results.append(row)

    report = {
        "device": torch.cuda.get_device_name() if on_cuda else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "note": None if on_cuda else "no CUDA: reference only (the Triton interpreter is for tests, not speed)",
        "external_kernels": sorted(external) or "none importable (mamba_ssm, causal_conv1d)",
        "results": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
