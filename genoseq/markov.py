"""Order-k Markov model over A C G T: the baseline every DNA language model must beat.

P(x_t | x_{t-k..t-1}) is estimated from k+1-mer counts with add-alpha smoothing, on both
strands of the training sequences. Contexts or targets containing N are skipped. Counting and
scoring are vectorised with numpy (a rolling base-4 code per position), so a bacterial genome
takes well under a second.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from genoseq.tokenizer import A, T, Tokenizer

_TOKENIZER = Tokenizer()


def _kmer_codes(ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes of every (k+1)-mer ending at positions k..L-1, and a mask of those free of N."""
    base = ids.astype(np.int64) - A  # A C G T -> 0..3; N and specials fall outside
    valid = (base >= 0) & (base <= T - A)
    base = np.where(valid, base, 0)
    n = len(ids) - k
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    codes = np.zeros(n, dtype=np.int64)
    ok = np.ones(n, dtype=bool)
    for j in range(k + 1):
        codes = codes * 4 + base[j : j + n]
        ok &= valid[j : j + n]
    return codes, ok


class MarkovModel:
    """Order-``k`` Markov chain with add-``alpha`` smoothing, trained on both strands."""

    def __init__(self, k: int = 6, alpha: float = 1.0) -> None:
        if k < 0:
            raise ValueError("k must be >= 0")
        self.k, self.alpha = k, alpha
        self.counts = np.zeros(4 ** (k + 1), dtype=np.int64)
        self._table: np.ndarray | None = None  # log2 P(next | context) per (k+1)-mer, made on first use

    def fit(self, sequences: Iterable[np.ndarray], both_strands: bool = True) -> "MarkovModel":
        """Add counts from token-id arrays (``Tokenizer.encode`` output)."""
        for ids in sequences:
            strands = [ids, _TOKENIZER.reverse_complement(ids)] if both_strands else [ids]
            for s in strands:
                codes, ok = _kmer_codes(s, self.k)
                self.counts += np.bincount(codes[ok], minlength=self.counts.size)
        self._table = None
        return self

    def log2_probs(self, ids: np.ndarray) -> np.ndarray:
        """log2 P(x_t | previous k) for every position t >= k whose (k+1)-mer has no N."""
        if self._table is None:
            table = self.counts.reshape(-1, 4).astype(np.float64) + self.alpha
            self._table = np.log2(table / table.sum(axis=1, keepdims=True)).reshape(-1)
        codes, ok = _kmer_codes(ids, self.k)
        return self._table[codes[ok]]

    def strand_llrs(self, ref: np.ndarray, alt: np.ndarray) -> tuple[float, float]:
        """log P(alt) - log P(ref) in nats on the forward and on the reverse-complement strand
        (two windows of equal length)."""
        strands = ((ref, alt), (_TOKENIZER.reverse_complement(ref), _TOKENIZER.reverse_complement(alt)))
        fwd, rev = (float(self.log2_probs(a).sum() - self.log2_probs(r).sum()) * math.log(2) for r, a in strands)
        return fwd, rev

    def llr(self, ref: np.ndarray, alt: np.ndarray) -> float:
        """The variant LLR of ``genoseq vep`` under this chain: the mean of :meth:`strand_llrs`."""
        return float(np.mean(self.strand_llrs(ref, alt)))

    def bits_per_base(self, sequences: Iterable[np.ndarray]) -> float:
        total, count = 0.0, 0
        for ids in sequences:
            lp = self.log2_probs(ids)
            total -= float(lp.sum())
            count += lp.size
        return total / count if count else math.nan
