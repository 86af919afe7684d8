"""``SequenceClassifier``: a GenoSeqLM backbone, a pooled embedding and a linear head.

Two ways to get one, one object and one file format for both:

* **fine-tuned** (``method="finetune"``): the LightningModule trains the backbone and the head
  end to end with cross-entropy on batches ``{"input_ids", "attention_mask", "labels"}``
  (:class:`genoseq.datamodules.LabelledSequenceDataModule`), logging ``train/loss``,
  ``val/loss`` and ``val/acc``;
* **probe** (``method="probe"``): a scikit-learn logistic regression on standardised frozen
  embeddings, folded into the same linear head with :meth:`SequenceClassifier.from_probe`
  (``W = coef / scale``, ``b = intercept - W @ mean``; a binary model's single row becomes the
  second of two logits, so the softmax equals its sigmoid). Predictions then need no
  scikit-learn and nothing is pickled.

The pooled embedding is :func:`genoseq.models.embedding.pooled_embeddings` (layer, pooling,
reverse-complement averaging or concatenation as configured).

On disk (``save_pretrained`` / ``from_pretrained``), like the language model: ``config.json``
(``model_type: GenoSeqClassifier``, the classes, pooling, layer, the backbone's model config and
tokenizer), ``tokenizer.json`` and ``model.safetensors`` with the backbone (``lm.*``) and head
(``head.*``) weights.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from genoseq.tokenizer import Tokenizer

from .config import ModelConfig
from .embedding import check_strands, pooled_dim, pooled_embeddings, pooling_parts
from .lm import GenoSeqLM
from .optim import decay_groups
from .released import load_released, save_released

MODEL_TYPE = "GenoSeqClassifier"
FORMAT_VERSION = 1


class SequenceClassifier(L.LightningModule):
    """Classify DNA sequences: ``logits = head(pool(lm.hidden_states(x)))``.

    Args:
        lm: The language model whose backbone is used (and fine-tuned unless probing).
        classes: Class labels in index order.
        pooling: ``mean``, ``last``, ``echo``, ``phase``, ``ends`` or a ``+`` combination such as
            ``phase+ends`` (see :mod:`genoseq.models.embedding`).
        layer: Hidden layer as in :meth:`GenoSeqLM.hidden_states` (None = final normed output).
        rc_average: Average the pooled vectors of each sequence and its reverse complement.
        rc_concat: Concatenate them instead (the head sees both strands' vectors).
        method: ``finetune`` or ``probe`` (recorded in the config; a probe is built with
            :meth:`from_probe`).
        max_length: Truncate longer sequences to this many tokens at prediction time.
        lr: Peak AdamW learning rate for fine-tuning.
        weight_decay: AdamW weight decay (not applied to norms, biases, embeddings).
        warmup_ratio: Share of the training steps with a linear learning-rate warmup; then cosine
            decay to 10% of ``lr``.
        head_dropout: Dropout on the pooled vector before the head while training.
    """

    def __init__(
        self,
        lm: GenoSeqLM,
        classes: Sequence[str],
        *,
        pooling: str = "mean",
        layer: int | None = -1,
        rc_average: bool = False,
        rc_concat: bool = False,
        method: Literal["finetune", "probe"] = "finetune",
        max_length: int | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        head_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        classes = [str(c) for c in classes]
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"need at least two distinct classes, got {classes}")
        pooling_parts(pooling)
        check_strands(rc_average, rc_concat)
        if method not in ("finetune", "probe"):
            raise ValueError(f"method must be 'finetune' or 'probe', got {method!r}")
        n = lm.config.n_layers
        if layer is not None and not -(n + 1) <= layer <= n:
            raise ValueError(f"layer {layer} out of range for a {n}-layer model")
        self.lm = lm
        self.classes = classes
        self.pooling, self.layer, self.rc_average, self.rc_concat = pooling, layer, rc_average, rc_concat
        self.method, self.max_length = method, max_length
        self.lr, self.weight_decay, self.warmup_ratio = lr, weight_decay, warmup_ratio
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(self.embed_dim, len(classes))
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.lm.tokenizer

    @property
    def embed_dim(self) -> int:
        """Width of the pooled vector the head reads."""
        return pooled_dim(self.lm.config.d_model, self.pooling, self.rc_concat)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # ------------------------------------------------------------------ forward
    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled vectors (B, :attr:`embed_dim`) for a right-padded batch."""
        return pooled_embeddings(self.lm, input_ids, attention_mask, layer=self.layer, pooling=self.pooling,
                                 rc_average=self.rc_average, rc_concat=self.rc_concat)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))

    # ------------------------------------------------------------------ training
    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self(batch["input_ids"], batch.get("attention_mask"))
        labels = batch["labels"]
        loss = F.cross_entropy(logits.float(), labels)
        size = labels.shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=size, sync_dist=stage != "train")
        acc = (logits.argmax(-1) == labels).float().mean()
        self.log(f"{stage}/acc", acc, prog_bar=stage != "train", batch_size=size, sync_dist=stage != "train")
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            decay_groups(self, self.weight_decay),
            lr=self.lr, betas=(0.9, 0.98),
        )
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else float("inf")
        total = int(total) if math.isfinite(total) else 10_000
        warmup = max(1, int(self.warmup_ratio * total))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ probe
    @classmethod
    def from_probe(
        cls,
        lm: GenoSeqLM,
        classes: Sequence[str],
        coef: np.ndarray,
        intercept: np.ndarray,
        mean: np.ndarray,
        scale: np.ndarray,
        **kwargs,
    ) -> "SequenceClassifier":
        """A classifier whose head is a logistic regression fitted on standardised embeddings.

        ``coef`` (C, D) or (1, D) for two classes, ``intercept`` (C,) or (1,), as in
        scikit-learn's ``LogisticRegression`` with ``classes`` = its ``classes_``; ``mean`` and
        ``scale`` from the ``StandardScaler`` that standardised the embeddings.
        """
        coef = np.asarray(coef, dtype=np.float64)
        intercept = np.asarray(intercept, dtype=np.float64).reshape(-1)
        if coef.shape[0] == 1 and len(classes) == 2:  # binary: logit of class 1 against 0
            coef = np.concatenate([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        clf = cls(lm, classes, method="probe", head_dropout=0.0, **kwargs)
        if coef.shape != (len(classes), clf.embed_dim):
            raise ValueError(f"coef has shape {coef.shape}; expected ({len(classes)}, {clf.embed_dim})")
        weight = coef / np.asarray(scale, dtype=np.float64)[None, :]
        bias = intercept - weight @ np.asarray(mean, dtype=np.float64)
        with torch.no_grad():
            clf.head.weight.copy_(torch.from_numpy(weight))
            clf.head.bias.copy_(torch.from_numpy(bias))
        return clf.eval()

    # ------------------------------------------------------------------ prediction
    @torch.inference_mode()
    def predict_proba(
        self, sequences: Sequence[str | np.ndarray], *, batch_size: int = 32, progress: bool | str = False
    ) -> np.ndarray:
        """Class probabilities (N, num_classes), rows in the order of ``sequences``
        (``progress`` as in :mod:`genoseq.progress`)."""
        from genoseq.progress import Progress
        from genoseq.runtime import inference_dtype

        self.eval()
        device = next(self.parameters()).device
        encoded = []
        for i, seq in enumerate(sequences):
            ids = seq if isinstance(seq, np.ndarray) else self.tokenizer.encode(seq, name=f"#{i + 1}")
            encoded.append(ids[: self.max_length] if self.max_length else ids)
        out = np.zeros((len(encoded), self.num_classes), dtype=np.float64)
        order = np.argsort([-len(e) for e in encoded], kind="stable")
        dtype = inference_dtype(device)
        bar = Progress(len(order), desc="predict", unit="seq", mode=progress)
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            batch = self.tokenizer.encode_batch([encoded[i] for i in rows])
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = self(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            out[rows] = torch.softmax(logits.float(), dim=-1).double().cpu().numpy()
            bar.update(len(rows))
        bar.close()
        return out

    # ------------------------------------------------------------------ on disk
    def classifier_config(self) -> dict:
        return {
            "classes": list(self.classes),
            "pooling": self.pooling,
            "layer": self.layer,
            "rc_average": self.rc_average,
            "rc_concat": self.rc_concat,
            "method": self.method,
            "max_length": self.max_length,
        }

    def save_pretrained(self, directory: str | Path, training: dict | None = None) -> Path:
        """Write ``model.safetensors``, ``tokenizer.json`` and, last, ``config.json`` into ``directory``."""
        return save_released(self, directory, model_type=MODEL_TYPE, format_version=FORMAT_VERSION,
                             tokenizer=self.tokenizer, config={
                                 "classifier": self.classifier_config(),
                                 "model": self.lm.config.to_dict(),
                                 "training": training or {},
                             })

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "SequenceClassifier":
        """Load a classifier written by :meth:`save_pretrained` (safetensors; nothing is unpickled)."""
        training = {}

        def build(meta: dict, tokenizer: Tokenizer) -> "SequenceClassifier":
            lm = GenoSeqLM(ModelConfig.from_dict(meta["model"]), tokenizer=tokenizer)
            conf = meta["classifier"]
            training.update(meta.get("training", {}))
            return cls(lm, conf["classes"], pooling=conf["pooling"], layer=conf["layer"], rc_average=conf["rc_average"],
                       rc_concat=conf.get("rc_concat", False), method=conf["method"], max_length=conf.get("max_length"))

        clf = load_released(directory, model_type=MODEL_TYPE, format_version=FORMAT_VERSION, build=build,
                            map_location=map_location)
        clf.training_info = training
        return clf


__all__ = ["SequenceClassifier"]
