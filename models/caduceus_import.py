"""Import a published Caduceus model (a Hugging Face folder) as a genoseq language model.

Caduceus publishes ``config.json`` (its ``CaduceusConfig``: ``model_type: caduceus``) and
``model.safetensors`` (or ``pytorch_model.bin``, read through the untrusted reader: tensors and
plain containers only) of a ``CaduceusForMaskedLM``. :func:`import_caduceus` reads both and builds a
:class:`~genoseq.models.caduceus.CaduceusLM` whose logits are Caduceus' own: PS models
(``rcps: true``) as they are, the others conjoined post hoc (Caduceus-Ph) unless asked not to.

How the tensors map (``i`` a layer; ``S.`` is ``submodule.`` in an RCPS model, where Caduceus
wraps each mixer, and each norm when ``fused_add_norm`` is false):

================================================================  ==================================
Caduceus (``caduceus.backbone.``)                                 genoseq (``backbone.``)
================================================================  ==================================
``embeddings.word_embeddings[.embedding].weight``                 ``embedding.weight`` (rows
                                                                  re-ordered)
``layers.i.mixer.[S.]mamba_fwd.*`` / ``mamba_rev.*``              ``layers.i.mixer.fwd.*`` / ``rev.*``
(``in_proj conv1d x_proj dt_proj A_log D out_proj``)              (the same names)
``layers.i.norm.[S.]weight`` / ``bias``, ``norm_f.[S.]...``       ``layers.i.norm.*``, ``norm_f.*``
``lm_head[.lm_head].weight``                                      ``lm_head.weight`` (rows re-ordered)
``...complement_map`` buffers                                     checked against the config's map
================================================================  ==================================

Tied tensors (the two directions' in and out projections with ``bidirectional_weight_tie``, the
head and the embedding) are stored once, under either name: either is read, and both, when both
are there, must be equal. Vocabulary: Caduceus' character tokenizer is HyenaDNA's (``[CLS] [SEP]
[BOS] [MASK] [PAD] [RESERVED] [UNK] A C G T N``, padded to ``pad_vocab_size_multiple``); its rows
are permuted onto genoseq's ids as :func:`genoseq.models.hyenadna.vocabulary_map` does, and the
complement map with them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genoseq.errors import InputError
from genoseq.tokenizer import Tokenizer

from .caduceus import STRATEGIES, CaduceusConfig, CaduceusLM
from .hyenadna import HYENADNA_VOCAB, vocabulary_map
from .untrusted import CheckedTensors, load_untrusted, tensor_dict

CONFIG_FILE, SAFETENSORS_FILE, PICKLE_FILE = "config.json", "model.safetensors", "pytorch_model.bin"
ARCHITECTURES = ("CaduceusForMaskedLM",)
READ = {"d_model", "n_layer", "vocab_size", "ssm_cfg", "rms_norm", "fused_add_norm", "pad_vocab_size_multiple",
        "norm_epsilon", "bidirectional", "bidirectional_strategy", "bidirectional_weight_tie", "rcps",
        "complement_map", "tie_word_embeddings", "model_type", "architectures"}
# Hugging Face's bookkeeping and options that only matter for training, kernels or dtypes.
IGNORED = {"_name_or_path", "_attn_implementation_autoset", "auto_map", "torch_dtype", "transformers_version",
           "initializer_cfg", "residual_in_fp32", "pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id",
           "output_hidden_states", "use_return_dict", "return_dict", "use_cache", "id2label", "label2id",
           "num_labels", "problem_type"}
SSM_READ = {"d_state", "d_conv", "expand", "dt_rank", "conv_bias", "bias"}
SSM_IGNORED = {"dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor", "use_fast_path"}  # init, kernels


# ----------------------------------------------------------------------------- config
def read_config(folder: Path) -> dict:
    """Caduceus' ``config.json``, checked to describe a model genoseq reproduces exactly; anything
    else is an :class:`InputError` naming the file and the field."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"not a Caduceus model folder: no {CONFIG_FILE}", path=str(folder))
    try:
        cfg = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as err:
        raise InputError(f"not JSON: {err}", path=str(path)) from None
    if not isinstance(cfg, dict):
        raise InputError("expected a JSON object (a CaduceusConfig)", path=str(path))
    if cfg.get("model_type") != "caduceus":
        raise InputError(f"model_type is {cfg.get('model_type')!r}: not a Caduceus config", path=str(path))
    other = [a for a in cfg.get("architectures") or ARCHITECTURES if a not in ARCHITECTURES]
    if other:
        raise InputError(f"architectures names {other[0]!r}: genoseq imports {', '.join(ARCHITECTURES)} (the "
                         "masked-LM head)", path=str(path))
    missing = [k for k in ("d_model", "n_layer", "vocab_size") if k not in cfg]
    unknown = sorted(set(cfg) - READ - IGNORED)
    ssm = cfg.get("ssm_cfg") or {}
    unknown += [f"ssm_cfg.{k}" for k in sorted(set(ssm) - SSM_READ - SSM_IGNORED)] if isinstance(ssm, dict) else ["ssm_cfg"]
    if missing or unknown:
        what = f"missing {', '.join(missing)}" if missing else f"unknown option {unknown[0]!r}"
        raise InputError(f"not a Caduceus config genoseq reproduces: {what}", path=str(path))
    strategy = cfg.get("bidirectional_strategy") or "add"
    if cfg.get("bidirectional", True) and strategy not in STRATEGIES:
        raise InputError(f"bidirectional_strategy {strategy!r} is not one of {STRATEGIES}", path=str(path))
    if cfg.get("rcps") and not cfg.get("complement_map"):
        raise InputError("rcps is true but there is no complement_map", path=str(path))
    return cfg


def complement_ids(cfg: dict, vocab: int, path: Path) -> list[int]:
    """Caduceus' complement map as a list over its (padded) vocabulary, checked to pair A-T and C-G
    and to leave the other tokens alone (identity where the config has no entry)."""
    raw = cfg.get("complement_map") or {}
    try:
        table = {int(k): int(v) for k, v in raw.items()}
    except (TypeError, ValueError, AttributeError):
        raise InputError("complement_map must map token ids to token ids", path=str(path)) from None
    comp = [table.get(i, i) for i in range(vocab)]
    expected = list(range(vocab))
    for a, b in (("A", "T"), ("C", "G")):
        i, j = HYENADNA_VOCAB.index(a), HYENADNA_VOCAB.index(b)
        expected[i], expected[j] = j, i
    if raw and comp != expected:
        bad = next(i for i in range(vocab) if comp[i] != expected[i])
        raise InputError(f"complement_map maps {bad} to {comp[bad]}, not {expected[bad]}: it is not the reverse "
                         "complement of Caduceus' character tokenizer", path=str(path))
    return expected


def model_config(cfg: dict, path: Path, conjoin: bool | None) -> tuple[CaduceusConfig, list[int]]:
    """The genoseq architecture of a checked Caduceus config, and the vocabulary rows
    (``rows[g]``: the Caduceus id of genoseq id ``g``)."""
    multiple = int(cfg.get("pad_vocab_size_multiple", 8))
    vocab = -(-int(cfg["vocab_size"]) // multiple) * multiple
    if int(cfg["vocab_size"]) < len(HYENADNA_VOCAB):
        raise InputError(f"vocab_size {cfg['vocab_size']} is smaller than Caduceus' character vocabulary "
                         f"({len(HYENADNA_VOCAB)} tokens)", path=str(path))
    rcps = bool(cfg.get("rcps", False))
    if rcps and conjoin:
        raise InputError("an RC-parameter-sharing (rcps) model is reverse-complement equivariant already: "
                         "conjoining changes nothing", field="conjoin")
    rows = vocabulary_map(vocab)
    comp = complement_ids(cfg, vocab, path)
    where = {c: g for g, c in enumerate(rows)}
    ssm = cfg.get("ssm_cfg") or {}
    width = int(cfg["d_model"])
    mcfg = CaduceusConfig(
        d_model=2 * width if rcps else width, n_layers=int(cfg["n_layer"]), vocab_size=vocab,
        d_state=int(ssm.get("d_state", 16)), d_conv=int(ssm.get("d_conv", 4)), expand=int(ssm.get("expand", 2)),
        dt_rank=None if ssm.get("dt_rank", "auto") == "auto" else int(ssm["dt_rank"]),
        conv_bias=bool(ssm.get("conv_bias", True)), proj_bias=bool(ssm.get("bias", False)),
        bimamba=bool(cfg.get("bidirectional", True)), bimamba_strategy=cfg.get("bidirectional_strategy") or "add",
        bimamba_weight_tie=bool(cfg.get("bidirectional_weight_tie", True)), rcps=rcps,
        swap_halves=rcps and bool(cfg.get("fused_add_norm", True)), conjoin=(not rcps) if conjoin is None else conjoin,
        norm_type="rmsnorm" if cfg.get("rms_norm", True) else "layernorm", norm_eps=float(cfg.get("norm_epsilon", 1e-5)),
        complement=[where[comp[rows[g]]] for g in range(vocab)], tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
    )
    return mcfg, rows


# ----------------------------------------------------------------------------- weights
class _Checkpoint(CheckedTensors):
    """Caduceus' tensors, with tied pairs read under either name."""

    def take_tied(self, names: tuple[str, str], shape: tuple) -> torch.Tensor:
        found = [self.take(n, shape, optional=True) for n in names]
        present = [t for t in found if t is not None]
        if not present:
            raise InputError(f"the checkpoint has neither {names[0]} nor {names[1]} (tied: one of them is stored)",
                             path=str(self.path))
        if len(present) == 2 and not torch.equal(*present):
            raise InputError(f"{names[0]} and {names[1]} differ, but the config ties them", path=str(self.path))
        return present[0]


def _mamba_tensors(ckpt: _Checkpoint, mcfg: CaduceusConfig, theirs: str, ours: str, partner: str | None) -> dict:
    """One Mamba's tensors (Caduceus' prefix ``theirs``, genoseq's ``ours``). With tied directions
    ``partner`` is the reverse direction's prefix for the forward one (the projections are read
    under either name) and ``""`` for the reverse one (its projections are the forward's)."""
    d, inner, rank, N, K = mcfg.strand_width, mcfg.d_inner, mcfg.rank, mcfg.d_state, mcfg.d_conv
    shapes = {"in_proj.weight": (2 * inner, d), "conv1d.weight": (inner, 1, K), "x_proj.weight": (rank + 2 * N, inner),
              "dt_proj.weight": (inner, rank), "dt_proj.bias": (inner,), "A_log": (inner, N), "D": (inner,),
              "out_proj.weight": (d, inner)}
    if mcfg.conv_bias:
        shapes["conv1d.bias"] = (inner,)
    if mcfg.proj_bias:
        shapes.update({"in_proj.bias": (2 * inner,), "out_proj.bias": (d,)})
    out = {}
    for name, shape in shapes.items():
        if not name.startswith(("in_proj.", "out_proj.")) or partner is None:
            out[ours + name] = ckpt.take(theirs + name, shape)
        elif partner:  # tied: the forward direction's, stored under either direction's name
            out[ours + name] = ckpt.take_tied((theirs + name, partner + name), shape)
    return out


def convert_state_dict(state: dict[str, torch.Tensor], mcfg: CaduceusConfig, rows: list[int], comp: list[int],
                       path: Path) -> dict:
    """genoseq ``CaduceusLM`` tensors from Caduceus'; every tensor must be used and have the shape
    the config implies (else :class:`InputError` naming the key)."""
    ckpt, d, V = _Checkpoint(state, path), mcfg.strand_width, mcfg.vocab_size
    p, wrap = "caduceus.backbone.", ("submodule." if mcfg.rcps else "")
    norm_wrap = "submodule." if mcfg.rcps and not mcfg.swap_halves else ""
    emb_name = p + ("embeddings.word_embeddings.embedding.weight" if mcfg.rcps else "embeddings.word_embeddings.weight")
    head_name = "lm_head.lm_head.weight" if mcfg.rcps else "lm_head.weight"
    if mcfg.tie_embeddings:
        emb = ckpt.take_tied((emb_name, head_name), (V, d))
    else:
        emb = ckpt.take(emb_name, (V, d))
    out = {"backbone.embedding.weight": emb[rows]}
    if not mcfg.tie_embeddings:
        out["lm_head.weight"] = ckpt.take(head_name, (V, d))[rows]
    for buffer in ("embeddings.word_embeddings.complement_map", "lm_head.complement_map"):
        name = p + buffer if buffer.startswith("embeddings") else buffer
        stored = ckpt.take(name, (V,), optional=True)
        if stored is not None and stored.long().tolist() != comp:
            raise InputError(f"{name} differs from the config's complement_map", path=str(path))
    norms = [("weight", True), ("bias", mcfg.norm_type == "layernorm")]
    for i in range(mcfg.n_layers):
        e, g = f"{p}layers.{i}.", f"backbone.layers.{i}."
        m = e + "mixer." + wrap
        tied = mcfg.bimamba and mcfg.bimamba_weight_tie
        out.update(_mamba_tensors(ckpt, mcfg, m + "mamba_fwd.", g + "mixer.fwd.", m + "mamba_rev." if tied else None))
        if mcfg.bimamba:
            out.update(_mamba_tensors(ckpt, mcfg, m + "mamba_rev.", g + "mixer.rev.", "" if tied else None))
        out.update({g + f"norm.{n}": ckpt.take(e + f"norm.{norm_wrap}{n}", (d,)) for n, present in norms if present})
    out.update({f"backbone.norm_f.{n}": ckpt.take(f"{p}norm_f.{norm_wrap}{n}", (d,)) for n, present in norms if present})
    unused = ckpt.unused()
    if unused:
        raise InputError(f"{len(unused)} checkpoint tensors do not match the config, e.g. {unused[0]}", path=str(path))
    return out


def checkpoint_tensors(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The tensors of ``model.safetensors``, else of ``pytorch_model.bin`` (read without running code)."""
    path = folder / SAFETENSORS_FILE
    if path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), path
        except (SafetensorError, OSError) as err:
            raise InputError(f"not a readable safetensors file: {err}", path=str(path)) from None
    path = folder / PICKLE_FILE
    if not path.is_file():
        raise InputError(f"not a Caduceus model folder: no {SAFETENSORS_FILE} or {PICKLE_FILE}", path=str(folder))
    state = load_untrusted(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return tensor_dict(state, path=path), path


def import_caduceus(folder: str | Path, conjoin: bool | None = None):
    """``(CaduceusLM, report)`` from a Caduceus Hugging Face folder; see the module docstring.
    ``conjoin``: average with the reverse complement's logits (default: for non-rcps models, i.e.
    Caduceus-Ph). Every problem is an :class:`InputError` naming the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such Caduceus model folder", path=str(folder))
    cfg = read_config(folder)
    mcfg, rows = model_config(cfg, folder / CONFIG_FILE, conjoin)
    state, weights = checkpoint_tensors(folder)
    comp = complement_ids(cfg, mcfg.vocab_size, folder / CONFIG_FILE)
    converted = convert_state_dict(state, mcfg, rows, comp, weights)
    model = CaduceusLM(mcfg, tokenizer=Tokenizer())
    missing, unexpected = model.load_state_dict(converted, strict=False)
    shared = {"lm_head.weight"} if mcfg.tie_embeddings else set()
    if mcfg.bimamba and mcfg.bimamba_weight_tie:
        shared |= {k.replace(".fwd.", ".rev.") for k in converted if ".fwd.in_proj." in k or ".fwd.out_proj." in k}
    missing = [k for k in missing if k not in shared]
    if missing or unexpected:  # a bug here, not in the user's file
        raise RuntimeError(f"Caduceus conversion left keys unset {missing} or unknown {unexpected}")
    variant = "PS" if mcfg.rcps else ("Ph (conjoined)" if mcfg.conjoin else "not conjoined")
    report = {
        "source": str(folder.resolve()), "weights": weights.name, "variant": variant, "caduceus_d_model": mcfg.strand_width,
        "d_model": mcfg.d_model, "n_layers": mcfg.n_layers, "d_state": mcfg.d_state, "bimamba": mcfg.bimamba,
        "weight_tie": mcfg.bimamba_weight_tie, "swap_halves": mcfg.swap_halves, "conjoin": mcfg.conjoin,
        "parameters": sum(p.numel() for p in model.parameters()), "tensors_imported": len(state),
        "vocab_rows": rows,
    }
    return model.eval(), report


__all__ = ["complement_ids", "import_caduceus", "model_config", "read_config"]
