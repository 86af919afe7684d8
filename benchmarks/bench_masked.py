"""Cost of masked-LM scoring (pseudo-log-likelihood) of a bidirectional model on the CPU.

A pseudo-log-likelihood masks every base once: one forward pass of a whole window *per base*, so
a sequence of L bases in windows of W costs about ``L x W`` tokens of forward passes (a causal
model: about L). The masked copies of a window run ``rows`` per forward pass
(``genoseq score --max_rows``); this measures what that batching buys and how the cost grows
with the window.

Every measurement runs in a fresh process (so its peak resident memory is its own) on a
Caduceus-PS-shaped model with random weights (:class:`genoseq.models.caduceus.CaduceusLM`;
``--d_model`` is genoseq's width, both strands' halves: Caduceus' ``d_model`` is half of it) and
a random A/C/G/T sequence. It scores ``--positions`` masked bases of the sequence through
:func:`genoseq.models.masked.masked_scan`, the loop ``genoseq score`` runs for a masked model
(all of them when ``--positions 0``), and reports masked bases per second and the whole-sequence
PLL time that rate gives (``L / rate``: every base costs the same pass). Lengths whose full PLL
would take too long are measured on a sample of positions and extrapolated, which the JSON marks
(``extrapolated``)::

    OMP_NUM_THREADS=1 python benchmarks/bench_masked.py --lengths 1024 --rows 1 16 64 --long 4096 16384 \\
        --out benchmarks/results/2026-12-07-masked/masked_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

TARGET = 131_072  # Caduceus' longest published context


def measure(d_model: int, layers: int, length: int, rows: int, positions: int, seed: int = 0) -> dict:
    """One measurement (run in a process of its own)."""
    import numpy as np
    import torch

    from genoseq.models.caduceus import CaduceusConfig, CaduceusLM
    from genoseq.models.masked import masked_scan

    torch.manual_seed(seed)
    model = CaduceusLM(CaduceusConfig(d_model=d_model, n_layers=layers, rcps=True, swap_halves=True)).eval()
    ids = torch.from_numpy(np.random.default_rng(seed).integers(5, 9, length))
    chosen = torch.arange(length) if positions <= 0 else torch.linspace(0, length - 1, positions).long().unique()
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    target = ids.clone()

    def pick(log_probs: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return log_probs.gather(-1, target[pos][:, None])

    masked_scan(model, ids, pick, 1, positions=chosen[:1], chunk_size=length, context=0, rows=1)  # warm-up
    started = time.perf_counter()
    found = masked_scan(model, ids, pick, 1, positions=chosen, chunk_size=length, context=0, rows=rows)
    seconds = time.perf_counter() - started
    assert torch.isfinite(found).all()
    rate = len(chosen) / seconds
    return {
        "length": length, "rows_per_pass": rows, "masked_bases_measured": len(chosen), "seconds": round(seconds, 3),
        "masked_bases_per_s": round(rate, 3), "pll_seconds": round(length / rate, 1),
        "extrapolated": len(chosen) < length, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_model_mib": round(rss_model / 1024, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def run_child(args, length: int, rows: int, positions: int) -> dict:
    command = [sys.executable, __file__, "--child", "--d_model", str(args.d_model), "--layers", str(args.layers),
               "--lengths", str(length), "--rows", str(rows), "--positions", str(positions)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def extrapolate(runs: list[dict]) -> dict | None:
    """PLL seconds at ``TARGET`` bases from the cost of a masked base at the longest lengths
    measured (rows=1), linear in the window (the selective scan is linear in length)."""
    ones = sorted((r for r in runs if r["rows_per_pass"] == 1), key=lambda r: r["length"])
    if not ones:
        return None
    last = ones[-1]
    per_base = last["seconds"] / last["masked_bases_measured"]  # one pass of `length` tokens
    per_base_at_target = per_base * TARGET / last["length"]
    return {
        "length": TARGET, "from_length": last["length"], "extrapolated": True,
        "seconds_per_masked_base": round(per_base_at_target, 1),
        "pll_seconds": round(per_base_at_target * TARGET), "pll_days": round(per_base_at_target * TARGET / 86400, 1),
        "rule": "seconds per masked base (one rows=1 pass) x TARGET / from_length, times TARGET bases",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d_model", type=int, default=256, help="genoseq width (both strands; Caduceus' is half)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 16, 64], help="masked copies per forward pass")
    parser.add_argument("--positions", type=int, default=16,
                        help="masked bases measured per run, at least --rows (0: all of them)")
    parser.add_argument("--long", type=int, nargs="*", default=[], help="lengths measured with rows=1 on 2 bases")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.d_model, args.layers, args.lengths[0], args.rows[0], args.positions)))
        return
    import torch

    runs = []
    for length in args.lengths:
        for rows in args.rows:  # at least one full pass of `rows` masked copies
            runs.append(run_child(args, length, rows, args.positions and max(args.positions, rows)))
            print(json.dumps(runs[-1]), flush=True)
    for length in args.long:
        runs.append(run_child(args, length, 1, 2))
        print(json.dumps(runs[-1]), flush=True)
    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/bench_masked.py " + " ".join(sys.argv[1:]),
        "model": f"CaduceusLM, random weights, rcps, d_model {args.d_model} (Caduceus d_model {args.d_model // 2}), "
                 f"{args.layers} layers, float32",
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_average_at_end": os.getloadavg()},
        "runs": runs, "extrapolated_to_131k": extrapolate(runs),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
