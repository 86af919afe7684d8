"""genoseq generate fit: condition tokens on a pretrained model, conditional fine-tuning on real
E. coli regions, and that the condition changes what is sampled."""

import csv
import gzip
import json
import random

import numpy as np
import pytest
import torch

from genoseq.cli import main
from genoseq.design import gc_content, js_divergence, kmer_spectrum
from genoseq.models.conditional import add_condition_labels
from genoseq.models.config import ModelConfig
from genoseq.models.inference import sequence_log_likelihood
from genoseq.models.lm import GenoSeqLM
from genoseq.models.resume import checkpoint_dir
from genoseq.pipelines.generate import quantile_bins, sample
from genoseq.tokenizer import NUM_BASE_TOKENS, Tokenizer

# Two attention blocks: the tiny model that learns to read a condition token fastest on a CPU.
TINY = {"d_model": 32, "pattern": "AA", "n_heads": 2}


def _tiny_lm(seed=0, **overrides):
    torch.manual_seed(seed)
    return GenoSeqLM(ModelConfig(**{**TINY, **overrides}))


@pytest.fixture(scope="module")
def split(data_dir, tmp_path_factory):
    """E. coli coding and upstream regions: 400 + 400 to train on, 60 + 60 held out."""
    with gzip.open(data_dir / "ecoli_regions.tsv.gz", "rt") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["label"] in ("coding", "upstream")]
    random.Random(0).shuffle(rows)
    train, held_out = [], {"coding": [], "upstream": []}
    for label in ("coding", "upstream"):
        of_label = [r for r in rows if r["label"] == label]
        train += of_label[:400]
        held_out[label] = [r["sequence"] for r in of_label[400:460]]
    path = tmp_path_factory.mktemp("regions") / "train.tsv"
    path.write_text("sequence\tlabel\n" + "".join(f"{r['sequence']}\t{r['label']}\n" for r in train))
    return path, held_out


@pytest.fixture(scope="module")
def gen_dir(split, tmp_path_factory):
    base = tmp_path_factory.mktemp("base")
    _tiny_lm().save_pretrained(base)
    out = tmp_path_factory.mktemp("gen")
    assert main(["generate", "fit", "--model", str(base), "--train", str(split[0]), "--out", str(out),
                 "--max_epochs", "3", "--batch_size", "4", "--lr", "5e-3", "--warmup_steps", "10", "--patience", "3",
                 "--accelerator", "cpu", "--progress", "false", "--overwrite", "true"]) == 0
    return out


def test_fit_writes_a_released_conditional_model(gen_dir, split):
    metrics = json.loads((gen_dir / "metrics.json").read_text())
    assert metrics["labels"] == ["coding", "upstream"]
    assert metrics["condition_ids"] == {"coding": NUM_BASE_TOKENS, "upstream": NUM_BASE_TOKENS + 1}
    assert metrics["counts"] == {"coding": 400, "upstream": 400}
    assert metrics["n_train"] + metrics["n_val"] == 800 and metrics["n_val"] == 80
    assert metrics["best_val_bits_per_base"] < metrics["val_bits_per_base_before"]
    assert metrics["best_val_bits_per_base"] < 2.0  # better than a uniform guess over four bases
    assert Tokenizer.load(gen_dir).condition_labels == ["coding", "upstream"]
    lm = GenoSeqLM.from_pretrained(gen_dir)
    assert lm.tokenizer.condition_labels == ["coding", "upstream"]
    with gzip.open(gen_dir / "training_sequences.tsv.gz", "rt") as fh:
        assert sum(1 for _ in fh) == 801
    assert not checkpoint_dir(gen_dir).exists()  # the resume checkpoint is not left behind


def test_condition_tokens_change_the_output_distribution(gen_dir, split, tmp_path):
    lm = GenoSeqLM.from_pretrained(gen_dir)
    # held-out real sequences are more likely under their own condition than under the other one
    # (on average for each class; as a likelihood-ratio classifier, right for most sequences)
    right = []
    for label, other in (("coding", "upstream"), ("upstream", "coding")):
        seqs = [lm.tokenizer.encode(s) for s in split[1][label]]
        own = sequence_log_likelihood(lm, [_prefixed(lm, label, ids) for ids in seqs]).log_likelihood
        wrong = sequence_log_likelihood(lm, [_prefixed(lm, other, ids) for ids in seqs]).log_likelihood
        assert (own - wrong).mean() > 0, label
        right += (own > wrong).tolist()
    assert np.mean(right) > 0.65
    # designs: coding regions are GC-richer than upstream ones in E. coli (0.53 vs 0.45)
    designs = {}
    for label in ("coding", "upstream"):
        for seed in (1, 2):
            designs[label, seed] = sample(str(gen_dir), condition=label, num_samples=80, max_new_tokens=200, seed=seed,
                                          out=str(tmp_path / f"{label}{seed}.fa"), device="cpu", report=False)["sequences"]
    gc = {key: np.mean([gc_content(s) for s in seqs]) for key, seqs in designs.items()}
    for seed in (1, 2):
        assert gc["coding", seed] - gc["upstream", seed] > 0.03
    # the dinucleotide spectra of the two classes differ more than two samples of one class do
    spectra = {key: kmer_spectrum(seqs, 2) for key, seqs in designs.items()}
    between = min(js_divergence(spectra["coding", s], spectra["upstream", s]) for s in (1, 2))
    within = max(js_divergence(spectra[label, 1], spectra[label, 2]) for label in ("coding", "upstream"))
    assert between > 2 * within


def _prefixed(lm, label, ids):
    return np.concatenate([[lm.tokenizer.condition_id(label)], ids]).astype(np.int64)


def test_new_condition_ids_do_not_change_pretrained_rows():
    lm = _tiny_lm(seed=3)
    before = {name: p.detach().clone() for name, p in lm.state_dict().items()}
    ids = torch.tensor([[5, 6, 7, 8, 5, 5, 9, 6]])
    logits_before = lm(ids).detach()
    new = add_condition_labels(lm, ["phage", "host"])
    assert new == [NUM_BASE_TOKENS, NUM_BASE_TOKENS + 1]
    weight = lm.backbone.embedding.weight
    assert torch.equal(weight[:NUM_BASE_TOKENS], before["backbone.embedding.weight"][:NUM_BASE_TOKENS])
    assert torch.equal(weight[NUM_BASE_TOKENS + 2 :], before["backbone.embedding.weight"][NUM_BASE_TOKENS + 2 :])
    mean = before["backbone.embedding.weight"][:NUM_BASE_TOKENS].mean(0)
    assert torch.allclose(weight[NUM_BASE_TOKENS], mean) and torch.allclose(weight[NUM_BASE_TOKENS + 1], mean)
    for name, value in lm.state_dict().items():  # nothing else moved
        if "embedding" not in name and "lm_head" not in name:
            assert torch.equal(value, before[name]), name
    # base-token logits on a sequence without condition tokens are unchanged
    assert torch.equal(lm(ids).detach()[..., : NUM_BASE_TOKENS], logits_before[..., : NUM_BASE_TOKENS])
    assert add_condition_labels(lm, ["host"]) == [NUM_BASE_TOKENS + 1]  # known labels keep their ids


def test_the_vocabulary_grows_when_full(tmp_path):
    lm = _tiny_lm(seed=4)
    old = lm.backbone.embedding.weight.detach().clone()
    labels = [f"bin{i}" for i in range(9)]  # 10 fixed + 9 > 16 rows
    add_condition_labels(lm, labels)
    assert lm.config.vocab_size == 24 and lm.backbone.embedding.num_embeddings == 24
    assert lm.lm_head.weight is lm.backbone.embedding.weight  # still tied
    assert torch.equal(lm.backbone.embedding.weight[:NUM_BASE_TOKENS], old[:NUM_BASE_TOKENS])
    lm.save_pretrained(tmp_path)
    loaded = GenoSeqLM.from_pretrained(tmp_path)
    assert loaded.tokenizer.condition_labels == labels
    ids = torch.tensor([[lm.tokenizer.condition_id("bin8"), 5, 6, 7]])
    assert torch.allclose(loaded(ids), lm.eval()(ids))


def test_quantile_bins_by_hand():
    index, edges = quantile_bins([0.1, 0.5, 0.2, 0.9, 0.4, 0.7], 3)
    # sorted: 0.1 0.2 0.4 0.5 0.7 0.9; the 1/3 quantile sits at rank 5/3: 0.2 + 2/3 * (0.4 - 0.2),
    # the 2/3 quantile at rank 10/3: 0.5 + 1/3 * (0.7 - 0.5); a value on an edge goes up
    assert edges == pytest.approx([0.1, 0.2 + 0.2 * 2 / 3, 0.5 + 0.2 / 3, 0.9])
    assert index.tolist() == [0, 1, 0, 2, 1, 2]


def test_fit_bins_a_continuous_activity_column(split, tmp_path):
    # an MPRA-like table: real sequences, "activity" = their GC content
    with open(split[0]) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))[::20]
    table = tmp_path / "mpra.tsv"
    table.write_text("sequence\tactivity\n" + "".join(f"{r['sequence']}\t{gc_content(r['sequence']):.4f}\n" for r in rows))
    base, out = tmp_path / "base", tmp_path / "gen"
    _tiny_lm().save_pretrained(base)
    assert main(["generate", "fit", "--model", str(base), "--train", str(table), "--out", str(out), "--bins", "3",
                 "--max_steps", "2", "--batch_size", "2", "--accelerator", "cpu", "--progress", "false"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == ["q1", "q2", "q3"] and metrics["condition_column"] == "activity"
    assert sum(metrics["counts"].values()) == len(rows) and min(metrics["counts"].values()) >= len(rows) // 3 - 1
    with gzip.open(out / "training_sequences.tsv.gz", "rt") as fh:
        written = list(csv.DictReader(fh, delimiter="\t"))
    lo, hi = metrics["binning"]["ranges"]["q3"]
    assert all(lo <= float(r["activity"]) <= hi for r in written if r["label"] == "q3")
    assert GenoSeqLM.from_pretrained(out).tokenizer.condition_labels == ["q1", "q2", "q3"]
    # the folder now holds a model: refused without --overwrite
    assert main(["generate", "fit", "--model", str(base), "--train", str(table), "--out", str(out), "--bins", "3"]) == 2


@pytest.mark.parametrize("options, message", [
    (["--condition_column", "activity"], "missing column 'activity'"),
    (["--bins", "3"], "missing column 'activity'"),
    (["--condition_column", "label", "--bins", "2"], "not a number"),
])
def test_fit_bad_input_exits_2(split, tmp_path, capsys, options, message):
    base = tmp_path / "base"
    _tiny_lm().save_pretrained(base)
    assert main(["generate", "fit", "--model", str(base), "--train", str(split[0]), "--out", str(tmp_path / "gen"),
                 *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "gen" / "config.json").exists()


def test_fit_killed_with_sigkill_resumes_to_the_same_weights(split, tmp_path, capsys):
    """generate fit killed with SIGKILL after its first epoch's checkpoint (validating mid-epoch
    and at the epoch's end) and rerun with --resume true ends with the weights, steps and best
    validation of an uninterrupted run; the command line refuses to overwrite the left checkpoint
    unasked; the folder goes at the end."""
    from genoseq.pipelines.generate import fit
    from sigkill import sigkill_at_epoch

    with open(split[0]) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))[::20]  # 8 steps an epoch, validated after 4 and 8
    table, base = tmp_path / "train.tsv", tmp_path / "base"
    table.write_text("sequence\tlabel\n" + "".join(f"{r['sequence']}\t{r['label']}\n" for r in rows))
    _tiny_lm(dropout=0.1).save_pretrained(base)  # dropout: the random state must come back too
    options = dict(max_epochs=2, batch_size=2, pack_length=512, val_fraction=0.2, val_check_interval=4, patience=5,
                   warmup_steps=2, accelerator="cpu", progress=False)
    straight = fit(str(base), str(table), str(tmp_path / "straight"), **options)

    out = tmp_path / "resumed"
    sigkill_at_epoch("genoseq.pipelines.generate.fit", [base, table, out], options, 1, tmp_path / "killed.log")
    last = checkpoint_dir(out) / "last.ckpt"
    state = torch.load(last, weights_only=True)  # the first epoch's end, after its second validation
    assert (state["epoch"], state["global_step"]) == (0, 8) and not (out / "config.json").exists()
    saved = last.read_bytes()
    assert main(["generate", "fit", "--model", str(base), "--train", str(table), "--out", str(out)]) == 2
    assert "add --resume true to continue it" in capsys.readouterr().err and last.read_bytes() == saved
    resumed = fit(str(base), str(table), str(out), resume=True, **options)
    for key in ("steps", "epochs", "val_bits_per_base_before", "best_val_bits_per_base"):
        assert resumed[key] == straight[key], key
    a, b = GenoSeqLM.from_pretrained(tmp_path / "straight"), GenoSeqLM.from_pretrained(out)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not checkpoint_dir(out).exists()
