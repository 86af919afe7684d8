"""Scores of a genome annotation against the true one, at single-base resolution and per feature.

* :func:`base_metrics`: per class and strand, precision, recall, F1 and MCC of per-base labels
  (and coding bases on either strand);
* :func:`features_to_labels`: predicted features as per-base labels, to score them the same way;
* :func:`feature_metrics`: gene start/stop exact matches and RNA recall;
* :func:`evaluate_contigs`: all of them for a segmenter run over held-out contigs.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from genoseq.annotation import CODON_CLASSES, ClassScheme, Feature


def _binary(tp: int, fp: int, fn: int, tn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    denom = math.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / denom if denom else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "mcc": round(mcc, 4),
            "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


def base_metrics(truth: dict[str, np.ndarray], predicted: dict[str, np.ndarray], scheme: ClassScheme) -> dict:
    """Per-base metrics over every (base, strand) of the contigs in ``predicted``.

    ``truth`` and ``predicted`` map contig -> (2, L) label ids of ``scheme``. For each feature
    class (``CDS`` = any codon position) precision, recall, F1 and MCC; ``CDS_any_strand``
    scores a base as coding when either strand is; ``codon_accuracy`` is the share of truly
    coding (base, strand) pairs predicted with the right codon position; ``accuracy`` over all
    classes.
    """
    classes = list(scheme.classes)
    cds = np.array([classes.index(c) for c in CODON_CLASSES if c in classes])
    counts: dict[str, list[int]] = {}
    agree, total, codon_ok, codon_n = 0, 0, 0, 0
    any_counts = [0, 0, 0, 0]
    for contig, pred in predicted.items():
        true = truth[contig]
        agree += int((true == pred).sum())
        total += true.size
        for cls in scheme.feature_classes():
            ids = cds if cls == "CDS" else np.array([classes.index(cls)])
            t, p = np.isin(true, ids), np.isin(pred, ids)
            c = counts.setdefault(cls, [0, 0, 0, 0])
            c[0] += int((t & p).sum()); c[1] += int((~t & p).sum()); c[2] += int((t & ~p).sum()); c[3] += int((~t & ~p).sum())
            if cls == "CDS":
                ta, pa = t.any(axis=0), p.any(axis=0)
                any_counts[0] += int((ta & pa).sum()); any_counts[1] += int((~ta & pa).sum())
                any_counts[2] += int((ta & ~pa).sum()); any_counts[3] += int((~ta & ~pa).sum())
                codon_ok += int(((true == pred) & t).sum())
                codon_n += int(t.sum())
    out = {cls: _binary(*c) for cls, c in counts.items()}
    if len(cds):
        out["CDS_any_strand"] = _binary(*any_counts)
        out["codon_accuracy"] = round(codon_ok / codon_n, 4) if codon_n else 0.0
    out["accuracy"] = round(agree / total, 4) if total else 0.0
    out["bases"] = total // 2
    return out


def features_to_labels(features: Sequence[Feature], contigs: dict[str, int], scheme: ClassScheme) -> dict[str, np.ndarray]:
    """(2, L) label arrays of predicted features (as :func:`genoseq.annotation.label_bases`)."""
    from genoseq.annotation import label_bases

    scheme_for = ClassScheme(scheme.classes, {c: c for c in scheme.feature_classes()})
    labels, _ = label_bases(features, contigs, scheme_for, warn=False) if features else (
        {c: np.zeros((2, n), np.uint8) for c, n in contigs.items()}, None)
    return labels


def feature_metrics(predicted: Sequence[Feature], truth: Sequence[Feature], contigs: Sequence[str] | None = None,
                    type_map: dict[str, str] | None = None) -> dict:
    """Gene and RNA matches between predicted and true features (of ``contigs`` when given).

    A gene's stop is its 3' end (``end`` on +, ``start`` on -). ``stop_exact``: share of predicted
    CDS whose stop equals a true CDS stop on the same strand; ``start_stop_exact``: whose start
    matches too; ``true_stop_found`` / ``true_start_stop_found``: the same shares of true CDS.
    For each RNA class, ``recall``: share of true features of that class overlapped for at
    least half their length by a predicted one of the class on the same strand. True feature
    types become classes through ``type_map`` (default :data:`genoseq.annotation.DEFAULT_CLASS_MAP`;
    unmapped types are left out).
    """
    from dataclasses import replace

    from genoseq.annotation import DEFAULT_CLASS_MAP

    mapping = DEFAULT_CLASS_MAP if type_map is None else type_map
    keep = set(contigs) if contigs is not None else None
    pred = [f for f in predicted if keep is None or f.contig in keep]
    true = [replace(f, type=mapping[f.type]) for f in truth if (keep is None or f.contig in keep) and f.type in mapping]

    def stop(f):
        return (f.contig, f.strand, f.end if f.strand == "+" else f.start)

    def both(f):
        return (f.contig, f.strand, f.start, f.end)

    p_cds = [f for f in pred if f.type == "CDS"]
    t_cds = [f for f in true if f.type == "CDS"]
    t_stops, t_both = {stop(f) for f in t_cds}, {both(f) for f in t_cds}
    p_stops, p_both = {stop(f) for f in p_cds}, {both(f) for f in p_cds}
    out = {"CDS": {
        "predicted": len(p_cds), "true": len(t_cds),
        "stop_exact": round(sum(stop(f) in t_stops for f in p_cds) / len(p_cds), 4) if p_cds else 0.0,
        "start_stop_exact": round(sum(both(f) in t_both for f in p_cds) / len(p_cds), 4) if p_cds else 0.0,
        "true_stop_found": round(sum(stop(f) in p_stops for f in t_cds) / len(t_cds), 4) if t_cds else 0.0,
        "true_start_stop_found": round(sum(both(f) in p_both for f in t_cds) / len(t_cds), 4) if t_cds else 0.0,
    }}
    for cls in sorted({f.type for f in true if f.type != "CDS"} | {f.type for f in pred if f.type != "CDS"}):
        t = [f for f in true if f.type == cls]
        p = [f for f in pred if f.type == cls]
        found = sum(any(q.contig == f.contig and q.strand == f.strand and
                        min(q.end, f.end) - max(q.start, f.start) >= 0.5 * (f.end - f.start) for q in p) for f in t)
        out[cls] = {"true": len(t), "predicted": len(p), "recall": round(found / len(t), 4) if t else None}
    return out


def evaluate_contigs(seg, ann, genome, names, *, min_gene_length: int = 90, batch_size: int = 8, progress="auto") -> dict:
    """Metrics of segmenter ``seg`` on contigs ``names`` of ``genome`` against annotation ``ann``:
    ``per_base`` from the per-base labels (:func:`tasks.genome_annotation.probs_to_labels`),
    ``per_base_from_features`` from the decoded features, and ``features`` (gene start/stop
    exact matches, RNA recall). JSON-ready."""
    from genoseq.annotation import label_bases
    from genoseq.tasks.genome_annotation import annotate_genome, probs_to_labels

    scheme = ClassScheme(tuple(seg.classes), seg.type_map)
    sub = {n: genome.contigs[n] for n in names}
    truth, _ = label_bases(ann.features, sub, scheme, path=ann.path, warn=False)
    predicted, from_features, features = {}, {}, []
    for result in annotate_genome(seg, genome, contigs=names, batch_size=batch_size, progress=progress,
                                  decode_options={"min_gene_length": min_gene_length}):
        predicted[result.contig] = probs_to_labels(result.probs, scheme)
        features.extend(result.features)
    from_features = features_to_labels(features, sub, scheme)
    return {"contigs": list(names), "bases": int(sum(sub.values())),
            "per_base": base_metrics(truth, predicted, scheme),
            "per_base_from_features": base_metrics(truth, from_features, scheme),
            "features": feature_metrics(features, ann.features, names, type_map=scheme.type_map)}


__all__ = ["base_metrics", "evaluate_contigs", "feature_metrics", "features_to_labels"]
