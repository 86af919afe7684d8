"""Bits per base of a pretrained model on held-out DNA, next to order-k Markov baselines.

Two protocols, both printing JSON:

**One run** (``--run``): reads a run folder written by ``genoseq pretrain``: its
``config.yaml`` gives the training genomes and the validation split, which is rebuilt exactly
(the same held-out regions the run validated on). Markov models of orders 3..8 are fitted on
the same training regions (both strands). Both are scored on the same positions: every
held-out base after the first 8 of its region. Extra genomes (``--genome``) are scored whole,
as genomes the model never saw::

    python benchmarks/bench_quality.py --run runs/recipe [--genome other.fa ...]

**Leave one genome out** (``--logo``): for each genome, pretrain with ``--config`` on all the
others (``OUT/without_<genome>/``, reused when its model is already there), then score the
genome left out whole, next to order 3..8 Markov chains fitted on the same training bases::

    python benchmarks/bench_quality.py --logo --config configs/recipe_cpu_small.yaml \
        --genomes data/ecoli.fa data/saureus.fa data/hpylori.fa --out runs/logo

With ``--context-curve`` each unseen genome also gets bits/base as a function of the context a
base had: windows of the model's training length scored in one pass, binned by position.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from genoseq.datamodules import split_regions
from genoseq.genome import open_genome
from genoseq.markov import MarkovModel
from genoseq.models import GenoSeqLM
from genoseq.models.inference import scoring_window, token_log_probs
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


CONTEXT_BINS = (0, 16, 64, 256, 1024, 4096, 16384, 65536)


def _evaluate(lm, markov: dict, pieces: list[np.ndarray], chunk: int, context: int) -> dict:
    """Bits/base of the model and of every Markov order on the same positions of ``pieces``."""
    totals = {f"markov_k{k}": [0.0, 0] for k in markov} | {"model": [0.0, 0]}
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
    best = min((k for k in out if k.startswith("markov")), key=lambda k: out[k])
    out["best_markov"], out["best_markov_order"] = out[best], int(best.removeprefix("markov_k"))
    out["model_minus_best_markov"] = round(out["model"] - out["best_markov"], 4)
    return out


@torch.inference_mode()
def context_curve(lm, pieces: list[np.ndarray], length: int, max_windows: int = 64, batch_size: int = 4) -> dict:
    """Mean bits/base by the number of preceding bases in the window (``CONTEXT_BINS``).

    Windows of ``length`` bases, evenly spaced over ``pieces``, each scored in one forward pass
    from its first base, so position ``t`` of a window has seen exactly ``t`` bases.
    """
    starts = [(i, s) for i, p in enumerate(pieces) for s in range(0, len(p) - length + 1, length)]
    if not starts:
        return {}
    keep = np.linspace(0, len(starts) - 1, min(max_windows, len(starts))).round().astype(int)
    windows = [pieces[i][s : s + length] for i, s in (starts[j] for j in sorted(set(keep)))]
    bits = np.zeros(length - 1)
    counts = np.zeros(length - 1)
    for b in range(0, len(windows), batch_size):
        ids = torch.from_numpy(np.stack(windows[b : b + batch_size]).astype(np.int64))
        lp = torch.log_softmax(lm(ids)[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
        ok = (ids[:, 1:] >= A) & (ids[:, 1:] <= T)
        bits += (-(lp / math.log(2)) * ok).sum(0).numpy()
        counts += ok.sum(0).numpy()
    curve = {}
    edges = [e for e in CONTEXT_BINS if e < length - 1] + [length - 1]
    for lo, hi in zip(edges[:-1], edges[1:]):
        n = counts[lo:hi].sum()
        if n:
            curve[f"{lo + 1}-{hi}"] = round(float(bits[lo:hi].sum() / n), 4)
    return {"window": length, "windows": len(windows), "bits_per_base_by_context": curve}


def _genome_pieces(path: str, max_bases: int | None = None) -> list[np.ndarray]:
    genome = open_genome(path)
    pieces, total = [], 0
    for contig, n in genome.contigs.items():
        if max_bases is not None and total >= max_bases:
            break
        take = n if max_bases is None else min(n, max_bases - total)
        pieces.append(genome.fetch(contig, 0, take))
        total += take
    genome.close()
    return pieces


def _machine() -> dict:
    return {"cpus": torch.get_num_threads(), "processor": platform.machine(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def run_protocol(args) -> dict:
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
    if lm.training_config.window_length is None:  # a model saved before windows were recorded
        lm.training_config.window_length = int(window["length"])
    chunk, context = scoring_window(lm, None, args.context)

    results, curves = {}, {}
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
            results[Path(source).name + (" (held-out regions)" if i < n_train else " (held-out genome)")] = _evaluate(
                lm, markov, pieces, chunk, context)
    for path in args.genome:
        pieces = _genome_pieces(path, args.max_bases)
        key = Path(path).name + " (unseen genome)"
        results[key] = _evaluate(lm, markov, pieces, chunk, context)
        if args.context_curve:
            curves[key] = context_curve(lm, pieces, args.curve_length or chunk)
    return {
        "benchmark": "pretrain_quality",
        "run": str(run),
        "model": {"pattern": config["model"]["pattern"], "d_model": config["model"]["d_model"],
                  "parameters": sum(p.numel() for p in lm.parameters())},
        "trained": json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else None,
        "scoring": {"chunk": chunk, "context": context, "skip_first_bases_per_region": SKIP},
        "bits_per_base": results,
        **({"context_curve": curves} if curves else {}),
        "seconds": round(time.time() - started, 1),
        "machine": _machine(),
    }


def logo_protocol(args) -> dict:
    """Leave one genome out: train on the others with the recipe, score the one left out whole."""
    from genoseq.pipelines.pretrain import pretrain

    if len(args.genomes) < 2:
        raise SystemExit("--logo needs at least two --genomes")
    recipe = yaml.safe_load(Path(args.config).read_text())
    out = Path(args.out)
    rows, curves, runs = {}, {}, {}
    started = time.time()
    for held_out in args.held_out or args.genomes:
        if held_out not in args.genomes:
            raise SystemExit(f"--held-out {held_out} is not one of --genomes")
        others = [g for g in args.genomes if g != held_out]
        name = Path(held_out).name.split(".")[0]
        run_dir = out / f"without_{name}"
        if not (run_dir / "model" / "config.json").exists():
            options = {k: v for k, v in recipe.items() if k not in ("data", "out", "val_data")}
            with contextlib.redirect_stdout(sys.stderr):  # stdout is this benchmark's JSON
                pretrain(data=others, out=str(run_dir), overwrite=True, **options)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        window = config["window"]
        genomes = [open_genome(s) for s in others]
        train, _ = split_regions([g.contigs for g in genomes], val_fraction=window["val_fraction"],
                                 val_block_length=window["val_block_length"])
        train_ids = [genomes[r.source].fetch(r.contig, r.start, r.end) for r in train]
        markov = {k: MarkovModel(k).fit(train_ids) for k in ORDERS}
        del train_ids
        lm = GenoSeqLM.from_pretrained(run_dir / "model")
        chunk, context = scoring_window(lm, None, args.context)
        pieces = _genome_pieces(held_out, args.max_bases)
        key = Path(held_out).name
        rows[key] = _evaluate(lm, markov, pieces, chunk, context)
        rows[key]["scoring"] = {"chunk": chunk, "context": context}
        rows[key]["trained_on"] = [Path(g).name for g in others]
        if args.context_curve:
            curves[key] = context_curve(lm, pieces, args.curve_length or chunk)
        metrics = run_dir / "metrics.json"
        runs[key] = json.loads(metrics.read_text()) if metrics.exists() else None
    gaps = [r["model_minus_best_markov"] for r in rows.values()]
    return {
        "benchmark": "pretrain_quality_leave_one_genome_out",
        "config": str(args.config),
        "recipe": {k: recipe.get(k) for k in ("model", "window", "trainer", "seq_len_warmup")},
        "bits_per_base": rows,
        "mean_model_minus_best_markov": round(float(np.mean(gaps)), 4),
        "worst_model_minus_best_markov": round(float(np.max(gaps)), 4),
        **({"context_curve": curves} if curves else {}),
        "runs": runs,
        "seconds": round(time.time() - started, 1),
        "machine": _machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="run folder of genoseq pretrain (one-run protocol)")
    parser.add_argument("--genome", action="append", default=[], help="extra unseen genome(s) to score whole")
    parser.add_argument("--logo", action="store_true", help="leave-one-genome-out protocol over --genomes")
    parser.add_argument("--genomes", nargs="+", default=[], help="genomes for --logo (FASTA or token stores)")
    parser.add_argument("--config", help="pretraining recipe (YAML) for --logo")
    parser.add_argument("--held-out", nargs="+", default=None, help="with --logo: leave out only these of --genomes, in turn")
    parser.add_argument("--out", default="runs/logo", help="folder of the --logo runs")
    parser.add_argument("--context", type=int, default=None, help="scoring context (default: genoseq score's, a quarter of the training window)")
    parser.add_argument("--max-bases", type=int, default=None, help="score at most this many bases per genome")
    parser.add_argument("--context-curve", action="store_true", help="bits/base by context for unseen genomes")
    parser.add_argument("--curve-length", type=int, default=None, help="window of the context curve (default: training length)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.logo:
        if not args.config:
            parser.error("--logo needs --config")
        result = logo_protocol(args)
    elif args.run:
        result = run_protocol(args)
    else:
        parser.error("give --run RUN_DIR or --logo --config RECIPE --genomes ...")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
