"""The backbone: token embedding, the stack of blocks named by the pattern, a final norm.

Init (GPT-2 / nanoGPT style, stable at depth): every linear and the embedding ~ N(0, 0.02);
the projections that write into the residual stream (``out_proj`` of each mixer, ``w_out`` of
each MLP) ~ N(0, 0.02 / sqrt(2 * n_layers)), so the residual stream's variance stays bounded
however deep the stack. Mamba2's dt / A / D and Hyena's implicit filters keep their own inits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .blocks import Block, make_norm
from .config import ModelConfig

RESIDUAL_OUTPUTS = ("out_proj.weight", "w_out.weight")


@dataclass
class InferenceCache:
    """Per-layer caches for incremental inference and the number of positions already seen.

    ``max_len`` bounds attention and Hyena caches; a pure-Mamba2 stack needs none (``None``)
    since its state has a fixed size.
    """

    layers: list
    max_len: int | None
    offset: int = 0

    def select(self, rows) -> "InferenceCache":
        """A cache whose row ``j`` continues row ``rows[j]`` of this one: one shared prefix,
        run once, then continued several ways (e.g. a reference and an alternative allele)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return InferenceCache([layer.select(rows) for layer in self.layers], self.max_len, self.offset)


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            Block(cfg, kind, cfg.attention_window_of(i)) for i, kind in enumerate(cfg.layer_types)
        )
        self.norm_f = make_norm(cfg)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        for module in self.modules():
            if module is not self and hasattr(module, "reset_special_parameters"):
                module.reset_special_parameters()
        out_std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, param in self.named_parameters():
            if name.endswith(RESIDUAL_OUTPUTS) and ".filter." not in name:
                nn.init.normal_(param, std=out_std)

    def new_cache(self, max_len: int | None = None) -> InferenceCache:
        """An empty cache; ``max_len`` is required when the stack has attention or Hyena layers."""
        return InferenceCache([layer.new_cache(max_len) for layer in self.layers], max_len)

    def forward(
        self,
        input_ids: torch.Tensor,
        seq_idx: torch.Tensor | None = None,
        cache: InferenceCache | None = None,
        output_hidden_states: bool = False,
        num_layers: int | None = None,
        cp=None,
    ):
        """Final normed hidden states (B, L, D).

        With ``output_hidden_states`` also returns the residual stream after the embedding
        and after each block (``n_layers + 1`` tensors). ``num_layers`` runs only the first
        ``num_layers`` blocks and returns the residual stream there, unnormalised.
        ``cp`` (a :class:`~genoseq.models.parallel.ContextParallel`): ``input_ids`` is this rank's
        slice of the sequence, and so is the output. Blocks named by ``cfg.checkpointing`` are
        recomputed in the backward pass whenever gradients are on (no cache).
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        if seq_idx is not None and seq_idx.shape != input_ids.shape:
            raise ValueError(f"seq_idx must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(seq_idx.shape)}")
        offset = 0 if cache is None else cache.offset
        x = self.drop(self.embedding(input_ids))
        hidden = [x] if output_hidden_states else None
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        if cp is not None and (seq_idx is not None or cache is not None):
            raise ValueError("context parallelism runs whole unpacked windows: no seq_idx, no inference cache")
        recompute = cache is None and torch.is_grad_enabled()
        for i, layer in enumerate(layers):
            if recompute and self.cfg.checkpointed(i):
                x = checkpoint(layer, x, seq_idx, None, 0, cp, use_reentrant=False)
            else:
                x = layer(x, seq_idx=seq_idx, cache=None if cache is None else cache.layers[i], offset=offset, cp=cp)
            if hidden is not None:
                hidden.append(x)
        return finish_forward(x, hidden, self.norm_f, cache, input_ids.shape[1], num_layers, output_hidden_states)


def finish_forward(x: torch.Tensor, hidden: list | None, norm_f: nn.Module, cache: InferenceCache | None,
                   n_tokens: int, num_layers: int | None, output_hidden_states: bool):
    """The end of every backbone's forward: move the cache on by ``n_tokens``, then return the
    residual stream after ``num_layers`` blocks, or the final norm of it (with ``hidden``, the
    stream after the embedding and after each block, when ``output_hidden_states``)."""
    if cache is not None:
        cache.offset += n_tokens
    if num_layers is not None:
        return x
    x = norm_f(x)
    return (x, hidden) if output_hidden_states else x
