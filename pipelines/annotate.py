"""``genoseq annotate fit | predict | evaluate``: per-base genome annotation on a DNA language model.

* ``fit`` trains a :class:`genoseq.models.segmenter.Segmenter` from a genome and its annotation
  (GFF3 with or without ``##FASTA``, GenBank, BED): ``--method probe`` (default; frozen
  backbone, features computed once, the head trained over them: the CPU choice) or
  ``--method finetune`` (backbone and head with Lightning on
  :class:`~genoseq.datamodules.intervals.IntervalDataModule` windows: for GPUs). Whole contigs
  can be held out (``--holdout c1,c2`` or ``--holdout 0.2``: random contigs, seeded, until at
  least that share of the bases); validation is the last ``val_fraction`` of every 100 kb
  block of the other contigs. Writes the segmenter folder and ``training.json``.
* ``predict`` writes GFF3 features with scores (``X.gff3``) and per-base probability tracks
  of one class per strand (``X.plus.bedgraph``, ``X.minus.bedgraph``; ``--bigwig true`` adds
  bigWig copies), every file through a temporary name: a failed run leaves none.
* ``evaluate`` labels the held-out contigs (or ``--contigs``) and writes ``metrics.json``:
  per-base precision/recall/F1/MCC, gene start/stop exact matches, RNA recall.

Nothing heavy is imported at module level, so building the CLI parser stays fast.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Literal

from genoseq.errors import InputError
from genoseq.progress import ProgressChoice

TRAINING_FILE = "training.json"


def fit(
    model: str,
    annotation: str,
    out: str,
    genome: str | None = None,
    holdout: str | None = None,
    val_fraction: float = 0.1,
    class_map: str | None = None,
    method: Literal["probe", "finetune"] = "probe",
    layer: int | None = None,
    window: int | None = None,
    context: int | None = None,
    hidden: int = 64,
    kernel_size: int = 5,
    epochs: int = 8,
    patience: int = 2,
    crop: int = 2048,
    batch_size: int = 8,
    lr: float | None = None,
    max_train_bases: int | None = None,
    class_weight_power: float = 0.5,
    accelerator: str = "auto",
    precision: str | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool | ProgressChoice = "auto",
    resume: bool = False,
) -> dict:
    """Train a per-base annotator (segmenter) on a language model, a genome and its annotation.

    Classes per strand: intergenic, CDS codon position 1/2/3, tRNA, rRNA, other RNA (and any
    class ``--class_map`` maps a type to); where features of different classes overlap on a
    strand the later class wins (RNA over CDS; see ``genoseq.annotation``).

    Args:
        model: Released language model folder (the backbone).
        annotation: GFF3 (plain/gzip; a ``##FASTA`` section serves as the genome), GenBank or BED.
        out: Segmenter folder to write.
        genome: FASTA or token store (default: the annotation's own sequences).
        holdout: Contigs left out of training and validation: comma-separated names, or a share
            of the bases (e.g. 0.2: random contigs drawn with ``seed``); ``genoseq annotate
            evaluate`` scores them.
        val_fraction: Share of every 100 kb block of the other contigs used for validation.
        class_map: Feature type -> class changes, ``type=class,...`` (``type=-`` ignores a type).
        method: ``probe`` (frozen backbone; fast on CPU) or ``finetune`` (backbone too; GPU).
        layer: Backbone layer (null: the final normed output).
        window: Bases per backbone pass (default: the model's training window).
        context: Bases of context before each kept part of a window (default as ``genoseq score``).
        hidden: Channels of the head's dilated convolutions.
        kernel_size: Their kernel size (odd).
        epochs: Most epochs over the training bases.
        patience: Epochs without a lower validation loss before stopping.
        crop: Bases per training example (probe) or window (fine-tuning: ``window``).
        batch_size: Examples per step (and windows per backbone pass).
        lr: Peak learning rate (default 2e-3 probe, 3e-4 fine-tuning).
        max_train_bases: Use at most this many training bases (random whole regions, seeded).
        class_weight_power: Loss weight of a class = frequency^-power (0: unweighted), so rare
            classes (tRNA, rRNA) are learnt.
        accelerator: Lightning accelerator for fine-tuning.
        precision: Lightning precision for fine-tuning.
        device: Device for the probe: ``auto``, ``cpu``, ``cuda:1``...
        seed: Seed for the holdout draw, initialisation, crops and order.
        progress: ``auto``, ``bar``, ``lines`` or ``none``.
        resume: ``finetune``: continue an interrupted run from ``<out>.checkpoints/last.ckpt``
            (written after every epoch, removed when the run ends), with the same options; the
            weights at the end are those of an uninterrupted run.

    Returns:
        The training summary also written to ``<out>/training.json``.
    """
    # Over 80 lines for its signature and Args, which are the command's options and help.
    import torch

    from genoseq.annotation import read_annotated_genome
    from genoseq.datamodules.intervals import IntervalDataModule
    from genoseq.models import GenoSeqLM
    from genoseq.models.inference import scoring_window
    from genoseq.models.resume import check_resume, checkpoint_dir
    from genoseq.models.segmenter import Segmenter
    from genoseq.runtime import atomic_directory, resolve_device, write_json
    from genoseq.tasks.genome_annotation import choose_holdout

    check_resume(out, resume, trains=method == "finetune")
    started = time.perf_counter()
    torch.manual_seed(seed)
    ann, gen = read_annotated_genome(annotation, genome)
    lm = GenoSeqLM.from_pretrained(model)
    window, context = scoring_window(lm, window, context)
    context = min(context, window // 2 - 1)
    held = choose_holdout(gen.contigs, holdout, seed)
    dm = IntervalDataModule(gen, annotation=ann, target="segmentation", class_map=class_map, window_length=window,
                            test_contigs=held, val_fraction=val_fraction, batch_size=batch_size, seed=seed,
                            rc_augment=True, jitter=window // 4)
    dm.setup()
    scheme = dm.scheme
    seg = Segmenter(lm, scheme.classes, scheme.type_map, layer=layer, hidden=hidden, kernel_size=kernel_size,
                    method=method, window=window, context=context, lr=lr or 3e-4)
    summary: dict = {"model": str(model), "annotation": str(annotation), "genome": genome, "method": method,
                     "holdout_contigs": held, "holdout_bases": int(sum(gen.contigs[c] for c in held)),
                     "genome_bases": int(sum(gen.contigs.values())), "classes": list(scheme.classes),
                     "type_map": scheme.type_map, "labels": dm.label_stats.to_dict(), "window": window,
                     "context": context, "seed": seed}
    if method == "probe":
        from genoseq.tasks.genome_annotation import fit_probe

        seg.to(resolve_device(device))
        report = fit_probe(seg, gen, dm.labels, dm.regions["train"], dm.regions["val"], epochs=epochs, patience=patience,
                           crop=crop, batch_size=batch_size, lr=lr or 2e-3, max_train_bases=max_train_bases,
                           weight_power=class_weight_power, seed=seed, progress=progress)
        summary.update(report.to_dict())
    else:
        summary.update(_finetune(seg, dm, epochs=epochs, patience=patience, accelerator=accelerator,
                                 precision=precision, progress=progress, log_dir=out,
                                 weight_power=class_weight_power, resume=resume))
    summary["seconds"] = round(time.perf_counter() - started, 2)
    seg = seg.cpu().eval()
    with atomic_directory(out) as tmp:
        seg.save_pretrained(tmp, training=summary)
        write_json(tmp / TRAINING_FILE, summary)
    shutil.rmtree(checkpoint_dir(out), ignore_errors=True)  # the run is complete: nothing left to resume
    print(f"wrote segmenter {out} ({method}, classes {', '.join(scheme.classes)}; held out {len(held)} contigs, "
          f"best val loss {summary.get('best_val_loss')})", file=sys.stderr)
    return summary


def _finetune(seg, dm, *, epochs, patience, accelerator, precision, progress, log_dir, weight_power, resume) -> dict:
    import tempfile

    import torch

    from genoseq.models.resume import checkpoint_dir
    from genoseq.pipelines.training import TrainerConfig, make_trainer
    from genoseq.tasks.finetune import finetune
    from genoseq.tasks.genome_annotation import label_class_weights

    weights = label_class_weights(dm.labels.values(), seg.num_classes, weight_power)
    seg.class_weights = torch.tensor(weights, dtype=torch.float32)
    config = TrainerConfig(max_steps=-1, val_check_interval=None, accelerator=accelerator, devices=1, precision=precision,
                           log_every_n_steps=None)
    checkpoints = checkpoint_dir(log_dir)
    with tempfile.TemporaryDirectory(prefix="genoseq-annotate-") as work_dir:
        result = finetune(seg, dm, lambda callbacks: make_trainer(
            config, job="annotate fit", root_dir=work_dir, log_dir=log_dir + ".logs", csv_name="logs",
            progress=progress, max_epochs=epochs, callbacks=callbacks,
            resume_hint=f"run the same command with --resume true (from {checkpoints})"),
            monitor="val/loss", patience=patience, validate=len(dm.examples["val"]) > 0,
            checkpoint_dir=checkpoints, resume=resume)
    return {**result.to_dict(), "train_windows": len(dm.examples["train"])}


# ---------------------------------------------------------------------- predict
def _load(segmenter: str, device: str):
    from genoseq.models.segmenter import Segmenter
    from genoseq.runtime import resolve_device

    return Segmenter.from_pretrained(segmenter).to(resolve_device(device)).eval()


def gff3_lines(features, contigs: dict[str, int], source: str = "genoseq") -> list[str]:
    """GFF3 text lines (1-based, with ``##sequence-region`` headers) of predicted features."""
    lines = ["##gff-version 3\n"] + [f"##sequence-region {c} 1 {n}\n" for c, n in contigs.items()]
    counter: dict[str, int] = {}
    for f in features:
        counter[f.contig] = counter.get(f.contig, 0) + 1
        attrs = f"ID={f.contig}_{counter[f.contig]}"
        if getattr(f, "partial", False):
            attrs += ";partial=true"
        score = "." if f.score is None else f"{f.score:.4g}"
        phase = "0" if f.type == "CDS" else "."
        lines.append(f"{f.contig}\t{source}\t{f.type}\t{f.start + 1}\t{f.end}\t{score}\t{f.strand}\t{phase}\t{attrs}\n")
    return lines


def track_class_ids(classes, track: str | None) -> tuple[str, list[int]]:
    """The class a probability track shows (``CDS``: the sum of the codon positions)."""
    from genoseq.annotation import CODON_CLASSES, INTERGENIC

    classes = list(classes)
    if track is None:
        track = "CDS" if CODON_CLASSES[0] in classes else next(c for c in classes if c != INTERGENIC)
    ids = [classes.index(c) for c in CODON_CLASSES if c in classes] if track == "CDS" else (
        [classes.index(track)] if track in classes else [])
    if not ids:
        raise InputError(f"track class {track!r} is not one of {', '.join(classes)}", field="track", kind="unknown_class")
    return track, ids


def predict(
    segmenter: str,
    fasta: str,
    out: str,
    contigs: str | None = None,
    track: str | None = None,
    bigwig: bool = False,
    min_gene_length: int = 90,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Annotate a genome: GFF3 features with scores plus per-strand probability bedGraphs.

    Args:
        segmenter: Folder written by ``genoseq annotate fit``.
        fasta: FASTA (plain/bgzip) or token store to annotate.
        out: GFF3 to write; the tracks go beside it as ``<stem>.plus.bedgraph`` and
            ``<stem>.minus.bedgraph`` (and ``.bw`` with ``--bigwig true``).
        contigs: Comma-separated contigs to annotate (default: all).
        track: Class whose probability the tracks show (default ``CDS``: any codon position).
        bigwig: Also write the tracks as bigWig (pyBigWig).
        min_gene_length: Shortest gene called, in bases (stop codon included).
        batch_size: Windows per backbone pass.
        device: ``auto``, ``cpu``, ``cuda:1``...
        progress: ``auto``, ``bar``, ``lines`` or ``none``.

    Returns:
        A summary: contigs, bases, features per type, output paths.
    """
    import contextlib

    from genoseq.bed import write_bedgraph
    from genoseq.genome import open_genome
    from genoseq.runtime import atomic_output, atomic_outputs, atomic_path, require_file
    from genoseq.tasks.genome_annotation import annotate_genome

    require_file(fasta)
    seg = _load(segmenter, device)
    genome = open_genome(fasta)
    names = [c.strip() for c in contigs.split(",")] if contigs else list(genome.contigs)
    track, ids = track_class_ids(seg.classes, track)
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".gff3", ".gff") else out
    tracks = {s: Path(f"{stem}.{s}.bedgraph") for s in ("plus", "minus")}
    features, counts = [], {}
    values: dict[str, list] = {"plus": [], "minus": []} if bigwig else {}
    with atomic_outputs(), contextlib.ExitStack() as stack:  # the GFF3 and its tracks appear together
        handles = {s: stack.enter_context(atomic_output(p)) for s, p in tracks.items()}
        for s, h in handles.items():
            h.write(f'track type=bedGraph name="P({track}) {s} strand" description="genoseq annotate {Path(segmenter).name}"\n')
        for result in annotate_genome(seg, genome, contigs=names, batch_size=batch_size, progress=progress,
                                      decode_options={"min_gene_length": min_gene_length}):
            for row, s in ((0, "plus"), (1, "minus")):
                p = result.probs[row][:, ids].astype("float32").sum(axis=1)
                write_bedgraph(handles[s], [(result.contig, 0, p)], digits=3)
                if bigwig:
                    values[s].append((result.contig, p))
            features.extend(result.features)
        for f in features:
            counts[f.type] = counts.get(f.type, 0) + 1
        gff = stack.enter_context(atomic_output(out))
        gff.writelines(gff3_lines(features, {n: genome.contigs[n] for n in names}))
        if bigwig:
            import pyBigWig

            for s, rows in values.items():
                path = stack.enter_context(atomic_path(Path(f"{stem}.{s}.bw")))
                bw = pyBigWig.open(str(path), "w")
                bw.addHeader([(c, len(v)) for c, v in rows])
                for c, v in rows:
                    bw.addEntries(c, 0, values=v.astype("float64"), span=1, step=1)
                bw.close()
    summary = {"out": str(out), "tracks": [str(p) for p in tracks.values()], "contigs": len(names),
               "bases": int(sum(genome.contigs[n] for n in names)), "features": counts}
    print(f"wrote {out}: {counts} over {len(names)} contigs; tracks {', '.join(summary['tracks'])}", file=sys.stderr)
    return summary


# ---------------------------------------------------------------------- evaluate
def evaluate(
    segmenter: str,
    annotation: str,
    out: str,
    genome: str | None = None,
    contigs: str | None = None,
    min_gene_length: int = 90,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Score a segmenter against an annotation on held-out contigs: writes ``metrics.json``.

    Args:
        segmenter: Folder written by ``genoseq annotate fit``.
        annotation: The true annotation (GFF3 / GenBank / BED).
        out: JSON file to write.
        genome: FASTA or token store (default: the annotation's own sequences).
        contigs: Comma-separated contigs to score (default: those ``fit`` held out).
        min_gene_length: Shortest gene called.
        batch_size: Windows per backbone pass.
        device: ``auto``, ``cpu``, ``cuda:1``...
        progress: ``auto``, ``bar``, ``lines`` or ``none``.

    Returns:
        The metrics: ``per_base`` from the per-base labels (``tasks.genome_annotation.probs_to_labels``), ``per_base_from_features`` from the
        decoded features, ``features`` (gene start/stop exact matches, RNA recall).
    """
    from genoseq.annotation import read_annotated_genome
    from genoseq.runtime import write_json
    from genoseq.tasks.annotation_metrics import evaluate_contigs

    seg = _load(segmenter, device)
    ann, gen = read_annotated_genome(annotation, genome)
    names = [c.strip() for c in contigs.split(",")] if contigs else seg.training_info.get("holdout_contigs") or []
    if not names:
        raise InputError("no contigs to evaluate: the segmenter held none out; give --contigs", field="contigs")
    metrics = evaluate_contigs(seg, ann, gen, names, min_gene_length=min_gene_length, batch_size=batch_size,
                               progress=progress)
    write_json(out, metrics)
    cds = metrics["per_base"].get("CDS", {})
    print(f"wrote {out}: CDS F1 {cds.get('f1')} MCC {cds.get('mcc')} over {len(names)} contigs", file=sys.stderr)
    return metrics
