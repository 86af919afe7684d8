"""``ReadEncoder``: a contrastive read/fragment encoder for embedding-based read mapping.

After DNA-ESA ("Embed-Search-Align"): a read and the reference fragment it was sequenced from
should land close together in one vector space, so that mapping a read starts as a
nearest-neighbour search over fragment vectors (``genoseq align``).

Two architectures (one forward strand per call; the index stores both strands of every
fragment), chosen by :attr:`EncoderConfig.kmer`:

``kmer = k > 0`` (the default of ``genoseq align train``), a k-mer embedding bag::

    ids (B, L) -> the L - k + 1 overlapping k-mers (those with N or padding left out)
               -> a learned vector per k-mer (4**k x embed_dim table), summed -> L2 normalised

``kmer = 0``, a sequence model::

    ids (B, L) -> Backbone (causal blocks of genoseq.models.backbone) -> h (B, L, d_model)
               -> per-position feature MLP: GELU(W1 h) (B, L, head_hidden)
               -> mean over the valid positions (B, head_hidden)
               -> W2 -> (B, embed_dim) -> L2 normalised

Both make the vector of a sequence a sum of local "signatures": a 250 bp read inside a 500 bp
fragment shares about half of the fragment's local contexts, so its vector points close to the
fragment's. With k-mers the signatures are exact: the cosine of two bags is about the number of
k-mers they share over the geometric mean of their sizes, plus the cross terms of different
k-mers' vectors, which contrastive training pushes apart. A sequencing error removes only the k
k-mers that cover it. The bag costs a table lookup per base, where the sequence model runs its
blocks at every position; on two CPU cores that is ~120k 250 bp reads/s against ~1k.

Training objective: InfoNCE with in-batch negatives. A batch holds B fragments and one read
simulated from each (substitutions, insertions, deletions); the read's positive is its own
fragment (same strand), the negatives the other B - 1 fragments; the loss is the mean of the
read->fragment and fragment->read cross-entropies of cosine similarities / ``temperature``.

The encoder is a plain ``nn.Module``, so mapping reads (``genoseq align map``, the API) loads
no Lightning (its import alone takes ~4 s of a short run); training wraps it in
:class:`~genoseq.models.read_encoder_training.ReadEncoderTraining`, a LightningModule.

Saved like :class:`~genoseq.models.GenoSeqLM` (``config.json`` + ``tokenizer.json`` +
``model.safetensors`` through :mod:`genoseq.models.released`); nothing is unpickled on load.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from genoseq.tokenizer import A, PAD, Tokenizer

from .backbone import Backbone
from .config import ModelConfig, OptimConfig
from .released import load_released, save_released

FORMAT_VERSION = 1
MODEL_TYPE = "GenoSeqReadEncoder"
CPU_MAX_TOKENS = 8192  # tokens per forward pass of the sequence model on CPU (see ReadEncoder.embed)
KMER_MAX_TOKENS = 1 << 20  # the k-mer bag is a lookup: large batches cost nothing in cache
MAX_KMER = 10  # the table has 4**k rows: 1M x embed_dim floats at k = 10


@dataclass
class EncoderConfig:
    """The encoder head and the geometry it was trained for.

    Args:
        embed_dim: Size of the output vectors (what the faiss index stores).
        head_hidden: Width of the per-position feature MLP before pooling (sequence model only).
        temperature: InfoNCE temperature (similarities are cosines divided by it).
        fragment_length: Reference fragment length the encoder was trained on.
        read_length: Read length the encoder was trained on.
        kmer: ``k`` of the k-mer embedding bag (1 to ``MAX_KMER``); 0 for the sequence model
            (a backbone and a feature head).
    """

    embed_dim: int = 256
    head_hidden: int = 512
    temperature: float = 0.05
    fragment_length: int = 500
    read_length: int = 250
    kmer: int = 0

    def __post_init__(self) -> None:
        if self.embed_dim < 1 or self.head_hidden < 1:
            raise ValueError("embed_dim and head_hidden must be positive")
        if not 0 <= self.kmer <= MAX_KMER:
            raise ValueError(f"kmer must be 0 (sequence model) or 1..{MAX_KMER}, got {self.kmer}")
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


class ReadEncoder(nn.Module):
    """A read/fragment encoder trained with InfoNCE: a k-mer embedding bag, or backbone +
    per-position feature MLP + mean pooling + projection (``config`` is then its backbone's
    :class:`ModelConfig`; None for the k-mer bag).

    Training batches: ``{"fragments": (B, F) int64, "fragment_mask": (B, F) bool,
    "reads": (B, R) int64, "read_mask": (B, R) bool}``; row ``i`` of ``reads`` comes from row
    ``i`` of ``fragments``.
    """

    def __init__(
        self,
        config: ModelConfig | dict | None,
        encoder: EncoderConfig | dict | None = None,
        optim: OptimConfig | dict | None = None,
        tokenizer: Tokenizer | dict | None = None,
    ) -> None:
        super().__init__()
        self.encoder_config = encoder if isinstance(encoder, EncoderConfig) else EncoderConfig.from_dict(encoder or {})
        enc = self.encoder_config
        if enc.kmer:
            config = None  # no backbone
        elif config is None:
            raise ValueError("the sequence-model encoder (kmer=0) needs a backbone ModelConfig")
        self.config = config if config is None or isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        self.optim = optim if isinstance(optim, OptimConfig) else OptimConfig.from_dict(optim or {})
        self.tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else (
            Tokenizer.from_dict(tokenizer) if tokenizer else Tokenizer()
        )
        if enc.kmer:
            self.kmer_embedding = nn.Parameter(torch.randn(4 ** enc.kmer, enc.embed_dim) / math.sqrt(enc.embed_dim))
            self.register_buffer("kmer_place", 4 ** torch.arange(enc.kmer - 1, -1, -1), persistent=False)
            return
        self.backbone = Backbone(self.config)
        self.feature = nn.Linear(self.config.d_model, enc.head_hidden)
        self.project = nn.Linear(enc.head_hidden, enc.embed_dim, bias=False)
        nn.init.normal_(self.feature.weight, std=1.0 / math.sqrt(self.config.d_model))
        nn.init.zeros_(self.feature.bias)
        nn.init.normal_(self.project.weight, std=1.0 / math.sqrt(enc.head_hidden))

    @classmethod
    def from_lm(cls, lm, encoder: EncoderConfig | dict | None = None, optim: OptimConfig | dict | None = None) -> "ReadEncoder":
        """A new encoder whose backbone starts from a pretrained :class:`GenoSeqLM`'s weights."""
        if (encoder.kmer if isinstance(encoder, EncoderConfig) else (encoder or {}).get("kmer", 0)):
            raise ValueError("a k-mer bag encoder has no backbone to initialise from a language model")
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
        if self.encoder_config.kmer:
            return self._kmer_bag(input_ids, attention_mask)
        hidden = self.backbone(input_ids)
        features = F.gelu(self.feature(hidden))
        weights = attention_mask.to(features.dtype)[..., None]
        pooled = (features * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return F.normalize(self.project(pooled).float(), dim=-1)

    def kmer_codes(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices (B, L - k + 1) of every k-mer in the table (base-4 numbers, A = 0 ... T = 3,
        first base most significant) and whether each is a real k-mer (no N, no padding)."""
        k = self.encoder_config.kmer
        base = input_ids - A
        is_base = (base >= 0) & (base < 4) & attention_mask
        if input_ids.shape[1] < k:  # too short for one k-mer: an empty bag
            empty = input_ids.new_zeros((input_ids.shape[0], 1))
            return empty, empty.bool()
        windows = torch.where(is_base, base, 0).unfold(1, k, 1)  # (B, L - k + 1, k)
        codes = (windows * self.kmer_place).sum(-1)
        return codes, is_base.unfold(1, k, 1).all(-1)

    def _kmer_bag(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        codes, valid = self.kmer_codes(input_ids, attention_mask)
        summed = F.embedding_bag(codes, self.kmer_embedding, mode="sum", per_sample_weights=valid.to(self.kmer_embedding.dtype))
        return F.normalize(summed.float(), dim=-1)  # an empty bag stays the zero vector

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

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def embed(self, sequences: Sequence[np.ndarray], batch_size: int = 256, device=None,
              max_tokens: int | None = None) -> np.ndarray:
        """Embeddings (N, embed_dim) float32 of token-id arrays, batched by length (right padding).

        Sorting by length keeps padding small for reads of mixed lengths; rows come back in the
        input order. A forward pass takes at most ``batch_size`` rows and ``max_tokens`` tokens
        (default for the sequence model: 8192 on CPU, where small batches stay in cache and run
        several times faster per read than large ones; unbounded on GPU. The k-mer bag takes
        up to 1M tokens per pass).
        """
        if device is None:
            device = next(self.parameters()).device
        device = torch.device(device)
        if max_tokens is None and self.encoder_config.kmer:
            max_tokens = KMER_MAX_TOKENS
        elif max_tokens is None:
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
                                 "model": None if self.config is None else self.config.to_dict(),
                                 "encoder": self.encoder_config.to_dict(),
                                 "training": {"optim": self.optim.to_dict()},
                             })

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "ReadEncoder":
        """Load an encoder written by :meth:`save_pretrained` (safetensors; nothing is unpickled)."""

        def build(meta: dict, tokenizer: Tokenizer) -> "ReadEncoder":
            model = meta.get("model")
            return cls(model and ModelConfig.from_dict(model), encoder=EncoderConfig.from_dict(meta["encoder"]),
                       optim=meta.get("training", {}).get("optim"), tokenizer=tokenizer)

        return load_released(directory, model_type=MODEL_TYPE, format_version=FORMAT_VERSION, build=build,
                             map_location=map_location)


__all__ = ["MAX_KMER", "EncoderConfig", "ReadEncoder"]
