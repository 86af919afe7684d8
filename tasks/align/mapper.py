"""The mapping engine: reads -> :class:`AlignedRead` records against an :class:`~.index.AlignIndex`.

A read is embedded with the index's encoder, its top-k index entries found with faiss, the
entries' fragments widened by ``flank`` and merged per contig and strand into candidate regions
(:func:`candidate_regions`), and the read (or its reverse complement) aligned to each region with
edlib's infix mode (the read fully, the region free at both ends). The best and the best at a
different locus give MAPQ; the best is aligned again globally for its CIGAR. Reads left unmapped
are searched again ``rescue_k`` deep (:meth:`Aligner.rescue`). :class:`Aligner` holds it all for
``genoseq align map`` and ``POST /v1/align``, so both give the same records for the same reads.

Only numpy and the light genoseq modules are imported at module level; edlib, faiss and pysam
load inside the functions.
"""

from __future__ import annotations

import os
import re
import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from genoseq.errors import InputError
from genoseq.genome import MemoryGenome
from genoseq.tokenizer import Tokenizer

from .index import AlignIndex, check_reference, load_index

_RC = bytes.maketrans(b"ACGTN", b"TGCAN")


def _revcomp(seq: bytes) -> bytes:
    return seq.translate(_RC)[::-1]


class AlignedRead(NamedTuple):
    """One read's mapping: the fields of its SAM record (:meth:`to_segment`).

    ``contig`` is the contig's index in the reference (-1 when unmapped), ``pos`` the 0-based
    leftmost aligned reference base, ``cigar`` pysam ``(op, length)`` tuples; ``seq`` and ``qual``
    are as SAM stores them (reverse-complemented for flag 16); ``nm`` is the NM tag (edits in the
    CIGAR); ``best`` and ``second`` are the edit distances of the best alignment and of the best
    at another locus (AS = -best, XS = -second; None when there is none).
    """

    name: str
    flag: int
    contig: int
    pos: int
    mapq: int
    cigar: list[tuple[int, int]] | None
    seq: bytes
    qual: str | None
    nm: int | None
    best: int | None
    second: int | None

    @property
    def mapped(self) -> bool:
        return not self.flag & 4

    @property
    def reverse(self) -> bool:
        return bool(self.flag & 16)

    @property
    def alignment_score(self) -> int | None:
        """The AS tag: minus the best edit distance (None when unmapped)."""
        return None if self.best is None else -self.best

    @property
    def second_best_score(self) -> int | None:
        """The XS tag: minus the edit distance at the best other locus (None when there is none)."""
        return None if self.second is None else -self.second

    def to_segment(self, header):
        """The pysam record; ``header`` is a ``pysam.AlignmentHeader`` of the index's contigs."""
        import pysam

        seg = pysam.AlignedSegment(header)
        seg.query_name = self.name
        seg.query_sequence = self.seq.decode("ascii")
        if self.qual is not None:
            seg.query_qualities = pysam.qualitystring_to_array(self.qual)
        seg.flag = self.flag
        if not self.mapped:
            seg.reference_id = -1
            seg.reference_start = -1
            seg.mapping_quality = 0
            return seg
        seg.reference_id = self.contig
        seg.reference_start = self.pos
        seg.mapping_quality = self.mapq
        seg.cigartuples = self.cigar
        tags = [("NM", self.nm), ("AS", self.alignment_score)]
        if self.second is not None:
            tags.append(("XS", self.second_best_score))
        seg.set_tags(tags)
        return seg


def _align_chunk(chunk: list[tuple[str, bytes, str | None, list]], sequences: list[bytes], max_error_rate: float,
                 extended_cigar: bool) -> list[AlignedRead]:
    """Align each read of a chunk to its candidate regions of ``sequences`` (the contigs).

    A read's candidates are ``(contig_index, start, end, strand)`` regions; strand 1 aligns the
    read's reverse complement to the forward reference.
    """
    import edlib

    from genoseq import sam

    results = []
    for name, seq, qual, regions in chunk:
        max_edits = max(0, int(max_error_rate * len(seq)))
        hits = []  # (distance, contig, strand, start, end) in contig coordinates
        rc = None
        for ci, rs, re_, strand in regions:
            if strand:
                rc = rc if rc is not None else _revcomp(seq)
            query = rc if strand else seq
            found = edlib.align(query, sequences[ci][rs:re_], mode="HW", task="locations", k=max_edits)
            d = found["editDistance"]
            if d < 0:
                continue
            for loc_start, loc_end in found["locations"]:
                hits.append((d, ci, strand, rs + loc_start, rs + loc_end + 1))
        best, second = _best_two(hits, len(seq), name)
        if best is None:
            results.append(AlignedRead(name, 4, -1, -1, 0, None, seq, qual, None, None, None))
            continue
        d, ci, strand, start, end = best
        query = rc if strand else seq
        path = edlib.align(query, sequences[ci][start:end], mode="NW", task="path")
        cigar = sam.soft_clip_ends(sam.parse_cigar(path["cigar"]))
        cigar, pos = sam.clip_and_extend(cigar, query, sequences[ci], start + _leading_deletions(path["cigar"]))
        if sam.query_length(cigar) != len(query):  # an internal error, never bad input
            raise RuntimeError(f"CIGAR {sam.cigar_string(cigar)} does not cover read {name} ({len(query)} bases)")
        nm = sam.edit_distance(cigar)
        if not extended_cigar:
            cigar = sam.to_match_mismatch(cigar)
        mapq = 60 if second is None else min(60, 10 * (second[0] - d))
        out_qual = qual[::-1] if (strand and qual is not None) else qual
        results.append(AlignedRead(name, 16 if strand else 0, ci, pos, mapq, cigar, query, out_qual, nm,
                                   d, None if second is None else second[0]))
    return results


def _leading_deletions(cigar: str) -> int:
    match = re.match(r"(\d+)D", cigar)
    return int(match.group(1)) if match else 0


def _best_two(hits: list[tuple], read_length: int, name: str = "") -> tuple[tuple | None, tuple | None]:
    """The lowest-distance hit and the best hit at a different locus (another contig or strand,
    or a start more than half a read length away).

    Among equally good loci (a read from an exact repeat) the choice is drawn from a hash of
    the read name, as bwa draws at random: reads of a repeat spread over its copies instead of
    piling onto the first, and the same read always gets the same one."""
    if not hits:
        return None, None
    hits.sort(key=lambda h: (h[0], h[1], h[2], h[3]))
    loci = [hits[0]]  # the best hit of each distinct locus, best first
    for h in hits[1:]:
        if all(h[1] != l[1] or h[2] != l[2] or abs(h[3] - l[3]) > read_length // 2 for l in loci):
            loci.append(h)
            if h[0] > hits[0][0]:  # past the ties: enough for a second best
                break
    ties = [l for l in loci if l[0] == hits[0][0]]
    best = ties[zlib.crc32(name.encode()) % len(ties)]
    rest = [l for l in loci if l is not best]
    return best, (rest[0] if rest else None)


def candidate_regions(idx: AlignIndex, entries: np.ndarray, flank: int) -> list[tuple[int, int, int, int]]:
    """Faiss entries of one read -> merged ``(contig, start, end, strand)`` regions to align to.

    Each entry's fragment is widened by ``flank`` on both sides (clipped to the contig);
    overlapping regions of the same contig and strand are merged.
    """
    lengths = [c["length"] for c in idx.manifest["contigs"]]
    spans: dict[tuple[int, int], list[list[int]]] = {}
    for e in entries:
        if e < 0:
            continue
        frag, strand = divmod(int(e), 2)
        ci = int(idx.contig[frag])
        start = max(0, int(idx.start[frag]) - flank)
        end = min(lengths[ci], int(idx.end[frag]) + flank)
        spans.setdefault((ci, strand), []).append([start, end])
    regions = []
    for (ci, strand), items in spans.items():
        items.sort()
        merged = [items[0]]
        for s, e in items[1:]:
            if s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        regions += [(ci, s, e, strand) for s, e in merged]
    return regions


def check_map_options(top_k: int, flank: int | None, max_error_rate: float, batch_size: int, rescue_k: int = 0) -> None:
    """InputError unless the mapping options make sense (``genoseq align map`` and the API)."""
    if (top_k < 1 or (flank is not None and flank < 0) or not 0 <= max_error_rate < 1 or batch_size < 1
            or rescue_k < 0):
        raise InputError(f"need top_k >= 1, rescue_k >= 0, flank >= 0, 0 <= max_error_rate < 1, batch_size >= 1; got "
                         f"top_k={top_k}, rescue_k={rescue_k}, flank={flank}, max_error_rate={max_error_rate}, "
                         f"batch_size={batch_size}")


@dataclass
class Aligner:
    """Reads -> :class:`AlignedRead`: the per-batch work of ``genoseq align map``, also behind
    ``POST /v1/align`` (:mod:`genoseq.api`), so both give the same records for the same reads.

    Holds a loaded index, the reference it was built from (``sequences``: the contigs as
    ``ACGTN`` bytes, what edlib reads) and the mapping options. :meth:`prepare` tokenises a
    batch, embeds it, searches the top-k index entries and lists each read's candidate regions
    and :meth:`align` aligns prepared reads to their candidate regions with edlib;
    :meth:`rescue` searches the reads that found no alignment again, ``rescue_k`` entries deep;
    :meth:`map_batch` does all three for one batch (in ``map_reads``' worker processes, which
    share the loaded index copy-on-write), and :meth:`map` for a list of reads, in batches of
    ``batch_size`` as ``map_reads`` reads them. Build one with :meth:`open`.
    """

    index: AlignIndex
    reference: MemoryGenome
    sequences: list[bytes]
    top_k: int = 8
    rescue_k: int = 64  # reads unaligned within the top_k are searched again this deep (0: never)
    flank: int | None = None  # None: half the fragment length
    max_error_rate: float = 0.1
    extended_cigar: bool = True
    batch_size: int = 1024
    device: object = None  # the encoder's device (None: where its weights are)
    tokenizer: Tokenizer = field(default_factory=Tokenizer, repr=False)
    timing: dict = field(default_factory=lambda: {"embed_s": 0.0, "search_s": 0.0}, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_map_options(self.top_k, self.flank, self.max_error_rate, self.batch_size, self.rescue_k)
        if self.flank is None:
            self.flank = self.index.manifest["fragment_length"] // 2

    @classmethod
    def open(cls, index: str | os.PathLike, reference: list[str] | str | None = None, device: str = "auto",
             **options) -> "Aligner":
        """Load an index folder and its reference: the FASTA(s) named in the manifest, or
        ``reference`` if they moved (checked against the manifest's MD5s). ``options``: the
        mapping options (``top_k``, ``rescue_k``, ``flank``, ``max_error_rate``, ``extended_cigar``,
        ``batch_size``)."""
        from genoseq.runtime import resolve_device

        dev = resolve_device(device)
        idx = load_index(index, map_location=dev)
        ref = MemoryGenome.from_files(reference or idx.manifest["reference"])
        check_reference(idx, ref)
        return cls(idx, ref, ref.sequences(), device=dev, **options)

    def with_options(self, **options) -> "Aligner":
        """A copy with other mapping options, sharing the loaded index, reference and timing."""
        return replace(self, **options)

    def sam_header(self, command_line: str) -> dict:
        """The SAM header (pysam dict): @HD, @SQ with M5 per contig, @PG with ``command_line``."""
        import genoseq

        ref = self.reference
        return {
            "HD": {"VN": "1.6", "SO": "unsorted"},
            "SQ": [{"SN": n, "LN": len(x), "M5": h} for n, x, h in zip(ref.names, ref.ids, ref.md5)],
            "PG": [{"ID": "genoseq-align", "PN": "genoseq", "VN": genoseq.__version__, "CL": command_line}],
        }

    def encode(self, reads: list[tuple[str, str, str | None]], path: str | None = None) -> list[np.ndarray]:
        """Token ids of a batch of ``(name, sequence, quality or None)``; InputError (naming the
        read and ``path``) on a character that is not a base."""
        tok = self.tokenizer
        return [tok.encode(seq, name=name, path=path) for name, seq, _ in reads]

    def prepare(self, reads: list[tuple[str, str, str | None]], path: str | None = None,
                ids: list[np.ndarray] | None = None) -> list[tuple]:
        """Tokenise (unless ``ids`` come from :meth:`encode`), embed and search a batch of
        ``(name, sequence, quality or None)``. Returns per read ``(name, sequence as ACGTN bytes,
        quality, index entries)`` for :meth:`align`; ``path`` names the reads' file in errors."""
        t0 = time.perf_counter()
        tok = self.tokenizer
        ids = self.encode(reads, path) if ids is None else ids
        vectors = self.index.encoder.embed(ids, batch_size=self.batch_size, device=self.device)
        t1 = time.perf_counter()
        _, entries = self.index.faiss.search(vectors, self.top_k)
        self.timing["embed_s"] += t1 - t0
        self.timing["search_s"] += time.perf_counter() - t1
        return [(name, tok.decode(x).encode("ascii"), qual, entries[i])
                for i, ((name, _, qual), x) in enumerate(zip(reads, ids))]

    def align(self, prepared: list[tuple]) -> list[AlignedRead]:
        """Align reads from :meth:`prepare` to their candidate regions (edlib; no encoder needed,
        so it runs in worker processes)."""
        chunk = [(name, seq, qual, candidate_regions(self.index, entries, self.flank))
                 for name, seq, qual, entries in prepared]
        return _align_chunk(chunk, self.sequences, self.max_error_rate, self.extended_cigar)

    def rescue(self, records: list[AlignedRead]) -> tuple[list[AlignedRead], int]:
        """Search the unmapped reads among ``records`` again, ``rescue_k`` entries deep, and align
        them to those candidates; returns the records (rescued ones replaced) and how many were
        rescued. A read whose true fragment ranked just below ``top_k`` (low-complexity or
        error-dense reads) is found at little cost: only unmapped reads pay for the deeper search."""
        retry = [i for i, rec in enumerate(records) if not rec.mapped]
        if not retry or self.rescue_k <= self.top_k:
            return records, 0
        deeper = self.with_options(top_k=min(self.rescue_k, self.index.faiss.ntotal))
        again = deeper.align(deeper.prepare([(records[i].name, records[i].seq.decode("ascii"), records[i].qual)
                                             for i in retry]))
        records = list(records)
        for i, rec in zip(retry, again):
            records[i] = rec
        return records, sum(rec.mapped for rec in again)

    def map_batch(self, reads: list[tuple[str, str, str | None]], ids: list[np.ndarray] | None = None
                  ) -> tuple[list[AlignedRead], int, dict]:
        """Prepare, align and rescue one batch: its records in order, how many reads the rescue
        search placed, and the seconds this batch spent embedding and searching."""
        before = dict(self.timing)
        records, rescued = self.rescue(self.align(self.prepare(reads, ids=ids)))
        return records, rescued, {key: self.timing[key] - before[key] for key in self.timing}

    def map(self, reads: Iterable[tuple[str, str, str | None]]) -> list[AlignedRead]:
        """Map ``(name, sequence, quality or None)`` reads: one record per read, in order."""
        out: list[AlignedRead] = []
        for batch in batches(reads, self.batch_size):
            out += self.map_batch(batch)[0]
        return out


def batches(items: Iterable, size: int) -> Iterator[list]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
