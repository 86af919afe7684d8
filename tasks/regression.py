"""Regression of numeric targets on a language model's embeddings: scaling, the probe, the metrics.

A regression :class:`~genoseq.models.classifier.SequenceClassifier` predicts standardised
values in a loss's link space (:func:`link_values`: the values for ``mse`` and ``poisson``,
their ``log1p`` for ``log``) and keeps the link-space mean and standard deviation
(:func:`target_scaling`), so its outputs are in the targets' units.

* :func:`fit_regression_probe` -- ridge regression (``mse``, ``log``; the penalty chosen per
  target by leave-one-out CV over :data:`RIDGE_ALPHAS`) or one Poisson GLM per target
  (``poisson``; the penalty by 3-fold CV over :data:`POISSON_ALPHAS`) on standardised frozen
  embeddings, folded into the model's linear head;
* :func:`regression_metrics` -- per target Pearson, Spearman, R^2 and MSE, and their means.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from genoseq.errors import InputError
from genoseq.models.classifier import SequenceClassifier
from genoseq.models.embedding import Embedder
from genoseq.tasks.classification import embedding_options

RIDGE_ALPHAS = tuple(10.0 ** k for k in range(-2, 6))  # ridge penalties tried by leave-one-out CV
POISSON_ALPHAS = tuple(10.0 ** k for k in range(-4, 1))  # Poisson GLM penalties tried by 3-fold CV


def target_names(target_column: str | None, target_columns: list[str] | None) -> list[str]:
    """The regression targets from ``--target_column`` xor ``--target_columns`` (distinct, non-empty)."""
    if target_column is not None and target_columns:
        raise InputError("give --target_column or --target_columns, not both", field="target_columns", kind="conflict")
    names = [target_column] if target_column is not None else [str(c) for c in (target_columns or [])]
    if not names:
        raise InputError("--task regression needs --target_column NAME or --target_columns [A,B]", field="target_column",
                         kind="missing_target")
    if len(set(names)) != len(names) or any(not n.strip() for n in names):
        raise InputError(f"target columns must be distinct and non-empty, got {names}", field="target_columns",
                         kind="bad_target")
    return names


def link_values(values, loss: str) -> np.ndarray:
    """Targets in the loss's link space: the values (mse, poisson: their log is the link of the
    mean), ``log1p`` of them (log)."""
    return np.log1p(values) if loss == "log" else np.asarray(values, dtype=np.float64)


def target_scaling(values, targets: list[str], loss: str, path: str) -> tuple[list[float], list[float]]:
    """Per target, the link-space mean and standard deviation the head is standardised with
    (poisson: the log of the mean rate and 1). A constant target cannot be learned: InputError."""
    values = np.asarray(values, dtype=np.float64)
    if loss == "poisson":
        means = values.mean(0)
        for name, m in zip(targets, means):
            if m <= 0:
                raise InputError(f"target {name!r} is zero in every training row (a Poisson rate needs counts)", path=path)
        return np.log(means).tolist(), [1.0] * len(targets)
    link = link_values(values, loss)
    std = link.std(0)
    for name, sd in zip(targets, std):
        if not sd > 0:
            raise InputError(f"target {name!r} has the same value in every training row: nothing to learn", path=path)
    return link.mean(0).tolist(), std.tolist()


def _poisson_glms(x: np.ndarray, values: np.ndarray, alpha: float | None, seed: int):
    """One Poisson GLM per target column: coefficients (T, D), intercepts (T,), penalties."""
    from sklearn.linear_model import PoissonRegressor
    from sklearn.model_selection import KFold, cross_val_score

    alphas = [alpha] if alpha is not None else list(POISSON_ALPHAS)
    coefs, intercepts, chosen = [], [], []
    folds = KFold(n_splits=3, shuffle=True, random_state=seed)
    for j in range(values.shape[1]):
        best = alphas[0]
        if len(alphas) > 1:
            scores = [cross_val_score(PoissonRegressor(alpha=a, max_iter=1000), x, values[:, j], cv=folds).mean()
                      for a in alphas]
            best = alphas[int(np.argmax(scores))]
        glm = PoissonRegressor(alpha=best, max_iter=1000).fit(x, values[:, j])
        coefs.append(glm.coef_)
        intercepts.append(glm.intercept_)
        chosen.append(best)
    return np.stack(coefs), np.asarray(intercepts), chosen


def _ridge(x: np.ndarray, z: np.ndarray, alpha: float | None):
    """Ridge regression of every standardised target column: coefficients (T, D), intercepts (T,), penalties."""
    from sklearn.linear_model import Ridge, RidgeCV

    n_targets = z.shape[1]
    if alpha is not None:
        ridge = Ridge(alpha=alpha).fit(x, z)
        chosen = [alpha] * n_targets
    else:
        ridge = RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True).fit(x, z)
        chosen = np.broadcast_to(np.asarray(ridge.alpha_, dtype=np.float64), (n_targets,)).tolist()
    return np.asarray(ridge.coef_).reshape(n_targets, -1), np.asarray(ridge.intercept_).reshape(-1), chosen


def fit_regression_probe(embedder: Embedder, sequences: Sequence[str], values: np.ndarray,
                         val_sequences: Sequence[str] = (), val_values: np.ndarray | None = None, *,
                         targets: list[str], loss: str = "mse", alpha: float | None = None, seed: int = 0,
                         progress: bool | str = False, path: str = "") -> tuple[SequenceClassifier, dict]:
    """Ridge (mse, log) or per-target Poisson GLM (poisson) on standardised frozen embeddings,
    folded into the linear head of a regression :class:`SequenceClassifier`.

    ``values`` (N, T) are the training targets; ``alpha`` fixes the penalty (default: chosen
    per target by cross-validation); ``path`` names the training file in errors. Returns the
    model and its summary: the penalty per target and the training (and validation) metrics.
    """
    from sklearn.preprocessing import StandardScaler

    x = embedder.embed(list(sequences), progress=progress).astype("float64")
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    if loss == "poisson":
        coef, intercept, chosen = _poisson_glms(xs, values, alpha, seed)
        mean, std = [0.0] * len(targets), [1.0] * len(targets)  # the GLM predicts the log rate itself
    else:
        mean, std = target_scaling(values, targets, loss, path)
        coef, intercept, chosen = _ridge(xs, (link_values(values, loss) - np.asarray(mean)) / np.asarray(std), alpha)
    model = SequenceClassifier.from_regression_probe(
        embedder.model.cpu(), targets, coef, intercept, scaler.mean_, scaler.scale_, loss=loss, target_mean=mean,
        target_std=std, **embedding_options(embedder),
    )
    info: dict = {"alpha": dict(zip(targets, map(float, chosen)))}
    info["train_metrics"] = regression_metrics(values, model.predict_values(list(sequences)), targets)["per_target"]
    if len(val_sequences):
        info["val_metrics"] = regression_metrics(val_values, model.predict_values(list(val_sequences)),
                                                 targets)["per_target"]
    return model, info


def regression_metrics(true, predicted, targets: list[str]) -> dict:
    """Per target: n, Pearson r, Spearman rho (scipy.stats), R^2 and MSE (sklearn.metrics); a
    correlation is null where either side is constant. Also their means over the targets."""
    from scipy import stats
    from sklearn import metrics

    true = np.asarray(true, dtype=np.float64).reshape(len(true), -1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(len(predicted), -1)
    per_target = {}
    for j, name in enumerate(targets):
        y, p = true[:, j], predicted[:, j]
        varied = len(y) >= 2 and np.ptp(y) > 0 and np.ptp(p) > 0
        per_target[name] = {
            "n": int(len(y)),
            "pearson": float(stats.pearsonr(y, p)[0]) if varied else None,
            "spearman": float(stats.spearmanr(y, p)[0]) if varied else None,
            "r2": float(metrics.r2_score(y, p)) if len(y) >= 2 else None,
            "mse": float(metrics.mean_squared_error(y, p)),
            "true_mean": float(y.mean()),
            "true_std": float(y.std()),
        }
    summary = {}
    for key in ("pearson", "spearman", "r2", "mse"):
        found = [m[key] for m in per_target.values() if m[key] is not None]
        summary[f"mean_{key}"] = float(np.mean(found)) if found else None
    return {"n": int(len(true)), "targets": list(targets), **summary, "per_target": per_target}


__all__ = ["POISSON_ALPHAS", "RIDGE_ALPHAS", "fit_regression_probe", "link_values", "regression_metrics",
           "target_names", "target_scaling"]
