"""How good a mapping or a read encoder is, against the truth of simulated reads.

Simulated reads carry their origin in their names, ``CONTIG_POS1_POS2_STRAND1_STRAND2_...``
(:func:`parse_truth`; the shared data's convention, and :func:`.simulate.simulate_reads`'). A
mapped read is correct when contig and strand match and its leftmost reference position with the
leading soft clip added back is within ``tolerance`` bases of POS1 (:func:`read_outcome`).
:func:`score_outcomes` counts outcomes, :func:`compare_outcomes` sets two mappings of the same
reads side by side, :func:`search_recall` scores the vector search alone and
:func:`held_out_top1` an encoder on held-out training pairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from genoseq import sam
from genoseq.errors import InputError
from genoseq.tokenizer import Tokenizer

from .index import AlignIndex

Outcome = tuple[str, bool | None, int]  # (read name without /1 or /2, correct (None: unmapped), MAPQ)


@dataclass(frozen=True)
class Truth:
    contig: str
    pos1: int  # 1-based leftmost reference base
    reverse: bool


_TRUTH_RE = re.compile(r"^(?P<contig>.+?)_(?P<pos1>\d+)_(?P<pos2>\d+)_(?P<s1>[01])_(?P<s2>[01])_")


def parse_truth(name: str, contigs: list[str] | None = None) -> Truth:
    """The origin of a simulated read from its name ``CONTIG_POS1_POS2_STRAND1_STRAND2_...``.

    With ``contigs`` (e.g. from the SAM header), the longest known contig name followed by
    ``_`` wins, so contig names containing underscores parse correctly.
    """
    if contigs:
        for contig in sorted(contigs, key=len, reverse=True):
            if name.startswith(contig + "_"):
                match = _TRUTH_RE.match("x_" + name[len(contig) + 1:])
                if match:
                    return Truth(contig, int(match["pos1"]), match["s1"] == "1")
    match = _TRUTH_RE.match(name)
    if not match:
        raise InputError("read name does not carry CONTIG_POS1_POS2_STRAND1_STRAND2_ truth", record=name)
    return Truth(match["contig"], int(match["pos1"]), match["s1"] == "1")


def read_outcome(name: str, mapped: bool, contig: str | None, reverse: bool, start: int,
                 cigar: list[tuple[int, int]] | None, mapq: int, contigs: list[str], tolerance: int = 10) -> Outcome:
    """One primary record's outcome from its read name, whether it is mapped, its contig name,
    strand, 0-based leftmost aligned base, pysam CIGAR tuples and MAPQ; ``contigs`` are the
    reference's names (for :func:`parse_truth`)."""
    short = re.sub(r"/[12]$", "", name)
    if not mapped:
        return short, None, 0
    truth = parse_truth(name, contigs)
    left = start + 1 - sam.leading_soft_clip(cigar or [])
    ok = contig == truth.contig and reverse == truth.reverse and abs(left - truth.pos1) <= tolerance
    return short, ok, mapq


def score_outcomes(outcomes: Iterable[Outcome]) -> dict:
    """Counts, the correct fraction of all reads, precision among mapped reads, and the correct
    fraction at MAPQ >= 20."""
    reads = mapped = correct = confident = confident_correct = 0
    for _, ok, mapq in outcomes:
        reads += 1
        if ok is None:
            continue
        mapped += 1
        correct += ok
        if mapq >= 20:
            confident += 1
            confident_correct += ok
    return {
        "reads": reads,
        "mapped": mapped,
        "correct": correct,
        "fraction_correct": round(correct / reads, 5) if reads else None,
        "precision_mapped": round(correct / mapped, 5) if mapped else None,
        "mapq20": confident,
        "precision_mapq20": round(confident_correct / confident, 5) if confident else None,
    }


def compare_outcomes(ours: Iterable[Outcome], theirs: Iterable[Outcome], source: str | None = None) -> dict:
    """Where two mappings of the same reads disagree: the reads only ``ours`` places correctly,
    those only ``theirs`` does, and how many of each both mappings gave MAPQ 0 (a tie between
    copies of a repeat, where either choice is a guess). ``source`` names ``theirs`` in errors."""
    a = {name: (ok, mapq) for name, ok, mapq in ours}
    b = {name: (ok, mapq) for name, ok, mapq in theirs}
    if a.keys() != b.keys():
        raise InputError(f"the two SAMs hold different reads ({len(a.keys() ^ b.keys())} differ)", path=source)
    only_a = [n for n in a if a[n][0] and not b[n][0]]
    only_b = [n for n in a if b[n][0] and not a[n][0]]
    return {
        "only_ours_correct": len(only_a),
        "only_ours_correct_mapq0_in_both": sum(a[n][1] == 0 and b[n][1] == 0 for n in only_a),
        "only_theirs_correct": len(only_b),
        "only_theirs_correct_mapq0_in_both": sum(a[n][1] == 0 and b[n][1] == 0 for n in only_b),
    }


def search_recall(idx: AlignIndex, reads: Iterable[tuple[str, str, str | None]], ks: tuple[int, ...] = (1, 5, 20),
                  batch_size: int = 1024, limit: int | None = None) -> dict:
    """Recall@k of the vector search alone: the share of ``(name, sequence, quality)`` reads
    (the first ``limit``) whose true fragment (same contig and strand, overlapping the read's
    true span by at least half the read) is in the top k."""
    tok = Tokenizer()
    names = idx.contig_names
    records = []
    for i, rec in enumerate(reads):
        if limit is not None and i >= limit:
            break
        records.append(rec)
    kmax = max(ks)
    hits = {k: 0 for k in ks}
    for first in range(0, len(records), batch_size):
        batch = records[first:first + batch_size]
        vectors = idx.encoder.embed([tok.encode(s) for _, s, _ in batch], batch_size=batch_size)
        _, entries = idx.faiss.search(vectors, kmax)
        for (name, seq, _), row in zip(batch, entries):
            good = _true_entries(idx, row, parse_truth(name, names), names, len(seq))
            for k in ks:
                hits[k] += bool(good[:k].any())
    return {f"recall@{k}": round(hits[k] / len(records), 5) if records else None for k in ks} | {"reads": len(records)}


def _true_entries(idx: AlignIndex, row: np.ndarray, truth: Truth, names: list[str], read_length: int) -> np.ndarray:
    """Which of one read's search hits are its true fragment, strand included."""
    t0 = truth.pos1 - 1
    t1 = t0 + read_length
    good = np.zeros(len(row), dtype=bool)
    valid = row >= 0
    frag, strand = np.divmod(row[valid], 2)
    overlap = np.minimum(idx.end[frag], t1) - np.maximum(idx.start[frag], t0)
    good[valid] = ((idx.contig[frag] == names.index(truth.contig)) & (strand == int(truth.reverse))
                   & (overlap >= read_length / 2))
    return good


def held_out_top1(encoder, dataset, group: int = 256) -> float:
    """Share of held-out ``(fragment, read)`` pairs whose read finds its own fragment nearest
    among ``group`` fragments (all of them when fewer)."""
    pairs = [dataset[i] for i in range(len(dataset))]
    frags = encoder.embed([f for f, _ in pairs])
    reads = encoder.embed([r for _, r in pairs])
    group = min(group, len(pairs))  # fewer pairs than a group: one group of them all
    hits = total = 0
    for first in range(0, len(pairs) - group + 1, group) if group > 1 else ():
        sims = reads[first:first + group] @ frags[first:first + group].T
        hits += int((sims.argmax(1) == np.arange(group)).sum())
        total += group
    return round(hits / total, 4) if total else float("nan")
