"""The figures of the reports, built from arrays and returned as matplotlib ``Figure`` objects
(Agg backend, nothing shown); :func:`genoseq.runtime.save_figure` writes and closes them.
matplotlib (and logomaker for logos) is imported when a figure is made.

* classifiers: :func:`roc_figure` (one-vs-rest ROC curves), :func:`scatter_figure` (a
  regression target, predicted against true);
* interpretation, matrices (L, 4) over A, C, G, T: :func:`contribution_logo`,
  :func:`ism_heatmap`, :func:`attribution_figure`, :func:`motif_logo`, :func:`lm_ism_figure`,
  :func:`dependency_heatmap`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

ALPHABET = "ACGT"


def _figure(width: float, height: float, rows: int = 1):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, 1, figsize=(width, height), squeeze=False)
    return fig, list(axes[:, 0])


def _logo(ax, matrix: np.ndarray, start: int = 0) -> None:
    import logomaker
    import pandas as pd

    df = pd.DataFrame(np.asarray(matrix, dtype=np.float64), columns=list(ALPHABET),
                      index=np.arange(start, start + len(matrix)))
    logo = logomaker.Logo(df, ax=ax, color_scheme="classic")
    logo.style_spines(visible=False)
    logo.style_spines(spines=["left", "bottom"], visible=True)
    ax.axhline(0, color="0.6", lw=0.5)


def contribution_logo(contributions: np.ndarray, *, title: str = "", start: int = 0, ylabel: str = "contribution"):
    """A logo of one sequence's contributions (L, 4): each base drawn as tall as its score, below
    the axis when it lowers the explained score. ``start`` numbers the first position."""
    width = min(40.0, max(6.0, len(contributions) / 8))
    fig, (ax,) = _figure(width, 2.4)
    _logo(ax, contributions, start)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("position")
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def ism_heatmap(ism: np.ndarray, sequence: str | None = None, *, title: str = "", start: int = 0,
                label: str = "score change"):
    """Heatmap (4 rows A, C, G, T x L) of ISM score changes, diverging around 0; the base present
    is marked with a dot."""
    ism = np.asarray(ism, dtype=np.float64)
    width = min(40.0, max(6.0, len(ism) / 8))
    fig, (ax,) = _figure(width, 2.2)
    limit = float(np.abs(ism).max()) or 1.0
    im = ax.imshow(ism.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest",
                   extent=(start - 0.5, start + len(ism) - 0.5, 3.5, -0.5))
    ax.set_yticks(range(4), list(ALPHABET))
    ax.set_xlabel("position")
    if sequence is not None:
        cols = [(start + i, ALPHABET.index(b)) for i, b in enumerate(sequence.upper()) if b in ALPHABET]
        if cols:
            xs, ys = zip(*cols)
            ax.scatter(xs, ys, s=2, c="k", marker=".")
    fig.colorbar(im, ax=ax, label=label, fraction=0.03, pad=0.01)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def attribution_figure(contributions: np.ndarray, *, ism: np.ndarray | None = None, sequence: str | None = None,
                       title: str = "", start: int = 0):
    """The per-sequence figure: the contribution logo, and the ISM heatmap under it when given."""
    if ism is None:
        return contribution_logo(contributions, title=title, start=start)
    width = min(40.0, max(6.0, len(contributions) / 8))
    fig, (top, bottom) = _figure(width, 4.4, rows=2)
    _logo(top, contributions, start)
    top.set_ylabel("contribution")
    if title:
        top.set_title(title, fontsize=10, loc="left")
    limit = float(np.abs(ism).max()) or 1.0
    bottom.imshow(np.asarray(ism).T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest",
                  extent=(start - 0.5, start + len(ism) - 0.5, 3.5, -0.5))
    bottom.set_yticks(range(4), list(ALPHABET))
    bottom.set_xlabel("position")
    fig.tight_layout()
    return fig


def information(ppm: np.ndarray, pseudocount: float = 1e-3) -> np.ndarray:
    """Per-base heights of an information logo: p * (2 - entropy in bits) per position."""
    p = np.asarray(ppm, dtype=np.float64) + pseudocount
    p /= p.sum(1, keepdims=True)
    ic = 2.0 + (p * np.log2(p)).sum(1)
    return p * ic[:, None]


def motif_logo(ppm: np.ndarray, cwm: np.ndarray | None = None, *, title: str = ""):
    """A motif: its information logo (bits) and, when ``cwm`` is given, its contribution logo."""
    rows = 2 if cwm is not None else 1
    fig, axes = _figure(max(3.0, len(ppm) * 0.35), 2.0 * rows, rows=rows)
    _logo(axes[0], information(ppm))
    axes[0].set_ylabel("bits")
    axes[0].set_ylim(0, 2)
    if title:
        axes[0].set_title(title, fontsize=10, loc="left")
    if cwm is not None:
        _logo(axes[1], cwm)
        axes[1].set_ylabel("contribution")
    fig.tight_layout()
    return fig


def lm_ism_figure(llr: np.ndarray, sequence: str, *, title: str = "", start: int = 0, max_logo: int = 1000):
    """A language model's saturation mutagenesis of one region: on top, each reference base drawn
    as tall as the mean LLR its three substitutions lose (``-mean LLR``: tall where the model
    wants the base kept; a line of the mean |LLR| instead for regions longer than
    ``max_logo``); under it the (4 x L) heatmap of every substitution's LLR (nats)."""
    llr = np.nan_to_num(np.asarray(llr, dtype=np.float64))
    seq = sequence.upper()
    onehot = np.array([[b == a for a in ALPHABET] for b in seq], dtype=np.float64).reshape(len(seq), 4)
    kept = -llr.sum(1) / 3.0
    width = min(40.0, max(6.0, len(llr) / 8))
    fig, (top, bottom) = _figure(width, 4.4, rows=2)
    if len(llr) <= max_logo:
        _logo(top, onehot * kept[:, None], start)
        top.set_ylabel("-mean LLR")
    else:
        top.plot(np.arange(start, start + len(llr)), np.abs(llr).sum(1) / 3.0, lw=0.6, color="k")
        top.set_xlim(start - 0.5, start + len(llr) - 0.5)
        top.set_ylabel("mean |LLR|")
    if title:
        top.set_title(title, fontsize=10, loc="left")
    limit = float(np.abs(llr).max()) or 1.0
    im = bottom.imshow(llr.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest",
                       extent=(start - 0.5, start + len(llr) - 0.5, 3.5, -0.5))
    bottom.set_yticks(range(4), list(ALPHABET))
    bottom.set_xlabel("position")
    fig.colorbar(im, ax=[top, bottom], label="LLR (nats)", fraction=0.02, pad=0.01)
    return fig


def dependency_heatmap(dep: np.ndarray, sequence: str | None = None, *, title: str = "", start: int = 0,
                       quantile: float = 0.995):
    """An L x L nucleotide dependency map: row ``i`` (query, substituted) against column ``j``
    (target, whose prediction changes); the colour scale ends at the ``quantile`` of the
    off-diagonal values so that a few very strong pairs do not hide the rest."""
    dep = np.asarray(dep, dtype=np.float64)
    n = len(dep)
    size = min(14.0, max(5.0, n / 60))
    fig, (ax,) = _figure(size + 1.2, size)
    off = dep[~np.eye(n, dtype=bool)]
    off = off[np.isfinite(off)]
    vmax = float(np.quantile(off, quantile)) if len(off) else 1.0
    im = ax.imshow(dep, cmap="Reds", vmin=0.0, vmax=vmax or 1.0, interpolation="nearest",
                   extent=(start - 0.5, start + n - 0.5, start + n - 0.5, start - 0.5))
    ax.set_xlabel("target position j (prediction changed)")
    ax.set_ylabel("query position i (base substituted)")
    if sequence is not None and n <= 80:
        ax.set_xticks(range(start, start + n), list(sequence.upper()), fontsize=6)
        ax.set_yticks(range(start, start + n), list(sequence.upper()), fontsize=6)
    fig.colorbar(im, ax=ax, label="max |change of log-odds|", fraction=0.04, pad=0.02)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def roc_figure(labels: Sequence[str], proba, classes: list[str], title: str):
    """One-vs-rest ROC curves of class probabilities (N, C), one per class present with both outcomes."""
    from sklearn.metrics import auc, roc_curve

    y = np.array([classes.index(label) for label in labels])
    fig, (ax,) = _figure(5, 5)
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
    true, predicted = np.asarray(true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    fig, (ax,) = _figure(5, 5)
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


__all__ = ["attribution_figure", "contribution_logo", "dependency_heatmap", "information", "ism_heatmap",
           "lm_ism_figure", "motif_logo", "roc_figure", "scatter_figure"]
