"""Does an architecture learn in-context copying? A synthetic control; prints one JSON document.

    python benchmarks/bench_copy_task.py                                   # HHMA, d_model 64, copies at any distance
    python benchmarks/bench_copy_task.py --gap 0 --segment 64 64 --length 128   # a segment and its copy right after
    python benchmarks/bench_copy_task.py --pattern HA --model-options '{"rope_fraction": 0, "attention_conv": 4}'
    python benchmarks/bench_copy_task.py --pattern A --heads 2 --model-options '{"rope_fraction": 0, "attention_conv": 8, "attention_init": "induction"}'
    python benchmarks/bench_copy_task.py --genome genome.fa --pattern HHMA --d-model 128 --heads 2 --length 1024 --batch 8 \
        --segment 64 256 --model-options '{"rope_fraction": 0, "attention_conv": 12, "attention_init": "induction"}'

Every training row is uniformly random tokens (``--vocab`` of them: the four bases, or more to
see whether short keys are what makes DNA hard), or a window of a real genome (``--genome``), in which one segment of ``--segment`` tokens is
copied again further on: right after its end (``--gap 0``, so always the same distance back, which
positional attention alone can solve), a fixed gap, or a gap log-uniform over the room in the row
(``--gap -1``, the default: the model has to find the earlier occurrence by its content, an
induction mechanism). In random rows nothing else is predictable, so every other base costs
log2(vocab) bits; a model that copies predicts the copy (after its first few tokens) at near 0.

The model is genoseq's language model (``--pattern``, ``--d-model`` and any ``ModelConfig`` field in
``--model-options``) trained with AdamW from scratch; the output is, every ``--eval-every`` steps,
the mean bits per token over those steps of the copied tokens (their first is not counted: it
cannot be known) and of the others.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch
import torch.nn.functional as F

from genoseq.genome import open_genome
from genoseq.models import ModelConfig
from genoseq.tokenizer import N
from genoseq.models.lm import GenoSeqLM


def genome_rows(genome, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``batch`` windows of ``length`` bases of ``genome`` at random places and strands, without N."""
    contigs = [(name, n) for name, n in genome.contigs.items() if n >= length]
    if not contigs:
        raise SystemExit(f"no contig of the genome holds {length} bases")
    weights = torch.tensor([float(n - length + 1) for _, n in contigs])
    rows = []
    while len(rows) < batch:
        name, n = contigs[int(torch.multinomial(weights, 1, generator=generator))]
        start = int(torch.randint(0, n - length + 1, (), generator=generator))
        strand = "+" if torch.rand((), generator=generator) < 0.5 else "-"
        ids = torch.as_tensor(genome.fetch(name, start, start + length, strand).astype("int64"))
        if not (ids == N).any():
            rows.append(ids)
    return torch.stack(rows)


def copy_rows(alphabet: torch.Tensor, batch: int, length: int, segment: tuple[int, int], gap: int,
              generator: torch.Generator, genome=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rows (batch, length) of ``alphabet`` tokens (or windows of ``genome``), each with one
    copied segment, and a mask of the copied tokens after the first of each copy."""
    if genome is not None:
        ids = genome_rows(genome, batch, length, generator)
    else:
        ids = alphabet[torch.randint(0, len(alphabet), (batch, length), generator=generator)]
    copied = torch.zeros(batch, length, dtype=torch.bool)
    for row in range(batch):
        s = int(torch.randint(segment[0], segment[1] + 1, (), generator=generator))
        room = length - 2 * s
        if room < max(gap, 0):
            raise SystemExit(f"a row of {length} tokens has no room for two segments of {s} and a gap of {gap}")
        g = gap if gap >= 0 else min(room, int(math.exp(torch.rand((), generator=generator).item() * math.log(max(room, 1)))))
        src = int(torch.randint(0, room - g + 1, (), generator=generator))
        dst = src + s + g
        ids[row, dst : dst + s] = ids[row, src : src + s]
        copied[row, dst + 1 : dst + s] = True
    return ids, copied


def train(args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(args.seed)
    options = dict(d_model=args.d_model, pattern=args.pattern, n_heads=args.heads, d_state=32, headdim=32,
                   hyena_filter_dim=32, hyena_filter_len=args.length)
    lm = GenoSeqLM(ModelConfig(**{**options, **json.loads(args.model_options)}))
    bases = torch.as_tensor(lm.tokenizer.encode("ACGT")).long().flatten()[-4:]
    alphabet = bases if args.vocab == 4 else torch.arange(args.vocab)
    if args.vocab > lm.config.vocab_size:
        raise SystemExit(f"--vocab {args.vocab} is more than the model's vocab_size {lm.config.vocab_size}")
    opt = torch.optim.AdamW(lm.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    generator = torch.Generator().manual_seed(args.seed + 1)
    genome = open_genome(args.genome) if args.genome else None
    curve, sums, start = [], [0.0, 0, 0.0, 0], time.time()
    for step in range(1, args.steps + 1):
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, step / args.warmup)
        ids, copied = copy_rows(alphabet, args.batch, args.length, tuple(args.segment), args.gap, generator, genome)
        logits = lm(ids)[:, :-1]
        nll = F.cross_entropy(logits.transpose(1, 2).float(), ids[:, 1:], reduction="none")
        opt.zero_grad()
        nll.mean().backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        mask = copied[:, 1:]
        sums[0] += nll[mask].sum().item(); sums[1] += int(mask.sum())
        sums[2] += nll[~mask].sum().item(); sums[3] += int((~mask).sum())
        if step % args.eval_every == 0:
            curve.append({"step": step, "copy_bits": round(sums[0] / max(sums[1], 1) / math.log(2), 4),
                          "other_bits": round(sums[2] / max(sums[3], 1) / math.log(2), 4),
                          "seconds": round(time.time() - start, 1)})
            print(json.dumps(curve[-1]), flush=True)
            sums = [0.0, 0, 0.0, 0]
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pattern", default="HHMA")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--model-options", default="{}", help="more ModelConfig fields, as JSON")
    parser.add_argument("--length", type=int, default=256, help="tokens per row")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--segment", type=int, nargs=2, default=[16, 64], metavar=("MIN", "MAX"))
    parser.add_argument("--gap", type=int, default=-1, help="tokens between a segment and its copy (-1: log-uniform)")
    parser.add_argument("--vocab", type=int, default=4, help="4: the bases; more: token ids 0..vocab-1")
    parser.add_argument("--genome", help="FASTA: rows are windows of this genome (either strand) instead of random tokens")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    curve = train(args)
    print(json.dumps({"benchmark": "copy_task", "machine": platform.processor() or platform.machine(),
                      "torch": torch.__version__, "threads": args.threads,
                      "settings": {k: v for k, v in vars(args).items() if k != "threads"}, "curve": curve}, indent=2))


if __name__ == "__main__":
    main()
