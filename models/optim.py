"""Optimiser parameter groups shared by the LightningModules."""

from __future__ import annotations

import torch.nn as nn


def decay_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on matrices, none on biases, norms, embeddings (token
    and k-mer tables) and long-convolution filters (``.filter.``). A tied parameter appears once."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.dim() < 2 or "embedding" in name or ".filter." in name
        (no_decay if exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
