"""``Segmenter``: per-base classes on both strands from a GenoSeqLM backbone and a dilated-conv head.

A causal model's state at a base has seen only the bases to its left, but whether a base is
coding depends on both sides. So the backbone runs on the window and on its reverse complement,
and the two position-aligned hidden states are concatenated: ``F[i] = [h_fwd(i), h_rev(i)]``,
where ``h_rev(i)`` has seen every base from ``i`` to the window's end (:meth:`Segmenter.features`).

The head (:class:`SegmentationHead`) reads ``F`` plus the one-hot base at each position through
residual dilated 1-D convolutions (receptive field :attr:`SegmentationHead.receptive_field`)
and gives K class logits per base *for the + strand*. The - strand's logits are the same head
applied to the reverse-complement window's features, which need no second backbone pass: they
are ``F`` with its two halves swapped, reversed, with the bases complemented. One head thus
labels both strands, its two outputs are exactly reverse-complement equivariant (the labels of
a sequence and of its reverse complement agree by construction), and every training base
teaches both strands. (A single head with 2 x K outputs would have to learn that symmetry from
reverse-complement augmentation.)

Two ways to train it, one object and one folder format:

* ``method="probe"`` (the CPU default of ``genoseq annotate fit``): the backbone is frozen, its
  features are computed once (:func:`genoseq.tasks.genome_annotation.block_features`) and only the
  head is trained over them (:func:`genoseq.tasks.genome_annotation.fit_probe`).
* ``method="finetune"``: this LightningModule trains backbone and head together on
  :class:`genoseq.datamodules.intervals.IntervalDataModule` segmentation batches
  (``labels`` (B, 2, L), ignored positions -100).

On disk: ``config.json`` (``model_type: GenoSeqSegmenter``, the class scheme, head options, the
backbone's model config, the scoring window), ``tokenizer.json``, ``model.safetensors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F

from genoseq.tokenizer import A, Tokenizer

from .lm import GenoSeqLM
from .optim import finetune_optimizers
from .released import language_model, language_model_config, load_released, save_released

MODEL_TYPE = "GenoSeqSegmenter"
FORMAT_VERSION = 1
IGNORE = -100
_TOKENIZER = Tokenizer()


def one_hot_bases(ids: torch.Tensor) -> torch.Tensor:
    """(B, L) token ids -> (B, L, 4) float one-hot of A C G T (N and specials all zero)."""
    base = ids.long() - A
    valid = (base >= 0) & (base <= 3)
    return F.one_hot(torch.where(valid, base, 0), 4).float() * valid[..., None]


def reverse_features(features: torch.Tensor) -> torch.Tensor:
    """The features of the reverse-complement window: halves swapped, positions reversed."""
    d = features.shape[-1] // 2
    return torch.cat([features[..., d:], features[..., :d]], dim=-1).flip(-2)


class SegmentationHead(nn.Module):
    """Per-base logits (B, L, K) from features (B, L, F) and token ids (B, L).

    An input projection of ``[features, one-hot base]`` to ``hidden`` channels, then residual
    blocks ``x + conv_d(gelu(x))`` with dilations ``dilations`` ('same' padding), then a linear
    map to K classes.
    """

    def __init__(self, in_dim: int, num_classes: int, *, hidden: int = 64, kernel_size: int = 5,
                 dilations: Sequence[int] = (1, 3, 9, 27, 81), dropout: float = 0.1) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd")
        self.kernel_size, self.dilations = kernel_size, tuple(int(d) for d in dilations)
        self.proj = nn.Linear(in_dim + 4, hidden)
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, hidden, kernel_size, dilation=d, padding=d * (kernel_size - 1) // 2) for d in self.dilations
        )
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_classes)

    @property
    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    def forward(self, features: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        x = self.proj(torch.cat([features.to(self.proj.weight.dtype), one_hot_bases(ids).to(self.proj.weight.dtype)], -1))
        x = x.transpose(1, 2)  # (B, H, L)
        for conv in self.convs:
            x = x + conv(self.dropout(F.gelu(x)))
        return self.out(F.gelu(x).transpose(1, 2))


class Segmenter(L.LightningModule):
    """Label every base of a window on both strands: ``logits (B, 2, L, K)``, strand 0 = +.

    Args:
        lm: The backbone's language model.
        classes: Per-base class names (``genoseq.annotation.ClassScheme.classes``).
        type_map: Feature type -> class map the classes came from (kept for predictions).
        layer: Backbone layer as in :meth:`GenoSeqLM.hidden_states` (None = final normed output).
        hidden, kernel_size, dilations, dropout: The head (:class:`SegmentationHead`).
        method: ``probe`` (frozen backbone) or ``finetune``.
        window: Bases per backbone pass when labelling long sequences; ``context``: bases of
            context kept on each side of the part of a window that is used.
        class_weights: Cross-entropy weight per class (None: equal).
        lr, weight_decay, warmup_ratio: AdamW with linear warmup and cosine decay (fine-tuning).
    """

    def __init__(
        self,
        lm: GenoSeqLM,
        classes: Sequence[str],
        type_map: dict[str, str] | None = None,
        *,
        layer: int | None = None,
        hidden: int = 64,
        kernel_size: int = 5,
        dilations: Sequence[int] = (1, 3, 9, 27, 81),
        dropout: float = 0.1,
        method: Literal["probe", "finetune"] = "probe",
        window: int = 2048,
        context: int = 256,
        class_weights: Sequence[float] | None = None,
        lr: float = 3e-4,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.05,
    ) -> None:
        super().__init__()
        classes = [str(c) for c in classes]
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"need at least two distinct classes, got {classes}")
        if method not in ("probe", "finetune"):
            raise ValueError(f"method must be 'probe' or 'finetune', got {method!r}")
        if not 0 <= context < window // 2:
            raise ValueError(f"need 0 <= context < window / 2, got window {window}, context {context}")
        self.lm = lm
        self.classes, self.type_map = classes, dict(type_map or {})
        self.layer, self.method, self.window, self.context = layer, method, int(window), int(context)
        self.head_options = {"hidden": hidden, "kernel_size": kernel_size, "dilations": list(dilations), "dropout": dropout}
        self.head = SegmentationHead(2 * lm.config.d_model, len(classes), **self.head_options)
        self.lr, self.weight_decay, self.warmup_ratio = lr, weight_decay, warmup_ratio
        weights = torch.tensor(list(class_weights), dtype=torch.float32) if class_weights is not None else None
        if weights is not None and weights.shape != (len(classes),):
            raise ValueError(f"class_weights needs {len(classes)} values")
        self.register_buffer("class_weights", weights if weights is not None else torch.ones(len(classes)),
                             persistent=False)
        if method == "probe":
            self.lm.requires_grad_(False)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.lm.tokenizer

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def feature_dim(self) -> int:
        return 2 * self.lm.config.d_model

    # ------------------------------------------------------------------ forward
    def features(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[h_fwd(i), h_rev(i)]`` (B, L, 2 d_model): states of the window and of its reverse
        complement, the latter flipped back so position i of both describes base i."""
        fwd = self.lm.hidden_states(input_ids, self.layer)
        rev = self.lm.hidden_states(_TOKENIZER.reverse_complement(input_ids), self.layer).flip(1)
        return torch.cat([fwd, rev], dim=-1)

    def head_logits(self, features: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2, L, K) of both strands from features (B, L, F)."""
        plus = self.head(features, input_ids)
        minus = self.head(reverse_features(features), _TOKENIZER.reverse_complement(input_ids)).flip(1)
        return torch.stack([plus, minus], dim=1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.features(input_ids), input_ids)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Weighted cross entropy over every labelled (base, strand); labels (B, 2, L)."""
        return F.cross_entropy(logits.float().reshape(-1, self.num_classes), labels.reshape(-1),
                               weight=self.class_weights.to(logits.device), ignore_index=IGNORE)

    # ------------------------------------------------------------------ fine-tuning
    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self(batch["input_ids"])
        labels = batch["labels"]
        loss = self.loss(logits, labels)
        size = labels.shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=size, sync_dist=stage != "train")
        mask = labels != IGNORE
        acc = ((logits.argmax(-1) == labels) & mask).sum() / mask.sum().clamp(min=1)
        self.log(f"{stage}/acc", acc, prog_bar=stage != "train", batch_size=size, sync_dist=stage != "train")
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self):
        return finetune_optimizers(self, self.lr, self.weight_decay, self.warmup_ratio)

    # ------------------------------------------------------------------ on disk
    def segmenter_config(self) -> dict:
        return {"classes": list(self.classes), "type_map": dict(self.type_map), "layer": self.layer,
                "method": self.method, "window": self.window, "context": self.context, "head": dict(self.head_options)}

    def save_pretrained(self, directory: str | Path, training: dict | None = None) -> Path:
        return save_released(self, directory, model_type=MODEL_TYPE, format_version=FORMAT_VERSION,
                             tokenizer=self.tokenizer, config={"segmenter": self.segmenter_config(),
                                                               **language_model_config(self.lm),
                                                               "training": training or {}})

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "Segmenter":
        """Load a segmenter written by :meth:`save_pretrained` (safetensors; nothing is unpickled)."""
        training: dict = {}

        def build(meta: dict, tokenizer: Tokenizer) -> "Segmenter":
            lm = language_model(meta, tokenizer)
            conf = meta["segmenter"]
            training.update(meta.get("training", {}))
            return cls(lm, conf["classes"], conf.get("type_map"), layer=conf["layer"], method=conf["method"],
                       window=conf["window"], context=conf["context"], **conf["head"])

        seg = load_released(directory, model_type=MODEL_TYPE, format_version=FORMAT_VERSION, build=build,
                            map_location=map_location)
        seg.training_info = training
        return seg


__all__ = ["Segmenter", "SegmentationHead", "one_hot_bases", "reverse_features"]
