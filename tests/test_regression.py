"""Regression and multi-task heads (``genoseq classify --task regression``) on targets with a known
answer: the GC fraction and CpG observed/expected ratio of real genome windows, learned on
E. coli and checked on S. aureus (another genus, 33% GC against E. coli's 51%)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn import metrics

import genoseq
from genoseq.cli import main
from genoseq.errors import InputError
from genoseq.genome import open_genome
from genoseq.models.classifier import SequenceClassifier
from genoseq.options import TableInput
from genoseq.pipelines.classify import evaluate, fit, predict
from genoseq.tasks.regression import regression_metrics
from genoseq.tokenizer import Tokenizer

WINDOW = 160
TARGETS = ["gc", "cpg"]


def gc_and_cpg(seq: str) -> tuple[float, float]:
    """GC fraction and CpG observed/expected ratio (n_CG * L / (n_C * n_G)) of an ACGT window."""
    c, g = seq.count("C"), seq.count("G")
    cg = sum(1 for i in range(len(seq) - 1) if seq[i : i + 2] == "CG")
    return (c + g) / len(seq), cg * len(seq) / max(c * g, 1)


def genome_windows(fasta, n: int, seed: int) -> list[str]:
    """``n`` random ACGT-only windows from the first 1 Mb of the genome's first contig."""
    genome = open_genome(fasta)
    contig = next(iter(genome.contigs))
    rng = np.random.default_rng(seed)
    tokenizer, found = Tokenizer(), []
    while len(found) < n:
        start = int(rng.integers(0, 1_000_000 - WINDOW))
        seq = tokenizer.decode(genome.fetch(contig, start, start + WINDOW))
        if set(seq) <= set("ACGT"):
            found.append(seq)
    return found


def write_table(path, seqs, columns=TARGETS):
    with open(path, "w") as handle:
        handle.write("name\tsequence\t" + "\t".join(columns) + "\n")
        for i, seq in enumerate(seqs):
            values = dict(zip(TARGETS, gc_and_cpg(seq)))
            handle.write(f"w{i}\t{seq}\t" + "\t".join(f"{values[c]:.6f}" for c in columns) + "\n")
    return path


def read_tsv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("regression")


@pytest.fixture(scope="module")
def tables(ecoli_fasta, saureus_fasta, workdir):
    """240 E. coli training windows and 100 S. aureus test windows with their gc and cpg."""
    return (write_table(workdir / "ecoli.tsv", genome_windows(ecoli_fasta, 240, 0)),
            write_table(workdir / "saureus.tsv", genome_windows(saureus_fasta, 100, 1)))


@pytest.fixture(scope="module")
def model_dir(workdir, tiny_lm):
    return tiny_lm().save_pretrained(workdir / "model")


# Layer 1 (after the first block): its short convolution sees neighbouring bases, so the pooled
# states carry dinucleotide counts; one plain mean of the forward strand keeps the test fast.
PROBE = {"embedding": {"pooling": "mean", "layer": 1, "rc_concat": False}, "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def probe_dir(model_dir, tables, workdir):
    out = workdir / "probe"
    summary = fit(str(model_dir), str(tables[0]), str(out), frozen=True, task="regression", target_columns=TARGETS, **PROBE)
    assert summary["task"] == "regression" and summary["targets"] == TARGETS and summary["n_train"] == 240
    return out


def test_ridge_probe_folds_into_the_head_exactly(model_dir, tables):
    """The head reproduces scikit-learn's ridge on standardised embeddings, for each loss's link."""
    from sklearn.linear_model import PoissonRegressor, Ridge
    from sklearn.preprocessing import StandardScaler

    from genoseq.models import GenoSeqLM
    from genoseq.models.embedding import Embedder
    from genoseq.tables import read_labelled

    rows = read_labelled(tables[0], label_column=None)[:80]
    seqs = [r.sequence for r in rows]
    y = np.array([[float(r.extra[t]) for t in TARGETS] for r in rows])
    lm = GenoSeqLM.from_pretrained(model_dir)
    x = Embedder(lm, device="cpu").embed(seqs).astype(np.float64)
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    mean, std = np.log1p(y).mean(0), np.log1p(y).std(0)
    ridge = Ridge(alpha=3.0).fit(xs, (np.log1p(y) - mean) / std)
    model = SequenceClassifier.from_regression_probe(lm, TARGETS, ridge.coef_, ridge.intercept_, scaler.mean_,
                                                     scaler.scale_, loss="log", target_mean=mean, target_std=std)
    expected = np.expm1(ridge.predict(xs) * std + mean)
    np.testing.assert_allclose(model.predict_values(seqs), expected, rtol=1e-4, atol=1e-5)

    counts = np.array([[s.count("CG")] for s in seqs], dtype=np.float64)
    glm = PoissonRegressor(alpha=0.1, max_iter=1000).fit(xs, counts[:, 0])
    poisson = SequenceClassifier.from_regression_probe(lm, ["cg"], glm.coef_[None], [glm.intercept_], scaler.mean_,
                                                       scaler.scale_, loss="poisson")
    np.testing.assert_allclose(poisson.predict_values(seqs)[:, 0], glm.predict(xs), rtol=1e-4)
    with pytest.raises(InputError, match="predicts values"):
        poisson.predict_proba(seqs)


def test_losses_and_links_match_their_definitions():
    from genoseq.models import GenoSeqLM, ModelConfig

    lm = GenoSeqLM(ModelConfig(d_model=16, pattern="A", n_heads=2))
    link = torch.tensor([[0.5, -1.0], [2.0, 0.1]])
    y = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    mse = SequenceClassifier(lm, task="regression", targets=["a", "b"], target_mean=[0.0, 1.0], target_std=[2.0, 0.5])
    assert mse.regression_loss(link, y).item() == pytest.approx((((link - y) / torch.tensor([2.0, 0.5])) ** 2).mean().item())
    log = SequenceClassifier(lm, task="regression", targets=["a", "b"], loss="log")
    assert log.regression_loss(link, y).item() == pytest.approx(((link - torch.log1p(y)) ** 2).mean().item())
    assert torch.allclose(log.to_target_scale(torch.log1p(y)), y)
    poisson = SequenceClassifier(lm, task="regression", targets=["a", "b"], loss="poisson", target_mean=[np.log(2.0), 0.0])
    deviance = torch.exp(link) - y * link  # Poisson NLL without the constant log(y!)
    assert poisson.regression_loss(link, y).item() == pytest.approx((deviance / torch.tensor([2.0, 1.0])).mean().item())
    assert torch.allclose(poisson.to_target_scale(link), torch.exp(link))
    with pytest.raises(ValueError, match="target_std"):
        SequenceClassifier(lm, task="regression", targets=["a"], target_std=[0.0])
    with pytest.raises(ValueError, match="not classes"):
        SequenceClassifier(lm, ["x", "y"], task="regression", targets=["a"])


def test_multitask_probe_learns_gc_and_cpg_of_another_genus(probe_dir, tables, workdir):
    """Trained on E. coli windows, evaluated on S. aureus windows; metrics agree with scipy/sklearn."""
    config = json.loads((probe_dir / "config.json").read_text())
    assert config["format_version"] == 2 and config["classifier"]["task"] == "regression"
    assert config["classifier"]["targets"] == TARGETS and config["classifier"]["loss"] == "mse"
    report = workdir / "report"
    result = evaluate(str(probe_dir), TableInput(str(tables[1])), str(report), device="cpu", progress=False)
    assert json.loads((report / "metrics.json").read_text()) == result
    gc, cpg = result["per_target"]["gc"], result["per_target"]["cpg"]
    # GC is linear in pooled base counts: near perfect even on a genome of another GC content.
    # The CpG ratio is a quotient of dinucleotide and base counts: a random tiny model's layer-1
    # states reach about 0.75 (measured); 0.5 leaves room for platform rounding.
    assert gc["pearson"] >= 0.99 and gc["r2"] >= 0.95, gc
    assert cpg["pearson"] >= 0.5, cpg
    rows = read_tsv(report / "predictions.tsv")
    assert list(rows[0]) == ["name", "gc", "cpg", "predicted_gc", "predicted_cpg"] and len(rows) == 100
    for target in TARGETS:
        y = np.array([float(r[target]) for r in rows])
        p = np.array([float(r[f"predicted_{target}"]) for r in rows])
        m = result["per_target"][target]
        assert m["pearson"] == pytest.approx(stats.pearsonr(y, p)[0], abs=1e-4)
        assert m["spearman"] == pytest.approx(stats.spearmanr(y, p)[0], abs=1e-3)
        assert m["r2"] == pytest.approx(metrics.r2_score(y, p), abs=1e-3)
        assert m["mse"] == pytest.approx(metrics.mean_squared_error(y, p), rel=1e-3)
        assert (report / f"scatter_{target}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["mean_pearson"] == pytest.approx((gc["pearson"] + cpg["pearson"]) / 2)


def test_predict_writes_one_column_per_target(probe_dir, tables, workdir):
    out = workdir / "pred.tsv"
    predict(str(probe_dir), TableInput(str(tables[1])), str(out), device="cpu", progress=False)
    rows = read_tsv(out)
    assert [r["name"] for r in rows[:2]] == ["w0", "w1"] and "predicted_cpg" in rows[0]
    seqs = [r["sequence"] for r in read_tsv(tables[1])]
    fasta = workdir / "windows.fa"
    fasta.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs[:5])))
    predict(str(probe_dir), TableInput(str(fasta)), str(workdir / "pred_fa.tsv"), device="cpu", progress=False)
    from_fasta = read_tsv(workdir / "pred_fa.tsv")
    assert list(from_fasta[0]) == ["name", "predicted_gc", "predicted_cpg"]
    model = genoseq.load(probe_dir, device="cpu")
    assert model.targets == TARGETS and model.task == "regression"
    values = model.predict(seqs[:5])
    assert values.shape == (5, 2)
    np.testing.assert_allclose(values, [[float(r["predicted_gc"]), float(r["predicted_cpg"])] for r in from_fasta], rtol=1e-4)
    np.testing.assert_allclose(model.predict(seqs[0]), values[0], rtol=1e-4)  # batched alone: float rounding


def test_finetune_learns_gc(model_dir, tables, workdir):
    out = workdir / "finetuned"
    summary = fit(str(model_dir), str(tables[0]), str(out), task="regression", target_column="gc",
                  embedding={"pooling": "mean", "rc_concat": False}, max_epochs=4, patience=4, lr=3e-3, batch_size=16, accelerator="cpu", progress=False)
    assert summary["method"] == "finetune" and summary["n_val"] == 24 and summary["n_train"] == 216
    losses = [h["val/loss"] for h in summary["history"]]
    assert summary["best_val_loss"] == pytest.approx(min(losses))
    # standardised MSE: 1.0 is predicting the training mean; the fine-tuned head must do far better
    assert min(losses) < 0.5, losses
    assert summary["val_metrics"]["gc"]["pearson"] >= 0.8, summary["val_metrics"]
    model = SequenceClassifier.from_pretrained(out)
    assert model.targets == ["gc"] and model.method == "finetune"
    assert model.predict_values(["ACGT" * 20]).shape == (1, 1)


def test_old_classifier_folders_still_load(model_dir, workdir):
    """A classifier folder written before regression (no ``task`` in its config) is a classifier."""
    from genoseq.models import GenoSeqLM

    clf = SequenceClassifier(GenoSeqLM.from_pretrained(model_dir), ["a", "b"])
    out = clf.save_pretrained(workdir / "old_clf")
    config = json.loads((out / "config.json").read_text())
    assert config["format_version"] == 1
    del config["classifier"]["task"]
    (out / "config.json").write_text(json.dumps(config))
    loaded = SequenceClassifier.from_pretrained(out)
    assert loaded.task == "classification" and loaded.classes == ["a", "b"] and loaded.targets == []
    np.testing.assert_allclose(loaded.predict_proba(["ACGTACGT"]), clf.predict_proba(["ACGTACGT"]), atol=1e-6)


def test_regression_metrics_handle_constant_predictions():
    result = regression_metrics(np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [2.0], [2.0]]), ["x"])
    assert result["per_target"]["x"]["pearson"] is None and result["per_target"]["x"]["r2"] == pytest.approx(0.0)
    assert result["per_target"]["x"]["mse"] == pytest.approx(2 / 3)


def test_bad_input_exits_2_and_writes_nothing(model_dir, probe_dir, tables, workdir, capsys):
    base = ["classify", "fit", "--model", str(model_dir), "--frozen", "true", "--device", "cpu", "--progress", "false",
            "--pooling", "mean", "--rc_concat", "false"]
    header = "sequence\tgc\n"
    cases = {
        "text.tsv": (header + "ACGTACGT\t0.5\nACGTTT\tmany\n", ["--target_column", "gc"], ["line 3", "'gc'", "many"]),
        "nan.tsv": (header + "ACGTACGT\tnan\n", ["--target_column", "gc"], ["line 2", "finite"]),
        "inf.tsv": (header + "ACGTACGT\t0.5\nACGTAC\tinf\n", ["--target_column", "gc"], ["line 3", "finite"]),
        "missing.tsv": (header + "ACGTACGT\t0.5\n", ["--target_column", "cpg"], ["missing target column 'cpg'"]),
        "negative.tsv": (header + "ACGTACGT\t2\nACGTAC\t-1\n", ["--target_column", "gc", "--loss", "poisson"],
                         ["line 3", "negative"]),
        "constant.tsv": (header + "ACGTACGT\t0.5\nACGTAC\t0.5\n", ["--target_column", "gc"], ["same value"]),
    }
    for name, (text, options, words) in cases.items():
        path = workdir / name
        path.write_text(text)
        out = workdir / f"bad_{name}"
        assert main(base + ["--train", str(path), "--out", str(out), "--task", "regression", *options]) == 2, name
        err = capsys.readouterr().err
        assert name in err and all(w in err for w in words), (name, err)
        assert not out.exists(), name
    good = str(tables[0])
    wrong_task = [
        (["--task", "regression", "--target_column", "gc", "--monitor", "val/acc"], "--monitor val/acc"),
        (["--task", "regression", "--target_column", "gc", "--probe_c", "1"], "--probe_c"),
        (["--task", "regression", "--target_column", "gc", "--label_column", "gc"], "--label_column"),
        (["--task", "regression"], "--target_column"),
        (["--task", "regression", "--target_column", "gc", "--target_columns", "[cpg]"], "not both"),
        (["--target_column", "gc"], "--task regression"),
        (["--loss", "poisson"], "--task regression"),
    ]
    for options, words in wrong_task:
        out = workdir / "bad_options"
        assert main(base + ["--train", good, "--out", str(out), *options]) == 2, options
        assert words in capsys.readouterr().err and not out.exists(), options
    # evaluate needs the targets; a FASTA file has none
    fasta = workdir / "plain.fa"
    fasta.write_text(">a\nACGTACGTAA\n")
    assert main(["classify", "evaluate", "--classifier", str(probe_dir), "--input", str(fasta),
                 "--out", str(workdir / "bad_eval"), "--device", "cpu"]) == 2
    assert "no target values" in capsys.readouterr().err and not (workdir / "bad_eval").exists()


def test_api_answers_values_per_target(model_dir, probe_dir, tables):
    from fastapi.testclient import TestClient

    from genoseq.api import ApiSettings, create_app

    seqs = [r["sequence"] for r in read_tsv(tables[1])[:4]]
    expected = SequenceClassifier.from_pretrained(probe_dir).predict_values(seqs)
    settings = ApiSettings(model=str(model_dir), classifier=str(probe_dir), device="cpu")
    with TestClient(create_app(settings, load_in_background=False)) as client:
        response = client.post("/v1/classify", json={"sequences": seqs})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["task"] == "regression" and body["targets"] == TARGETS and body["classes"] == []
        got = np.array([[p["values"][t] for t in TARGETS] for p in body["predictions"]])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        bad = client.post("/v1/classify", json={"sequences": ["ACGZ"]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "sequences", 0]


def test_fit_on_intervals_of_a_genome(model_dir, ecoli_fasta, saureus_fasta, workdir):
    """``classify fit --genome``: BED intervals of a two-contig genome (E. coli and S. aureus
    pieces), their GC and CpG in BED columns 7-8 or their contig as the class; --val_contigs holds
    one contig out. The interval tables equal what the genome says at those coordinates."""
    tokenizer = Tokenizer()
    pieces = {"ec": open_genome(ecoli_fasta), "sa": open_genome(saureus_fasta)}
    fasta, bed = workdir / "two.fa", workdir / "windows.bed"
    seqs = {}
    with open(fasta, "w") as handle:
        for name, genome in pieces.items():
            seqs[name] = tokenizer.decode(genome.fetch(next(iter(genome.contigs)), 0, 40_000))
            handle.write(f">{name}\n{seqs[name]}\n")
    rng = np.random.default_rng(3)
    with open(bed, "w") as handle:
        for name, seq in seqs.items():
            for i in range(120):
                start = int(rng.integers(0, len(seq) - WINDOW))
                gc, cpg = gc_and_cpg(seq[start:start + WINDOW])
                handle.write(f"{name}\t{start}\t{start + WINDOW}\t{name}_{i}\t0\t+\t{gc:.6f}\t{cpg:.6f}\n")
    out = workdir / "interval_probe"
    summary = fit(str(model_dir), str(bed), str(out), genome=str(fasta), frozen=True, task="regression",
                  target_columns=["7", "8"], val_contigs=["sa"], **PROBE)
    assert summary["interval_counts"][str(bed)]["train"] == 120 and summary["n_train"] == 120
    assert summary["n_val"] == 120 and summary["val_contigs"] == ["sa"]
    val = summary["val_metrics"]["7"]  # GC of the held-out S. aureus contig's windows
    assert val["pearson"] >= 0.99, val
    # the tables are the genome's bases: a class model on the same intervals, read back
    from genoseq.pipelines.classify import interval_tables

    train_tsv, val_tsv, _ = interval_tables(str(fasta), str(bed), None, workdir, targets=None, window_length=100,
                                            stranded=False, val_contigs=None)
    rows = read_tsv(train_tsv)
    assert val_tsv is None and len(rows) == 240 and {r["label"].split("_")[0] for r in rows} == {"ec", "sa"}
    first = open(bed).readline().split("\t")
    centre = (int(first[1]) + int(first[2])) // 2
    assert rows[0]["sequence"] == seqs["ec"][centre - 50:centre + 50]
    # options of interval training without a genome, and a validation contig with no interval
    with pytest.raises(InputError, match="give --genome"):
        fit(str(model_dir), str(bed), str(workdir / "x"), frozen=True, val_contigs=["sa"], **PROBE)
    with pytest.raises(InputError, match="chrZ. is not in the genome"):
        fit(str(model_dir), str(bed), str(workdir / "x"), genome=str(fasta), frozen=True, task="regression",
            target_columns=["7"], val_contigs=["chrZ"], **PROBE)
    assert not (workdir / "x").exists()
