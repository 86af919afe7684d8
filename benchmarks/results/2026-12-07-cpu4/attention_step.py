"""One training step (forward, backward, AdamW) of the long recipe's model at one length, batch 1,
one thread: seconds and peak RSS. ``recompute`` checkpoints every query block of the sliding-window
attention, as blockwise_attention did before; ``fused`` is blockwise_attention as it is.

    OMP_NUM_THREADS=1 python benchmarks/results/2026-12-07-cpu4/attention_step.py 32768 fused
"""
import json
import resource
import sys
import time

import torch
import yaml

torch.set_num_threads(1)
import genoseq.models.attention as A
from genoseq.models.config import ModelConfig
from genoseq.models.lm import GenoSeqLM
L, mode = int(sys.argv[1]), sys.argv[2]
if mode == "recompute":  # what blockwise_attention did before: every block checkpointed
    from torch.utils.checkpoint import checkpoint
    orig = A._masked_sdpa
    def wrapped(*args):
        return checkpoint(orig, *args, use_reentrant=False) if torch.is_grad_enabled() else orig(*args)
    A._masked_sdpa = wrapped
cfg = yaml.safe_load(open("configs/recipe_long_cpu.yaml"))["model"]
m = GenoSeqLM(ModelConfig(**cfg))
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
x = torch.randint(0, 4, (1, L))
t = time.perf_counter()
out = m(x); loss = (out.logits if hasattr(out, "logits") else out).float().logsumexp(-1).mean(); loss.backward(); opt.step()
print(json.dumps({"length": L, "attention_blocks": mode, "seconds": round(time.perf_counter() - t, 1),
                  "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}))
