"""HyenaDNA import: checkpoint folders in HyenaDNA's published layout, built from random weights.

The converted model is held against an independent forward pass written here from HyenaDNA's
published equations (LayerNorm pre-norm blocks; Hyena operator: in_proj, width-3 depthwise
causal conv, gates x0 x1 and value v, implicit filter = sine MLP of the stored positional
features times (exp(-t |delta|) + 0.05), FFT long convolution plus the filter bias skip;
tanh-GELU MLP; final LayerNorm; head tied to the embedding), which reads the checkpoint's own
tensors, buffers included.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genoseq.cli import main
from genoseq.errors import InputError
from genoseq.models import GenoSeqLM
from genoseq.models.hyenadna import HYENADNA_VOCAB, import_hyenadna, vocabulary_map
from genoseq.models.inference import token_log_probs
from genoseq.models.untrusted import UnsafeCheckpoint, load_untrusted
from genoseq.tokenizer import Tokenizer

TOK = Tokenizer()


def hyenadna_config(d_model=16, n_layer=2, l_max=130, checkpoint_mixer=False, **layer) -> dict:
    """A config.json in the format HyenaDNA publishes (values of a tiny model)."""
    cfg = {
        "d_model": d_model, "n_layer": n_layer, "d_inner": 4 * d_model, "vocab_size": 12,
        "resid_dropout": 0.0, "embed_dropout": 0.1, "fused_mlp": False, "fused_dropout_add_ln": True,
        "residual_in_fp32": True, "pad_vocab_size_multiple": 8, "return_hidden_state": True,
        "layer": {"_name_": "hyena", "emb_dim": 5, "filter_order": 24, "local_order": 3, "l_max": l_max,
                  "modulate": True, "w": 10, "lr": 6e-4, "wd": 0.0, "lr_pos_emb": 0.0, **layer},
    }
    if checkpoint_mixer:
        cfg.update(checkpoint_mixer=True, checkpoint_mlp=True)
    return cfg


def hyenadna_state_dict(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under HyenaDNA's key names (``model.backbone.*``), with its buffers."""
    g = torch.Generator().manual_seed(seed)
    D, n_layer, d_inner = cfg["d_model"], cfg["n_layer"], cfg["d_inner"]
    layer = cfg["layer"]
    order, hidden, emb_dim, l_max = layer.get("order", 2), layer["filter_order"], layer["emb_dim"], layer["l_max"]
    vocab = -(-cfg["vocab_size"] // cfg["pad_vocab_size_multiple"]) * cfg["pad_vocab_size_multiple"]

    def rnd(*shape, std=0.2):
        return torch.randn(*shape, generator=g) * std

    # HyenaDNA's buffers, as its PositionalEmbedding and ExponentialModulation compute them
    t = torch.linspace(0, 1, l_max)[None, :, None]
    bands = (emb_dim - 1) // 2
    w = 2 * math.pi * torch.linspace(0, l_max - 1, l_max)[None, :, None] / l_max
    f = torch.linspace(1e-4, bands - 1, bands)[None, None]
    z = torch.exp(-1j * f * w)
    z = torch.cat([t, z.real, z.imag], dim=-1)
    deltas = torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, D * (order - 1))[None, None]

    mixer, mlp = (".mixer.layer.", ".mlp.layer.") if cfg.get("checkpoint_mixer") else (".mixer.", ".mlp.")
    sd = {"model.backbone.embeddings.word_embeddings.weight": rnd(vocab, D, std=0.5)}
    streams = (order + 1) * D
    for i in range(n_layer):
        p = f"model.backbone.layers.{i}"
        sd[p + ".norm1.weight"], sd[p + ".norm1.bias"] = 1 + rnd(D, std=0.1), rnd(D, std=0.1)
        sd[p + ".norm2.weight"], sd[p + ".norm2.bias"] = 1 + rnd(D, std=0.1), rnd(D, std=0.1)
        m = p + mixer
        sd[m + "in_proj.weight"], sd[m + "in_proj.bias"] = rnd(streams, D, std=0.2), rnd(streams, std=0.1)
        sd[m + "out_proj.weight"], sd[m + "out_proj.bias"] = rnd(D, D, std=0.3), rnd(D, std=0.1)
        sd[m + "short_filter.weight"], sd[m + "short_filter.bias"] = rnd(streams, 1, 3, std=0.5), rnd(streams, std=0.1)
        fn = m + "filter_fn."
        sd[fn + "bias"] = rnd(D * (order - 1), std=0.5)
        sd[fn + "pos_emb.z"], sd[fn + "pos_emb.t"] = z.clone(), t.clone()
        sd[fn + "modulation.deltas"] = deltas.clone()
        freq = 10 + rnd(1, hidden, std=0.5)  # one Sin module shared by every position, as in HyenaDNA
        fan_in = emb_dim
        n_inner = layer.get("num_inner_mlps", 2)
        for j in range(n_inner + 1):
            sd[fn + f"implicit_filter.{2 * j}.weight"] = rnd(hidden, fan_in, std=0.2)
            sd[fn + f"implicit_filter.{2 * j}.bias"] = rnd(hidden, std=0.2)
            sd[fn + f"implicit_filter.{2 * j + 1}.freq"] = freq
            fan_in = hidden
        sd[fn + f"implicit_filter.{2 * (n_inner + 1)}.weight"] = rnd(D * (order - 1), hidden, std=0.05)
        q = p + mlp
        sd[q + "fc1.weight"], sd[q + "fc1.bias"] = rnd(d_inner, D, std=0.2), rnd(d_inner, std=0.1)
        sd[q + "fc2.weight"], sd[q + "fc2.bias"] = rnd(D, d_inner, std=0.1), rnd(D, std=0.1)
    sd["model.backbone.ln_f.weight"], sd["model.backbone.ln_f.bias"] = 1 + rnd(D, std=0.1), rnd(D, std=0.1)
    sd["model.lm_head.weight"] = sd["model.backbone.embeddings.word_embeddings.weight"]  # tied
    return sd


def write_checkpoint(folder: Path, cfg: dict, state: dict | None = None, extra: dict | None = None) -> Path:
    import argparse

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    state = hyenadna_state_dict(cfg) if state is None else state
    ckpt = {"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.8.6", "state_dict": state,
            # hyperparameters as a library object, as Hydra/omegaconf configs are: read, never rebuilt
            "hyper_parameters": argparse.Namespace(model=cfg, path=Path("/train/run")),
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 6e-4}]}],
            **(extra or {})}
    torch.save(ckpt, folder / "weights.ckpt")
    return folder


# ----------------------------------------------------------------------------- the reference
def hyenadna_log_probs(sd: dict[str, torch.Tensor], cfg: dict, hyena_ids: torch.Tensor) -> torch.Tensor:
    """log_softmax of HyenaDNA's next-token logits (B, L, V), from its equations and tensors."""
    sd = {k.replace(".mixer.layer.", ".mixer.").replace(".mlp.layer.", ".mlp."): v.double() for k, v in sd.items()}
    D, order = cfg["d_model"], cfg["layer"].get("order", 2)
    n_inner = cfg["layer"].get("num_inner_mlps", 2)
    B, L = hyena_ids.shape
    emb = sd["model.backbone.embeddings.word_embeddings.weight"]
    residual = emb[hyena_ids]
    for i in range(cfg["n_layer"]):
        p = f"model.backbone.layers.{i}."
        h = F.layer_norm(residual, (D,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-5)
        m = p + "mixer."
        u = (h @ sd[m + "in_proj.weight"].T + sd[m + "in_proj.bias"]).transpose(1, 2)  # (B, 3D, L)
        uc = F.conv1d(u, sd[m + "short_filter.weight"], sd[m + "short_filter.bias"], padding=2,
                      groups=u.shape[1])[..., :L]
        *x, v = uc.split(D, dim=1)
        fn = m + "filter_fn."
        z, t = sd[fn + "pos_emb.z"][:, :L], sd[fn + "pos_emb.t"][:, :L]
        k = z
        for j in range(n_inner + 1):
            k = torch.sin(sd[fn + f"implicit_filter.{2 * j + 1}.freq"]
                          * (k @ sd[fn + f"implicit_filter.{2 * j}.weight"].T + sd[fn + f"implicit_filter.{2 * j}.bias"]))
        k = k @ sd[fn + f"implicit_filter.{2 * (n_inner + 1)}.weight"].T
        k = k * (torch.exp(-t * sd[fn + "modulation.deltas"].abs()) + 0.05)  # (1, L, (o-1) D)
        k = k[0].T.reshape(order - 1, D, L)
        bias = sd[fn + "bias"].reshape(order - 1, D)
        for o, x_i in enumerate(reversed(x[1:])):
            v = v * x_i
            n = 2 * L
            y = torch.fft.irfft(torch.fft.rfft(v, n=n) * torch.fft.rfft(k[o], n=n), n=n)[..., :L]
            v = y + v * bias[o][:, None]
        y = (v * x[0]).transpose(1, 2) @ sd[m + "out_proj.weight"].T + sd[m + "out_proj.bias"]
        residual = residual + y
        h = F.layer_norm(residual, (D,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-5)
        h = F.gelu(h @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"], approximate="tanh")
        residual = residual + h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    h = F.layer_norm(residual, (D,), sd["model.backbone.ln_f.weight"], sd["model.backbone.ln_f.bias"], 1e-5)
    return torch.log_softmax(h @ emb.T, dim=-1)


def to_hyena_ids(genoseq_ids: torch.Tensor) -> torch.Tensor:
    """genoseq token ids -> HyenaDNA's (by token name)."""
    table = {TOK.tokens[g]: g for g in range(TOK.vocab_size)}
    names = {"[EOS]": "[SEP]"}
    lookup = torch.tensor([HYENADNA_VOCAB.index(names.get(tok, tok)) for tok in sorted(table, key=table.get)])
    return lookup[genoseq_ids]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = hyenadna_config()
    folder = write_checkpoint(tmp_path_factory.mktemp("hyenadna") / "hyenadna-test-128", cfg)
    return folder, cfg


@pytest.fixture(scope="module")
def converted(checkpoint, tmp_path_factory):
    folder, _ = checkpoint
    out = tmp_path_factory.mktemp("converted") / "model"
    assert main(["convert", "hyenadna", "--checkpoint", str(folder), "--out", str(out)]) == 0
    return out


def real_sequence(ecoli_fasta, start: int, length: int) -> str:
    with open(ecoli_fasta) as handle:
        next(handle)
        seq = "".join(line.strip() for _, line in zip(range((start + length) // 60 + 2), handle))
    return seq[start : start + length]


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("checkpoint_mixer", [False, True])
def test_log_probs_equal_hyenadna_equations(tmp_path, ecoli_fasta, checkpoint_mixer):
    cfg = hyenadna_config(checkpoint_mixer=checkpoint_mixer)
    state = hyenadna_state_dict(cfg, seed=1 + checkpoint_mixer)
    if checkpoint_mixer:  # positional features trained (lr_pos_emb > 0) are carried as they are
        state["model.backbone.layers.1.mixer.layer.filter_fn.pos_emb.z"] += 0.01
    folder = write_checkpoint(tmp_path / "ckpt", cfg, state=state)
    model, report = import_hyenadna(folder)
    assert report["checkpoint_mixer"] is checkpoint_mixer and report["not_imported"] == []
    seq = real_sequence(ecoli_fasta, 10_000, 128) + "N" + real_sequence(ecoli_fasta, 20_000, 1)
    ids = torch.from_numpy(TOK.encode(seq).astype(np.int64))[None]
    ref = hyenadna_log_probs(state, cfg, to_hyena_ids(ids))
    rows = vocabulary_map(model.config.vocab_size)
    with torch.no_grad():  # the same function: in float64 nothing but rounding is left
        exact = torch.log_softmax(copy.deepcopy(model).double()(ids), -1)
        ours = torch.log_softmax(model(ids).double(), -1)
    assert torch.allclose(exact, ref[..., rows], atol=1e-6, rtol=0)
    assert torch.allclose(ours, ref[..., rows], atol=1e-4, rtol=0)  # and float32 as it runs
    # and through the scoring path that `genoseq score` uses (windows of l_max - 2 = 128 bases)
    lp = token_log_probs(model, ids[0])
    want = ref[0, :-1].gather(-1, to_hyena_ids(ids[0, 1:])[:, None])[:, 0]
    assert model.training_config.window_length == 128
    assert torch.allclose(lp[:127].double(), want[:127], atol=1e-4, rtol=0)


def test_longer_inputs_see_filters_of_l_max_taps(checkpoint):
    """Beyond l_max HyenaDNA's filter has no taps: the converted filter is zero there."""
    folder, cfg = checkpoint
    model, _ = import_hyenadna(folder)
    taps = model.backbone.layers[0].mixer.filters(400)
    assert taps[:, : cfg["layer"]["l_max"]].abs().sum() > 0 and taps[:, cfg["layer"]["l_max"]:].abs().max() == 0


def test_every_tensor_is_mapped_and_the_vocabulary_is_a_permutation(checkpoint):
    folder, cfg = checkpoint
    model, report = import_hyenadna(folder)
    sd = hyenadna_state_dict(cfg)
    assert report["tensors_imported"] == len(sd)
    rows = report["vocab_rows"]
    assert sorted(rows) == list(range(16)) and model.config.vocab_size == 16
    emb = sd["model.backbone.embeddings.word_embeddings.weight"]
    for token, gid in (("A", 5), ("C", 6), ("G", 7), ("T", 8), ("N", 9), ("[PAD]", 0), ("[BOS]", 1), ("[SEP]", 2)):
        assert torch.equal(model.backbone.embedding.weight[gid], emb[HYENADNA_VOCAB.index(token)])
    assert model.lm_head.weight is model.backbone.embedding.weight  # tied, as in HyenaDNA
    block = model.backbone.layers[1]
    assert block.norm.bias is not None and block.mlp.w_in.bias is not None
    assert model.config.hyena_filter_layers == 3 and model.config.mlp_hidden == cfg["d_inner"]


def test_converted_folder_round_trips_and_runs_score_and_vep(converted, checkpoint, ecoli_fasta, tmp_path):
    folder, _ = checkpoint
    direct, _ = import_hyenadna(folder)
    loaded = GenoSeqLM.from_pretrained(converted)
    ids = torch.from_numpy(TOK.encode(real_sequence(ecoli_fasta, 5000, 100)).astype(np.int64))[None]
    with torch.no_grad():
        assert torch.equal(direct(ids), loaded(ids))
    report = json.loads((converted / "conversion.json").read_text())
    assert report["from"] == "hyenadna" and report["l_max"] == 130

    fasta = tmp_path / "slice.fa"
    seq = real_sequence(ecoli_fasta, 0, 3000)
    fasta.write_text(">K-12-MG1655\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    assert main(["score", "--model", str(converted), "--fasta", str(fasta), "--out", str(tmp_path / "s.tsv"),
                 "--progress", "none"]) == 0
    row = (tmp_path / "s.tsv").read_text().splitlines()[1].split("\t")
    assert row[0] == "K-12-MG1655" and 0 < float(row[4]) < 10
    vcf = tmp_path / "v.vcf"
    alt = {"A": "C", "C": "G", "G": "T", "T": "A"}
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=K-12-MG1655,length=3000>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   + "".join(f"K-12-MG1655\t{p}\tv{p}\t{seq[p - 1]}\t{alt[seq[p - 1]]}\t.\t.\t.\n" for p in (500, 1500, 2500)))
    out = tmp_path / "v.tsv"
    assert main(["vep", "--model", str(converted), "--reference", str(fasta), "--vcf", str(vcf), "--out", str(out),
                 "--format", "tsv", "--window_length", "100", "--progress", "none"]) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert len(rows) == 3 and all(r[5] == "ok" and math.isfinite(float(r[4])) for r in rows)


# ----------------------------------------------------------------------------- safety
def test_a_checkpoint_that_runs_code_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    cfg = hyenadna_config()
    folder = write_checkpoint(tmp_path / "evil", cfg, extra={"callbacks": {"x": Payload()}})
    with pytest.raises(UnsafeCheckpoint, match="system"):
        load_untrusted(folder / "weights.ckpt")
    out = tmp_path / "model"
    assert main(["convert", "hyenadna", "--checkpoint", str(folder), "--out", str(out)]) == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()

    class Builtin:
        def __reduce__(self):
            return (eval, ("__import__('os').system('touch " + str(marker) + "')",))

    torch.save({"state_dict": {}, "x": Builtin()}, folder / "weights.ckpt")
    with pytest.raises(UnsafeCheckpoint, match="builtins.eval"):
        load_untrusted(folder / "weights.ckpt")
    assert not marker.exists()


def test_library_objects_in_a_checkpoint_stay_inert(checkpoint):
    folder, _ = checkpoint
    ckpt = load_untrusted(folder / "weights.ckpt")
    assert type(ckpt["hyper_parameters"]).__name__ == "Opaque[argparse.Namespace]"
    assert isinstance(ckpt["state_dict"]["model.backbone.ln_f.weight"], torch.Tensor)


# ----------------------------------------------------------------------------- bad input
def _bad(tmp_path, name, edit=None, state_edit=None, write=True):
    cfg = hyenadna_config()
    folder = tmp_path / name
    state = hyenadna_state_dict(cfg)
    if state_edit:
        state_edit(state)
    if write:
        write_checkpoint(folder, edit(cfg) if edit else cfg, state)
    return folder


@pytest.mark.parametrize("case, message", [
    ("no_config", "no config.json"),
    ("no_weights", "no weights.ckpt"),
    ("attention", "attention"),
    ("order3", "order"),
    ("too_few_layers", "do not match the config"),
    ("too_many_layers", "has no model.backbone.layers.2"),
    ("wrong_width", "shape"),
    ("truncated", "not a readable PyTorch checkpoint"),
    ("not_pickle", "not a readable PyTorch checkpoint"),
    ("not_json", "not JSON"),
    ("trained_decay", "differs from HyenaDNA's formula"),
])
def test_bad_checkpoints_exit_2_and_leave_nothing(tmp_path, capsys, case, message):
    edits = {
        "attention": lambda c: {**c, "attn_layer_idx": [1], "attn_cfg": {"num_heads": 2}},
        "order3": lambda c: {**c, "layer": {**c["layer"], "order": 3}},
        "too_few_layers": lambda c: {**c, "n_layer": 1},
        "too_many_layers": lambda c: {**c, "n_layer": 3},
        "wrong_width": lambda c: {**c, "d_inner": 32},
    }

    def trained(sd):
        sd["model.backbone.layers.1.mixer.filter_fn.modulation.deltas"] *= 1.1

    folder = _bad(tmp_path, case, edits.get(case), trained if case == "trained_decay" else None)
    if case == "no_config":
        (folder / "config.json").unlink()
    elif case == "no_weights":
        (folder / "weights.ckpt").unlink()
    elif case == "truncated":
        data = (folder / "weights.ckpt").read_bytes()
        (folder / "weights.ckpt").write_bytes(data[: len(data) // 2])
    elif case == "not_pickle":
        (folder / "weights.ckpt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\n")
    elif case == "not_json":
        (folder / "config.json").write_text("{d_model: 128")
    out = tmp_path / "out"
    assert main(["convert", "hyenadna", "--checkpoint", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_existing_output_is_kept_without_overwrite(converted, checkpoint, capsys):
    folder, _ = checkpoint
    before = (converted / "model.safetensors").stat().st_mtime_ns
    assert main(["convert", "hyenadna", "--checkpoint", str(folder), "--out", str(converted)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (converted / "model.safetensors").stat().st_mtime_ns == before


def test_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such checkpoint folder"):
        import_hyenadna(tmp_path / "nowhere")
