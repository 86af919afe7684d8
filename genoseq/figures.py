"""The figures of the reports: matplotlib figures built from arrays, saved by
:func:`genoseq.runtime.save_figure`. matplotlib (headless, Agg) is imported when a figure is made.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_figure(labels: Sequence[str], proba, classes: list[str], title: str):
    """One-vs-rest ROC curves of class probabilities (N, C), one per class present with both outcomes."""
    from sklearn.metrics import auc, roc_curve

    plt = _pyplot()
    y = np.array([classes.index(label) for label in labels])
    fig, ax = plt.subplots(figsize=(5, 5))
    for k, name in enumerate(classes):
        if not 0 < (y == k).sum() < len(y):
            continue
        fpr, tpr, _ = roc_curve(y == k, proba[:, k])
        ax.plot(fpr, tpr, label=f"{name} vs rest (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def scatter_figure(true, predicted, target: str, metrics: dict, title: str):
    """Predicted against true values of one target with the y = x line (a hexbin density beyond
    5,000 points); ``metrics`` gives the Pearson r and R^2 shown in the title."""
    plt = _pyplot()
    true, predicted = np.asarray(true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5, 5))
    if len(true) > 5000:
        ax.hexbin(true, predicted, gridsize=60, bins="log", cmap="viridis", mincnt=1)
    else:
        ax.scatter(true, predicted, s=6, alpha=0.5, linewidths=0)
    lo, hi = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1)
    r = "n/a" if metrics["pearson"] is None else f"{metrics['pearson']:.3f}"
    r2 = "n/a" if metrics["r2"] is None else f"{metrics['r2']:.3f}"
    ax.set(xlabel=f"true {target}", ylabel=f"predicted {target}", title=f"{title}\nPearson {r}, R\u00b2 {r2}, n={len(true)}")
    fig.tight_layout()
    return fig


__all__ = ["roc_figure", "scatter_figure"]
