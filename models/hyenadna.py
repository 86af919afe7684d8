"""Import a published HyenaDNA checkpoint as a :class:`~genoseq.models.GenoSeqLM`.

A HyenaDNA checkpoint folder (as published: ``config.json`` holding the ``HyenaDNAModel``
keyword arguments, and ``weights.ckpt``, a Lightning checkpoint whose ``state_dict`` holds
``model.backbone.*``; or a Hugging Face ``-hf`` folder, see below) becomes an ordinary genoseq
model: a stack of Hyena blocks with ``norm_type="layernorm"``, ``mlp_type="gelu_tanh"`` with
biases at ``d_inner`` width, and ``hyena_filter_style="hyenadna"`` (its implicit filters:
``num_inner_mlps + 1`` sine layers, positional features over ``l_max`` taps, exponential
modulation with a 0.05 shift), tied head.
Nothing here is a second model class: every difference is a :class:`ModelConfig` option.

How HyenaDNA's weights map (``i`` a layer; ``.mixer.layer`` / ``.mlp.layer`` when the model was
trained with ``checkpoint_mixer`` / ``checkpoint_mlp`` read the same):

=====================================================  ==========================================
HyenaDNA (``model.backbone.``)                          genoseq (``backbone.``)
=====================================================  ==========================================
``embeddings.word_embeddings.weight``                   ``embedding.weight`` (rows re-ordered)
``layers.i.norm1`` / ``norm2``                          ``layers.i.norm`` / ``mlp_norm``
``layers.i.mixer.in_proj`` / ``out_proj``               ``layers.i.mixer.in_proj`` / ``out_proj``
``layers.i.mixer.short_filter.weight`` (C, 1, K)        ``layers.i.mixer.conv_weight`` (C, K)
``layers.i.mixer.filter_fn.bias`` ((o-1) D)             ``layers.i.mixer.filter_bias`` (o-1, D)
``layers.i.mixer.filter_fn.implicit_filter.j``          ``layers.i.mixer.filter.mlp.j``
``layers.i.mixer.filter_fn.pos_emb.z``                 ``layers.i.mixer.filter.features``
``layers.i.mixer.filter_fn.pos_emb.t``,                 checked against the values genoseq
``layers.i.mixer.filter_fn.modulation.deltas``          computes (buffers HyenaDNA never trains)
``layers.i.mlp.fc1`` / ``fc2``                          ``layers.i.mlp.w_in`` / ``w_out``
``ln_f``                                                ``norm_f``
=====================================================  ==========================================

The Hugging Face ``-hf`` folders (``LongSafari/hyenadna-*-hf``: ``config.json`` of
``HyenaConfig``, ``model.safetensors`` or ``pytorch_model.bin`` of ``HyenaDNAForCausalLM``) hold
the same model and take the same path. :func:`hf_config` turns their config back into the
``HyenaDNAModel`` arguments it was made from (the inverse of ``HyenaConfig.from_original_config``):

=============================================  ==============================================
``-hf`` ``config.json``                         ``HyenaDNAModel`` argument
=============================================  ==============================================
``d_model n_layer d_inner vocab_size``          the same (``d_inner`` None: ``4 d_model``)
``pad_vocab_size_multiple embed_dropout``
``max_seq_len``                                 ``layer.l_max``
``emb_dim filter_order num_inner_mlps``         ``layer.`` the same
``activation_freq`` / ``hyena_order``           ``layer.w`` / ``layer.order``
``short_filter_order`` (3 only: the ``-hf``     ``layer.short_filter_order``
short conv pads by 2 whatever its width)
``layer_norm_epsilon`` (1e-5 only: the ``-hf``  ``layer_norm_epsilon``
block norms use 1e-5, ``ln_f`` this value)
``train_freq``                                  ``layer.train_freq``
``hyena_dropout`` / ``hyena_filter_dropout``    ``layer.dropout`` / ``layer.filter_dropout``
=============================================  ==============================================

``model_type`` must be ``hyenadna`` and ``architectures`` (where given) ``HyenaDNAForCausalLM``;
``use_bias``, ``initializer_range`` and ``PretrainedConfig``'s own keys change no output and are
not read. The tensors are the table above under ``hyena.backbone.`` instead of
``model.backbone.``, and the head is ``lm_head.weight``, absent when tied. HyenaDNA's filter MLP
applies one ``Sin`` module at every activation, so its ``freq`` is one tensor under the names
``implicit_filter.1.freq``, ``.3.freq``, ...: ``pytorch_model.bin`` stores every name,
``model.safetensors`` only the first (safetensors stores a shared tensor once), and the others
are that tensor again. With ``train_freq`` false no ``freq`` is stored: it is
``activation_freq`` everywhere, as in ``HyenaSin``.

Vocabulary: HyenaDNA's character tokenizer has ``[CLS] [SEP] [BOS] [MASK] [PAD] [RESERVED]
[UNK] A C G T N`` (ids 0-11), padded to a multiple of ``pad_vocab_size_multiple``. The
embedding rows are permuted onto genoseq's ids (PAD, BOS, EOS = [SEP], MASK, UNK, A C G T N
first; [CLS], [RESERVED] and the padding rows after), one row each, so the softmax runs over the
same logits and every log-probability is HyenaDNA's own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from genoseq.errors import InputError
from genoseq.tokenizer import BOS, EOS, MASK, PAD, UNK, A, C, G, N, T, Tokenizer

from .config import ModelConfig
from .untrusted import CheckedTensors, hf_folder_tensors, load_untrusted, tensor_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.ckpt"
HF_MODEL_TYPE, HF_ARCHITECTURE = "hyenadna", "HyenaDNAForCausalLM"
HYENADNA_VOCAB = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]", "A", "C", "G", "T", "N")
# genoseq id <- HyenaDNA token
GENOSEQ_IDS = {"[PAD]": PAD, "[BOS]": BOS, "[SEP]": EOS, "[MASK]": MASK, "[UNK]": UNK, "A": A, "C": C, "G": G,
               "T": T, "N": N}
MODULATION_SHIFT = 0.05  # ExponentialModulation's shift in HyenaDNA's released model code

# Top-level HyenaDNAModel arguments: the architecture ones are read, the rest only matter for
# training or for fused kernels and are ignored.
_KNOWN_ARGS = {
    "resid_dropout", "embed_dropout", "fused_mlp", "fused_dropout_add_ln", "residual_in_fp32",
    "checkpoint_mixer", "checkpoint_mlp", "return_hidden_state", "initializer_cfg", "use_head",
    "n_classes", "device", "dtype", "process_group", "layer_norm_epsilon", "pad_vocab_size_multiple",
    "vocab_size", "d_model", "n_layer", "d_inner", "layer", "attn_layer_idx", "attn_cfg",
    "max_position_embeddings", "sequence_parallel",
}
# -hf config.json (HyenaConfig) keys -> HyenaDNAModel arguments: top-level ones keep their name,
# these become Hyena layer options.
_HF_TOP_KEYS = ("d_model", "n_layer", "d_inner", "vocab_size", "pad_vocab_size_multiple", "layer_norm_epsilon",
                "embed_dropout", "resid_dropout")
_HF_LAYER_KEYS = {"max_seq_len": "l_max", "emb_dim": "emb_dim", "filter_order": "filter_order",
                  "num_inner_mlps": "num_inner_mlps", "activation_freq": "w", "hyena_order": "order",
                  "short_filter_order": "short_filter_order", "train_freq": "train_freq",
                  "hyena_dropout": "dropout", "hyena_filter_dropout": "filter_dropout"}
# HyenaConfig's defaults (the -hf folders' configuration_hyena.py) for keys a config.json leaves out
_HF_DEFAULTS = {"vocab_size": 12, "train_freq": True, "emb_dim": 3, "num_inner_mlps": 2, "hyena_order": 2,
                "short_filter_order": 3, "filter_order": 64, "activation_freq": 1, "layer_norm_epsilon": 1e-5,
                "pad_vocab_size_multiple": 8}
# Hyena layer options: value genoseq reproduces (None: any value, only used in training).
_LAYER_OPTIONS = {
    "_name_": "hyena", "order": 2, "filter_order": 64, "emb_dim": 3, "l_max": None, "d_model": None,
    "w": 1, "num_inner_mlps": 2, "modulate": True, "normalized": False, "num_heads": 1, "inner_factor": 1,
    "num_blocks": 1, "outer_mixing": False, "post_order_ffn": False, "activation": "id",
    "filter_cls": "hyena-filter", "linear_mixer": False, "bidirectional": False, "short_filter_order": None,
    "local_order": None, "fast_decay_pct": 0.3, "slow_decay_pct": 1.5, "target": 1e-2, "shift": None,
    # training-only
    "lr": None, "wd": None, "lr_pos_emb": None, "modulation_lr": None, "dropout": None, "filter_dropout": None,
    "fused_fft_conv": None, "fused_bias_fc": None, "jit_filter": None, "return_state": None, "bias": None,
    "channels": None, "train_freq": None,
}
_REPRODUCED_VALUES = {"_name_", "order", "modulate", "normalized", "num_heads", "inner_factor", "num_blocks",
                      "outer_mixing", "post_order_ffn", "activation", "filter_cls", "linear_mixer", "bidirectional",
                      "fast_decay_pct", "slow_decay_pct", "target"}


# ----------------------------------------------------------------------------- config
def read_config(checkpoint_dir: str | Path) -> dict:
    """HyenaDNA's ``config.json`` from a checkpoint folder as ``HyenaDNAModel`` arguments (an ``-hf``
    one translated by :func:`hf_config`), checked to describe a model genoseq reproduces exactly
    (a pure Hyena stack); anything else is an :class:`InputError`."""
    return _read_config(Path(checkpoint_dir))[0]


def _read_config(folder: Path) -> tuple[dict, dict | None]:
    """``(HyenaDNAModel arguments, the -hf config as read or None for HyenaDNA's own layout)``."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"not a HyenaDNA checkpoint folder: no {CONFIG_FILE}", path=str(folder))
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as err:
        raise InputError(f"not JSON: {err}", path=str(path)) from None
    if not isinstance(raw, dict):
        raise InputError("expected a JSON object of HyenaDNAModel arguments", path=str(path))
    hf = raw if is_hf_config(raw) else None
    cfg = hf_config(raw, path) if hf is not None else raw
    check_config(cfg, path)
    return cfg, hf


def check_config(cfg: dict, path) -> None:
    """``HyenaDNAModel`` arguments checked to describe a pure Hyena stack genoseq reproduces."""
    missing = [k for k in ("d_model", "n_layer", "layer") if k not in cfg]
    if missing:
        raise InputError(f"not a HyenaDNA config: missing {', '.join(missing)}", path=str(path))
    unknown = sorted(set(cfg) - _KNOWN_ARGS)
    if unknown:
        raise InputError(f"unknown HyenaDNAModel arguments {unknown}: this importer reads HyenaDNA's own "
                         "config.json format", path=str(path))
    if cfg.get("attn_layer_idx"):
        raise InputError(f"attn_layer_idx {cfg['attn_layer_idx']} names attention layers; only pure Hyena "
                         "HyenaDNA models are imported", path=str(path))
    if int(cfg.get("max_position_embeddings") or 0) > 0:
        raise InputError("max_position_embeddings > 0 (learned position embeddings) is not a HyenaDNA Hyena "
                         "model; it cannot be imported", path=str(path))
    layer = cfg["layer"]
    if not isinstance(layer, dict):
        raise InputError("'layer' must be an object of Hyena operator arguments", path=str(path))
    unknown = sorted(set(layer) - set(_LAYER_OPTIONS))
    if unknown:
        raise InputError(f"unknown Hyena layer arguments {unknown}", path=str(path))
    for key in sorted(_REPRODUCED_VALUES & set(layer)):
        if layer[key] != _LAYER_OPTIONS[key]:
            raise InputError(f"layer.{key} = {layer[key]!r}: genoseq reproduces HyenaDNA's Hyena operator with "
                             f"{key} = {_LAYER_OPTIONS[key]!r} only", path=str(path))
    if "l_max" not in layer:
        raise InputError("layer.l_max (the filter length) is missing", path=str(path))
    if layer.get("d_model", cfg["d_model"]) != cfg["d_model"]:
        raise InputError(f"layer.d_model {layer['d_model']} differs from d_model {cfg['d_model']}", path=str(path))
    vocab = int(cfg.get("vocab_size", len(HYENADNA_VOCAB)))
    if vocab != len(HYENADNA_VOCAB):
        raise InputError(f"vocab_size {vocab}: this importer maps HyenaDNA's character vocabulary of "
                         f"{len(HYENADNA_VOCAB)} tokens ({' '.join(HYENADNA_VOCAB)})", path=str(path))


def is_hf_config(raw: dict) -> bool:
    """Whether a ``config.json`` is a Hugging Face ``HyenaConfig`` (no ``layer`` object; ``model_type``,
    ``architectures`` or ``max_seq_len`` instead)."""
    return "layer" not in raw and any(key in raw for key in ("model_type", "architectures", "max_seq_len"))


def hf_config(raw: dict, path) -> dict:
    """The ``HyenaDNAModel`` arguments an ``-hf`` ``config.json`` stands for (table in the module
    docstring); keys it leaves out take ``HyenaConfig``'s defaults. Another model type or head, or
    a value the ``-hf`` code would not honour, is an :class:`InputError` naming the key."""
    model_type, architectures = raw.get("model_type"), raw.get("architectures")
    if model_type != HF_MODEL_TYPE:
        raise InputError(f"model_type {model_type!r}: this importer reads HyenaDNA's Hugging Face models "
                         f"(model_type {HF_MODEL_TYPE!r})", path=str(path))
    if architectures is not None and (not isinstance(architectures, list) or set(architectures) != {HF_ARCHITECTURE}):
        raise InputError(f"architectures {architectures!r}: only {HF_ARCHITECTURE} (HyenaDNA with its "
                         "language-model head) is imported", path=str(path))
    missing = [k for k in ("d_model", "n_layer", "max_seq_len") if k not in raw]
    if missing:
        raise InputError(f"not a HyenaDNA config: missing {', '.join(missing)}", path=str(path))
    hf = {**_HF_DEFAULTS, **raw}
    for key, value, why in (("hyena_order", 2, "its filter modulation has d_model rates whatever the order"),
                            ("short_filter_order", 3, "its short convolution pads by 2 whatever its width"),
                            ("layer_norm_epsilon", 1e-5, "its block norms use 1e-5 whatever this says")):
        if hf[key] != value:
            raise InputError(f"{key} = {hf[key]!r}: HyenaDNA's Hugging Face code computes the model genoseq "
                             f"reproduces with {key} = {value!r} only ({why})", path=str(path))
    cfg = {key: hf[key] for key in _HF_TOP_KEYS if hf.get(key) is not None}
    cfg["layer"] = {"_name_": "hyena", **{option: hf[key] for key, option in _HF_LAYER_KEYS.items() if key in hf}}
    return cfg


def padded_vocab(cfg: dict) -> int:
    vocab, multiple = int(cfg.get("vocab_size", len(HYENADNA_VOCAB))), int(cfg.get("pad_vocab_size_multiple", 1))
    return -(-vocab // multiple) * multiple


def model_config(cfg: dict, short_conv: int = 3) -> ModelConfig:
    """The genoseq architecture of a HyenaDNA config (from :func:`read_config`)."""
    layer, d_model = cfg["layer"], int(cfg["d_model"])
    d_inner = int(cfg.get("d_inner") or 4 * d_model)
    out = ModelConfig(
        d_model=d_model, pattern="H", n_repeats=int(cfg["n_layer"]),
        vocab_size=padded_vocab(cfg), tie_embeddings=True, dropout=0.0,
        norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)), norm_type="layernorm",
        mlp_type="gelu_tanh", mlp_ratio=d_inner / d_model, mlp_bias=True,
        hyena_order=int(layer.get("order", 2)), hyena_filter_dim=int(layer.get("filter_order", 64)),
        hyena_filter_emb=int(layer.get("emb_dim", 3)), hyena_short_conv=short_conv,
        hyena_filter_len=int(layer["l_max"]), hyena_filter_style="hyenadna",
        hyena_filter_layers=int(layer.get("num_inner_mlps", 2)) + 1, hyena_sine_freq=float(layer.get("w", 1)),
        hyena_modulation_shift=float(layer["shift"] if layer.get("shift") is not None else MODULATION_SHIFT),
    )
    if out.mlp_hidden != d_inner:
        raise InputError(f"d_inner {d_inner} is not a multiple of 8; genoseq's MLP width would differ")
    return out


def vocabulary_map(n_rows: int) -> list[int]:
    """``rows[g]`` = the HyenaDNA id whose embedding row becomes genoseq id ``g`` (a permutation
    of ``range(n_rows)``)."""
    hyena_of = {GENOSEQ_IDS[tok]: i for i, tok in enumerate(HYENADNA_VOCAB) if tok in GENOSEQ_IDS}
    rest = iter(i for i in range(n_rows) if i not in hyena_of.values())
    return [hyena_of[g] if g in hyena_of else next(rest) for g in range(n_rows)]


# ----------------------------------------------------------------------------- weights
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)$")


def backbone_tensors(state: dict[str, torch.Tensor], path) -> tuple[dict[str, torch.Tensor], torch.Tensor | None,
                                                                    list[str], str]:
    """``(backbone tensors keyed from "embeddings..." / "layers..." / "ln_f...", lm_head weight or
    None, keys not imported, the prefix as stored)`` from a checkpoint ``state_dict``: the
    ``model.`` (``hyena.`` in ``-hf`` files, or any) prefix before ``backbone.`` is dropped and
    gradient-checkpointing's ``.layer`` is removed."""
    backbone, head, other, prefix = {}, None, [], "backbone."
    for key, value in state.items():
        if "backbone." in key:
            stored, name = key.split("backbone.", 1)
            name = re.sub(r"\.(mixer|mlp)\.layer\.", r".\1.", name)
            if name in backbone:
                raise InputError(f"two checkpoint keys map to backbone.{name}", path=str(path))
            prefix = stored + "backbone." if not backbone else prefix
            backbone[name] = value
        elif key.endswith("lm_head.weight"):
            head = value
        else:
            other.append(key)
    if not backbone:
        raise InputError("the checkpoint's state_dict has no backbone.* weights; is this a HyenaDNA model?",
                         path=str(path))
    return backbone, head, other, prefix


class _Checkpoint(CheckedTensors):
    """HyenaDNA backbone tensors taken one by one (named ``<prefix><key>`` in messages, the prefix
    as the file spells it: ``model.backbone.``, ``hyena.backbone.``)."""

    def __init__(self, tensors: dict[str, torch.Tensor], path, prefix: str = "backbone.") -> None:
        super().__init__(tensors, path, prefix=prefix)

    def check_all_taken(self, n_layers: int) -> None:
        unused = self.unused()
        if unused:
            extra = re.match(r"layers\.(\d+)\.", unused[0])
            hint = (f" (layer {extra.group(1)} is beyond n_layer = {n_layers})"
                    if extra and int(extra.group(1)) >= n_layers else "")
            raise InputError(f"{len(unused)} checkpoint tensors do not match the config, e.g. "
                             f"{self.prefix}{unused[0]}{hint}", path=str(self.path))


def _filter_tensors(ckpt: _Checkpoint, cfg: ModelConfig, f: str, g: str, reference, t_ref) -> dict[str, torch.Tensor]:
    """A Hyena block's implicit filter (HyenaDNA's ``filter_fn.`` keys ``f``, genoseq's layer
    prefix ``g``): the sine MLP and the positional features; the buffers genoseq computes itself
    are held to ``reference`` (an ``ImplicitFilter`` of the config) instead of imported."""
    filt, hidden, lmax = (cfg.hyena_order - 1) * cfg.d_model, cfg.hyena_filter_dim, cfg.hyena_filter_len
    out: dict[str, torch.Tensor] = {}
    n_layers = cfg.hyena_filter_layers
    for j in range(n_layers):
        lin, act = 2 * j, 2 * j + 1
        fan_in = cfg.hyena_filter_emb if j == 0 else hidden
        out[g + f"mixer.filter.mlp.{lin}.weight"] = ckpt.take(f + f"implicit_filter.{lin}.weight", (hidden, fan_in))
        out[g + f"mixer.filter.mlp.{lin}.bias"] = ckpt.take(f + f"implicit_filter.{lin}.bias", (hidden,))
        out[g + f"mixer.filter.mlp.{act}.freq"] = ckpt.take(f + f"implicit_filter.{act}.freq", (1, hidden))[0]
    last = 2 * n_layers
    out[g + f"mixer.filter.mlp.{last}.weight"] = ckpt.take(f + f"implicit_filter.{last}.weight", (filt, hidden))
    out[g + "mixer.filter.features"] = ckpt.take(f + "pos_emb.z", (1, lmax, cfg.hyena_filter_emb))[0]
    # Buffers genoseq computes (HyenaDNA never trains them): hold the checkpoint to them.
    for name, stored, computed in (
        ("pos_emb.t", ckpt.take(f + "pos_emb.t", (1, lmax, 1), optional=True), t_ref[None]),
        ("modulation.deltas", ckpt.take(f + "modulation.deltas", (1, 1, filt)), reference.rates[None, None]),
    ):
        if stored is None:
            continue
        stored = stored.abs() if name == "modulation.deltas" else stored
        err = float((stored - computed).abs().max())
        if err > 1e-6:
            raise InputError(f"{ckpt.prefix}{f}{name} differs from HyenaDNA's formula by {err:.2g} (trained "
                             "decay rates cannot be imported exactly)", path=str(ckpt.path))
    return out


def _layer_tensors(ckpt: _Checkpoint, cfg: ModelConfig, i: int, reference, t_ref) -> dict[str, torch.Tensor]:
    """Block ``i`` under genoseq's names: its two norms, the Hyena mixer (projections, short
    conv, filter) and the MLP."""
    D, order = cfg.d_model, cfg.hyena_order
    streams, filt = (order + 1) * D, (order - 1) * D
    take = ckpt.take
    h, g = f"layers.{i}.", f"backbone.layers.{i}."
    out: dict[str, torch.Tensor] = {}
    for a, b in (("norm1", "norm"), ("norm2", "mlp_norm")):
        out[g + b + ".weight"] = take(h + a + ".weight", (D,))
        out[g + b + ".bias"] = take(h + a + ".bias", (D,))
    m = h + "mixer."
    out[g + "mixer.in_proj.weight"] = take(m + "in_proj.weight", (streams, D))
    bias = take(m + "in_proj.bias", (streams,), optional=True)  # later HyenaDNA code has none
    out[g + "mixer.in_proj.bias"] = torch.zeros(streams) if bias is None else bias
    out[g + "mixer.conv_weight"] = take(m + "short_filter.weight", (streams, 1, cfg.hyena_short_conv))[:, 0]
    out[g + "mixer.conv_bias"] = take(m + "short_filter.bias", (streams,))
    fb = take(m + "filter_fn.bias", (filt,), optional=True)  # absent where HyenaDNA adds no skip
    out[g + "mixer.filter_bias"] = torch.zeros(order - 1, D) if fb is None else fb.view(order - 1, D)
    out[g + "mixer.out_proj.weight"] = take(m + "out_proj.weight", (D, D))
    out[g + "mixer.out_proj.bias"] = take(m + "out_proj.bias", (D,))
    out.update(_filter_tensors(ckpt, cfg, m + "filter_fn.", g, reference, t_ref))
    mlp = h + "mlp."
    out[g + "mlp.w_in.weight"] = take(mlp + "fc1.weight", (cfg.mlp_hidden, D))
    out[g + "mlp.w_in.bias"] = take(mlp + "fc1.bias", (cfg.mlp_hidden,))
    out[g + "mlp.w_out.weight"] = take(mlp + "fc2.weight", (D, cfg.mlp_hidden))
    out[g + "mlp.w_out.bias"] = take(mlp + "fc2.bias", (D,))
    return out


def convert_state_dict(hyena: dict[str, torch.Tensor], head: torch.Tensor | None, cfg: ModelConfig,
                       path, prefix: str = "backbone.") -> tuple[dict[str, torch.Tensor], bool]:
    """genoseq ``GenoSeqLM`` state dict from HyenaDNA backbone tensors; every tensor must be
    used and have the shape the config implies (else :class:`InputError` naming the key).
    Returns the state dict and whether the head is tied."""
    from .blocks import ImplicitFilter

    D = cfg.d_model
    ckpt = _Checkpoint(hyena, path, prefix)
    emb = ckpt.take("embeddings.word_embeddings.weight")
    if tuple(emb.shape) != (cfg.vocab_size, D):
        raise InputError(f"{prefix}embeddings.word_embeddings.weight has shape {tuple(emb.shape)}; vocab_size and "
                         f"pad_vocab_size_multiple imply ({cfg.vocab_size}, {D})", path=str(path))
    rows = vocabulary_map(cfg.vocab_size)
    out = {"backbone.embedding.weight": emb[rows]}
    reference = ImplicitFilter((cfg.hyena_order - 1) * D, cfg.hyena_filter_emb, cfg.hyena_filter_dim,
                               cfg.hyena_filter_len, style="hyenadna", layers=cfg.hyena_filter_layers)
    t_ref, _ = reference.positions(cfg.hyena_filter_len)
    for i in range(cfg.n_layers):
        out.update(_layer_tensors(ckpt, cfg, i, reference, t_ref))
    out["backbone.norm_f.weight"] = ckpt.take("ln_f.weight", (D,))
    out["backbone.norm_f.bias"] = ckpt.take("ln_f.bias", (D,))
    ckpt.check_all_taken(cfg.n_layers)
    tied = True
    if head is not None:
        head = head.detach().to(torch.float32)
        if tuple(head.shape) != tuple(emb.shape):
            raise InputError(f"lm_head.weight has shape {tuple(head.shape)}, the embedding {tuple(emb.shape)}", path=str(path))
        tied = torch.equal(head, emb)
        if not tied:
            out["lm_head.weight"] = head[rows]
    return out, tied


# ----------------------------------------------------------------------------- the folder
def checkpoint_state(folder: Path, hf: dict | None) -> tuple[dict[str, torch.Tensor], Path]:
    """``(tensors by their stored names, the file)`` of a checkpoint folder: ``weights.ckpt``'s
    ``state_dict`` in HyenaDNA's own layout; ``model.safetensors`` or else ``pytorch_model.bin`` in
    an ``-hf`` one (``hf``: its config). Pickles are read by :func:`load_untrusted` only."""
    if hf is not None:
        return hf_folder_tensors(folder, what="a HyenaDNA Hugging Face folder")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise InputError(f"not a HyenaDNA checkpoint folder: no {WEIGHTS_FILE}", path=str(folder))
    ckpt = load_untrusted(weights)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    return tensor_dict(dict(state) if isinstance(state, dict) else state, path=weights), weights


def hf_frequencies(hyena: dict[str, torch.Tensor], cfg: dict, prefix: str, path) -> None:
    """Every name of each filter's one ``Sin`` frequency filled in for an ``-hf`` checkpoint (see
    the module docstring): from the one stored, or ``activation_freq`` when ``train_freq`` is
    false. A filter with none stored is left for :func:`convert_state_dict` to name."""
    layer = cfg["layer"]
    activations, hidden = int(layer.get("num_inner_mlps", 2)) + 1, int(layer.get("filter_order", 64))
    trained = bool(layer.get("train_freq", True))
    for i in range(int(cfg["n_layer"])):
        names = [f"layers.{i}.mixer.filter_fn.implicit_filter.{2 * j + 1}.freq" for j in range(activations)]
        stored = [name for name in names if name in hyena]
        if stored and not trained:
            raise InputError(f"{prefix}{stored[0]} is stored but train_freq is false: HyenaDNA's code would not "
                             "read it", path=str(path))
        if stored or not trained:
            value = hyena[stored[0]] if stored else float(layer.get("w", 1)) * torch.ones(1, hidden)
            for name in names:
                hyena.setdefault(name, value)


def import_hyenadna(checkpoint_dir: str | Path):
    """``(GenoSeqLM, report)`` from a HyenaDNA checkpoint folder in either layout; see the module
    docstring. Every problem is an :class:`InputError` naming the file (and the tensor)."""
    from .lm import GenoSeqLM

    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise InputError("no such checkpoint folder", path=str(folder))
    hcfg, hf = _read_config(folder)
    state, weights = checkpoint_state(folder, hf)
    hyena, head, other, prefix = backbone_tensors(state, weights)
    stored = len(hyena) + (head is not None)
    if hf is not None:
        hf_frequencies(hyena, hcfg, prefix, weights)
        if head is None and not hf.get("tie_word_embeddings", True):
            raise InputError("the file has no lm_head.weight, and config.json's tie_word_embeddings is false",
                             path=str(weights))
    conv = hyena.get("layers.0.mixer.short_filter.weight")
    short = int(conv.shape[-1]) if conv is not None and conv.dim() == 3 else 3
    cfg = model_config(hcfg, short_conv=short)
    converted, tied = convert_state_dict(hyena, head, cfg, weights, prefix)
    if not tied:
        cfg.tie_embeddings = False
    l_max = cfg.hyena_filter_len
    model = GenoSeqLM(cfg, tokenizer=Tokenizer(), window_length=max(2, l_max - 2))
    missing, unexpected = model.load_state_dict(converted, strict=False)
    missing = [k for k in missing if not (tied and k == "lm_head.weight")]
    if missing or unexpected:  # a bug here, not in the user's file
        raise RuntimeError(f"HyenaDNA conversion left keys unset {missing} or unknown {unexpected}")
    report = {
        "source": str(folder.resolve()), "layout": "hf" if hf is not None else "hyenadna", "weights": weights.name,
        "d_model": cfg.d_model, "n_layer": cfg.n_layers, "l_max": l_max,
        "parameters": sum(p.numel() for p in model.parameters()), "tensors_imported": stored,
        "not_imported": other, "tied_head": tied, "vocab_rows": vocabulary_map(cfg.vocab_size),
        "checkpoint_mixer": any(".mixer.layer." in k for k in state),
    }
    return model.eval(), report


__all__ = ["HYENADNA_VOCAB", "hf_config", "import_hyenadna", "model_config", "read_config", "vocabulary_map"]
