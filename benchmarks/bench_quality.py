"""Bits per base of a pretrained model on held-out DNA, next to order-k Markov baselines.

Reads a run folder written by ``genoseq pretrain``: its ``config.yaml`` gives the training
genomes and the validation split, which is rebuilt exactly (the same held-out regions the run
validated on). Markov models of orders 3..8 are fitted on the same training regions (both
strands). Both are scored on the same positions: every held-out base after the first 8 of its
region. Extra genomes (``--genome``) are scored whole, as genomes the model never saw.

    python benchmarks/bench_quality.py --run runs/recipe [--genome other.fa ...]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from genoseq.datamodules import split_regions
from genoseq.genome import open_genome
from genoseq.markov import MarkovModel
from genoseq.models import GenoSeqLM
from genoseq.models.inference import token_log_probs
from genoseq.tokenizer import A, T

SKIP = 8  # leading bases of each region not scored, so every order up to 8 has its full context
ORDERS = (3, 4, 5, 6, 7, 8)


def _scored_mask(ids: np.ndarray) -> np.ndarray:
    """Positions >= SKIP whose 9-mer ending there is free of N (what every Markov order scores)."""
    ok = (ids >= A) & (ids <= T)
    window_ok = np.convolve(ok.astype(np.int32), np.ones(SKIP + 1, np.int32), mode="full")[: len(ids)] == SKIP + 1
    window_ok[:SKIP] = False
    return window_ok


def _markov_bits(model: MarkovModel, ids: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    lp = model.log2_probs(ids)  # positions k..L-1 with N-free (k+1)-mers, in order
    codes_ok = np.zeros(len(ids), bool)
    ok = (ids >= A) & (ids <= T)
    k = model.k
    full = np.convolve(ok.astype(np.int32), np.ones(k + 1, np.int32), mode="full")[: len(ids)] == k + 1
    full[:k] = False
    codes_ok[full] = True
    per_pos = np.full(len(ids), np.nan)
    per_pos[codes_ok] = lp
    return -float(per_pos[mask].sum()), int(mask.sum())


def _model_bits(lm, ids: np.ndarray, mask: np.ndarray, chunk: int, context: int) -> tuple[float, int]:
    lp = token_log_probs(lm, torch.from_numpy(ids.astype(np.int64)), chunk_size=chunk, context=context, batch_size=8)
    per_pos = np.concatenate([[np.nan], lp.numpy().astype(np.float64)]) / math.log(2)
    return -float(per_pos[mask].sum()), int(mask.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run folder of genoseq pretrain")
    parser.add_argument("--genome", action="append", default=[], help="extra unseen genome(s) to score whole")
    parser.add_argument("--context", type=int, default=None, help="scoring context (default: half the training window)")
    parser.add_argument("--max-bases", type=int, default=None, help="score at most this many held-out bases per genome")
    args = parser.parse_args()

    run = Path(args.run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    window, sources = config["window"], list(config["data"]) + list(config.get("val_data") or [])
    n_train = len(config["data"])
    genomes = [open_genome(s) for s in sources]
    train, val = split_regions(
        [g.contigs for g in genomes],
        val_contigs=window.get("val_contigs") or (),
        val_sources=list(range(n_train, len(sources))),
        val_fraction=0.0 if config.get("val_data") else window["val_fraction"],
        val_block_length=window["val_block_length"],
    )
    started = time.time()
    train_ids = [genomes[r.source].fetch(r.contig, r.start, r.end) for r in train]
    markov = {k: MarkovModel(k).fit(train_ids) for k in ORDERS}
    del train_ids

    lm = GenoSeqLM.from_pretrained(run / "model")
    torch.set_grad_enabled(False)
    chunk = int(window["length"])
    context = args.context or chunk // 2

    def evaluate(pieces: list[np.ndarray]) -> dict:
        totals = {f"markov_k{k}": [0.0, 0] for k in ORDERS} | {"model": [0.0, 0]}
        for ids in pieces:
            mask = _scored_mask(ids)
            for k, m in markov.items():
                bits, n = _markov_bits(m, ids, mask)
                totals[f"markov_k{k}"][0] += bits
                totals[f"markov_k{k}"][1] += n
            bits, n = _model_bits(lm, ids, mask, chunk, context)
            totals["model"][0] += bits
            totals["model"][1] += n
        out = {name: round(bits / n, 4) for name, (bits, n) in totals.items()}
        out["bases"] = totals["model"][1]
        out["best_markov"] = min(v for k, v in out.items() if k.startswith("markov"))
        return out

    results = {}
    for i, source in enumerate(sources):
        pieces = [genomes[r.source].fetch(r.contig, r.start, r.end) for r in val if r.source == i]
        if args.max_bases:
            kept, total = [], 0
            for p in pieces:
                if total >= args.max_bases:
                    break
                kept.append(p[: args.max_bases - total])
                total += len(kept[-1])
            pieces = kept
        if pieces:
            results[Path(source).name + (" (held-out regions)" if i < n_train else " (held-out genome)")] = evaluate(pieces)
    for path in args.genome:
        g = open_genome(path)
        pieces = [g.fetch(c, 0, n if not args.max_bases else min(n, args.max_bases)) for c, n in g.contigs.items()]
        results[Path(path).name + " (unseen genome)"] = evaluate(pieces)

    print(json.dumps({
        "benchmark": "pretrain_quality",
        "run": str(run),
        "model": {"pattern": config["model"]["pattern"], "d_model": config["model"]["d_model"],
                  "parameters": sum(p.numel() for p in lm.parameters())},
        "trained": json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else None,
        "scoring": {"chunk": chunk, "context": context, "skip_first_bases_per_region": SKIP},
        "bits_per_base": results,
        "seconds": round(time.time() - started, 1),
        "machine": {"cpus": torch.get_num_threads(), "processor": platform.machine(),
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
    }, indent=2))


if __name__ == "__main__":
    main()
