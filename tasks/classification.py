"""Sequence classification on a language model's embeddings: the probe and the metrics.

* :func:`fit_logistic_probe` -- a scikit-learn ``LogisticRegression`` on standardised frozen
  embeddings, folded into the linear head of a
  :class:`~genoseq.models.classifier.SequenceClassifier` (the directory format of a fine-tuned
  classifier too);
* :func:`classification_metrics` -- accuracy, MCC, macro F1, one-vs-rest AUROC and the
  confusion matrix of predicted class probabilities (``sklearn.metrics``).

Fine-tuning is :func:`genoseq.tasks.finetune.finetune` on the classifier itself.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from genoseq.models.classifier import SequenceClassifier
from genoseq.models.embedding import Embedder


def embedding_options(embedder: Embedder) -> dict:
    """The embedding settings a classifier keeps in its ``config.json`` (pooling, layer, strands,
    truncation), as ``embedder`` applies them."""
    return {"pooling": embedder.pooling, "layer": embedder.layer, "rc_average": embedder.rc_average,
            "rc_concat": embedder.rc_concat, "max_length": embedder.max_length}


def fit_logistic_probe(embedder: Embedder, sequences: Sequence[str], labels: Sequence[str],
                       val_sequences: Sequence[str] = (), val_labels: Sequence[str] = (), *, c: float = 0.01,
                       seed: int = 0, progress: bool | str = False) -> tuple[SequenceClassifier, dict]:
    """A probe classifier and its training summary (``train_accuracy``, ``C``, and
    ``val_accuracy`` when validation sequences are given)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x_train = embedder.embed(list(sequences), progress=progress).astype("float64")
    y_train = list(labels)
    scaler = StandardScaler().fit(x_train)
    probe = LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(scaler.transform(x_train), y_train)
    clf = SequenceClassifier.from_probe(embedder.model.cpu(), list(probe.classes_), probe.coef_, probe.intercept_,
                                        scaler.mean_, scaler.scale_, **embedding_options(embedder))
    info = {"train_accuracy": float(probe.score(scaler.transform(x_train), y_train)), "C": c}
    if len(val_sequences):
        x_val = embedder.embed(list(val_sequences)).astype("float64")
        info["val_accuracy"] = float(probe.score(scaler.transform(x_val), list(val_labels)))
    return clf, info


def classification_metrics(labels: list[str], proba, classes: list[str]) -> dict:
    """Accuracy, MCC, macro F1, one-vs-rest AUROC and the confusion matrix (sklearn.metrics)."""
    from sklearn import metrics

    proba = np.asarray(proba, dtype=np.float64)
    predicted = [classes[i] for i in proba.argmax(1)]
    y = np.array([classes.index(label) for label in labels])
    present = sorted(set(y.tolist()))
    auroc: float | None = None
    per_class_auroc: dict[str, float] = {}
    for k in present:
        if 0 < (y == k).sum() < len(y):
            per_class_auroc[classes[k]] = float(metrics.roc_auc_score(y == k, proba[:, k]))
    if len(present) == 2 and len(classes) == 2:
        auroc = float(metrics.roc_auc_score(y, proba[:, 1]))
    elif len(present) == len(classes):
        auroc = float(metrics.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=list(range(len(classes)))))
    elif per_class_auroc:  # some class absent from the labels: mean over the classes present
        auroc = float(np.mean(list(per_class_auroc.values())))
    return {
        "n": len(labels),
        "classes": classes,
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "mcc": float(metrics.matthews_corrcoef(labels, predicted)),
        "macro_f1": float(metrics.f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)),
        "auroc_ovr": auroc,
        "auroc_per_class": per_class_auroc,
        "confusion_matrix": metrics.confusion_matrix(labels, predicted, labels=classes).tolist(),
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
    }


__all__ = ["classification_metrics", "embedding_options", "fit_logistic_probe"]
