"""genoseq generate sample: constraints, rejection, seeds, oracle selection and refinement, the
report, the old one-command form and bad input. A tiny model with condition tokens and a probe
oracle fitted on real E. coli regions."""

import csv
import gzip
import json

import numpy as np
import pytest
import torch

from genoseq.cli import main, rewrite_generate_args
from genoseq.design import DesignConstraints, gc_content, mean_pairwise_distance, nearest_distances, novelty
from genoseq.fasta import iter_fasta
from genoseq.models.classifier import SequenceClassifier
from genoseq.models.conditional import add_condition_labels
from genoseq.models.config import ModelConfig
from genoseq.models.lm import GenoSeqLM
from genoseq.pipelines.classify import fit as classify_fit
from genoseq.pipelines.generate import sample

TINY = {"d_model": 32, "pattern": "MA", "n_heads": 2, "d_state": 16, "headdim": 16}


@pytest.fixture(scope="module")
def regions(data_dir, tmp_path_factory):
    """300 coding and 300 upstream E. coli regions as a labelled table."""
    with gzip.open(data_dir / "ecoli_regions.tsv.gz", "rt") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    picked = [r for r in rows if r["label"] == "coding"][:300] + [r for r in rows if r["label"] == "upstream"][:300]
    path = tmp_path_factory.mktemp("regions") / "regions.tsv"
    path.write_text("sequence\tlabel\n" + "".join(f"{r['sequence']}\t{r['label']}\n" for r in picked))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, regions):
    torch.manual_seed(0)
    lm = GenoSeqLM(ModelConfig(**TINY))
    add_condition_labels(lm, ["coding", "upstream"])
    out = tmp_path_factory.mktemp("model")
    lm.save_pretrained(out)
    # the reference the report compares against, as `genoseq generate fit` writes it
    with gzip.open(out / "training_sequences.tsv.gz", "wt") as fh:
        fh.write(regions.read_text())
    return out


@pytest.fixture(scope="module")
def oracle_dir(tmp_path_factory, model_dir, regions):
    out = tmp_path_factory.mktemp("oracle")
    classify_fit(str(model_dir), str(regions), str(out), frozen=True, batch_size=64, progress=False, device="cpu")
    return out


def _run(model_dir, out, *options):
    assert main(["generate", "sample", "--model", str(model_dir), "--out", str(out), "--device", "cpu", *options]) == 0
    return [r.sequence for r in iter_fasta(out)], json.loads(out.with_suffix(".json").read_text())


def test_constraints_always_hold_and_rejections_are_reported(model_dir, tmp_path):
    rules = DesignConstraints(gc_min=0.45, gc_max=0.55, forbidden=("GAATTC", "GGATCC", "AAGCT"), max_homopolymer=3)
    seqs, summary = _run(model_dir, tmp_path / "c.fa", "--condition", "coding", "--num", "24", "--length", "80",
                         "--gc_min", "0.45", "--gc_max", "0.55", "--forbid", "[GAATTC,GGATCC,AAGCT]",
                         "--max_homopolymer", "3", "--seed", "3")
    assert len(seqs) == 24 and all(len(s) == 80 for s in seqs)
    assert all(rules.satisfied(s) for s in seqs)
    # motifs and runs are prevented while sampling, so only the GC range ever rejects a design
    assert summary["rejected"] > 0
    assert set(summary["rejected_by_reason"]) <= {"gc_low", "gc_high"}
    assert sum(summary["rejected_by_reason"].values()) == summary["rejected"]
    assert summary["attempts"] >= summary["rejected"] + 24
    assert summary["constraints"] == rules.to_dict() and summary["shortfall"] == 0


def test_an_impossible_budget_reports_the_shortfall_and_no_design_is_an_error(model_dir, tmp_path, capsys):
    seqs, summary = _run(model_dir, tmp_path / "s.fa", "--num", "16", "--length", "60", "--gc_min", "0.48",
                         "--gc_max", "0.52", "--max_attempts", "20", "--seed", "1")
    assert summary["attempts"] == 20 and summary["shortfall"] == 16 - len(seqs) > 0
    assert summary["rejected"] == 20 - len(seqs)
    assert "warning" in capsys.readouterr().err
    assert main(["generate", "sample", "--model", str(model_dir), "--out", str(tmp_path / "none.fa"), "--num", "2",
                 "--length", "50", "--gc_min", "0.99", "--max_attempts", "4", "--device", "cpu"]) == 2
    assert not (tmp_path / "none.fa").exists()


def test_seeds_reproduce(model_dir, tmp_path):
    runs = [_run(model_dir, tmp_path / f"{name}.fa", "--condition", "upstream", "--num", "5", "--length", "50",
                 "--top_k", "3", "--temperature", "0.9", "--seed", str(seed))[0]
            for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    assert runs[0] == runs[1] != runs[2]


def test_oracle_top_k_keeps_the_best_candidates(model_dir, oracle_dir, tmp_path):
    options = ["--condition", "coding", "--length", "60", "--seed", "5", "--oracle", str(oracle_dir)]
    everything, summary_all = _run(model_dir, tmp_path / "all.fa", *options, "--num", "12")
    best, summary_top = _run(model_dir, tmp_path / "top.fa", *options, "--num", "4", "--select", "top-k",
                             "--oversample", "3")
    clf = SequenceClassifier.from_pretrained(oracle_dir)
    p = clf.predict_proba(everything)[:, clf.classes.index("coding")]
    order = np.argsort(-p, kind="stable")
    assert best == [everything[i] for i in order[:4]]  # the same 12 candidates, best 4 kept in order
    with open(tmp_path / "all.tsv") as fh:
        table = list(csv.DictReader(fh, delimiter="\t"))
    assert np.allclose([float(r["oracle_p"]) for r in table], p, rtol=1e-4)
    predicted = np.array(clf.classes)[clf.predict_proba(everything).argmax(1)]
    assert summary_all["success_rate"] == pytest.approx(float(np.mean(predicted == "coding")))
    assert summary_top["oracle_p_mean"] >= summary_all["oracle_p_mean"]


def test_refinement_only_keeps_improvements(model_dir, oracle_dir, tmp_path):
    options = ["--condition", "upstream", "--num", "6", "--length", "60", "--seed", "2", "--oracle", str(oracle_dir),
               "--max_homopolymer", "4"]
    plain, _ = _run(model_dir, tmp_path / "plain.fa", *options)
    refined, summary = _run(model_dir, tmp_path / "refined.fa", *options, "--refine_rounds", "4", "--refine_span", "12")
    clf = SequenceClassifier.from_pretrained(oracle_dir)
    k = clf.classes.index("upstream")
    before, after = clf.predict_proba(plain)[:, k], clf.predict_proba(refined)[:, k]
    assert len(summary["refinement_improved"]) == 4
    assert np.all(after >= before - 1e-9)
    changed = sum(a != b for a, b in zip(plain, refined))
    assert changed > 0 and (after > before + 1e-9).sum() == changed
    assert all(DesignConstraints(max_homopolymer=4).satisfied(s) for s in refined)


def test_report_matches_the_designs(model_dir, regions, tmp_path):
    seqs, summary = _run(model_dir, tmp_path / "r.fa", "--condition", "coding", "--num", "10", "--length", "100",
                         "--seed", "4")
    with open(tmp_path / "r.tsv") as fh:
        table = list(csv.DictReader(fh, delimiter="\t"))
    with open(regions) as fh:
        coding = [r["sequence"] for r in csv.DictReader(fh, delimiter="\t") if r["label"] == "coding"]
    nearest, _ = nearest_distances(seqs, coding)
    assert [int(r["nearest_train_distance"]) for r in table] == nearest.tolist()
    assert [float(r["gc"]) for r in table] == pytest.approx([gc_content(s) for s in seqs], abs=1e-4)
    assert summary["diversity"] == pytest.approx(mean_pairwise_distance(seqs))
    assert summary["novelty"] == novelty(nearest) and summary["reference_size"] == len(coding)
    assert set(summary["kmer_js"]) == {"k3", "k4", "k5", "k6"}
    assert all(0 < v < 1 for v in summary["kmer_js"].values())
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_the_old_one_command_form_still_works(model_dir, tmp_path):
    out = tmp_path / "old.fa"
    assert main(["generate", "--model", str(model_dir), "--prompt", "acgtTG", "--max-new-tokens", "30",
                 "--num_samples", "2", "--seed", "1", "--out", str(out), "--device", "cpu"]) == 0
    seqs = [r.sequence for r in iter_fasta(out)]
    assert len(seqs) == 2 and all(len(s) == 36 and s.startswith("ACGTTG") for s in seqs)
    aliased = tmp_path / "aliased.fa"
    assert main(["generate", "--model", str(model_dir), "--prompt", "acgtTG", "--length=30", "--num", "2",
                 "--seed", "1", "--out", str(aliased), "--device", "cpu"]) == 0
    assert [r.sequence for r in iter_fasta(aliased)] == seqs
    assert sample(str(model_dir), prompt="ACGTTG", max_new_tokens=30, num_samples=2, seed=1, out=str(tmp_path / "api.fa"),
                  device="cpu", report=False)["sequences"] == seqs


def test_argument_rewrite():
    assert rewrite_generate_args(["generate", "--model", "m", "--num", "3"]) == ["generate", "sample", "--model", "m",
                                                                              "--num_samples", "3"]
    assert rewrite_generate_args(["generate", "sample", "--length=5"]) == ["generate", "sample", "--max_new_tokens=5"]
    assert rewrite_generate_args(["generate", "fit", "--num", "3"]) == ["generate", "fit", "--num", "3"]
    assert rewrite_generate_args(["generate", "--help"]) == ["generate", "--help"]
    assert rewrite_generate_args(["score", "--num", "3"]) == ["score", "--num", "3"]


@pytest.mark.parametrize("options, message", [
    (["--condition", "intergenic"], "unknown condition label"),
    (["--forbid", "GANTC"], "forbidden motif"),
    (["--gc_min", "0.6", "--gc_max", "0.4"], "larger than gc_max"),
    (["--prompt", "ACGU"], "position 4"),
    (["--select", "top-k"], "needs --oracle"),
])
def test_bad_input_exits_2(model_dir, tmp_path, capsys, options, message):
    out = tmp_path / "bad.fa"
    assert main(["generate", "sample", "--model", str(model_dir), "--out", str(out), "--device", "cpu", *options]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_oracle_without_the_class_exits_2(model_dir, oracle_dir, tmp_path, capsys):
    assert main(["generate", "sample", "--model", str(model_dir), "--out", str(tmp_path / "x.fa"), "--device", "cpu",
                 "--oracle", str(oracle_dir), "--oracle_class", "downstream"]) == 2
    assert "oracle class 'downstream'" in capsys.readouterr().err
