"""Recurring patterns in attributions (TF-MoDISco) and their best matches among known motifs (TOMTOM).

* :func:`discover_motifs` runs modisco-lite's ``TFMoDISco`` on the one-hot sequences and the
  hypothetical contributions of many sequences (:mod:`.attribution`): high-contribution
  windows ("seqlets") are cut out, clustered by the similarity of their hypothetical
  contributions, and each cluster becomes a :class:`Motif`: its base frequencies (PPM), its mean
  contributions (CWM) and its seqlets. Positive patterns raise the explained score, negative
  ones lower it.
* :func:`match_motifs` compares each motif with the known ones (name -> PPM, e.g. from a MEME
  file or the JASPAR database, read by :mod:`genoseq.motif_files`) by TOMTOM (memelite, both
  strands): the p-value of the best alignment, and a q-value over the known motifs
  (Benjamini-Hochberg). The query is the motif's PPM trimmed to the positions whose summed
  |contribution| is at least ``trim_threshold`` of the maximum (as modisco's report does), so
  flanks without signal do not dilute the match.

Defaults suit short regulatory motifs in bacterial or other compact genomes (6-12 bp) as well as
longer ones: a 15 bp seqlet window with 5 bp flanks; modisco's own defaults (21 / 10) were set
for 1 kb ChIP-seq peaks.

Motifs near the ends of the sequences: modisco calls a seqlet only where its window and flanks
fit inside the sequence, suppresses the neighbourhood of a peak it could not call, and drops
seqlets that fall off an end as a pattern grows by alignment; so a motif at a fixed place near
one end (a Shine-Dalgarno site a few bases before the start codon that ends an upstream region,
a TATA box before a TSS) vanished from the search with no error. :func:`discover_motifs`
therefore pads every sequence on both sides with ``edge_padding`` bases of N (one-hot 0.25
each, zero contribution). Windows of padding score exactly 0 and would narrow modisco's
Laplacian null of window scores (lowering the seqlet threshold until noise clusters into
patterns), so the null is fitted on the windows that lie wholly inside the sequences, exactly
the null modisco fits without padding. Seqlet coordinates are reported in the input sequences,
and a motif's PPM counts, at each position, only the seqlets that cover a real base there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from genoseq.errors import InputError

ALPHABET = "ACGT"


@dataclass
class MotifMatch:
    """One known motif aligned to a discovered one."""

    target: str
    p_value: float
    q_value: float
    offset: int
    overlap: int
    strand: str  # "+" or "-" (the known motif reverse-complemented)


@dataclass
class Motif:
    """A TF-MoDISco pattern."""

    name: str  # "pos_0", "neg_1", ...
    sign: str  # "positive" or "negative"
    ppm: np.ndarray  # (w, 4) base frequencies of the aligned seqlets
    cwm: np.ndarray  # (w, 4) mean contributions
    hypothetical: np.ndarray  # (w, 4) mean hypothetical contributions
    # (sequence index, start, end, reverse complement) in the input sequences; near an end a
    # seqlet's flanks may run past it (start < 0 or end > length: the padding of discover_motifs)
    seqlets: list[tuple[int, int, int, bool]]
    trimmed: tuple[int, int] = (0, 0)  # [start, end) of the informative span (trim_threshold)
    matches: list[MotifMatch] = field(default_factory=list)

    @property
    def n_seqlets(self) -> int:
        return len(self.seqlets)

    @property
    def trimmed_ppm(self) -> np.ndarray:
        return self.ppm[self.trimmed[0]:self.trimmed[1]]

    def sites(self, lengths: "int | Sequence[int]") -> list[tuple[int, int, int, str]]:
        """Where the motif's informative span (``trimmed``) lies in each seqlet's sequence:
        (sequence index, start, end, strand), 0-based half-open, clipped to the sequence
        (``lengths``: one for all, or one per sequence)."""
        t0, t1 = self.trimmed
        out = []
        for i, start, end, rc in self.seqlets:
            a, b = (end - t1, end - t0) if rc else (start + t0, start + t1)
            a, b = max(a, 0), min(b, lengths if isinstance(lengths, (int, np.integer)) else int(lengths[i]))
            if a < b:
                out.append((i, a, b, "-" if rc else "+"))
        return out

    @property
    def consensus(self) -> str:
        """The most frequent base at each informative position (lower case where it is under half)."""
        ppm = self.trimmed_ppm
        return "".join(ALPHABET[j] if p[j] >= 0.5 else ALPHABET[j].lower() for p in ppm for j in [int(np.argmax(p))])


def trim_span(cwm: np.ndarray, trim_threshold: float = 0.3) -> tuple[int, int]:
    """[start, end) of the positions from the first to the last whose summed |cwm| reaches
    ``trim_threshold`` of the maximum."""
    score = np.abs(cwm).sum(1)
    keep = np.nonzero(score >= trim_threshold * score.max())[0] if score.max() > 0 else np.arange(len(score))
    return int(keep.min()), int(keep.max()) + 1


def _ragged(arrays: Sequence[np.ndarray] | np.ndarray, what: str) -> list[np.ndarray]:
    """One (L_i, 4) float32 array per sequence, from an (N, L, 4) array or a list."""
    out = [np.asarray(a, dtype=np.float32) for a in arrays]
    for a in out:
        if a.ndim != 2 or a.shape[-1] != 4:
            raise InputError(f"{what}: expected (length, 4) arrays per sequence, got shape {a.shape}",
                             field=what, kind="shape")
    return out


def _real_ppm(onehot: np.ndarray, seqlets, width: int) -> np.ndarray:
    """(width, 4) base frequencies of the seqlets (padded coordinates) over the real bases of
    ``onehot`` (zero rows where padded); uniform where no seqlet covers a real base."""
    counts = np.zeros((width, 4), dtype=np.float64)
    for s in seqlets:
        window = onehot[s.example_idx, s.start:s.end]
        counts += window[::-1, ::-1] if s.is_revcomp else window
    total = counts.sum(1, keepdims=True)
    return np.where(total > 0, counts / np.maximum(total, 1e-12), 0.25).astype(np.float32)


def discover_motifs(
    onehot: Sequence[np.ndarray] | np.ndarray,
    hypothetical: Sequence[np.ndarray] | np.ndarray,
    *,
    sliding_window_size: int = 15,
    flank_size: int = 5,
    max_seqlets: int = 20_000,
    min_metacluster_size: int = 100,
    final_min_cluster_size: int = 20,
    target_seqlet_fdr: float = 0.2,
    n_leiden_runs: int = 10,
    trim_threshold: float = 0.3,
    trim_to_window_size: int = 30,
    initial_flank_to_add: int = 10,
    edge_padding: int | None = None,
    verbose: bool = False,
) -> list[Motif]:
    """TF-MoDISco patterns of many sequences' attributions (of one length or of several).

    Args:
        onehot: (N, L, 4) one-hot sequences, or a list of (L_i, 4) arrays.
        hypothetical: Hypothetical contributions shaped as ``onehot``; the actual contributions
            are ``hypothetical * onehot``.
        sliding_window_size: Width of the windows scored for seqlets.
        flank_size: Bases added on each side of a seqlet.
        max_seqlets: At most this many seqlets per sign are clustered.
        min_metacluster_size: Fewer seqlets of a sign than this: no patterns of that sign.
        final_min_cluster_size: Smallest pattern kept (seqlets).
        target_seqlet_fdr: False discovery rate of the seqlet threshold (against the null from
            the sign-flipped scores).
        n_leiden_runs: Leiden clustering restarts (modisco's default is 50; 10 is as stable on
            a few hundred sequences and five times faster).
        trim_threshold: Share of the maximum summed |CWM| that bounds a motif's informative span.
        trim_to_window_size: modisco trims each pattern to its most informative window of this
            width (modisco's default)...
        initial_flank_to_add: ...and adds this many bases on each side.
        edge_padding: Zero bases added on each side of every sequence so motifs at the ends are
            found; default ``max(flank_size, trim_to_window_size + 2 * initial_flank_to_add)``.
            0 reproduces modisco run on the sequences as they are.

    Returns:
        Positive patterns first, then negative ones, each in modisco's order (largest first).
    """
    from unittest import mock

    from modiscolite import extract_seqlets
    from modiscolite.tfmodisco import TFMoDISco

    xs, hs = _ragged(onehot, "onehot"), _ragged(hypothetical, "hypothetical")
    if len(xs) == 0:
        raise InputError("no sequences to search for motifs", field="onehot", kind="empty")
    if len(xs) != len(hs) or any(a.shape != b.shape for a, b in zip(xs, hs)):
        raise InputError("onehot and hypothetical differ in number or shape of sequences", field="hypothetical",
                         kind="shape")
    lengths = np.array([len(a) for a in xs])
    if lengths.min() < sliding_window_size:
        raise InputError(f"a sequence of {lengths.min()} bases is shorter than the seqlet window "
                         f"({sliding_window_size})", field="onehot", kind="too_short")
    pad = max(flank_size, trim_to_window_size + 2 * initial_flank_to_add) if edge_padding is None else edge_padding
    if pad < 0:
        raise InputError(f"edge_padding must be >= 0, got {pad}", field="edge_padding", kind="range")
    # Every sequence between `pad` bases of N on the left and N up to the longest plus `pad` on
    # the right; `real` keeps zero rows there, to count real bases only.
    width = int(lengths.max()) + 2 * pad
    real = np.zeros((len(xs), width, 4), dtype=np.float32)
    h = np.zeros_like(real)
    for i, (a, b) in enumerate(zip(xs, hs)):
        real[i, pad:pad + len(a)] = a
        h[i, pad:pad + len(b)] = b
    x = np.full_like(real, 0.25)  # N outside the sequences: no information, so modisco never trims onto it
    for i, a in enumerate(xs):
        x[i, pad:pad + len(a)] = a
    # windows wholly inside their sequence: the windows a search without padding would score
    starts = np.arange(width - sliding_window_size + 1)
    inside = (starts >= pad) & (starts[None, :] + sliding_window_size <= pad + lengths[:, None])
    laplacian_null = extract_seqlets._laplacian_null

    def null_inside(track, window_size, num_to_samp, random_seed=1234):
        return laplacian_null(track[inside], window_size, num_to_samp, random_seed)

    with mock.patch.object(extract_seqlets, "_laplacian_null", null_inside):
        pos, neg = TFMoDISco(
            one_hot=x, hypothetical_contribs=h, sliding_window_size=sliding_window_size, flank_size=flank_size,
            max_seqlets_per_metacluster=max_seqlets, min_metacluster_size=min_metacluster_size,
            final_min_cluster_size=final_min_cluster_size, target_seqlet_fdr=target_seqlet_fdr,
            n_leiden_runs=n_leiden_runs, trim_to_window_size=trim_to_window_size,
            initial_flank_to_add=initial_flank_to_add, verbose=verbose,
        )
    motifs = []
    for sign, patterns in (("positive", pos), ("negative", neg)):
        for k, pattern in enumerate(patterns or []):
            cwm = np.asarray(pattern.contrib_scores, dtype=np.float32)
            motifs.append(Motif(
                name=f"{sign[:3]}_{k}", sign=sign, ppm=_real_ppm(real, pattern.seqlets, len(cwm)), cwm=cwm,
                hypothetical=np.asarray(pattern.hypothetical_contribs, dtype=np.float32),
                seqlets=[(int(s.example_idx), int(s.start) - pad, int(s.end) - pad, bool(s.is_revcomp))
                         for s in pattern.seqlets],
                trimmed=trim_span(cwm, trim_threshold),
            ))
    return motifs


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of one row of p-values."""
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    out = np.empty_like(q)
    out[order] = q
    return out


def match_motifs(motifs: Sequence[Motif], known: dict[str, np.ndarray], *, n_best: int = 3) -> list[Motif]:
    """Fill each motif's ``matches`` with its ``n_best`` TOMTOM matches among ``known`` (lowest
    p-value first); returns the motifs. TOMTOM's null is built from the known motifs' columns,
    so with fewer than ~25 of them p-values are rough (memelite warns)."""
    import warnings

    from memelite import tomtom

    if not motifs or not known:
        return list(motifs)
    names = list(known)
    queries = [np.ascontiguousarray(m.trimmed_ppm.T, dtype=np.float64) for m in motifs]
    targets = [np.ascontiguousarray(known[n].T, dtype=np.float64) for n in names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, _, offsets, overlaps, strands = tomtom(queries, targets)
    for i, motif in enumerate(motifs):
        q = _bh(np.asarray(p[i], dtype=np.float64))
        best = np.argsort(p[i], kind="stable")[:n_best]
        motif.matches = [MotifMatch(target=names[j], p_value=float(p[i, j]), q_value=float(q[j]),
                                    offset=int(offsets[i, j]), overlap=int(overlaps[i, j]),
                                    strand="-" if int(strands[i, j]) else "+") for j in best]
    return list(motifs)


__all__ = ["Motif", "MotifMatch", "discover_motifs", "match_motifs", "trim_span"]
