"""Language-model saturation mutagenesis and dependency maps on a real E. coli slice: the
prefix-sharing computation equals full forward passes over each mutant window, and bad input
is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genoseq.errors import InputError
from genoseq.models import GenoSeqLM, ModelConfig
from genoseq.models.inference import batched_log_probs
from genoseq.tasks.interpret.ism import dependency_map, language_model, saturation_mutagenesis

WINDOW = 120


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    lm = GenoSeqLM(ModelConfig(d_model=32, pattern="HMA", n_heads=2, headdim=16, d_state=16, chunk_size=32,
                               hyena_filter_len=256), window_length=WINDOW).eval()
    with torch.no_grad():  # larger weights than the init: LLRs far from 0, so the checks can fail
        for p in lm.parameters():
            p.mul_(3)
    return lm


@pytest.fixture(scope="module")
def sequence(ecoli_fasta):
    with open(ecoli_fasta) as handle:
        next(handle)
        seq = "".join(next(handle).strip() for _ in range(10))
    return seq[100:400]


def _full_window_llr(model, ids, i, col, start, end, radius):
    ref = torch.tensor(ids[start:end].astype(np.int64))[None]
    mut = ref.clone()
    mut[0, i - start] = 5 + col
    lp = batched_log_probs(model, torch.cat([ref, mut]))  # targets at window positions 1..
    w = i - start
    a, z = max(w, 1) - 1, min(end - start, w + radius + 1) - 1
    return float((lp[1, a:z] - lp[0, a:z]).double().sum())


def test_ism_equals_full_passes(model, sequence):
    radius, block, lo, hi = 20, 8, 40, 140
    res = saturation_mutagenesis(model, [sequence], regions=[(lo, hi)], radius=radius, block=block, device="cpu")[0]
    ids = model.tokenizer.encode(sequence)
    n = len(ids)
    assert res.llr.shape == (hi - lo, 4) and res.sequence == sequence[lo:hi]
    for i in (40, 47, 48, 100, 139):  # block edges, the middle, the region end
        b1 = min(lo + (i - lo) // block * block + block, hi)
        end = min(n, b1 + radius)
        start = max(0, end - WINDOW)
        for col in range(4):
            if 5 + col == ids[i]:
                assert res.llr_forward[i - lo, col] == 0
                continue
            expected = _full_window_llr(model, ids, i, col, start, end, radius)
            assert res.llr_forward[i - lo, col] == pytest.approx(expected, abs=1e-4)
    assert np.abs(res.llr_forward).mean() > 0.1
    # the reverse strand: the same mutant scored on the reverse complement, averaged
    rc = model.tokenizer.reverse_complement(ids)
    i = 100
    j = n - 1 - i
    for col in range(4):
        if 5 + col == ids[i]:
            continue
        rc_lo = n - hi
        b1 = min(rc_lo + (j - rc_lo) // block * block + block, n - lo)
        end = min(n, b1 + radius)
        start = max(0, end - WINDOW)
        expected = _full_window_llr(model, rc, j, 3 - col, start, end, radius)
        assert res.llr_reverse[i - lo, col] == pytest.approx(expected, abs=1e-4)
        assert res.llr[i - lo, col] == pytest.approx((expected + res.llr_forward[i - lo, col]) / 2, abs=1e-4)
    assert res.importance[i - lo] == pytest.approx(np.abs(res.llr[i - lo]).sum() / 3)


def test_ism_n_positions_and_batching(model, sequence):
    seq = sequence[:60] + "NN" + sequence[62:120]
    alone = saturation_mutagenesis(model, [seq], radius=16, block=4, device="cpu")[0]
    assert np.isnan(alone.llr[60:62]).all() and not np.isnan(alone.llr[:60]).any()
    # two sequences of one length share passes: same numbers as each alone
    both = saturation_mutagenesis(model, [seq, sequence[:120]], radius=16, block=4, device="cpu")
    np.testing.assert_allclose(both[0].llr, alone.llr, atol=1e-4)


def test_dependency_map(model, sequence):
    seq = sequence[:48]
    dep = dependency_map(model, seq, block=8, device="cpu").dep
    assert dep.shape == (48, 48) and np.all(np.diag(dep) == 0) and (dep >= 0).all()
    # dep[i, j] for j > i from the forward strand: recompute one entry from two full passes
    ids = torch.tensor(model.tokenizer.encode(seq).astype(np.int64))[None]
    i, j = 10, 30
    best = 0.0
    for col in range(4):
        if 5 + col == int(ids[0, i]):
            continue
        mut = ids.clone()
        mut[0, i] = 5 + col
        with torch.inference_mode():
            lp = torch.log_softmax(model(torch.cat([ids, mut]))[:, j - 1, 5:9].float(), -1)
        odds = lp - torch.log1p(-lp.exp())
        best = max(best, float((odds[1] - odds[0]).abs().max()))
    assert dep[i, j] == pytest.approx(best, rel=1e-3, abs=1e-4)
    assert dep[j, i] > 0  # the reverse strand fills j < i


def test_bad_input(model, sequence, tmp_path):
    with pytest.raises(InputError, match="longer than the limit"):
        saturation_mutagenesis(model, [sequence], max_length=100, device="cpu")
    with pytest.raises(InputError, match="only N") as err:
        saturation_mutagenesis(model, ["N" * 50], device="cpu")
    assert err.value.field == ("sequence",)
    with pytest.raises(InputError, match="one window"):
        dependency_map(model, sequence, device="cpu")
    with pytest.raises(InputError, match="radius"):
        saturation_mutagenesis(model, [sequence], radius=-1, device="cpu")
    (tmp_path / "config.json").write_text('{"model_type": "GenoSeqClassifier"}')
    with pytest.raises(InputError, match="not a language model") as err:
        language_model(tmp_path)
    assert err.value.field == ("model",)


# ---------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory):
    return model.save_pretrained(tmp_path_factory.mktemp("interpret") / "lm")


def test_ism_command_on_a_genome_region(model, model_dir, lambda_fasta, tmp_path):
    from genoseq.cli import main
    from genoseq.genome import open_genome

    out = tmp_path / "ism"
    assert main(["interpret", "ism", "--model", str(model_dir), "--fasta", str(lambda_fasta),
                 "--region", "[NC_001416.1:1001-1040, NC_001416.1:20001-20030]",
                 "--radius", "16", "--block", "4", "--device", "cpu", "--progress", "none", "--out", str(out)]) == 0
    with np.load(out / "ism.npz", allow_pickle=False) as data:
        llr, lengths, starts = data["llr"], data["lengths"], data["starts"]
    assert llr.shape == (2, 40, 4) and lengths.tolist() == [40, 30] and starts.tolist() == [1000, 20000]
    assert np.isnan(llr[1, 30:]).all()  # padding past the shorter region
    # the same numbers as the library call on the region with its flanks (the model's window each side)
    ids = open_genome(lambda_fasta).fetch("NC_001416.1", 1000 - WINDOW, 1040 + WINDOW)
    direct = saturation_mutagenesis(model, [ids], regions=[(WINDOW, WINDOW + 40)], radius=16, block=4,
                                    device="cpu")[0]
    np.testing.assert_allclose(llr[0], direct.llr, atol=1e-5)
    rows = (out / "summary.tsv").read_text().splitlines()
    assert rows[0].startswith("name\tcontig\tstart\tend") and rows[1].split("\t")[2:5] == ["1001", "1040", "40"]
    bedgraph = (out / "ism.bedgraph").read_text().splitlines()
    assert bedgraph[0].startswith("track type=bedGraph")
    first = bedgraph[1].split("\t")
    assert first[0] == "NC_001416.1" and first[1] == "1000"
    assert float(first[3]) == pytest.approx(float(direct.importance[0]), rel=1e-3)
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["1_NC_001416.1_1001-1040.png",
                                                                  "2_NC_001416.1_20001-20030.png"]
    assert json.loads((out / "ism.json").read_text())["positions"] == 70


def test_dependencies_command(model_dir, sequence, tmp_path):
    from genoseq.cli import main

    fasta = tmp_path / "one.fa"
    fasta.write_text(">slice\n" + sequence[:40] + "\n")
    out = tmp_path / "dep"
    assert main(["interpret", "dependencies", "--model", str(model_dir), "--input", str(fasta), "--block", "8",
                 "--device", "cpu", "--progress", "none", "--out", str(out)]) == 0
    with np.load(out / "dependencies.npz", allow_pickle=False) as data:
        assert data["dep"].shape == (40, 40) and str(data["sequence"]) == sequence[:40]
    assert (out / "dependencies.png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["--region", "NC_001416.1:1-20,000", "--max_length", "1000"], "longer than the limit"),
    (["--region", "NC_001416.1:100"], "not contig:start-end"),
    (["--region", "chr9:1-100"], "not in the genome"),
    (["--region", "NC_001416.1:48000-48600"], "not inside"),
])
def test_ism_command_bad_regions(model_dir, lambda_fasta, tmp_path, args, message, capsys):
    from genoseq.cli import main

    out = tmp_path / "bad"
    assert main(["interpret", "ism", "--model", str(model_dir), "--fasta", str(lambda_fasta), *args,
                 "--device", "cpu", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_ism_command_refuses_n_only_and_a_classifier(model_dir, tmp_path, capsys):
    from genoseq.cli import main

    fasta = tmp_path / "n.fa"
    fasta.write_text(">gap\n" + "N" * 40 + "\n")
    assert main(["interpret", "ism", "--model", str(model_dir), "--input", str(fasta), "--device", "cpu",
                 "--out", str(tmp_path / "o")]) == 2
    assert "only N" in capsys.readouterr().err and not (tmp_path / "o").exists()
    clf = tmp_path / "clf"
    clf.mkdir()
    (clf / "config.json").write_text('{"model_type": "GenoSeqClassifier"}')
    assert main(["interpret", "dependencies", "--model", str(clf), "--input", str(fasta), "--out",
                 str(tmp_path / "o")]) == 2
    assert "interpret attributions" in capsys.readouterr().err


def test_python_api_ism_and_dependencies(model, model_dir, sequence):
    import genoseq

    lm = genoseq.load(model_dir, device="cpu")
    one = lm.ism(sequence[:50], radius=16)
    assert one.llr.shape == (50, 4) and one.sequence == sequence[:50]
    direct = saturation_mutagenesis(model, [sequence[:50]], radius=16, device="cpu")[0]
    np.testing.assert_allclose(one.llr, direct.llr, atol=1e-5)
    two = lm.ism([sequence[:50], sequence[50:90]], regions=[(10, 20), None], radius=16)
    assert [r.llr.shape for r in two] == [(10, 4), (40, 4)]
    assert lm.dependencies(sequence[:30]).dep.shape == (30, 30)


def test_api_interpret(model, model_dir, sequence, tmp_path):
    from fastapi.testclient import TestClient

    from genoseq.api.app import create_app
    from genoseq.api.settings import Limits
    from genoseq.models.classifier import SequenceClassifier

    torch.manual_seed(0)
    clf = SequenceClassifier(model, ["coding", "upstream"], pooling="mean", head_dropout=0.0)
    clf_dir = clf.save_pretrained(tmp_path / "clf")
    limits = Limits(max_interpret_length=60, max_interpret_sequences=2)
    with TestClient(create_app(model=str(model_dir), classifier=str(clf_dir), device="cpu", limits=limits,
                               load_in_background=False)) as c:
        r = c.post("/v1/interpret", json={"method": "ism", "sequences": [sequence[:40], "ACGTN" + sequence[:20]],
                                          "radius": 16})
        assert r.status_code == 200, r.text
        first, second = r.json()["results"]
        direct = saturation_mutagenesis(model, [sequence[:40]], radius=16, device="cpu")[0]
        np.testing.assert_allclose(np.array(first["llr"], dtype=float), direct.llr, atol=1e-3)
        assert second["llr"][4] == [None] * 4 and second["length"] == 25  # the N: nothing to mutate
        r = c.post("/v1/interpret", json={"method": "dependencies", "sequences": [sequence[:30]]})
        assert r.status_code == 200 and len(r.json()["results"][0]["dependencies"]) == 30
        r = c.post("/v1/interpret", json={"method": "attributions", "sequences": [sequence[:40]], "n_shuffles": 2,
                                          "n_steps": 4, "class_name": "upstream"})
        assert r.status_code == 200, r.text
        body = r.json()["results"][0]
        assert body["target"] == "upstream" and len(body["contributions"]) == 40
        # bad input: too long, too many, an unknown class, only N, an unknown method
        for request, field in [({"method": "ism", "sequences": [sequence[:61]]}, "sequences"),
                               ({"method": "ism", "sequences": ["ACGT"] * 3}, "sequences"),
                               ({"method": "attributions", "sequences": ["ACGTACGT"], "class_name": "nope"},
                                "class_name"),
                               ({"method": "ism", "sequences": ["NNNNNN"]}, "sequence"),
                               ({"method": "motifs", "sequences": ["ACGT"]}, "method")]:
            r = c.post("/v1/interpret", json=request)
            assert r.status_code == 422, (request, r.text)
            assert field in str(r.json()["detail"][0]["loc"]) + r.json()["detail"][0]["msg"], r.text
    with TestClient(create_app(model=str(model_dir), device="cpu", load_in_background=False)) as c:
        r = c.post("/v1/interpret", json={"method": "attributions", "sequences": ["ACGTACGT"]})
        assert r.status_code == 404 and "classifier" in r.json()["detail"]
