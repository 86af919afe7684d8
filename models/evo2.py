"""Import a published Evo 2 checkpoint (StripedHyena 2) as a genoseq language model.

Evo 2 publishes one ``.pt`` file per model (a flat state dict, as its reference code ``vortex``
loads it) and a YAML config per model in its own repository (``configs/evo2-1b-8k.yml``: vortex's
keys). :func:`import_evo2` reads both (the file through the untrusted reader: tensors and plain
containers only) and builds a :class:`~genoseq.models.striped_hyena.StripedHyenaLM` whose per-base
log-probabilities are Evo 2's own. Without a config the architecture is read off the tensors' shapes
with Evo 2's published settings for the rest (heads of 128 dimensions unless the rotary
``inv_freq`` buffer tells, rotary base 10000 without
interpolation, eps 1e-6, GELU in the first MLP only, 8192-base window); the report lists them.

How the tensors map (``i`` a layer; ``blocks.i.`` -> ``backbone.layers.i.``):

=============================================  ==============================================
Evo 2                                          genoseq
=============================================  ==============================================
``embedding_layer.weight``                     ``backbone.embedding.weight`` (rows re-ordered)
``pre_norm.scale`` / ``post_norm.scale``       ``norm.scale`` / ``mlp_norm.scale``
``mlp.l1`` / ``l2`` / ``l3``                   ``mlp.w_in`` / ``w_gate`` / ``w_out``
``projections``, ``filter.short_filter_*``     ``mixer.in_proj``, ``mixer.conv_*`` (rows re-ordered
                                               so the streams are q | k | v, each d wide)
``filter.h`` (G, 1, K)                         ``mixer.filter.taps`` (G, K), last tap = current
``filter.log_poles`` (d, S, 1), ``residues``   ``mixer.filter.log_poles`` (d, S), ``residues``
``filter.D``                                   ``mixer.skip``
``out_filter_dense``                           ``mixer.out_proj``
``inner_mha_cls.Wqkv``                         ``mixer.qkv`` (rows per head -> q | k | v)
``inner_mha_cls.out_proj``, ``rotary_emb.inv_freq``  ``mixer.out_proj``, ``mixer.inv_freq``
``norm.scale``                                 ``backbone.norm_f.scale``
=============================================  ==============================================

Transformer Engine's ``*._extra_state`` entries (FP8 scaling metadata) hold no weights and are
skipped; the report counts them. Vocabulary: Evo 2 reads bytes (512 rows); the rows are permuted
so genoseq's ids read the same rows (A C G T N their letters, PAD Evo 2's pad 1, EOS its end of
document 0, BOS byte 2, MASK byte 3, UNK byte 4, the rest after), one row each, so the softmax runs
over the same logits.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genoseq.errors import InputError
from genoseq.tokenizer import BOS, EOS, MASK, PAD, UNK, A, C, G, N, T, Tokenizer

from .striped_hyena import SKIP_FROM_TAPS, StripedHyenaConfig, StripedHyenaLM
from .untrusted import CheckedTensors, load_untrusted, tensor_dict

# genoseq id <- Evo 2 byte
EVO2_BYTES = {PAD: 1, BOS: 2, EOS: 0, MASK: 3, UNK: 4, A: ord("A"), C: ord("C"), G: ord("G"), T: ord("T"), N: ord("N")}
LAYER_LISTS = {"hcs_layer_idxs": "hyena_se", "hcm_layer_idxs": "hyena_mr", "hcl_layer_idxs": "hyena_li",
               "attn_layer_idxs": "attention"}
REQUIRED = ("hidden_size", "num_layers", "num_attention_heads", "hcm_filter_length", "hcs_filter_length",
            "hcm_filter_groups", "hcs_filter_groups", "state_size", "short_filter_length", "vocab_size", "eps",
            *LAYER_LISTS)
READ = {"num_filters", "inner_mlp_size", "inner_size_multiple_of", "mlp_activation", "evo2_style_activations",
        "short_filter_bias", "qkv_proj_bias", "hyena_out_proj_bias", "mha_out_proj_bias", "rotary_emb_base",
        "rotary_emb_scaling_factor", "use_interpolated_rotary_pos_emb", "tie_embeddings", "interleave",
        "column_split", "column_split_hyena", "hyena_flip_x1x2", "max_seqlen", "hcl_filter_groups"}
# Options whose other values change the numbers in a way genoseq does not reproduce: the value it needs.
FIXED = {"proj_groups": 1, "final_norm": True, "smeared_gqa": False, "long_fir_threshold": None,
         "use_laughing_hyena": False, "tokenizer_type": "CharLevelTokenizer", "model_parallel_size": 1}
# How vortex runs (kernels, dtypes, devices, logging, initialisation): no effect on what it computes.
IGNORED = {"model_name", "make_vocab_size_divisible_by", "mlp_init_method", "mlp_output_init_method",
           "log_intermediate_values", "hyena_filter_groups", "pipe_parallel_size", "use_fp8_input_projections",
           "max_batch_size", "use_flash_attn", "use_flash_rmsnorm", "use_flash_depthwise", "use_flashfft",
           "inference_mode", "prefill_style", "print_activations", "compile", "low_mem_mode", "use_hcs_kernel",
           "use_hcm_kernel", "use_hcl_kernel", "ground_truth_activations_path", "params_dtype", "attn_block_dtype",
           "hyena_block_dtype", "mlp_dtype", "depthwise_dtype", "seqlen"}
# Evo 2's published settings, assumed when no config is given (none can be read off the tensors).
ASSUMED = {"head_dim": 128, "rotary_emb_base": 10000, "eps": 1e-6, "mlp_activation": "gelu",
           "evo2_style_activations": True, "max_seqlen": 8192, "interleave": True, "column_split": True,
           "column_split_hyena": False, "qkv_proj_bias": False}


# ----------------------------------------------------------------------------- config
def read_config(path: str | Path) -> dict:
    """Evo 2's YAML config (vortex's keys), checked to describe a model genoseq reproduces exactly;
    anything else is an :class:`InputError` naming the file and the field."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError("no such Evo 2 config file", path=str(path))
    try:
        cfg = yaml.safe_load(path.read_text())
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise InputError(f"not YAML: {str(err).splitlines()[0]}", path=str(path)) from None
    if not isinstance(cfg, dict):
        raise InputError("expected a mapping of StripedHyena 2 options (Evo 2's configs/*.yml)", path=str(path))
    check_config(cfg, path)
    return cfg


def check_config(cfg: dict, path) -> None:
    """The checks of :func:`read_config` on a config already read (or inferred)."""
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise InputError(f"not an Evo 2 config: missing {', '.join(missing)}", path=str(path))
    unknown = sorted(set(cfg) - set(REQUIRED) - READ - set(FIXED) - IGNORED)
    if unknown:
        raise InputError(f"unknown StripedHyena 2 option {unknown[0]!r} (of {len(unknown)}): genoseq does not "
                         "support it", path=str(path))
    for key, value in FIXED.items():
        if key in cfg and cfg[key] != value:
            raise InputError(f"{key} = {cfg[key]!r} is not supported: genoseq reproduces StripedHyena 2 with "
                             f"{key} = {value!r}", path=str(path))
    width = cfg["hidden_size"]
    if cfg.get("num_filters", width) != width:
        raise InputError(f"num_filters = {cfg['num_filters']} is not supported: Hyena-LI filters are per channel "
                         f"(num_filters = hidden_size = {width})", path=str(path))
    kinds = layer_kinds(cfg, path)
    if int(cfg["vocab_size"]) <= max(EVO2_BYTES.values()):
        raise InputError(f"vocab_size = {cfg['vocab_size']} is not a byte vocabulary holding A C G T N", path=str(path))
    if cfg.get("mlp_activation", "gelu") not in ("gelu", "silu"):
        raise InputError(f"mlp_activation = {cfg['mlp_activation']!r} is not supported (gelu, silu)", path=str(path))
    if "attention" in kinds and width % cfg["num_attention_heads"]:
        raise InputError(f"num_attention_heads = {cfg['num_attention_heads']} does not divide hidden_size {width}",
                         path=str(path))


def layer_kinds(cfg: dict, path) -> list[str]:
    """Each layer's kind from the four index lists, which must share out ``range(num_layers)``."""
    n = int(cfg["num_layers"])
    kinds: list[str | None] = [None] * n
    for key, kind in LAYER_LISTS.items():
        for i in cfg[key] or []:
            if not (isinstance(i, int) and 0 <= i < n) or kinds[i] is not None:
                raise InputError(f"{key} names layer {i!r}, which is out of range 0..{n - 1} or in another list",
                                 path=str(path))
            kinds[i] = kind
    if None in kinds:
        raise InputError(f"layer {kinds.index(None)} is in none of {', '.join(LAYER_LISTS)}", path=str(path))
    return kinds  # type: ignore[return-value]


def mlp_width(cfg: dict) -> int:
    """vortex's gated-MLP width: ``inner_mlp_size``, else 8/3 d rounded up to ``inner_size_multiple_of``."""
    if cfg.get("inner_mlp_size"):
        return int(cfg["inner_mlp_size"])
    multiple = int(cfg.get("inner_size_multiple_of", 64))
    return -(-int(2 * cfg["hidden_size"] * 4 / 3) // multiple) * multiple


def model_config(cfg: dict, path) -> StripedHyenaConfig:
    """The genoseq architecture of a checked Evo 2 config, with vortex's defaults for absent keys."""
    scale = float(cfg.get("rotary_emb_scaling_factor", 1.0)) if cfg.get("use_interpolated_rotary_pos_emb") else 1.0
    return StripedHyenaConfig(
        d_model=int(cfg["hidden_size"]), layers=layer_kinds(cfg, path), vocab_size=int(cfg["vocab_size"]),
        n_heads=int(cfg["num_attention_heads"]), mlp_hidden=mlp_width(cfg),
        mlp_activation=cfg.get("mlp_activation", "gelu"), act_first_layer_only=bool(cfg.get("evo2_style_activations")),
        norm_eps=float(cfg["eps"]), short_conv=int(cfg["short_filter_length"]),
        short_conv_bias=bool(cfg.get("short_filter_bias")), proj_bias=bool(cfg.get("qkv_proj_bias")),
        qkv_bias=bool(cfg.get("qkv_proj_bias", True)), hyena_out_bias=bool(cfg.get("hyena_out_proj_bias")),
        attention_out_bias=bool(cfg.get("mha_out_proj_bias", True)), se_filter_len=int(cfg["hcs_filter_length"]),
        se_groups=int(cfg["hcs_filter_groups"]), mr_filter_len=int(cfg["hcm_filter_length"]),
        mr_groups=int(cfg["hcm_filter_groups"]), li_state=int(cfg["state_size"]),
        rope_base=float(cfg.get("rotary_emb_base", 1_000_000)), rope_scale=scale,
        tie_embeddings=bool(cfg.get("tie_embeddings")),
    )


def infer_config(state: dict[str, torch.Tensor], path) -> dict:
    """An Evo 2 config (vortex's keys) read off the checkpoint's tensors, :data:`ASSUMED` for the rest."""
    emb = state.get("embedding_layer.weight")
    if emb is None or emb.dim() != 2:
        raise InputError("no embedding_layer.weight: not an Evo 2 (StripedHyena 2) checkpoint", path=str(path))
    vocab, width = emb.shape
    layers = sorted({int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.split(".")[1].isdigit()})
    inv_freq = next((v for k, v in state.items() if k.endswith("rotary_emb.inv_freq")), None)
    head_dim = 2 * inv_freq.numel() if inv_freq is not None else ASSUMED["head_dim"]
    cfg = {"hidden_size": width, "vocab_size": vocab, "num_layers": len(layers),
           "num_attention_heads": max(1, width // head_dim), "tie_embeddings": "unembed.weight" not in state,
           **{k: v for k, v in ASSUMED.items() if k != "head_dim"}, **{key: [] for key in LAYER_LISTS},
           "hcs_filter_length": 7, "hcm_filter_length": 128, "hcs_filter_groups": 1, "hcm_filter_groups": 1,
           "state_size": 16, "short_filter_length": 3}
    for i in layers:
        p = f"blocks.{i}."
        if p + "inner_mha_cls.Wqkv.weight" in state:
            cfg["attn_layer_idxs"].append(i)
        elif p + "filter.log_poles" in state:
            cfg["hcl_layer_idxs"].append(i)
            cfg["state_size"] = int(state[p + "filter.log_poles"].shape[1])
        elif (p + "filter.h") in state and state[p + "filter.h"].dim() == 3:
            groups, _, taps = state[p + "filter.h"].shape
            kind = "hcm" if p + "filter.D" in state else "hcs"
            cfg[f"{kind}_layer_idxs"].append(i)
            cfg[f"{kind}_filter_length"], cfg[f"{kind}_filter_groups"] = int(taps), int(groups)
        if p + "filter.short_filter_weight" in state:
            cfg["short_filter_length"] = int(state[p + "filter.short_filter_weight"].shape[-1])
        if p + "mlp.l1.weight" in state:
            cfg["inner_mlp_size"] = int(state[p + "mlp.l1.weight"].shape[0])
        cfg["short_filter_bias"] = cfg.get("short_filter_bias") or p + "filter.short_filter_bias" in state
        cfg["hyena_out_proj_bias"] = cfg.get("hyena_out_proj_bias") or p + "out_filter_dense.bias" in state
    check_config(cfg, path)
    return cfg


# ----------------------------------------------------------------------------- weights
def vocabulary_map(n_rows: int) -> list[int]:
    """``rows[g]`` = the Evo 2 byte whose embedding row becomes genoseq id ``g`` (a permutation)."""
    taken = set(EVO2_BYTES.values())
    rest = iter(b for b in range(n_rows) if b not in taken)
    return [EVO2_BYTES[g] if g in EVO2_BYTES else next(rest) for g in range(n_rows)]


def stream_order(cfg: dict) -> torch.Tensor:
    """Rows of a Hyena block's projection (and short conv) in genoseq's order q | k | v: vortex
    de-interleaves the channels (``interleave``), then splits them in thirds or per head
    (``column_split_hyena``) into (x2, x1, v), with x1 and x2 swapped by ``hyena_flip_x1x2``."""
    d, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    idx = torch.arange(3 * d)
    if cfg.get("interleave"):
        idx = torch.cat([idx[0::3], idx[1::3], idx[2::3]])
    if cfg.get("column_split_hyena", True):
        x2, x1, v = idx.view(heads, 3, d // heads).unbind(1)
    else:
        x2, x1, v = idx.view(3, d)
    if cfg.get("hyena_flip_x1x2"):
        x1, x2 = x2, x1
    return torch.cat([x2.reshape(-1), x1.reshape(-1), v.reshape(-1)])


def _hyena_tensors(ckpt: CheckedTensors, cfg: dict, mcfg: StripedHyenaConfig, i: int, kind: str) -> dict:
    d, take = mcfg.d_model, ckpt.take
    e, g = f"blocks.{i}.", f"backbone.layers.{i}.mixer."
    order = stream_order(cfg)
    out = {g + "in_proj.weight": take(e + "projections.weight", (3 * d, d))[order],
           g + "conv_weight": take(e + "filter.short_filter_weight", (3 * d, 1, mcfg.short_conv))[order, 0],
           g + "out_proj.weight": take(e + "out_filter_dense.weight", (d, d))}
    optional = ((mcfg.proj_bias, "projections.bias", "in_proj.bias", order),
                (mcfg.short_conv_bias, "filter.short_filter_bias", "conv_bias", order),
                (mcfg.hyena_out_bias, "out_filter_dense.bias", "out_proj.bias", None))
    for present, name, ours, rows in optional:
        if present:
            value = take(e + name, (len(order) if rows is not None else d,))
            out[g + ours] = value if rows is None else value[rows]
    if kind == "hyena_li":
        out[g + "filter.log_poles"] = take(e + "filter.log_poles", (d, mcfg.li_state, 1))[..., 0]
        out[g + "filter.residues"] = take(e + "filter.residues", (d, mcfg.li_state))
        out[g + "skip"] = take(e + "filter.D", (d,))
        return out
    groups, taps = (mcfg.se_groups, mcfg.se_filter_len) if kind == "hyena_se" else (mcfg.mr_groups, mcfg.mr_filter_len)
    h = take(e + "filter.h", (groups, 1, taps))[:, 0]
    # vortex convolves filters of SKIP_FROM_TAPS taps or more by FFT (first tap = current input),
    # shorter ones by conv1d (last tap = current input): genoseq keeps the last-tap order
    out[g + "filter.taps"] = h.flip(-1) if taps >= SKIP_FROM_TAPS else h
    if taps >= SKIP_FROM_TAPS:
        out[g + "skip"] = take(e + "filter.D", (d,))
    return out


def _attention_tensors(ckpt: CheckedTensors, cfg: dict, mcfg: StripedHyenaConfig, i: int) -> dict:
    d, heads, take = mcfg.d_model, mcfg.n_heads, ckpt.take
    e, g = f"blocks.{i}.inner_mha_cls.", f"backbone.layers.{i}.mixer."
    rows = torch.arange(3 * d)
    if cfg.get("column_split", True):  # published rows are per head (q k v); vortex regroups them
        rows = rows.view(heads, 3, d // heads).transpose(0, 1).reshape(-1)
    out = {g + "qkv.weight": take(e + "Wqkv.weight", (3 * d, d))[rows],
           g + "out_proj.weight": take(e + "out_proj.weight", (d, d))}
    if mcfg.qkv_bias:
        out[g + "qkv.bias"] = take(e + "Wqkv.bias", (3 * d,))[rows]
    if mcfg.attention_out_bias:
        out[g + "out_proj.bias"] = take(e + "out_proj.bias", (d,))
    inv_freq = take(e + "rotary_emb.inv_freq", (d // heads // 2,), optional=True)  # vortex uses the stored one
    if inv_freq is not None:
        out[g + "inv_freq"] = inv_freq
    return out


def convert_state_dict(state: dict[str, torch.Tensor], cfg: dict, mcfg: StripedHyenaConfig, path) -> dict:
    """genoseq ``StripedHyenaLM`` tensors from Evo 2's; every tensor must be used and have the shape
    the config implies (else :class:`InputError` naming the key)."""
    ckpt = CheckedTensors(state, path)
    d, rows = mcfg.d_model, vocabulary_map(mcfg.vocab_size)
    out = {"backbone.embedding.weight": ckpt.take("embedding_layer.weight", (mcfg.vocab_size, d))[rows],
           "backbone.norm_f.scale": ckpt.take("norm.scale", (d,))}
    if not mcfg.tie_embeddings:
        out["lm_head.weight"] = ckpt.take("unembed.weight", (mcfg.vocab_size, d))[rows]
    for i, kind in enumerate(mcfg.layers):
        e, g = f"blocks.{i}.", f"backbone.layers.{i}."
        out[g + "norm.scale"] = ckpt.take(e + "pre_norm.scale", (d,))
        out[g + "mlp_norm.scale"] = ckpt.take(e + "post_norm.scale", (d,))
        for ours, theirs, shape in (("w_in", "l1", (mcfg.mlp_hidden, d)), ("w_gate", "l2", (mcfg.mlp_hidden, d)),
                                    ("w_out", "l3", (d, mcfg.mlp_hidden))):
            out[g + f"mlp.{ours}.weight"] = ckpt.take(e + f"mlp.{theirs}.weight", shape)
        if kind == "attention":
            out.update(_attention_tensors(ckpt, cfg, mcfg, i))
        else:
            out.update(_hyena_tensors(ckpt, cfg, mcfg, i, kind))
    unused = ckpt.unused()
    if unused:
        first = unused[0].split(".")
        hint = (f" (layer {first[1]} is beyond num_layers = {mcfg.n_layers})"
                if first[0] == "blocks" and first[1].isdigit() and int(first[1]) >= mcfg.n_layers else "")
        raise InputError(f"{len(unused)} checkpoint tensors do not match the config, e.g. {unused[0]}{hint}",
                         path=str(path))
    return out


def checkpoint_tensors(path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors of an Evo 2 ``.pt`` file (read without running code) and the FP8
    ``_extra_state`` keys skipped."""
    if path.is_dir():
        raise InputError("expected Evo 2's .pt checkpoint file, got a folder", path=str(path))
    state = load_untrusted(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"the checkpoint holds a {type(state).__name__}, not a state dict", path=str(path))
    extra = sorted(k for k in state if isinstance(k, str) and k.endswith("._extra_state"))
    return tensor_dict({k: v for k, v in state.items() if k not in extra}, path=path), extra


def import_evo2(checkpoint: str | Path, config: str | Path | None = None):
    """``(StripedHyenaLM, report)`` from an Evo 2 checkpoint file and (optionally) its YAML config;
    see the module docstring. Every problem is an :class:`InputError` naming the file."""
    path = Path(checkpoint)
    state, extra = checkpoint_tensors(path)
    cfg = read_config(config) if config is not None else infer_config(state, path)
    mcfg = model_config(cfg, config or path)
    converted = convert_state_dict(state, cfg, mcfg, path)
    window = int(cfg.get("max_seqlen") or ASSUMED["max_seqlen"])
    model = StripedHyenaLM(mcfg, tokenizer=Tokenizer(), window_length=window)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    missing = [k for k in missing if not (mcfg.tie_embeddings and k == "lm_head.weight") and not k.endswith("inv_freq")]
    if missing or unexpected:  # a bug here, not in the user's file
        raise RuntimeError(f"Evo 2 conversion left keys unset {missing} or unknown {unexpected}")
    report = {
        "source": str(path.resolve()), "config": str(Path(config).resolve()) if config else "inferred from the tensors",
        "assumed": {} if config else {k: v for k, v in ASSUMED.items()}, "d_model": mcfg.d_model,
        "n_layers": mcfg.n_layers, "pattern": mcfg.pattern, "window_length": window,
        "parameters": sum(p.numel() for p in model.parameters()), "tensors_imported": len(state),
        "skipped": {"fp8_extra_state": len(extra)}, "vocab_rows": vocabulary_map(mcfg.vocab_size)[:10],
    }
    if extra:
        report["note"] = (f"{len(extra)} Transformer Engine _extra_state entries (FP8 scaling metadata, no "
                          "weights) were ignored; genoseq computes the input projections in float32 / bf16")
    return model.eval(), report


# Evo 2 1B as published (evo2/configs/evo2-1b-8k.yml of github.com/ArcInstitute/evo2): the layout
# every Evo 2 config shares but for widths, depths and lengths; the benchmark and the test fixture
# derive their shapes from it.
EVO2_1B_8K = {
    "model_name": "shc-evo2-1b-8k-2T-v2", "vocab_size": 512, "hidden_size": 1920, "num_filters": 1920,
    "attn_layer_idxs": [3, 10, 17, 24], "hcl_layer_idxs": [2, 6, 9, 13, 16, 20, 23],
    "hcm_layer_idxs": [1, 5, 8, 12, 15, 19, 22], "hcs_layer_idxs": [0, 4, 7, 11, 14, 18, 21],
    "hcm_filter_length": 128, "hcl_filter_groups": 1920, "hcm_filter_groups": 128, "hcs_filter_groups": 128,
    "hcs_filter_length": 7, "num_layers": 25, "short_filter_length": 3, "num_attention_heads": 15,
    "short_filter_bias": False, "mlp_init_method": "torch.nn.init.zeros_",
    "mlp_output_init_method": "torch.nn.init.zeros_", "eps": 1.0e-6, "state_size": 16, "rotary_emb_base": 10000,
    "make_vocab_size_divisible_by": 8, "inner_size_multiple_of": 16, "inner_mlp_size": 5120,
    "log_intermediate_values": False, "proj_groups": 1, "hyena_filter_groups": 1, "column_split_hyena": False,
    "column_split": True, "interleave": True, "evo2_style_activations": True, "model_parallel_size": 1,
    "pipe_parallel_size": 1, "tie_embeddings": True, "mha_out_proj_bias": True, "hyena_out_proj_bias": True,
    "hyena_flip_x1x2": False, "qkv_proj_bias": False, "use_fp8_input_projections": True, "max_seqlen": 8192,
    "max_batch_size": 1, "final_norm": True, "use_flash_attn": True, "use_flash_rmsnorm": False,
    "use_flash_depthwise": False, "use_flashfft": False, "use_laughing_hyena": False, "inference_mode": True,
    "tokenizer_type": "CharLevelTokenizer", "prefill_style": "fft", "mlp_activation": "gelu",
    "print_activations": False,
}


__all__ = ["EVO2_1B_8K", "EVO2_BYTES", "import_evo2", "infer_config", "model_config", "read_config", "vocabulary_map"]
