"""Evo 2 (StripedHyena 2) import: conversion time, scoring speed and memory, beside vortex. Prints JSON.

For the shape named by ``--shape`` this writes a checkpoint of random weights in Evo 2's published
layout (a flat state dict: bfloat16 weights, float32 poles, residues and rotary ``inv_freq``, the
attention ``Wqkv`` rows per head, an FP8 ``projections._extra_state`` entry per Hyena block) with
its config in Evo 2's format, then, each step in a process of its own (one thread with
``--threads 1``, address space capped at ``--memory-limit-gib``):

* ``convert``: ``genoseq convert evo2 --checkpoint X.pt --model_config X.yml --out M`` (seconds
  of the command, its lazy imports included, and of the conversion alone; peak resident memory);
* ``score``: ``genoseq score`` of the first L bases of the E. coli genome, for each L of
  ``--lengths``: windows of the model's 8,192 bases, each base seeing at least 1,024 before it,
  ``--batch-size`` windows a pass, after one warm-up call on 300 bases (its imports); the seconds
  include loading the model folder (bases/s, peak resident memory);
* ``forward``: one forward pass of the converted model over all L bases at once (what vortex
  computes), and, with ``--vortex DIR``, vortex's own ``StripedHyena`` (Evo 2's reference code;
  the unpacked ``vtx`` wheel or a clone) loading the same checkpoint through its
  ``custom_load_state_dict`` and running the same L bases, in float32 on the CPU (the stand-ins
  of ``tests/fixtures/make_evo2_fixture.py``; FP8 projections and flash attention off, as they
  need a GPU; its rotary Triton kernel replaced by its own PyTorch reference unless
  ``--vortex-rotary triton``). The two per-base log-probabilities are compared (largest
  difference, and the size of the log-probabilities). ``--dtype float64`` runs both passes in
  float64 (vortex still casts its FFT convolutions and long filters to float32). A vortex step
  that fails, runs out of memory or past ``--timeout`` is recorded as such.

Each step reports wall-clock ``seconds`` and, from the process's own CPU time, ``cpu_seconds``:
with one thread, close to its time on a free core when other jobs share the machine.

Shapes: ``1b`` is Evo 2 1B as published (``configs/evo2-1b-8k.yml`` in Evo 2's repository: 25
layers of width 1920, attention at layers 3, 10, 17 and 24, Hyena-SE / -MR / -LI striped between,
15 heads, MLP 5120); ``small`` is the same striping at width 256 over 8 layers. Speed and memory
depend only on the shapes; the log-likelihoods of random weights mean nothing and are not
reported::

    python benchmarks/bench_evo2.py --shape small --threads 1 --vortex /tmp/vtx          # 8k, 32k, 131k
    python benchmarks/bench_evo2.py --shape 1b --lengths 2048 --threads 1 --vortex /tmp/vtx    # ~16 min, 11 GiB

The shared data folder is ``../shared/data`` (or ``$GENOSEQ_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genoseq.models.evo2 import EVO2_1B_8K

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENOSEQ_SHARED_DATA", ROOT.parent / "shared" / "data"))

SMALL = {
    **EVO2_1B_8K, "model_name": "evo2-small-bench", "hidden_size": 256, "num_filters": 256, "num_layers": 8,
    "hcs_layer_idxs": [0, 4], "hcm_layer_idxs": [1, 5], "hcl_layer_idxs": [2, 6], "attn_layer_idxs": [3, 7],
    "hcl_filter_groups": 256, "hcm_filter_groups": 16, "hcs_filter_groups": 16, "num_attention_heads": 2,
    "inner_mlp_size": 688,
}
SHAPES = {"small": SMALL, "1b": EVO2_1B_8K}
# How vortex runs on a CPU: no Transformer Engine (FP8) or flash attention; float32 throughout.
VORTEX_RUNTIME = {"use_fp8_input_projections": False, "use_flash_attn": False}


# ---------------------------------------------------------------------------- the checkpoint
def published_checkpoint(cfg: dict, seed: int = 0) -> dict:
    """Random weights of ``cfg``'s shape in Evo 2's published layout; the scales of the fixture's
    (every layer's contribution visible, decaying long filters)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    d, heads, hidden = cfg["hidden_size"], cfg["num_attention_heads"], cfg["inner_mlp_size"]
    state: dict = {}

    def put(key, shape, kind="weight"):
        r = torch.randn(shape, generator=g)
        value = {"weight": lambda: r / shape[-1] ** 0.5, "scale": lambda: 1 + 0.1 * r, "small": lambda: 0.1 * r,
                 "taps": lambda: 0.3 * r, "poles": lambda: -torch.exp(r - 1.5), "embedding": lambda: r}[kind]()
        state[key] = value if kind in ("poles",) or key.endswith("residues") else value.to(torch.bfloat16)

    put("embedding_layer.weight", (cfg["vocab_size"], d), "embedding")
    for i in range(cfg["num_layers"]):
        b = f"blocks.{i}."
        put(b + "pre_norm.scale", (d,), "scale")
        put(b + "post_norm.scale", (d,), "scale")
        put(b + "mlp.l1.weight", (hidden, d))
        put(b + "mlp.l2.weight", (hidden, d))
        put(b + "mlp.l3.weight", (d, hidden))
        if i in cfg["attn_layer_idxs"]:
            put(b + "inner_mha_cls.Wqkv.weight", (3 * d, d))
            put(b + "inner_mha_cls.out_proj.weight", (d, d))
            put(b + "inner_mha_cls.out_proj.bias", (d,), "small")
            head_dim = d // heads
            state[b + "inner_mha_cls.rotary_emb.inv_freq"] = 1.0 / (
                cfg["rotary_emb_base"] ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
            continue
        put(b + "projections.weight", (3 * d, d))
        buffer = io.BytesIO()  # Transformer Engine's FP8 metadata, a pickled BytesIO
        torch.save({"scale_fwd": torch.ones(3)}, buffer)
        state[b + "projections._extra_state"] = buffer
        put(b + "filter.short_filter_weight", (3 * d, 1, cfg["short_filter_length"]), "taps")
        put(b + "out_filter_dense.weight", (d, d))
        put(b + "out_filter_dense.bias", (d,), "small")
        if i in cfg["hcl_layer_idxs"]:
            put(b + "filter.log_poles", (d, cfg["state_size"], 1), "poles")
            put(b + "filter.residues", (d, cfg["state_size"]), "taps")
            put(b + "filter.D", (d,), "small")
        else:
            kind = "hcs" if i in cfg["hcs_layer_idxs"] else "hcm"
            taps = cfg[f"{kind}_filter_length"]
            put(b + "filter.h", (cfg[f"{kind}_filter_groups"], 1, taps), "taps")
            if taps >= 128:
                put(b + "filter.D", (d,), "small")
    put("norm.scale", (d,), "scale")
    return state


def write_sequence(length: int, path: Path) -> str:
    """The first ``length`` bases of the shared E. coli genome, as a FASTA file; the sequence."""
    with gzip.open(DATA / "ecoli_k12_mg1655.fa.gz", "rt") as fh:
        next(fh)
        parts, n = [], 0
        for line in fh:
            parts.append(line.strip().upper())
            n += len(parts[-1])
            if n >= length:
                break
    seq = "".join(parts)[:length]
    if len(seq) < length:
        raise SystemExit(f"the E. coli genome has {len(seq)} bases, fewer than {length}")
    path.write_text(">ecoli\n" + "\n".join(seq[i : i + 80] for i in range(0, length, 80)) + "\n")
    return seq


# ---------------------------------------------------------------------------- one step, in its own process
def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process: with one thread, its run time on a core of its own,
    whatever else shares the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _current_rss_gib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def _cli(args: list[str], warmup: list[str] | None = None) -> dict:
    from genoseq.cli import main

    if warmup and main(warmup):  # the same command on a few bases first: its imports, not timed
        raise RuntimeError(f"genoseq {warmup[0]} (warm-up) failed")
    started, cpu = time.perf_counter(), _cpu_seconds()
    rc = main(args)
    if rc:
        raise RuntimeError(f"genoseq {args[0]} exited with {rc}")
    return {"seconds": time.perf_counter() - started, "cpu_seconds": _cpu_seconds() - cpu}


def _next_base_log_probs(logits, targets):
    import torch

    return torch.log_softmax(logits[0, :-1].float(), -1).gather(-1, targets[1:, None])[:, 0].double().numpy()


def _genoseq_forward(job: dict) -> dict:
    import numpy as np
    import torch

    from genoseq.models import GenoSeqLM
    from genoseq.tokenizer import Tokenizer

    model = GenoSeqLM.from_pretrained(job["model"]).to(getattr(torch, job["dtype"])).eval()
    ids = torch.from_numpy(Tokenizer().encode(Path(job["sequence"]).read_text()).astype(np.int64))
    loaded = _current_rss_gib()
    started, cpu = time.perf_counter(), _cpu_seconds()
    with torch.inference_mode():
        logits = model(ids[None])
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    np.save(job["log_probs"], _next_base_log_probs(logits, ids))
    return {"seconds": seconds, "cpu_seconds": cpu, "loaded_rss_gib": loaded}


def _torch_rotary(reference):
    """vortex's rotary Triton kernel (``apply_rotary``; under TRITON_INTERPRET on a CPU, emulated
    element by element) as its own PyTorch reference, ``apply_rotary_emb_torch``: the same values."""

    def apply_rotary(x, cos, sin, seqlen_offsets=0, cu_seqlens=None, max_seqlen=None, interleaved=False,
                     inplace=False, conjugate=False):
        if cu_seqlens is not None or not isinstance(seqlen_offsets, int):
            raise RuntimeError("the PyTorch rotary stand-in covers whole sequences only")
        cos, sin = cos[seqlen_offsets : seqlen_offsets + x.shape[1]], sin[seqlen_offsets : seqlen_offsets + x.shape[1]]
        out = reference(x, cos, -sin if conjugate else sin, interleaved)
        return x.copy_(out) if inplace else out

    return apply_rotary


def _vortex_forward(job: dict) -> dict:
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    from make_evo2_fixture import import_vortex  # the CPU stand-ins the fixture was made with

    StripedHyena, dotdict = import_vortex(job["vortex"])
    import torch
    import yaml

    if job["vortex_rotary"] == "torch":
        import vortex.model.rotary as rotary

        rotary.apply_rotary = _torch_rotary(rotary.apply_rotary_emb_torch)

    cfg = {**yaml.safe_load(Path(job["config"]).read_text()), **VORTEX_RUNTIME}
    dtype = getattr(torch, job["dtype"])
    runtime = dotdict({**cfg, "attn_block_dtype": dtype, "hyena_block_dtype": dtype, "mlp_dtype": dtype,
                       "params_dtype": dtype})
    with torch.device("cpu"):
        model = StripedHyena(runtime).to(dtype).eval()
    model.custom_load_state_dict(torch.load(job["checkpoint"], map_location="cpu", weights_only=False))
    model.to(dtype)  # it sets Wqkv from the checkpoint's bfloat16 tensor
    ids = torch.tensor(list(Path(job["sequence"]).read_text().encode()), dtype=torch.long)
    loaded = _current_rss_gib()
    started, cpu = time.perf_counter(), _cpu_seconds()
    with torch.inference_mode():
        logits, _ = model(ids[None])
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    np.save(job["log_probs"], _next_base_log_probs(logits, ids))
    return {"seconds": seconds, "cpu_seconds": cpu, "loaded_rss_gib": loaded}


def worker(job: dict) -> None:
    limit = int(job["memory_limit_gib"] * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch

    torch.set_num_threads(job["threads"])
    try:
        if job["step"] == "forward_vortex":
            result = _vortex_forward(job)
        elif job["step"] == "forward_genoseq":
            result = _genoseq_forward(job)
        else:
            result = _cli(job["args"], job.get("warmup"))
    except (MemoryError, RuntimeError) as exc:  # an allocation past the cap, or a failed command
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    result["peak_rss_gib"] = _rss_gib()
    print(json.dumps(result))


def measure(job: dict, timeout: float) -> dict:
    """``job`` in a fresh process (clean peak memory; one thread when asked); its result, or the
    error, timeout or signal it ended with."""
    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"]), "MKL_NUM_THREADS": str(job["threads"])}
    load = os.getloadavg()[0]
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout:.0f} s (--timeout)", "load_before": round(load, 2)}
    lines = [line for line in done.stdout.strip().splitlines() if line.startswith("{")]
    if done.returncode == 0 and lines:
        result = json.loads(lines[-1])
    else:
        tail = done.stderr.strip().splitlines()[-3:]
        cause = "killed (out of memory?)" if done.returncode in (-9, 137) else f"exit {done.returncode}"
        result = {"error": f"{cause}: {' | '.join(tail)[-400:]}"}
    result["load_before"] = round(load, 2)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


# ---------------------------------------------------------------------------- main
def add_rates(result: dict, length: int) -> None:
    """Bases per second of wall clock, and per CPU second (what one free core would give)."""
    for key, rate in (("seconds", "bases_per_second"), ("cpu_seconds", "bases_per_cpu_second")):
        if result.get(key):
            result[rate] = round(length / result[key], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 32768, 131072])
    parser.add_argument("--vortex", help="folder holding the vortex package (unpacked vtx wheel or a clone)")
    parser.add_argument("--vortex-rotary", choices=["torch", "triton"], default="torch",
                        help="vortex's rotary embedding: its PyTorch reference, or its Triton kernel interpreted "
                             "(TRITON_INTERPRET=1: correct, but element by element in Python)")
    parser.add_argument("--no-forward", action="store_true", help="skip the whole-length forward passes")
    parser.add_argument("--no-score", action="store_true", help="skip genoseq score")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="of the forward passes (genoseq score runs in float32; vortex keeps its FFT "
                             "convolutions and long filters in float32 either way)")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per pass of genoseq score")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-limit-gib", type=float, default=16.0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one step may take")
    parser.add_argument("--workdir", type=Path, help="keep the checkpoint and model here (default: a temp folder)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    import numpy as np
    import torch
    import yaml

    cfg = SHAPES[args.shape]
    common = dict(threads=args.threads, memory_limit_gib=args.memory_limit_gib)
    uptime_start = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ckpt, yml = work / f"evo2_{args.shape}.pt", work / f"evo2_{args.shape}.yml"
        model = work / f"genoseq_{args.shape}"
        started = time.perf_counter()
        torch.save(published_checkpoint(cfg), ckpt)
        yml.write_text(yaml.safe_dump(cfg, sort_keys=False))
        write_seconds = time.perf_counter() - started
        ckpt_gib = ckpt.stat().st_size / 2**30
        convert = measure({**common, "step": "convert", "args": [
            "convert", "evo2", "--checkpoint", str(ckpt), "--model_config", str(yml), "--out", str(model)]},
            args.timeout)
        print(json.dumps({"convert": convert}), file=sys.stderr, flush=True)
        if "error" in convert:
            raise SystemExit(f"convert failed: {convert['error']}")
        report = json.loads((model / "conversion.json").read_text())
        rows = []
        warmup = work / "warmup.fa"
        write_sequence(300, warmup)
        for length in args.lengths:
            fasta, seq_file = work / f"ecoli_{length}.fa", work / f"ecoli_{length}.txt"
            seq_file.write_text(write_sequence(length, fasta))
            row: dict = {"length": length}
            if not args.no_score:
                options = ["--batch_size", str(args.batch_size), "--device", "cpu", "--progress", "none"]
                run = ["score", "--model", str(model), *options, "--fasta"]
                score = measure({**common, "step": "score",
                                 "warmup": [*run, str(warmup), "--out", str(work / "warmup.tsv")],
                                 "args": [*run, str(fasta), "--out", str(work / "scores.tsv")]}, args.timeout)
                add_rates(score, length)
                row["genoseq_score"] = score
            if not args.no_forward:
                lp = {}
                for name in ("genoseq", "vortex") if args.vortex else ("genoseq",):
                    lp[name] = work / f"lp_{name}_{length}.npy"
                    job = {**common, "step": f"forward_{name}", "model": str(model), "sequence": str(seq_file),
                           "log_probs": str(lp[name]), "checkpoint": str(ckpt), "config": str(yml),
                           "vortex": args.vortex, "vortex_rotary": args.vortex_rotary, "dtype": args.dtype}
                    result = measure(job, args.timeout)
                    add_rates(result, length)
                    row[f"{name}_forward"] = result
                if all(p.exists() for p in lp.values()) and len(lp) == 2:
                    a, b = np.load(lp["genoseq"]), np.load(lp["vortex"])
                    row["max_abs_log_prob_difference"] = float(np.abs(a - b).max())
                    # the size of what is compared: random weights give log-probabilities far from 0
                    row["median_abs_log_prob"] = float(np.median(np.abs(a)))
                    row["max_abs_log_prob"] = float(np.abs(a).max())
                for p in lp.values():
                    p.unlink(missing_ok=True)
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    print(json.dumps({
        "benchmark": "evo2_import", "shape": args.shape, "config": {k: cfg[k] for k in (
            "hidden_size", "num_layers", "num_attention_heads", "attn_layer_idxs", "hcs_layer_idxs", "hcm_layer_idxs",
            "hcl_layer_idxs", "inner_mlp_size", "state_size", "max_seqlen")},
        "parameters": report["parameters"], "pattern": report["pattern"],
        "checkpoint_gib": round(ckpt_gib, 3), "write_checkpoint_seconds": round(write_seconds, 1),
        "convert": {**convert, "import_seconds": report.get("convert_seconds")},
        "score_window": report["window_length"], "batch_size": args.batch_size, "forward_dtype": args.dtype,
        "rows": rows,
        "vortex": args.vortex, "vortex_rotary": args.vortex_rotary if args.vortex else None,
        "threads": args.threads, "memory_limit_gib": args.memory_limit_gib,
        "uptime_start": uptime_start,
        "uptime_end": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "torch": torch.__version__},
    }, indent=2))


if __name__ == "__main__":
    main()
