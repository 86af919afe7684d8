"""Sequence design helpers: constraints, composition, k-mer spectra, diversity and novelty.

Plain numpy (and rapidfuzz for edit distances), no torch, so any pipeline or benchmark can
share them:

* :class:`DesignConstraints`: a GC-content range, forbidden motifs (checked on both strands)
  and a longest allowed homopolymer run. :meth:`DesignConstraints.violations` checks a finished
  sequence; :class:`ConstraintMasker` enforces the motif and homopolymer rules *while* sampling
  by banning, at each step, every base that would complete a forbidden motif or extend a run
  beyond the limit. The GC range is a property of the whole sequence and is enforced by
  rejection.
* Composition: :func:`gc_content`, :func:`max_homopolymer`, :func:`find_motifs`.
* Distributions: :func:`kmer_spectrum` (k-mer frequencies over a set of sequences) and
  :func:`js_divergence` (Jensen-Shannon, base 2, in [0, 1]); :func:`kmer_divergences` for
  k = 3..6.
* Edit distances (Levenshtein, through rapidfuzz): :func:`nearest_distances` (each design to
  its closest reference sequence), :func:`mean_pairwise_distance` (diversity, as HybriDNA
  reports it), :func:`novelty`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from genoseq.errors import InputError

BASES = "ACGT"
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def reverse_complement(seq: str) -> str:
    """Reverse complement of a DNA string (A C G T N, any case)."""
    return seq.translate(_COMPLEMENT)[::-1]


# ---------------------------------------------------------------------- composition
def gc_content(seq: str) -> float:
    """Fraction of G and C among the A C G T bases of ``seq`` (N and others are not counted)."""
    seq = seq.upper()
    gc = seq.count("G") + seq.count("C")
    acgt = gc + seq.count("A") + seq.count("T")
    return gc / acgt if acgt else 0.0


def max_homopolymer(seq: str) -> int:
    """Length of the longest run of one repeated base."""
    best = run = 0
    previous = ""
    for base in seq.upper():
        run = run + 1 if base == previous else 1
        previous = base
        best = max(best, run)
    return best


def find_motifs(seq: str, motifs: Sequence[str]) -> list[tuple[str, int, str]]:
    """Every occurrence of each motif on either strand: ``(motif, 0-based start, strand)``.

    A reverse-strand hit is reported at the forward-strand start of the reverse complement; a
    palindromic motif (such as GAATTC) is reported once, on ``+``.
    """
    seq = seq.upper()
    hits = []
    for motif in motifs:
        motif = motif.upper()
        rc = reverse_complement(motif)
        for strand, pattern in (("+", motif), ("-", rc)):
            if strand == "-" and rc == motif:
                continue
            start = seq.find(pattern)
            while start != -1:
                hits.append((motif, start, strand))
                start = seq.find(pattern, start + 1)
    return sorted(hits, key=lambda hit: (hit[1], hit[2], hit[0]))


# ---------------------------------------------------------------------- constraints
@dataclass(frozen=True)
class DesignConstraints:
    """Constraints on a designed sequence.

    Args:
        gc_min: Lowest allowed GC fraction (None: no lower bound).
        gc_max: Highest allowed GC fraction (None: no upper bound).
        forbidden: Motifs that must not occur on either strand (A C G T only), e.g. the EcoRI
            site GAATTC.
        max_homopolymer: Longest allowed run of one base (None: no limit).
    """

    gc_min: float | None = None
    gc_max: float | None = None
    forbidden: tuple[str, ...] = field(default_factory=tuple)
    max_homopolymer: int | None = None

    def __post_init__(self) -> None:
        for name in ("gc_min", "gc_max"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be a fraction in [0, 1], got {value}")
        if self.gc_min is not None and self.gc_max is not None and self.gc_min > self.gc_max:
            raise InputError(f"gc_min ({self.gc_min}) is larger than gc_max ({self.gc_max})")
        motifs = tuple(str(m).strip().upper() for m in self.forbidden)
        for motif in motifs:
            if not motif or set(motif) - set(BASES):
                raise InputError(f"forbidden motif {motif!r} must be a non-empty string of A C G T")
        object.__setattr__(self, "forbidden", motifs)
        if self.max_homopolymer is not None and self.max_homopolymer < 1:
            raise InputError(f"max_homopolymer must be >= 1, got {self.max_homopolymer}")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.gc_min, self.gc_max, self.max_homopolymer)) or bool(self.forbidden)

    @property
    def patterns(self) -> tuple[str, ...]:
        """The forbidden motifs and their reverse complements (each once)."""
        return tuple(dict.fromkeys(p for m in self.forbidden for p in (m, reverse_complement(m))))

    def violations(self, seq: str) -> list[str]:
        """Why ``seq`` breaks the constraints (an empty list when it satisfies them all)."""
        found = []
        gc = gc_content(seq)
        if self.gc_min is not None and gc < self.gc_min:
            found.append("gc_low")
        if self.gc_max is not None and gc > self.gc_max:
            found.append("gc_high")
        if self.max_homopolymer is not None and max_homopolymer(seq) > self.max_homopolymer:
            found.append("homopolymer")
        upper = seq.upper()
        if any(p in upper for p in self.patterns):
            found.append("motif")
        return found

    def satisfied(self, seq: str) -> bool:
        return not self.violations(seq)

    def to_dict(self) -> dict:
        return {"gc_min": self.gc_min, "gc_max": self.gc_max, "forbidden": list(self.forbidden),
                "max_homopolymer": self.max_homopolymer}


class ConstraintMasker:
    """Bases allowed next, per row, so that sampling never writes a forbidden motif or an
    over-long homopolymer.

    Works on base indices 0-3 (A C G T) in a ``(rows, length)`` array of everything written so
    far (prompt included). At each step a base is banned when appending it would complete a
    forbidden pattern (either strand) or make a run longer than ``max_homopolymer``. If the rules
    ban all four bases at some position (possible only with many short motifs), that row is left
    unconstrained for the step and the finished design is caught by the final check.
    """

    def __init__(self, constraints: DesignConstraints) -> None:
        self.max_run = constraints.max_homopolymer
        lookup = {b: i for i, b in enumerate(BASES)}
        self.patterns = [np.array([lookup[b] for b in p], dtype=np.int8) for p in constraints.patterns]

    def allowed(self, history: np.ndarray) -> np.ndarray:
        """Bool array (rows, 4): which of A C G T may come next after ``history`` (rows, t)."""
        rows, t = history.shape
        allowed = np.ones((rows, 4), dtype=bool)
        if self.max_run is not None and t >= self.max_run:
            tail = history[:, t - self.max_run :]
            same = (tail == tail[:, -1:]).all(axis=1) & (tail[:, -1] >= 0)
            allowed[np.flatnonzero(same), tail[same, -1]] = False
        for pattern in self.patterns:
            k = len(pattern)
            if k == 1:
                allowed[:, pattern[0]] = False
            elif t >= k - 1:
                match = (history[:, t - k + 1 :] == pattern[:-1]).all(axis=1)
                allowed[match, pattern[-1]] = False
        stuck = ~allowed.any(axis=1)
        allowed[stuck] = True
        return allowed


def to_base_indices(seq: str) -> np.ndarray:
    """A C G T -> 0 1 2 3; anything else (N) -> -1, which no rule matches."""
    table = np.full(256, -1, dtype=np.int8)
    for i, base in enumerate(BASES):
        table[ord(base)] = table[ord(base.lower())] = i
    return table[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]


# ---------------------------------------------------------------------- k-mer spectra
def kmer_spectrum(seqs: Sequence[str], k: int) -> np.ndarray:
    """Frequencies (4**k,) of the overlapping k-mers of ``seqs`` (forward strand), in
    lexicographic order (AA..A, AA..C, ...). k-mers containing anything but A C G T are skipped.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    counts = np.zeros(4**k, dtype=np.float64)
    powers = 4 ** np.arange(k - 1, -1, -1)
    for seq in seqs:
        idx = to_base_indices(seq).astype(np.int64)
        if len(idx) < k:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(idx, k)
        valid = (windows >= 0).all(axis=1)
        counts += np.bincount(windows[valid] @ powers, minlength=4**k)
    total = counts.sum()
    return counts / total if total else counts


def kmer_names(k: int) -> list[str]:
    """The k-mers in the order of :func:`kmer_spectrum`."""
    return ["".join(p) for p in itertools.product(BASES, repeat=k)]


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) between two frequency vectors.

    ``JS = (KL(p || m) + KL(q || m)) / 2`` with ``m = (p + q) / 2``; inputs are normalised.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("js_divergence needs two non-empty frequency vectors of the same shape")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return max(0.0, (kl(p) + kl(q)) / 2)


def kmer_divergences(designs: Sequence[str], reference: Sequence[str], ks: Sequence[int] = (3, 4, 5, 6)) -> dict[str, float]:
    """Jensen-Shannon divergence of the k-mer spectra of ``designs`` and ``reference`` per k."""
    return {f"k{k}": js_divergence(kmer_spectrum(designs, k), kmer_spectrum(reference, k)) for k in ks}


# ---------------------------------------------------------------------- edit distances
def distance_matrix(a: Sequence[str], b: Sequence[str], workers: int = 1) -> np.ndarray:
    """Levenshtein distances (len(a), len(b)) as int32 (rapidfuzz, in C)."""
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cdist

    return cdist([s.upper() for s in a], [s.upper() for s in b], scorer=Levenshtein.distance,
                 dtype=np.int32, workers=workers)


def nearest_distances(designs: Sequence[str], reference: Sequence[str], *, block: int = 256,
                      workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """For each design: the edit distance to its closest ``reference`` sequence, and that
    sequence's index. Computed in blocks of designs, so memory stays at ``block x len(reference)``."""
    if not len(reference):
        raise ValueError("nearest_distances needs at least one reference sequence")
    dist = np.zeros(len(designs), dtype=np.int64)
    index = np.zeros(len(designs), dtype=np.int64)
    for start in range(0, len(designs), block):
        matrix = distance_matrix(designs[start : start + block], reference, workers=workers)
        index[start : start + block] = matrix.argmin(axis=1)
        dist[start : start + block] = matrix.min(axis=1)
    return dist, index


def mean_pairwise_distance(seqs: Sequence[str], workers: int = 1) -> float:
    """Mean Levenshtein distance over all unordered pairs (the diversity HybriDNA reports)."""
    n = len(seqs)
    if n < 2:
        return float("nan")
    matrix = distance_matrix(seqs, seqs, workers=workers)
    return float(matrix[np.triu_indices(n, k=1)].mean())


def novelty(nearest: np.ndarray, copy_distance: int = 0) -> float:
    """Fraction of designs farther than ``copy_distance`` edits from every reference sequence
    (``copy_distance=0``: the fraction that is not an exact copy)."""
    nearest = np.asarray(nearest)
    return float((nearest > copy_distance).mean()) if nearest.size else float("nan")


__all__ = [
    "ConstraintMasker",
    "DesignConstraints",
    "distance_matrix",
    "find_motifs",
    "gc_content",
    "js_divergence",
    "kmer_divergences",
    "kmer_names",
    "kmer_spectrum",
    "max_homopolymer",
    "mean_pairwise_distance",
    "nearest_distances",
    "novelty",
    "reverse_complement",
    "to_base_indices",
]
