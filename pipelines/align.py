"""``genoseq align train | index | map``: read mapping by embedding search (Embed-Search-Align).

After DNA-ESA: a read is mapped by (1) embedding it with a contrastively trained
:class:`~genoseq.models.read_encoder.ReadEncoder`, (2) finding the nearest reference
fragments in a faiss index of fragment embeddings, (3) aligning the read to each candidate
region (fragment plus flanks) with edlib and keeping the best.

- ``train``: InfoNCE with in-batch negatives on ``(fragment, read)`` pairs simulated on the fly
  from the reference (:mod:`genoseq.pipelines.align_data`). Writes ``OUT/`` (released encoder,
  ``metrics.json``, ``metrics.csv``).
- ``index``: cuts every contig into overlapping fragments, embeds both strands of each (the
  encoder is strand-specific; a reverse-strand read is close to its fragment's reverse
  complement), and stores a faiss index, the fragment coordinates (``fragments.npz``, plain
  arrays, no pickle), a copy of the encoder and ``manifest.json``.
- ``map``: embeds reads in batches, searches the top-k fragments, merges overlapping candidate
  regions per strand, aligns with edlib's infix mode (the read fully, the region free at both
  ends) over a process pool, and writes SAM or sorted+indexed BAM through pysam.

:func:`evaluate_sam` and :func:`search_recall` score a mapping against the truth written in
simulated read names (:func:`parse_truth`); tests and ``benchmarks/bench_align.py`` use them.

Only numpy and the light genoseq modules are imported at module level (the CLI builds its
parser from these signatures); torch, faiss, edlib and pysam load inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Literal, NamedTuple

import numpy as np

from genoseq.errors import InputError
from genoseq.models.config import ModelConfig, OptimConfig
from genoseq.progress import ProgressChoice
from genoseq.runtime import LoggerChoice
from genoseq.tokenizer import Tokenizer

INDEX_FORMAT = "genoseq.align_index"
INDEX_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
FRAGMENTS_FILE = "fragments.npz"
FAISS_FILE = "faiss.index"
MODEL_SUBDIR = "model"
FLAT_MAX_ENTRIES = 500_000  # exact search up to here with index_type="auto"
HNSW_MAX_ENTRIES = 20_000_000  # HNSW up to here, IVF-PQ beyond
DEFAULT_KMER = 6  # k of the default encoder, a k-mer embedding bag


def _default_encoder_backbone() -> ModelConfig:
    """Two small Hyena blocks: fast on a CPU (~300k tokens/s forward on two cores)."""
    return ModelConfig(d_model=32, pattern="HH", n_heads=4, hyena_filter_len=256, mlp_ratio=4.0)


# ============================================================================ reference
@dataclass
class Reference:
    """Contigs held in memory as token ids, with their names, lengths and checksums."""

    paths: list[str]
    names: list[str]
    ids: list[np.ndarray]
    md5: list[str]

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.ids]

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.ids))

    def sequences(self) -> list[bytes]:
        """Contigs as upper-case ``ACGTN`` bytes (what the aligner reads)."""
        from genoseq.tokenizer import Tokenizer

        tok = Tokenizer()
        return [tok.decode(x).encode("ascii") for x in self.ids]


def load_reference(paths: list[str] | str, convert_gzip: bool = False) -> Reference:
    """Read every contig of one or more FASTA files (or token stores) into memory.

    Contig names must be unique across the files. The checksum of a contig is the MD5 of its
    normalised sequence (upper case, IUPAC ambiguity codes as N).
    """
    from genoseq.genome import open_genome
    from genoseq.tokenizer import Tokenizer

    tok = Tokenizer()
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise InputError("no reference given")
    names, ids, md5 = [], [], []
    for path in paths:
        with open_genome(path, convert_gzip=convert_gzip) as genome:
            for contig, length in genome.contigs.items():
                if contig in names:
                    raise InputError("contig name appears twice in the reference", path=path, record=contig)
                seq = genome.fetch(contig, 0, length)
                names.append(contig)
                ids.append(seq)
                md5.append(hashlib.md5(tok.decode(seq).encode("ascii")).hexdigest())
    return Reference([str(Path(p).resolve()) for p in paths], names, ids, md5)


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


# ============================================================================ train
def train(
    reference: list[str] | str,
    out: str,
    init: str | None = None,
    kmer: int | None = None,
    model: ModelConfig = _default_encoder_backbone(),
    embed_dim: int = 128,
    head_hidden: int = 512,
    fragment_length: int = 500,
    read_length: int = 250,
    substitution_rate: float = 0.02,
    insertion_rate: float = 0.001,
    deletion_rate: float = 0.001,
    steps: int = 1000,
    max_time: str | None = None,
    batch_size: int | None = None,
    temperature: float = 0.05,
    lr: float = 2e-3,
    warmup_steps: int = 50,
    val_pairs: int = 1024,
    threads: int | None = None,
    accelerator: str = "auto",
    progress: bool | ProgressChoice = "auto",
    logger: LoggerChoice = "csv",
    seed: int = 0,
    overwrite: bool = False,
    convert_gzip: bool = False,
) -> dict:
    """Train a read/fragment encoder with InfoNCE on reads simulated from the reference.

    Args:
        reference: Reference FASTA file(s) (plain or bgzip) or token stores; several as
            ``--reference a.fa --reference+ b.fa`` or ``--reference [a.fa,b.fa]``.
        out: Output folder: the released encoder (config.json, tokenizer.json,
            model.safetensors), metrics.json and metrics.csv.
        init: A pretrained GenoSeqLM directory whose backbone initialises a sequence-model
            encoder (``--model`` is then ignored); default: train from scratch.
        kmer: ``k`` of a k-mer embedding bag encoder (a learned vector per k-mer, summed over
            the sequence), or 0 for a sequence-model encoder (``--model`` backbone, or
            ``--init``). Default: 0 with ``--init``, else ``DEFAULT_KMER``.
        model: Backbone architecture of a sequence-model encoder trained from scratch.
        embed_dim: Size of the embedding vectors.
        head_hidden: Width of the per-position feature layer before mean pooling (sequence model).
        fragment_length: Reference fragment length (use the same with ``align index``).
        read_length: Length of the simulated training reads.
        substitution_rate: Per-base substitution probability of simulated reads.
        insertion_rate: Per-base insertion probability of simulated reads.
        deletion_rate: Per-base deletion probability of simulated reads.
        steps: Optimiser steps (the learning-rate schedule is sized for them).
        max_time: Wall-clock limit ``DD:HH:MM:SS``; training stops cleanly there and the
            encoder is saved as it is.
        batch_size: Fragment/read pairs per step (each read's negatives are the other fragments);
            default 1024 for a k-mer bag (a cheap step, and more negatives sharpen it), 64 for a
            sequence model.
        temperature: InfoNCE temperature.
        lr: Peak learning rate (AdamW, linear warmup then cosine decay).
        warmup_steps: Learning-rate warmup steps.
        val_pairs: Held-out simulated pairs scored at the end (top-1 among 256 fragments, or
            among all of them when fewer).
        threads: CPU threads for torch (default: torch's choice).
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.
        logger: ``csv`` (``metrics.csv``, the default) or ``tensorboard`` (the CSV too, plus
            TensorBoard event files in ``out/tensorboard``; needs ``pip install 'genoseq[tensorboard]'``).
        seed: Seed for initialisation and read simulation.
        overwrite: Replace an existing encoder in ``out``.
        convert_gzip: Convert plain-gzip FASTA inputs to bgzip instead of refusing them.
    """
    model = _coerce(ModelConfig, model)
    if kmer is None:
        kmer = 0 if init else DEFAULT_KMER
    if init and kmer:
        raise InputError(f"--init starts a sequence-model encoder from a language model; it needs --kmer 0, got {kmer}")
    if kmer and model != _default_encoder_backbone():
        raise InputError(f"--model sets the backbone of a sequence-model encoder; pass --kmer 0 with it (got --kmer {kmer})")
    if batch_size is None:
        batch_size = 1024 if kmer else 64
    out_dir = Path(out)
    if (out_dir / "config.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds an encoder; pass --overwrite to replace it")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("read_length", read_length)):
        if value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    if batch_size < 2:
        raise InputError("batch_size must be >= 2 (the other fragments of a batch are the negatives)")

    import lightning as L
    import torch

    import genoseq
    from genoseq.models.read_encoder import EncoderConfig, ReadEncoder
    from genoseq.models.read_encoder_training import ReadEncoderTraining
    from genoseq.models.progress import training_callbacks
    from genoseq.runtime import atomic_output, quiet_lightning, trainer_precision, training_loggers

    from .align_data import ErrorProfile, FragmentReadDataset, collate_pairs

    if threads:
        torch.set_num_threads(threads)
    try:  # the options' own checks (kmer range, sizes, lengths, rates), before reading the genome
        encoder_cfg = EncoderConfig(embed_dim=embed_dim, head_hidden=head_hidden, temperature=temperature,
                                    fragment_length=fragment_length, read_length=read_length, kmer=kmer)
        profile = ErrorProfile(substitution_rate, insertion_rate, deletion_rate)
    except ValueError as err:
        raise InputError(str(err)) from None
    ref = load_reference(reference, convert_gzip=convert_gzip)
    optim = OptimConfig(lr=lr, warmup_steps=min(warmup_steps, max(0, steps - 1)), total_steps=steps, weight_decay=0.01)
    L.seed_everything(seed, workers=True, verbose=False)
    if init:
        from genoseq.models.lm import GenoSeqLM

        encoder = ReadEncoder.from_lm(GenoSeqLM.from_pretrained(init), encoder=encoder_cfg, optim=optim)
    else:
        encoder = ReadEncoder(None if kmer else model, encoder=encoder_cfg, optim=optim)

    train_set = FragmentReadDataset(ref.as_dict(), steps * batch_size, fragment_length, read_length, profile, seed=seed)
    val_set = FragmentReadDataset(ref.as_dict(), val_pairs, fragment_length, read_length, profile, seed=seed + 1_000_003)
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=False, collate_fn=collate_pairs)
    out_dir.mkdir(parents=True, exist_ok=True)
    callbacks, show_progress = training_callbacks("align train", progress)
    with quiet_lightning():  # no hardware lines or tips at construction
        trainer = L.Trainer(
            max_steps=steps, max_epochs=1, max_time=max_time, accelerator=accelerator, devices=1,
            precision=trainer_precision(accelerator), gradient_clip_val=1.0, logger=training_loggers(logger, out_dir),
            enable_checkpointing=False, enable_progress_bar=show_progress, enable_model_summary=False, callbacks=callbacks,
            log_every_n_steps=10, num_sanity_val_steps=0, limit_val_batches=0,
        )
    started = time.time()
    with quiet_lightning():
        trainer.fit(ReadEncoderTraining(encoder), train_dataloaders=loader)
    seconds = time.time() - started
    train_loss = trainer.callback_metrics.get("train/loss")

    encoder.eval()
    val_top1 = _held_out_top1(encoder, val_set, group=256)
    encoder.save_pretrained(out_dir)
    metrics = {
        "genoseq_version": genoseq.__version__,
        "reference": ref.paths,
        "init": init,
        "steps": int(trainer.global_step),
        "batch_size": batch_size,
        "train_seconds": round(seconds, 1),
        "final_train_loss": None if train_loss is None else round(float(train_loss), 4),
        "val_top1_of_256": val_top1,
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "encoder": encoder_cfg.to_dict(),
        "error_profile": {"substitution": substitution_rate, "insertion": insertion_rate, "deletion": deletion_rate},
    }
    with atomic_output(out_dir / "metrics.json") as fh:
        json.dump(metrics, fh, indent=2)
        fh.write("\n")
    print(f"genoseq align train: {metrics['steps']} steps in {seconds:.0f} s; held-out top-1 of 256 "
          f"{val_top1:.3f}; encoder in {out_dir}", file=sys.stderr)
    return metrics


def _held_out_top1(encoder, dataset, group: int = 256) -> float:
    """Share of held-out reads whose own fragment is the nearest among ``group`` fragments."""
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


# ============================================================================ index
def index(
    model: str,
    reference: list[str] | str,
    out: str,
    fragment_length: int | None = None,
    overlap: int | None = None,
    index_type: Literal["auto", "flat", "hnsw", "ivfpq"] = "auto",
    batch_size: int = 256,
    threads: int | None = None,
    device: str = "auto",
    progress: bool | ProgressChoice = "auto",
    overwrite: bool = False,
    convert_gzip: bool = False,
) -> dict:
    """Embed both strands of overlapping reference fragments and build a faiss index.

    Args:
        model: Encoder directory from ``genoseq align train``.
        reference: Reference FASTA file(s) (plain or bgzip) or token stores.
        out: Index folder (manifest.json, fragments.npz, faiss.index, model/).
        fragment_length: Fragment length (default: the encoder's training length).
        overlap: Bases shared by neighbouring fragments (default: the encoder's read length, so
            every read of that length lies wholly inside some fragment).
        index_type: ``flat`` (exact inner product), ``hnsw``, ``ivfpq``, or ``auto`` (flat up to
            500k entries, HNSW up to 20M, IVF-PQ beyond).
        batch_size: Fragments per embedding batch.
        threads: CPU threads for torch and faiss (default: their choice).
        device: ``auto``, ``cpu``, ``cuda``...
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.
        overwrite: Replace an existing index in ``out``.
        convert_gzip: Convert plain-gzip FASTA inputs to bgzip instead of refusing them.
    """
    import faiss
    import torch

    import genoseq
    from genoseq.models.read_encoder import ReadEncoder
    from genoseq.progress import Progress
    from genoseq.runtime import atomic_directory, resolve_device
    from genoseq.tokenizer import Tokenizer

    out_dir = Path(out)
    if (out_dir / MANIFEST_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds an index; pass --overwrite to replace it")
    if threads:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    dev = resolve_device(device)
    encoder = ReadEncoder.from_pretrained(model, map_location=dev)
    enc_cfg = encoder.encoder_config
    fragment_length = fragment_length or enc_cfg.fragment_length
    overlap = enc_cfg.read_length if overlap is None else overlap
    if not 0 <= overlap < fragment_length:
        raise InputError(f"need 0 <= overlap < fragment_length, got overlap={overlap}, fragment_length={fragment_length}")
    ref = load_reference(reference, convert_gzip=convert_gzip)
    tok = Tokenizer()

    contig_col, start_col, end_col = [], [], []
    for ci, ids in enumerate(ref.ids):
        starts = fragment_starts(len(ids), fragment_length, overlap)
        contig_col.append(np.full(len(starts), ci, dtype=np.int32))
        start_col.append(starts)
        end_col.append(np.minimum(starts + fragment_length, len(ids)))
    frag_contig, frag_start, frag_end = (np.concatenate(c) for c in (contig_col, start_col, end_col))
    n_frag = len(frag_start)
    n_entries = 2 * n_frag
    kind = index_type
    if kind == "auto":
        kind = "flat" if n_entries <= FLAT_MAX_ENTRIES else "hnsw" if n_entries <= HNSW_MAX_ENTRIES else "ivfpq"

    # entry 2i is fragment i's forward strand, 2i + 1 its reverse complement
    vectors = np.zeros((n_entries, encoder.embed_dim), dtype=np.float32)
    started = time.time()
    bar = Progress(n_frag, desc="align index", unit="frag", mode=progress)
    chunk = max(1, batch_size * 8)
    for first in range(0, n_frag, chunk):
        rows = range(first, min(first + chunk, n_frag))
        seqs = []
        for i in rows:
            fwd = ref.ids[frag_contig[i]][frag_start[i]:frag_end[i]]
            seqs += [fwd, tok.reverse_complement(fwd)]
        vectors[2 * first: 2 * first + len(seqs)] = encoder.embed(seqs, batch_size=batch_size, device=dev)
        bar.update(len(rows))
    bar.close()
    embed_seconds = time.time() - started
    faiss_index = _build_faiss(kind, vectors)

    with atomic_directory(out_dir) as tmp_dir:
        faiss.write_index(faiss_index, str(tmp_dir / FAISS_FILE))
        np.savez(tmp_dir / FRAGMENTS_FILE, contig=frag_contig, start=frag_start, end=frag_end)
        encoder.cpu().save_pretrained(tmp_dir / MODEL_SUBDIR)
        manifest = {
            "format": INDEX_FORMAT,
            "format_version": INDEX_FORMAT_VERSION,
            "genoseq_version": genoseq.__version__,
            "model_source": str(Path(model).resolve()),
            "reference": ref.paths,
            "contigs": [{"name": n, "length": len(x), "md5": h} for n, x, h in zip(ref.names, ref.ids, ref.md5)],
            "fragment_length": fragment_length,
            "overlap": overlap,
            "strands": "both (entry 2i forward, 2i+1 reverse complement of fragment i)",
            "n_fragments": n_frag,
            "n_entries": n_entries,
            "embed_dim": encoder.embed_dim,
            "index_type": kind,
            "metric": "inner_product (cosine: vectors are unit norm)",
            "embed_seconds": round(embed_seconds, 1),
        }
        (tmp_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"genoseq align index: {n_frag} fragments x 2 strands ({kind}) in {embed_seconds:.0f} s -> {out_dir}",
          file=sys.stderr)
    return manifest


def _build_faiss(kind: str, vectors: np.ndarray):
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


@dataclass
class AlignIndex:
    """A loaded index folder: manifest, faiss index, fragment coordinates, encoder."""

    path: Path
    manifest: dict
    faiss: object
    contig: np.ndarray
    start: np.ndarray
    end: np.ndarray
    encoder: object

    @property
    def contig_names(self) -> list[str]:
        return [c["name"] for c in self.manifest["contigs"]]


def load_index(path: str | os.PathLike, map_location: str = "cpu") -> AlignIndex:
    """Open an index folder written by :func:`index` (no pickle: JSON, npz arrays, faiss, safetensors)."""
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


# ============================================================================ map
_WORKER: dict = {}  # the Aligner, in map_reads' worker processes


def _init_worker(aligner: "Aligner") -> None:
    import faiss
    import torch

    torch.set_num_threads(1)  # one worker process per core: more threads would oversubscribe them
    faiss.omp_set_num_threads(1)
    _WORKER["aligner"] = aligner


def _map_in_worker(job: tuple[list, list]) -> tuple[list["AlignedRead"], int, dict]:
    return _WORKER["aligner"].map_batch(*job)


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


def iter_reads(path: str | os.PathLike) -> Iterator[tuple[str, str, str | None]]:
    """``(name, sequence, quality or None)`` from FASTQ or FASTA (plain or gzip), by content."""
    from genoseq.fasta import open_text

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    with open_text(path) as handle:
        first = handle.read(1)
    if first == ">":
        from genoseq.fasta import iter_fasta

        for rec in iter_fasta(path):
            yield rec.name, rec.sequence, None
    else:
        from genoseq.fastq import iter_fastq

        for rec in iter_fastq(path):
            yield rec.name, rec.sequence, rec.quality


def count_reads(path: str | os.PathLike) -> int:
    """Records in a FASTQ (four lines each) or FASTA file: one quick pass, for the progress ETA."""
    from genoseq.fasta import open_text

    with open_text(Path(path)) as handle:
        if handle.read(1) == ">":
            return 1 + sum(1 for line in handle if line.startswith(">"))
        return sum(1 for line in handle if line.strip()) // 4


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
    reference: Reference
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
        ref = load_reference(reference or idx.manifest["reference"])
        _check_reference(idx, ref)
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
        for batch in _batches(reads, self.batch_size):
            out += self.map_batch(batch)[0]
        return out


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def map_reads(
    index: str,
    reads: str,
    out: str,
    reference: list[str] | str | None = None,
    top_k: int = 8,
    rescue_k: int = 64,
    flank: int | None = None,
    max_error_rate: float = 0.1,
    extended_cigar: bool = True,
    batch_size: int = 1024,
    threads: int = 1,
    device: str = "auto",
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Map reads: embed, search the top-k fragments, align with edlib, write SAM/BAM.

    Args:
        index: Index folder from ``genoseq align index``.
        reads: Reads as FASTQ or FASTA (plain or gzip).
        out: Output ``.sam`` or ``.bam`` (BAM is coordinate-sorted and indexed).
        reference: The reference FASTA(s) if they moved since indexing (checked by checksum).
        top_k: Fragments retrieved per read (both strands count separately).
        rescue_k: Reads with no alignment among their ``top_k`` candidates are searched again
            this deep (0 turns the second search off).
        flank: Bases added on each side of a retrieved fragment before aligning (default: half
            the fragment length).
        max_error_rate: Reads whose best alignment has more edits than this fraction of their
            length are written unmapped.
        extended_cigar: Write ``=``/``X`` (else ``M``) in CIGARs.
        batch_size: Reads per embedding and search batch.
        threads: Processes for alignment (and torch/faiss threads).
        device: ``auto``, ``cpu``, ``cuda``... for the encoder.
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.
    """
    import multiprocessing as mp

    import faiss
    import pysam
    import torch

    import genoseq
    from genoseq.progress import Progress, resolve_progress
    from genoseq.runtime import atomic_path

    out_path = Path(out)
    as_bam = out_path.suffix == ".bam"
    if out_path.suffix not in (".sam", ".bam"):
        raise InputError("output must end in .sam or .bam", path=str(out_path))
    if threads < 1:
        raise InputError(f"need threads >= 1, got {threads}")
    check_map_options(top_k, flank, max_error_rate, batch_size, rescue_k)
    if not Path(reads).exists():
        raise FileNotFoundError(2, "No such file or directory", str(reads))
    aligner = Aligner.open(index, reference, device=device, top_k=top_k, rescue_k=rescue_k, flank=flank,
                           max_error_rate=max_error_rate, extended_cigar=extended_cigar, batch_size=batch_size)
    torch.set_num_threads(1)  # threads > 1: this process reads and writes, the workers map
    faiss.omp_set_num_threads(1)
    header = aligner.sam_header(f"genoseq align map --index {index} --reads {reads} --out {out} --top_k {top_k} "
                                f"--rescue_k {rescue_k}")
    pool = None
    if threads > 1:  # fork before torch runs anything, with the index and reference shared copy-on-write
        pool = mp.get_context("fork").Pool(threads, initializer=_init_worker, initargs=(aligner,))

    counts = {"reads": 0, "mapped": 0, "unmapped": 0, "mapq0": 0, "reverse": 0, "rescued": 0}
    timing = {"embed_s": 0.0, "search_s": 0.0}
    # tokenised here, so that a bad read stops the run with its name and file
    jobs = ((batch, aligner.encode(batch, path=str(reads))) for batch in _batches(iter_reads(reads), batch_size))

    started = time.time()
    total = count_reads(reads) if resolve_progress(progress) != "none" else None
    bar = Progress(total, desc="align map", unit="read", mode=progress)
    with atomic_path(out_path) as tmp:
        unsorted = tmp.with_name(tmp.name + ".unsorted.bam") if as_bam else tmp
        with pysam.AlignmentFile(str(unsorted), "wb" if as_bam else "wh", header=header) as writer:
            try:
                for records, rescued, seconds in _in_order(pool, jobs, window=2 * threads, run=aligner.map_batch):
                    counts["rescued"] += rescued
                    for key in timing:
                        timing[key] += seconds[key]
                    for rec in records:
                        _tally(counts, rec)
                        writer.write(rec.to_segment(writer.header))
                    bar.update(len(records))
            finally:
                if pool is not None:
                    pool.terminate()
                bar.close()
        if as_bam:
            pysam.sort("-o", str(tmp), str(unsorted))
            os.unlink(unsorted)
    if as_bam:
        pysam.index(str(out_path))
    seconds = time.time() - started
    summary = {
        "genoseq_version": genoseq.__version__,
        "index": str(index), "reads_file": str(reads), "out": str(out_path),
        **counts,
        "seconds": round(seconds, 2),
        "reads_per_s": round(counts["reads"] / seconds, 1) if seconds > 0 else None,
        "embed_seconds": round(timing["embed_s"], 2),  # summed over the worker processes
        "search_seconds": round(timing["search_s"], 2),
        "top_k": top_k, "rescue_k": rescue_k, "flank": aligner.flank, "max_error_rate": max_error_rate, "threads": threads,
    }
    with open(str(out_path) + ".json", "w") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")
    print(f"genoseq align map: {counts['reads']} reads, {counts['mapped']} mapped, in {seconds:.1f} s "
          f"({summary['reads_per_s']} reads/s) -> {out_path}", file=sys.stderr)
    return summary


def _in_order(pool, jobs: Iterator[tuple], window: int, run) -> Iterator[tuple]:
    """Map batches in the pool's workers (or with ``run`` here, without a pool), at most
    ``window`` in flight, while this process reads the next ones and writes the results; results
    in input order."""
    if pool is None:
        for job in jobs:
            yield run(*job)
        return
    pending = []
    for job in jobs:
        pending.append(pool.apply_async(_map_in_worker, (job,)))
        while len(pending) > window:
            yield pending.pop(0).get()
    for job in pending:
        yield job.get()


def _tally(counts: dict, rec: AlignedRead) -> None:
    counts["reads"] += 1
    if not rec.mapped:
        counts["unmapped"] += 1
        return
    counts["mapped"] += 1
    counts["reverse"] += rec.reverse
    counts["mapq0"] += rec.mapq == 0


def _check_reference(idx: AlignIndex, ref: Reference) -> None:
    expected = {c["name"]: c["md5"] for c in idx.manifest["contigs"]}
    found = dict(zip(ref.names, ref.md5))
    if expected != found:
        differ = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise InputError(f"the reference does not match the one indexed (contig name/MD5 differ: {differ})",
                         path=", ".join(ref.paths))


# ============================================================================ evaluation
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


def read_outcomes(path: str | os.PathLike, tolerance: int = 10) -> Iterator[tuple[str, bool | None, int]]:
    """``(read name without /1 or /2, correct, MAPQ)`` of every primary record; ``correct`` is
    None for an unmapped read. A read is correct when contig and strand match and its leftmost
    reference position with the leading soft clip added back (``POS - S``) is within
    ``tolerance`` bases of POS1. Secondary and supplementary records are skipped."""
    import pysam

    from genoseq import sam

    with pysam.AlignmentFile(str(path), "r", check_sq=False) as fh:
        contigs = list(fh.references)
        for rec in fh:
            if rec.is_secondary or rec.is_supplementary:
                continue
            name = re.sub(r"/[12]$", "", rec.query_name)
            if rec.is_unmapped:
                yield name, None, 0
                continue
            truth = parse_truth(rec.query_name, contigs)
            left = rec.reference_start + 1 - sam.leading_soft_clip(rec.cigartuples or [])
            ok = (rec.reference_name == truth.contig and rec.is_reverse == truth.reverse
                  and abs(left - truth.pos1) <= tolerance)
            yield name, ok, rec.mapping_quality


def evaluate_sam(path: str | os.PathLike, tolerance: int = 10) -> dict:
    """Score primary alignments against the truth in their read names (:func:`read_outcomes`).

    Returns counts, the correct fraction of all reads, precision among mapped reads, and the
    correct fraction at MAPQ >= 20.
    """
    reads = mapped = correct = confident = confident_correct = 0
    for _, ok, mapq in read_outcomes(path, tolerance):
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


def compare_sams(ours: str | os.PathLike, theirs: str | os.PathLike, tolerance: int = 10) -> dict:
    """Where two mappings of the same reads disagree: the reads only ``ours`` places correctly,
    those only ``theirs`` does, and how many of each both mappings gave MAPQ 0 (a tie between
    copies of a repeat, where either choice is a guess)."""
    a = {name: (ok, mapq) for name, ok, mapq in read_outcomes(ours, tolerance)}
    b = {name: (ok, mapq) for name, ok, mapq in read_outcomes(theirs, tolerance)}
    if a.keys() != b.keys():
        raise InputError(f"the two SAMs hold different reads ({len(a.keys() ^ b.keys())} differ)", path=str(theirs))
    only_a = [n for n in a if a[n][0] and not b[n][0]]
    only_b = [n for n in a if b[n][0] and not a[n][0]]
    return {
        "only_ours_correct": len(only_a),
        "only_ours_correct_mapq0_in_both": sum(a[n][1] == 0 and b[n][1] == 0 for n in only_a),
        "only_theirs_correct": len(only_b),
        "only_theirs_correct_mapq0_in_both": sum(a[n][1] == 0 and b[n][1] == 0 for n in only_b),
    }


def search_recall(index_dir: str | os.PathLike | AlignIndex, reads: str | os.PathLike, ks: tuple[int, ...] = (1, 5, 20),
                  batch_size: int = 1024, limit: int | None = None) -> dict:
    """Recall@k of the vector search alone: the share of reads whose true fragment (same contig
    and strand, overlapping the read's true span by at least half the read) is in the top k."""
    idx = index_dir if isinstance(index_dir, AlignIndex) else load_index(index_dir)
    from genoseq.tokenizer import Tokenizer

    tok = Tokenizer()
    names = idx.contig_names
    records = []
    for i, rec in enumerate(iter_reads(reads)):
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
            truth = parse_truth(name, names)
            t0 = truth.pos1 - 1
            t1 = t0 + len(seq)
            good = np.zeros(kmax, dtype=bool)
            valid = row >= 0
            frag, strand = np.divmod(row[valid], 2)
            overlap = np.minimum(idx.end[frag], t1) - np.maximum(idx.start[frag], t0)
            good[valid] = ((idx.contig[frag] == names.index(truth.contig)) & (strand == int(truth.reverse))
                           & (overlap >= len(seq) / 2))
            for k in ks:
                hits[k] += bool(good[:k].any())
    return {f"recall@{k}": round(hits[k] / len(records), 5) if records else None for k in ks} | {"reads": len(records)}


# ============================================================================ helpers
def _coerce(cls, value):
    from dataclasses import replace

    if isinstance(value, cls):
        return replace(value)
    if isinstance(value, dict):
        return cls(**value)
    raise TypeError(f"expected {cls.__name__} or a dict, got {type(value).__name__}")
