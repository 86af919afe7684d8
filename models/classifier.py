"""``SequenceClassifier``: a GenoSeqLM backbone, a pooled embedding and a linear head.

One class and one file format for two tasks:

* ``task="classification"``: the head gives class logits; cross-entropy on batches
  ``{"input_ids", "attention_mask", "labels"}`` (:class:`genoseq.datamodules.LabelledSequenceDataModule`);
  :meth:`SequenceClassifier.predict_proba` gives class probabilities.
* ``task="regression"``: the head gives one value per named target (several targets at once:
  multi-task), on batches whose ``"targets"`` (or ``"labels"``) are floats ``(B, T)``. The
  head's output ``z`` is standardised; the model's output is ``target_mean + target_std * z``
  in the loss's link space: the value itself (``loss="mse"``), ``log1p`` of it (``loss="log"``:
  MSE on log1p targets, for counts and skewed signal) or the log rate (``loss="poisson"``:
  Poisson deviance, for counts). :meth:`SequenceClassifier.predict_values` maps back to the
  targets' own scale. The MSE losses are taken in standardised units, so targets of different
  scales (a GC fraction, a CpG ratio) weigh alike.

Two ways to get one:

* **fine-tuned** (``method="finetune"``): the LightningModule trains the backbone and the head
  end to end, logging ``train/loss``, ``val/loss`` and (classification) ``val/acc``;
* **probe** (``method="probe"``): a scikit-learn fit on standardised frozen embeddings folded
  into the same linear head (``W = coef / scale``, ``b = intercept - W @ mean``):
  :meth:`SequenceClassifier.from_probe` for a logistic regression (a binary model's single row
  becomes the second of two logits, so the softmax equals its sigmoid),
  :meth:`SequenceClassifier.from_regression_probe` for a ridge (or Poisson GLM) regression.
  Predictions then need no scikit-learn and nothing is pickled.

The pooled embedding is :func:`genoseq.models.embedding.pooled_embeddings` (layer, pooling,
reverse-complement averaging or concatenation as configured).

On disk (``save_pretrained`` / ``from_pretrained``), like the language model: ``config.json``
(``model_type: GenoSeqClassifier``, the task, the classes or the targets with their loss, mean
and scale, pooling, layer, the backbone's model config and tokenizer), ``tokenizer.json`` and
``model.safetensors`` with the backbone (``lm.*``) and head (``head.*``) weights. Classifiers
are written as ``format_version`` 1 (as before regression existed, so every older folder
loads), regression models as 2 (an older genoseq refuses them instead of misreading them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from genoseq.errors import InputError
from genoseq.tokenizer import Tokenizer

from .embedding import check_strands, pooled_dim, pooled_embeddings, pooling_parts
from .lm import GenoSeqLM
from .optim import finetune_optimizers
from .released import language_model, language_model_config, load_released, save_released

MODEL_TYPE = "GenoSeqClassifier"
FORMAT_VERSION = 2  # the newest this code reads; classifiers are still written as 1
CLASSIFIER_FORMAT_VERSION = 1
TASKS = ("classification", "regression")
LOSSES = ("mse", "poisson", "log")


class SequenceClassifier(L.LightningModule):
    """Classify DNA sequences, or predict numeric targets: ``head(pool(lm.hidden_states(x)))``.

    Args:
        lm: The language model whose backbone is used (and fine-tuned unless probing).
        classes: Class labels in index order (classification; None for regression).
        task: ``classification`` or ``regression``.
        targets: Target names in output order (regression: one or more).
        loss: Regression loss and link: ``mse`` (the value), ``log`` (MSE on ``log1p`` of
            targets >= 0) or ``poisson`` (Poisson deviance on a log rate, targets >= 0).
        target_mean: Per target, the link-space value the standardised head output 0 stands for.
        target_std: Per target, the link-space size of one standardised unit (> 0).
        pooling: ``mean``, ``last``, ``echo``, ``phase``, ``ends`` or a ``+`` combination such as
            ``phase+ends`` (see :mod:`genoseq.models.embedding`).
        layer: Hidden layer as in :meth:`GenoSeqLM.hidden_states` (None = final normed output).
        rc_average: Average the pooled vectors of each sequence and its reverse complement.
        rc_concat: Concatenate them instead (the head sees both strands' vectors).
        method: ``finetune`` or ``probe`` (recorded in the config; a probe is built with
            :meth:`from_probe` or :meth:`from_regression_probe`).
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
        classes: Sequence[str] | None = None,
        *,
        task: Literal["classification", "regression"] = "classification",
        targets: Sequence[str] | None = None,
        loss: Literal["mse", "poisson", "log"] = "mse",
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
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
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if task == "classification":
            if targets is not None:
                raise ValueError("targets are for task='regression'")
            classes = [str(c) for c in (classes or [])]
            if len(classes) < 2 or len(set(classes)) != len(classes):
                raise ValueError(f"need at least two distinct classes, got {classes}")
            outputs = classes
        else:
            if classes:
                raise ValueError("a regression model has targets, not classes")
            outputs = [str(t) for t in (targets or [])]
            if not outputs or len(set(outputs)) != len(outputs):
                raise ValueError(f"need one or more distinct target names, got {outputs}")
            if loss not in LOSSES:
                raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
            classes = []
        pooling_parts(pooling)
        check_strands(rc_average, rc_concat)
        if method not in ("finetune", "probe"):
            raise ValueError(f"method must be 'finetune' or 'probe', got {method!r}")
        n = lm.config.n_layers
        if layer is not None and not -(n + 1) <= layer <= n:
            raise ValueError(f"layer {layer} out of range for a {n}-layer model")
        self.lm = lm
        self.task, self.classes = task, classes
        self.targets = outputs if task == "regression" else []
        self.loss = loss if task == "regression" else None
        self.pooling, self.layer, self.rc_average, self.rc_concat = pooling, layer, rc_average, rc_concat
        self.method, self.max_length = method, max_length
        self.lr, self.weight_decay, self.warmup_ratio = lr, weight_decay, warmup_ratio
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(self.embed_dim, len(outputs))
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        if task == "regression":  # kept in config.json, not in the weights file
            self.register_buffer("target_mean", _per_target(target_mean, len(outputs), 0.0, "target_mean"), persistent=False)
            self.register_buffer("target_std", _per_target(target_std, len(outputs), 1.0, "target_std"), persistent=False)
            if not bool((self.target_std > 0).all()):
                raise ValueError(f"target_std must be > 0, got {self.target_std.tolist()}")

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

    @property
    def is_regression(self) -> bool:
        return self.task == "regression"

    @property
    def outputs(self) -> list[str]:
        """The head's output names: the classes, or the regression targets."""
        return list(self.targets if self.is_regression else self.classes)

    # ------------------------------------------------------------------ forward
    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled vectors (B, :attr:`embed_dim`) for a right-padded batch."""
        return pooled_embeddings(self.lm, input_ids, attention_mask, layer=self.layer, pooling=self.pooling,
                                 rc_average=self.rc_average, rc_concat=self.rc_concat)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (B, num_classes), or (regression) link-space predictions (B, targets):
        the value (mse), ``log1p`` of it (log) or the log rate (poisson)."""
        out = self.head(self.dropout(self.embed(input_ids, attention_mask)))
        if self.is_regression:
            out = self.target_mean.to(out.dtype) + self.target_std.to(out.dtype) * out
        return out

    def to_target_scale(self, link: torch.Tensor) -> torch.Tensor:
        """Link-space predictions (what :meth:`forward` returns) on the targets' own scale."""
        if self.loss == "log":
            return torch.expm1(link)
        if self.loss == "poisson":
            return torch.exp(link)
        return link

    def regression_loss(self, link: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss over rows and targets: squared error in standardised link units (mse, log),
        or the Poisson deviance per target divided by its mean rate ``exp(target_mean)``."""
        link, targets = link.float(), targets.float().reshape(link.shape)
        if self.loss == "poisson":
            deviance = F.poisson_nll_loss(link, targets, log_input=True, full=False, reduction="none")
            return (deviance / torch.exp(self.target_mean.float())).mean()
        y = torch.log1p(targets) if self.loss == "log" else targets
        return (((link - y) / self.target_std.float()) ** 2).mean()

    # ------------------------------------------------------------------ training
    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        out = self(batch["input_ids"], batch.get("attention_mask"))
        sync = stage != "train"
        if self.is_regression:
            targets = batch["targets"] if "targets" in batch else batch["labels"]
            loss = self.regression_loss(out, targets)
            self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=targets.shape[0], sync_dist=sync)
            return loss
        labels = batch["labels"]
        loss = F.cross_entropy(out.float(), labels)
        size = labels.shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=size, sync_dist=sync)
        acc = (out.argmax(-1) == labels).float().mean()
        self.log(f"{stage}/acc", acc, prog_bar=stage != "train", batch_size=size, sync_dist=sync)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self):
        return finetune_optimizers(self, self.lr, self.weight_decay, self.warmup_ratio)

    # ------------------------------------------------------------------ probe
    def _fold_linear(self, coef: np.ndarray, intercept: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> None:
        """Set the head to ``coef @ ((x - mean) / scale) + intercept``."""
        rows = len(self.outputs)
        if coef.shape != (rows, self.embed_dim):
            raise ValueError(f"coef has shape {coef.shape}; expected ({rows}, {self.embed_dim})")
        weight = coef / np.asarray(scale, dtype=np.float64)[None, :]
        bias = intercept - weight @ np.asarray(mean, dtype=np.float64)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(weight))
            self.head.bias.copy_(torch.from_numpy(bias))

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
        clf._fold_linear(coef, intercept, mean, scale)
        return clf.eval()

    @classmethod
    def from_regression_probe(
        cls,
        lm: GenoSeqLM,
        targets: Sequence[str],
        coef: np.ndarray,
        intercept: np.ndarray,
        mean: np.ndarray,
        scale: np.ndarray,
        *,
        loss: Literal["mse", "poisson", "log"] = "mse",
        target_mean: Sequence[float] | None = None,
        target_std: Sequence[float] | None = None,
        **kwargs,
    ) -> "SequenceClassifier":
        """A regression model whose head is a linear fit on standardised embeddings.

        ``coef`` (T, D) and ``intercept`` (T,) predict the standardised link value of each target
        (``(link - target_mean) / target_std``; with the defaults 0 and 1, the link value itself),
        as scikit-learn's ``Ridge`` on ``StandardScaler``-ed embeddings (``mean``, ``scale``) does
        for ``mse`` / ``log``, or one ``PoissonRegressor`` per target (log rate) for ``poisson``.
        """
        coef = np.asarray(coef, dtype=np.float64).reshape(len(targets), -1)
        intercept = np.asarray(intercept, dtype=np.float64).reshape(-1)
        model = cls(lm, task="regression", targets=targets, loss=loss, target_mean=target_mean, target_std=target_std,
                    method="probe", head_dropout=0.0, **kwargs)
        model._fold_linear(coef, intercept, mean, scale)
        return model.eval()

    # ------------------------------------------------------------------ prediction
    @torch.inference_mode()
    def _predict(self, sequences: Sequence[str | np.ndarray], transform, batch_size: int, progress: bool | str) -> np.ndarray:
        """``transform(forward(batch))`` for every sequence, batched by length, rows in input order."""
        from genoseq.progress import Progress
        from genoseq.runtime import inference_dtype

        self.eval()
        device = next(self.parameters()).device
        encoded = []
        for i, seq in enumerate(sequences):
            ids = seq if isinstance(seq, np.ndarray) else self.tokenizer.encode(seq, name=f"#{i + 1}")
            encoded.append(ids[: self.max_length] if self.max_length else ids)
        out = np.zeros((len(encoded), len(self.outputs)), dtype=np.float64)
        order = np.argsort([-len(e) for e in encoded], kind="stable")
        dtype = inference_dtype(device)
        bar = Progress(len(order), desc="predict", unit="seq", mode=progress)
        for b in range(0, len(order), batch_size):
            rows = order[b : b + batch_size]
            batch = self.tokenizer.encode_batch([encoded[i] for i in rows])
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                result = self(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            out[rows] = transform(result.float()).double().cpu().numpy()
            bar.update(len(rows))
        bar.close()
        return out

    def predict_proba(
        self, sequences: Sequence[str | np.ndarray], *, batch_size: int = 32, progress: bool | str = False
    ) -> np.ndarray:
        """Class probabilities (N, num_classes), rows in the order of ``sequences``
        (``progress`` as in :mod:`genoseq.progress`)."""
        if self.is_regression:
            raise InputError(f"a regression model (targets {', '.join(self.targets)}) predicts values, not class "
                             "probabilities", field="classifier", kind="regression_model")
        return self._predict(sequences, lambda logits: torch.softmax(logits, dim=-1), batch_size, progress)

    def predict_values(
        self, sequences: Sequence[str | np.ndarray], *, batch_size: int = 32, progress: bool | str = False
    ) -> np.ndarray:
        """Regression predictions (N, targets) on the targets' own scale, rows in input order."""
        if not self.is_regression:
            raise InputError(f"a classifier (classes {', '.join(self.classes)}) predicts classes, not values",
                             field="classifier", kind="classification_model")
        return self._predict(sequences, self.to_target_scale, batch_size, progress)

    # ------------------------------------------------------------------ on disk
    def classifier_config(self) -> dict:
        conf = {
            "task": self.task,
            "classes": list(self.classes),
            "pooling": self.pooling,
            "layer": self.layer,
            "rc_average": self.rc_average,
            "rc_concat": self.rc_concat,
            "method": self.method,
            "max_length": self.max_length,
        }
        if self.is_regression:
            conf.update(targets=list(self.targets), loss=self.loss, target_mean=self.target_mean.tolist(),
                        target_std=self.target_std.tolist())
        return conf

    def save_pretrained(self, directory: str | Path, training: dict | None = None) -> Path:
        """Write ``model.safetensors``, ``tokenizer.json`` and, last, ``config.json`` into ``directory``."""
        version = FORMAT_VERSION if self.is_regression else CLASSIFIER_FORMAT_VERSION
        return save_released(self, directory, model_type=MODEL_TYPE, format_version=version,
                             tokenizer=self.tokenizer, config={
                                 "classifier": self.classifier_config(),
                                 **language_model_config(self.lm),
                                 "training": training or {},
                             })

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "SequenceClassifier":
        """Load a classifier written by :meth:`save_pretrained` (safetensors; nothing is unpickled).
        Folders from before regression (no ``task``) are classifiers."""
        training = {}

        def build(meta: dict, tokenizer: Tokenizer) -> "SequenceClassifier":
            lm = language_model(meta, tokenizer)
            conf = meta["classifier"]
            training.update(meta.get("training", {}))
            common = dict(pooling=conf["pooling"], layer=conf["layer"], rc_average=conf["rc_average"],
                          rc_concat=conf.get("rc_concat", False), method=conf["method"], max_length=conf.get("max_length"))
            if conf.get("task", "classification") == "regression":
                return cls(lm, task="regression", targets=conf["targets"], loss=conf["loss"],
                           target_mean=conf["target_mean"], target_std=conf["target_std"], **common)
            return cls(lm, conf["classes"], **common)

        clf = load_released(directory, model_type=MODEL_TYPE, format_version=FORMAT_VERSION, build=build,
                            map_location=map_location)
        clf.training_info = training
        return clf


def _per_target(values: Sequence[float] | None, n: int, default: float, name: str) -> torch.Tensor:
    """A float64 vector of ``n`` values (``default`` each when None)."""
    if values is None:
        return torch.full((n,), default, dtype=torch.float64)
    vector = torch.as_tensor(np.asarray(values, dtype=np.float64).reshape(-1))
    if vector.numel() != n or not bool(torch.isfinite(vector).all()):
        raise ValueError(f"{name} needs {n} finite values, got {list(values)}")
    return vector

__all__ = ["SequenceClassifier"]
