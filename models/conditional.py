"""Conditional generation on top of :class:`~genoseq.models.lm.GenoSeqLM`.

A conditional model is an ordinary ``GenoSeqLM`` whose tokenizer knows one condition token
per label (``[COND:coding]``, ``[COND:q3]``...) and that was fine-tuned on sequences that start
with their label's token. Nothing else changes, so it saves and loads like any released model.

* :func:`add_condition_labels` adds the tokens: new ids get embedding (and, untied, LM-head)
  rows set to the mean of the rows the model already knew, so the pretrained rows are left
  exactly as they were; the embedding grows (to a multiple of 8) when ``vocab_size`` has no room.
* :func:`sample_constrained` samples designs with the incremental state of the backbone
  (one recurrent / cached step per base, as :func:`genoseq.models.inference.generate`), applies a
  :class:`genoseq.design.ConstraintMasker` before every step, and accepts per-row prefixes of
  equal length (a condition token and a prompt, or the left part of a design being refined).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from genoseq.design import ConstraintMasker
from genoseq.tokenizer import A, T

from .inference import _sample, require_causal
from .lm import GenoSeqLM


def _round_up(n: int, multiple: int = 8) -> int:
    return -(-n // multiple) * multiple


def grow_vocabulary(lm: GenoSeqLM, vocab_size: int) -> None:
    """Enlarge the embedding (and the LM head) to ``vocab_size`` rows, keeping every existing row.

    New rows are drawn as at initialisation (N(0, 0.02)); the tie between embedding and head is
    kept. ``lm.config.vocab_size`` is updated, so ``save_pretrained`` records the new size.
    """
    old = lm.backbone.embedding
    if vocab_size <= old.num_embeddings:
        return
    new = nn.Embedding(vocab_size, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        nn.init.normal_(new.weight, std=0.02)
        new.weight[: old.num_embeddings] = old.weight
    lm.backbone.embedding = new
    old_head = lm.lm_head
    lm.lm_head = nn.Linear(old.embedding_dim, vocab_size, bias=False, device=new.weight.device, dtype=new.weight.dtype)
    if lm.config.tie_embeddings:
        lm.lm_head.weight = new.weight
    else:
        with torch.no_grad():
            nn.init.normal_(lm.lm_head.weight, std=0.02)
            lm.lm_head.weight[: old_head.out_features] = old_head.weight
    lm.config.vocab_size = vocab_size
    lm.hparams["config"] = lm.config.to_dict()


def add_condition_labels(lm: GenoSeqLM, labels: Sequence[str]) -> list[int]:
    """Give ``lm`` a condition token for every label it does not know yet; return all labels' ids.

    A new token's embedding row (and LM-head row when the head is not tied) is the mean of the
    rows of the tokens the model knew before, a neutral start that fine-tuning moves. Rows of
    existing ids are not touched.
    """
    known = lm.tokenizer.vocab_size
    fresh = [str(label) for label in dict.fromkeys(labels) if str(label) not in lm.tokenizer.condition_labels]
    ids = lm.tokenizer.add_condition_tokens(labels)
    if not fresh:
        return ids
    if lm.tokenizer.vocab_size > lm.config.vocab_size:
        grow_vocabulary(lm, _round_up(lm.tokenizer.vocab_size))
    new_ids = torch.tensor([lm.tokenizer.condition_id(label) for label in fresh])
    with torch.no_grad():
        weight = lm.backbone.embedding.weight
        weight[new_ids] = weight[:known].mean(0)
        if not lm.config.tie_embeddings:
            head = lm.lm_head.weight
            head[new_ids] = head[:known].mean(0)
    lm.hparams["tokenizer"] = lm.tokenizer.to_dict()
    return ids


@torch.inference_mode()
def sample_constrained(
    model: GenoSeqLM,
    prefixes: torch.Tensor,
    history: np.ndarray,
    num_new: int,
    *,
    masker: ConstraintMasker | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Sample ``num_new`` bases after each row of ``prefixes``; returns base indices (B, num_new)
    in 0..3 (A C G T).

    ``prefixes`` (B, P) are token ids fed to the model (condition token, prompt or the left part
    of a design; all rows the same length, P >= 1). ``history`` (B, t) holds the bases the
    constraints see before the new ones, as base indices (-1 for N): usually the prompt or the
    design's left part without the condition token. Decoding uses the backbone's cache: the
    prefix is run once, then each base is one incremental step.
    """
    require_causal(model)
    if prefixes.dim() != 2 or prefixes.shape[1] < 1:
        raise ValueError(f"prefixes must be (batch, length >= 1), got shape {tuple(prefixes.shape)}")
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    model.eval()
    device = next(model.parameters()).device
    rows = prefixes.shape[0]
    written = np.concatenate([np.asarray(history, dtype=np.int8).reshape(rows, -1),
                              np.zeros((rows, num_new), dtype=np.int8)], axis=1)
    start = written.shape[1] - num_new
    if num_new == 0:
        return written[:, start:]
    cache = model.new_cache(max_len=prefixes.shape[1] + num_new)
    logits = model(prefixes.to(device), cache=cache)[:, -1]
    for step in range(num_new):
        base_logits = logits[:, A : T + 1].float()  # only A C G T can be written
        if masker is not None:
            allowed = torch.from_numpy(masker.allowed(written[:, : start + step])).to(device)
            base_logits = base_logits.masked_fill(~allowed, float("-inf"))
        choice = _sample(base_logits, temperature, top_k, top_p, generator)
        written[:, start + step] = choice.cpu().numpy()
        if step + 1 < num_new:
            logits = model((choice + A)[:, None], cache=cache)[:, -1]
    return written[:, start:]


__all__ = ["add_condition_labels", "grow_vocabulary", "sample_constrained"]
