"""Speed and memory of the genoseq backbones; prints one JSON document.

    python benchmarks/bench_models.py            # L = 1k, 8k, 32k; scoring 64 kb, 256 kb, 1 Mb
    python benchmarks/bench_models.py --quick    # a couple of minutes on a laptop CPU

Sections:
  train     tokens/s and peak memory of one training step (forward, backward, AdamW) for each
            block type and a hybrid, batch 1, at each length
  score     token_log_probs on real sequence (E. coli when the shared data is there, else the
            bundled lambda genome tiled): a streamed pure-Mamba2 model and a windowed hybrid
  generate  tokens/s of sampling with caches vs recomputing the full forward at each step

Peak memory is ``torch.cuda.max_memory_allocated`` on GPU, and on CPU the rise of the
process's resident set size during the measurement (sampled every 2 ms), after the C heap's
free pages are handed back (``malloc_trim``) so reused memory counts too.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import torch

from genoseq import Tokenizer, default_genome
from genoseq.models import GenoSeqLM, ModelConfig, OptimConfig, generate, token_log_probs

PATTERNS = {"hyena": "HH", "mamba2": "MM", "attention": "AA", "hybrid": "MMHA"}


def _release_free_heap() -> None:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim``), so the next
    measurement's allocations raise the resident set size again."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the rise may then read low
        pass


class PeakMemory:
    """Peak memory (bytes) used while the block runs, on the given device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        _release_free_heap()  # else memory malloc kept from the warm-up hides the rise
        self.start = self.peak_abs = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_abs = max(self.peak_abs, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self._stop.set()
            self._thread.join()
            self.peak = self.peak_abs - self.start


def make_model(pattern: str, d_model: int, device: torch.device) -> GenoSeqLM:
    cfg = ModelConfig(d_model=d_model, pattern=pattern, n_heads=4, headdim=32, d_state=32,
                      chunk_size=64, hyena_filter_len=1024, hyena_filter_dim=32)
    return GenoSeqLM(cfg, OptimConfig(warmup_steps=1, total_steps=100)).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def lm_training_step(model: GenoSeqLM, optimizer: torch.optim.Optimizer, ids: torch.Tensor):
    """A function running one language-model training step on ``ids`` (bf16 autocast on CUDA)."""
    device = ids.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        with autocast:
            loss, _ = model.lm_loss({"input_ids": ids})
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def bench_train(device, lengths, d_model, repeats, recipe: str | None = None) -> list[dict]:
    """One training step at batch 1 per block type and length; with ``recipe`` (a pretraining
    YAML) also the recipe's own model at its own batch and window length."""
    results = []
    cases = [(name, make_model(pattern, d_model, device), lengths, 1) for name, pattern in PATTERNS.items()]
    if recipe:
        import yaml

        config = yaml.safe_load(Path(recipe).read_text())
        window = config.get("window", {})
        model = GenoSeqLM(ModelConfig(**config["model"]), OptimConfig(warmup_steps=1, total_steps=100)).to(device)
        cases.append(("recipe", model, [int(window.get("length", 1024))], int(window.get("batch_size", 8))))
    for name, model, case_lengths, batch in cases:
        pattern = model.config.pattern
        model = model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for L in case_lengths:
            step = lm_training_step(model, optimizer, torch.randint(5, 9, (batch, L), device=device))
            try:
                step()  # warm up (and Triton compilation on GPU)
                sync(device)
                with PeakMemory(device) as mem:
                    t0 = time.perf_counter()
                    for _ in range(repeats):
                        step()
                    sync(device)
                    seconds = (time.perf_counter() - t0) / repeats
                results.append({"block": name, "pattern": pattern, "length": L, "batch": batch,
                                "tokens_per_s": round(batch * L / seconds, 1),
                                "step_s": round(seconds, 4), "peak_mem_mb": round(mem.peak / 2**20, 1)})
            except (RuntimeError, MemoryError) as err:  # out of memory at the longest lengths
                results.append({"block": name, "pattern": pattern, "length": L, "error": str(err).splitlines()[0][:200]})
            print(json.dumps(results[-1]), flush=True, file=__import__("sys").stderr)
    return results


def load_sequence(length: int) -> np.ndarray:
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ecoli_k12_mg1655.fa.gz"
    if shared.exists():
        with gzip.open(shared, "rt") as fh:
            seq = "".join(line.strip() for line in fh if not line.startswith(">"))
        source = "E. coli K-12 MG1655"
    else:
        seq = "".join(line.strip() for line in open(default_genome()) if not line.startswith(">"))
        source = "phage lambda (tiled)"
    ids = Tokenizer().encode(seq)
    return np.tile(ids, -(-length // len(ids)))[:length], source


def bench_score(device, lengths, d_model, chunk_size, context) -> list[dict]:
    results = []
    longest, source = load_sequence(max(lengths))
    for name, pattern in (("mamba2 (streamed)", "MM"), ("hybrid (windowed)", "MMHA")):
        model = make_model(pattern, d_model, device).eval()
        token_log_probs(model, longest[:chunk_size * 2], chunk_size=chunk_size, context=context, device=device)
        for L in lengths:
            with PeakMemory(device) as mem:
                t0 = time.perf_counter()
                lp = token_log_probs(model, longest[:L], chunk_size=chunk_size, context=context, device=device)
                sync(device)
                seconds = time.perf_counter() - t0
            results.append({"model": name, "pattern": pattern, "length": L, "seconds": round(seconds, 2),
                            "bases_per_s": round(L / seconds, 1), "peak_mem_mb": round(mem.peak / 2**20, 1),
                            "mean_bits_per_base": round(float(-lp.mean()) / np.log(2), 3), "sequence": source})
            print(json.dumps(results[-1]), flush=True, file=__import__("sys").stderr)
    return results


def bench_generate(device, d_model, prompt_len, new_tokens) -> list[dict]:
    results = []
    prompt, _ = load_sequence(prompt_len)
    for name, pattern in (("mamba2", "MM"), ("hybrid", "MMHA"), ("hyena", "HH")):
        model = make_model(pattern, d_model, device).eval()
        for recompute in (False, True):
            generate(model, prompt, 4, recompute=recompute, seed=0, device=device)
            t0 = time.perf_counter()
            generate(model, prompt, new_tokens, num_samples=4, recompute=recompute, seed=0, device=device)
            sync(device)
            seconds = time.perf_counter() - t0
            results.append({"model": name, "pattern": pattern, "mode": "recompute" if recompute else "cached",
                            "prompt": prompt_len, "new_tokens": new_tokens, "samples": 4,
                            "tokens_per_s": round(4 * new_tokens / seconds, 1)})
            print(json.dumps(results[-1]), flush=True, file=__import__("sys").stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short lengths, few repeats")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--recipe", default=None, help="also time a training step of this pretraining recipe (YAML)")
    parser.add_argument("--only", choices=["train", "score", "generate"], default=None, help="run one section")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(0)
    if args.quick:
        train_lengths, score_lengths, repeats, new_tokens = [1024, 8192], [65_536, 262_144], 2, 64
    else:
        train_lengths, score_lengths, repeats, new_tokens = [1024, 8192, 32_768], [65_536, 262_144, 1_048_576], 3, 256
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "d_model": args.d_model,
        "quick": args.quick,
        "memory": "torch.cuda.max_memory_allocated above the start" if device.type == "cuda" else
                  "rise of the process RSS during the measurement, after malloc_trim of the free heap",
    }
    if args.only in (None, "train"):
        report["train"] = bench_train(device, train_lengths, args.d_model, repeats, args.recipe)
    if args.only in (None, "score"):
        report["score"] = bench_score(device, score_lengths, args.d_model, chunk_size=8192, context=2048)
    if args.only in (None, "generate"):
        report["generate"] = bench_generate(device, args.d_model, prompt_len=256, new_tokens=new_tokens)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
