"""StripedHyena 2 (Evo 2's architecture) as a genoseq language model.

A stack of pre-norm residual blocks, each ``x + mixer(norm(x))`` then ``x + mlp(mlp_norm(x))``,
where the mixer of a layer is one of four kinds (``StripedHyenaConfig.layers``):

* ``hyena_se`` / ``hyena_mr`` / ``hyena_li``: a Hyena cascade. An input projection to three
  streams ``(q, k, v)`` of width d, a short causal depthwise convolution over all three
  (``short_conv`` taps), then ``y = q * (h * (k v) + skip * (k v))`` and an output projection.
  The long filter ``h`` of each channel is, by kind:

  - *SE* (short explicit): ``se_filter_len`` free taps, shared by groups of channels;
  - *MR* (medium regularised): ``mr_filter_len`` free taps, shared by groups of channels;
  - *LI* (long implicit): modal / pole-residue form, ``h[t] = sum_s R[d, s] exp(a[d, s] t)`` with
    ``a`` the log-poles (negative: decaying), of any length; convolved by FFT, or step by step
    through its ``state`` of size ``li_state`` per channel (exact for any split of a sequence).

  An explicit filter of 128 taps or more carries the ``skip`` term, a shorter one does not (Evo 2's
  rule); LI always does.
* ``attention``: causal multi-head attention with rotary positions on every head dimension
  (GPT-NeoX halves; positions divided by ``rope_scale``: linear interpolation).

The norm is RMSNorm with its epsilon added to the root mean square, ``x / (rms(x) + eps) * scale``;
the MLP is gated, ``w_out(act(w_in x) * w_gate x)``, with GELU in the first layer only when
``act_first_layer_only`` (Evo 2) and identity after. Embedding and head are tied.

:class:`StripedHyenaLM` is a :class:`~genoseq.models.lm.GenoSeqLM` (same forward, loss, caches,
``hidden_states``, saving); only its backbone differs. Its folder's ``config.json`` says
``"architecture": "striped_hyena2"`` and ``GenoSeqLM.from_pretrained`` builds this class for it.
Packed rows (``seq_idx``) and context parallelism are not supported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F

from genoseq.kernels import causal_conv1d
from genoseq.tokenizer import Tokenizer

from .attention import AttentionCache, WindowedAttention, apply_rotary, blockwise_attention, visible
from .backbone import InferenceCache, finish_forward
from .blocks import fft_causal_conv
from .config import OptimConfig, TrainingConfig
from .lm import FORMAT_VERSION, GenoSeqLM
from .released import save_released
from .tensor_utils import select_rows, to_acc

ARCHITECTURE = "striped_hyena2"
LAYER_KINDS = {"hyena_se": "S", "hyena_mr": "R", "hyena_li": "L", "attention": "A"}
SKIP_FROM_TAPS = 128  # explicit filters this long or longer carry the skip term (Evo 2's rule)
MODAL_CHUNK = 1024  # positions per (d, S, positions) table of the long filter (bounds its memory)


@dataclass
class StripedHyenaConfig:
    """Architecture of a StripedHyena 2 model (see the module docstring)."""

    d_model: int = 64
    layers: list[str] = field(default_factory=lambda: ["hyena_se", "hyena_mr", "hyena_li", "attention"])
    vocab_size: int = 512
    n_heads: int = 4
    mlp_hidden: int = 128
    mlp_activation: str = "gelu"  # "gelu" (exact) or "silu"
    act_first_layer_only: bool = True  # Evo 2: layers after the first have an identity activation
    norm_eps: float = 1e-6
    short_conv: int = 3
    short_conv_bias: bool = False
    proj_bias: bool = False  # the Hyena input projection's bias
    qkv_bias: bool = False  # the attention qkv projection's bias
    hyena_out_bias: bool = True
    attention_out_bias: bool = True
    se_filter_len: int = 7
    se_groups: int = 16
    mr_filter_len: int = 128
    mr_groups: int = 16
    li_state: int = 16
    rope_base: float = 10_000.0
    rope_scale: float = 1.0
    tie_embeddings: bool = True
    dropout: float = 0.0  # for GenoSeqLM's code paths; StripedHyena 2 has none

    def __post_init__(self) -> None:
        self.layers = [str(k) for k in self.layers]
        bad = sorted(set(self.layers) - set(LAYER_KINDS))
        if bad:
            raise ValueError(f"unknown StripedHyena layer kinds {bad}; use {sorted(LAYER_KINDS)}")
        checks = [
            (self.d_model % self.n_heads == 0 and (self.d_model // self.n_heads) % 2 == 0,
             f"d_model {self.d_model} must split into n_heads {self.n_heads} heads of even size"),
            (self.d_model % self.se_groups == 0, f"se_groups {self.se_groups} must divide d_model {self.d_model}"),
            (self.d_model % self.mr_groups == 0, f"mr_groups {self.mr_groups} must divide d_model {self.d_model}"),
            (self.mlp_activation in ("gelu", "silu"), f"mlp_activation must be 'gelu' or 'silu', got {self.mlp_activation!r}"),
            (min(self.short_conv, self.se_filter_len, self.mr_filter_len, self.li_state) >= 1,
             "filter lengths and li_state must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def layer_types(self) -> list[str]:
        return list(self.layers)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def pattern(self) -> str:
        """One letter per layer: S (Hyena-SE), R (Hyena-MR), L (Hyena-LI), A (attention)."""
        return "".join(LAYER_KINDS[k] for k in self.layers)

    n_repeats = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StripedHyenaConfig":
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown StripedHyenaConfig keys: {unknown}")
        return cls(**data)


# ----------------------------------------------------------------------------- parts
class ScaledRMSNorm(nn.Module):
    """``x / (||x|| / sqrt(d) + eps) * scale``: the epsilon is added to the root mean square."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = to_acc(x)
        rms = xf.norm(2, dim=-1, keepdim=True) / math.sqrt(x.shape[-1])
        return (xf / (rms + self.eps) * to_acc(self.scale)).to(x.dtype)


class GatedMLP(nn.Module):
    """``w_out(act(w_in x) * w_gate x)``, no biases."""

    def __init__(self, cfg: StripedHyenaConfig, layer: int) -> None:
        super().__init__()
        self.w_in = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.w_gate = nn.Linear(cfg.d_model, cfg.mlp_hidden, bias=False)
        self.w_out = nn.Linear(cfg.mlp_hidden, cfg.d_model, bias=False)
        identity = cfg.act_first_layer_only and layer > 0
        self.act = None if identity else (F.gelu if cfg.mlp_activation == "gelu" else F.silu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.w_in(x)
        return self.w_out((a if self.act is None else self.act(a)) * self.w_gate(x))


@dataclass
class CascadeCache:
    """A Hyena cascade's state between calls: the short conv's last inputs (B, 3d, K-1), and the
    long filter's: an explicit filter's last inputs (B, d, K-1) or a modal filter's state (B, d, S)."""

    conv_state: torch.Tensor | None = None
    filter_state: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> "CascadeCache":
        return CascadeCache(select_rows(self.conv_state, rows), select_rows(self.filter_state, rows))


class ExplicitFilter(nn.Module):
    """Hyena-SE / Hyena-MR: ``taps`` (groups, K) free taps, the last multiplying the current input;
    each group's taps serve ``d / groups`` consecutive channels."""

    def __init__(self, channels: int, groups: int, length: int) -> None:
        super().__init__()
        self.channels = channels
        self.taps = nn.Parameter(torch.randn(groups, length) * 0.1)

    def forward(self, u: torch.Tensor, cache: CascadeCache | None) -> torch.Tensor:
        taps = self.taps.repeat_interleave(self.channels // self.taps.shape[0], dim=0)
        if cache is None:
            return causal_conv1d(u, taps)
        y, cache.filter_state = causal_conv1d(u, taps, initial_state=cache.filter_state, return_final_state=True)
        return y


class ModalFilter(nn.Module):
    """Hyena-LI: ``h[t, d] = sum_s residues[d, s] exp(log_poles[d, s] t)`` (float32 or wider)."""

    def __init__(self, channels: int, state: int) -> None:
        super().__init__()
        self.log_poles = nn.Parameter(-torch.exp(torch.randn(channels, state) - 1.0))
        self.residues = nn.Parameter(torch.randn(channels, state) * 0.1)

    def powers(self, stop: int, dtype: torch.dtype, start: int = 0) -> torch.Tensor:
        """``p[d, s] ** t`` for t = start..stop-1, (d, S, stop - start)."""
        t = torch.arange(start, stop, device=self.log_poles.device, dtype=dtype)
        return torch.exp(self.log_poles.to(dtype)[..., None] * t)

    def taps(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """The filter's first ``n`` taps (n, d), built ``MODAL_CHUNK`` positions at a time so the
        (d, S, positions) table stays small at any length."""
        residues = self.residues.to(dtype)
        return torch.cat([torch.einsum("ds,dsn->nd", residues, self.powers(min(a + MODAL_CHUNK, n), dtype, a))
                          for a in range(0, n, MODAL_CHUNK)])

    def forward(self, u: torch.Tensor, cache: CascadeCache | None) -> torch.Tensor:
        uf = to_acc(u)
        if cache is None:
            return fft_causal_conv(uf, self.taps(u.shape[1], uf.dtype))
        batch, n, d = u.shape
        state = cache.filter_state
        if state is None:
            state = uf.new_zeros(batch, d, self.log_poles.shape[1])
        residues, out = self.residues.to(uf.dtype), []
        for start in range(0, n, MODAL_CHUNK):
            chunk = uf[:, start : start + MODAL_CHUNK]
            m = chunk.shape[1]
            p = self.powers(m + 1, uf.dtype)  # p ** 0 .. p ** m
            inside = fft_causal_conv(chunk, torch.einsum("ds,dsn->nd", residues, p[..., :m]))
            carried = torch.einsum("bds,ds,dsn->bnd", state, residues, p[..., 1:])
            out.append(inside + carried)
            state = state * p[..., m] + torch.einsum("bnd,dsn->bds", chunk, p[..., :m].flip(-1))
        cache.filter_state = state
        return torch.cat(out, dim=1)


class HyenaCascade(nn.Module):
    """Input projection, short conv, ``q * (h * (k v) + skip * k v)``, output projection."""

    def __init__(self, cfg: StripedHyenaConfig, kind: str) -> None:
        super().__init__()
        d = self.d_model = cfg.d_model
        self.in_proj = nn.Linear(d, 3 * d, bias=cfg.proj_bias)
        self.conv_weight = nn.Parameter(torch.randn(3 * d, cfg.short_conv) * 0.3)
        self.conv_bias = nn.Parameter(torch.zeros(3 * d)) if cfg.short_conv_bias else None
        if kind == "hyena_li":
            self.filter, has_skip = ModalFilter(d, cfg.li_state), True
        else:
            groups, length = (cfg.se_groups, cfg.se_filter_len) if kind == "hyena_se" else (cfg.mr_groups, cfg.mr_filter_len)
            self.filter, has_skip = ExplicitFilter(d, groups, length), length >= SKIP_FROM_TAPS
        self.skip = nn.Parameter(torch.zeros(d)) if has_skip else None
        self.out_proj = nn.Linear(d, d, bias=cfg.hyena_out_bias)

    def new_cache(self, max_len: int | None) -> CascadeCache:
        return CascadeCache()

    def forward(self, x: torch.Tensor, cache: CascadeCache | None = None, offset: int = 0) -> torch.Tensor:
        p = self.in_proj(x)
        if cache is None:
            p = causal_conv1d(p, self.conv_weight, self.conv_bias)
        else:
            p, cache.conv_state = causal_conv1d(p, self.conv_weight, self.conv_bias, initial_state=cache.conv_state,
                                                return_final_state=True)
        q, k, v = p.split(self.d_model, dim=-1)
        kv = k * v
        y = self.filter(kv, cache)
        if self.skip is not None:
            y = y + to_acc(kv) * self.skip
        return self.out_proj((y.to(x.dtype) * q))


class RotaryAttention(WindowedAttention):
    """Causal multi-head attention, rotary positions on every head dimension, an optional cache;
    a sliding ``window`` (with ``sink``) when :func:`~genoseq.models.inference.limit_attention` sets one."""

    def __init__(self, cfg: StripedHyenaConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.d_model // cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.attention_out_bias)
        inv_freq = 1.0 / cfg.rope_base ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        self.register_buffer("inv_freq", inv_freq)
        self.rope_scale = cfg.rope_scale

    def new_cache(self, max_len: int | None) -> AttentionCache:
        if max_len is None:
            raise ValueError("a StripedHyena model with attention layers needs new_cache(max_len)")
        return AttentionCache(max_len)

    def forward(self, x: torch.Tensor, cache: AttentionCache | None = None, offset: int = 0) -> torch.Tensor:
        batch, n, d = x.shape
        q, k, v = self.qkv(x).view(batch, n, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        positions = torch.arange(offset, offset + n, device=x.device, dtype=torch.float32) / self.rope_scale
        q, k = apply_rotary(q, positions, self.inv_freq), apply_rotary(k, positions, self.inv_freq)
        if cache is None and self.window is not None and self.window < n:
            y = blockwise_attention(q, k, v, window=self.window, sink=self.sink)
        elif cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            if offset + n > cache.max_len:
                raise ValueError(f"attention cache holds {cache.max_len} positions; got {offset + n}")
            if cache.k is None:
                cache.k = k.new_zeros(batch, self.n_heads, cache.max_len, self.head_dim)
                cache.v = torch.zeros_like(cache.k)
            cache.k[:, :, offset : offset + n], cache.v[:, :, offset : offset + n] = k, v
            mask = visible(torch.arange(offset, offset + n, device=x.device), torch.arange(offset + n, device=x.device),
                           self.window, self.sink)
            y = F.scaled_dot_product_attention(q, cache.k[:, :, : offset + n], cache.v[:, :, : offset + n], attn_mask=mask)
        return self.out_proj(y.transpose(1, 2).reshape(batch, n, d))


class StripedBlock(nn.Module):
    """``x + mixer(norm(x))``, then ``x + mlp(mlp_norm(x))``."""

    def __init__(self, cfg: StripedHyenaConfig, layer: int) -> None:
        super().__init__()
        kind = cfg.layers[layer]
        self.norm = ScaledRMSNorm(cfg.d_model, cfg.norm_eps)
        self.mixer = RotaryAttention(cfg) if kind == "attention" else HyenaCascade(cfg, kind)
        self.mlp_norm = ScaledRMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = GatedMLP(cfg, layer)

    def new_cache(self, max_len: int | None):
        return self.mixer.new_cache(max_len)

    def forward(self, x: torch.Tensor, cache=None, offset: int = 0) -> torch.Tensor:
        x = x + self.mixer(self.norm(x), cache, offset)
        return x + self.mlp(self.mlp_norm(x))


class StripedHyenaBackbone(nn.Module):
    """Embedding, the striped blocks, the final norm; the interface of
    :class:`~genoseq.models.backbone.Backbone` (``embedding``, ``new_cache``, ``forward``)."""

    def __init__(self, cfg: StripedHyenaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(StripedBlock(cfg, i) for i in range(cfg.n_layers))
        self.norm_f = ScaledRMSNorm(cfg.d_model, cfg.norm_eps)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def new_cache(self, max_len: int | None = None) -> InferenceCache:
        return InferenceCache([layer.new_cache(max_len) for layer in self.layers], max_len)

    def forward(self, input_ids: torch.Tensor, seq_idx: torch.Tensor | None = None, cache: InferenceCache | None = None,
                output_hidden_states: bool = False, num_layers: int | None = None, cp=None):
        """Final normed hidden states (B, L, d), as ``Backbone.forward`` (``num_layers``: the
        residual stream after that many blocks; ``output_hidden_states``: every block's too)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        if seq_idx is not None or cp is not None:
            raise ValueError("StripedHyena 2 models run whole rows: packed sequences (seq_idx) and context "
                             "parallelism are not supported")
        offset = 0 if cache is None else cache.offset
        x = self.embedding(input_ids)
        hidden = [x] if output_hidden_states else None
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        for i, layer in enumerate(layers):
            x = layer(x, None if cache is None else cache.layers[i], offset)
            if hidden is not None:
                hidden.append(x)
        return finish_forward(x, hidden, self.norm_f, cache, input_ids.shape[1], num_layers, output_hidden_states)


# ----------------------------------------------------------------------------- the language model
class StripedHyenaLM(GenoSeqLM):
    """A :class:`GenoSeqLM` whose backbone is a :class:`StripedHyenaBackbone`: the forward pass,
    loss, ``hidden_states``, ``new_cache`` and generation are GenoSeqLM's own."""

    architecture = ARCHITECTURE  # how folders of models built on it record it (models.released)

    def __init__(self, config: StripedHyenaConfig | dict, optim: OptimConfig | dict | None = None,
                 tokenizer: Tokenizer | dict | None = None, window_length: int | None = None) -> None:
        L.LightningModule.__init__(self)  # GenoSeqLM.__init__ builds the generic backbone
        self.config = config if isinstance(config, StripedHyenaConfig) else StripedHyenaConfig.from_dict(config)
        self.optim = optim if isinstance(optim, OptimConfig) else OptimConfig.from_dict(optim or {})
        self.tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else (
            Tokenizer.from_dict(tokenizer) if tokenizer else Tokenizer())
        if self.tokenizer.vocab_size > self.config.vocab_size:
            raise ValueError(f"the tokenizer has {self.tokenizer.vocab_size} tokens, the model {self.config.vocab_size}")
        self.training_config = TrainingConfig(window_length=window_length)
        self.save_hyperparameters({"architecture": ARCHITECTURE, "config": self.config.to_dict(),
                                   "optim": self.optim.to_dict(), "tokenizer": self.tokenizer.to_dict(),
                                   "window_length": window_length})
        self.backbone = StripedHyenaBackbone(self.config)
        self.lm_head = nn.Linear(self.config.d_model, self.config.vocab_size, bias=False)
        if self.config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight
        self._last_step_time = None
        self.context_parallel_size, self._cp = 1, None

    def save_pretrained(self, directory):
        return save_released(self, directory, model_type="GenoSeqLM", format_version=FORMAT_VERSION,
                             tokenizer=self.tokenizer, config={
                                 "architecture": self.architecture, "model": self.config.to_dict(),
                                 "training": {"optim": self.optim.to_dict(),
                                              "window_length": self.training_config.window_length}})


def build_released(meta: dict, tokenizer: Tokenizer) -> StripedHyenaLM:
    """The model of a released folder's ``config.json`` (read by ``models.released``)."""
    training = meta.get("training", {})
    return StripedHyenaLM(StripedHyenaConfig.from_dict(meta["model"]), optim=training.get("optim"),
                          tokenizer=tokenizer, window_length=training.get("window_length"))


__all__ = ["ARCHITECTURE", "StripedHyenaBackbone", "StripedHyenaConfig", "StripedHyenaLM", "build_released"]
