"""``genoseq classify fit | predict | evaluate``: sequence classification, or regression of numeric
targets (``--task regression``), on a DNA language model.

* ``fit`` fine-tunes the backbone with a pooled linear head (Lightning; early stopping on the
  validation loss or accuracy, the best epoch's weights kept; a stratified validation split
  of the training data when no ``--val`` is given), or with ``--frozen`` fits a scikit-learn
  logistic regression probe on frozen embeddings. Both write the same classifier directory
  (:class:`genoseq.models.classifier.SequenceClassifier`), plus ``training.json``.
* ``predict`` writes a TSV: name, the true label when the input has one, the predicted label
  and one probability column per class (``p_<class>``).
* ``evaluate`` writes ``metrics.json`` (accuracy, MCC, macro F1, one-vs-rest AUROC from
  ``sklearn.metrics``, the confusion matrix), ``predictions.tsv``, ``confusion_matrix.tsv`` and
  ``roc.png``.

With ``--task regression`` the targets are numeric columns of the table (``--target_column gc``
or several at once, ``--target_columns [gc,cpg]``: one multi-task head). ``fit`` fine-tunes
with a standardised MSE, an MSE on log1p targets (``--loss log``) or a Poisson loss on a log
rate (``--loss poisson``), or with ``--frozen`` fits a ridge regression (Poisson GLM for
``poisson``) on standardised frozen embeddings folded into the same linear head. ``predict``
writes one ``predicted_<target>`` column per target (and the true value where the input has
it); ``evaluate`` writes per-target Pearson, Spearman, R^2 and MSE in ``metrics.json``,
``predictions.tsv`` and a predicted-vs-true scatter plot per target (``scatter_<target>.png``).

Inputs are labelled TSV/CSV tables or GenomicBenchmarks folders (:mod:`genoseq.tables`);
``predict`` also takes unlabelled tables and FASTA files. ``fit --genome G.fa`` trains on
intervals of a genome instead: ``--train`` (and ``--val``) are then BED / GFF3 / GenBank files
read by :class:`genoseq.datamodules.intervals.IntervalDataModule` (classes from the BED name or
feature type; regression targets from BED columns, ``--target_column score`` or a column
number >= 7), resized to ``--window_length`` around their centres when given, read on their own
strand with ``--stranded true``, and ``--val_contigs`` holds whole contigs out for validation.

The work itself is the library's: :mod:`genoseq.tasks.classification` (the logistic probe,
metrics), :mod:`genoseq.tasks.regression` (target scaling, the ridge / Poisson probe, metrics)
and :mod:`genoseq.tasks.finetune` (fine-tuning with the best epoch's weights kept); inputs are
read by :mod:`genoseq.tables`. This module reads the files, calls them and writes the folder,
predictions, metrics and plots. Nothing heavy is imported at module level, so building the CLI
parser stays fast.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from genoseq.errors import InputError
from genoseq.options import EmbeddingOptions, TableInput, coerce
from genoseq.progress import ProgressChoice
from genoseq.runtime import LoggerChoice

TRAINING_FILE = "training.json"
# fit's embedding: the final normed states of both strands, a mean per codon phase and the ends
FIT_EMBEDDING = EmbeddingOptions(layer=None, pooling="phase+ends", rc_concat=True)


# ---------------------------------------------------------------------- fit
@dataclass
class _FitSettings:
    """The options of one ``classify fit`` run that its fitting steps share."""

    out: str
    embedding: EmbeddingOptions  # kept in the classifier's config
    sequence_column: str
    label_column: str
    val_fraction: float
    batch_size: int
    lr: float
    weight_decay: float
    max_epochs: int
    patience: int
    monitor: str
    rc_augment: bool
    probe_c: float
    ridge_alpha: float | None
    accelerator: str
    precision: str | None
    device: str
    seed: int
    progress: bool | str
    logger: str
    resume: bool = False

    def embedder(self, lm):
        from genoseq.models.embedding import Embedder

        return Embedder(lm, batch_size=self.batch_size, device=self.device, **asdict(self.embedding))

    def rows(self, path: str, split: str, label_column: str | None):
        from genoseq.tables import read_labelled

        return read_labelled(path, split=split, sequence_column=self.sequence_column, label_column=label_column)


def _finetune(model, datamodule, run: _FitSettings, monitor: str) -> dict:
    """Fine-tune ``model`` with early stopping on ``monitor``; it ends on the CPU with the best
    epoch's weights. Returns the run's report (best epoch and value, epochs, history)."""
    import tempfile

    from genoseq.models.resume import checkpoint_dir
    from genoseq.pipelines.training import TrainerConfig, make_trainer
    from genoseq.tasks.finetune import finetune

    config = TrainerConfig(max_steps=-1, val_check_interval=None, accelerator=run.accelerator, devices=1,
                           precision=run.precision, gradient_clip_val=0, log_every_n_steps=None)
    with tempfile.TemporaryDirectory(prefix="genoseq-classify-") as work_dir:
        result = finetune(model, datamodule, lambda callbacks: make_trainer(
            config, job="classify fit", root_dir=work_dir, log_dir=run.out, csv_name="logs", logger=run.logger,
            progress=run.progress, max_epochs=run.max_epochs, callbacks=callbacks,
            resume_hint=f"run the same command with --resume true (from {checkpoint_dir(run.out)})"),
            monitor=monitor, patience=run.patience, checkpoint_dir=checkpoint_dir(run.out), resume=run.resume)
    model.cpu().eval()
    return result.to_dict()



def _fit_classifier(lm, train: str, val: str | None, run: _FitSettings, *, frozen: bool) -> tuple[object, dict]:
    """A logistic-regression probe or a fine-tuned classifier, and its training summary."""
    if frozen:
        from genoseq.tasks.classification import fit_logistic_probe

        rows = run.rows(train, "train", run.label_column)
        val_rows = run.rows(val, "test", run.label_column) if val else []
        if len({r.label for r in rows}) < 2:
            raise InputError("training data has fewer than two classes", path=str(train))
        clf, info = fit_logistic_probe(run.embedder(lm), [r.sequence for r in rows], [r.label for r in rows],
                                       [r.sequence for r in val_rows], [r.label for r in val_rows], c=run.probe_c,
                                       seed=run.seed, progress=run.progress)
        return clf, {"n_train": len(rows), "n_val": len(val_rows), **info}
    from genoseq.datamodules import LabelledSequenceDataModule
    from genoseq.models.classifier import SequenceClassifier

    datamodule = LabelledSequenceDataModule(
        train, val=val, val_fraction=run.val_fraction, sequence_column=run.sequence_column,
        label_column=run.label_column, max_length=run.embedding.max_length, rc_augment=run.rc_augment,
        batch_size=run.batch_size, seed=run.seed,
    )
    datamodule.setup()
    if datamodule.num_classes < 2:
        raise InputError("training data has fewer than two classes", path=str(train))
    if "val" not in datamodule.datasets:
        raise InputError("no validation rows: give --val or a val_fraction > 0 with >= 2 rows per class", path=str(train))
    clf = SequenceClassifier(lm, datamodule.classes, lr=run.lr, weight_decay=run.weight_decay, **asdict(run.embedding))
    info = {"n_train": len(datamodule.datasets["train"]), "n_val": len(datamodule.datasets["val"]), "lr": run.lr,
            "max_epochs": run.max_epochs, "monitor": run.monitor}
    return clf, {**info, **_finetune(clf, datamodule, run, run.monitor)}


def _fit_regression(lm, train: str, val: str | None, run: _FitSettings, *, frozen: bool, targets: list[str],
                    loss: str) -> tuple[object, dict]:
    """A ridge / Poisson GLM probe or a fine-tuned regression model of a table's numeric
    columns, and its training summary."""
    from genoseq.tables import numeric_targets
    from genoseq.tasks.regression import fit_regression_probe, regression_metrics, target_scaling

    nonnegative = loss in ("poisson", "log")
    if frozen:
        rows = run.rows(train, "train", None)
        values = numeric_targets(rows, targets, train, nonnegative=nonnegative)
        val_rows = run.rows(val, "test", None) if val else []
        val_values = numeric_targets(val_rows, targets, val, nonnegative=nonnegative) if val else None
        model, info = fit_regression_probe(
            run.embedder(lm), [r.sequence for r in rows], values, [r.sequence for r in val_rows], val_values,
            targets=targets, loss=loss, alpha=run.ridge_alpha, seed=run.seed, progress=run.progress, path=str(train))
        return model, {**info, "n_train": len(rows), "n_val": len(val_rows)}
    from genoseq.datamodules import LabelledSequenceDataModule
    from genoseq.models.classifier import SequenceClassifier

    datamodule = LabelledSequenceDataModule(
        train, val=val, val_fraction=run.val_fraction, sequence_column=run.sequence_column,
        max_length=run.embedding.max_length, rc_augment=run.rc_augment, batch_size=run.batch_size, seed=run.seed,
        targets=targets, nonnegative=nonnegative,
    )
    datamodule.setup()
    if "val" not in datamodule.datasets:
        raise InputError("no validation rows: give --val or a val_fraction > 0", path=str(train))
    mean, std = target_scaling(datamodule.datasets["train"].labels, targets, loss, str(train))
    model = SequenceClassifier(lm, task="regression", targets=targets, loss=loss, target_mean=mean, target_std=std,
                               lr=run.lr, weight_decay=run.weight_decay, **asdict(run.embedding))
    info = _finetune(model, datamodule, run, "val/loss")
    info.update(n_train=len(datamodule.datasets["train"]), n_val=len(datamodule.datasets["val"]), lr=run.lr,
                max_epochs=run.max_epochs, monitor="val/loss")
    held_out = datamodule.datasets["val"]
    info["val_metrics"] = regression_metrics(held_out.labels, model.predict_values(held_out.ids, batch_size=run.batch_size),
                                             targets)["per_target"]
    return model, info


def check_task_options(task: str, given: dict[str, object]) -> None:
    """Refuse an option of the other task: ``given`` maps option name -> value (None = not given)."""
    only = {"classification": ("label_column", "probe_c", "monitor_acc"),
            "regression": ("target_column", "target_columns", "loss", "ridge_alpha")}
    other = "regression" if task == "classification" else "classification"
    for name in only[other]:
        if given.get(name) not in (None, False, []):
            option = "--monitor val/acc" if name == "monitor_acc" else f"--{name}"
            raise InputError(f"{option} is an option of --task {other}, not --task {task}", field=name,
                             kind="option_for_other_task")


def fit(
    model: str,
    train: str,
    out: str,
    val: str | None = None,
    frozen: bool = False,
    embedding: EmbeddingOptions = FIT_EMBEDDING,
    val_fraction: float = 0.1,
    batch_size: int = 32,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    max_epochs: int = 10,
    patience: int = 3,
    monitor: Literal["val/loss", "val/acc"] = "val/loss",
    rc_augment: bool = False,
    probe_c: float | None = None,
    sequence_column: str = "sequence",
    label_column: str | None = None,
    task: Literal["classification", "regression"] = "classification",
    target_column: str | None = None,
    target_columns: list[str] | None = None,
    loss: Literal["mse", "poisson", "log"] | None = None,
    ridge_alpha: float | None = None,
    accelerator: str = "auto",
    precision: str | None = None,
    device: str = "auto",
    seed: int = 0,
    genome: str | None = None,
    window_length: int | None = None,
    stranded: bool = False,
    val_contigs: list[str] | None = None,
    progress: bool | ProgressChoice = "auto",
    logger: LoggerChoice = "csv",
    resume: bool = False,
) -> dict:
    """Train a sequence classifier (or regression model) on a language model: fine-tuning, or a frozen probe.

    Fine-tuning trains backbone and head with early stopping on the validation set and keeps the
    best epoch's weights; ``--frozen`` fits a logistic regression on frozen embeddings instead.
    ``--task regression`` predicts numeric columns (``--target_column gc``, or several at once
    with ``--target_columns [gc,cpg]``) with an MSE, log1p-MSE or Poisson loss; its probe is a
    ridge regression (a Poisson GLM for ``--loss poisson``).

    The defaults pool the final normed states of both strands into a mean per codon phase and
    the means of the first and last 16 tokens (``phase+ends``, ``rc_concat``): trained on the
    E. coli region task they reach 0.76 (probe) and 0.72 (fine-tuned) accuracy on S. aureus,
    where mean pooling of the forward strand reaches 0.55 and 0.43 (README, regulatory
    regions). Use ``--pooling mean --rc_concat false`` for the plain mean.
    The classifier directory holds ``config.json`` (classes, pooling, layer), ``tokenizer.json``,
    ``model.safetensors`` and ``training.json``.

    Args:
        model: Directory of a released language model (``GenoSeqLM.save_pretrained``).
        train: Labelled TSV/CSV (``sequence``, ``label`` columns) or GenomicBenchmarks folder.
        out: Classifier directory to write.
        val: Validation table or GenomicBenchmarks folder (its ``test`` split). Default: a
            stratified ``val_fraction`` of ``train`` (fine-tuning; the probe then uses all of it).
        frozen: Fit a logistic-regression probe on frozen embeddings instead of fine-tuning.
        embedding: How hidden states become one vector (``--pooling``, ``--layer``,
            ``--rc_average``, ``--rc_concat``, ``--max_length``, or ``--embedding.pooling``...);
            here by default the final normed output (layer null), ``phase+ends`` pooling and both
            strands concatenated (``--rc_average true`` replaces the concatenation).
        val_fraction: Share of each class held out when ``val`` is not given (fine-tuning).
        batch_size: Sequences per batch.
        lr: Peak learning rate for fine-tuning (AdamW, warmup then cosine decay).
        weight_decay: AdamW weight decay for fine-tuning.
        max_epochs: Most epochs of fine-tuning.
        patience: Epochs without improvement of ``monitor`` before stopping.
        monitor: Validation metric for early stopping and for choosing the kept weights.
        rc_augment: Fine-tune on the reverse complement of each sequence with probability 1/2.
            Only for labels that do not depend on the strand: where they do (promoters,
            upstream vs downstream of a gene) it teaches the model to confuse the classes.
        probe_c: Inverse L2 regularisation strength of the classification probe (scikit-learn's
            ``C``; default 0.01).
        sequence_column: Sequence column of a table.
        label_column: Label column of a table (classification; default ``label``).
        task: ``classification`` (labels) or ``regression`` (numeric target columns).
        target_column: Regression: the numeric column to predict.
        target_columns: Regression: several numeric columns predicted at once (multi-task), e.g.
            ``[gc,cpg]``.
        loss: Regression loss: ``mse`` (default; in standardised units per target), ``log``
            (MSE on log1p of targets >= 0, for skewed signal) or ``poisson`` (Poisson deviance on
            a log rate, for counts >= 0).
        ridge_alpha: Regression probe: the ridge (or Poisson GLM) penalty on standardised
            embeddings; default chosen per target by cross-validation.
        accelerator: Lightning accelerator for fine-tuning (``auto``, ``cpu``, ``gpu``).
        precision: Lightning precision (default: bf16-mixed on a capable GPU, else 32-true).
        device: Device for embedding with ``--frozen``: ``auto``, ``cpu``, ``cuda:1``, ...
        seed: Seed for initialisation, the validation split, shuffling and strands.
        genome: Train on intervals of this genome (FASTA or token store): ``train`` and ``val``
            are then BED / GFF3 / GenBank files of intervals (classes: the BED name or feature
            type; regression: BED columns named by ``target_column(s)``).
        window_length: With ``genome``: resize every interval to this length around its centre.
        stranded: With ``genome``: read ``-`` strand intervals as their reverse complement.
        val_contigs: With ``genome``: intervals on these contigs are the validation set.
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.
        logger: Fine-tuning's curves: ``csv`` (``out/logs/metrics.csv``, the default) or
            ``tensorboard`` (the CSV too, plus TensorBoard event files in ``out/tensorboard``; needs
            ``pip install 'genoseq[tensorboard]'``). The probe trains no network and logs nothing.
        resume: Continue an interrupted fine-tuning from ``<out>.checkpoints/last.ckpt``, written
            after every epoch and removed when the run ends; give the same options again. The
            weights at the end are those of an uninterrupted run.

    Returns:
        The training summary also written to ``<out>/training.json``.
    """
    # Over 80 lines for its signature and Args, which are the command's options and help.
    import contextlib
    import tempfile

    import lightning as L

    from genoseq.models import GenoSeqLM
    from genoseq.models.resume import check_resume
    from genoseq.runtime import require_file
    from genoseq.tasks.regression import target_names

    started = time.perf_counter()
    embedding = coerce(EmbeddingOptions, embedding, FIT_EMBEDDING)
    # asking for averaged strands replaces the default concatenation
    embedding = replace(embedding, rc_concat=embedding.rc_concat and not embedding.rc_average)
    check_task_options(task, {"label_column": label_column, "probe_c": probe_c, "monitor_acc": monitor == "val/acc",
                              "target_column": target_column, "target_columns": target_columns, "loss": loss,
                              "ridge_alpha": ridge_alpha})
    targets = target_names(target_column, target_columns) if task == "regression" else None
    L.seed_everything(seed, verbose=False)
    for path in (train, val):
        if path is not None:
            require_file(path)
    check_resume(out, resume, trains=not frozen)
    if genome is None and (window_length is not None or stranded or val_contigs):
        raise InputError("--window_length, --stranded and --val_contigs are options of training on intervals: give "
                         "--genome too", field="genome", kind="missing")
    run = _FitSettings(
        out=out, embedding=embedding,
        sequence_column=sequence_column, label_column=label_column or "label", val_fraction=val_fraction,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, max_epochs=max_epochs, patience=patience,
        monitor=monitor, rc_augment=rc_augment, probe_c=0.01 if probe_c is None else probe_c, ridge_alpha=ridge_alpha,
        accelerator=accelerator, precision=precision, device=device, seed=seed, progress=progress, logger=logger,
        resume=resume)
    with contextlib.ExitStack() as stack:
        tables = (train, val)
        if genome is not None:  # intervals of a genome, read once into the tables the rest of fit reads
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="genoseq-intervals-")))
            *tables, interval_counts = interval_tables(
                genome, train, val, work, targets=targets, window_length=window_length, stranded=stranded,
                val_contigs=val_contigs, sequence_column=sequence_column, label_column=run.label_column)
        lm = GenoSeqLM.from_pretrained(model)
        summary: dict = {"model": str(model), "train": str(train), "val": val, "method": "probe" if frozen else "finetune",
                         "task": task, "pooling": embedding.pooling, "layer": embedding.layer,
                         "rc_average": embedding.rc_average, "rc_concat": embedding.rc_concat, "seed": seed}
        if genome is not None:
            summary.update(genome=str(genome), intervals={"train": train, "val": val}, window_length=window_length,
                           stranded=stranded, val_contigs=val_contigs, interval_counts=interval_counts)
        if targets is not None:
            clf, info = _fit_regression(lm, *tables, run, frozen=frozen, targets=targets, loss=loss or "mse")
            summary.update(info, targets=targets, loss=loss or "mse")
        else:
            clf, info = _fit_classifier(lm, *tables, run, frozen=frozen)
            summary.update(info, classes=clf.classes)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return _save(clf, Path(out), summary)


def interval_tables(genome: str, train: str, val: str | None, work: Path, *, targets: list[str] | None,
                    window_length: int | None, stranded: bool, val_contigs: list[str] | None,
                    sequence_column: str = "sequence", label_column: str = "label") -> tuple[str, str | None, dict]:
    """The intervals of ``train`` (and ``val``) on ``genome`` as the tables ``fit`` reads, written
    into ``work``: one row per interval (its sequence, and its class or target values; see
    :func:`genoseq.tasks.interval_examples.interval_examples`). ``val_contigs`` moves the
    intervals on those contigs into the validation table. Returns the table paths and counts."""
    from genoseq.runtime import write_tsv
    from genoseq.tasks.interval_examples import interval_examples

    if val is not None and val_contigs:
        raise InputError("give --val (a file of validation intervals) or --val_contigs, not both", field="val_contigs",
                         kind="conflict")
    counts: dict = {}

    def read(path: str, holdout: list[str] | None) -> dict[str, list]:
        examples, counts[str(path)] = interval_examples(genome, path, targets=targets, window_length=window_length,
                                                        stranded=stranded, val_contigs=holdout)
        return examples

    header = [sequence_column] + (list(targets) if targets else [label_column])

    def write(name: str, examples: list) -> str:
        write_tsv(work / f"{name}.tsv", header, ([sequence] + ([f"{float(v):.8g}" for v in label] if targets else [label])
                                                 for sequence, label in examples))
        return str(work / f"{name}.tsv")

    main_rows = read(train, val_contigs)
    train_path = write("train", main_rows["train"])
    if val is not None:
        val_rows = read(val, None)
        val_path = write("val", val_rows["train"] + val_rows["val"])
    elif val_contigs:
        if not main_rows["val"]:
            raise InputError(f"no interval lies on the validation contigs {', '.join(val_contigs)}",
                             path=str(train), field="val_contigs", kind="empty")
        val_path = write("val", main_rows["val"])
    else:
        val_path = None
    return train_path, val_path, counts


def _save(clf, out_dir: Path, summary: dict) -> dict:
    """Write the model folder and ``training.json``; print a one-line summary."""
    from genoseq.runtime import write_json
    from genoseq.models.resume import checkpoint_dir

    clf.save_pretrained(out_dir, training=summary)
    write_json(out_dir / TRAINING_FILE, summary)
    shutil.rmtree(checkpoint_dir(out_dir), ignore_errors=True)  # the run is complete: nothing left to resume
    shown = {k: summary[k] for k in ("train_accuracy", "val_accuracy", "best_val_loss", "best_val_acc", "best_epoch") if k in summary}
    if clf.is_regression:
        val = summary.get("val_metrics") or {}
        shown.update({f"val_pearson_{t}": round(m["pearson"], 4) for t, m in val.items() if m["pearson"] is not None})
        kind, what = "regression model", f"targets {', '.join(clf.targets)}, loss {clf.loss}"
    else:
        kind, what = "classifier", f"classes {', '.join(clf.classes)}"
    print(f"wrote {kind} {out_dir} ({summary['method']}, {what}): {shown}", file=sys.stderr)
    return summary


# ---------------------------------------------------------------------- predict / evaluate
def _load(classifier: str, device: str):
    from genoseq.models.classifier import SequenceClassifier
    from genoseq.runtime import resolve_device

    return SequenceClassifier.from_pretrained(classifier).to(resolve_device(device))


def _write_predictions(path: Path, names, labels, classes, proba) -> None:
    import numpy as np

    from genoseq.runtime import write_tsv

    predicted = [classes[i] for i in np.argmax(proba, axis=1)]
    known = labels is not None
    write_tsv(path, ["name"] + (["label"] if known else []) + ["predicted"] + [f"p_{c}" for c in classes],
              ([name] + ([labels[i]] if known else []) + [predicted[i]] + [f"{p:.6g}" for p in proba[i]]
               for i, name in enumerate(names)))


def _write_regression_predictions(path: Path, names, targets: list[str], values, predicted) -> None:
    from genoseq.runtime import write_tsv

    known = values is not None
    write_tsv(path, ["name"] + (list(targets) if known else []) + [f"predicted_{t}" for t in targets],
              ([name] + ([f"{v:.6g}" for v in values[i]] if known else []) + [f"{v:.6g}" for v in predicted[i]]
               for i, name in enumerate(names)))


def scatter_file(target: str) -> str:
    """``scatter_<target>.png``, the target name kept to letters, digits, ``.``, ``_`` and ``-``."""
    import re

    return f"scatter_{re.sub(r'[^A-Za-z0-9._-]+', '_', target)}.png"


def _target_inputs(clf, table: TableInput, *, required: bool):
    from genoseq.tables import read_target_inputs

    return read_target_inputs(table.input, clf.targets, split=table.split, sequence_column=table.sequence_column,
                              required=required)


def _predict_regression(clf, table: TableInput, out: str, *, batch_size: int, progress) -> dict:
    inputs, values = _target_inputs(clf, table, required=False)
    predicted = clf.predict_values(inputs.sequences, batch_size=batch_size, progress=progress)
    _write_regression_predictions(Path(out), inputs.names, clf.targets, values, predicted)
    print(f"wrote {out}: {len(inputs.names)} predictions of {', '.join(clf.targets)}", file=sys.stderr)
    return {"out": str(out), "n": len(inputs.names), "targets": list(clf.targets)}


def _evaluate_regression(clf, classifier: str, table: TableInput, out: str, *, batch_size: int, progress) -> dict:
    from genoseq.figures import scatter_figure
    from genoseq.runtime import save_figure, write_json
    from genoseq.tasks.regression import regression_metrics

    inputs, values = _target_inputs(clf, table, required=True)
    predicted = clf.predict_values(inputs.sequences, batch_size=batch_size, progress=progress)
    result = {"classifier": str(classifier), "input": str(table.input), "task": "regression", "method": clf.method,
              "loss": clf.loss, **regression_metrics(values, predicted, clf.targets)}
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_regression_predictions(out_dir / "predictions.tsv", inputs.names, clf.targets, values, predicted)
    for j, target in enumerate(clf.targets):
        figure = scatter_figure(values[:, j], predicted[:, j], target, result["per_target"][target],
                                f"{Path(classifier).name} on {Path(table.input).name}")
        save_figure(figure, out_dir / scatter_file(target))
    write_json(out_dir / "metrics.json", result)
    shown = ", ".join(f"{t}: Pearson {m['pearson'] if m['pearson'] is None else round(m['pearson'], 3)}, "
                      f"R2 {m['r2'] if m['r2'] is None else round(m['r2'], 3)}" for t, m in result["per_target"].items())
    print(f"wrote {out_dir}: n={result['n']} {shown}", file=sys.stderr)
    return result


def predict(
    classifier: str,
    table: TableInput,
    out: str,
    batch_size: int = 32,
    device: str = "auto",
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Predict classes: a TSV with name, label (when known), predicted label and p_<class> columns.

    A regression model writes name, the true value of each target where the input has its
    column, and one ``predicted_<target>`` column per target.

    Args:
        classifier: Classifier directory written by ``genoseq classify fit``.
        table: The sequences (``--input``, ``--split``, ``--sequence_column``, ``--label_column``,
            or ``--table.input``...): a table, GenomicBenchmarks folder or FASTA file.
        out: TSV to write.
        batch_size: Sequences per forward pass.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``, ...
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.

    Returns:
        A summary: number of sequences, classes (or targets), output path.
    """
    table = coerce(TableInput, table)
    clf = _load(classifier, device)
    if clf.is_regression:
        return _predict_regression(clf, table, out, batch_size=batch_size, progress=progress)
    inputs = table.read()
    proba = clf.predict_proba(inputs.sequences, batch_size=batch_size, progress=progress)
    _write_predictions(Path(out), inputs.names, inputs.labels, clf.classes, proba)
    print(f"wrote {out}: {len(inputs.names)} predictions over classes {', '.join(clf.classes)}", file=sys.stderr)
    return {"out": str(out), "n": len(inputs.names), "classes": clf.classes}


def evaluate(
    classifier: str,
    table: TableInput,
    out: str,
    batch_size: int = 32,
    device: str = "auto",
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Evaluate a classifier on labelled data: metrics.json, predictions, confusion matrix, ROC plot.

    A regression model is evaluated on the table's target columns: per-target Pearson, Spearman,
    R^2 and MSE in ``metrics.json``, ``predictions.tsv`` and ``scatter_<target>.png``
    (predicted against true).

    Args:
        classifier: Classifier directory written by ``genoseq classify fit``.
        table: The labelled sequences (``--input``, ``--split``, ``--sequence_column``,
            ``--label_column``, or ``--table.input``...): a table or GenomicBenchmarks folder (its
            ``split``).
        out: Report directory to write (``metrics.json``, ``predictions.tsv``,
            ``confusion_matrix.tsv``, ``roc.png``).
        batch_size: Sequences per forward pass.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``, ...
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.

    Returns:
        The metrics also written to ``metrics.json``.
    """
    from genoseq.figures import roc_figure
    from genoseq.runtime import save_figure, write_json, write_tsv
    from genoseq.tables import read_labelled
    from genoseq.tasks.classification import classification_metrics

    table = coerce(TableInput, table)
    clf = _load(classifier, device)
    if clf.is_regression:
        return _evaluate_regression(clf, classifier, table, out, batch_size=batch_size, progress=progress)
    rows = read_labelled(table.input, split=table.split, sequence_column=table.sequence_column,
                         label_column=table.label_column)
    unknown = sorted({r.label for r in rows} - set(clf.classes))
    if unknown:
        raise InputError(f"labels not among the classifier's classes {clf.classes}: {unknown}", path=str(table.input))
    labels = [r.label for r in rows]
    names = [r.extra.get("name") or r.extra.get("id") or f"row{i + 1}" for i, r in enumerate(rows)]
    proba = clf.predict_proba([r.sequence for r in rows], batch_size=batch_size, progress=progress)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_predictions(out_dir / "predictions.tsv", names, labels, clf.classes, proba)
    result = {"classifier": str(classifier), "input": str(table.input), "method": clf.method,
              **classification_metrics(labels, proba, clf.classes)}
    write_tsv(out_dir / "confusion_matrix.tsv", ["true\\predicted"] + clf.classes,
              ([name] + [str(v) for v in row] for name, row in zip(clf.classes, result["confusion_matrix"])))
    save_figure(roc_figure(labels, proba, clf.classes, f"{Path(classifier).name} on {Path(table.input).name}"),
                out_dir / "roc.png")
    write_json(out_dir / "metrics.json", result)
    auroc = "n/a" if result["auroc_ovr"] is None else f"{result['auroc_ovr']:.3f}"
    print(f"wrote {out_dir}: n={result['n']} accuracy {result['accuracy']:.3f}, MCC {result['mcc']:.3f}, "
          f"macro F1 {result['macro_f1']:.3f}, AUROC {auroc}", file=sys.stderr)
    return result


__all__ = ["check_task_options", "evaluate", "fit", "interval_tables", "predict", "scatter_file"]
