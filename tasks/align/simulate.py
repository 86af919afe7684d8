"""Reads simulated from contigs in memory: the error model, the read encoder's training pairs,
and reads that carry their origin in their names.

Everything works on token ids (``uint8``, :mod:`genoseq.tokenizer`), so no strings are built
while training. Module-level imports are numpy only; torch is imported inside :func:`collate_pairs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genoseq.tokenizer import A, PAD, Tokenizer

_TOKENIZER = Tokenizer()


@dataclass
class ErrorProfile:
    """Per-base error rates of simulated reads (sequencing errors and true variants together).

    Args:
        substitution: Probability that a base is replaced by one of the other three.
        insertion: Probability that a random base is inserted before a base.
        deletion: Probability that a reference base is skipped.
    """

    substitution: float = 0.02
    insertion: float = 0.001
    deletion: float = 0.001

    def __post_init__(self) -> None:
        total = self.substitution + self.insertion + self.deletion
        if min(self.substitution, self.insertion, self.deletion) < 0 or total >= 1:
            raise ValueError(f"error rates must be >= 0 and sum below 1, got {self}")


def mutate(source: np.ndarray, length: int, profile: ErrorProfile, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Copy ``source`` ids with substitutions, insertions and deletions until ``length`` ids are out.

    Returns the read and the number of source bases it consumed. ``source`` should be longer
    than ``length`` (deletions consume extra bases); the read is shorter only if ``source``
    runs out.
    """
    n = len(source)
    events = rng.random(n)
    sub = events < profile.substitution
    ins = (events >= profile.substitution) & (events < profile.substitution + profile.insertion)
    dele = (events >= profile.substitution + profile.insertion) & (
        events < profile.substitution + profile.insertion + profile.deletion)
    bases = source.astype(np.uint8).copy()
    if sub.any():  # shift a base by 1..3 within A C G T: always a different base
        is_acgt = (bases >= A) & (bases < A + 4)
        shift = rng.integers(1, 4, size=n)
        changed = sub & is_acgt
        bases[changed] = (A + (bases[changed] - A + shift[changed]) % 4).astype(np.uint8)
    if not (ins.any() or dele.any()):
        take = min(length, n)
        return bases[:take], take
    out = np.empty(length, dtype=np.uint8)
    random_bases = rng.integers(A, A + 4, size=n).astype(np.uint8)
    filled = consumed = 0
    while filled < length and consumed < n:
        i = consumed
        if ins[i]:
            out[filled] = random_bases[i]
            filled += 1
            if filled == length:
                break
        consumed += 1
        if dele[i]:
            continue
        out[filled] = bases[i]
        filled += 1
    return out[:filled], consumed


@dataclass
class FragmentReadDataset:
    """``(fragment, read)`` pairs drawn from reference contigs, deterministic per index.

    Item ``i`` uses a generator seeded with ``(seed, i)``: a random contig (by length), a
    random fragment start, a random strand (the fragment is reverse-complemented for ``-``),
    and a read simulated from a random offset inside that (oriented) fragment, so the read
    lies wholly within its positive. Fragments with more than ``max_n_fraction`` N are redrawn.
    ``contigs`` maps names to token-id arrays held in memory; those shorter than a fragment
    are dropped.
    """

    contigs: dict[str, np.ndarray]
    length: int
    fragment_length: int
    read_length: int
    profile: ErrorProfile
    seed: int = 0
    max_n_fraction: float = 0.1

    def __post_init__(self) -> None:
        self.contigs = {name: ids for name, ids in self.contigs.items() if len(ids) >= self.fragment_length}
        if not self.contigs:
            raise ValueError(f"no contig is at least fragment_length={self.fragment_length} bases long")
        self.names = list(self.contigs)
        sizes = np.array([len(ids) - self.fragment_length + 1 for ids in self.contigs.values()], dtype=np.float64)
        self.weights = sizes / sizes.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((self.seed, int(index)))
        F, R = self.fragment_length, self.read_length
        for _ in range(100):
            ids = self.contigs[self.names[rng.choice(len(self.names), p=self.weights)]]
            start = int(rng.integers(0, len(ids) - F + 1))
            fragment = ids[start:start + F]
            if np.mean(fragment == A + 4) <= self.max_n_fraction:
                break
        if rng.random() < 0.5:
            fragment = _TOKENIZER.reverse_complement(fragment)
        offset = int(rng.integers(0, F - R + 1))
        read, _ = mutate(fragment[offset:], R, self.profile, rng)
        return fragment, read


def collate_pairs(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Pad fragments and reads on the right into the batch :class:`ReadEncoder` trains on."""
    import torch

    def pad(rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), PAD, dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        ids_t = torch.from_numpy(ids)
        return ids_t, ids_t != PAD

    fragments, fragment_mask = pad([f for f, _ in pairs])
    reads, read_mask = pad([r for _, r in pairs])
    return {"fragments": fragments, "fragment_mask": fragment_mask, "reads": reads, "read_mask": read_mask}


def simulate_reads(contigs: dict[str, np.ndarray], n: int, read_length: int, profile: ErrorProfile,
                   seed: int = 0, name_prefix: str = "sim") -> list[tuple[str, str, str]]:
    """``n`` reads ``(name, sequence, quality)`` with their truth in the name.

    Names follow the shared data's convention, ``CONTIG_POS1_POS2_STRAND_..._ID`` with POS1
    the 1-based leftmost reference base and STRAND 0 (forward) or 1 (reverse complement), so
    :func:`genoseq.tasks.align.evaluate.parse_truth` reads both kinds.
    """
    rng = np.random.default_rng(seed)
    names = [c for c, ids in contigs.items() if len(ids) > 2 * read_length]
    sizes = np.array([len(contigs[c]) for c in names], dtype=np.float64)
    reads = []
    for i in range(n):
        contig = names[rng.choice(len(names), p=sizes / sizes.sum())]
        ids = contigs[contig]
        start = int(rng.integers(0, len(ids) - 2 * read_length))
        read, consumed = mutate(ids[start:start + 2 * read_length], read_length, profile, rng)
        strand = int(rng.random() < 0.5)
        if strand:
            read = _TOKENIZER.reverse_complement(read)
        seq = _TOKENIZER.decode(read)
        name = f"{contig}_{start + 1}_{start + consumed}_{strand}_{1 - strand}_0_0_0:0:0_0:0:0_{name_prefix}{i}/1"
        reads.append((name, seq, "I" * len(seq)))
    return reads


__all__ = ["ErrorProfile", "FragmentReadDataset", "collate_pairs", "mutate", "simulate_reads"]
