"""``genoseq generate``: sample sequences from a pretrained model into a FASTA file.

Decoding is incremental (Mamba2 recurrent state, attention KV cache, Hyena cached inputs), so
each new base costs one step, not a forward pass over everything generated so far.
"""

from __future__ import annotations

import json
from pathlib import Path


def generate(
    model: str,
    prompt: str = "",
    max_new_tokens: int = 200,
    num_samples: int = 1,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    condition: str | None = None,
    out: str = "generated.fa",
    device: str = "auto",
    line_width: int = 80,
) -> list[str]:
    """Sample continuations of a prompt and write them as FASTA.

    Each record holds the prompt followed by the new bases; its header records the settings.

    Args:
        model: Model folder (``RUN_DIR/model`` from ``genoseq pretrain``).
        prompt: Bases to continue (A C G T N, any case); empty starts from the beginning token.
        max_new_tokens: Bases to generate per sample.
        num_samples: Number of sequences.
        temperature: Softmax temperature; 0 is greedy.
        top_k: Sample among the k most likely bases only.
        top_p: Nucleus sampling: the smallest set of bases with this total probability.
        seed: Random seed (the same seed gives the same sequences).
        condition: Condition label of a conditionally fine-tuned model (prepends its token).
        out: Output FASTA.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:0``...
        line_width: Bases per FASTA line.
    """
    from genoseq.models.inference import generate as sample
    from genoseq.models.lm import GenoSeqLM
    from genoseq.runtime import atomic_output, resolve_device

    if num_samples < 1 or max_new_tokens < 1:
        raise ValueError("num_samples and max_new_tokens must be >= 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    dev = resolve_device(device)
    lm = GenoSeqLM.from_pretrained(model, map_location=dev)
    prompt_ids = lm.tokenizer.encode(prompt, name="prompt")
    condition_ids = [lm.tokenizer.condition_id(condition)] if condition else None
    ids = sample(lm, prompt_ids, max_new_tokens, num_samples=num_samples, temperature=temperature,
                 top_k=top_k, top_p=top_p, seed=seed, condition_ids=condition_ids, device=dev)
    seqs = [lm.tokenizer.decode(row) for row in ids]
    settings = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed,
                "prompt_length": len(prompt_ids), "condition": condition}
    with atomic_output(out) as fh:
        for i, seq in enumerate(seqs):
            fh.write(f">sample_{i} {json.dumps(settings, separators=(',', ':'))}\n")
            for start in range(0, len(seq), line_width):
                fh.write(seq[start : start + line_width] + "\n")
    print(f"genoseq generate: {num_samples} x {max_new_tokens} new bases -> {Path(out)}")
    return seqs
