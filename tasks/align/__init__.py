"""Read mapping by embedding search (Embed-Search-Align, after DNA-ESA), on sequences in memory.

A read is mapped by (1) embedding it with a contrastively trained
:class:`~genoseq.models.read_encoder.ReadEncoder`, (2) finding the nearest reference fragments
in a faiss index of fragment embeddings, (3) aligning the read to each candidate region
(fragment plus flanks) with edlib and keeping the best.

- :mod:`.index`: fragments, their embeddings (both strands), the faiss index, the index folder
  (:class:`AlignIndex`, :func:`build_index`, :func:`write_index`, :func:`load_index`).
- :mod:`.mapper`: the mapping engine (:class:`Aligner`, :class:`AlignedRead`, candidate
  regions, edlib alignment, MAPQ, rescue).
- :mod:`.evaluate`: truth from simulated read names, per-record outcomes and their counts,
  two mappings compared, Recall@k of the search, held-out top-1 of an encoder.
- :mod:`.simulate`: the read error model, the encoder's ``(fragment, read)`` training pairs and
  simulated reads.

Reads are ``(name, sequence, quality or None)`` tuples and references
:class:`~genoseq.genome.MemoryGenome` objects; reading FASTQ and writing SAM/BAM files is
:mod:`genoseq.pipelines.align`'s. Only numpy and the light genoseq modules load at import.
"""

from __future__ import annotations

from .evaluate import (Truth, compare_outcomes, held_out_top1, parse_truth, read_outcome, score_outcomes,
                       search_recall)
from .index import (FAISS_FILE, FRAGMENTS_FILE, MANIFEST_FILE, MODEL_SUBDIR, AlignIndex, Fragments, build_faiss,
                    build_index, check_reference, cut_fragments, embed_fragments, fragment_starts, index_geometry,
                    index_kind, load_index, write_index)
from .mapper import AlignedRead, Aligner, batches, candidate_regions, check_map_options
from .simulate import ErrorProfile, FragmentReadDataset, collate_pairs, mutate, simulate_reads

__all__ = [
    "FAISS_FILE", "FRAGMENTS_FILE", "MANIFEST_FILE", "MODEL_SUBDIR",
    "AlignIndex", "AlignedRead", "Aligner", "ErrorProfile", "FragmentReadDataset", "Fragments", "Truth",
    "batches", "build_faiss", "build_index", "candidate_regions", "check_map_options", "check_reference",
    "collate_pairs", "compare_outcomes", "cut_fragments", "embed_fragments", "fragment_starts", "held_out_top1",
    "index_geometry", "index_kind", "load_index", "mutate", "parse_truth", "read_outcome", "score_outcomes",
    "search_recall", "simulate_reads", "write_index",
]
