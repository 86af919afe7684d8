"""Model, optimiser and training configuration as plain dataclasses.

This module imports no torch: the CLI builds its parser from these dataclasses (every field is
also a YAML key, e.g. ``--model.pattern MMMMMMMA``), and ``genoseq --help`` must stay fast.

A backbone is named by a pattern string, one letter per block, repeated ``n_repeats`` times:

====  ==========================================================================
H     Hyena operator (implicit long convolution with data-controlled gating) + MLP
M     Mamba2 (SSD selective state space), no MLP by default (``mamba_mlp``)
A     causal multi-head attention (rotary, optional grouped-query) + MLP
====  ==========================================================================

``"MMMMMMMA"`` is a HybriDNA-style hybrid (seven Mamba2 blocks, then attention); ``"HHHA"`` is
Hyena-heavy; ``"AAAA"`` a plain transformer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from genoseq.tokenizer import NUM_BASE_TOKENS

BLOCK_TYPES = {"H": "hyena", "M": "mamba2", "A": "attention"}

# Ten fixed ids (specials + A C G T N) plus room for condition tokens, a multiple of 8.
DEFAULT_VOCAB_SIZE = -(-(NUM_BASE_TOKENS + 6) // 8) * 8


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class ModelConfig:
    """Architecture of a genoseq backbone and its language-model head."""

    # ---- overall shape
    d_model: int = 256
    pattern: str = "MMMMMMMA"
    n_repeats: int = 1
    vocab_size: int = DEFAULT_VOCAB_SIZE
    tie_embeddings: bool = True
    dropout: float = 0.0
    norm_eps: float = 1e-5
    # Every block's norms and the final norm: RMSNorm, or LayerNorm with a bias (HyenaDNA's).
    norm_type: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    # ---- MLP after Hyena / attention mixers (and after Mamba2 when mamba_mlp)
    # "gelu_tanh" is GELU's tanh approximation (HyenaDNA's MLP).
    mlp_type: Literal["swiglu", "gelu", "gelu_tanh"] = "swiglu"
    mlp_ratio: float = 4.0  # hidden width / d_model (SwiGLU uses 2/3 of it, as in LLaMA)
    mlp_bias: bool = False
    # ---- attention
    n_heads: int = 8
    n_kv_heads: int | None = None  # None: same as n_heads; fewer: grouped-query attention
    rope_base: float = 10_000.0
    # Share of each attention head's dimensions that carry rotary positions (GPT-NeoX's rotary_pct).
    # The rest match by content alone, at any distance; 0 = no positional encoding in attention
    # (NoPE: the Hyena and Mamba2 blocks below already tell positions apart), which lets a hybrid
    # recall far back and score past its training length.
    rope_fraction: float = 1.0
    # Width of a short depthwise causal conv on each attention layer's queries, keys and values
    # (H3's shift on the keys): a key then carries the few bases before it, so a query can find
    # where the bases it has just seen occurred before and read what came next (in-context copying,
    # an induction head in one layer). 0 = none.
    attention_conv: int = 0
    # How attention layers start. "default": every projection ~ N(0, 0.02), the conv above the
    # identity. "induction" (needs attention_conv >= 2): the layer starts as an induction head over
    # k-mers, the structure H3 builds in with its shift SSM: each head's query channels, in
    # attention_conv - 1 groups, see the current base and the ones before it, its key channels the
    # same bases one position earlier, and the key projection starts equal to the query projection
    # (scaled so a full k-mer match stands out), so a query attends from the start to where the
    # bases it has just seen occurred before, and the value there is the base that came next.
    # Training then only has to learn to use what the head reads, which a model trained from a
    # random start does not find within a CPU budget (benchmarks/bench_copy_task.py).
    attention_init: str = "default"
    # Sliding-window attention: each position attends to the last `attention_window` positions
    # (itself included) in every attention layer except those listed in `global_attention_layers`
    # (layer indices, 0 = the first block), which attend to the whole sequence. None: all full.
    # Full attention in a few layers and local attention elsewhere is the MASFormer recipe.
    attention_window: int | None = None
    global_attention_layers: list[int] | None = None
    # ---- Mamba2 (SSD)
    d_state: int = 64
    headdim: int = 32
    expand: int = 2
    n_groups: int = 1
    d_conv: int = 4
    chunk_size: int = 64
    dt_min: float = 1e-3
    dt_max: float = 0.1
    mamba_mlp: bool = False
    # ---- Hyena
    hyena_order: int = 2
    hyena_filter_dim: int = 64  # width of the implicit-filter MLP
    hyena_filter_emb: int = 33  # positional features: 1 + 2 * number of frequencies
    hyena_short_conv: int = 3
    # Length scale of the implicit filters. Filters are generated for any length; positions
    # are measured in units of this scale, and the decay window reaches 1e-2 between 0.3 and
    # 1.5 scale lengths depending on the channel.
    hyena_filter_len: int = 1024
    # Reach of the slowest-decaying channel of the "genoseq" filters, in filter lengths: its
    # window falls to 1e-2 there (the fastest channel's at 0.3 filter lengths). Raise it to let
    # filters reach past the training window without coarsening their positional features.
    hyena_filter_reach: float = 1.5
    # How filter positions are featurised and windowed:
    # "genoseq": position t / hyena_filter_len, decay rates fixed, the filter defined at any length;
    # "hyenadna": HyenaDNA's parametrisation for filters of hyena_filter_len taps (its l_max):
    #   the time feature and the decay use t / (hyena_filter_len - 1), the frequencies
    #   t / hyena_filter_len, the features are a table stored with the weights, and taps at or
    #   beyond hyena_filter_len are zero.
    hyena_filter_style: Literal["genoseq", "hyenadna"] = "genoseq"
    hyena_filter_layers: int = 2  # sine-activated layers of the filter MLP (HyenaDNA: 3)
    hyena_sine_freq: float = 1.0  # initial frequency of the filter's sine activations (HyenaDNA: 10)
    hyena_modulation_shift: float = 0.0  # the window is exp(-rate t) + shift (HyenaDNA: 0.05)
    # ---- memory
    # Activation checkpointing: keep only each block's input while training and recompute the
    # block in the backward pass (memory per layer O(L * d_model) instead of all activations).
    # True: every block; a list: those layer indices.
    checkpointing: bool | list[int] = False

    def __post_init__(self) -> None:
        self.pattern = str(self.pattern).upper()
        _check(self.d_model > 0, f"d_model must be positive, got {self.d_model}")
        _check(bool(self.pattern), "pattern must name at least one block")
        bad = sorted(set(self.pattern) - set(BLOCK_TYPES))
        _check(not bad, f"pattern {self.pattern!r} has unknown block letters {bad}; use H (Hyena), M (Mamba2), A (attention)")
        _check(self.n_repeats >= 1, f"n_repeats must be >= 1, got {self.n_repeats}")
        _check(self.vocab_size >= NUM_BASE_TOKENS, f"vocab_size must be >= {NUM_BASE_TOKENS}, got {self.vocab_size}")
        _check(self.mlp_type in ("swiglu", "gelu", "gelu_tanh"),
               f"mlp_type must be 'swiglu', 'gelu' or 'gelu_tanh', got {self.mlp_type!r}")
        _check(self.norm_type in ("rmsnorm", "layernorm"), f"norm_type must be 'rmsnorm' or 'layernorm', got {self.norm_type!r}")
        _check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        if "A" in self.pattern:
            _check(self.d_model % self.n_heads == 0, f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
            _check((self.d_model // self.n_heads) % 2 == 0, "attention head size must be even for rotary embeddings")
            _check(self.n_heads % self.kv_heads == 0, f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.kv_heads}")
        if "M" in self.pattern:
            _check(self.d_inner % self.headdim == 0, f"expand * d_model = {self.d_inner} is not divisible by headdim={self.headdim}")
            _check(self.mamba_heads % self.n_groups == 0, f"Mamba2 heads ({self.mamba_heads}) not divisible by n_groups={self.n_groups}")
            _check(self.d_conv >= 2 and self.chunk_size >= 1, "d_conv must be >= 2 and chunk_size >= 1")
            _check(0 < self.dt_min <= self.dt_max, "need 0 < dt_min <= dt_max")
        if "H" in self.pattern:
            _check(self.hyena_order >= 2, f"hyena_order must be >= 2, got {self.hyena_order}")
            _check(self.hyena_filter_emb >= 3 and self.hyena_filter_emb % 2 == 1, "hyena_filter_emb must be odd and >= 3")
            _check(self.hyena_short_conv >= 2, "hyena_short_conv must be >= 2")
            _check(self.hyena_filter_len >= 2, "hyena_filter_len must be >= 2")
            _check(self.hyena_filter_style in ("genoseq", "hyenadna"),
                   f"hyena_filter_style must be 'genoseq' or 'hyenadna', got {self.hyena_filter_style!r}")
            _check(self.hyena_filter_layers >= 1, "hyena_filter_layers must be >= 1")
            _check(self.hyena_filter_reach >= 0.3, f"hyena_filter_reach must be >= 0.3 filter lengths, got {self.hyena_filter_reach}")
            _check(self.hyena_filter_style == "genoseq" or self.hyena_filter_reach == 1.5,
                   "hyena_filter_reach applies to hyena_filter_style 'genoseq' only (HyenaDNA's filters end at hyena_filter_len)")
        self._check_layer_options()

    def _check_layer_options(self) -> None:
        n = self.n_layers
        _check(self.attention_conv >= 0, f"attention_conv must be >= 0, got {self.attention_conv}")
        _check(0.0 <= self.rope_fraction <= 1.0, f"rope_fraction must be in [0, 1], got {self.rope_fraction}")
        _check(self.attention_init in ("default", "induction"),
               f"attention_init must be 'default' or 'induction', got {self.attention_init!r}")
        _check(self.attention_init != "induction" or self.attention_conv >= 2,
               f"attention_init 'induction' needs attention_conv >= 2 (the bases a key carries), got {self.attention_conv}")
        _check(self.attention_init != "induction" or self.d_model // self.n_heads >= self.attention_conv - 1,
               f"attention_init 'induction' needs a head of at least attention_conv - 1 = {self.attention_conv - 1} "
               f"dimensions, got d_model {self.d_model} / n_heads {self.n_heads}")
        if self.attention_window is not None:
            self.attention_window = int(self.attention_window)
            _check(self.attention_window >= 1, f"attention_window must be >= 1, got {self.attention_window}")
        if self.global_attention_layers is not None:
            self.global_attention_layers = sorted(int(i) for i in self.global_attention_layers)
            wrong = [i for i in self.global_attention_layers if not (0 <= i < n and self.layer_types[i] == "attention")]
            attention = [i for i, kind in enumerate(self.layer_types) if kind == "attention"]
            _check(not wrong, f"global_attention_layers {wrong} are not attention layers; the attention layers of "
                              f"pattern {self.pattern!r} x{self.n_repeats} are {attention}")
            _check(self.attention_window is not None, "global_attention_layers needs attention_window (the other layers' window)")
        if not isinstance(self.checkpointing, bool):
            self.checkpointing = sorted(int(i) for i in self.checkpointing)
            wrong = [i for i in self.checkpointing if not 0 <= i < n]
            _check(not wrong, f"checkpointing names layers {wrong}, but the model has layers 0..{n - 1}")

    # ---- derived sizes
    @property
    def layer_types(self) -> list[str]:
        """One block type name ("hyena", "mamba2", "attention") per layer, bottom to top."""
        return [BLOCK_TYPES[c] for c in self.pattern * self.n_repeats]

    def attention_window_of(self, layer: int) -> int | None:
        """The sliding window of attention layer ``layer`` (None: full attention)."""
        return None if layer in (self.global_attention_layers or ()) else self.attention_window

    def checkpointed(self, layer: int) -> bool:
        """Whether block ``layer`` is recomputed in the backward pass (``checkpointing``)."""
        return self.checkpointing if isinstance(self.checkpointing, bool) else layer in self.checkpointing

    @property
    def n_layers(self) -> int:
        return len(self.pattern) * self.n_repeats

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def mamba_heads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def mlp_hidden(self) -> int:
        hidden = self.mlp_ratio * self.d_model
        if self.mlp_type == "swiglu":
            hidden = 2 * hidden / 3
        return max(8, -(-int(hidden) // 8) * 8)

    # ---- serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data)


@dataclass
class OptimConfig:
    """AdamW with linear warmup, then cosine decay to ``min_lr_ratio * lr``.

    Gradient clipping is the Trainer's (``gradient_clip_val``). ``total_steps=None`` takes the
    Trainer's estimate (``max_steps`` or epochs x batches).
    """

    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    total_steps: int | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # JSON / YAML give lists
        _check(self.lr > 0, f"lr must be positive, got {self.lr}")
        _check(self.weight_decay >= 0, "weight_decay must be >= 0")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"betas must be two numbers in [0, 1), got {self.betas}")
        _check(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        _check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")

    def lr_factor(self, step: int, total_steps: int) -> float:
        """Multiplier of ``lr`` at optimiser step ``step`` (0-based)."""
        import math

        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OptimConfig":
        return _from_dict(cls, data)


@dataclass
class TrainingConfig:
    """Training-time options of :class:`genoseq.models.GenoSeqLM`.

    ``window_length`` is the length of the training windows (see ``inference.scoring_window``).
    ``seq_len_warmup`` is HyenaDNA's staged sequence-length warmup: a list of ``(step, length)``
    pairs, e.g. ``[(0, 1024), (2000, 2048), (4000, 0)]``; from each step on, batches of shape
    ``(B, L)`` are reshaped to ``(B * L // length, length)`` (tokens per step unchanged); a
    length of 0 (or one >= L) means the full length.
    """

    rc_augment: bool = False
    seq_len_warmup: list[tuple[int, int]] | None = None
    # Fraction of training windows into which a copy of one of their own segments is planted
    # further on (see ``lm.plant_copies``): it teaches a model to look back and copy, which real
    # windows rarely ask for. 0 plants none.
    copy_augment: float = 0.0
    # Bases per training window (recorded by `genoseq pretrain`): scoring takes its default
    # window and context from it (``inference.scoring_window``). None when unknown.
    window_length: int | None = None

    def __post_init__(self) -> None:
        self.seq_len_warmup = normalize_seq_len_warmup(self.seq_len_warmup)
        _check(0.0 <= self.copy_augment <= 1.0, f"copy_augment must be in [0, 1], got {self.copy_augment}")
        if self.window_length is not None:
            self.window_length = int(self.window_length)
            _check(self.window_length >= 2, f"window_length must be >= 2, got {self.window_length}")


def normalize_seq_len_warmup(schedule) -> list[tuple[int, int]] | None:
    """Validate a ``[(step, length), ...]`` schedule; return it sorted as tuples (or None)."""
    if not schedule:
        return None
    stages = []
    for stage in schedule:
        _check(len(stage) == 2, f"seq_len_warmup stages are (step, length) pairs, got {stage!r}")
        step, length = int(stage[0]), int(stage[1])
        _check(step >= 0 and length >= 0, f"seq_len_warmup stage {stage!r} has a negative value")
        stages.append((step, length))
    stages.sort()
    _check(len({s for s, _ in stages}) == len(stages), "seq_len_warmup has two stages starting at the same step")
    return stages


def seq_len_at(schedule: list[tuple[int, int]] | None, step: int) -> int:
    """Training length at ``step`` under a warmup schedule; 0 means the full batch length."""
    length = 0
    for start, stage_len in schedule or ():
        if step >= start:
            length = stage_len
    return length


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
    return cls(**data)


__all__ = [
    "BLOCK_TYPES",
    "DEFAULT_VOCAB_SIZE",
    "ModelConfig",
    "OptimConfig",
    "TrainingConfig",
    "normalize_seq_len_warmup",
    "seq_len_at",
]
