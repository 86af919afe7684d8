"""Genome annotation at single-base resolution: backbone states, probe training, labelling, decoding.

The library behind ``genoseq annotate``, ``POST /v1/annotate`` and ``Annotator.annotate``:

* :func:`strand_states` / :func:`block_features`: a backbone's states over a sequence of any
  length, in windows of ``segmenter.window`` bases where each kept position has at least
  ``segmenter.context`` bases of context on the side the pass reads from (forward pass: left,
  reverse pass: right). Memory is one batch of windows plus the block's features.
* :func:`fit_probe`: the frozen-backbone mode. Features of the training and validation regions
  are computed once (float16 in memory), then only the head is trained on random crops, with
  early stopping on the validation loss and the best epoch's weights kept.
* :func:`contig_probabilities` / :func:`annotate_genome`: per-base class probabilities per
  strand, a contig at a time in blocks (bounded memory), then :func:`decode_features`.
* :func:`decode_features`: runs of labels -> features. Coding bases (P(CDS_1..3) > 1/2) are
  joined into runs of one codon frame; each run becomes a gene whose end is snapped to the
  first in-frame stop codon after the run's middle and whose start to the in-frame start codon
  (ATG, GTG, TTG) nearest the predicted start within the open reading frame; ends without a
  codon to snap to (contig edges) stay where predicted and are marked ``partial``. RNA classes
  become runs of their own argmax. Scores are the mean probability of the class over the feature.

:mod:`genoseq.tasks.annotation_metrics` scores them against a true annotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from genoseq.annotation import CODON_CLASSES, INTERGENIC, ClassScheme, Feature
from genoseq.errors import InputError
from genoseq.tokenizer import Tokenizer

if TYPE_CHECKING:  # pragma: no cover
    from genoseq.datamodules.regions import Region
    from genoseq.genome import Genome
    from genoseq.models.segmenter import Segmenter

_TOKENIZER = Tokenizer()
START_CODONS = ("ATG", "GTG", "TTG")
STOP_CODONS = ("TAA", "TAG", "TGA")


# ---------------------------------------------------------------------- backbone states
def strand_states(seg: "Segmenter", ids: np.ndarray, *, batch_size: int = 8, on_bases=None) -> np.ndarray:
    """Causal states (L, d_model) float16 of one strand, read left to right in windows of
    ``seg.window`` with ``seg.context`` bases of left context before each kept part."""
    import torch

    length, window, ctx = len(ids), seg.window, seg.context
    step = window - ctx
    out = np.zeros((length, seg.lm.config.d_model), dtype=np.float16)
    # (input start, input end, first kept position): the first window keeps all of itself
    pieces = [(0, min(window, length), 0)]
    pos = pieces[0][1]
    while pos < length:
        end = min(pos + step, length)
        pieces.append((pos - ctx, end, pos))
        pos = end
    device = next(seg.parameters()).device
    by_len: dict[int, list] = {}
    for p in pieces:
        by_len.setdefault(p[1] - p[0], []).append(p)
    with torch.inference_mode():
        for n, group in by_len.items():
            for b in range(0, len(group), batch_size):
                rows = group[b : b + batch_size]
                x = torch.from_numpy(np.stack([ids[s:e] for s, e, _ in rows]).astype(np.int64)).to(device)
                h = seg.lm.hidden_states(x, seg.layer).float().cpu().numpy()
                for (s, e, keep), hs in zip(rows, h):
                    out[keep:e] = hs[keep - s :]
                if on_bases is not None:
                    on_bases(sum(e - k for _, e, k in rows))
    return out


def block_features(seg: "Segmenter", ids: np.ndarray, start: int, end: int, *, batch_size: int = 8,
                   on_bases=None) -> np.ndarray:
    """Features (end - start, 2 d_model) float16 of ``ids[start:end]``, the forward pass with up
    to ``seg.context`` bases of left context from ``ids`` and the reverse pass with as many on
    the right."""
    a, b = max(0, start - seg.context), min(len(ids), end + seg.context)
    fwd = strand_states(seg, ids[a:end], batch_size=batch_size, on_bases=on_bases)[start - a :]
    rev = strand_states(seg, _TOKENIZER.reverse_complement(ids[start:b]), batch_size=batch_size, on_bases=on_bases)
    return np.concatenate([fwd, rev[::-1][: end - start]], axis=1)


def _head_probs(seg: "Segmenter", features: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Class probabilities (2, L, K) float32 of the head over one stretch of features."""
    import torch

    device = next(seg.parameters()).device
    with torch.inference_mode():
        f = torch.from_numpy(features).to(device)[None]
        x = torch.from_numpy(ids.astype(np.int64)).to(device)[None]
        return torch.softmax(seg.head_logits(f.float(), x).float(), dim=-1)[0].cpu().numpy()


def contig_probabilities(seg: "Segmenter", ids: np.ndarray, *, block: int = 1 << 17, batch_size: int = 8,
                         on_bases=None) -> np.ndarray:
    """Per-base class probabilities (2, L, K) float16 of one sequence (row 0: + strand), in
    blocks of ``block`` bases; each block's features reach half the head's receptive field
    beyond it, so the result does not depend on ``block``."""
    seg.eval()
    length = len(ids)
    margin = seg.head.receptive_field // 2
    out = np.zeros((2, length, seg.num_classes), dtype=np.float16)
    for s in range(0, length, block):
        e = min(s + block, length)
        a, b = max(0, s - margin), min(length, e + margin)
        feats = block_features(seg, ids, a, b, batch_size=batch_size, on_bases=None)
        out[:, s:e] = _head_probs(seg, feats, ids[a:b])[:, s - a : e - a]
        if on_bases is not None:
            on_bases(e - s)
    return out


# ---------------------------------------------------------------------- probe training
@dataclass
class _Stretch:
    contig: str
    start: int
    ids: np.ndarray
    labels: np.ndarray  # (2, L) int64
    features: np.ndarray  # (L, F) float16


def _stretches(seg, genome, labels, regions, *, max_bases, seed, progress, desc) -> list[_Stretch]:
    from genoseq.progress import Progress

    regions = list(regions)
    if max_bases is not None:
        rng = np.random.default_rng(seed)
        chosen, total = [], 0
        for i in rng.permutation(len(regions)):
            r = regions[int(i)]
            take = min(len(r), max_bases - total)
            if take <= 0:
                break
            chosen.append((r.contig, r.start, r.start + take))
            total += take
        spans = sorted(chosen)
    else:
        spans = [(r.contig, r.start, r.end) for r in regions]
    out = []
    total = sum(e - s for _, s, e in spans)
    cached: tuple[str, np.ndarray] | None = None
    with Progress(total, desc=desc, unit="bp", mode=progress) as bar:
        for contig, s, e in spans:
            if cached is None or cached[0] != contig:
                cached = (contig, genome.fetch(contig, 0, genome.contigs[contig]))
            ids = cached[1]
            feats = block_features(seg, ids, s, e)
            out.append(_Stretch(contig, s, ids[s:e].copy(), labels[contig][:, s:e].astype(np.int64), feats))
            bar.update(e - s)
    return out


def class_weights(counts: Sequence[int], power: float = 0.5, cap: float = 50.0) -> np.ndarray:
    """Cross-entropy weights ``freq^-power``, scaled so the mean weight per base is 1, at most ``cap``."""
    counts = np.asarray(counts, dtype=np.float64)
    freq = counts / max(counts.sum(), 1.0)
    w = np.where(freq > 0, np.power(np.maximum(freq, 1e-12), -power), 0.0)
    w = w / max((freq * w).sum(), 1e-12)
    return np.minimum(w, cap)


def label_class_weights(label_arrays, num_classes: int, power: float) -> np.ndarray:
    """Loss weights per class from the class counts of per-base label arrays:
    :func:`class_weights` (``power`` 0: all ones)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for labels in label_arrays:
        counts += np.bincount(labels.reshape(-1), minlength=num_classes)[:num_classes]
    return class_weights(counts, power) if power else np.ones(num_classes)


def _crop_batch(train: list[_Stretch], crops: list[tuple[int, int]], picked, offsets, crop: int, device):
    """Features, token ids and labels of training crops ``picked`` (each start moved by its
    offset), as tensors cut to the shortest crop."""
    import torch

    rows = []
    for j in picked:
        i, s = crops[j]
        st = train[i]
        s = min(s + int(offsets[j]) % crop, max(len(st.ids) - crop, 0))
        rows.append((st, s, min(s + crop, len(st.ids))))
    width = min(e - s for _, s, e in rows)
    f = torch.from_numpy(np.stack([st.features[s : s + width] for st, s, _ in rows])).to(device).float()
    x = torch.from_numpy(np.stack([st.ids[s : s + width] for st, s, _ in rows]).astype(np.int64)).to(device)
    y = torch.from_numpy(np.stack([st.labels[:, s : s + width] for st, s, _ in rows])).to(device)
    return f, x, y


@dataclass
class ProbeReport:
    """What :func:`fit_probe` did: bases, epochs, losses per epoch, the best epoch."""

    train_bases: int
    val_bases: int
    epochs_run: int = 0
    best_epoch: int | None = None
    best_val_loss: float | None = None
    history: list[dict] = field(default_factory=list)
    feature_seconds: float = 0.0
    train_seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def fit_probe(seg: "Segmenter", genome: "Genome", labels: dict[str, np.ndarray], train_regions: Sequence["Region"],
              val_regions: Sequence["Region"], *, epochs: int = 8, patience: int = 2, crop: int = 2048,
              batch_size: int = 8, lr: float = 2e-3, weight_decay: float = 0.01, max_train_bases: int | None = None,
              max_val_bases: int | None = 500_000, weight_power: float = 0.5, seed: int = 0,
              progress="auto") -> ProbeReport:
    """Train ``seg``'s head over frozen backbone features of ``train_regions`` (module docstring).

    ``labels`` are :func:`genoseq.annotation.label_bases` arrays; ``max_train_bases`` /
    ``max_val_bases`` cap the bases whose features are computed (whole regions drawn at random
    with ``seed``, the last one cut). Class weights are ``frequency^-weight_power`` of the
    training labels (0: unweighted). Returns a :class:`ProbeReport`; ``seg`` keeps the weights
    of the epoch with the lowest validation loss (the last epoch without validation regions).
    """
    import time

    import torch

    from genoseq.progress import Progress

    if not train_regions:
        raise InputError("no training regions", field="holdout", kind="no_training_data")
    torch.manual_seed(seed)
    seg.lm.requires_grad_(False).eval()
    started = time.perf_counter()
    train = _stretches(seg, genome, labels, train_regions, max_bases=max_train_bases, seed=seed, progress=progress,
                       desc="annotate features (train)")
    val = _stretches(seg, genome, labels, val_regions, max_bases=max_val_bases, seed=seed + 1, progress=progress,
                     desc="annotate features (val)") if val_regions else []
    report = ProbeReport(sum(len(s.ids) for s in train), sum(len(s.ids) for s in val))
    report.feature_seconds = round(time.perf_counter() - started, 2)
    weights = label_class_weights((s.labels for s in train), seg.num_classes, weight_power)
    seg.class_weights = torch.tensor(weights, dtype=torch.float32)
    report.class_weights = {c: round(float(w), 4) for c, w in zip(seg.classes, weights)}
    device = next(seg.parameters()).device
    optimizer = torch.optim.AdamW(seg.head.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    crops = [(i, s) for i, st in enumerate(train) for s in range(0, max(len(st.ids) - crop, 0) + 1, crop)]
    steps = math.ceil(len(crops) / batch_size) * epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    best_state, stale = None, 0
    started = time.perf_counter()
    for epoch in range(epochs):
        seg.head.train()
        offsets = rng.integers(0, crop, size=len(crops))
        order = rng.permutation(len(crops))
        total, n = 0.0, 0
        with Progress(len(order), desc=f"annotate probe epoch {epoch + 1}/{epochs}", unit="crop", mode=progress) as bar:
            for b in range(0, len(order), batch_size):
                f, x, y = _crop_batch(train, crops, order[b : b + batch_size], offsets, crop, device)
                loss = seg.loss(seg.head_logits(f, x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(seg.head.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                total, n = total + loss.item() * len(f), n + len(f)
                bar.update(len(f))
        entry = {"epoch": epoch, "train_loss": round(total / max(n, 1), 5), **(_val_metrics(seg, val) if val else {})}
        report.history.append(entry)
        report.epochs_run = epoch + 1
        monitored = entry.get("val_loss", entry["train_loss"])
        if report.best_val_loss is None or monitored < report.best_val_loss:
            report.best_val_loss, report.best_epoch, stale = monitored, epoch, 0
            best_state = {k: v.detach().clone() for k, v in seg.head.state_dict().items()}
        else:
            stale += 1
            if stale > patience:
                break
    if best_state is not None:
        seg.head.load_state_dict(best_state)
    seg.eval()
    report.train_seconds = round(time.perf_counter() - started, 2)
    return report


def _val_metrics(seg, stretches: list[_Stretch]) -> dict:
    import torch

    seg.head.eval()
    total, n, correct = 0.0, 0, 0
    with torch.inference_mode():
        for st in stretches:
            f = torch.from_numpy(st.features)[None].float()
            x = torch.from_numpy(st.ids.astype(np.int64))[None]
            logits = seg.head_logits(f, x)
            y = torch.from_numpy(st.labels)[None]
            total += float(seg.loss(logits, y)) * y.numel()
            n += y.numel()
            correct += int((logits.argmax(-1) == y).sum())
    return {"val_loss": round(total / max(n, 1), 5), "val_acc": round(correct / max(n, 1), 5)}


# ---------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class PredictedFeature(Feature):
    """A :class:`Feature` with the model's score (mean class probability) and partial ends."""

    partial: bool = False


def _codon_at(seq: bytes, i: int) -> str:
    return seq[i : i + 3].decode() if 0 <= i and i + 3 <= len(seq) else ""


def snap_gene(seq: bytes, start: int, end: int, frame: int | None) -> tuple[int, int, bool] | None:
    """Snap a predicted + strand coding run ``[start, end)`` to a gene: ``(start, end, partial)``.

    ``frame`` is ``codon start mod 3`` (None: the frame whose stop-free stretch inside the run is
    longest). The end becomes the end of the first in-frame stop codon after the run's middle;
    the start the in-frame ATG/GTG/TTG nearest ``start`` after the previous in-frame stop.
    Without a stop (or a start) before the sequence edge the gene stays open there (``partial``).
    """
    n = len(seq)
    if frame is None:
        frame = max(range(3), key=lambda f: _longest_open(seq, start, end, f))
    mid = start + (end - start) // 2
    first = mid + ((frame - mid) % 3)
    stop_end, partial = None, False
    limit = min(n, end + 3000)
    for i in range(first, limit - 2, 3):
        if _codon_at(seq, i) in STOP_CODONS:
            stop_end = i + 3
            break
    if stop_end is None:
        if limit < n:
            return None  # no stop within reach: not a gene
        stop_end, partial = first + 3 * ((n - first) // 3), True
    # walk back to the previous in-frame stop: the open reading frame's upstream limit
    i = stop_end - 6
    while i >= 0 and _codon_at(seq, i) not in STOP_CODONS:
        i -= 3
    orf_from = i + 3  # first codon after the upstream stop (i < 0: the sequence edge)
    starts = [j for j in range(orf_from, stop_end - 3, 3) if _codon_at(seq, j) in START_CODONS]
    if starts:
        begin = min(starts, key=lambda j: (abs(j - start), j))
        if i < 0 and orf_from <= 2 and abs(orf_from - start) < abs(begin - start):
            begin, partial = orf_from, True  # runs off the sequence start
    else:
        if i >= 0:
            return None
        begin, partial = orf_from, True
    return begin, stop_end, partial


def _longest_open(seq: bytes, start: int, end: int, frame: int) -> int:
    best = run = 0
    for i in range(start + ((frame - start) % 3), end - 2, 3):
        run = 0 if _codon_at(seq, i) in STOP_CODONS else run + 3
        best = max(best, run)
    return best


def mask_runs(mask: np.ndarray, max_gap: int = 0) -> list[tuple[int, int]]:
    """``[start, end)`` runs of True, joining runs separated by at most ``max_gap`` False."""
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1]).reshape(-1, 2)
    out: list[list[int]] = []
    for s, e in edges.tolist():
        if out and s - out[-1][1] <= max_gap:
            out[-1][1] = e
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _frame_segments(frame: np.ndarray, s: int, e: int, min_anchor: int = 60) -> list[tuple[int, int, int]]:
    """Split the coding run ``[s, e)`` at changes of codon frame: ``(start, end, frame)``."""
    fr = frame[s:e]
    change = np.flatnonzero(np.diff(fr)) + 1
    bounds = np.concatenate(([0], change, [len(fr)]))
    anchors = [(int(a), int(b), int(fr[a])) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= min_anchor]
    if not anchors:
        values, counts = np.unique(fr, return_counts=True)
        return [(s, e, int(values[np.argmax(counts)]))]
    groups: list[list[int]] = []
    for a, b, f in anchors:
        if groups and groups[-1][2] == f:
            groups[-1][1] = b
        else:
            groups.append([a, b, f])
    groups[0][0], groups[-1][1] = 0, len(fr)
    return [(s + a, s + b, f) for a, b, f in groups]


def decode_features(probs: np.ndarray, ids: np.ndarray, scheme: ClassScheme, contig: str, *,
                    min_gene_length: int = 90, min_rna_length: int = 30, max_gap: int = 10,
                    snap: bool = True) -> list[PredictedFeature]:
    """Features of one contig from its (2, L, K) probabilities (module docstring), sorted."""
    classes = list(scheme.classes)
    length = len(ids)
    plus_seq = _TOKENIZER.decode(ids).encode()
    minus_seq = _TOKENIZER.decode(_TOKENIZER.reverse_complement(ids)).encode()
    cds = [classes.index(c) for c in CODON_CLASSES if c in classes]
    out: list[PredictedFeature] = []
    for row, strand in ((0, "+"), (1, "-")):
        p = probs[row].astype(np.float32)
        if cds:
            p_cod = p[:, cds].sum(axis=1)
            codon = np.argmax(p[:, cds], axis=1)
            pos = np.arange(length)
            frame = (pos - codon) % 3 if strand == "+" else (pos + codon) % 3
            for s, e in mask_runs(p_cod > 0.5, max_gap):
                for gs, ge, fr in _frame_segments(frame, s, e):
                    gene = _gene(plus_seq, minus_seq, gs, ge, fr, strand, length, snap)
                    if gene is None or gene[1] - gene[0] < min_gene_length:
                        continue
                    a, b, partial = gene
                    out.append(PredictedFeature(contig, a, b, strand, "CDS", phase=0,
                                                score=round(float(p_cod[a:b].mean()), 4), partial=partial))
        arg = np.argmax(p, axis=1)
        for k, cls in enumerate(classes):
            if cls == INTERGENIC or cls in CODON_CLASSES:
                continue
            for s, e in mask_runs(arg == k, max_gap=5):
                if e - s >= min_rna_length:
                    out.append(PredictedFeature(contig, s, e, strand, cls, score=round(float(p[s:e, k].mean()), 4)))
    return sorted(unique_genes(out), key=lambda f: (f.start, f.end, f.strand))


def unique_genes(features: Sequence[Feature]) -> list[Feature]:
    """One gene per stop codon (runs that snapped to the same open reading frame): the one with
    the highest score; other features unchanged."""
    best: dict[tuple, Feature] = {}
    rest = []
    for f in features:
        if f.type != "CDS":
            rest.append(f)
            continue
        key = (f.contig, f.strand, f.end if f.strand == "+" else f.start)
        if key not in best or (f.score or 0) > (best[key].score or 0):
            best[key] = f
    return rest + list(best.values())


def probs_to_labels(probs: np.ndarray, scheme: ClassScheme) -> np.ndarray:
    """Per-base labels (2, L) uint8 from probabilities (2, L, K), by the rule decoding uses: a
    base is coding where P(CDS_1) + P(CDS_2) + P(CDS_3) > 1/2 (then its likeliest codon
    position), else it takes its likeliest other class."""
    cds = list(scheme.coding)
    if not cds:
        return np.argmax(probs, axis=-1).astype(np.uint8)
    p = probs.astype(np.float32)
    coding = p[..., cds].sum(axis=-1) > 0.5
    codon = np.asarray(cds)[np.argmax(p[..., cds], axis=-1)]
    other = p.copy()
    other[..., cds] = -1.0
    return np.where(coding, codon, np.argmax(other, axis=-1)).astype(np.uint8)


def _gene(plus_seq: bytes, minus_seq: bytes, s: int, e: int, frame: int, strand: str, length: int, snap: bool):
    if strand == "+":
        if not snap:
            a = s + ((frame - s) % 3)
            return a, a + 3 * ((e - a) // 3), False
        return snap_gene(plus_seq, s, e, frame)
    rs, re_ = length - e, length - s  # the run in reverse-complement coordinates
    rframe = (length - 1 - frame) % 3
    got = (lambda a: (a, a + 3 * ((re_ - a) // 3), False))(rs + ((rframe - rs) % 3)) if not snap else \
        snap_gene(minus_seq, rs, re_, rframe)
    if got is None:
        return None
    a, b, partial = got
    return length - b, length - a, partial


# ---------------------------------------------------------------------- whole genomes
@dataclass
class ContigAnnotation:
    """One contig's probabilities (2, L, K) float16 and decoded features."""

    contig: str
    probs: np.ndarray
    features: list[PredictedFeature]


def annotate_genome(seg: "Segmenter", genome: "Genome", *, contigs: Sequence[str] | None = None,
                    batch_size: int = 8, progress="auto", decode_options: dict | None = None) -> Iterator[ContigAnnotation]:
    """Label each contig (all, or ``contigs``) of ``genome``; yields one contig at a time."""
    from genoseq.annotation import ClassScheme
    from genoseq.progress import Progress

    names = list(contigs) if contigs is not None else list(genome.contigs)
    for name in names:
        if name not in genome.contigs:
            raise InputError(f"contig {name!r} is not in the genome", field="contigs", kind="unknown_contig")
    scheme = ClassScheme(tuple(seg.classes), seg.type_map)
    total = sum(genome.contigs[n] for n in names)
    with Progress(total, desc="annotate", unit="bp", mode=progress) as bar:
        for name in names:
            ids = genome.fetch(name, 0, genome.contigs[name])
            probs = contig_probabilities(seg, ids, batch_size=batch_size, on_bases=bar.update)
            yield ContigAnnotation(name, probs, decode_features(probs, ids, scheme, name, **(decode_options or {})))


def annotate_sequences(seg: "Segmenter", sequences: Sequence[str | np.ndarray], names: Sequence[str] | None = None,
                       **options) -> list[ContigAnnotation]:
    """:func:`annotate_genome` over sequences in memory (names ``#1``, ``#2``... unless given)."""
    from genoseq.genome import MemoryGenome

    names = list(names) if names is not None else [f"#{i + 1}" for i in range(len(sequences))]
    if len(names) != len(sequences):
        raise InputError(f"names has {len(names)} entries for {len(sequences)} sequences", field="names")
    if len(set(names)) != len(names):
        raise InputError("names must be unique", field="names")
    genome = MemoryGenome(dict(zip(names, sequences)))
    options.setdefault("progress", False)
    return list(annotate_genome(seg, genome, **options))


def choose_holdout(contigs: dict[str, int], holdout, seed: int = 0) -> list[str]:
    """Held-out contig names from ``holdout``: a list or comma-separated names, or a share of the
    bases in (0, 1) (contigs drawn in a seeded random order until at least that share)."""
    if holdout is None or holdout == "":
        return []
    if isinstance(holdout, str):
        try:
            holdout = float(holdout)
        except ValueError:
            holdout = [h.strip() for h in holdout.split(",") if h.strip()]
    if isinstance(holdout, float):
        if not 0.0 < holdout < 1.0:
            raise InputError(f"holdout fraction {holdout} is not in (0, 1)", field="holdout", kind="bad_holdout")
        names = list(contigs)
        total, chosen, have = sum(contigs.values()), [], 0
        for i in np.random.default_rng(seed).permutation(len(names)):
            if have >= holdout * total:
                break
            chosen.append(names[int(i)])
            have += contigs[names[int(i)]]
        if len(chosen) == len(names):
            raise InputError("the holdout takes every contig; lower it", field="holdout", kind="bad_holdout")
        return chosen
    unknown = [h for h in holdout if h not in contigs]
    if unknown:
        raise InputError(f"holdout contig(s) not in the genome: {', '.join(unknown[:5])}", field="holdout",
                         kind="unknown_contig")
    return list(holdout)
