"""Classifier attributions: which bases drive a :class:`~genoseq.models.classifier.SequenceClassifier`'s class.

Each sequence of length L gets (L, 4) matrices over A, C, G, T:

* ``hypothetical`` -- the contribution each base *would* make at each position (what
  TF-MoDISco needs to compare seqlets);
* ``contributions`` -- ``hypothetical * onehot``: the contribution of the base that is there
  (zero rows at N); ``contributions.sum(-1)`` is the per-base track.

Methods (``method=``):

* ``ism`` -- in-silico saturation mutagenesis through the classifier head: ``ism[i, b]`` is the
  change of the target class's score when position ``i`` becomes base ``b`` (0 for the base that
  is there; all four bases at an N). Hypothetical contributions are the per-position
  mean-centred ISM (``ism - ism.mean(1)``), so the base present scores how much better it does
  than the average base. 3L + 1 forward passes per sequence, no gradients.
* ``ig`` -- integrated gradients (Captum) on the one-hot input against each reference, averaged
  over the references ("expected" integrated gradients). With the per-reference average
  gradients ``m_k``, ``hypothetical[i, b] = mean_k (m_k[i, b] - r_k[i] . m_k[i])`` and the
  contributions of reference ``k`` sum to ``f(x) - f(r_k)`` up to the integration error, which
  is reported (``completeness_gap``).
* ``deepliftshap`` -- Captum's DeepLift against each reference, averaged (DeepLIFT-SHAP). Captum
  rewrites the gradients of *module* nonlinearities only; genoseq's blocks use functional ones
  (SiLU, softplus, attention softmax, FFT convolutions), so here it equals gradient x (input -
  reference) at the input, averaged over references: one backward pass per reference instead of
  ``n_steps``, but without completeness. Prefer ``ig`` unless speed matters.

The one-hot input reaches the model through its token embedding: ``onehot @ E[A..T] + (1 -
sum(onehot)) * E[N]``, which equals the embedding lookup at every base (and at N, whose one-hot
row is zero), so the classifier is unchanged. The reverse-complement strand (``rc_average`` /
``rc_concat``) gets the flipped, complemented one-hot and ``echo`` pooling the repeated one, so
gradients from both strands reach the same input.

Baselines (``baseline=``): ``shuffle`` (default) -- ``n_shuffles`` dinucleotide shuffles of each
sequence (Euler-path shuffle, tangermeme's ``dinucleotide_shuffle``; N kept as a character of its
own), references with the sequence's own composition and dinucleotide counts, so what is
credited is the order of the bases, not the GC content; ``zeros`` -- the all-zero one-hot (the
all-N sequence); ``uniform`` -- 0.25 at every base (the mean base embedding).

The score explained (``score=``) is the target class's logit (default) or its log-probability;
the target is the predicted class of each sequence or a class named by ``class_name``.

:func:`stack_padded` stacks per-sequence arrays of different lengths (attributions, ISM maps)
into one array, filled past each sequence's end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from genoseq.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from genoseq.models.classifier import SequenceClassifier

METHODS = ("ism", "ig", "deepliftshap")
BASELINES = ("shuffle", "zeros", "uniform")
SCORES = ("logit", "log_prob")
ALPHABET = "ACGT"
_A, _N = 5, 9  # token ids of A (then C, G, T) and N


@dataclass
class Attributions:
    """Per-sequence attributions of one classifier; lists hold one array per sequence."""

    method: str
    baseline: str | None  # None for ism
    score: str
    classes: list[str]
    targets: list[str]  # the class explained, per sequence
    probabilities: np.ndarray  # (N, C) class probabilities of the sequences as given
    onehot: list[np.ndarray]  # (L, 4) float32, zero rows at N
    hypothetical: list[np.ndarray]  # (L, 4) float32
    contributions: list[np.ndarray]  # (L, 4) float32 = hypothetical * onehot
    ism: list[np.ndarray] | None = None  # (L, 4) raw score changes (method ism)
    completeness_gap: np.ndarray | None = None  # (N,) mean |sum(contrib_k) - (f(x) - f(r_k))| (ig)
    settings: dict = field(default_factory=dict)

    def per_base(self) -> list[np.ndarray]:
        """The contribution of the base present at each position, (L,) per sequence."""
        return [c.sum(-1) for c in self.contributions]

    def motifs(self, known: "dict[str, np.ndarray] | None" = None, *, n_best: int = 3, **options):
        """TF-MoDISco motifs of these sequences' attributions, matched by TOMTOM to
        ``known`` (name -> (w, 4) PPM, e.g. from :mod:`genoseq.motif_files`' ``read_meme`` or
        ``read_jaspar``) when given;
        ``options`` go to :func:`~genoseq.tasks.interpret.motifs.discover_motifs`."""
        from genoseq.tasks.interpret.motifs import discover_motifs, match_motifs

        found = discover_motifs(self.onehot, self.hypothetical, **options)
        return match_motifs(found, known, n_best=n_best) if known else found


# ---------------------------------------------------------------------- inputs
def one_hot(ids: np.ndarray) -> np.ndarray:
    """(L, 4) float32 one-hot of token ids over A, C, G, T; zero rows at N (and anything else)."""
    ids = np.asarray(ids, dtype=np.int64)
    out = np.zeros((len(ids), 4), dtype=np.float32)
    base = (ids >= _A) & (ids < _A + 4)
    out[np.nonzero(base)[0], ids[base] - _A] = 1.0
    return out


def stack_padded(arrays: Sequence[np.ndarray | None], length: int, shape: tuple = (4,), fill: float = 0.0) -> np.ndarray:
    """Per-sequence arrays of different lengths as one (N, length, *shape) float32 array, ``fill``
    past each one's length (and for a None entry)."""
    out = np.full((len(arrays), length, *shape), fill, dtype=np.float32)
    for i, a in enumerate(arrays):
        if a is not None:
            out[i, :len(a)] = a
    return out


def _encode(classifier: "SequenceClassifier", sequences: Sequence[str | np.ndarray]) -> list[np.ndarray]:
    out = []
    for i, seq in enumerate(sequences):
        ids = np.asarray(seq) if isinstance(seq, np.ndarray) else classifier.tokenizer.encode(str(seq), name=f"#{i + 1}")
        if len(ids) == 0:
            raise InputError(f"sequence #{i + 1} is empty", field=("sequences", i), kind="empty")
        if not ((ids >= _A) & (ids < _A + 4)).any():
            raise InputError(f"sequence #{i + 1} has no A, C, G or T (only N): nothing to attribute",
                             field=("sequences", i), kind="only_n")
        if classifier.max_length and len(ids) > classifier.max_length:
            raise InputError(f"sequence #{i + 1} has {len(ids)} bases; the classifier reads at most "
                             f"{classifier.max_length}", field=("sequences", i), kind="too_long")
        out.append(ids.astype(np.int64))
    return out


def check_classifier(model) -> "SequenceClassifier":
    """``model`` if it is a classifier, else an InputError (a language model has no classes to explain)."""
    from genoseq.models.classifier import SequenceClassifier

    if not isinstance(model, SequenceClassifier):
        kind = type(model).__name__
        raise InputError(f"attributions need a classifier (genoseq classify fit), got a {kind}; for a language "
                         "model use saturation mutagenesis (genoseq interpret ism)", field="model",
                         kind="not_a_classifier")
    if getattr(model, "task", "classification") != "classification":
        raise InputError("attributions explain a class: this model is a regression model", field="model",
                         kind="not_a_classifier")
    return model


def resolve_targets(classes: Sequence[str], class_name, n: int) -> list[int | None]:
    """Class index per sequence (None: the predicted class); an unknown name is an InputError listing the classes."""
    if class_name is None:
        return [None] * n
    names = [class_name] * n if isinstance(class_name, str) else list(class_name)
    if len(names) != n:
        raise InputError(f"class_name: {len(names)} names for {n} sequences", field="class_name", kind="length")
    out: list[int | None] = []
    for name in names:
        if name is None:
            out.append(None)
        elif str(name) not in classes:
            raise InputError(f"class_name: unknown class {name!r}; the classifier's classes are "
                             f"{', '.join(classes)}", field="class_name", kind="unknown_class")
        else:
            out.append(list(classes).index(str(name)))
    return out


def dinucleotide_shuffles(onehot: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` dinucleotide shuffles (n, L, 4) of one (L, 4) one-hot sequence (Euler-path shuffle:
    first and last base kept, every dinucleotide count kept; N rows are a character of their own)."""
    import torch
    from tangermeme.ersatz import dinucleotide_shuffle

    x = torch.from_numpy(np.ascontiguousarray(onehot.T[None]))  # (1, 4, L)
    allow_n = bool((onehot.sum(1) == 0).any())
    shuffled = dinucleotide_shuffle(x, n=n, random_state=[int(seed)], allow_N=allow_n)  # (1, n, 4, L)
    return shuffled[0].permute(0, 2, 1).numpy().astype(np.float32)


def references(onehot: np.ndarray, baseline: str, n_shuffles: int, seed: int) -> np.ndarray:
    """The references (K, L, 4) of one sequence for ``baseline``."""
    if baseline == "shuffle":
        return dinucleotide_shuffles(onehot, n_shuffles, seed)
    if baseline == "zeros":
        return np.zeros((1, *onehot.shape), dtype=np.float32)
    return np.full((1, *onehot.shape), 0.25, dtype=np.float32)


# ---------------------------------------------------------------------- the classifier on one-hot input
def _onehot_module(classifier: "SequenceClassifier", score: str):
    """An ``nn.Module``: one-hot (B, L, 4) -> target scores (B, C) of ``classifier`` (logits or
    log-probabilities), exact at one-hot inputs (see the module docstring)."""
    import torch
    import torch.nn as nn

    class OneHotClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = classifier

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            emb = self.classifier.lm.backbone.embedding
            weight = emb.weight
            strands = [x, x.flip(1).flip(2)]  # the reverse complement: ACGT reversed is its complement
            soft = [s @ weight[_A:_A + 4] + (1.0 - s.sum(-1, keepdim=True)) * weight[_N] for s in strands]
            calls = []
            B, L = x.shape[:2]

            def hook(module, inputs, output):
                k = len(calls)
                if k > 1:
                    raise RuntimeError("the embedding was called more than twice in one classifier forward pass")
                calls.append(k)
                e = soft[k]
                if output.shape[1] == 2 * L:  # echo pooling: the sequence fed twice
                    e = torch.cat([e, e], dim=1)
                if output.shape[:2] != e.shape[:2]:
                    raise RuntimeError(f"unexpected embedding input of shape {tuple(output.shape[:2])}")
                return e.to(output.dtype)

            ids = torch.full((B, L), _N, dtype=torch.long, device=x.device)
            handle = emb.register_forward_hook(hook)
            try:
                logits = self.classifier(ids).float()
            finally:
                handle.remove()
            return torch.log_softmax(logits, -1) if score == "log_prob" else logits

    return OneHotClassifier()


def _scores(classifier: "SequenceClassifier", ids: "torch.Tensor", score: str) -> "torch.Tensor":
    import torch

    logits = classifier(ids).float()
    return torch.log_softmax(logits, -1) if score == "log_prob" else logits


# ---------------------------------------------------------------------- ISM
def classifier_ism(
    classifier: "SequenceClassifier",
    ids: np.ndarray,
    target: int,
    *,
    score: str = "logit",
    batch_size: int = 64,
) -> np.ndarray:
    """(L, 4) change of class ``target``'s score for every single-base substitution of ``ids``
    (0 at the base present)."""
    import torch

    device = next(classifier.parameters()).device
    L = len(ids)
    positions, bases = [], []
    for i in range(L):
        for b in range(4):
            if ids[i] != _A + b:
                positions.append(i)
                bases.append(b)
    ref = torch.as_tensor(ids, dtype=torch.long, device=device)
    out = np.zeros((L, 4), dtype=np.float32)
    with torch.inference_mode():
        base_score = float(_scores(classifier, ref[None], score)[0, target])
        for start in range(0, len(positions), batch_size):
            pos = torch.as_tensor(positions[start:start + batch_size], device=device)
            alt = torch.as_tensor(bases[start:start + batch_size], device=device) + _A
            batch = ref.expand(len(pos), L).clone()
            batch[torch.arange(len(pos), device=device), pos] = alt
            s = _scores(classifier, batch, score)[:, target].cpu().numpy()
            out[pos.cpu().numpy(), (alt - _A).cpu().numpy()] = s - base_score
    return out


# ---------------------------------------------------------------------- gradients
def _multipliers(module, method: str, x: "torch.Tensor", refs: "torch.Tensor", targets: list[int], n_steps: int,
                 batch_size: int) -> "torch.Tensor":
    """Per-row multipliers (the average gradient along the path for ig; DeepLift's for deepliftshap)."""
    import warnings

    import torch
    from captum.attr import DeepLift, IntegratedGradients

    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns that the input has requires_grad / functional nonlinearities
        if method == "ig":
            ig = IntegratedGradients(module, multiply_by_inputs=False)
            return ig.attribute(x, baselines=refs, target=targets, n_steps=n_steps,
                                internal_batch_size=max(batch_size, 1), method="gausslegendre")
        out = []
        dl = DeepLift(module, multiply_by_inputs=False)
        for s in range(0, len(x), batch_size):
            out.append(dl.attribute(x[s:s + batch_size], baselines=refs[s:s + batch_size],
                                    target=targets[s:s + batch_size]))
        return torch.cat(out)


def _check_options(method: str, score: str, baseline: str, counts: dict[str, int]) -> None:
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}", field="method", kind="choice")
    if score not in SCORES:
        raise InputError(f"score must be one of {', '.join(SCORES)}, got {score!r}", field="score", kind="choice")
    if baseline not in BASELINES:
        raise InputError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}", field="baseline",
                         kind="choice")
    for name, value in counts.items():
        if int(value) < 1:
            raise InputError(f"{name} must be >= 1, got {value}", field=name, kind="out_of_range")


def _completeness_gap(module, x: "torch.Tensor", refs: "torch.Tensor", multipliers: "torch.Tensor", targets: list[int],
                      batch_size: int, k: int) -> np.ndarray:
    """Integrated gradients' error per reference, ``|sum of contributions - (f(x) - f(r))|``,
    averaged over each sequence's ``k`` references."""
    import torch

    contrib = ((x - refs) * multipliers).sum((1, 2))
    with torch.no_grad():
        idx = torch.arange(len(targets), device=x.device)
        tgt = torch.as_tensor(targets, device=x.device)
        fx = torch.cat([module(x[j:j + batch_size]) for j in range(0, len(x), batch_size)])[idx, tgt]
        fr = torch.cat([module(refs[j:j + batch_size]) for j in range(0, len(refs), batch_size)])[idx, tgt]
    return (contrib - (fx - fr)).abs().view(-1, k).mean(1).cpu().numpy()


def classifier_attributions(
    classifier: "SequenceClassifier",
    sequences: Sequence[str | np.ndarray],
    *,
    method: str = "ig",
    class_name: str | Sequence[str | None] | None = None,
    score: str = "logit",
    baseline: str = "shuffle",
    n_shuffles: int = 10,
    n_steps: int = 20,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool | str = False,
) -> Attributions:
    """Attributions of ``classifier``'s class to every base of each sequence.

    Args:
        classifier: A :class:`~genoseq.models.classifier.SequenceClassifier` (anything else is an
            InputError with ``field="model"``, ``kind="not_a_classifier"``).
        sequences: DNA strings (A, C, G, T, IUPAC codes read as N) or token-id arrays.
        method: ``ism``, ``ig`` or ``deepliftshap`` (see the module docstring).
        class_name: The class to explain, one name for all sequences or one per sequence (None:
            each sequence's predicted class). Unknown names: InputError (``field="class_name"``,
            ``kind="unknown_class"``) listing the classes.
        score: ``logit`` (default) or ``log_prob`` of the target class.
        baseline: ``shuffle`` (``n_shuffles`` dinucleotide shuffles per sequence), ``zeros`` or
            ``uniform`` (gradient methods only).
        n_shuffles: References per sequence for ``baseline="shuffle"``.
        n_steps: Integration steps per reference (``ig``).
        batch_size: Rows per forward pass.
        seed: Seed of the shuffles (sequence ``i`` uses ``seed + i``, so a sequence's references do
            not depend on the batch it is in).
        progress: As in :mod:`genoseq.progress`.

    Returns:
        :class:`Attributions`; arrays are float32, one (L, 4) matrix per sequence.
    """
    import torch

    from genoseq.progress import Progress

    classifier = check_classifier(classifier)
    _check_options(method, score, baseline, {"n_shuffles": n_shuffles, "n_steps": n_steps, "batch_size": batch_size})
    if len(sequences) == 0:
        raise InputError("no sequences given", field="sequences", kind="empty")
    classifier.eval()
    encoded = _encode(classifier, sequences)
    chosen = resolve_targets(classifier.classes, class_name, len(encoded))
    proba = classifier.predict_proba(encoded, batch_size=batch_size)
    targets = [int(np.argmax(proba[i])) if t is None else t for i, t in enumerate(chosen)]
    onehots = [one_hot(ids) for ids in encoded]
    n = len(encoded)
    hyp: list[np.ndarray | None] = [None] * n
    ism: list[np.ndarray] | None = [] if method == "ism" else None
    gaps = np.zeros(n) if method == "ig" else None
    bar = Progress(n, desc=f"attributions ({method})", unit="seq", mode=progress)
    if method == "ism":
        for i, ids in enumerate(encoded):
            m = classifier_ism(classifier, ids, targets[i], score=score, batch_size=batch_size)
            ism.append(m)
            hyp[i] = (m - m.mean(1, keepdims=True)).astype(np.float32)
            bar.update(1)
    else:
        device = next(classifier.parameters()).device
        module = _onehot_module(classifier, score)
        k = n_shuffles if baseline == "shuffle" else 1
        per_call = max(1, batch_size // k)
        by_length: dict[int, list[int]] = {}
        for i, ids in enumerate(encoded):
            by_length.setdefault(len(ids), []).append(i)
        for rows_all in by_length.values():
            for s in range(0, len(rows_all), per_call):
                rows = rows_all[s:s + per_call]
                refs = np.concatenate([references(onehots[i], baseline, n_shuffles, seed + i) for i in rows])
                x = np.concatenate([np.repeat(onehots[i][None], k, 0) for i in rows])
                row_targets = [targets[i] for i in rows for _ in range(k)]
                xt, rt = torch.from_numpy(x).to(device), torch.from_numpy(refs).to(device)
                m = _multipliers(module, method, xt, rt, row_targets, n_steps, batch_size).detach().float()
                # hypothetical[i, b] = m[i, b] - r[i] . m[i], per reference, then averaged
                h = m - (rt * m).sum(-1, keepdim=True)
                if method == "ig":
                    gap = _completeness_gap(module, xt, rt, m, row_targets, batch_size, k)
                h = h.view(len(rows), k, *h.shape[1:]).mean(1).cpu().numpy()
                for j, i in enumerate(rows):
                    hyp[i] = h[j].astype(np.float32)
                    if gaps is not None:
                        gaps[i] = gap[j]
                bar.update(len(rows))
    bar.close()
    contributions = [(h * o).astype(np.float32) for h, o in zip(hyp, onehots)]
    return Attributions(
        method=method, baseline=None if method == "ism" else baseline, score=score, classes=list(classifier.classes),
        targets=[classifier.classes[t] for t in targets], probabilities=proba, onehot=onehots,
        hypothetical=hyp, contributions=contributions, ism=ism, completeness_gap=gaps,
        settings={"n_shuffles": n_shuffles if baseline == "shuffle" and method != "ism" else None,
                  "n_steps": n_steps if method == "ig" else None, "seed": seed},
    )


__all__ = ["ALPHABET", "Attributions", "BASELINES", "METHODS", "SCORES", "check_classifier", "classifier_attributions",
           "classifier_ism", "dinucleotide_shuffles", "one_hot", "references", "resolve_targets", "stack_padded"]
