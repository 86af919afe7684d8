"""``ReadEncoderTraining``: the LightningModule that trains a :class:`~genoseq.models.read_encoder.ReadEncoder`.

The encoder itself is a plain ``nn.Module`` so that mapping reads never imports Lightning; this
wrapper adds what ``Trainer.fit`` needs: the InfoNCE training and validation steps (their loss
and in-batch top-1 accuracy logged as ``train/*`` and ``val/*``) and AdamW with the linear
warmup + cosine schedule of the encoder's :class:`~genoseq.models.config.OptimConfig`::

    task = ReadEncoderTraining(ReadEncoder(None, encoder=EncoderConfig(kmer=6)))
    Trainer(max_steps=1000).fit(task, train_dataloaders=loader)
    task.encoder.save_pretrained("encoder/")
"""

from __future__ import annotations

import math
import time

import lightning as L
import torch

from .optim import warmup_cosine
from .read_encoder import ReadEncoder


class ReadEncoderTraining(L.LightningModule):
    """Trains ``encoder`` (kept as ``self.encoder``) on batches of :func:`genoseq.tasks.align.collate_pairs`."""

    def __init__(self, encoder: ReadEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.save_hyperparameters({
            "config": None if encoder.config is None else encoder.config.to_dict(),
            "encoder": encoder.encoder_config.to_dict(),
            "optim": encoder.optim.to_dict(),
            "tokenizer": encoder.tokenizer.to_dict(),
        })

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        started = time.perf_counter()
        loss, accuracy = self.encoder.contrastive_loss(batch)
        batch_size = batch["reads"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/top1", accuracy, prog_bar=True, batch_size=batch_size)
        self.log("train/step_s", time.perf_counter() - started, batch_size=batch_size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, accuracy = self.encoder.contrastive_loss(batch)
        batch_size = batch["reads"].shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("val/top1", accuracy, prog_bar=True, batch_size=batch_size)
        return loss

    def configure_optimizers(self):
        optim = self.encoder.optim
        total = optim.total_steps
        if total is None:
            steps = self.trainer.estimated_stepping_batches
            if not math.isfinite(steps):
                raise ValueError("set OptimConfig.total_steps or Trainer(max_steps=...) to size the schedule")
            total = int(steps)
        return warmup_cosine(self, optim, total)


__all__ = ["ReadEncoderTraining"]
