"""HyenaDNA's Hugging Face (``-hf``) folders convert to the same model as HyenaDNA's own layout.

Each ``-hf`` folder here is made from a checkpoint in HyenaDNA's own layout (the one
``test_hyenadna.py`` holds to HyenaDNA's equations) the way ``HyenaConfig.from_original_config``
and ``save_pretrained`` make the published ones: the config translated to ``HyenaConfig`` keys,
``model.backbone.*`` renamed ``hyena.backbone.*``, the head as ``lm_head.weight``; in
``model.safetensors`` each filter's shared ``Sin`` frequency is stored once
(``implicit_filter.1.freq``) and a tied head not at all, ``pytorch_model.bin`` keeps every name.
Both folders are converted and every tensor and every per-base log-probability compared.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_hyenadna import hyenadna_config, hyenadna_state_dict, real_sequence, write_checkpoint

from genoseq.cli import main
from genoseq.errors import InputError
from genoseq.models import GenoSeqLM
from genoseq.models.hyenadna import import_hyenadna
from genoseq.models.inference import token_log_probs
from genoseq.tokenizer import Tokenizer

TOK = Tokenizer()
SHARED_FREQ = re.compile(r"implicit_filter\.(\d+)\.freq$")


def hf_config_json(cfg: dict, tie_word_embeddings: bool = True, train_freq: bool = True) -> dict:
    """The ``config.json`` of the ``-hf`` folder made from HyenaDNA config ``cfg``."""
    layer = cfg["layer"]
    return {
        "_name_or_path": "hyenadna-test-hf", "architectures": ["HyenaDNAForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_hyena.HyenaConfig",
                     "AutoModelForCausalLM": "modeling_hyena.HyenaDNAForCausalLM"},
        "model_type": "hyenadna", "torch_dtype": "float32", "transformers_version": "4.35.0",
        "vocab_size": cfg["vocab_size"], "d_model": cfg["d_model"], "n_layer": cfg["n_layer"],
        "d_inner": cfg["d_inner"], "max_seq_len": layer["l_max"], "emb_dim": layer["emb_dim"],
        "filter_order": layer["filter_order"], "num_inner_mlps": layer.get("num_inner_mlps", 2),
        "hyena_order": layer.get("order", 2), "short_filter_order": layer.get("local_order", 3),
        "activation_freq": layer["w"], "train_freq": train_freq, "use_bias": True,
        "embed_dropout": cfg["embed_dropout"], "hyena_dropout": 0.0, "hyena_filter_dropout": 0.0,
        "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
        "pad_vocab_size_multiple": cfg["pad_vocab_size_multiple"], "tie_word_embeddings": tie_word_embeddings,
    }


def hf_state_dict(state: dict[str, torch.Tensor], safetensors: bool, store_head: bool,
                  train_freq: bool = True) -> dict[str, torch.Tensor]:
    """``state`` (HyenaDNA's names) under the ``-hf`` names, as that file spelling stores them."""
    out = {}
    for key, value in state.items():
        key = key.replace(".mixer.layer.", ".mixer.").replace(".mlp.layer.", ".mlp.")
        freq = SHARED_FREQ.search(key)
        if key == "model.lm_head.weight":
            if store_head:
                out["lm_head.weight"] = value.clone()
        elif freq and (not train_freq or (safetensors and freq.group(1) != "1")):
            continue
        else:
            out["hyena." + key.removeprefix("model.")] = value.clone()
    return out


def write_hf(folder: Path, hf_cfg: dict, hf_state: dict, safetensors: bool) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(hf_cfg, indent=2, sort_keys=True))
    if safetensors:
        save_file(hf_state, str(folder / "model.safetensors"))
    else:
        torch.save(hf_state, folder / "pytorch_model.bin")
    return folder


def twin_folders(tmp_path, weights="model.safetensors", head="absent", train_freq=True, state_edit=None):
    """``(HyenaDNA layout folder, -hf folder)`` holding the same model (the -hf one edited by
    ``state_edit``)."""
    cfg = hyenadna_config()
    state = hyenadna_state_dict(cfg, seed=3)
    if head == "untied":
        state["model.lm_head.weight"] = state["model.lm_head.weight"] + 0.1
    if not train_freq:  # HyenaSin's fixed frequency, activation_freq at every position
        for key in [k for k in state if SHARED_FREQ.search(k)]:
            state[key] = torch.full_like(state[key], float(cfg["layer"]["w"]))
    original = write_checkpoint(tmp_path / "hyenadna-test", cfg, state=state)
    safetensors = weights == "model.safetensors"
    hf_state = hf_state_dict(state, safetensors, store_head=head != "absent", train_freq=train_freq)
    if state_edit:
        state_edit(hf_state)
    hf_cfg = hf_config_json(cfg, tie_word_embeddings=head == "absent", train_freq=train_freq)
    return original, write_hf(tmp_path / "hyenadna-test-hf", hf_cfg, hf_state, safetensors)


@pytest.mark.parametrize("weights, head, train_freq", [
    ("model.safetensors", "absent", True),    # as the hub's safetensors: tied head not stored, freq once
    ("pytorch_model.bin", "tied", True),      # from_original_config: tie_word_embeddings false, head stored
    ("model.safetensors", "untied", True),
    ("pytorch_model.bin", "absent", False),   # train_freq false: no freq stored at all
])
def test_hf_folder_converts_to_the_same_model(tmp_path, ecoli_fasta, weights, head, train_freq):
    original, hf = twin_folders(tmp_path, weights, head, train_freq)
    want, want_report = import_hyenadna(original)
    got, report = import_hyenadna(hf)
    assert report["layout"] == "hf" and report["weights"] == weights and want_report["layout"] == "hyenadna"
    assert report["tied_head"] is (head != "untied") and report["not_imported"] == []
    stored = load_file(hf / weights) if weights == "model.safetensors" else torch.load(hf / weights, weights_only=True)
    assert report["tensors_imported"] == len(stored)
    a, b = want.state_dict(), got.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert got.config == want.config
    seq = real_sequence(ecoli_fasta, 30_000, 300) + "N" + real_sequence(ecoli_fasta, 31_000, 20)
    ids = torch.from_numpy(TOK.encode(seq).astype(np.int64))
    lp_want, lp_got = token_log_probs(want, ids), token_log_probs(got, ids)
    assert lp_got.shape == (len(seq) - 1,) and torch.isfinite(lp_got).all()
    assert torch.equal(lp_want, lp_got)


def test_hf_folder_through_the_command(tmp_path, ecoli_fasta):
    original, hf = twin_folders(tmp_path)
    out = tmp_path / "model"
    assert main(["convert", "hyenadna", "--checkpoint", str(hf), "--out", str(out)]) == 0
    conversion = json.loads((out / "conversion.json").read_text())
    assert conversion["from"] == "hyenadna" and conversion["layout"] == "hf" and conversion["l_max"] == 130
    loaded, (direct, _) = GenoSeqLM.from_pretrained(out), import_hyenadna(original)
    ids = torch.from_numpy(TOK.encode(real_sequence(ecoli_fasta, 7000, 200)).astype(np.int64))[None]
    with torch.no_grad():
        assert torch.equal(loaded(ids), direct(ids))
    assert loaded.training_config.window_length == 128


# ----------------------------------------------------------------------------- bad input
def _drop(key):
    return lambda sd: sd.pop(key)


HF_BAD = {
    # case: (config edit, state edit, message)
    "sequence_classifier": ({"architectures": ["HyenaDNAForSequenceClassification"]}, None,
                            "only HyenaDNAForCausalLM"),
    "other_model": ({"model_type": "caduceus", "architectures": ["CaduceusForMaskedLM"]}, None,
                    "model_type 'caduceus'"),
    "order3": ({"hyena_order": 3}, None, "hyena_order = 3"),
    "short_filter": ({"short_filter_order": 4}, None, "short_filter_order = 4"),
    "norm_eps": ({"layer_norm_epsilon": 1e-6}, None, "layer_norm_epsilon"),
    "no_max_seq_len": ({"max_seq_len": None}, None, "missing max_seq_len"),
    "missing_tensor": ({}, _drop("hyena.backbone.layers.1.mlp.fc2.bias"),
                       "model.safetensors: the checkpoint has no hyena.backbone.layers.1.mlp.fc2.bias"),
    "missing_freq": ({}, _drop("hyena.backbone.layers.0.mixer.filter_fn.implicit_filter.1.freq"),
                     "has no hyena.backbone.layers.0.mixer.filter_fn.implicit_filter.1.freq"),
    "wrong_width": ({"d_inner": 32}, None, "hyena.backbone.layers.0.mlp.fc1.weight has shape (64, 16)"),
    "extra_layer": ({"n_layer": 1}, None, "do not match the config, e.g. hyena.backbone.layers.1."),
    "untied_without_head": ({"tie_word_embeddings": False}, None, "no lm_head.weight"),
    "frozen_freq_stored": ({"train_freq": False}, None, "is stored but train_freq is false"),
}


def bad_hf_folder(tmp_path: Path, case: str) -> tuple[Path, str]:
    """``(an -hf folder with the fault named by case, the message its error holds)``."""
    edit, state_edit, message = HF_BAD.get(case, ({}, None, None))
    _, folder = twin_folders(tmp_path, state_edit=state_edit)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(edit)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if v is not None}))
    weights = folder / "model.safetensors"
    if case == "no_weights":
        weights.unlink()
        message = "no model.safetensors or pytorch_model.bin"
    elif case == "truncated":
        weights.write_bytes(weights.read_bytes()[:-100])
        message = "model.safetensors: not a readable safetensors file"
    elif case == "lfs_pointer":
        weights.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
        message = "not a readable safetensors file"
    return folder, message


@pytest.mark.parametrize("case", [*HF_BAD, "no_weights", "truncated", "lfs_pointer"])
def test_bad_hf_folders_are_input_errors_naming_file_and_key(tmp_path, case):
    folder, message = bad_hf_folder(tmp_path, case)
    with pytest.raises(InputError) as err:
        import_hyenadna(folder)
    assert message in str(err.value) and str(folder) in str(err.value)


@pytest.mark.parametrize("case", ["sequence_classifier", "missing_tensor"])
def test_bad_hf_folders_exit_2_and_leave_nothing(tmp_path, capsys, case):
    folder, message = bad_hf_folder(tmp_path, case)
    out = tmp_path / "out"
    assert main(["convert", "hyenadna", "--checkpoint", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_pytorch_model_bin_that_runs_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    _, folder = twin_folders(tmp_path, weights="pytorch_model.bin", head="tied")
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    torch.save({**state, "lm_head.extra": Payload()}, folder / "pytorch_model.bin")
    out = tmp_path / "out"
    assert main(["convert", "hyenadna", "--checkpoint", str(folder), "--out", str(out)]) == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()
