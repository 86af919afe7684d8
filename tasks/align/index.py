"""The read index: both strands of overlapping reference fragments, embedded and searchable.

A contig is cut into fragments of ``fragment_length`` every ``fragment_length - overlap``
bases (:func:`fragment_starts`); both strands of each are embedded (the encoder is
strand-specific: a reverse-strand read is close to its fragment's reverse complement, so entry
``2i`` is fragment ``i``'s forward strand and ``2i + 1`` its reverse complement) and stored in a
faiss inner-product index (:func:`build_faiss`). :func:`build_index` does it for a genome in
memory, :func:`write_index` stores the result as an index folder and :func:`load_index` opens
one: ``manifest.json``, ``fragments.npz`` (plain arrays, no pickle), ``faiss.index`` and
``model/`` (a copy of the encoder).

Only numpy is imported at module level; faiss and torch load inside the functions.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from genoseq.errors import InputError
from genoseq.genome import MemoryGenome
from genoseq.tokenizer import Tokenizer

INDEX_FORMAT = "genoseq.align_index"
INDEX_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
FRAGMENTS_FILE = "fragments.npz"
FAISS_FILE = "faiss.index"
MODEL_SUBDIR = "model"
FLAT_MAX_ENTRIES = 500_000  # exact search up to here with index_type="auto"
HNSW_MAX_ENTRIES = 20_000_000  # HNSW up to here, IVF-PQ beyond


class Fragments(NamedTuple):
    """Fragment coordinates: contig index, 0-based start and end (one row per fragment)."""

    contig: np.ndarray
    start: np.ndarray
    end: np.ndarray


@dataclass
class AlignIndex:
    """A read index: manifest, faiss index, fragment coordinates, encoder (``path``: its folder,
    None until written)."""

    path: Path | None
    manifest: dict
    faiss: object
    contig: np.ndarray
    start: np.ndarray
    end: np.ndarray
    encoder: object

    @property
    def contig_names(self) -> list[str]:
        return [c["name"] for c in self.manifest["contigs"]]


def fragment_starts(length: int, fragment_length: int, overlap: int) -> np.ndarray:
    """0-based starts of fragments of ``fragment_length`` every ``fragment_length - overlap``
    bases; the last one ends at the contig end. A short contig is one fragment."""
    if not 0 <= overlap < fragment_length:
        raise ValueError(f"need 0 <= overlap < fragment_length, got {overlap} and {fragment_length}")
    if length <= fragment_length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - fragment_length + 1, fragment_length - overlap, dtype=np.int64)
    if starts[-1] + fragment_length < length:
        starts = np.append(starts, length - fragment_length)
    return starts


def index_geometry(encoder, fragment_length: int | None = None, overlap: int | None = None) -> tuple[int, int]:
    """Fragment length and overlap: the encoder's training fragment length and read length
    unless given (so every read of that length lies wholly inside some fragment)."""
    enc_cfg = encoder.encoder_config
    fragment_length = fragment_length or enc_cfg.fragment_length
    overlap = enc_cfg.read_length if overlap is None else overlap
    if not 0 <= overlap < fragment_length:
        raise InputError(f"need 0 <= overlap < fragment_length, got overlap={overlap}, fragment_length={fragment_length}")
    return fragment_length, overlap


def cut_fragments(genome: MemoryGenome, fragment_length: int, overlap: int) -> Fragments:
    """Every contig's fragments (:func:`fragment_starts`), contig by contig."""
    contig_col, start_col, end_col = [], [], []
    for ci, ids in enumerate(genome.ids):
        starts = fragment_starts(len(ids), fragment_length, overlap)
        contig_col.append(np.full(len(starts), ci, dtype=np.int32))
        start_col.append(starts)
        end_col.append(np.minimum(starts + fragment_length, len(ids)))
    return Fragments(*(np.concatenate(c) for c in (contig_col, start_col, end_col)))


def index_kind(index_type: str, n_entries: int) -> str:
    """The faiss index of ``index_type``; ``auto``: flat up to 500k entries, HNSW up to 20M, IVF-PQ beyond."""
    if index_type != "auto":
        return index_type
    return "flat" if n_entries <= FLAT_MAX_ENTRIES else "hnsw" if n_entries <= HNSW_MAX_ENTRIES else "ivfpq"


def embed_fragments(encoder, genome: MemoryGenome, fragments: Fragments, batch_size: int = 256, device=None,
                    on_batch: Callable[[int], object] | None = None) -> np.ndarray:
    """Embeddings of both strands of every fragment, ``(2 * n, embed_dim)``: row 2i the forward
    strand of fragment i, row 2i + 1 its reverse complement. ``on_batch`` hears how many
    fragments each pass embedded."""
    tok = Tokenizer()
    contigs = genome.ids
    n_frag = len(fragments.start)
    vectors = np.zeros((2 * n_frag, encoder.embed_dim), dtype=np.float32)
    chunk = max(1, batch_size * 8)
    for first in range(0, n_frag, chunk):
        rows = range(first, min(first + chunk, n_frag))
        seqs = []
        for i in rows:
            fwd = contigs[fragments.contig[i]][fragments.start[i]:fragments.end[i]]
            seqs += [fwd, tok.reverse_complement(fwd)]
        vectors[2 * first: 2 * first + len(seqs)] = encoder.embed(seqs, batch_size=batch_size, device=device)
        if on_batch is not None:
            on_batch(len(rows))
    return vectors


def build_faiss(kind: str, vectors: np.ndarray):
    """A faiss inner-product index of ``kind`` (``flat``, ``hnsw``, ``ivfpq``) holding ``vectors``."""
    import faiss

    n, dim = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    elif kind == "ivfpq":
        nlist = max(1, min(65536, int(4 * math.sqrt(n))))
        m = next(m for m in (dim // 4, dim // 8, dim // 16, 1) if m >= 1 and dim % m == 0)
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(0).choice(n, size=min(n, 256 * nlist), replace=False)]
        index.train(sample)
        index.nprobe = min(nlist, 32)
    else:
        raise InputError(f"unknown index_type {kind!r}; use auto, flat, hnsw or ivfpq")
    index.add(vectors)
    return index


def build_index(encoder, genome: MemoryGenome, fragment_length: int, overlap: int, index_type: str = "auto",
                batch_size: int = 256, device=None, model_source: str | None = None,
                progress: Callable[[int], object] | None = None) -> AlignIndex:
    """Cut, embed (both strands) and index every contig of ``genome``.

    ``model_source`` is recorded in the manifest as where the encoder came from; ``progress``,
    called with the number of fragments, returns a counter whose ``update(n)`` hears each
    embedded batch and whose ``close()`` ends it (a :class:`genoseq.progress.Progress`).
    """
    import genoseq

    fragments = cut_fragments(genome, fragment_length, overlap)
    n_frag = len(fragments.start)
    kind = index_kind(index_type, 2 * n_frag)
    started = time.time()
    bar = progress(n_frag) if progress is not None else None
    vectors = embed_fragments(encoder, genome, fragments, batch_size, device, None if bar is None else bar.update)
    if bar is not None:
        bar.close()
    embed_seconds = time.time() - started
    faiss_index = build_faiss(kind, vectors)
    manifest = {
        "format": INDEX_FORMAT,
        "format_version": INDEX_FORMAT_VERSION,
        "genoseq_version": genoseq.__version__,
        "model_source": model_source,
        "reference": genome.sources,
        "contigs": [{"name": n, "length": len(x), "md5": h} for n, x, h in zip(genome.names, genome.ids, genome.md5)],
        "fragment_length": fragment_length,
        "overlap": overlap,
        "strands": "both (entry 2i forward, 2i+1 reverse complement of fragment i)",
        "n_fragments": n_frag,
        "n_entries": 2 * n_frag,
        "embed_dim": encoder.embed_dim,
        "index_type": kind,
        "metric": "inner_product (cosine: vectors are unit norm)",
        "embed_seconds": round(embed_seconds, 1),
    }
    return AlignIndex(None, manifest, faiss_index, *fragments, encoder)


def write_index(idx: AlignIndex, out: str | os.PathLike) -> Path:
    """Store ``idx`` as an index folder (written to a temporary folder, then renamed); the
    encoder is moved to the CPU to be saved."""
    import faiss

    from genoseq.runtime import atomic_directory, write_json

    out_dir = Path(out)
    with atomic_directory(out_dir) as tmp_dir:
        faiss.write_index(idx.faiss, str(tmp_dir / FAISS_FILE))
        np.savez(tmp_dir / FRAGMENTS_FILE, contig=idx.contig, start=idx.start, end=idx.end)
        idx.encoder.cpu().save_pretrained(tmp_dir / MODEL_SUBDIR)
        write_json(tmp_dir / MANIFEST_FILE, idx.manifest)
    idx.path = out_dir
    return out_dir


def load_index(path: str | os.PathLike, map_location: str = "cpu") -> AlignIndex:
    """Open an index folder written by :func:`write_index` (no pickle: JSON, npz arrays, faiss, safetensors)."""
    import faiss

    from genoseq.models.read_encoder import ReadEncoder

    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise InputError(f"not a genoseq align index: no {MANIFEST_FILE}", path=str(path))
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as err:
        raise InputError(f"corrupt manifest: {err}", path=str(manifest_path)) from None
    if manifest.get("format") != INDEX_FORMAT or manifest.get("format_version", 0) > INDEX_FORMAT_VERSION:
        raise InputError(f"not a readable genoseq align index (format {manifest.get('format')!r}, "
                         f"version {manifest.get('format_version')})", path=str(manifest_path))
    with np.load(path / FRAGMENTS_FILE, allow_pickle=False) as arrays:
        contig, start, end = arrays["contig"], arrays["start"], arrays["end"]
    index_ = faiss.read_index(str(path / FAISS_FILE))
    if index_.ntotal != 2 * len(start):
        raise InputError(f"faiss index holds {index_.ntotal} vectors for {len(start)} fragments", path=str(path))
    encoder = ReadEncoder.from_pretrained(path / MODEL_SUBDIR, map_location=map_location)
    return AlignIndex(path, manifest, index_, contig, start, end, encoder)


def check_reference(idx: AlignIndex, genome: MemoryGenome) -> None:
    """InputError unless ``genome`` holds the contigs ``idx`` was built from (names and MD5s)."""
    expected = {c["name"]: c["md5"] for c in idx.manifest["contigs"]}
    found = dict(zip(genome.names, genome.md5))
    if expected != found:
        differ = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise InputError(f"the reference does not match the one indexed (contig name/MD5 differ: {differ})",
                         path=", ".join(genome.sources))
