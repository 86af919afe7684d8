"""``GenoSeqLM``: the backbone with a tied language-model head, as a LightningModule.

Training objective: next-token cross-entropy on batches ``{"input_ids": (B, L) int64,
"attention_mask"?: (B, L) bool, "seq_idx"?: (B, L) int}``. Targets are shifted here; the loss
counts a position only when its target is a nucleotide (A C G T N), both it and its target are
inside the attention mask, and both belong to the same packed sequence. Logged as
``train/loss``, ``train/bits_per_base`` (nats / ln 2), ``train/tokens_per_s`` and ``val/loss``,
``val/bits_per_base``.

Optimiser: AdamW (no weight decay on norms, biases, 1-D parameters, embeddings and Hyena's
implicit filters), linear warmup then cosine decay to ``min_lr_ratio * lr``, stepped per
optimiser step. Gradient clipping and precision (``bf16-mixed`` on GPU) are the Trainer's.

A released model is a directory (``save_pretrained`` / ``from_pretrained``) with
``config.json``, ``tokenizer.json`` and ``model.safetensors``; loading never unpickles.
Lightning ``.ckpt`` files hold only plain-Python hyperparameters (dicts), so
``GenoSeqLM.load_from_checkpoint`` works with ``weights_only`` loading.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F

from genoseq.tokenizer import Tokenizer

from .backbone import Backbone, InferenceCache
from .config import ModelConfig, OptimConfig, TrainingConfig, seq_len_at
from .optim import warmup_cosine
from .released import load_released, save_released

FORMAT_VERSION = 1
LN2 = math.log(2.0)


class GenoSeqLM(L.LightningModule):
    def __init__(
        self,
        config: ModelConfig | dict,
        optim: OptimConfig | dict | None = None,
        tokenizer: Tokenizer | dict | None = None,
        rc_augment: bool = False,
        seq_len_warmup: list[tuple[int, int]] | None = None,
        window_length: int | None = None,
        copy_augment: float = 0.0,
    ) -> None:
        super().__init__()
        self.config = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        self.optim = optim if isinstance(optim, OptimConfig) else OptimConfig.from_dict(optim or {})
        self.tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else (
            Tokenizer.from_dict(tokenizer) if tokenizer else Tokenizer()
        )
        if self.tokenizer.vocab_size > self.config.vocab_size:
            raise ValueError(
                f"the tokenizer has {self.tokenizer.vocab_size} tokens but the model's vocab_size is "
                f"{self.config.vocab_size}; raise ModelConfig.vocab_size"
            )
        self.training_config = TrainingConfig(rc_augment=rc_augment, seq_len_warmup=seq_len_warmup,
                                              window_length=window_length, copy_augment=copy_augment)
        # Plain dicts only: checkpoints then load with weights_only=True and read as YAML.
        self.save_hyperparameters({
            "config": self.config.to_dict(),
            "optim": self.optim.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "rc_augment": self.training_config.rc_augment,
            "seq_len_warmup": self.training_config.seq_len_warmup,
            "window_length": self.training_config.window_length,
            "copy_augment": self.training_config.copy_augment,
        })

        self.backbone = Backbone(self.config)
        self.lm_head = nn.Linear(self.config.d_model, self.config.vocab_size, bias=False)
        if self.config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight
        else:
            nn.init.normal_(self.lm_head.weight, std=0.02)
        self._last_step_time: float | None = None
        # Ranks that split each training window along its length (`genoseq pretrain
        # --trainer.context_parallel N`); the group is made in `setup`, once torch.distributed is up.
        self.context_parallel_size = 1
        self._cp = None

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        seq_idx: torch.Tensor | None = None,
        cache: InferenceCache | None = None,
    ) -> torch.Tensor:
        """Logits (B, L, vocab_size) for ``input_ids`` (B, L); with ``cache``, continue its sequence."""
        return self.lm_head(self.backbone(input_ids, seq_idx=seq_idx, cache=cache))

    def new_cache(self, max_len: int | None = None) -> InferenceCache:
        """An empty inference cache (``max_len`` needed when there are attention or Hyena layers)."""
        return self.backbone.new_cache(max_len)

    @property
    def is_recurrent(self) -> bool:
        """True for a pure-Mamba2 stack: its state has a fixed size, so any length streams exactly."""
        return set(self.config.layer_types) == {"mamba2"}

    def hidden_states(
        self, input_ids: torch.Tensor, layer: int | None = None, seq_idx: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hidden states (B, L, d_model) of one layer.

        ``layer=None``: the final normed output (what the LM head sees). An int ``k`` in
        ``0..n_layers``: the residual stream after ``k`` blocks (0 = the embeddings), negative
        values count from the top as in Python (-1 = after the last block, before the final
        norm). Only the blocks needed are run.
        """
        if layer is None:
            return self.backbone(input_ids, seq_idx=seq_idx)
        n = self.config.n_layers
        if not -(n + 1) <= layer <= n:
            raise IndexError(f"layer {layer} out of range for a {n}-layer model (use 0..{n} or negative)")
        return self.backbone(input_ids, seq_idx=seq_idx, num_layers=layer % (n + 1))

    # ------------------------------------------------------------------ loss
    def setup(self, stage: str) -> None:
        if self.context_parallel_size > 1 and self._cp is None:
            from .parallel import ContextParallel

            self._cp = ContextParallel.create(self.context_parallel_size)

    def lm_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean next-token loss (nats) over counted targets, and the number of them.

        Under context parallelism every rank of a group gets the whole batch, runs its slice of
        each window, and returns its share of the windows' mean loss (the shares add up to it)
        and the count over the whole windows.
        """
        if self._cp is not None:
            return self._context_parallel_loss(batch, self._cp)
        ids = batch["input_ids"]
        mask, seq_idx = batch.get("attention_mask"), batch.get("seq_idx")
        logits = self(ids, seq_idx=seq_idx)[:, :-1]
        targets = ids[:, 1:]
        counted = self.tokenizer.is_base(targets)
        if mask is not None:
            mask = mask.bool()
            counted &= mask[:, 1:] & mask[:, :-1]
        if seq_idx is not None:
            counted &= seq_idx[:, 1:] == seq_idx[:, :-1]
        n = counted.sum()
        logits = logits[counted]
        nll = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), targets[counted], reduction="sum")
        return nll / n.clamp(min=1), n

    def _context_parallel_loss(self, batch: dict, cp) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        if batch.get("seq_idx") is not None:
            raise ValueError("context parallelism trains on whole windows, not packed sequences")
        targets = F.pad(ids[:, 1:], (0, 1))  # the last position has no target (PAD: not counted)
        counted = self.tokenizer.is_base(targets)
        if mask is not None:
            mask = mask.bool()
            counted &= mask & F.pad(mask[:, 1:], (0, 1))
        targets, counted = cp.shard(targets), cp.shard(counted)
        logits = self.lm_head(self.backbone(cp.shard(ids), cp=cp))[counted]
        n = cp.all_reduce(counted.sum())
        nll = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), targets[counted], reduction="sum")
        return nll / n.clamp(min=1), n

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        batch = self.augment(batch)
        loss, n = self.lm_loss(batch)
        logged = loss if self._cp is None else self._cp.all_reduce(loss)
        self.log("train/loss", logged, prog_bar=True, batch_size=int(n))
        self.log("train/bits_per_base", logged / LN2, batch_size=int(n))
        now = time.perf_counter()
        if self._last_step_time is not None:
            self.log("train/tokens_per_s", batch["input_ids"].numel() / (now - self._last_step_time))
        self._last_step_time = now
        # DDP averages gradients over every rank; the ranks of a context-parallel group hold
        # shares of one window's loss, whose gradients must add up, hence the factor.
        return loss if self._cp is None else loss * self._cp.size

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, n = self.lm_loss(batch)
        if self._cp is not None:
            loss = self._cp.all_reduce(loss)
        # Token-weighted over the epoch: each batch's mean weighs by its number of targets.
        self.log("val/loss", loss, prog_bar=True, batch_size=int(n), sync_dist=True)
        self.log("val/bits_per_base", loss / LN2, batch_size=int(n), sync_dist=True)
        return loss

    def augment(self, batch: dict) -> dict:
        """Training-time transforms: sequence-length warmup, planted copies, then reverse-complement
        augmentation."""
        length = seq_len_at(self.training_config.seq_len_warmup, self.global_step)
        if length:
            batch = reshape_to_length(batch, length)
        if self.training_config.copy_augment:
            # drawn from the step number alone: the same on every rank of a window, and on --resume
            generator = torch.Generator().manual_seed(1_000_003 * (self.global_step + 1))
            batch = plant_copies(batch, self.training_config.copy_augment, generator)
        if self.training_config.rc_augment:
            flip = torch.rand(batch["input_ids"].shape[0], device=batch["input_ids"].device) < 0.5
            if self._cp is not None:  # one window, one strand: every rank of the group flips alike
                flip = self._cp.broadcast(flip.to(torch.uint8)).bool()
            batch = reverse_complement_batch(batch, self.tokenizer, flip)
        return batch

    def configure_optimizers(self):
        return warmup_cosine(self, self.optim, self.optim.total_steps or self._estimated_total_steps())

    def _estimated_total_steps(self) -> int:
        steps = self.trainer.estimated_stepping_batches if self._trainer is not None else float("inf")
        if not math.isfinite(steps):
            raise ValueError("cannot size the cosine schedule: set OptimConfig.total_steps or Trainer(max_steps=...)")
        return int(steps)

    # ------------------------------------------------------------------ released models
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``tokenizer.json`` and ``model.safetensors`` into ``directory``
        (see :mod:`genoseq.models.released`: atomic, ``config.json`` last)."""
        return save_released(self, directory, model_type="GenoSeqLM", format_version=FORMAT_VERSION,
                             tokenizer=self.tokenizer, config={
                                 "model": self.config.to_dict(),
                                 "training": {
                                     "optim": self.optim.to_dict(),
                                     "rc_augment": self.training_config.rc_augment,
                                     "seq_len_warmup": self.training_config.seq_len_warmup,
                                     "window_length": self.training_config.window_length,
                                     "copy_augment": self.training_config.copy_augment,
                                 },
                             })

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "GenoSeqLM":
        """Load a model written by :meth:`save_pretrained` (safetensors; nothing is unpickled)."""

        def build(meta: dict, tokenizer: Tokenizer) -> "GenoSeqLM":
            training = meta.get("training", {})
            return cls(ModelConfig.from_dict(meta["model"]), optim=training.get("optim"), tokenizer=tokenizer,
                       rc_augment=training.get("rc_augment", False), seq_len_warmup=training.get("seq_len_warmup"),
                       window_length=training.get("window_length"), copy_augment=training.get("copy_augment", 0.0))

        return load_released(directory, model_type="GenoSeqLM", format_version=FORMAT_VERSION, build=build,
                             map_location=map_location)


# ---------------------------------------------------------------------- batch transforms
def reshape_to_length(batch: dict, length: int) -> dict:
    """Cut every row of a (B, L) batch into pieces of ``length``: (B * (L // length), length).

    Tokens past the last whole piece are dropped; a length >= L leaves the batch as it is.
    """
    L_full = batch["input_ids"].shape[1]
    if length >= L_full:
        return batch
    usable = (L_full // length) * length
    out = dict(batch)
    for key in ("input_ids", "attention_mask", "seq_idx"):
        if batch.get(key) is not None:
            out[key] = batch[key][:, :usable].reshape(-1, length)
    return out


def plant_copies(batch: dict, fraction: float, generator: torch.Generator, min_length: int = 64,
                 max_length: int = 1024) -> dict:
    """Copy a segment of some rows further on in the same row: in-context recall to learn.

    Each row is chosen with probability ``fraction``; in a chosen row of length L a segment of s
    bases (uniform in ``min_length .. max_length``, at most L / 4) is copied over the s bases that
    start g bases after its end, the gap g log-uniform in 1 .. L - 2s (copies near and far
    alike). Padded or packed rows are left as they are.
    """
    ids = batch["input_ids"]
    if batch.get("seq_idx") is not None or batch.get("attention_mask") is not None:
        return batch
    B, L = ids.shape
    chosen = torch.rand(B, generator=generator) < fraction
    s_max = min(max_length, L // 4)
    if not chosen.any() or s_max < 1:
        return batch
    ids = ids.clone()
    for row in torch.nonzero(chosen).flatten().tolist():
        s = int(torch.randint(min(min_length, s_max), s_max + 1, (), generator=generator))
        room = L - 2 * s  # gap + source start
        gap = min(room, int(math.exp(torch.rand((), generator=generator).item() * math.log(max(room, 1)))))
        src = int(torch.randint(0, room - gap + 1, (), generator=generator))
        dst = src + s + gap
        ids[row, dst : dst + s] = ids[row, src : src + s]
    return {**batch, "input_ids": ids}


def reverse_complement_batch(batch: dict, tokenizer: Tokenizer, flip: torch.Tensor) -> dict:
    """Reverse-complement the rows where ``flip`` is true; padding stays on the right.

    A row of valid length n (a right-padded ``attention_mask``) becomes the reverse complement
    of its first n tokens followed by the same padding; packed sequences (``seq_idx``) come out
    in reverse order, each reverse-complemented, with ids renumbered to stay non-decreasing.
    """
    ids = batch["input_ids"]
    B, L_full = ids.shape
    mask = batch.get("attention_mask")
    lengths = mask.long().sum(1) if mask is not None else torch.full((B,), L_full, device=ids.device)
    pos = torch.arange(L_full, device=ids.device).expand(B, L_full)
    inside = pos < lengths[:, None]
    # rc = the whole row reversed and complemented: valid tokens sit at the end; shift them left.
    source = torch.where(inside, pos + (L_full - lengths)[:, None], pos)
    out = dict(batch)
    rc = tokenizer.reverse_complement(ids).gather(1, source)
    out["input_ids"] = torch.where(flip[:, None] & inside, rc, ids)
    seq_idx = batch.get("seq_idx")
    if seq_idx is not None:
        rev = seq_idx.flip(1).gather(1, source)
        top = rev.masked_fill(~inside, torch.iinfo(rev.dtype).min).max(1, keepdim=True).values
        rev = top - rev  # reversed order, renumbered to rise again
        out["seq_idx"] = torch.where(flip[:, None] & inside, rev, seq_idx)
    return out
