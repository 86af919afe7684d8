"""``genoseq generate fit | sample``: conditional sequence design with a DNA language model.

* ``fit`` fine-tunes a pretrained :class:`~genoseq.models.lm.GenoSeqLM` on labelled sequences,
  each prefixed with its label's condition token (``[COND:coding]``); a continuous column (MPRA
  ``activity``) is cut into ``--bins`` quantile bins ``q1`` (lowest) .. ``qN`` first. The output
  folder is a released model (``GenoSeqLM.from_pretrained`` loads it) with the condition labels
  in its ``tokenizer.json``, plus ``metrics.json``, ``metrics.csv`` and
  ``training_sequences.tsv.gz`` (every training sequence with its condition: the reference the
  design report measures novelty and k-mer divergence against).
* ``sample`` writes designs to FASTA. Decoding is incremental (Mamba2 recurrent state,
  attention KV cache, Hyena cached inputs: one step per base). Constraints: forbidden motifs
  (both strands) and homopolymer runs are enforced while sampling, by banning the base that
  would break them; the GC range by rejection (whole designs resampled, up to
  ``max_attempts``), with the rejections counted by reason. With ``--oracle`` (a classifier
  from ``genoseq classify fit``) every design gets the oracle's probability of the requested
  class; ``--select top-k`` oversamples and keeps the best ``num_samples``; ``--refine_rounds``
  resamples a random span of every design per round and keeps the change when the oracle
  prefers it. Beside ``designs.fa`` it writes ``designs.tsv`` (per design: GC, longest run,
  oracle probability, edit distance to the nearest training sequence of the class),
  ``designs.json`` (the run: settings, rejections, success rate, diversity, novelty, k-mer
  Jensen-Shannon divergence from real sequences of the class) and ``designs.png``.

The older one-command form ``genoseq generate --model M --prompt ACGT ...`` still works: the
CLI reads it as ``genoseq generate sample``. ``--num`` and ``--length`` are accepted there as
``--num_samples`` and ``--max_new_tokens``.

Nothing heavy is imported at module level, so building the CLI parser stays fast.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Literal

from genoseq.errors import InputError
from genoseq.pipelines.training import TrainerConfig, make_trainer
from genoseq.progress import ProgressChoice
from genoseq.runtime import LoggerChoice, require_file, write_json

TRAINING_SEQUENCES = "training_sequences.tsv.gz"
METRICS_FILE = "metrics.json"


# ---------------------------------------------------------------------- fit
def quantile_bins(values, bins: int):
    """Cut numbers into ``bins`` equal-count bins: returns (bin index 0..bins-1 per value, edges).

    Edges are the quantiles 0, 1/bins, ..., 1 of ``values``; a value on an inner edge goes to the
    upper bin. Fewer distinct edges than bins (too many ties) is an error.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    edges = np.quantile(values, np.linspace(0.0, 1.0, bins + 1))
    if len(np.unique(edges)) < bins + 1:
        raise InputError(f"the values have too few distinct levels for {bins} quantile bins")
    return np.searchsorted(edges[1:-1], values, side="right"), edges


def _conditions(rows, path: str, column: str, bins: int | None) -> tuple[list[str], list[str], dict | None]:
    """Condition label per row and the label order; binned quantiles for a numeric column."""
    if bins is None:
        labels = [r.label for r in rows]
        return labels, sorted(set(labels)), None
    if bins < 2:
        raise InputError(f"bins must be >= 2, got {bins}", path=path)
    values = []
    for i, r in enumerate(rows):
        try:
            value = float(r.label)
        except ValueError:
            raise InputError(f"column {column!r} holds {r.label!r}, not a number", path=path, record=f"row {i + 1}") from None
        if not math.isfinite(value):
            raise InputError(f"column {column!r} holds {r.label!r}", path=path, record=f"row {i + 1}")
        values.append(value)
    index, edges = quantile_bins(values, bins)
    order = [f"q{i + 1}" for i in range(bins)]
    ranges = {order[i]: [float(edges[i]), float(edges[i + 1])] for i in range(bins)}
    return [order[i] for i in index], order, {"column": column, "edges": [float(e) for e in edges], "ranges": ranges}


def fit(
    model: str,
    train: str,
    out: str,
    condition_column: str | None = None,
    bins: int | None = None,
    sequence_column: str = "sequence",
    val_fraction: float = 0.1,
    pack_length: int = 1024,
    batch_size: int = 8,
    lr: float = 3e-4,
    weight_decay: float = 0.1,
    warmup_steps: int = 50,
    max_epochs: int = 5,
    max_steps: int = -1,
    patience: int = 2,
    val_check_interval: int | float = 1.0,
    accelerator: str = "auto",
    precision: str | None = None,
    seed: int = 0,
    progress: bool | ProgressChoice = "auto",
    logger: LoggerChoice = "csv",
    overwrite: bool = False,
    resume: bool = False,
) -> dict:
    """Fine-tune a pretrained language model for conditional generation (one token per label).

    Each training sequence is prefixed with its condition token; new tokens start from the mean
    of the model's existing embedding rows (pretrained rows are not changed). Training uses packed
    batches, validation loss, early stopping and keeps the best validation checkpoint.

    Args:
        model: Released language model folder (``RUN_DIR/model`` from ``genoseq pretrain``).
        train: Labelled TSV/CSV (``sequence`` and a condition column) or GenomicBenchmarks folder.
        out: Folder for the conditional model (released model + metrics.json).
        condition_column: Column whose values become conditions (default ``label``, or
            ``activity`` with ``bins``).
        bins: Cut a numeric condition column (e.g. MPRA activity) into this many quantile bins,
            labelled q1 (lowest) .. qN.
        sequence_column: Sequence column of a table.
        val_fraction: Share of the sequences held out for the validation loss.
        pack_length: Tokens per packed training row.
        batch_size: Packed rows per batch.
        lr: Peak AdamW learning rate (linear warmup, then cosine decay).
        weight_decay: AdamW weight decay (not on norms, biases, embeddings).
        warmup_steps: Learning-rate warmup steps.
        max_epochs: Most passes over the training sequences.
        max_steps: Most optimiser steps (-1: no limit besides max_epochs).
        patience: Validation checks without improvement before stopping early.
        val_check_interval: Validate every this many batches (int) or fraction of an epoch.
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        precision: Lightning precision (default: bf16-mixed on a capable GPU, else 32-true).
        seed: Seed for the validation split, batch order and initialisation.
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.
        logger: ``csv`` (``metrics.csv``, the default) or ``tensorboard`` (the CSV too, plus
            TensorBoard event files in ``out/tensorboard``; needs ``pip install 'genoseq[tensorboard]'``).
        overwrite: Replace an existing model in ``out``; start an interrupted run again (its
            checkpoint is deleted) instead of refusing.
        resume: Continue an interrupted fine-tuning from ``<out>.checkpoints/last.ckpt``, written
            after every epoch (after its validations) and removed when the run ends; give the
            same options again. The weights at the end are those of an uninterrupted run.

    Returns:
        The metrics also written to ``out/metrics.json``.
    """
    # Over 80 lines for its signature and Args, which are the command's options and help.
    import lightning as L

    import genoseq
    from genoseq.models.conditional import add_condition_labels
    from genoseq.models.config import OptimConfig, TrainingConfig
    from genoseq.models.lm import GenoSeqLM
    from genoseq.tables import read_labelled

    started = time.perf_counter()
    out_dir = Path(out)
    folder = _check_fit(out_dir, train, val_fraction, overwrite, resume)
    column = condition_column or ("activity" if bins else "label")
    rows = read_labelled(train, sequence_column=sequence_column, label_column=column)
    conditions, labels, binning = _conditions(rows, str(train), column, bins)
    if len(labels) < 2:
        raise InputError(f"column {column!r} has a single value; conditional training needs at least two", path=str(train))

    L.seed_everything(seed, verbose=False)
    lm = GenoSeqLM.from_pretrained(model)
    pretrained_vocab = lm.config.vocab_size
    condition_ids = add_condition_labels(lm, labels)
    lm.training_config = TrainingConfig(window_length=lm.training_config.window_length)  # whole-batch RC would move the condition token; no length warmup
    lm.optim = OptimConfig(lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps)
    lm.hparams.update(optim=lm.optim.to_dict(), rc_augment=False, seq_len_warmup=None)
    datamodule = _packed_training_data(out_dir, train, rows, conditions, column, binning, lm.tokenizer, pack_length,
                                       batch_size, val_fraction, seed)
    config = TrainerConfig(max_steps=max_steps, val_check_interval=val_check_interval, accelerator=accelerator,
                           devices=1, precision=precision)
    trainer, before, best_score = _fit_best(lm, datamodule, config, out_dir, patience, max_epochs, logger, progress,
                                            resume)
    lm = lm.cpu().eval()
    counts = Counter(conditions)
    metrics = {
        "genoseq_version": genoseq.__version__,
        "base_model": str(model),
        "train": str(train),
        "condition_column": column,
        "labels": labels,
        "condition_ids": dict(zip(labels, condition_ids)),
        "counts": {label: counts[label] for label in labels},
        "binning": binning,
        "vocab_size": {"pretrained": pretrained_vocab, "now": lm.config.vocab_size},
        "n_train": len(datamodule.datasets["train"]),
        "n_val": len(datamodule.datasets["val"]),
        "epochs": int(trainer.current_epoch),
        "steps": int(trainer.global_step),
        "val_bits_per_base_before": round(float(before), 4),
        "best_val_bits_per_base": round(float(best_score), 4),
        "seconds": round(time.perf_counter() - started, 1),
        "training_sequences": TRAINING_SEQUENCES,
    }
    lm.save_pretrained(out_dir)
    write_json(out_dir / METRICS_FILE, metrics)
    shutil.rmtree(folder, ignore_errors=True)  # the run is complete: nothing left to resume
    print(f"genoseq generate fit: {metrics['steps']} steps, validation bits/base {metrics['val_bits_per_base_before']} -> "
          f"{metrics['best_val_bits_per_base']}; conditions {', '.join(labels)}; model in {out_dir}", file=sys.stderr)
    return metrics


def _check_fit(out_dir: Path, train: str, val_fraction: float, overwrite: bool, resume: bool) -> Path:
    """Checks before any work: the output, the training table, ``val_fraction`` and the resume
    checkpoint (:func:`genoseq.models.resume.check_resume`). Returns the checkpoint folder."""
    from genoseq.models.resume import check_resume

    if (out_dir / "config.json").exists() and not overwrite:
        raise InputError("already holds a model; pass --overwrite to replace it", path=str(out_dir))
    folder = check_resume(out_dir, resume, overwrite=overwrite)
    require_file(train)
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    return folder


def _packed_training_data(out_dir: Path, train, rows, conditions, column, binning, tokenizer, pack_length, batch_size,
                          val_fraction, seed):
    """The training table with its conditions (what the datamodule reads, and the design report's
    reference), written into the model folder, and the packed DataModule over it."""
    import csv
    import gzip

    from genoseq.datamodules import PackedSequenceDataModule
    from genoseq.runtime import atomic_output

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir / TRAINING_SEQUENCES, "wb") as raw, gzip.open(raw, "wt", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["sequence", "label", column] if binning else ["sequence", "label"])
        for r, cond in zip(rows, conditions):
            writer.writerow([r.sequence.upper(), cond, r.label] if binning else [r.sequence.upper(), cond])
    datamodule = PackedSequenceDataModule(
        str(out_dir / TRAINING_SEQUENCES), pack_length=pack_length, rows_per_batch=batch_size,
        val_fraction=val_fraction, condition_column="label", tokenizer=tokenizer, seed=seed,
    )
    datamodule.setup()
    if "val" not in datamodule.datasets:
        raise InputError("no validation sequences: raise val_fraction or give more rows", path=str(train))
    return datamodule


def _fit_best(lm, datamodule, config, out_dir: Path, patience: int, max_epochs: int, logger, progress, resume: bool):
    """Fine-tune with early stopping and keep the best validation weights
    (:func:`genoseq.tasks.finetune.finetune`, with ``last.ckpt`` in ``<out>.checkpoints`` after
    every epoch; ``resume`` continues from it): the trainer, the validation bits/base before
    training and the best one."""
    from genoseq.models.resume import checkpoint_dir
    from genoseq.runtime import quiet_lightning
    from genoseq.tasks.finetune import finetune

    folder = checkpoint_dir(out_dir)
    built: list = []

    def trainer_validated_before(callbacks):  # the starting weights' bits/base, logged by the same trainer
        trainer = make_trainer(config, job="generate fit", root_dir=out_dir, logger=logger, csv_name="logs",
                               progress=progress, max_epochs=max_epochs, callbacks=callbacks,
                               resume_hint=f"run the same command with --resume true (from {folder})")
        with quiet_lightning():
            built.append((trainer, trainer.validate(lm, datamodule=datamodule, verbose=False)[0]["val/bits_per_base"]))
        return trainer

    result = finetune(lm, datamodule, trainer_validated_before, monitor="val/loss", patience=patience,
                      checkpoint_dir=folder, resume=resume)
    trainer, before = built[0]
    if result.best is not None:
        best_score = result.best / math.log(2)
    else:  # stopped before any validation: keep the last weights and measure them
        with quiet_lightning():
            best_score = trainer.validate(lm, datamodule=datamodule, verbose=False)[0]["val/bits_per_base"]
    return trainer, before, best_score


# ---------------------------------------------------------------------- sample
def _as_motifs(value: list[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [m for v in value for m in str(v).split(",")]
    return tuple(m.strip() for m in items if m.strip())


def _report_paths(out: Path) -> dict[str, Path]:
    stem = out.name
    for suffix in (".fa", ".fasta", ".fna"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return {ext: out.with_name(f"{stem}.{ext}") for ext in ("tsv", "json", "png")}


def _read_reference(path: Path, condition: str | None) -> tuple[list[str], list[str]] | None:
    """Sequences (and row names) of one condition from a training table; all rows without one."""
    from genoseq.tables import read_sequences

    inputs = read_sequences(tsv=path)
    if inputs.labels is not None and condition is not None:
        keep = [i for i, label in enumerate(inputs.labels) if label == condition]
    else:
        keep = range(len(inputs.sequences))
    if not keep:
        return None
    return [inputs.sequences[i].upper() for i in keep], [inputs.names[i] for i in keep]


def sample(
    model: str,
    prompt: str = "",
    max_new_tokens: int = 200,
    num_samples: int = 1,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    condition: str | None = None,
    out: str = "generated.fa",
    device: str = "auto",
    line_width: int = 80,
    gc_min: float | None = None,
    gc_max: float | None = None,
    forbid: list[str] | str | None = None,
    max_homopolymer: int | None = None,
    max_attempts: int | None = None,
    batch_size: int = 64,
    oracle: str | None = None,
    oracle_class: str | None = None,
    select: Literal["all", "top-k"] = "all",
    oversample: int = 4,
    refine_rounds: int = 0,
    refine_span: int = 10,
    reference: str | None = None,
    report: bool = True,
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Sample designs (optionally conditioned, constrained and oracle-selected) into FASTA.

    Each record is the prompt followed by the new bases; its header records the settings. With
    ``report`` a TSV, a JSON summary and a PNG are written beside the FASTA (same stem).

    Args:
        model: Model folder (``genoseq generate fit`` output, or any released language model).
        prompt: Bases to continue (A C G T N, any case); empty starts from the condition token
            (or the beginning token).
        max_new_tokens: Bases to generate per design (``--length`` is the same option).
        num_samples: Number of designs written (``--num`` is the same option).
        temperature: Softmax temperature; 0 is greedy.
        top_k: Sample among the k most likely bases only.
        top_p: Nucleus sampling: the smallest set of bases with this total probability.
        seed: Random seed (the same seed and options give the same designs).
        condition: Condition label of a conditionally fine-tuned model (prepends its token).
        out: Output FASTA.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:0``...
        line_width: Bases per FASTA line.
        gc_min: Lowest GC fraction of a design (prompt included); enforced by rejection.
        gc_max: Highest GC fraction of a design; enforced by rejection.
        forbid: Motifs that must not occur on either strand, e.g. ``[GAATTC,GGATCC]``; enforced
            while sampling.
        max_homopolymer: Longest allowed run of one base; enforced while sampling.
        max_attempts: Most designs sampled in all (default 20 x the designs needed) before
            giving up on the rejected ones.
        batch_size: Designs sampled together.
        oracle: Classifier folder (``genoseq classify fit``) that scores every design.
        oracle_class: The oracle class a design should be (default: ``condition``).
        select: ``all`` keeps every accepted design; ``top-k`` samples ``oversample`` times as
            many and keeps the ``num_samples`` the oracle rates highest.
        oversample: Candidates per kept design with ``--select top-k``.
        refine_rounds: Oracle-guided refinement rounds: each resamples one random span of every
            design and keeps it where the oracle probability rises and the constraints hold.
        refine_span: Bases resampled per refinement round.
        reference: Table of real sequences (``sequence``, ``label``) for the report's novelty and
            k-mer divergence (default: the model's ``training_sequences.tsv.gz``), rows of the
            ``condition`` label only.
        report: Write the TSV / JSON / PNG report beside the FASTA.
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.

    Returns:
        The run summary (as in the JSON report) with the designs under ``sequences``.
    """
    # Over 80 lines for its signature and Args, which are the command's options and help.
    from genoseq.design import DesignConstraints
    from genoseq.models.lm import GenoSeqLM
    from genoseq.runtime import resolve_device
    from genoseq.tasks.generation import SampleOptions, sample_designs

    started = time.perf_counter()
    options = SampleOptions(
        prompt=prompt, max_new_tokens=max_new_tokens, num_samples=num_samples, temperature=temperature, top_k=top_k,
        top_p=top_p, seed=seed, condition=condition, max_attempts=max_attempts, batch_size=batch_size,
        oracle_class=oracle_class, select=select, oversample=oversample, refine_rounds=refine_rounds,
        refine_span=refine_span, constraints=DesignConstraints(gc_min=gc_min, gc_max=gc_max,
                                                               forbidden=_as_motifs(forbid), max_homopolymer=max_homopolymer),
    )
    dev = resolve_device(device)
    lm = GenoSeqLM.from_pretrained(model, map_location=dev)
    clf = None
    if oracle is not None:
        from genoseq.models.classifier import SequenceClassifier

        clf = SequenceClassifier.from_pretrained(oracle, map_location=dev)
    if condition is None and lm.tokenizer.condition_labels:
        print(f"genoseq generate: note: the model was trained with conditions "
              f"({', '.join(lm.tokenizer.condition_labels)}); sampling without --condition", file=sys.stderr)
    designs = sample_designs(lm, options, oracle=clf, progress=progress)
    if designs.accepted < designs.needed:
        print(f"genoseq generate: warning: only {designs.accepted} of {designs.needed} designs met the "
              f"constraints in {designs.attempts} attempts", file=sys.stderr)
    out_path = Path(out)
    settings = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed,
                "prompt_length": len(lm.tokenizer.encode(prompt)), "condition": condition}
    _write_designs(out_path, designs, settings, line_width)
    summary = {
        "model": str(model), "out": str(out_path), "condition": condition,
        "settings": dict(settings, max_new_tokens=max_new_tokens, num_samples=num_samples, select=select,
                         oversample=oversample if select == "top-k" else None, refine_rounds=refine_rounds,
                         refine_span=refine_span if refine_rounds else None),
        "constraints": options.constraints.to_dict(),
        "n_designs": len(designs.sequences), "needed": designs.needed, "attempts": designs.attempts,
        "rejected": designs.rejected, "rejected_by_reason": designs.rejected_by_reason,
        "shortfall": designs.shortfall,
        "oracle": str(oracle) if oracle else None, "oracle_class": designs.target,
        "refinement_improved": designs.refinement_improved,
    }
    if report:
        summary.update(_write_report(out_path, designs, clf, Path(reference) if reference else Path(model) / TRAINING_SEQUENCES,
                                     condition, started, summary))
    summary["seconds"] = round(time.perf_counter() - started, 2)
    extra = f"; rejected {summary['rejected']}" if options.constraints.active else ""
    if clf is not None:
        extra += f"; oracle success {summary.get('success_rate')}"
    print(f"genoseq generate: {len(designs.sequences)} x {max_new_tokens} new bases -> {out_path}{extra}", file=sys.stderr)
    return dict(summary, sequences=designs.sequences)


def _write_designs(out_path: Path, designs, settings: dict, line_width: int) -> None:
    """The designs as FASTA; each header holds the settings and the oracle's probability."""
    from genoseq.runtime import atomic_output

    p_target = designs.p_oracle
    with atomic_output(out_path) as fh:
        for i, seq in enumerate(designs.sequences):
            header = dict(settings, **({"p_oracle": round(float(p_target[i]), 4)} if p_target is not None else {}))
            fh.write(f">sample_{i} {json.dumps(header, separators=(',', ':'))}\n")
            for start in range(0, len(seq), line_width):
                fh.write(seq[start : start + line_width] + "\n")


def _write_report(out_path: Path, designs, clf, ref_path: Path, condition, started: float, summary: dict) -> dict:
    """The TSV, PNG and JSON report beside the FASTA; the report's numbers."""
    paths = _report_paths(out_path)
    ref = _read_reference(ref_path, condition) if ref_path.exists() else None
    found = design_report(designs.sequences, designs.proba, clf.classes if clf else None, designs.target, ref, paths)
    found["reference"] = str(ref_path) if ref else None
    write_json(paths["json"], {**summary, **found, "seconds": round(time.perf_counter() - started, 2)})
    return found


def design_report(designs: list[str], proba, classes: list[str] | None, target: str | None,
                  reference: tuple[list[str], list[str]] | None, paths: dict[str, Path]) -> dict:
    """Per-design TSV and plot; returns the run metrics (success, diversity, novelty, k-mer JS)."""
    import numpy as np

    from genoseq.design import (gc_content, kmer_divergences, max_homopolymer, mean_pairwise_distance,
                                nearest_distances, novelty)
    from genoseq.runtime import atomic_output

    gc = np.array([gc_content(s) for s in designs])
    runs = [max_homopolymer(s) for s in designs]
    metrics: dict = {"gc_mean": float(gc.mean()), "diversity": mean_pairwise_distance(designs)}
    metrics["diversity_per_base"] = metrics["diversity"] / float(np.mean([len(s) for s in designs]))
    p_target = predicted = None
    if proba is not None:
        k = classes.index(target)
        p_target = proba[:, k]
        predicted = [classes[i] for i in proba.argmax(1)]
        metrics.update(success_rate=float(np.mean([p == target for p in predicted])),
                       oracle_p_mean=float(p_target.mean()))
    nearest = nearest_name = None
    if reference is not None:
        ref_seqs, ref_names = reference
        nearest, index = nearest_distances(designs, ref_seqs)
        nearest_name = [ref_names[i] for i in index]
        metrics.update(
            novelty=novelty(nearest),
            nearest_distance_mean=float(nearest.mean()),
            nearest_distance_min=int(nearest.min()),
            nearest_distance_per_base_mean=float(np.mean(nearest / np.array([len(s) for s in designs]))),
            reference_size=len(ref_seqs),
            reference_gc_mean=float(np.mean([gc_content(s) for s in ref_seqs])),
            kmer_js=kmer_divergences(designs, ref_seqs),
        )
    with atomic_output(paths["tsv"]) as fh:
        columns = ["name", "length", "gc", "max_homopolymer"]
        columns += ["oracle_p", "oracle_predicted"] if p_target is not None else []
        columns += ["nearest_train_distance", "nearest_train_name"] if nearest is not None else []
        fh.write("\t".join(columns) + "\n")
        for i, seq in enumerate(designs):
            row = [f"sample_{i}", str(len(seq)), f"{gc[i]:.4f}", str(runs[i])]
            row += [f"{p_target[i]:.6g}", predicted[i]] if p_target is not None else []
            row += [str(int(nearest[i])), nearest_name[i]] if nearest is not None else []
            fh.write("\t".join(row) + "\n")
    _plot_report(paths["png"], gc, p_target, target, nearest, metrics, reference)
    return metrics


def _plot_report(path: Path, gc, p_target, target, nearest, metrics: dict, reference) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from genoseq.design import gc_content
    from genoseq.runtime import save_figure

    fig, axes = plt.subplots(2, 2, figsize=(9, 7))
    ax = axes[0, 0]
    bins = np.linspace(0, 1, 41)
    ax.hist(gc, bins=bins, alpha=0.6, density=True, label="designs")
    if reference is not None:
        ax.hist([gc_content(s) for s in reference[0]], bins=bins, alpha=0.5, density=True, label="real")
    ax.set(xlabel="GC fraction", ylabel="density", title="GC content")
    ax.legend()
    ax = axes[0, 1]
    if p_target is not None:
        ax.hist(p_target, bins=np.linspace(0, 1, 21))
        ax.set(xlabel=f"oracle P({target})", ylabel="designs",
               title=f"oracle (success {metrics.get('success_rate', float('nan')):.2f})")
    else:
        ax.text(0.5, 0.5, "no oracle", ha="center", va="center")
        ax.set_axis_off()
    ax = axes[1, 0]
    if nearest is not None:
        ax.hist(nearest, bins=30)
        ax.set(xlabel="edit distance to nearest training sequence", ylabel="designs",
               title=f"novelty {metrics['novelty']:.2f}")
    else:
        ax.text(0.5, 0.5, "no reference sequences", ha="center", va="center")
        ax.set_axis_off()
    ax = axes[1, 1]
    if "kmer_js" in metrics:
        ks = list(metrics["kmer_js"])
        ax.bar(ks, [metrics["kmer_js"][k] for k in ks])
        ax.set(ylabel="Jensen-Shannon divergence (bits)", title="k-mer spectrum vs real")
    else:
        ax.set_axis_off()
    fig.suptitle(f"genoseq generate: {len(gc)} designs, diversity {metrics['diversity']:.1f}")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)

