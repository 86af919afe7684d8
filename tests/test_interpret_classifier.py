"""Classifier attributions (ISM, integrated gradients, DeepLIFT-SHAP), MoDISco motifs, TOMTOM, the CLI."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest
import torch

from genoseq.cli import main
from genoseq.errors import InputError
from genoseq.models import GenoSeqLM, ModelConfig
from genoseq.models.classifier import SequenceClassifier
from genoseq.motif_files import read_jaspar, read_meme, write_meme
from genoseq.tasks.interpret import attribution as A
from genoseq.tasks.interpret import motifs as M

CLASSES = ["coding", "downstream", "upstream"]


@pytest.fixture(scope="module")
def regions(data_dir):
    """Twelve real 200 bp E. coli regions, cut to 48 bp (keeping the end before the start codon)."""
    with gzip.open(data_dir / "ecoli_regions.tsv.gz", "rt") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    rng = np.random.default_rng(1)
    picked = [rows[i] for i in rng.choice(len(rows), 12, replace=False)]
    return [r["sequence"][-48:] for r in picked], [r["label"] for r in picked]


def tiny_classifier(**kwargs) -> SequenceClassifier:
    torch.manual_seed(0)
    lm = GenoSeqLM(ModelConfig(d_model=16, pattern="HA", n_heads=2, headdim=8, hyena_filter_len=64,
                               hyena_filter_dim=8, hyena_filter_emb=5))
    clf = SequenceClassifier(lm, CLASSES, head_dropout=0.0, **kwargs).eval()
    with torch.no_grad():
        clf.head.weight.normal_(0, 3.0)  # a head that is not near-constant
    return clf


@pytest.fixture(scope="module")
def clf():
    return tiny_classifier(pooling="phase+ends", rc_concat=True)


@pytest.fixture(scope="module")
def clf_dir(clf, tmp_path_factory):
    return clf.save_pretrained(tmp_path_factory.mktemp("interpret") / "clf")


def test_dinucleotide_shuffle_keeps_counts(regions):
    seq = regions[0][0][:20] + "NN" + regions[0][0][20:]
    ids = np.array(["ACGTN".index(b) for b in seq])
    onehot = A.one_hot(ids + 5)
    shuffles = A.dinucleotide_shuffles(onehot, 8, seed=3)
    assert shuffles.shape == (8, len(seq), 4)

    def dinucleotides(x):
        letters = ["ACGT"[int(r.argmax())] if r.sum() else "N" for r in x]
        return sorted(a + b for a, b in zip(letters, letters[1:]))

    for s in shuffles:
        assert dinucleotides(s) == dinucleotides(onehot)
        assert np.array_equal(s[0], onehot[0]) and np.array_equal(s[-1], onehot[-1])
    assert sum(not np.array_equal(s, onehot) for s in shuffles) >= 6  # really shuffled
    assert np.array_equal(A.dinucleotide_shuffles(onehot, 8, seed=3), shuffles)  # seeded


@pytest.mark.parametrize("kwargs", [dict(pooling="mean"), dict(pooling="phase+ends", rc_concat=True),
                                    dict(pooling="echo", rc_average=True)])
def test_onehot_input_gives_the_classifier_logits(regions, kwargs):
    model = tiny_classifier(**kwargs)
    seqs = [regions[0][0], regions[0][1][:20] + "NNN" + regions[0][1][23:]]
    ids = torch.as_tensor(np.stack([model.tokenizer.encode(s) for s in seqs]).astype(np.int64))
    x = torch.from_numpy(np.stack([A.one_hot(i) for i in ids.numpy()]))
    module = A._onehot_module(model, "logit")
    with torch.no_grad():
        assert torch.allclose(module(x), model(ids), atol=1e-5)
    # gradients reach the one-hot from both strands
    x.requires_grad_(True)
    module(x)[:, 0].sum().backward()
    assert x.grad.abs().sum() > 0


def test_ism_is_the_score_change_of_each_substitution(clf, regions):
    seq = regions[0][2]
    res = A.classifier_attributions(clf, [seq], method="ism", class_name="upstream", score="log_prob")
    ism = res.ism[0]
    ids = clf.tokenizer.encode(seq).astype(np.int64)
    t = CLASSES.index("upstream")
    with torch.no_grad():
        ref = torch.log_softmax(clf(torch.as_tensor(ids)[None]), -1)[0, t]
        for i, b in [(0, 1), (17, 3), (47, 0)]:
            mut = ids.copy()
            mut[i] = 5 + b
            want = torch.log_softmax(clf(torch.as_tensor(mut)[None]), -1)[0, t] - ref
            assert ism[i, b] == pytest.approx(float(want), abs=1e-5) or ids[i] == 5 + b
    present = ids - 5
    assert np.all(ism[np.arange(len(ids)), present] == 0)
    assert np.abs(ism).max() > 0
    # contributions: the centred ISM at the base present
    assert np.allclose(res.contributions[0].sum(1), ism[np.arange(len(ids)), present] - ism.mean(1), atol=1e-6)
    assert res.targets == ["upstream"]


def test_integrated_gradients_are_complete(clf, regions):
    seqs = regions[0][:3]
    res = A.classifier_attributions(clf, seqs, method="ig", n_shuffles=4, n_steps=16)
    assert res.completeness_gap.max() < 1e-2 * max(1.0, float(np.abs(res.probabilities).max()))
    # contributions sum to f(x) - mean_k f(r_k)
    module = A._onehot_module(clf, "logit")
    for i, seq in enumerate(seqs):
        t = CLASSES.index(res.targets[i])
        refs = torch.from_numpy(A.references(res.onehot[i], "shuffle", 4, seed=i))
        with torch.no_grad():
            fx = module(torch.from_numpy(res.onehot[i])[None])[0, t]
            fr = module(refs)[:, t].mean()
        assert float(res.contributions[i].sum()) == pytest.approx(float(fx - fr), abs=2e-2 * max(1.0, abs(float(fx - fr))))
        assert res.targets[i] == CLASSES[int(res.probabilities[i].argmax())]
    # hypothetical at the base present equals the contribution there
    assert np.allclose((res.hypothetical[0] * res.onehot[0]).sum(1), res.contributions[0].sum(1))


def test_deepliftshap_is_gradient_times_delta_averaged(clf, regions):
    seq = regions[0][4]
    res = A.classifier_attributions(clf, [seq], method="deepliftshap", n_shuffles=3, class_name="coding")
    module = A._onehot_module(clf, "logit")
    x = torch.from_numpy(res.onehot[0])[None].repeat(3, 1, 1).requires_grad_(True)
    refs = torch.from_numpy(A.references(res.onehot[0], "shuffle", 3, seed=0))
    module(x)[:, 0].sum().backward()
    want = ((x - refs) * x.grad).sum(-1).mean(0).detach().numpy()
    assert np.allclose(res.contributions[0].sum(1), want, atol=1e-5)


def test_bad_input_is_an_input_error(clf, regions):
    with pytest.raises(InputError, match="coding, downstream, upstream") as err:
        A.classifier_attributions(clf, regions[0][:1], class_name="promoter")
    assert err.value.field == ("class_name",) and err.value.kind == "unknown_class"
    with pytest.raises(InputError, match="only N") as err:
        A.classifier_attributions(clf, ["NNNNNNNNNNNN"], method="ism")
    assert err.value.kind == "only_n"
    with pytest.raises(InputError, match="classifier") as err:
        A.classifier_attributions(clf.lm, regions[0][:1])
    assert err.value.field == ("model",)
    with pytest.raises(InputError, match="method"):
        A.classifier_attributions(clf, regions[0][:1], method="saliency")


def test_cli_attributions_writes_arrays_table_and_logos(clf_dir, regions, tmp_path):
    table = tmp_path / "in.tsv"
    table.write_text("name\tsequence\tlabel\n" + "".join(f"r{i}\t{s}\t{l}\n" for i, (s, l) in
                                                          enumerate(zip(regions[0][:3], regions[1][:3]))))
    out = tmp_path / "attr"
    assert main(["interpret", "attributions", "--model", str(clf_dir), "--input", str(table), "--out", str(out),
                 "--method", "ism", "--logos", "2", "--progress", "none"]) == 0
    with np.load(out / "attributions.npz", allow_pickle=False) as data:
        assert data["contributions"].shape == (3, 48, 4) and data["ism"].shape == (3, 48, 4)
        assert list(data["names"]) == ["r0", "r1", "r2"]
        direct = A.classifier_attributions(SequenceClassifier.from_pretrained(clf_dir), regions[0][:3], method="ism")
        assert np.allclose(data["contributions"][1], direct.contributions[1], atol=1e-5)
    rows = list(csv.DictReader(open(out / "summary.tsv"), delimiter="\t"))
    assert [r["name"] for r in rows] == ["r0", "r1", "r2"] and rows[0]["label"] == regions[1][0]
    assert sorted(p.name for p in (out / "logos").iterdir()) == ["1_r0.png", "2_r1.png"]
    assert (out / "logos" / "1_r0.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "attributions.json").read_text())["method"] == "ism"


def test_cli_bad_input_exits_2_and_writes_nothing(clf_dir, regions, tmp_path):
    lm_dir = tiny_classifier().lm.save_pretrained(tmp_path / "lm")
    fasta = tmp_path / "in.fa"
    fasta.write_text(f">a\n{regions[0][0]}\n")
    out = tmp_path / "never"
    assert main(["interpret", "attributions", "--model", str(lm_dir), "--input", str(fasta), "--out", str(out)]) == 2
    assert main(["interpret", "attributions", "--model", str(clf_dir), "--input", str(fasta), "--out", str(out),
                 "--class_name", "promoter"]) == 2
    nfasta = tmp_path / "n.fa"
    nfasta.write_text(">n\nNNNNNNNNNNNNNNNNNNNN\n")
    assert main(["interpret", "attributions", "--model", str(clf_dir), "--input", str(nfasta), "--out", str(out)]) == 2
    assert not out.exists() and not list(tmp_path.glob(".never*"))
    notmeme = tmp_path / "known.txt"
    notmeme.write_text(">AGGAGG\nAGGAGG\n")
    assert main(["interpret", "motifs", "--attributions", str(tmp_path), "--motifs", str(notmeme),
                 "--out", str(out)]) == 2
    assert not out.exists()


def planted(n: int = 200, length: int = 200, seed: int = 0, at: tuple[int, int] | None = None):
    """Random sequences each holding AGGAGG (starting anywhere, or in [at[0], at[1])), with
    attributions high on it: one-hot and hypothetical."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 4, (n, length))
    where = rng.integers(*(at or (5, length - 11)), n)
    for i in range(n):
        ids[i, where[i]:where[i] + 6] = [0, 2, 2, 0, 2, 2]
    onehot = np.eye(4, dtype=np.float32)[ids]
    hyp = rng.normal(0, 0.1, onehot.shape).astype(np.float32)
    for i in range(n):
        hyp[i, where[i]:where[i] + 6] += 2.0 * onehot[i, where[i]:where[i] + 6]
    return onehot, hyp


def save_planted(folder, **kwargs):
    onehot, hyp = planted(**kwargs)
    n, length = onehot.shape[:2]
    np.savez(folder / "attributions.npz", onehot=onehot, hypothetical=hyp, contributions=hyp * onehot,
             lengths=np.full(n, length), names=np.array([f"s{i}" for i in range(n)]),
             targets=np.array(["upstream"] * n))
    return onehot, hyp


def test_cli_motifs_recovers_a_planted_motif_and_matches_it(tmp_path):
    onehot, hyp = save_planted(tmp_path)
    n = len(onehot)
    rng = np.random.default_rng(5)
    sd = np.array([[.85, 0, .15, 0], [0, 0, 1, 0], [0, 0, 1, 0], [.85, 0, .15, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
    known = {"SD": sd, **{f"decoy{i}": rng.dirichlet(np.full(4, 0.5), 8) for i in range(29)}}
    write_meme(tmp_path / "known.meme", known)
    assert set(read_meme(tmp_path / "known.meme")) == set(known)
    out = tmp_path / "motifs"
    assert main(["interpret", "motifs", "--attributions", str(tmp_path), "--motifs", str(tmp_path / "known.meme"),
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "motifs.tsv"), delimiter="\t"))
    top = rows[0]
    assert top["sign"] == "positive" and "AGGAGG" in top["consensus"].upper()
    assert top["best_match"] == "SD" and float(top["p_value"]) < 1e-4
    assert int(top["n_seqlets"]) >= 20
    assert (out / "logos" / f"{top['name']}.png").is_file() and "AGGAGG" in (out / "report.md").read_text().upper()
    assert "SD" not in [r["best_match"] for r in rows[1:] if r["p_value"] and float(r["p_value"]) < 1e-4]
    sites = [r for r in csv.DictReader(open(out / "seqlets.tsv"), delimiter="\t") if r["motif"] == top["name"]]
    assert len(sites) == int(top["n_seqlets"])
    planted_at = {f"s{i}": int(np.nonzero(hyp[i].max(1) > 1.0)[0][0]) for i in range(n)}
    hits = [abs(int(r["start"]) - planted_at[r["sequence"]]) <= 2 and int(r["end"]) - int(r["start"]) <= 10
            for r in sites]
    assert np.mean(hits) > 0.9  # the sites are the planted AGGAGGs


@pytest.mark.parametrize("at", [(0, 4), (190, 195)], ids=["first bases", "last bases"])
def test_motifs_at_the_ends_of_the_sequences_are_found(at):
    # Like a Shine-Dalgarno site a few bases before the start codon that ends an upstream region:
    # modisco alone finds nothing here (no room for a seqlet's window and flanks).
    onehot, hyp = planted(n=150, at=at)
    found = M.discover_motifs(onehot, hyp, min_metacluster_size=50, n_leiden_runs=2)
    assert found and found[0].sign == "positive" and "AGGAGG" in found[0].consensus.upper()
    top = found[0]
    assert top.n_seqlets >= 75  # of 150 planted
    assert np.allclose(top.ppm.sum(1), 1.0)  # counted over the real bases only
    # seqlets are in input coordinates and cover the planted site
    starts = np.array([s for _, s, _, _ in top.seqlets])
    ends = np.array([e for _, _, e, _ in top.seqlets])
    assert (starts <= at[1]).mean() > 0.9 and (ends >= at[0] + 6).mean() > 0.9
    assert not M.discover_motifs(onehot, hyp, min_metacluster_size=50, n_leiden_runs=2, edge_padding=0)


def test_cli_motifs_matches_against_the_shipped_jaspar(tmp_path):
    save_planted(tmp_path)
    out = tmp_path / "motifs"
    assert main(["interpret", "motifs", "--attributions", str(tmp_path), "--jaspar", "CORE:martians",
                 "--out", str(out)]) == 2
    assert not out.exists()
    assert main(["interpret", "motifs", "--attributions", str(tmp_path), "--jaspar", "CORE:fungi",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "motifs.json").read_text())
    assert summary["n_known_motifs"] == len(read_jaspar("CORE", "fungi")) > 100
    top = summary["motifs"][0]
    assert "AGGAGG" in top["consensus"].upper() and top["best_match"].startswith("MA")
    assert "JASPAR CORE:fungi" in (out / "report.md").read_text()


def test_attributions_motifs_from_python():
    onehot, hyp = planted()
    result = A.Attributions(method="ig", baseline="shuffle", score="logit", classes=["other", "upstream"],
                            targets=["upstream"] * len(onehot), probabilities=np.full((len(onehot), 2), 0.5),
                            onehot=list(onehot), hypothetical=list(hyp), contributions=list(hyp * onehot))
    sd = np.array([[.85, 0, .15, 0], [0, 0, 1, 0], [0, 0, 1, 0], [.85, 0, .15, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
    rng = np.random.default_rng(1)
    known = {"SD": sd, **{f"decoy{i}": rng.dirichlet(np.full(4, 0.5), 8) for i in range(29)}}
    found = result.motifs(known, n_best=2, n_leiden_runs=2)
    assert found[0].matches[0].target == "SD" and len(found[0].matches) == 2
    with pytest.raises(InputError, match="shorter than the seqlet window"):
        A.Attributions(**{**result.__dict__, "onehot": [onehot[0], onehot[1][:10]],
                          "hypothetical": [hyp[0], hyp[1][:10]]}).motifs()


def test_motifs_of_sequences_of_several_lengths():
    onehot, hyp = planted(n=200, length=250, at=(5, 140))
    lengths = np.random.default_rng(3).integers(150, 251, len(onehot))
    found = M.discover_motifs([o[:n] for o, n in zip(onehot, lengths)], [h[:n] for h, n in zip(hyp, lengths)],
                              n_leiden_runs=2)
    top = found[0]
    assert top.sign == "positive" and "AGGAGG" in top.consensus.upper() and top.n_seqlets >= 100
    sites = top.sites(lengths)
    assert all(0 <= a < b <= lengths[i] for i, a, b, _ in sites)
    planted_at = np.array([np.nonzero(h.max(1) > 1.0)[0][0] for h in hyp])
    assert np.mean([abs(a - planted_at[i]) <= 2 for i, a, _, _ in sites]) > 0.9


def test_read_meme_refuses_other_files(tmp_path):
    (tmp_path / "a.fa").write_text(">x\nACGT\n")
    with pytest.raises(InputError, match="not a MEME"):
        read_meme(tmp_path / "a.fa")
    (tmp_path / "empty.meme").write_text("MEME version 4\n\nALPHABET= ACGT\n")
    with pytest.raises(InputError, match="no motif"):
        read_meme(tmp_path / "empty.meme")
