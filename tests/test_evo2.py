"""Evo 2 (StripedHyena 2) import, held to Evo 2's own code through a committed fixture.

``tests/fixtures/evo2/`` was made by ``tests/fixtures/make_evo2_fixture.py`` with vortex (Evo 2's
reference implementation, which CI cannot install): a random 7-layer width-32 model with every
kind of layer (Hyena-SE, -MR, -LI, attention), in the published checkpoint layout (bfloat16
weights, float32 poles and residues, FP8 ``_extra_state`` entries), its config in Evo 2's format,
and vortex's log-probabilities of A C G T N after every prefix of a 300-base phage lambda slice,
from its full forward pass and from its cached generation (100 bases prefilled, then one a step).
vortex ran in float32, and its own two paths differ by 2e-5: that is the floor of any comparison.
"""

from __future__ import annotations

import copy
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import genoseq
from genoseq.cli import main
from genoseq.models import GenoSeqLM
from genoseq.models.evo2 import EVO2_BYTES, import_evo2, vocabulary_map
from genoseq.models.inference import limit_attention, token_log_probs
from genoseq.models.striped_hyena import StripedHyenaLM
from genoseq.models.untrusted import UnsafeCheckpoint, load_untrusted
from genoseq.tokenizer import Tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "evo2"
CHECKPOINT, CONFIG = FIXTURE / "evo2_tiny.pt", FIXTURE / "evo2_tiny.yml"
BASES = [5, 6, 7, 8, 9]  # genoseq's A C G T N: the fixture's columns
TOK = Tokenizer()


@pytest.fixture(scope="module")
def reference():
    ref = np.load(FIXTURE / "evo2_tiny_reference.npz", allow_pickle=False)
    seq = bytes(ref["ids"].astype(np.uint8)).decode()
    ids = torch.from_numpy(TOK.encode(seq).astype(np.int64))[None]
    return ids, {k: ref[k] for k in ("full", "cached", "prefill")}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("evo2") / "model"
    assert main(["convert", "evo2", "--checkpoint", str(CHECKPOINT), "--model_config", str(CONFIG),
                 "--out", str(out)]) == 0
    return out


def base_log_probs(model, ids, cache=None) -> np.ndarray:
    with torch.no_grad():
        return torch.log_softmax(model(ids, cache=cache).double(), -1)[0][:, BASES].numpy()


def cached_log_probs(model, ids, prefill: int) -> np.ndarray:
    """Prefill, then one token a step, as vortex's generation ran."""
    cache = model.new_cache(max_len=ids.shape[1])
    rows = [base_log_probs(model, ids[:, :prefill], cache)]
    rows += [base_log_probs(model, ids[:, t : t + 1], cache) for t in range(prefill, ids.shape[1])]
    return np.concatenate(rows)


# ----------------------------------------------------------------------------- exactness
def test_full_forward_equals_vortex(converted, reference):
    ids, ref = reference
    model = GenoSeqLM.from_pretrained(converted)
    assert isinstance(model, StripedHyenaLM) and model.config.pattern == "SRLASRL"
    assert np.abs(base_log_probs(model, ids) - ref["full"]).max() < 1e-4  # float32, as it runs
    wide = copy.deepcopy(model).double()
    assert np.abs(base_log_probs(wide, ids) - ref["full"]).max() < 4e-5  # float64: vortex's float32 rounding left
    # and through the scoring path of `genoseq score`: each base's log-probability
    lp = token_log_probs(model, ids[0]).numpy()
    observed = ref["full"][np.arange(ids.shape[1] - 1), ids[0, 1:].numpy() - BASES[0]]
    assert np.abs(lp - observed).max() < 1e-4


def test_cached_generation_equals_vortex(converted, reference):
    ids, ref = reference
    model = GenoSeqLM.from_pretrained(converted)
    prefill = int(ref["prefill"])
    assert np.abs(cached_log_probs(model, ids, prefill) - ref["cached"]).max() < 1e-4
    wide = copy.deepcopy(model).double()  # and, in float64, the cache is the full forward pass exactly
    assert np.abs(cached_log_probs(wide, ids, prefill) - base_log_probs(wide, ids)).max() < 1e-10
    # prefill in uneven chunks, one longer than the long filter's table (MODAL_CHUNK = 1024), then continue
    long_ids = ids.repeat(1, 8)
    cache = wide.new_cache(max_len=long_ids.shape[1])
    parts = [base_log_probs(wide, long_ids[:, a:b], cache) for a, b in ((0, 37), (37, 1500), (1500, 2400))]
    assert np.abs(np.concatenate(parts) - base_log_probs(wide, long_ids)).max() < 1e-10


def test_limit_attention_windows_the_imported_attention_layers(converted, reference):
    """`score --attention_window` reaches Evo 2's attention too: the full pass (blockwise) and the
    cached pass (masked) agree under the window, and the window changes what attention sees."""
    ids, _ = reference
    wide = copy.deepcopy(GenoSeqLM.from_pretrained(converted)).double()
    free = base_log_probs(wide, ids)
    with limit_attention(wide, 16, sink=2):
        windowed = base_log_probs(wide, ids)
        assert np.abs(cached_log_probs(wide, ids, 40) - windowed).max() < 1e-10
    assert np.abs(windowed - free)[:16].max() < 1e-12 and np.abs(windowed - free)[20:].max() > 1e-6
    assert np.abs(base_log_probs(wide, ids) - free).max() == 0  # restored


def test_config_read_off_the_tensors_matches_the_file(converted):
    with_file, _ = import_evo2(CHECKPOINT, CONFIG)
    inferred, report = import_evo2(CHECKPOINT)
    assert inferred.config == with_file.config
    assert report["config"] == "inferred from the tensors" and report["assumed"]["rotary_emb_base"] == 10000
    for name, value in with_file.state_dict().items():
        assert torch.equal(value, inferred.state_dict()[name]), name


def test_vocabulary_is_a_permutation_onto_evo2_bytes(converted):
    model = GenoSeqLM.from_pretrained(converted)
    rows = vocabulary_map(512)
    assert sorted(rows) == list(range(512))
    published = {k: v for k, v in load_untrusted(CHECKPOINT).items() if isinstance(v, torch.Tensor)}
    emb = published["embedding_layer.weight"].float()
    for gid, byte in EVO2_BYTES.items():
        assert torch.equal(model.backbone.embedding.weight[gid], emb[byte])
    assert TOK.tokens[5:10] == ["A", "C", "G", "T", "N"] and [EVO2_BYTES[i] for i in range(5, 10)] == list(b"ACGTN")
    assert model.lm_head.weight is model.backbone.embedding.weight


# ----------------------------------------------------------------------------- pipelines
def test_converted_folder_runs_the_pipelines(converted, lambda_fasta, tmp_path):
    report = json.loads((converted / "conversion.json").read_text())
    assert report["from"] == "evo2" and report["skipped"]["fp8_extra_state"] == 6 and "ignored" in report["note"]
    lm = genoseq.load(converted, device="cpu")
    assert lm.model.training_config.window_length == 8192
    seq = "".join(line.strip() for line in Path(lambda_fasta).read_text().splitlines()[1:])[:2000]
    fasta = tmp_path / "lambda.fa"
    fasta.write_text(">lambda\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    assert main(["score", "--model", str(converted), "--fasta", str(fasta), "--out", str(tmp_path / "s.tsv"),
                 "--progress", "none"]) == 0
    row = (tmp_path / "s.tsv").read_text().splitlines()[1].split("\t")
    assert abs(float(row[3]) - lm.score(seq).log_likelihood) < 1e-2
    out = tmp_path / "g.fa"
    assert main(["generate", "sample", "--model", str(converted), "--prompt", seq[:40], "--num_samples", "2",
                 "--max_new_tokens", "20", "--seed", "3", "--out", str(out), "--progress", "none"]) == 0
    samples = [line for line in out.read_text().splitlines() if not line.startswith(">")]
    assert len(samples) == 2 and all(len(s) == 60 and set(s[40:]) <= set("ACGT") for s in samples)
    hidden = lm.model.hidden_states(torch.from_numpy(TOK.encode(seq[:50]).astype(np.int64))[None], layer=4)
    assert hidden.shape == (1, 50, 32)
    # (classify fit --frozen: test_a_classifier_on_the_converted_model_saves_and_loads)


def test_converted_folder_runs_vep_embed_ism_annotate_and_serve(converted, lambda_fasta, tmp_path):
    """The other jobs take the converted folder unchanged, on inputs of a few hundred bases."""
    import h5py
    from fastapi.testclient import TestClient

    from genoseq.api import create_app

    lm = genoseq.load(converted, device="cpu")
    genome = "".join(line.strip() for line in Path(lambda_fasta).read_text().splitlines()[1:]).upper()
    # vep: the CLI's LLRs are the Python API's
    alt_of = {"A": "G", "C": "T", "G": "A", "T": "C"}
    variants = [("NC_001416.1", p, genome[p - 1], alt_of[genome[p - 1]]) for p in (500, 20_000, 40_000)]
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=NC_001416.1,length=48502>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   + "".join(f"{c}\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for c, p, r, a in variants))
    assert main(["vep", "--model", str(converted), "--reference", str(lambda_fasta), "--vcf", str(vcf),
                 "--out", str(tmp_path / "vep.tsv"), "--format", "tsv", "--window_length", "64", "--device", "cpu",
                 "--progress", "none"]) == 0
    rows = [line.split("\t") for line in (tmp_path / "vep.tsv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    llr = [float(r[header.index("llr")]) for r in rows]
    assert [r[header.index("status")] for r in rows] == ["ok"] * 3
    effects = lm.variant_effects(lambda_fasta, variants, window_length=64)
    assert np.allclose(llr, [e.llr for e in effects], atol=1e-4) and len(set(llr)) == 3
    # embed at a named layer: that layer's states, not the final ones
    fasta = tmp_path / "two.fa"
    fasta.write_text(f">a\n{genome[1000:1200]}\n>b\n{genome[30_000:30_150]}\n")
    for layer, name in ((4, "l4.h5"), (None, "final.h5")):
        assert main(["embed", "--model", str(converted), "--fasta", str(fasta), "--out", str(tmp_path / name),
                     "--pooling", "mean", "--device", "cpu", "--progress", "none",
                     *(["--layer", str(layer)] if layer is not None else [])]) == 0
    with h5py.File(tmp_path / "l4.h5") as h5, h5py.File(tmp_path / "final.h5") as final:
        assert h5["embeddings"].shape == (2, 32) and np.isfinite(h5["embeddings"][:]).all()
        assert not np.allclose(h5["embeddings"][:], final["embeddings"][:])
    # interpret ism: every substitution of a 20-base region
    assert main(["interpret", "ism", "--model", str(converted), "--fasta", str(lambda_fasta), "--region",
                 "NC_001416.1:1001-1020", "--radius", "8", "--block", "4", "--figures", "0", "--device", "cpu",
                 "--progress", "none", "--out", str(tmp_path / "ism")]) == 0
    with np.load(tmp_path / "ism" / "ism.npz", allow_pickle=False) as ism:
        assert ism["llr"].shape == (1, 20, 4) and np.isfinite(ism["llr"]).any()
    # annotate fit: a segmenter on the imported backbone, two contigs of lambda, one held out
    gff = tmp_path / "lambda.gff3"
    features = [("c1", 191, 736, "+"), ("c1", 711, 2636, "+"), ("c2", 100, 999, "+"), ("c2", 1200, 2399, "-")]
    gff.write_text("##gff-version 3\n" + "".join(f"{c}\tsrc\tCDS\t{a}\t{b}\t.\t{s}\t0\tID={c}_{a}\n"
                                                  for c, a, b, s in features)
                   + f"##FASTA\n>c1\n{genome[:3000]}\n>c2\n{genome[3000:6000]}\n")
    assert main(["annotate", "fit", "--model", str(converted), "--annotation", str(gff), "--out", str(tmp_path / "seg"),
                 "--holdout", "c2", "--epochs", "1", "--window", "256", "--context", "32", "--hidden", "8",
                 "--crop", "256", "--max_train_bases", "2000", "--device", "cpu", "--progress", "none"]) == 0
    assert json.loads((tmp_path / "seg" / "config.json").read_text())["model_architecture"] == "striped_hyena2"
    # serve: the REST API in-process scores as the Python API does
    with TestClient(create_app(model=str(converted), device="cpu", load_in_background=False)) as client:
        response = client.post("/v1/score", json={"sequences": [genome[:300]]})
        assert response.status_code == 200, response.text
        got = response.json()["scores"][0]["log_likelihood"]
    assert abs(got - lm.score(genome[:300]).log_likelihood) < 1e-4


# ----------------------------------------------------------------------------- safety and bad input
def published_state() -> dict:
    return {k: v for k, v in load_untrusted(CHECKPOINT).items() if isinstance(v, torch.Tensor)}


def convert(tmp_path, state=None, config=None, raw: bytes | None = None) -> tuple[int, Path]:
    ckpt, cfg, out = tmp_path / "evo2.pt", tmp_path / "evo2.yml", tmp_path / "out"
    if raw is not None:
        ckpt.write_bytes(raw)
    else:
        torch.save(published_state() if state is None else state, ckpt)
    cfg.write_text(config if isinstance(config, str) else yaml.safe_dump(config or yaml.safe_load(CONFIG.read_text())))
    return main(["convert", "evo2", "--checkpoint", str(ckpt), "--model_config", str(cfg), "--out", str(out)]), out


def test_a_checkpoint_that_runs_code_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state = published_state()
    state["blocks.0.projections._extra_state"] = Payload()
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpoint, match="system"):
        import_evo2(tmp_path / "evil.pt", CONFIG)
    code, out = convert(tmp_path, state=state)
    assert code == 2 and "refused" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()


def test_fp8_extra_state_is_ignored_with_a_note(tmp_path, capsys):
    state = published_state()
    state["blocks.1.projections._extra_state"] = io.BytesIO(b"fp8 scaling metadata")
    state["blocks.3.inner_mha_cls.Wqkv._extra_state"] = None
    code, out = convert(tmp_path, state=state)
    assert code == 0 and "_extra_state entries" in capsys.readouterr().err
    assert json.loads((out / "conversion.json").read_text())["skipped"]["fp8_extra_state"] == 2


def _edit_config(**changes):
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg.update(changes)
    return cfg


def _drop(key):
    state = published_state()
    del state[key]
    return state


def _reshape(key):
    state = published_state()
    state[key] = state[key][:-1]
    return state


@pytest.mark.parametrize("case, kwargs, message, named", [
    ("unknown field", dict(config=_edit_config(use_magic_kernels=True)), "unknown StripedHyena 2 option 'use_magic_kernels'", "evo2.yml"),
    ("unsupported value", dict(config=_edit_config(proj_groups=2)), "proj_groups = 2 is not supported", "evo2.yml"),
    ("unsupported filters", dict(config=_edit_config(num_filters=16)), "num_filters = 16 is not supported", "evo2.yml"),
    ("missing field", dict(config={k: v for k, v in _edit_config().items() if k != "state_size"}), "missing state_size", "evo2.yml"),
    ("layer in two lists", dict(config=_edit_config(hcs_layer_idxs=[0, 4, 5])), "hcm_layer_idxs names layer 5", "evo2.yml"),
    ("fewer layers", dict(config=_edit_config(num_layers=6, hcl_layer_idxs=[2])), "layer 6 is beyond num_layers = 6", "evo2.pt"),
    ("wider", dict(config=_edit_config(hidden_size=64, num_filters=64)), "has shape", "evo2.pt"),
    ("longer filter", dict(config=_edit_config(hcs_filter_length=5)), "blocks.0.filter.h has shape (8, 1, 7)", "evo2.pt"),
    ("missing tensor", dict(state=_drop("blocks.2.filter.residues")), "no blocks.2.filter.residues", "evo2.pt"),
    ("wrong shape", dict(state=_reshape("blocks.5.filter.h")), "blocks.5.filter.h has shape (7, 1, 128)", "evo2.pt"),
    ("truncated", dict(raw=CHECKPOINT.read_bytes()[:50_000]), "not a readable PyTorch checkpoint", "evo2.pt"),
    ("not a checkpoint", dict(raw=b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n"), "not a readable", "evo2.pt"),
    ("not YAML", dict(config="hidden_size: [32\n"), "not YAML", "evo2.yml"),
])
def test_bad_input_exits_2_names_the_file_and_leaves_nothing(tmp_path, capsys, case, kwargs, message, named):
    """Config problems name the YAML file; tensors that do not fit it name the checkpoint."""
    code, out = convert(tmp_path, **kwargs)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert f"{tmp_path / named}:" in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_missing_files_are_input_errors(tmp_path, capsys):
    assert main(["convert", "evo2", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    assert main(["convert", "evo2", "--checkpoint", str(CHECKPOINT), "--model_config", str(tmp_path / "none.yml"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "no such Evo 2 config file" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_classifier_on_the_converted_model_saves_and_loads(converted, tmp_path):
    rows = ["sequence\tlabel"]
    rng = np.random.default_rng(0)
    for i in range(24):
        alphabet = list("ACGT") if i % 2 else list("AT")
        rows.append("".join(rng.choice(alphabet, 40)) + ("\tgc" if i % 2 else "\tat"))
    table = tmp_path / "t.tsv"
    table.write_text("\n".join(rows) + "\n")
    clf = tmp_path / "clf"
    assert main(["classify", "fit", "--model", str(converted), "--train", str(table), "--out", str(clf),
                 "--frozen", "true", "--progress", "none"]) == 0
    assert json.loads((clf / "config.json").read_text())["model_architecture"] == "striped_hyena2"
    assert main(["classify", "predict", "--classifier", str(clf), "--input", str(table),
                 "--out", str(tmp_path / "p.tsv"), "--progress", "none"]) == 0
    assert len((tmp_path / "p.tsv").read_text().splitlines()) == 25
