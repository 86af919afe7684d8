"""Caduceus import, held to Caduceus' own code through committed fixtures.

``tests/fixtures/caduceus_*/`` were made by ``tests/fixtures/make_caduceus_fixture.py`` with
Caduceus' ``CaduceusForMaskedLM`` (and mamba_ssm 1.2.0.post1's Mamba, which CI cannot install):
small random models as Hugging Face folders, and their float32 logits for three 48-base phage
lambda slices (one with Ns, one with masked positions) and for their reverse complements. PS is
the published layout (RC parameter sharing, tied directions, fused add-norm); Ph is run as
Caduceus-Ph runs it, the model on both strands, conjoined; the unfused PS stores its tied tensors
under their other names.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import genoseq
from genoseq.cli import main
from genoseq.errors import InputError
from genoseq.models import GenoSeqLM
from genoseq.models.caduceus import CaduceusLM
from genoseq.models.caduceus_import import import_caduceus
from genoseq.models.classifier import SequenceClassifier
from genoseq.models.hyenadna import vocabulary_map
from genoseq.models.untrusted import UnsafeCheckpoint
from genoseq.tokenizer import A, C, G, T, Tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
ROWS = np.array(vocabulary_map(16))  # genoseq id g <- Caduceus id ROWS[g]
TO_GENOSEQ = np.argsort(ROWS)
CADUCEUS_COMPLEMENT = np.array([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15])
TOK = Tokenizer()


def reference(name: str) -> dict:
    ref = np.load(FIXTURES / name / "reference.npz", allow_pickle=False)
    return {k: ref[k] for k in ref.files}


def convert(source: Path, out: Path, *extra: str) -> int:
    return main(["convert", "caduceus", "--checkpoint", str(source), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("caduceus")
    out = {}
    for name in ("caduceus_ps", "caduceus_ph"):  # the command, as a user runs it
        assert convert(FIXTURES / name, root / name) == 0
        out[name] = root / name
    model, _ = import_caduceus(FIXTURES / "caduceus_ps_unfused")  # what it runs
    out["caduceus_ps_unfused"] = model.save_pretrained(root / "caduceus_ps_unfused")
    return out


def logits(model, caduceus_ids: np.ndarray) -> np.ndarray:
    """The model's logits in Caduceus' vocabulary order, for inputs in Caduceus' ids."""
    with torch.no_grad():
        out = model(torch.from_numpy(TO_GENOSEQ[caduceus_ids]))
    return out.numpy()[..., TO_GENOSEQ]


def rc_logits(x: np.ndarray) -> np.ndarray:
    """Reverse complement of logits (B, L, V) in Caduceus' order: flip positions, complement tokens."""
    return x[:, ::-1][..., CADUCEUS_COMPLEMENT]


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("name", ["caduceus_ps", "caduceus_ps_unfused"])
def test_ps_logits_equal_caduceus(converted, name):
    ref = reference(name)
    model = GenoSeqLM.from_pretrained(converted[name])
    assert isinstance(model, CaduceusLM) and model.config.rcps and not model.config.conjoin
    assert model.config.swap_halves == (name == "caduceus_ps")  # the published fused add-norm
    assert np.abs(logits(model, ref["ids"]) - ref["logits"]).max() < 1e-4
    assert np.abs(logits(model, ref["rc_ids"]) - ref["rc_logits"]).max() < 1e-4


def test_ph_logits_equal_caduceus_on_each_strand_and_conjoined(converted):
    ref = reference("caduceus_ph")
    model = GenoSeqLM.from_pretrained(converted["caduceus_ph"])
    assert model.config.conjoin and not model.config.rcps
    conjoined = (ref["logits"] + rc_logits(ref["rc_logits"])) / 2
    assert np.abs(logits(model, ref["ids"]) - conjoined).max() < 1e-4
    model.config.conjoin = False  # one strand: Caduceus' own forward pass
    assert np.abs(logits(model, ref["ids"]) - ref["logits"]).max() < 1e-4
    assert np.abs(logits(model, ref["rc_ids"]) - ref["rc_logits"]).max() < 1e-4


@pytest.mark.parametrize("name", ["caduceus_ps", "caduceus_ph", "caduceus_ps_unfused"])
def test_reverse_complement_equivariance_is_exact(converted, name):
    """The output for the reverse complement is the reverse complement of the output, bit for bit:
    by construction for PS, by conjoining for Ph (and not without it)."""
    model = GenoSeqLM.from_pretrained(converted[name])
    ids = torch.from_numpy(TO_GENOSEQ[reference(name)["ids"]])
    comp = torch.arange(16)
    comp[[A, C, G, T]] = torch.tensor([T, G, C, A])  # genoseq's complement of each token id

    def rc_out(x):
        return x.flip(1)[..., comp]

    with torch.no_grad():
        out, out_rc = model(ids), model(TOK.reverse_complement(ids))
    assert torch.equal(out_rc, rc_out(out))
    if name == "caduceus_ph":
        model.config.conjoin = False
        with torch.no_grad():
            assert (model(TOK.reverse_complement(ids)) - rc_out(model(ids))).abs().max() > 1e-2


def test_a_pickle_checkpoint_with_both_tied_names_converts_alike(tmp_path):
    """``pytorch_model.bin`` (read without running code) with every tied tensor under both names."""
    from genoseq.models.caduceus_import import checkpoint_tensors

    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(FIXTURES / "caduceus_ps_unfused" / "config.json", folder)
    state = load_file(FIXTURES / "caduceus_ps_unfused" / "model.safetensors")
    for key in [k for k in state if ".mamba_rev.in_proj." in k or ".mamba_rev.out_proj." in k]:
        state[key.replace("mamba_rev", "mamba_fwd")] = state[key]
    state["caduceus.backbone.embeddings.word_embeddings.embedding.weight"] = state["lm_head.lm_head.weight"]
    torch.save(state, folder / "pytorch_model.bin")
    assert checkpoint_tensors(folder)[1].name == "pytorch_model.bin"
    model, report = import_caduceus(folder)
    ref = reference("caduceus_ps_unfused")
    assert report["weights"] == "pytorch_model.bin" and report["tensors_imported"] == len(state)
    assert np.abs(logits(model, ref["ids"]) - ref["logits"]).max() < 1e-4


# ----------------------------------------------------------------------------- as a genoseq model
def test_converted_folder_is_an_ordinary_bidirectional_model_folder(converted, lambda_fasta, tmp_path, capsys):
    folder = converted["caduceus_ps"]
    meta = json.loads((folder / "config.json").read_text())
    assert meta["architecture"] == "caduceus" and meta["bidirectional"] is True
    report = json.loads((folder / "conversion.json").read_text())
    assert report["from"] == "caduceus" and report["variant"] == "PS" and report["caduceus_d_model"] == 32
    lm = genoseq.load(folder, device="cpu")
    seq = "".join(line.strip() for line in Path(lambda_fasta).read_text().splitlines()[1:])[:300]
    emb = lm.embed([seq[:100], seq[100:200]])
    assert emb.shape == (2, 64) and np.isfinite(emb).all()  # both strands' halves: 2 x d_model
    hidden = lm.model.hidden_states(torch.from_numpy(TOK.encode(seq[:50]).astype(np.int64))[None], layer=2)
    assert hidden.shape == (1, 50, 64)
    clf = SequenceClassifier(lm.model, ["a", "b"], method="probe")  # a classifier's folder keeps the family
    probs = clf.predict_proba([seq[:60], seq[60:150]])
    back = SequenceClassifier.from_pretrained(clf.save_pretrained(tmp_path / "clf"))
    assert isinstance(back.lm, CaduceusLM) and np.allclose(back.predict_proba([seq[:60], seq[60:150]]), probs)

    # it has no next-base probabilities: generation refuses it (scoring masks, tests/test_masked_scoring.py)
    assert main(["generate", "sample", "--model", str(folder), "--num_samples", "1", "--max_new_tokens", "5",
                 "--out", str(tmp_path / "g.fa"), "--progress", "none"]) == 2
    assert "bidirectional" in capsys.readouterr().err
    assert not any(tmp_path.glob("g.fa*"))
    with pytest.raises(InputError, match="bidirectional"):
        lm.generate("ACGT", max_new_tokens=5)


# ----------------------------------------------------------------------------- bad input
def copy_fixture(tmp_path: Path, name: str = "caduceus_ps") -> Path:
    folder = tmp_path / "src"
    shutil.copytree(FIXTURES / name, folder)
    (folder / "reference.npz").unlink()
    return folder


def edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def edit_weights(folder: Path, drop: str | None = None, reshape: str | None = None) -> None:
    state = load_file(folder / "model.safetensors")
    if drop:
        del state[drop]
    if reshape:
        state[reshape] = state[reshape][:-1].contiguous()
    save_file(state, str(folder / "model.safetensors"))


LAYER0 = "caduceus.backbone.layers.0.mixer.submodule."
BAD = {
    "classification head": (lambda f: edit_config(f, architectures=["CaduceusForSequenceClassification"]),
                            "config.json", "CaduceusForSequenceClassification"),
    "other model type": (lambda f: edit_config(f, model_type="mamba"), "config.json", "model_type"),
    "unknown option": (lambda f: edit_config(f, ssm_cfg={"d_state": 16, "layer": "Mamba2"}), "config.json",
                       "ssm_cfg.layer"),
    "missing tensor": (lambda f: edit_weights(f, drop=LAYER0 + "mamba_rev.A_log"), "model.safetensors",
                       LAYER0 + "mamba_rev.A_log"),
    "mismatched tensor": (lambda f: edit_weights(f, reshape=LAYER0 + "mamba_fwd.x_proj.weight"), "model.safetensors",
                          LAYER0 + "mamba_fwd.x_proj.weight"),
    "extra layer": (lambda f: edit_config(f, n_layer=3), "model.safetensors", "caduceus.backbone.layers.3."),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_an_input_error_naming_file_and_key(tmp_path, case):
    spoil, file, key = BAD[case]
    folder = copy_fixture(tmp_path)
    spoil(folder)
    with pytest.raises(InputError) as err:
        import_caduceus(folder)
    assert str(folder / file) in str(err.value) and key in str(err.value), err.value


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    folder = copy_fixture(tmp_path)
    BAD["missing tensor"][0](folder)
    assert convert(folder, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert str(folder / "model.safetensors") in err and LAYER0 + "mamba_rev.A_log" in err
    assert not (tmp_path / "out").exists()


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = copy_fixture(tmp_path)
    state = dict(load_file(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    state["lm_head.complement_map"] = Payload()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpoint, match="system"):
        import_caduceus(folder)
    assert convert(folder, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "refused" in err and str(folder / "pytorch_model.bin") in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_tied_tensors_that_differ_and_conjoining_a_ps_model_are_refused(tmp_path):
    folder = copy_fixture(tmp_path)
    state = load_file(folder / "model.safetensors")
    fwd = LAYER0 + "mamba_fwd.in_proj.weight"
    state[fwd.replace("fwd", "rev")] = state[fwd] + 1
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(InputError, match="differ, but the config ties them"):
        import_caduceus(folder)
    with pytest.raises(InputError, match="conjoining changes nothing"):
        import_caduceus(FIXTURES / "caduceus_ps", conjoin=True)
