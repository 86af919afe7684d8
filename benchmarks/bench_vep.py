"""Variants per second of ``genoseq vep``'s scorer, next to one full forward pass per window.

The scorer runs the prefix a reference window shares with its alternative alleles once
(through the inference cache) and continues each window from it; the baseline here scores
every window with its own full pass (what the scorer did before). Both score the same
variants, alternately, ``--repeats`` times; the JSON gives the median variants/s of each and
the largest LLR difference between them::

    python benchmarks/bench_vep.py --model runs/recipe/model --reference data/saureus_n315.fa \\
        --vcf ../shared/data/saureus_snvs.vcf.gz --variants 300 --threads 1
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import tempfile
import time

import numpy as np
import pysam
import torch

from genoseq.tasks.variants import Variant, VariantEffectScorer


def full_pass_log_likelihoods(scorer: VariantEffectScorer, windows: list[np.ndarray], offsets: list[int]) -> np.ndarray:
    """The baseline: each window in its own full forward pass (right-padded batches of windows)."""
    from genoseq.tokenizer import PAD

    lengths = np.array([len(w) for w in windows])
    out = np.zeros(len(windows))
    order = np.argsort(-lengths, kind="stable")
    for b in range(0, len(order), scorer.batch_size):
        rows = order[b : b + scorer.batch_size]
        width = int(lengths[rows].max())
        batch = np.full((len(rows), width), PAD, dtype=np.int64)
        for k, row in enumerate(rows):
            batch[k, : lengths[row]] = windows[row]
        ids = torch.from_numpy(batch).to(scorer.device)
        with torch.inference_mode():
            lp = torch.log_softmax(scorer.model(ids)[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
        first = torch.tensor([max(offsets[r], 1) for r in rows], device=scorer.device)[:, None]
        counted = (torch.arange(1, width, device=scorer.device)[None] >= first) & scorer.tokenizer.is_base(ids[:, 1:])
        out[rows] = (lp * counted).sum(1).double().cpu().numpy()
    return out


def read_variants(path: str, n: int) -> list[Variant]:
    with tempfile.NamedTemporaryFile("wb", suffix=".vcf") as plain:
        with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as fh:
            plain.write(fh.read())
        plain.flush()
        with pysam.VariantFile(plain.name) as vcf:
            return [Variant(r.chrom, r.pos, r.ref, r.alts[0]) for r, _ in zip(vcf, range(n)) if r.alts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--vcf", required=True)
    parser.add_argument("--variants", type=int, default=300)
    parser.add_argument("--window-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = read_variants(args.vcf, args.variants)
    seconds: dict[str, list[float]] = {"shared_prefix": [], "full_pass_per_window": []}
    llr: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name in seconds:
            scorer = VariantEffectScorer(args.model, args.reference, window_length=args.window_length, device="cpu",
                                         cache_size=0)
            if name == "full_pass_per_window":
                scorer._log_likelihoods = full_pass_log_likelihoods.__get__(scorer)
            started = time.perf_counter()
            effects = scorer.score(variants)
            seconds[name].append(time.perf_counter() - started)
            llr[name] = np.array([e.llr for e in effects], dtype=float)
    median = {k: float(np.median(v)) for k, v in seconds.items()}
    print(json.dumps({
        "benchmark": "vep_speed", "model": args.model, "vcf": args.vcf, "variants": len(variants),
        "window_length": args.window_length, "strands": "both", "threads": torch.get_num_threads(),
        "seconds": {k: [round(x, 2) for x in v] for k, v in seconds.items()},
        "variants_per_s": {k: round(len(variants) / v, 1) for k, v in median.items()},
        "speedup": round(median["full_pass_per_window"] / median["shared_prefix"], 2),
        "max_abs_llr_difference": float(np.nanmax(np.abs(llr["shared_prefix"] - llr["full_pass_per_window"]))),
        "machine": platform.machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
