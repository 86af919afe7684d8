"""``genoseq align train | index | map``: read mapping by embedding search (Embed-Search-Align).

The jobs read files, call :mod:`genoseq.tasks.align` and write files and reports:

- ``train``: InfoNCE with in-batch negatives on ``(fragment, read)`` pairs simulated on the fly
  from the reference (:mod:`genoseq.tasks.align.simulate`). Writes ``OUT/`` (released encoder,
  ``metrics.json``, ``metrics.csv``).
- ``index``: embeds both strands of overlapping fragments of every contig and stores the index
  folder (:func:`genoseq.tasks.align.build_index`, :func:`~genoseq.tasks.align.write_index`).
- ``map``: reads FASTQ/FASTA in batches, maps them with :class:`genoseq.tasks.align.Aligner`
  over a process pool, and writes SAM or sorted+indexed BAM through pysam.

:func:`evaluate_sam`, :func:`compare_sams` and :func:`search_recall` score a SAM file or a
reads file against the truth written in simulated read names
(:mod:`genoseq.tasks.align.evaluate`); tests and ``benchmarks/bench_align.py`` use them.

Only numpy and the light genoseq modules are imported at module level (the CLI builds its
parser from these signatures); torch, faiss, edlib and pysam load inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Literal

from genoseq.errors import InputError
from genoseq.genome import MemoryGenome
from genoseq.models.config import ModelConfig, OptimConfig
from genoseq.pipelines.training import TrainerConfig, coerce, make_trainer
from genoseq.progress import ProgressChoice
from genoseq.runtime import LoggerChoice, require_file
from genoseq.tasks.align import (MANIFEST_FILE, AlignedRead, AlignIndex, Aligner, batches, build_index,
                                 check_map_options, index_geometry, load_index, write_index)
from genoseq.tasks.align import evaluate as evaluation
from genoseq.tasks.align.simulate import ErrorProfile, FragmentReadDataset, collate_pairs

DEFAULT_KMER = 6  # k of the default encoder, a k-mer embedding bag


def _default_encoder_backbone() -> ModelConfig:
    """Two small Hyena blocks: fast on a CPU (~300k tokens/s forward on two cores)."""
    return ModelConfig(d_model=32, pattern="HH", n_heads=4, hyena_filter_len=256, mlp_ratio=4.0)


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
    checkpoint_every: int = 100,
    resume: bool = False,
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
        overwrite: Replace an existing encoder in ``out``; start an interrupted run again (its
            checkpoint is deleted) instead of refusing.
        convert_gzip: Convert plain-gzip FASTA inputs to bgzip instead of refusing them.
        checkpoint_every: Steps between saves of ``<out>.checkpoints/last.ckpt``, the state
            ``--resume`` continues from (removed when the run ends).
        resume: Continue an interrupted run from ``<out>.checkpoints/last.ckpt``; give the same
            options again. The encoder at the end is that of an uninterrupted run.
    """
    # Long only for its signature and Args, which jsonargparse turns into `align train`'s options and help.
    model = coerce(ModelConfig, model)
    out_dir = Path(out)
    kmer, batch_size = _train_choices(init, kmer, model, batch_size, steps, read_length, out_dir, overwrite,
                                      checkpoint_every, resume)

    import lightning as L
    import torch

    from genoseq.models.resume import checkpoint_dir
    from genoseq.runtime import atomic_output

    if threads:
        torch.set_num_threads(threads)
    encoder_cfg, profile = _encoder_options(embed_dim, head_hidden, temperature, fragment_length, read_length, kmer,
                                            substitution_rate, insertion_rate, deletion_rate)
    genome = MemoryGenome.from_files(reference, convert_gzip=convert_gzip)
    optim = OptimConfig(lr=lr, warmup_steps=min(warmup_steps, max(0, steps - 1)), total_steps=steps, weight_decay=0.01)
    L.seed_everything(seed, workers=True, verbose=False)
    encoder = _new_encoder(init, kmer, model, encoder_cfg, optim)

    contigs = genome.as_dict()
    train_set = FragmentReadDataset(contigs, steps * batch_size, fragment_length, read_length, profile, seed=seed)
    val_set = FragmentReadDataset(contigs, val_pairs, fragment_length, read_length, profile, seed=seed + 1_000_003)
    config = TrainerConfig(max_steps=steps, max_time=max_time, val_check_interval=None, limit_val_batches=0,
                           accelerator=accelerator, devices=1, log_every_n_steps=10)
    trainer, seconds = _fit_encoder(encoder, train_set, batch_size, config, out_dir, progress, logger,
                                    checkpoint_every, resume)

    encoder.eval()
    val_top1 = evaluation.held_out_top1(encoder, val_set, group=256)
    encoder.save_pretrained(out_dir)
    metrics = _train_metrics(trainer, encoder, genome, init, batch_size, seconds, val_top1, profile)
    with atomic_output(out_dir / "metrics.json") as fh:
        json.dump(metrics, fh, indent=2)
        fh.write("\n")
    shutil.rmtree(checkpoint_dir(out_dir), ignore_errors=True)  # the run is complete: nothing left to resume
    print(f"genoseq align train: {metrics['steps']} steps in {seconds:.0f} s; held-out top-1 of 256 "
          f"{val_top1:.3f}; encoder in {out_dir}", file=sys.stderr)
    return metrics


def _train_choices(init: str | None, kmer: int | None, model: ModelConfig, batch_size: int | None, steps: int,
                   read_length: int, out_dir: Path, overwrite: bool, checkpoint_every: int,
                   resume: bool) -> tuple[int, int]:
    """``kmer`` and ``batch_size`` with their defaults filled in; InputError on options that
    contradict each other, FileExistsError on an encoder already in ``out_dir``; the resume
    checkpoint checked (:func:`genoseq.models.resume.check_resume`)."""
    from genoseq.models.resume import check_resume

    if kmer is None:
        kmer = 0 if init else DEFAULT_KMER
    if init and kmer:
        raise InputError(f"--init starts a sequence-model encoder from a language model; it needs --kmer 0, got {kmer}")
    if kmer and model != _default_encoder_backbone():
        raise InputError(f"--model sets the backbone of a sequence-model encoder; pass --kmer 0 with it (got --kmer {kmer})")
    if batch_size is None:
        batch_size = 1024 if kmer else 64
    if (out_dir / "config.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds an encoder; pass --overwrite to replace it")
    check_resume(out_dir, resume, overwrite=overwrite)
    for name, value in (("steps", steps), ("batch_size", batch_size), ("read_length", read_length),
                        ("checkpoint_every", checkpoint_every)):
        if value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    if batch_size < 2:
        raise InputError("batch_size must be >= 2 (the other fragments of a batch are the negatives)")
    return kmer, batch_size


def _encoder_options(embed_dim: int, head_hidden: int, temperature: float, fragment_length: int, read_length: int,
                     kmer: int, substitution_rate: float, insertion_rate: float, deletion_rate: float) -> tuple:
    """The encoder's configuration and the simulated reads' error profile, checked (kmer range,
    sizes, lengths, rates) before the genome is read."""
    from genoseq.models.read_encoder import EncoderConfig

    try:
        encoder_cfg = EncoderConfig(embed_dim=embed_dim, head_hidden=head_hidden, temperature=temperature,
                                    fragment_length=fragment_length, read_length=read_length, kmer=kmer)
        profile = ErrorProfile(substitution_rate, insertion_rate, deletion_rate)
    except ValueError as err:
        raise InputError(str(err)) from None
    return encoder_cfg, profile


def _new_encoder(init: str | None, kmer: int, model: ModelConfig, encoder_cfg, optim: OptimConfig):
    """A k-mer bag (``kmer`` > 0), a sequence model on ``model``, or one on the backbone of the
    language model in ``init``."""
    from genoseq.models.read_encoder import ReadEncoder

    if init:
        from genoseq.models.lm import GenoSeqLM

        return ReadEncoder.from_lm(GenoSeqLM.from_pretrained(init), encoder=encoder_cfg, optim=optim)
    return ReadEncoder(None if kmer else model, encoder=encoder_cfg, optim=optim)


def _fit_encoder(encoder, train_set, batch_size: int, config: TrainerConfig, out_dir: Path, progress, logger,
                 checkpoint_every: int, resume: bool):
    """One epoch over ``train_set`` (steps x batch size pairs, in order), with ``last.ckpt`` in
    ``<out>.checkpoints`` every ``checkpoint_every`` steps (data position and random state
    included), from which ``resume`` continues: the trainer and the seconds it took (this leg's)."""
    from genoseq.datamodules import InOrderDataModule
    from genoseq.models.read_encoder_training import ReadEncoderTraining
    from genoseq.models.resume import LAST, RandomState, checkpoint_dir, last_checkpoint
    from genoseq.runtime import quiet_lightning

    folder = checkpoint_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = make_trainer(config, job="align train", root_dir=out_dir, logger=logger, progress=progress, max_epochs=1,
                           callbacks=[RandomState(), last_checkpoint(folder, every_n_train_steps=checkpoint_every)],
                           resume_hint=f"run the same command with --resume true (from {folder})")
    started = time.time()
    with quiet_lightning():
        trainer.fit(ReadEncoderTraining(encoder), datamodule=InOrderDataModule(train_set, batch_size, collate_pairs),
                    ckpt_path=str(folder / LAST) if resume else None)
    return trainer, time.time() - started


def _train_metrics(trainer, encoder, genome: MemoryGenome, init: str | None, batch_size: int, seconds: float,
                   val_top1: float, profile: ErrorProfile) -> dict:
    """``metrics.json`` of a trained encoder."""
    import genoseq

    train_loss = trainer.callback_metrics.get("train/loss")
    return {
        "genoseq_version": genoseq.__version__,
        "reference": genome.sources,
        "init": init,
        "steps": int(trainer.global_step),
        "batch_size": batch_size,
        "train_seconds": round(seconds, 1),
        "final_train_loss": None if train_loss is None else round(float(train_loss), 4),
        "val_top1_of_256": val_top1,
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "encoder": encoder.encoder_config.to_dict(),
        "error_profile": {"substitution": profile.substitution, "insertion": profile.insertion,
                          "deletion": profile.deletion},
    }


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

    from genoseq.models.read_encoder import ReadEncoder
    from genoseq.progress import Progress
    from genoseq.runtime import resolve_device

    out_dir = Path(out)
    if (out_dir / MANIFEST_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds an index; pass --overwrite to replace it")
    if threads:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    dev = resolve_device(device)
    encoder = ReadEncoder.from_pretrained(model, map_location=dev)
    fragment_length, overlap = index_geometry(encoder, fragment_length, overlap)
    genome = MemoryGenome.from_files(reference, convert_gzip=convert_gzip)
    idx = build_index(encoder, genome, fragment_length, overlap, index_type, batch_size=batch_size, device=dev,
                      model_source=str(Path(model).resolve()),
                      progress=lambda total: Progress(total, desc="align index", unit="frag", mode=progress))
    write_index(idx, out_dir)
    manifest = idx.manifest
    print(f"genoseq align index: {manifest['n_fragments']} fragments x 2 strands ({manifest['index_type']}) in "
          f"{manifest['embed_seconds']:.0f} s -> {out_dir}", file=sys.stderr)
    return manifest


# ============================================================================ map
_WORKER: dict = {}  # the Aligner, in map_reads' worker processes


def _init_worker(aligner: Aligner) -> None:
    import faiss
    import torch

    torch.set_num_threads(1)  # one worker process per core: more threads would oversubscribe them
    faiss.omp_set_num_threads(1)
    _WORKER["aligner"] = aligner


def _map_in_worker(job: tuple[list, list]) -> tuple[list[AlignedRead], int, dict]:
    return _WORKER["aligner"].map_batch(*job)


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
    import torch

    import genoseq
    from genoseq.progress import Progress, resolve_progress

    out_path = Path(out)
    _check_map_job(out_path, reads, threads, top_k, flank, max_error_rate, batch_size, rescue_k)
    aligner = Aligner.open(index, reference, device=device, top_k=top_k, rescue_k=rescue_k, flank=flank,
                           max_error_rate=max_error_rate, extended_cigar=extended_cigar, batch_size=batch_size)
    torch.set_num_threads(1)  # threads > 1: this process reads and writes, the workers map
    faiss.omp_set_num_threads(1)
    header = aligner.sam_header(f"genoseq align map --index {index} --reads {reads} --out {out} --top_k {top_k} "
                                f"--rescue_k {rescue_k}")
    pool = None
    if threads > 1:  # fork before torch runs anything, with the index and reference shared copy-on-write
        pool = mp.get_context("fork").Pool(threads, initializer=_init_worker, initargs=(aligner,))
    # tokenised here, so that a bad read stops the run with its name and file
    jobs = ((batch, aligner.encode(batch, path=str(reads))) for batch in batches(iter_reads(reads), batch_size))

    started = time.time()
    total = count_reads(reads) if resolve_progress(progress) != "none" else None
    bar = Progress(total, desc="align map", unit="read", mode=progress)
    results = _in_order(pool, jobs, window=2 * threads, run=aligner.map_batch)
    counts, timing = _write_records(results, out_path, header, pool, bar)
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


def _check_map_job(out_path: Path, reads: str, threads: int, top_k: int, flank: int | None, max_error_rate: float,
                   batch_size: int, rescue_k: int) -> None:
    """InputError on an output that is neither .sam nor .bam, on threads < 1 or on mapping
    options that make no sense; FileNotFoundError without the reads."""
    if out_path.suffix not in (".sam", ".bam"):
        raise InputError("output must end in .sam or .bam", path=str(out_path))
    if threads < 1:
        raise InputError(f"need threads >= 1, got {threads}")
    check_map_options(top_k, flank, max_error_rate, batch_size, rescue_k)
    require_file(reads)


def _write_records(results: Iterable[tuple], out_path: Path, header: dict, pool, bar) -> tuple[dict, dict]:
    """Write mapped batches in order as SAM, or as BAM sorted and indexed; returns the record
    counts and the embedding and search seconds summed over the batches. Stops the pool and
    closes the progress bar whatever happens."""
    import pysam

    from genoseq.runtime import atomic_path

    as_bam = out_path.suffix == ".bam"
    counts = {"reads": 0, "mapped": 0, "unmapped": 0, "mapq0": 0, "reverse": 0, "rescued": 0}
    timing = {"embed_s": 0.0, "search_s": 0.0}
    with atomic_path(out_path) as tmp:
        unsorted = tmp.with_name(tmp.name + ".unsorted.bam") if as_bam else tmp
        with pysam.AlignmentFile(str(unsorted), "wb" if as_bam else "wh", header=header) as writer:
            try:
                for records, rescued, seconds in results:
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
    return counts, timing


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


# ============================================================================ read files
def iter_reads(path: str | os.PathLike) -> Iterator[tuple[str, str, str | None]]:
    """``(name, sequence, quality or None)`` from FASTQ or FASTA (plain or gzip), by content."""
    from genoseq.fasta import is_fasta

    path = require_file(path)
    if is_fasta(path):
        from genoseq.fasta import iter_fasta

        for rec in iter_fasta(path):
            yield rec.name, rec.sequence, None
    else:
        from genoseq.fastq import iter_fastq

        for rec in iter_fastq(path):
            yield rec.name, rec.sequence, rec.quality


def count_reads(path: str | os.PathLike) -> int:
    """Records in a FASTQ (four lines each) or FASTA file: one quick pass, for the progress ETA."""
    from genoseq.fasta import is_fasta, open_text

    fasta = is_fasta(path)
    with open_text(Path(path)) as handle:
        if fasta:
            return sum(1 for line in handle if line.startswith(">"))
        return sum(1 for line in handle if line.strip()) // 4


# ============================================================================ evaluation
def read_outcomes(path: str | os.PathLike, tolerance: int = 10) -> Iterator[evaluation.Outcome]:
    """``(read name without /1 or /2, correct, MAPQ)`` of every primary record of a SAM/BAM file
    (:func:`genoseq.tasks.align.read_outcome`); ``correct`` is None for an unmapped read.
    Secondary and supplementary records are skipped."""
    import pysam

    with pysam.AlignmentFile(str(path), "r", check_sq=False) as fh:
        contigs = list(fh.references)
        for rec in fh:
            if rec.is_secondary or rec.is_supplementary:
                continue
            yield evaluation.read_outcome(rec.query_name, not rec.is_unmapped, rec.reference_name, rec.is_reverse,
                                          rec.reference_start, rec.cigartuples, rec.mapping_quality, contigs,
                                          tolerance)


def evaluate_sam(path: str | os.PathLike, tolerance: int = 10) -> dict:
    """Score a SAM/BAM file's primary alignments against the truth in their read names
    (:func:`read_outcomes`, :func:`genoseq.tasks.align.score_outcomes`): counts, the correct
    fraction of all reads, precision among mapped reads, and the correct fraction at MAPQ >= 20.
    """
    return evaluation.score_outcomes(read_outcomes(path, tolerance))


def compare_sams(ours: str | os.PathLike, theirs: str | os.PathLike, tolerance: int = 10) -> dict:
    """Where two SAM/BAM mappings of the same reads disagree (:func:`genoseq.tasks.align.compare_outcomes`)."""
    return evaluation.compare_outcomes(read_outcomes(ours, tolerance), read_outcomes(theirs, tolerance),
                                       source=str(theirs))


def search_recall(index_dir: str | os.PathLike | AlignIndex, reads: str | os.PathLike, ks: tuple[int, ...] = (1, 5, 20),
                  batch_size: int = 1024, limit: int | None = None) -> dict:
    """Recall@k of the vector search alone on a reads file (:func:`genoseq.tasks.align.search_recall`)."""
    idx = index_dir if isinstance(index_dir, AlignIndex) else load_index(index_dir)
    return evaluation.search_recall(idx, iter_reads(reads), ks, batch_size=batch_size, limit=limit)
