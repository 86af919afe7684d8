"""``genoseq classify fit | predict | evaluate``: sequence classification on a DNA language model.

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

Inputs are labelled TSV/CSV tables or GenomicBenchmarks folders (:mod:`genoseq.tables`);
``predict`` also takes unlabelled tables and FASTA files.

Nothing heavy is imported at module level, so building the CLI parser stays fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Literal

from genoseq.errors import InputError
from genoseq.progress import ProgressChoice
from genoseq.runtime import LoggerChoice

TRAINING_FILE = "training.json"


def _read_rows(path: str, split: str, sequence_column: str, label_column: str):
    from genoseq.tables import read_labelled

    if not Path(path).exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    return read_labelled(path, split=split, sequence_column=sequence_column, label_column=label_column)


# ---------------------------------------------------------------------- fit
def _fit_probe(lm, train_rows, val_rows, *, pooling, layer, rc_average, rc_concat, max_length, batch_size, device, c, seed, progress):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from genoseq.models.classifier import SequenceClassifier
    from genoseq.models.embedding import Embedder

    embedder = Embedder(lm, layer=layer, pooling=pooling, rc_average=rc_average, rc_concat=rc_concat, batch_size=batch_size,
                        max_length=max_length, device=device)
    x_train = embedder.embed([r.sequence for r in train_rows], progress=progress).astype("float64")
    y_train = [r.label for r in train_rows]
    scaler = StandardScaler().fit(x_train)
    probe = LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(scaler.transform(x_train), y_train)
    clf = SequenceClassifier.from_probe(
        embedder.model.cpu(), list(probe.classes_), probe.coef_, probe.intercept_, scaler.mean_, scaler.scale_,
        pooling=pooling, layer=layer, rc_average=rc_average, rc_concat=rc_concat, max_length=max_length,
    )
    info = {"train_accuracy": float(probe.score(scaler.transform(x_train), y_train)), "C": c}
    if val_rows:
        x_val = embedder.embed([r.sequence for r in val_rows]).astype("float64")
        info["val_accuracy"] = float(probe.score(scaler.transform(x_val), [r.label for r in val_rows]))
    return clf, info


class _BestWeights:
    """Lightning callback keeping a CPU copy of the weights of the best validation epoch."""

    def __new__(cls, monitor: str, mode: str):
        from lightning.pytorch.callbacks import Callback

        class BestWeights(Callback):
            def __init__(self) -> None:
                self.monitor, self.mode = monitor, mode
                self.best: float | None = None
                self.best_epoch: int | None = None
                self.state: dict | None = None
                self.history: list[dict] = []

            def on_validation_epoch_end(self, trainer, pl_module) -> None:
                if trainer.sanity_checking:
                    return
                metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
                self.history.append({"epoch": trainer.current_epoch, **metrics})
                value = metrics.get(self.monitor)
                if value is None:
                    return
                better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
                if better:
                    self.best, self.best_epoch = value, trainer.current_epoch
                    self.state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

        return BestWeights()


def _fit_finetune(lm, datamodule, *, pooling, layer, rc_average, rc_concat, max_length, lr, weight_decay, max_epochs,
                  patience, monitor, accelerator, precision, progress, work_dir, log_dir, logger):
    from lightning.pytorch.callbacks import EarlyStopping

    from genoseq.models.classifier import SequenceClassifier
    from genoseq.pipelines.training import TrainerConfig, make_trainer
    from genoseq.runtime import quiet_lightning

    clf = SequenceClassifier(lm, datamodule.classes, pooling=pooling, layer=layer, rc_average=rc_average, rc_concat=rc_concat,
                             max_length=max_length, lr=lr, weight_decay=weight_decay)
    mode = "min" if monitor == "val/loss" else "max"
    clf.train()  # from_pretrained returns the backbone in eval mode
    best = _BestWeights(monitor, mode)
    config = TrainerConfig(max_steps=-1, val_check_interval=None, accelerator=accelerator, devices=1, precision=precision,
                           gradient_clip_val=0, log_every_n_steps=None)
    trainer = make_trainer(config, job="classify fit", root_dir=work_dir, log_dir=log_dir, csv_name="logs", logger=logger,
                           progress=progress, max_epochs=max_epochs, enable_checkpointing=False,
                           callbacks=[EarlyStopping(monitor=monitor, mode=mode, patience=patience), best])
    with quiet_lightning():
        trainer.fit(clf, datamodule=datamodule)
    if best.state is not None:
        clf.load_state_dict(best.state)
    info = {"best_epoch": best.best_epoch, f"best_{monitor.replace('/', '_')}": best.best,
            "epochs_run": trainer.current_epoch, "history": best.history}
    return clf.cpu().eval(), info


def fit(
    model: str,
    train: str,
    out: str,
    val: str | None = None,
    frozen: bool = False,
    pooling: str = "phase+ends",
    layer: int | None = None,
    rc_average: bool = False,
    rc_concat: bool = True,
    max_length: int | None = None,
    val_fraction: float = 0.1,
    batch_size: int = 32,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    max_epochs: int = 10,
    patience: int = 3,
    monitor: Literal["val/loss", "val/acc"] = "val/loss",
    rc_augment: bool = False,
    probe_c: float = 0.01,
    sequence_column: str = "sequence",
    label_column: str = "label",
    accelerator: str = "auto",
    precision: str | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool | ProgressChoice = "auto",
    logger: LoggerChoice = "csv",
) -> dict:
    """Train a sequence classifier on a language model: fine-tuning, or a frozen probe.

    Fine-tuning trains backbone and head with early stopping on the validation set and keeps the
    best epoch's weights; ``--frozen`` fits a logistic regression on frozen embeddings instead.

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
        pooling: How hidden states become one vector: ``mean``, ``last``, ``echo``, ``phase``
            (a mean per codon phase), ``ends`` (means of the first and last 16 tokens), or a
            ``+`` combination such as ``phase+ends`` (see ``genoseq.models.embedding``).
        layer: Hidden layer: null the final normed output (default), -1 after the last block, k
            after k blocks.
        rc_average: Average the pooled vectors of each sequence and its reverse complement.
        rc_concat: Concatenate them (default; ``--rc_average true`` replaces it): the reverse
            strand's states at the start of a sequence have seen the rest of it, which a causal
            model's forward states have not.
        max_length: Truncate longer sequences to this many bases.
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
        probe_c: Inverse L2 regularisation strength of the probe (scikit-learn's ``C``).
        sequence_column: Sequence column of a table.
        label_column: Label column of a table.
        accelerator: Lightning accelerator for fine-tuning (``auto``, ``cpu``, ``gpu``).
        precision: Lightning precision (default: bf16-mixed on a capable GPU, else 32-true).
        device: Device for embedding with ``--frozen``: ``auto``, ``cpu``, ``cuda:1``, ...
        seed: Seed for initialisation, the validation split, shuffling and strands.
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.
        logger: Fine-tuning's curves: ``csv`` (``out/logs/metrics.csv``, the default) or
            ``tensorboard`` (the CSV too, plus TensorBoard event files in ``out/tensorboard``; needs
            ``pip install 'genoseq[tensorboard]'``). The probe trains no network and logs nothing.

    Returns:
        The training summary also written to ``<out>/training.json``.
    """
    # Over 80 lines for its signature and Args, which are the command's options and help.
    import tempfile

    import lightning as L

    from genoseq.models import GenoSeqLM

    started = time.perf_counter()
    rc_concat = rc_concat and not rc_average  # asking for averaged strands replaces the default concatenation
    L.seed_everything(seed, verbose=False)
    for path in (train, val):
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(2, "No such file or directory", str(path))
    lm = GenoSeqLM.from_pretrained(model)
    summary: dict = {"model": str(model), "train": str(train), "val": val, "method": "probe" if frozen else "finetune",
                     "pooling": pooling, "layer": layer, "rc_average": rc_average, "rc_concat": rc_concat, "seed": seed}
    if frozen:
        train_rows = _read_rows(train, "train", sequence_column, label_column)
        val_rows = _read_rows(val, "test", sequence_column, label_column) if val else []
        if len({r.label for r in train_rows}) < 2:
            raise InputError("training data has fewer than two classes", path=str(train))
        clf, info = _fit_probe(lm, train_rows, val_rows, pooling=pooling, layer=layer, rc_average=rc_average, rc_concat=rc_concat,
                               max_length=max_length, batch_size=batch_size, device=device, c=probe_c,
                               seed=seed, progress=progress)
        summary.update(n_train=len(train_rows), n_val=len(val_rows))
    else:
        from genoseq.datamodules import LabelledSequenceDataModule
        datamodule = LabelledSequenceDataModule(
            train, val=val, val_fraction=val_fraction, sequence_column=sequence_column, label_column=label_column,
            max_length=max_length, rc_augment=rc_augment, batch_size=batch_size, seed=seed,
        )
        datamodule.setup()
        if datamodule.num_classes < 2:
            raise InputError("training data has fewer than two classes", path=str(train))
        if "val" not in datamodule.datasets:
            raise InputError("no validation rows: give --val or a val_fraction > 0 with >= 2 rows per class", path=str(train))
        with tempfile.TemporaryDirectory(prefix="genoseq-classify-") as work_dir:
            clf, info = _fit_finetune(
                lm, datamodule, pooling=pooling, layer=layer, rc_average=rc_average, rc_concat=rc_concat,
                max_length=max_length, lr=lr,
                weight_decay=weight_decay, max_epochs=max_epochs, patience=patience, monitor=monitor,
                accelerator=accelerator, precision=precision, progress=progress, work_dir=work_dir,
                log_dir=out, logger=logger,
            )
        summary.update(n_train=len(datamodule.datasets["train"]), n_val=len(datamodule.datasets["val"]),
                       lr=lr, max_epochs=max_epochs, monitor=monitor)
    summary.update(info, classes=clf.classes, seconds=round(time.perf_counter() - started, 3))
    out_dir = Path(out)
    clf.save_pretrained(out_dir, training=summary)
    from genoseq.runtime import atomic_output

    with atomic_output(out_dir / TRAINING_FILE) as handle:
        handle.write(json.dumps(summary, indent=2) + "\n")
    shown = {k: summary[k] for k in ("train_accuracy", "val_accuracy", "best_val_loss", "best_val_acc", "best_epoch") if k in summary}
    print(f"wrote classifier {out_dir} ({summary['method']}, classes {', '.join(clf.classes)}): {shown}", file=sys.stderr)
    return summary


# ---------------------------------------------------------------------- predict / evaluate
def _load(classifier: str, device: str):
    from genoseq.models.classifier import SequenceClassifier
    from genoseq.runtime import resolve_device

    return SequenceClassifier.from_pretrained(classifier).to(resolve_device(device))


def read_inputs(path: str, split: str, sequence_column: str, label_column: str):
    """Names, sequences and labels (None when unlabelled) from a table, GenomicBenchmarks folder or FASTA."""
    from genoseq.fasta import is_fasta

    # The one reader of "sequences, maybe labelled" lives with `genoseq embed`; it belongs in
    # genoseq.tables (shared by both jobs) and is imported from there once it moves.
    from genoseq.tables import read_sequences

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    fasta = p.is_file() and is_fasta(p)
    inputs = read_sequences(
        fasta=p if fasta else None, tsv=None if fasta else p,
        split=split, sequence_column=sequence_column, label_column=label_column,
    )
    return inputs.names, inputs.sequences, inputs.labels


def _write_predictions(path: Path, names, labels, classes, proba) -> list[str]:
    import numpy as np

    from genoseq.runtime import atomic_output

    predicted = [classes[i] for i in np.argmax(proba, axis=1)]
    with atomic_output(path) as handle:
        columns = ["name"] + (["label"] if labels is not None else []) + ["predicted"] + [f"p_{c}" for c in classes]
        handle.write("\t".join(columns) + "\n")
        for i, name in enumerate(names):
            row = [name] + ([labels[i]] if labels is not None else []) + [predicted[i]]
            row += [f"{p:.6g}" for p in proba[i]]
            handle.write("\t".join(row) + "\n")
    return predicted


def predict(
    classifier: str,
    input: str,
    out: str,
    batch_size: int = 32,
    split: str = "test",
    sequence_column: str = "sequence",
    label_column: str = "label",
    device: str = "auto",
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Predict classes: a TSV with name, label (when known), predicted label and p_<class> columns.

    Args:
        classifier: Classifier directory written by ``genoseq classify fit``.
        input: TSV/CSV (``sequence`` column; ``label`` and ``name`` optional), GenomicBenchmarks
            folder or FASTA file.
        out: TSV to write.
        batch_size: Sequences per forward pass.
        split: Split to read from a GenomicBenchmarks folder.
        sequence_column: Sequence column of a table.
        label_column: Label column of a table.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``, ...
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.

    Returns:
        A summary: number of sequences, classes, output path.
    """
    names, sequences, labels = read_inputs(input, split, sequence_column, label_column)
    clf = _load(classifier, device)
    proba = clf.predict_proba(sequences, batch_size=batch_size, progress=progress)
    _write_predictions(Path(out), names, labels, clf.classes, proba)
    print(f"wrote {out}: {len(names)} predictions over classes {', '.join(clf.classes)}", file=sys.stderr)
    return {"out": str(out), "n": len(names), "classes": clf.classes}


def classification_metrics(labels: list[str], proba, classes: list[str]) -> dict:
    """Accuracy, MCC, macro F1, one-vs-rest AUROC and the confusion matrix (sklearn.metrics)."""
    import numpy as np
    from sklearn import metrics

    proba = np.asarray(proba, dtype=np.float64)
    predicted = [classes[i] for i in proba.argmax(1)]
    y = np.array([classes.index(label) for label in labels])
    present = sorted(set(y.tolist()))
    auroc: float | None = None
    per_class_auroc: dict[str, float] = {}
    for k in present:
        if 0 < (y == k).sum() < len(y):
            per_class_auroc[classes[k]] = float(metrics.roc_auc_score(y == k, proba[:, k]))
    if len(present) == 2 and len(classes) == 2:
        auroc = float(metrics.roc_auc_score(y, proba[:, 1]))
    elif len(present) == len(classes):
        auroc = float(metrics.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=list(range(len(classes)))))
    elif per_class_auroc:  # some class absent from the labels: mean over the classes present
        auroc = float(np.mean(list(per_class_auroc.values())))
    return {
        "n": len(labels),
        "classes": classes,
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "mcc": float(metrics.matthews_corrcoef(labels, predicted)),
        "macro_f1": float(metrics.f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)),
        "auroc_ovr": auroc,
        "auroc_per_class": per_class_auroc,
        "confusion_matrix": metrics.confusion_matrix(labels, predicted, labels=classes).tolist(),
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
    }


def _plot_roc(path: Path, labels: list[str], proba, classes: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import auc, roc_curve

    from genoseq.runtime import atomic_path

    y = np.array([classes.index(label) for label in labels])
    fig, ax = plt.subplots(figsize=(5, 5))
    for k, name in enumerate(classes):
        if not 0 < (y == k).sum() < len(y):
            continue
        fpr, tpr, _ = roc_curve(y == k, proba[:, k])
        ax.plot(fpr, tpr, label=f"{name} vs rest (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def evaluate(
    classifier: str,
    input: str,
    out: str,
    batch_size: int = 32,
    split: str = "test",
    sequence_column: str = "sequence",
    label_column: str = "label",
    device: str = "auto",
    progress: bool | ProgressChoice = "auto",
) -> dict:
    """Evaluate a classifier on labelled data: metrics.json, predictions, confusion matrix, ROC plot.

    Args:
        classifier: Classifier directory written by ``genoseq classify fit``.
        input: Labelled TSV/CSV or GenomicBenchmarks folder (its ``split``).
        out: Report directory to write (``metrics.json``, ``predictions.tsv``,
            ``confusion_matrix.tsv``, ``roc.png``).
        batch_size: Sequences per forward pass.
        split: Split to read from a GenomicBenchmarks folder.
        sequence_column: Sequence column of a table.
        label_column: Label column of a table.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:1``, ...
        progress: ``auto`` (a live bar on a terminal, plain progress lines in a log file), ``bar``, ``lines`` or ``none``.

    Returns:
        The metrics also written to ``metrics.json``.
    """
    from genoseq.runtime import atomic_output

    rows = _read_rows(input, split, sequence_column, label_column)
    clf = _load(classifier, device)
    unknown = sorted({r.label for r in rows} - set(clf.classes))
    if unknown:
        raise InputError(f"labels not among the classifier's classes {clf.classes}: {unknown}", path=str(input))
    labels = [r.label for r in rows]
    names = [r.extra.get("name") or r.extra.get("id") or f"row{i + 1}" for i, r in enumerate(rows)]
    proba = clf.predict_proba([r.sequence for r in rows], batch_size=batch_size, progress=progress)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_predictions(out_dir / "predictions.tsv", names, labels, clf.classes, proba)
    result = {"classifier": str(classifier), "input": str(input), "method": clf.method,
              **classification_metrics(labels, proba, clf.classes)}
    with atomic_output(out_dir / "confusion_matrix.tsv") as handle:
        handle.write("true\\predicted\t" + "\t".join(clf.classes) + "\n")
        for name, row in zip(clf.classes, result["confusion_matrix"]):
            handle.write(name + "\t" + "\t".join(str(v) for v in row) + "\n")
    _plot_roc(out_dir / "roc.png", labels, proba, clf.classes, f"{Path(classifier).name} on {Path(input).name}")
    with atomic_output(out_dir / "metrics.json") as handle:
        handle.write(json.dumps(result, indent=2) + "\n")
    auroc = "n/a" if result["auroc_ovr"] is None else f"{result['auroc_ovr']:.3f}"
    print(f"wrote {out_dir}: n={result['n']} accuracy {result['accuracy']:.3f}, MCC {result['mcc']:.3f}, "
          f"macro F1 {result['macro_f1']:.3f}, AUROC {auroc}", file=sys.stderr)
    return result


__all__ = ["classification_metrics", "evaluate", "fit", "predict"]
