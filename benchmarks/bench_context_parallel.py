"""Memory per rank of context parallelism: one window split over N processes (gloo on CPU).

    python benchmarks/bench_context_parallel.py --length 32768 --ranks 1 2

For each N, N processes run one training step (forward and backward, float32, batch 1) of the
same model on the same window, each holding a 1/N slice of it (N = 1: the ordinary step). Every
rank reports its step's seconds and the rise of its resident memory over the step (its
``ru_maxrss`` after the step minus before: the activations and gradients of its slice, plus the
whole-sequence tensors each mixer holds for its 1/N of the channels). Prints JSON. With gloo,
the N processes share this machine's cores, so seconds say little; memory per rank is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _rank(rank: int, ranks: int, port: int, args: dict, out: str) -> None:
    torch.set_num_threads(args["threads"])
    if ranks > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=ranks)
    import yaml

    from genoseq.models import GenoSeqLM, ModelConfig

    model = yaml.safe_load((ROOT / "configs" / "recipe_cpu_small.yaml").read_text())["model"]
    torch.manual_seed(0)
    lm = GenoSeqLM(ModelConfig(**{**model, "checkpointing": args["checkpointing"]})).train()
    if ranks > 1:
        lm.context_parallel_size = ranks
        lm.setup("fit")
    ids = torch.randint(5, 9, (1, args["length"]))
    before = _rss_gib()
    start = time.perf_counter()
    loss, _ = lm.lm_loss({"input_ids": ids})
    (loss * ranks).backward()
    row = {"rank": rank, "seconds": round(time.perf_counter() - start, 2),
           "memory_rise_gib": round(_rss_gib() - before, 3), "peak_gib": round(_rss_gib(), 3)}
    Path(f"{out}.{rank}").write_text(json.dumps(row))
    if ranks > 1:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=32768)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing in every block")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    args = parser.parse_args()
    job = {"length": args.length, "checkpointing": args.checkpointing, "threads": args.threads}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.ranks:
            out = os.path.join(tmp, f"n{n}")
            mp.start_processes(_rank, args=(n, _free_port(), job, out), nprocs=n, start_method="spawn")
            rows = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(n)]
            results.append({"ranks": n, "per_rank": rows,
                            "max_memory_rise_gib": max(r["memory_rise_gib"] for r in rows)})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "context_parallel", "length": args.length, "checkpointing": args.checkpointing,
                      "model": "configs/recipe_cpu_small.yaml", "machine": platform.processor() or platform.machine(),
                      "torch": torch.__version__, "results": results}, indent=2))


if __name__ == "__main__":
    main()
