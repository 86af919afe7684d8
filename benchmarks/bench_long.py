"""Training speed and memory at long lengths; prints one JSON document.

    python benchmarks/bench_long.py                                  # 8k, 32k, 131k; ~30 min on 2 cores
    python benchmarks/bench_long.py --lengths 8192 --models recipe   # a quick look
    python benchmarks/bench_long.py --peers DIR                      # + HyenaDNA / ssd_minimal side by side
    python benchmarks/bench_long.py --replot a.json b.jsonl --plot long.png   # redraw earlier runs

Sections:
  train   one training step (forward, backward, AdamW) of a whole model, batch 1, at each length,
          with and without activation checkpointing: tokens/s, seconds per step, and the peak
          resident memory of the process (its ``ru_maxrss``; each configuration runs in a
          process of its own, capped at ``--memory-limit-gib`` so an oversized step fails with an
          error instead of swapping). Models: ``recipe`` (configs/recipe_cpu_small.yaml's
          architecture, full attention) and ``d512`` (a d_model 512 Hyena/Mamba2/attention hybrid
          whose attention layer is local, ``--d512-window`` bases).
  mixers  forward + backward of one sequence mixer at ``--peer-length`` (d_model 128, the recipe's
          width): genoseq's Hyena and Mamba2 beside HyenaDNA's own ``HyenaOperator``
          (``standalone_hyenadna.py``) and a Mamba2 whose scan is mamba_ssm's ``ssd_minimal_discrete``
          (``ssd_minimal.py``), when ``--peers DIR`` holds those two files (they need ``einops``).

On a GPU the same steps run on CUDA (``--device cuda``): memory is then
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def recipe_model() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "configs" / "recipe_cpu_small.yaml").read_text())["model"]


def model_config(name: str, checkpointing: bool, d512_window: int) -> dict:
    if name == "recipe":
        return {**recipe_model(), "checkpointing": checkpointing}
    if name == "d512":
        return dict(d_model=512, pattern="HMMA", n_heads=8, headdim=64, d_state=64, hyena_filter_dim=64,
                    hyena_filter_len=2048, attention_window=d512_window, checkpointing=checkpointing)
    raise SystemExit(f"unknown model {name!r}")


# ---------------------------------------------------------------------------- one configuration
def _peak_gib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _time_steps(step, steps: int, device) -> float:
    """Seconds per step: the mean of ``steps`` steps after a warm-up one, or with ``steps=0`` the
    first step itself (long CPU steps, where one is all there is time for)."""
    import torch

    if steps == 0:
        start = time.perf_counter()
        step()
        return time.perf_counter() - start
    step()  # warm-up: allocations, lazily built buffers
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def run_model(job: dict) -> dict:
    import torch

    from bench_models import lm_training_step
    from genoseq.models import GenoSeqLM, ModelConfig

    device = torch.device(job["device"])
    torch.manual_seed(0)
    lm = GenoSeqLM(ModelConfig(**job["model"])).to(device).train()
    optimizer = torch.optim.AdamW(lm.parameters(), lr=1e-4)
    step = lm_training_step(lm, optimizer, torch.randint(5, 9, (1, job["length"]), device=device))

    base = _peak_gib(device)
    seconds = _time_steps(step, job["steps"], device)
    return {"seconds_per_step": round(seconds, 3), "tokens_per_s": round(job["length"] / seconds, 1),
            "peak_gib": round(_peak_gib(device), 3), "before_step_gib": round(base, 3),
            "parameters": sum(p.numel() for p in lm.parameters())}


def _peer_module(peers: Path, name: str):
    """A peer's file as a module: HyenaDNA's ``standalone_hyenadna`` or mamba_ssm's ``ssd_minimal``.
    Only the parts measured are kept: HyenaDNA's file up to its attention classes (its blocks and
    model need torchvision and transformers), mamba_ssm's file without its Triton import (used by
    its own test)."""
    import types

    source = (peers / f"{name}.py").read_text()
    if name == "standalone_hyenadna":
        source = source[: source.index("class SelfAttention")]
    source = "\n".join(line for line in source.splitlines() if not line.startswith(("from mamba_ssm", "from torchvision", "from transformers")))
    module = types.ModuleType(name)
    exec(compile(source, str(peers / f"{name}.py"), "exec"), module.__dict__)
    return module


def run_mixer(job: dict) -> dict:
    import torch

    import genoseq.models.blocks as blocks
    from genoseq.models import ModelConfig

    device, L, d = torch.device(job["device"]), job["length"], 128
    torch.manual_seed(0)
    cfg = ModelConfig(**{**recipe_model(), "pattern": "HM"})
    kind = job["mixer"]
    if kind == "hyenadna-hyena":
        peer = _peer_module(Path(job["peers"]), "standalone_hyenadna")
        mixer = peer.HyenaOperator(d_model=d, l_max=L, order=2, filter_order=cfg.hyena_filter_dim)
    elif kind == "genoseq-hyena":
        mixer = blocks.Hyena(cfg)
    else:
        mixer = blocks.Mamba2(cfg)
        if kind == "ssd_minimal-mamba2":  # the same block, its scan replaced by mamba_ssm's reference
            ssd_minimal = _peer_module(Path(job["peers"]), "ssd_minimal").ssd_minimal_discrete

            def scan(x, dt, A, B, C, chunk_size=64, D=None, **_):
                heads = x.shape[2]
                Bh, Ch = (t.repeat_interleave(heads // t.shape[2], dim=2).float() for t in (B, C))
                y, _ = ssd_minimal(x.float() * dt[..., None], A * dt, Bh, Ch, chunk_size)
                return (y + x * D[:, None]).to(x.dtype), None

            blocks.ssd_scan = scan
    mixer = mixer.to(device).train()
    u = torch.randn(1, L, d, device=device, requires_grad=True)

    def step():
        mixer(u).square().mean().backward()

    seconds = _time_steps(step, job["steps"], device)
    return {"seconds_per_step": round(seconds, 3), "tokens_per_s": round(L / seconds, 1),
            "peak_gib": round(_peak_gib(device), 3)}


def worker(job: dict) -> None:
    if job["device"] == "cpu":
        limit = int(job["memory_limit_gib"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch

    torch.set_num_threads(job["threads"])
    try:
        result = run_model(job) if "model" in job else run_mixer(job)
    except (MemoryError, RuntimeError) as exc:  # an allocation past the cap
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    print(json.dumps(result))


def measure(job: dict) -> dict:
    """Run ``job`` in a fresh process (a clean peak-memory reading); its result with the job."""
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if done.returncode == 0 and lines else {"error": done.stderr.strip()[-300:]}
    row = {k: v for k, v in job.items() if k in ("name", "length", "checkpointing", "mixer")}
    print(json.dumps({**row, **result}), file=sys.stderr, flush=True)
    return {**row, **result}


def plot(rows: list[dict], png: Path) -> None:
    """Peak memory and tokens/s against length, one line per model and checkpointing setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genoseq.runtime import save_figure

    fig, (ax_mem, ax_speed) = plt.subplots(1, 2, figsize=(11, 4))
    series: dict[tuple, list[dict]] = {}
    for row in rows:
        if "peak_gib" in row and "name" in row:
            series.setdefault((row["name"], row["checkpointing"]), []).append(row)
    for (name, ckpt), points in sorted(series.items()):
        points.sort(key=lambda r: r["length"])
        label = f"{name}, {'checkpointing' if ckpt else 'no checkpointing'}"
        style = "o-" if ckpt else "s--"
        ax_mem.plot([r["length"] for r in points], [r["peak_gib"] for r in points], style, label=label)
        ax_speed.plot([r["length"] for r in points], [r["tokens_per_s"] for r in points], style, label=label)
    lengths = sorted({r["length"] for r in rows if "length" in r})
    for ax, ylabel in ((ax_mem, "peak resident memory (GiB)"), (ax_speed, "training tokens/s")):
        ax.set(xscale="log", xlabel="window length (bases)", ylabel=ylabel)
        ax.set_xticks(lengths, [f"{n:,}" for n in lengths])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax_mem.set_title("one training step, batch 1")
    ax_speed.set_title("tokens/s")
    fig.tight_layout()
    save_figure(fig, png)


def read_rows(paths: list[Path]) -> list[dict]:
    """Rows from earlier runs: this script's JSON (its ``train`` rows) or the JSON lines it
    prints to stderr while it runs."""
    rows = []
    for path in paths:
        text = path.read_text().strip()
        try:
            rows += json.loads(text)["train"]
        except (ValueError, KeyError, TypeError):
            rows += [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="*", default=[8192, 32768, 131072],
                        help="training-step lengths (none: only the mixers side by side)")
    parser.add_argument("--models", nargs="+", default=["recipe", "d512"], choices=["recipe", "d512"])
    parser.add_argument("--checkpointing", choices=["both", "on", "off"], default="both")
    parser.add_argument("--d512-window", type=int, default=4096, help="local attention window of the d512 hybrid")
    parser.add_argument("--steps", type=int, default=1,
                        help="timed steps after one warm-up step (0: time the first step alone)")
    parser.add_argument("--peers", type=Path, help="folder with standalone_hyenadna.py and ssd_minimal.py")
    parser.add_argument("--peer-length", type=int, default=32768)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit-gib", type=float, default=20.0)
    parser.add_argument("--plot", type=Path, help="PNG of peak memory and tokens/s against length")
    parser.add_argument("--replot", type=Path, nargs="+", help="draw --plot from these earlier outputs, run nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.replot:
        return plot(read_rows(args.replot), args.plot or Path("long.png"))

    common = dict(device=args.device, threads=args.threads, steps=args.steps, memory_limit_gib=args.memory_limit_gib)
    modes = {"both": [False, True], "on": [True], "off": [False]}[args.checkpointing]
    train = [measure({**common, "name": name, "length": L, "checkpointing": ckpt,
                      "model": model_config(name, ckpt, args.d512_window)})
             for name in args.models for L in args.lengths for ckpt in modes]
    mixers = []
    if args.peers:
        for mixer in ("genoseq-hyena", "hyenadna-hyena", "genoseq-mamba2", "ssd_minimal-mamba2"):
            mixers.append(measure({**common, "mixer": mixer, "length": args.peer_length, "peers": str(args.peers)}))
        by = {m["mixer"]: m.get("tokens_per_s") for m in mixers}
        for ours, theirs in (("genoseq-hyena", "hyenadna-hyena"), ("genoseq-mamba2", "ssd_minimal-mamba2")):
            if by.get(ours) and by.get(theirs):
                next(m for m in mixers if m["mixer"] == ours)["speedup_vs_peer"] = round(by[ours] / by[theirs], 2)
    if args.plot:
        plot(train, args.plot)
    import torch

    print(json.dumps({"benchmark": "long", "machine": platform.processor() or platform.machine(),
                      "torch": torch.__version__, "device": args.device, "threads": args.threads,
                      "d512_window": args.d512_window, "train": train, "mixers": mixers}, indent=2))


if __name__ == "__main__":
    main()
