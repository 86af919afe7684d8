"""``ReadEncoder``: a contrastive read/fragment encoder for embedding-based read mapping.

After DNA-ESA ("Embed-Search-Align"): a read and the reference fragment it was sequenced from
should land close together in one vector space, so that mapping a read starts as a
nearest-neighbour search over fragment vectors (``genoseq align``).

Architecture (one forward strand per call; the index stores both strands of every fragment)::

    ids (B, L) -> Backbone (causal blocks of genoseq.models.backbone) -> h (B, L, d_model)
               -> per-position feature MLP: GELU(W1 h) (B, L, head_hidden)
               -> mean over the valid positions (B, head_hidden)
               -> W2 -> (B, embed_dim) -> L2 normalised

The wide per-position features followed by mean pooling make the vector of a sequence the
average of local "signatures": a 250 bp read inside a 500 bp fragment shares half of the
fragment's positions (all of its local contexts), so its vector points close to the fragment's.

Training objective: InfoNCE with in-batch negatives. A batch holds B fragments and one read
simulated from each (substitutions, insertions, deletions); the read's positive is its own
fragment (same strand), the negatives the other B - 1 fragments; the loss is the mean of the
read->fragment and fragment->read cross-entropies of cosine similarities / ``temperature``.

Saved like :class:`~genoseq.models.GenoSeqLM` (``config.json`` + ``tokenizer.json`` +
``model.safetensors`` through :mod:`genoseq.models.released`); nothing is unpickled on load.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from genoseq.tokenizer import PAD, Tokenizer

from .backbone import Backbone
from .config import ModelConfig, OptimConfig
from .released import load_released, save_released

FORMAT_VERSION = 1
MODEL_TYPE = "GenoSeqReadEncoder"
CPU_MAX_TOKENS = 8192  # tokens per forward pass on CPU (see ReadEncoder.embed)


@dataclass
class EncoderConfig:
    """The encoder head and the geometry it was trained for.

    Args:
        embed_dim: Size of the output vectors (what the faiss index stores).
        head_hidden: Width of the per-position feature MLP before pooling.
        temperature: InfoNCE temperature (similarities are cosines divided by it).
        fragment_length: Reference fragment length the encoder was trained on.
        read_length: Read length the encoder was trained on.
    """

    embed_dim: int = 256
    head_hidden: int = 512
    temperature: float = 0.05
    fragment_length: int = 500
    read_length: int = 250

    def __post_init__(self) -> None:
        if self.embed_dim < 1 or self.head_hidden < 1:
            raise ValueError("embed_dim and head_hidden must be positive")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0 < self.read_length <= self.fragment_length:
            raise ValueError(f"need 0 < read_length <= fragment_length, got {self.read_length} and {self.fragment_length}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown EncoderConfig keys: {unknown}")
        return cls(**data)


class ReadEncoder(L.LightningModule):
    """Backbone + per-position feature MLP + mean pooling + projection, trained with InfoNCE.

    Training batches: ``{"fragments": (B, F) int64, "fragment_mask": (B, F) bool,
    "reads": (B, R) int64, "read_mask": (B, R) bool}``; row ``i`` of ``reads`` comes from row
    ``i`` of ``fragments``.
    """

    def __init__(
        self,
        config: ModelConfig | dict,
        encoder: EncoderConfig | dict | None = None,
        optim: OptimConfig | dict | None = None,
        tokenizer: Tokenizer | dict | None = None,
    ) -> None:
        super().__init__()
        self.config = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        self.encoder_config = encoder if isinstance(encoder, EncoderConfig) else EncoderConfig.from_dict(encoder or {})
        self.optim = optim if isinstance(optim, OptimConfig) else OptimConfig.from_dict(optim or {})
        self.tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else (
            Tokenizer.from_dict(tokenizer) if tokenizer else Tokenizer()
        )
        self.save_hyperparameters({
            "config": self.config.to_dict(),
            "encoder": self.encoder_config.to_dict(),
            "optim": self.optim.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
        })
        enc = self.encoder_config
        self.backbone = Backbone(self.config)
        self.feature = nn.Linear(self.config.d_model, enc.head_hidden)
        self.project = nn.Linear(enc.head_hidden, enc.embed_dim, bias=False)
        nn.init.normal_(self.feature.weight, std=1.0 / math.sqrt(self.config.d_model))
        nn.init.zeros_(self.feature.bias)
        nn.init.normal_(self.project.weight, std=1.0 / math.sqrt(enc.head_hidden))

    @classmethod
    def from_lm(cls, lm, encoder: EncoderConfig | dict | None = None, optim: OptimConfig | dict | None = None) -> "ReadEncoder":
        """A new encoder whose backbone starts from a pretrained :class:`GenoSeqLM`'s weights."""
        model = cls(lm.config, encoder=encoder, optim=optim, tokenizer=lm.tokenizer)
        model.backbone.load_state_dict(lm.backbone.state_dict())
        return model

    @property
    def embed_dim(self) -> int:
        return self.encoder_config.embed_dim

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unit-norm embeddings (B, embed_dim) of right-padded sequences (B, L)."""
        if attention_mask is None:
            attention_mask = input_ids != PAD
        hidden = self.backbone(input_ids)
        features = F.gelu(self.feature(hidden))
        weights = attention_mask.to(features.dtype)[..., None]
        pooled = (features * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return F.normalize(self.project(pooled).float(), dim=-1)

    # ------------------------------------------------------------------ training
    def contrastive_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Symmetric InfoNCE loss and the in-batch top-1 accuracy of read -> fragment."""
        frag = self(batch["fragments"], batch.get("fragment_mask"))
        reads = self(batch["reads"], batch.get("read_mask"))
        logits = reads @ frag.T / self.encoder_config.temperature
        target = torch.arange(logits.shape[0], device=logits.device)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        accuracy = (logits.argmax(1) == target).float().mean()
        return loss, accuracy

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        started = time.perf_counter()
        loss, accuracy = self.contrastive_loss(batch)
        batch_size = batch["reads"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/top1", accuracy, prog_bar=True, batch_size=batch_size)
        self.log("train/step_s", time.perf_counter() - started, batch_size=batch_size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, accuracy = self.contrastive_loss(batch)
        batch_size = batch["reads"].shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("val/top1", accuracy, prog_bar=True, batch_size=batch_size)
        return loss

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            exempt = param.dim() < 2 or "embedding" in name or ".filter." in name
            (no_decay if exempt else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.optim.lr, betas=self.optim.betas, eps=self.optim.eps,
        )
        total = self.optim.total_steps
        if total is None:
            steps = self.trainer.estimated_stepping_batches
            if not math.isfinite(steps):
                raise ValueError("set OptimConfig.total_steps or Trainer(max_steps=...) to size the schedule")
            total = int(steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: self.optim.lr_factor(step, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def embed(self, sequences: Sequence[np.ndarray], batch_size: int = 256, device=None,
              max_tokens: int | None = None) -> np.ndarray:
        """Embeddings (N, embed_dim) float32 of token-id arrays, batched by length (right padding).

        Sorting by length keeps padding small for reads of mixed lengths; rows come back in the
        input order. A forward pass takes at most ``batch_size`` rows and ``max_tokens`` tokens
        (default: 8192 on CPU, where small batches stay in cache and run several times faster
        per read than large ones; unbounded on GPU).
        """
        if device is None:
            device = next(self.parameters()).device
        device = torch.device(device)
        if max_tokens is None:
            max_tokens = CPU_MAX_TOKENS if device.type == "cpu" else None
        out = np.zeros((len(sequences), self.embed_dim), dtype=np.float32)
        if not len(sequences):
            return out
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        order = np.argsort(lengths, kind="stable")
        was_training = self.training
        self.eval()
        first = 0
        while first < len(order):
            width = max(1, int(lengths[order[min(first + batch_size, len(order)) - 1]]))  # sorted
            n_rows = batch_size if max_tokens is None else max(1, min(batch_size, max_tokens // width))
            rows = order[first:first + n_rows]
            width = max(1, int(lengths[rows].max()))
            ids = np.full((len(rows), width), PAD, dtype=np.int64)
            for j, row in enumerate(rows):
                ids[j, : lengths[row]] = sequences[row]
            ids_t = torch.from_numpy(ids).to(device)
            out[rows] = self(ids_t, ids_t != PAD).cpu().numpy()
            first += len(rows)
        self.train(was_training)
        return out

    # ------------------------------------------------------------------ released models
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``tokenizer.json`` and ``model.safetensors`` into ``directory``."""
        return save_released(self, directory, model_type=MODEL_TYPE, format_version=FORMAT_VERSION,
                             tokenizer=self.tokenizer, config={
                                 "model": self.config.to_dict(),
                                 "encoder": self.encoder_config.to_dict(),
                                 "training": {"optim": self.optim.to_dict()},
                             })

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "ReadEncoder":
        """Load an encoder written by :meth:`save_pretrained` (safetensors; nothing is unpickled)."""

        def build(meta: dict, tokenizer: Tokenizer) -> "ReadEncoder":
            return cls(ModelConfig.from_dict(meta["model"]), encoder=EncoderConfig.from_dict(meta["encoder"]),
                       optim=meta.get("training", {}).get("optim"), tokenizer=tokenizer)

        return load_released(directory, model_type=MODEL_TYPE, format_version=FORMAT_VERSION, build=build,
                             map_location=map_location)


__all__ = ["EncoderConfig", "ReadEncoder"]
