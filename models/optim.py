"""The optimiser and learning-rate schedule shared by the LightningModules: AdamW over
:func:`decay_groups`, linear warmup then cosine decay (:meth:`OptimConfig.lr_factor`), per step."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import OptimConfig

#: Fine-tuning (classifier, segmenter) decays the learning rate to this share of its peak.
FINETUNE_MIN_LR_RATIO = 0.1
#: Fine-tuning steps assumed when no Trainer estimates them (a module used outside ``fit``).
FINETUNE_DEFAULT_STEPS = 10_000


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


def warmup_cosine(module: nn.Module, optim: OptimConfig, total_steps: int) -> dict:
    """A LightningModule's ``configure_optimizers`` answer: AdamW over ``module``'s
    :func:`decay_groups` with ``optim``'s settings, and ``optim.lr_factor`` stepped per batch."""
    optimizer = torch.optim.AdamW(decay_groups(module, optim.weight_decay), lr=optim.lr, betas=optim.betas,
                                  eps=optim.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: optim.lr_factor(step, total_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def finetune_optimizers(module, lr: float, weight_decay: float, warmup_ratio: float) -> dict:
    """:func:`warmup_cosine` for a fine-tuned model: the Trainer's estimate of the steps (else
    :data:`FINETUNE_DEFAULT_STEPS`), warmup over ``warmup_ratio`` of them, cosine decay to
    :data:`FINETUNE_MIN_LR_RATIO`, AdamW betas (0.9, 0.98)."""
    total = module.trainer.estimated_stepping_batches if module._trainer is not None else float("inf")
    total = int(total) if math.isfinite(total) else FINETUNE_DEFAULT_STEPS
    optim = OptimConfig(lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98), warmup_steps=max(1, int(warmup_ratio * total)),
                        min_lr_ratio=FINETUNE_MIN_LR_RATIO)
    return warmup_cosine(module, optim, total)
