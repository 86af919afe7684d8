"""Region classification (upstream / coding / downstream) on real E. coli regions, end to end."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest
from sklearn import metrics

from genoseq.cli import main
from genoseq.errors import InputError
from genoseq.models.classifier import SequenceClassifier
from genoseq.options import TableInput
from genoseq.pipelines.classify import evaluate, fit, predict
from genoseq.tasks.classification import classification_metrics

CLASSES = ["coding", "downstream", "upstream"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("classify")


@pytest.fixture(scope="module")
def tables(data_dir, workdir):
    """300 training and 90 test rows of ecoli_regions.tsv.gz (disjoint)."""
    with gzip.open(data_dir / "ecoli_regions.tsv.gz", "rt") as handle:
        lines = handle.read().splitlines()
    header, rows = lines[0], lines[1:]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    train, test = workdir / "train.tsv", workdir / "test.tsv"
    train.write_text(header + "\n" + "\n".join(rows[i] for i in order[:300]) + "\n")
    test.write_text(header + "\n" + "\n".join(rows[i] for i in order[300:390]) + "\n")
    return train, test


@pytest.fixture(scope="module")
def model_dir(workdir, tiny_lm):
    return tiny_lm().save_pretrained(workdir / "model")


@pytest.fixture(scope="module")
def probe_dir(model_dir, tables, workdir):
    out = workdir / "probe"
    summary = fit(str(model_dir), str(tables[0]), str(out), frozen=True, embedding={"pooling": "mean"}, device="cpu",
                  progress=False)
    assert summary["method"] == "probe" and summary["n_train"] == 300
    return out


@pytest.fixture(scope="module")
def finetuned_dir(model_dir, tables, workdir):
    out = workdir / "finetuned"
    summary = fit(str(model_dir), str(tables[0]), str(out), max_epochs=3, patience=2, lr=2e-3, batch_size=32,
                  accelerator="cpu", progress=False)
    assert summary["method"] == "finetune"
    return out, summary


def read_tsv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_probe_head_reproduces_sklearn(model_dir, tables):
    """The folded linear head gives the logistic regression's own probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from genoseq.models import GenoSeqLM
    from genoseq.models.embedding import Embedder
    from genoseq.tables import read_labelled

    rows = read_labelled(tables[0])[:120]
    lm = GenoSeqLM.from_pretrained(model_dir)
    for options in ({}, {"pooling": "phase+ends", "rc_concat": True}):
        x = Embedder(lm, device="cpu", **options).embed([r.sequence for r in rows]).astype(np.float64)
        for labels in ([r.label for r in rows], ["coding" if r.label == "coding" else "other" for r in rows]):
            scaler = StandardScaler().fit(x)
            lr = LogisticRegression(max_iter=5000).fit(scaler.transform(x), labels)
            clf = SequenceClassifier.from_probe(lm, list(lr.classes_), lr.coef_, lr.intercept_, scaler.mean_,
                                                scaler.scale_, **options)
            assert clf.embed_dim == x.shape[1]
            ours = clf.predict_proba([r.sequence for r in rows])
            np.testing.assert_allclose(ours, lr.predict_proba(scaler.transform(x)), atol=1e-4)


def test_probe_saves_without_pickle_and_predicts(probe_dir, tables, workdir):
    config = json.loads((probe_dir / "config.json").read_text())
    assert config["model_type"] == "GenoSeqClassifier" and config["classifier"]["classes"] == CLASSES
    assert config["classifier"]["method"] == "probe"
    assert sorted(p.name for p in probe_dir.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json", "training.json"]
    out = workdir / "probe_pred.tsv"
    predict(str(probe_dir), TableInput(str(tables[1])), str(out), device="cpu", progress=False)
    rows = read_tsv(out)
    assert len(rows) == 90 and list(rows[0]) == ["name", "label", "predicted"] + [f"p_{c}" for c in CLASSES]
    proba = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-4)
    assert [r["predicted"] for r in rows] == [CLASSES[i] for i in proba.argmax(1)]


def test_finetune_trains_and_keeps_the_best_epoch(finetuned_dir):
    out, summary = finetuned_dir
    history = summary["history"]
    assert 1 <= len(history) <= 3 and summary["n_val"] == 30 and summary["n_train"] == 270  # stratified 10%
    losses = [h["val/loss"] for h in history]
    assert summary["best_val_loss"] == pytest.approx(min(losses))
    assert summary["best_epoch"] == history[int(np.argmin(losses))]["epoch"]
    clf = SequenceClassifier.from_pretrained(out)
    assert clf.classes == CLASSES and clf.method == "finetune"


def test_finetuned_weights_round_trip(finetuned_dir, tables):
    from genoseq.tables import read_labelled

    out, _ = finetuned_dir
    seqs = [r.sequence for r in read_labelled(tables[1])[:12]]
    a = SequenceClassifier.from_pretrained(out).predict_proba(seqs)
    b = SequenceClassifier.from_pretrained(out).predict_proba(seqs)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (12, 3) and not np.allclose(a, a[0])  # depends on the sequence


@pytest.mark.parametrize("which", ["probe", "finetuned"])
def test_evaluate_metrics_agree_with_sklearn(which, probe_dir, finetuned_dir, tables, workdir):
    clf_dir = probe_dir if which == "probe" else finetuned_dir[0]
    report = workdir / f"report_{which}"
    result = evaluate(str(clf_dir), TableInput(str(tables[1])), str(report), device="cpu", progress=False)
    assert json.loads((report / "metrics.json").read_text())["accuracy"] == result["accuracy"]
    assert (report / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_tsv(report / "predictions.tsv")
    y = [r["label"] for r in rows]
    pred = [r["predicted"] for r in rows]
    proba = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    assert result["mcc"] == pytest.approx(metrics.matthews_corrcoef(y, pred))
    assert result["macro_f1"] == pytest.approx(metrics.f1_score(y, pred, average="macro"))
    assert result["auroc_ovr"] == pytest.approx(metrics.roc_auc_score(y, proba, multi_class="ovr", labels=CLASSES), abs=1e-4)
    assert result["confusion_matrix"] == metrics.confusion_matrix(y, pred, labels=CLASSES).tolist()
    assert sum(map(sum, result["confusion_matrix"])) == 90
    cm_lines = (report / "confusion_matrix.tsv").read_text().splitlines()
    assert cm_lines[0].split("\t")[1:] == CLASSES and len(cm_lines) == 4


def test_binary_metrics_use_the_positive_class():
    labels = ["a", "b", "b", "a", "b"]
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    result = classification_metrics(labels, proba, ["a", "b"])
    assert result["auroc_ovr"] == pytest.approx(metrics.roc_auc_score([0, 1, 1, 0, 1], proba[:, 1]))
    assert result["accuracy"] == pytest.approx(0.6)


def test_cli_fit_predict_evaluate_and_bad_input(model_dir, probe_dir, tables, workdir, capsys):
    out = workdir / "cli_probe"
    assert main(["classify", "fit", "--model", str(model_dir), "--train", str(tables[0]), "--val", str(tables[1]),
                 "--out", str(out), "--frozen", "true", "--pooling", "echo", "--device", "cpu", "--progress", "false"]) == 0
    training = json.loads((out / "training.json").read_text())
    assert training["n_val"] == 90 and 0.0 <= training["val_accuracy"] <= 1.0
    assert main(["classify", "predict", "--classifier", str(out), "--input", str(tables[1]),
                 "--out", str(workdir / "cli.tsv"), "--device", "cpu", "--progress", "false"]) == 0
    assert len(read_tsv(workdir / "cli.tsv")) == 90

    bad = workdir / "bad.tsv"
    bad.write_text("sequence\tlabel\nACGT\tcoding\nACGZ\tupstream\n")
    assert main(["classify", "evaluate", "--classifier", str(probe_dir), "--input", str(bad),
                 "--out", str(workdir / "bad_report")]) == 2
    assert "bad.tsv" in capsys.readouterr().err and not (workdir / "bad_report" / "metrics.json").exists()
    unknown = workdir / "unknown.tsv"
    unknown.write_text("sequence\tlabel\nACGTACGT\tpromoter\n")
    assert main(["classify", "evaluate", "--classifier", str(probe_dir), "--input", str(unknown),
                 "--out", str(workdir / "bad_report")]) == 2
    assert main(["classify", "predict", "--classifier", str(workdir / "nowhere"), "--input", str(tables[1]),
                 "--out", str(workdir / "x.tsv")]) == 2


def test_probe_with_phase_ends_and_both_strands_round_trips(model_dir, tables, workdir):
    out = workdir / "probe_phase_ends"
    summary = fit(str(model_dir), str(tables[0]), str(out), frozen=True,
                  embedding={"pooling": "phase+ends", "rc_concat": True, "layer": None}, device="cpu", progress=False)
    assert (summary["pooling"], summary["rc_concat"]) == ("phase+ends", True)
    clf = SequenceClassifier.from_pretrained(out)
    assert (clf.pooling, clf.rc_concat, clf.layer, clf.embed_dim) == ("phase+ends", True, None, 2 * 5 * 32)
    preds = workdir / "probe_phase_ends.tsv"
    predict(str(out), TableInput(str(tables[1])), str(preds), device="cpu", progress=False)
    rows = read_tsv(preds)
    accuracy = np.mean([r["predicted"] == r["label"] for r in rows])
    assert len(rows) == 90 and accuracy > 1 / len(CLASSES)  # an untrained backbone still beats chance here
    averaged = fit(str(model_dir), str(tables[0]), str(workdir / "probe_rc_average"), frozen=True,
                   embedding={"rc_average": True}, device="cpu", progress=False)  # averaging replaces the default concatenation
    assert (averaged["rc_average"], averaged["rc_concat"]) == (True, False)
    assert SequenceClassifier.from_pretrained(workdir / "probe_rc_average").embed_dim == 5 * 32


def test_fine_tuning_follows_the_one_schedule(tiny_lm):
    """Warmup then cosine to a tenth of the peak: OptimConfig.lr_factor, the language model's schedule."""
    from genoseq.models.config import OptimConfig
    from genoseq.models.optim import FINETUNE_DEFAULT_STEPS

    scheduler = SequenceClassifier(tiny_lm(), CLASSES, lr=1e-3, warmup_ratio=0.1).configure_optimizers()["lr_scheduler"]
    factor = scheduler["scheduler"].lr_lambdas[0]
    expected = OptimConfig(lr=1e-3, warmup_steps=FINETUNE_DEFAULT_STEPS // 10, min_lr_ratio=0.1)
    for step in (0, 500, 999, 1000, 5000, FINETUNE_DEFAULT_STEPS):
        assert factor(step) == expected.lr_factor(step, FINETUNE_DEFAULT_STEPS)
    assert factor(0) == pytest.approx(1 / 1000) and factor(FINETUNE_DEFAULT_STEPS) == pytest.approx(0.1)


def test_fine_tuning_killed_with_sigkill_resumes_to_the_same_weights(finetuned_dir, model_dir, tables, workdir):
    """A fine-tuning killed with SIGKILL after an epoch's checkpoint (here as its third epoch
    starts) and rerun with --resume true ends with the weights, best epoch and history of the
    uninterrupted run (finetuned_dir: the same options); the checkpoints go when it ends."""
    import torch

    from genoseq.models.resume import checkpoint_dir
    from sigkill import sigkill_at_epoch

    out = workdir / "resumed"
    options = dict(max_epochs=3, patience=2, lr=2e-3, batch_size=32, accelerator="cpu", progress=False)
    sigkill_at_epoch("genoseq.pipelines.classify.fit", [model_dir, tables[0], out], options, 2, workdir / "killed.log")
    assert (checkpoint_dir(out) / "last.ckpt").is_file()
    with pytest.raises(InputError, match="add --resume true to continue it"):  # never clobbered unasked
        fit(str(model_dir), str(tables[0]), str(out), **options)
    summary = fit(str(model_dir), str(tables[0]), str(out), resume=True, **options)
    straight_dir, straight = finetuned_dir
    assert summary["history"] == straight["history"] and summary["best_epoch"] == straight["best_epoch"]
    a, b = SequenceClassifier.from_pretrained(straight_dir), SequenceClassifier.from_pretrained(out)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not checkpoint_dir(out).exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        fit(str(model_dir), str(tables[0]), str(out), resume=True, **options)
    with pytest.raises(InputError, match="a probe trains without checkpoints"):
        fit(str(model_dir), str(tables[0]), str(out), frozen=True, resume=True)
