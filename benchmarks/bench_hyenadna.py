"""Conversion time, scoring throughput and memory of HyenaDNA-sized models imported into genoseq.

For each published size named in ``--sizes`` this writes a checkpoint folder in HyenaDNA's
layout (its ``config.json`` values; random weights, the same shapes and buffers as the
published ``weights.ckpt``), converts it with ``genoseq convert hyenadna`` (timed), and scores
``--fasta`` with ``genoseq score`` at the model's own window (``l_max - 2`` bases; timed, with
the process's peak resident memory). Speed and memory depend only on the shapes, so they are
those of the published models; the bits/base of random weights mean nothing and are not
reported::

    python benchmarks/bench_hyenadna.py --fasta data/kpneumoniae_1mb.fa --sizes tiny-1k small-32k
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_hyenadna import hyenadna_config, write_checkpoint  # noqa: E402  (the layout the tests hold)

# d_model, n_layer, l_max of HyenaDNA's published checkpoints (filter_order 64, emb_dim 5)
SIZES = {
    "tiny-1k": (128, 2, 1026),
    "small-32k": (256, 4, 32770),
    "medium-160k": (256, 8, 160002),
    "medium-450k": (256, 8, 450002),
    "large-1m": (256, 8, 1000002),
}


def run(args: list[str]) -> tuple[float, float]:
    """Seconds (after imports) and peak RSS (GiB) of a genoseq command in its own process."""
    code = ("import resource, sys, time, torch; from genoseq.cli import main; t = time.time(); rc = main(sys.argv[1:]); "
            "print(time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"genoseq {' '.join(args)} failed:\n{done.stderr}")
    seconds, rss_kib = done.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(rss_kib) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fasta", required=True, help="sequence to score")
    parser.add_argument("--sizes", nargs="+", default=["tiny-1k", "small-32k"], choices=sorted(SIZES))
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    from genoseq.genome import open_genome

    genome = open_genome(args.fasta)
    bases = sum(genome.contigs.values())
    genome.close()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sizes:
            d_model, n_layer, l_max = SIZES[name]
            cfg = hyenadna_config(d_model=d_model, n_layer=n_layer, l_max=l_max, filter_order=64)
            folder = write_checkpoint(Path(tmp) / f"hyenadna-{name}", cfg)
            ckpt_mb = (folder / "weights.ckpt").stat().st_size / 2**20
            out = Path(tmp) / f"genoseq-{name}"
            convert_s, convert_gib = run(["convert", "hyenadna", "--checkpoint", str(folder), "--out", str(out)])
            score_s, score_gib = run(["score", "--model", str(out), "--fasta", args.fasta, "--out",
                                      str(Path(tmp) / f"{name}.tsv"), "--batch_size", str(args.batch_size),
                                      "--device", "cpu", "--progress", "none"])
            report = json.loads((out / "conversion.json").read_text())
            rows.append({
                "size": name, "d_model": d_model, "n_layer": n_layer, "l_max": l_max,
                "parameters": report["parameters"], "checkpoint_mib": round(ckpt_mb, 1),
                "convert_seconds": round(convert_s, 1), "convert_seconds_import_only": report["convert_seconds"],
                "convert_peak_rss_gib": round(convert_gib, 2), "score_window": l_max - 2,
                "score_bases": bases, "score_seconds": round(score_s, 1),
                "score_bases_per_second": round(bases / score_s), "score_peak_rss_gib": round(score_gib, 2),
            })
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "hyenadna_import", "fasta": args.fasta, "batch_size": args.batch_size, "rows": rows,
                      "machine": {"cpus": torch.get_num_threads(), "processor": platform.machine(),
                                  "torch": torch.__version__}}, indent=2))


if __name__ == "__main__":
    main()
