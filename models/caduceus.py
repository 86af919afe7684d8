"""Caduceus (bidirectional, reverse-complement-equivariant Mamba) as a genoseq language model.

A stack of pre-norm residual blocks ``x + mixer(norm(x))`` over a token embedding, a final norm
and a masked-LM head (it predicts the base at each position from both sides: no next-base
probabilities). The mixer is **BiMamba**: a Mamba-1 mixer (:class:`Mamba1`, mamba_ssm's parameter
names) over the sequence, plus (``bimamba``) a second one over the reversed sequence whose output
is reversed back and added (or multiplied, ``bimamba_strategy``); ``bimamba_weight_tie`` shares
the two directions' input and output projections.

Reverse-complement equivariance, two ways:

* **Caduceus-PS** (``rcps``, parameter sharing): the hidden states have two halves of
  ``strand_width`` channels, the forward strand's and the reverse complement's (reversed along the
  sequence and the channels, so RC of the hidden states is one flip of both axes). The embedding
  writes ``[E(x), rc(E(rc(x)))]``; every norm and mixer runs on the first half and, reverse-
  complemented, on the second; the head adds ``W a`` and the complement-permuted ``W rc_c(b)``.
  So the model's output for ``rc(x)`` is the RC of its output for ``x`` by construction.
  ``swap_halves`` reproduces Caduceus' fused add-norm (``fused_add_norm: true``, as its published
  models ran): each block reads its input's halves the other way round.
* **Caduceus-Ph** (``conjoin``, post-hoc conjoining): a model without parameter sharing runs on the
  sequence and on its reverse complement, and the second logits, reversed and complement-permuted,
  are averaged with the first.

``d_model`` is the width of the hidden states, as everywhere in genoseq: Caduceus' ``d_model``,
twice it with ``rcps``. :class:`CaduceusLM` is a :class:`~genoseq.models.lm.GenoSeqLM` (embeddings,
``hidden_states``, saving); its folder's ``config.json`` says ``"architecture": "caduceus"`` and
``"bidirectional": true``: scoring, variant effects and mutagenesis use masked scores
(:mod:`genoseq.models.masked`), and generation refuses it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from typing import Any

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F

from genoseq.kernels import causal_conv1d, selective_scan
from genoseq.tokenizer import A, C, G, T, Tokenizer

from .backbone import finish_forward
from .blocks import LayerNorm, RMSNorm
from .config import OptimConfig, TrainingConfig
from .lm import FORMAT_VERSION, GenoSeqLM
from .released import save_released

ARCHITECTURE = "caduceus"
STRATEGIES = ("add", "ew_multiply")


@dataclass
class CaduceusConfig:
    """Architecture of a Caduceus model (see the module docstring)."""

    d_model: int = 64  # width of the hidden states: 2 * strand_width with rcps
    n_layers: int = 4
    vocab_size: int = 16
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None: ceil(strand_width / 16), Mamba's "auto"
    conv_bias: bool = True
    proj_bias: bool = False  # Mamba's `bias`: the in and out projections'
    bimamba: bool = True  # Caduceus' `bidirectional`
    bimamba_strategy: str = "add"
    bimamba_weight_tie: bool = True
    rcps: bool = False
    swap_halves: bool = False
    conjoin: bool = False
    norm_type: str = "rmsnorm"
    norm_eps: float = 1e-5
    # complement[i]: the token whose id is the complement of token i (genoseq ids)
    complement: list[int] = field(default_factory=list)
    tie_embeddings: bool = True
    dropout: float = 0.0  # for GenoSeqLM's code paths; Caduceus has none

    def __post_init__(self) -> None:
        if not self.complement:  # genoseq's: A<->T, C<->G, every other token its own
            self.complement = list(range(self.vocab_size))
            for a, b in ((A, T), (C, G)):
                self.complement[a], self.complement[b] = b, a
        self.complement = [int(c) for c in self.complement]
        checks = [
            (self.bimamba_strategy in STRATEGIES, f"bimamba_strategy must be one of {STRATEGIES}"),
            (self.norm_type in ("rmsnorm", "layernorm"), f"norm_type must be rmsnorm or layernorm, got {self.norm_type!r}"),
            (not self.rcps or self.d_model % 2 == 0, f"an rcps model's d_model ({self.d_model}) is two halves"),
            (not (self.rcps and self.conjoin), "rcps models are RC-equivariant already: conjoining changes nothing"),
            (not self.swap_halves or self.rcps, "swap_halves applies to rcps models only"),
            (sorted(self.complement) == list(range(self.vocab_size))
             and all(self.complement[c] == i for i, c in enumerate(self.complement)),
             f"complement must pair the {self.vocab_size} token ids (an involution)"),
            (min(self.n_layers, self.d_state, self.d_conv, self.expand) >= 1, "sizes must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def strand_width(self) -> int:
        """Caduceus' d_model: the width one Mamba mixer sees."""
        return self.d_model // 2 if self.rcps else self.d_model

    @property
    def d_inner(self) -> int:
        return self.expand * self.strand_width

    @property
    def rank(self) -> int:
        return self.dt_rank or math.ceil(self.strand_width / 16)

    @property
    def layer_types(self) -> list[str]:
        return ["bimamba"] * self.n_layers

    @property
    def pattern(self) -> str:
        return "B" * self.n_layers

    n_repeats = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CaduceusConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown CaduceusConfig keys: {unknown}")
        return cls(**data)


# ----------------------------------------------------------------------------- parts
def rc_channels(x: torch.Tensor) -> torch.Tensor:
    """Reverse complement of hidden states (B, L, C): flip the sequence and the channels."""
    return x.flip(-2, -1)


def strands(module, x: torch.Tensor, rcps: bool) -> torch.Tensor:
    """``module`` on hidden states; with ``rcps`` on the forward half and, reverse-complemented and
    back, on the reverse-complement half (Caduceus' ``RCPSWrapper``)."""
    if not rcps:
        return module(x)
    half = x.shape[-1] // 2
    return torch.cat([module(x[..., :half]), rc_channels(module(rc_channels(x[..., half:])))], dim=-1)


def swap(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([x[..., half:], x[..., :half]], dim=-1)


class Mamba1(nn.Module):
    """Mamba-1 mixer (mamba_ssm's ``Mamba``, its parameter names): ``in_proj`` to ``x`` and the gate
    ``z``; a short causal depthwise conv with SiLU on ``x``; ``x_proj`` to dt (rank ``dt_rank``,
    then ``dt_proj``), B and C; the selective scan with ``A = -exp(A_log)``, the ``D`` skip and the
    ``silu(z)`` gate; ``out_proj``."""

    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        d, inner, self.d_state = cfg.strand_width, cfg.d_inner, cfg.d_state
        self.rank = cfg.rank
        self.in_proj = nn.Linear(d, 2 * inner, bias=cfg.proj_bias)
        self.conv1d = nn.Conv1d(inner, inner, cfg.d_conv, groups=inner, padding=cfg.d_conv - 1, bias=cfg.conv_bias)
        self.x_proj = nn.Linear(inner, self.rank + 2 * cfg.d_state, bias=False)
        self.dt_proj = nn.Linear(self.rank, inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, cfg.d_state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, d, bias=cfg.proj_bias)
        with torch.no_grad():  # Mamba's init: softplus(dt bias) log-uniform in [1e-3, 0.1]
            dt = torch.exp(torch.rand(inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        x = causal_conv1d(x, self.conv1d.weight[:, 0], self.conv1d.bias, activation="silu")
        dt, B, C = self.x_proj(x).split([self.rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # the bias goes into the scan, before the softplus
        y = selective_scan(x.transpose(1, 2), dt.transpose(1, 2), -torch.exp(self.A_log.float()), B.transpose(1, 2),
                           C.transpose(1, 2), self.D.float(), z=z.transpose(1, 2), delta_bias=self.dt_proj.bias.float(),
                           delta_softplus=True)
        return self.out_proj(y.transpose(1, 2))


class BiMamba(nn.Module):
    """Mamba over the sequence, plus (``bimamba``) Mamba over it reversed, reversed back and added or
    multiplied (Caduceus' ``BiMambaWrapper``)."""

    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.strategy = cfg.bimamba_strategy
        self.fwd = Mamba1(cfg)
        self.rev = Mamba1(cfg) if cfg.bimamba else None
        if self.rev is not None and cfg.bimamba_weight_tie:
            self.rev.in_proj.weight, self.rev.in_proj.bias = self.fwd.in_proj.weight, self.fwd.in_proj.bias
            self.rev.out_proj.weight, self.rev.out_proj.bias = self.fwd.out_proj.weight, self.fwd.out_proj.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fwd(x)
        if self.rev is None:
            return out
        back = self.rev(x.flip(1)).flip(1)
        return out + back if self.strategy == "add" else out * back


def make_strand_norm(cfg: CaduceusConfig) -> nn.Module:
    return (LayerNorm if cfg.norm_type == "layernorm" else RMSNorm)(cfg.strand_width, cfg.norm_eps)


class CaduceusBlock(nn.Module):
    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.rcps, self.swap_halves = cfg.rcps, cfg.swap_halves
        self.norm = make_strand_norm(cfg)
        self.mixer = BiMamba(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swap_halves:
            x = swap(x)
        return x + strands(self.mixer, strands(self.norm, x, self.rcps), self.rcps)


class CaduceusBackbone(nn.Module):
    """Embedding, the blocks, the final norm; the interface of
    :class:`~genoseq.models.backbone.Backbone` (``embedding``, ``new_cache``, ``forward``)."""

    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.strand_width)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.layers = nn.ModuleList(CaduceusBlock(cfg) for _ in range(cfg.n_layers))
        self.norm_f = make_strand_norm(cfg)
        self.register_buffer("complement", torch.tensor(cfg.complement), persistent=False)

    def new_cache(self, max_len: int | None = None):
        raise ValueError("Caduceus is bidirectional: every position depends on the bases after it, so there is no "
                         "incremental (cached) decoding")

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(input_ids)
        if not self.cfg.rcps:
            return x
        rc_ids = self.complement[input_ids.flip(-1)]
        return torch.cat([x, rc_channels(self.embedding(rc_ids))], dim=-1)

    def forward(self, input_ids: torch.Tensor, seq_idx: torch.Tensor | None = None, cache=None,
                output_hidden_states: bool = False, num_layers: int | None = None, cp=None):
        """Final normed hidden states (B, L, d_model), as ``Backbone.forward``. ``num_layers``: the
        residual stream after that many blocks, its forward-strand half first."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        if seq_idx is not None or cache is not None or cp is not None:
            raise ValueError("Caduceus runs whole rows: no packed sequences (seq_idx), inference cache or context "
                             "parallelism")
        x = self.embed(input_ids)
        hidden = [x] if output_hidden_states else None
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        for i, layer in enumerate(layers):
            x = layer(x)
            if hidden is not None:
                hidden.append(swap(x) if self.cfg.swap_halves and i % 2 == 0 else x)
        if num_layers is not None and self.cfg.swap_halves and num_layers % 2:
            x = swap(x)
        norm_f = partial(strands, self.norm_f, rcps=self.cfg.rcps)
        return finish_forward(x, hidden, norm_f, None, input_ids.shape[1], num_layers, output_hidden_states)


class CaduceusHead(nn.Module):
    """The masked-LM head: ``W h``; with ``rcps`` the forward half's logits plus the reverse-
    complement half's (its channels flipped back) with the vocabulary complement-permuted
    (Caduceus' ``RCPSLMHead``)."""

    def __init__(self, cfg: CaduceusConfig) -> None:
        super().__init__()
        self.rcps = cfg.rcps
        self.weight = nn.Parameter(torch.empty(cfg.vocab_size, cfg.strand_width))
        nn.init.normal_(self.weight, std=0.02)
        self.register_buffer("complement", torch.tensor(cfg.complement), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.rcps:
            return F.linear(h, self.weight)
        half = h.shape[-1] // 2
        return F.linear(h[..., :half], self.weight) + F.linear(h[..., half:].flip(-1), self.weight)[..., self.complement]


# ----------------------------------------------------------------------------- the language model
class CaduceusLM(GenoSeqLM):
    """A :class:`GenoSeqLM` whose backbone is a :class:`CaduceusBackbone` and whose head is the
    masked-LM head: ``forward`` gives each position's logits given the whole sequence (with
    ``conjoin``, averaged with the reverse complement's)."""

    architecture = ARCHITECTURE  # how folders of models built on it record it (models.released)
    bidirectional = True  # no next-base probabilities: scored by masking, generation refuses it

    def __init__(self, config: CaduceusConfig | dict, optim: OptimConfig | dict | None = None,
                 tokenizer: Tokenizer | dict | None = None, window_length: int | None = None) -> None:
        L.LightningModule.__init__(self)  # GenoSeqLM.__init__ builds the generic backbone
        self.config = config if isinstance(config, CaduceusConfig) else CaduceusConfig.from_dict(config)
        self.optim = optim if isinstance(optim, OptimConfig) else OptimConfig.from_dict(optim or {})
        self.tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else (
            Tokenizer.from_dict(tokenizer) if tokenizer else Tokenizer())
        if self.tokenizer.vocab_size > self.config.vocab_size:
            raise ValueError(f"the tokenizer has {self.tokenizer.vocab_size} tokens, the model {self.config.vocab_size}")
        self.training_config = TrainingConfig(window_length=window_length)
        self.save_hyperparameters({"architecture": ARCHITECTURE, "config": self.config.to_dict(),
                                   "optim": self.optim.to_dict(), "tokenizer": self.tokenizer.to_dict(),
                                   "window_length": window_length})
        self.backbone = CaduceusBackbone(self.config)
        self.lm_head = CaduceusHead(self.config)
        if self.config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight
        self._last_step_time = None
        self.context_parallel_size, self._cp = 1, None

    def forward(self, input_ids: torch.Tensor, seq_idx: torch.Tensor | None = None, cache=None) -> torch.Tensor:
        """Masked-LM logits (B, L, vocab_size): each position's token given the whole row."""
        logits = self.lm_head(self.backbone(input_ids, seq_idx=seq_idx, cache=cache))
        if not self.config.conjoin:
            return logits
        comp = self.backbone.complement
        rc_logits = self.lm_head(self.backbone(comp[input_ids.flip(-1)]))
        return (logits + rc_logits.flip(1)[..., comp]) / 2

    def lm_loss(self, batch: dict):
        raise ValueError("Caduceus is a masked language model: genoseq trains causal language models only")

    def save_pretrained(self, directory):
        return save_released(self, directory, model_type="GenoSeqLM", format_version=FORMAT_VERSION,
                             tokenizer=self.tokenizer, config={
                                 "architecture": self.architecture, "bidirectional": True,
                                 "model": self.config.to_dict(),
                                 "training": {"optim": self.optim.to_dict(),
                                              "window_length": self.training_config.window_length}})


def build_released(meta: dict, tokenizer: Tokenizer) -> CaduceusLM:
    """The model of a released folder's ``config.json`` (read by ``models.released``)."""
    training = meta.get("training", {})
    return CaduceusLM(CaduceusConfig.from_dict(meta["model"]), optim=training.get("optim"), tokenizer=tokenizer,
                      window_length=training.get("window_length"))


__all__ = ["ARCHITECTURE", "BiMamba", "CaduceusBackbone", "CaduceusConfig", "CaduceusLM", "Mamba1", "build_released"]
