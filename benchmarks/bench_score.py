"""Speed and bits per base of ``genoseq score`` under several window settings, as a user runs it.

Each setting is one ``genoseq score`` command (a fresh process: start-up included), run one
after another on the same FASTA; the JSON gives for each its command, bits per base, wall
seconds, the start-up seconds (the same command on a 28-base FASTA) and the scoring rate with
start-up taken out, and every setting's speed-up over the first::

    python benchmarks/bench_score.py --model runs/recipe/model --fasta kpneumoniae_1mb.fa \\
        --setting "--chunk_size 8192 --context 2048" --setting "--context 512" --setting "" \\
        --out benchmarks/results/score_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from genoseq.runtime import print_json


def run_score(model: str, fasta: str, setting: str, out: Path) -> tuple[float, dict]:
    genoseq = str(Path(sys.executable).with_name("genoseq"))
    command = [genoseq, "score", "--model", model, "--fasta", fasta, "--out", str(out), "--progress", "none",
               *shlex.split(setting)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return seconds, json.loads(Path(str(out) + ".json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--fasta", required=True)
    parser.add_argument("--setting", action="append", default=None,
                        help="extra genoseq score options, e.g. '--context 256'; '' is the defaults (repeatable)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    settings = args.setting if args.setting is not None else ["--chunk_size 8192 --context 2048", ""]
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny.fa"
        tiny.write_text(">t\nACGTACGTAGCTAGCTAGCATCGATCGA\n")
        startup, _ = run_score(args.model, str(tiny), "", Path(tmp) / "tiny.tsv")
        runs = []
        for setting in settings:
            seconds, summary = run_score(args.model, args.fasta, setting, Path(tmp) / "scores.tsv")
            runs.append({
                "options": setting or "(defaults)",
                "command": f"genoseq score --model {args.model} --fasta {args.fasta} --out scores.tsv {setting}".strip(),
                "chunk_size": summary["chunk_size"], "context": summary["context"],
                "bits_per_base": round(summary["bits_per_base"], 5), "scored_bases": summary["scored_bases"],
                "wall_seconds": round(seconds, 1),
                "scoring_rate_bp_per_s": round(summary["scored_bases"] / max(seconds - startup, 1e-9)),
            })
    for r in runs:
        r["speedup_wall"] = round(runs[0]["wall_seconds"] / r["wall_seconds"], 2)
        r["speedup_rate"] = round(r["scoring_rate_bp_per_s"] / runs[0]["scoring_rate_bp_per_s"], 2)
    result = {
        "benchmark": "genoseq score: bits/base and speed per window setting",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
        "model": args.model, "fasta": args.fasta, "startup_seconds": round(startup, 1), "runs": runs,
    }
    print_json(result, args.out)


if __name__ == "__main__":
    main()
