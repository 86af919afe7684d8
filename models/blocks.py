"""The building blocks of a genoseq backbone: norms, MLPs and the three sequence mixers.

Every block is pre-norm with a residual and strictly causal (output ``t`` sees inputs ``<= t``)::

    x = x + dropout(mixer(norm(x)))          mixer: Hyena, Mamba2 or Attention
    x = x + dropout(mlp(norm(x)))            Hyena and attention blocks (Mamba2 only if mamba_mlp)

Mamba2 blocks have no MLP by default, as in Mamba2 itself: its expanded, gated inner width
already plays the MLP's role, and a Mamba2 block without MLP costs about as much as an
attention block with one.

Each mixer takes ``seq_idx`` (B, L) for packed sequences (a new sequence starts wherever the
value changes; nothing crosses a boundary) and an optional per-layer inference cache. With a
cache, a multi-token call continues the cached sequence (prefill) and a one-token call takes
the recurrent step:

=========  ===================================================  ==============================
mixer      cache                                                one-token step
=========  ===================================================  ==============================
Mamba2     short-conv state (B, C, K-1), SSD state (B, H, P, N)  ``causal_conv1d_step``,
                                                                ``ssd_step``: O(1)
Attention  keys and values (B, H_kv, T, d)                      attend to the cache: O(T)
Hyena      short-conv state, the inputs of every long           dot product of the filter with
           convolution (B, T, D), the filters up to T            the cached inputs: O(T)
=========  ===================================================  ==============================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from genoseq.kernels import causal_conv1d, causal_conv1d_step, segment_ids, ssd_scan, ssd_step

from .attention import Attention
from .config import ModelConfig
from .tensor_utils import positions_in_segment, select_rows, to_acc


# ----------------------------------------------------------------------------- norms and MLP
class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32, returned in the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = to_acc(x)
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * to_acc(self.weight)).to(x.dtype)


class LayerNorm(nn.Module):
    """LayerNorm with a bias (HyenaDNA's norm), computed in float32, returned in the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(to_acc(x), x.shape[-1:], to_acc(self.weight), to_acc(self.bias), self.eps).to(x.dtype)


def make_norm(cfg: ModelConfig) -> nn.Module:
    """The norm named by ``cfg.norm_type`` over ``d_model`` channels."""
    return (LayerNorm if cfg.norm_type == "layernorm" else RMSNorm)(cfg.d_model, cfg.norm_eps)


class GatedRMSNorm(nn.Module):
    """Mamba2's output norm: ``rmsnorm(y * silu(z))`` over groups of ``group_size`` channels."""

    def __init__(self, dim: int, group_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps, self.group_size = eps, group_size
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        g = to_acc(y) * F.silu(to_acc(z))
        g = g.unflatten(-1, (-1, self.group_size))
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.eps)
        return (g.flatten(-2) * to_acc(self.weight)).to(z.dtype)


class MLP(nn.Module):
    """SwiGLU (``w_out(silu(a) * b)``) or GELU (exact or tanh-approximated) feed-forward."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gated = cfg.mlp_type == "swiglu"
        self.approximate = "tanh" if cfg.mlp_type == "gelu_tanh" else "none"
        hidden = cfg.mlp_hidden
        self.w_in = nn.Linear(cfg.d_model, 2 * hidden if self.gated else hidden, bias=cfg.mlp_bias)
        self.w_out = nn.Linear(hidden, cfg.d_model, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.w_in(x)
        if self.gated:
            a, b = h.chunk(2, dim=-1)
            h = F.silu(a) * b
        else:
            h = F.gelu(h, approximate=self.approximate)
        return self.w_out(h)


def _conv_param(channels: int, width: int) -> tuple[nn.Parameter, nn.Parameter]:
    return nn.Parameter(torch.empty(channels, width)), nn.Parameter(torch.empty(channels))


def _reset_conv(weight: nn.Parameter, bias: nn.Parameter) -> None:
    bound = 1.0 / math.sqrt(weight.shape[1])  # nn.Conv1d's default for a depthwise conv
    nn.init.uniform_(weight, -bound, bound)
    nn.init.uniform_(bias, -bound, bound)


# ----------------------------------------------------------------------------- Mamba2
@dataclass
class MambaCache:
    conv_state: torch.Tensor | None = None  # (B, conv channels, K-1)
    ssm_state: torch.Tensor | None = None  # (B, H, P, N), float32

    def select(self, rows: torch.Tensor) -> "MambaCache":
        """A cache whose row ``j`` is a copy of row ``rows[j]`` of this one."""
        return MambaCache(select_rows(self.conv_state, rows), select_rows(self.ssm_state, rows))


class Mamba2(nn.Module):
    """Mamba2 mixer: SSD selective state space with a scalar-times-identity A per head.

    ``in_proj`` gives z (gate), xBC (SSM input and its B, C) and dt; xBC goes through a short
    causal conv with silu; ``dt = softplus(dt + dt_bias)``, ``A = -exp(A_log)``; the SSD scan
    adds the ``D`` skip; ``rmsnorm(y * silu(z))`` then ``out_proj``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.d_inner, self.n_heads, self.headdim = cfg.d_inner, cfg.mamba_heads, cfg.headdim
        self.n_groups, self.d_state = cfg.n_groups, cfg.d_state
        self.conv_dim = self.d_inner + 2 * self.n_groups * self.d_state
        self.in_proj = nn.Linear(cfg.d_model, self.d_inner + self.conv_dim + self.n_heads, bias=False)
        self.conv_weight, self.conv_bias = _conv_param(self.conv_dim, cfg.d_conv)
        self.dt_bias = nn.Parameter(torch.empty(self.n_heads))
        self.A_log = nn.Parameter(torch.empty(self.n_heads))
        self.D = nn.Parameter(torch.empty(self.n_heads))
        self.norm = GatedRMSNorm(self.d_inner, self.d_inner // self.n_groups, cfg.norm_eps)
        self.out_proj = nn.Linear(self.d_inner, cfg.d_model, bias=False)
        self.reset_special_parameters()

    def reset_special_parameters(self) -> None:
        """Mamba2's init: dt log-uniform in [dt_min, dt_max] (stored as inverse softplus), A in [-16, -1]."""
        with torch.no_grad():
            lo, hi = math.log(self.cfg.dt_min), math.log(self.cfg.dt_max)
            dt = torch.exp(torch.rand(self.n_heads) * (hi - lo) + lo).clamp(min=1e-4)
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            self.A_log.copy_(torch.log(torch.empty(self.n_heads).uniform_(1.0, 16.0)))
            self.D.fill_(1.0)
            _reset_conv(self.conv_weight, self.conv_bias)

    def new_cache(self, max_len: int | None) -> MambaCache:
        return MambaCache()

    def _split(self, zxbcdt: torch.Tensor):
        return zxbcdt.split([self.d_inner, self.conv_dim, self.n_heads], dim=-1)

    def _ssm_inputs(self, xBC: torch.Tensor, dt: torch.Tensor):
        x, B, C = xBC.split([self.d_inner, self.n_groups * self.d_state, self.n_groups * self.d_state], dim=-1)
        dt = F.softplus(to_acc(dt) + to_acc(self.dt_bias))
        A = -torch.exp(to_acc(self.A_log))
        return x, B, C, dt, A

    def forward(self, u, seq_idx=None, cache: MambaCache | None = None, offset: int = 0, cp=None):
        if cp is not None:
            return self._forward_context_parallel(u, cp)
        if cache is not None and u.shape[1] == 1:
            return self.step(u[:, 0], cache)[:, None]
        if cache is not None and seq_idx is not None:
            raise ValueError("packed sequences (seq_idx) cannot be combined with an inference cache")
        batch, L, _ = u.shape
        z, xBC, dt = self._split(self.in_proj(u))
        conv_out = causal_conv1d(
            xBC, self.conv_weight, self.conv_bias, activation="silu", seq_idx=seq_idx,
            initial_state=None if cache is None else cache.conv_state, return_final_state=cache is not None,
        )
        if cache is not None:
            xBC, cache.conv_state = conv_out
        else:
            xBC = conv_out
        x, B, C, dt, A = self._ssm_inputs(xBC, dt)
        y, final_state = ssd_scan(
            x.reshape(batch, L, self.n_heads, self.headdim), dt, A,
            B.reshape(batch, L, self.n_groups, self.d_state), C.reshape(batch, L, self.n_groups, self.d_state),
            chunk_size=self.cfg.chunk_size, D=self.D, seq_idx=seq_idx,
            initial_state=None if cache is None else cache.ssm_state, return_final_state=cache is not None,
        )
        if cache is not None:
            cache.ssm_state = final_state
        return self.out_proj(self.norm(y.reshape(batch, L, self.d_inner), z))

    def _forward_context_parallel(self, u, cp):
        """``forward`` of a sequence slice per rank: this rank's heads over the whole sequence, with
        B and C gathered whole (one group) or this rank's groups of them (see :mod:`genoseq.models.parallel`)."""
        batch = u.shape[0]
        z, xBC, dt = self._split(self.in_proj(u))
        bc = [self.n_groups * self.d_state] * 2
        x, BC = xBC.split([self.d_inner, sum(bc)], dim=-1)
        x, dt = cp.seq_to_channels(x, [self.d_inner]), cp.seq_to_channels(dt, [self.n_heads])
        BC, groups = cp.gather_seq(BC), self.n_groups
        (w_x, w_bc), (b_x, b_bc) = (t.split([self.d_inner, sum(bc)]) for t in (self.conv_weight, self.conv_bias))
        if groups > 1:  # n_groups divisible by the ranks (checked before training): this rank's groups
            BC, w_bc, b_bc = cp.channel_slice(BC, bc, dim=2), cp.channel_slice(w_bc, bc), cp.channel_slice(b_bc, bc)
            groups //= cp.size
        own = [self.d_inner]
        xBC = causal_conv1d(torch.cat([x, BC], dim=-1), torch.cat([cp.channel_slice(w_x, own), w_bc]),
                            torch.cat([cp.channel_slice(b_x, own), b_bc]), activation="silu")
        L, heads = xBC.shape[1], self.n_heads // cp.size
        x, B, C = xBC.split([self.d_inner // cp.size, groups * self.d_state, groups * self.d_state], dim=-1)
        dt = F.softplus(to_acc(dt) + to_acc(cp.channel_slice(self.dt_bias, [self.n_heads])))
        A = -torch.exp(to_acc(cp.channel_slice(self.A_log, [self.n_heads])))
        y, _ = ssd_scan(
            x.reshape(batch, L, heads, self.headdim), dt, A, B.reshape(batch, L, groups, self.d_state),
            C.reshape(batch, L, groups, self.d_state), chunk_size=self.cfg.chunk_size,
            D=cp.channel_slice(self.D, [self.n_heads]),
        )
        y = cp.channels_to_seq(y.reshape(batch, L, -1))
        return self.out_proj(self.norm(y, z))

    def step(self, u_t: torch.Tensor, cache: MambaCache) -> torch.Tensor:
        """One token ``u_t`` (B, d_model) -> (B, d_model), advancing the cached states."""
        batch = u_t.shape[0]
        z, xBC, dt = self._split(self.in_proj(u_t))
        if cache.conv_state is None:
            cache.conv_state = xBC.new_zeros(batch, self.conv_dim, self.cfg.d_conv - 1)
            cache.ssm_state = xBC.new_zeros(batch, self.n_heads, self.headdim, self.d_state, dtype=torch.float32)
        xBC, cache.conv_state = causal_conv1d_step(xBC, cache.conv_state, self.conv_weight, self.conv_bias, "silu")
        x, B, C, dt, A = self._ssm_inputs(xBC, dt)
        y, cache.ssm_state = ssd_step(
            cache.ssm_state, x.reshape(batch, self.n_heads, self.headdim), dt, A,
            B.reshape(batch, self.n_groups, self.d_state), C.reshape(batch, self.n_groups, self.d_state), D=self.D,
        )
        return self.out_proj(self.norm(y.reshape(batch, self.d_inner), z))


# ----------------------------------------------------------------------------- Hyena
class Sin(nn.Module):
    """``sin(w * x)`` with a learnable frequency per feature (the implicit filter's activation)."""

    def __init__(self, dim: int, init: float = 1.0) -> None:
        super().__init__()
        self.init = init
        self.freq = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


def hyenadna_features(filter_len: int, emb_dim: int) -> torch.Tensor:
    """HyenaDNA's positional features of ``filter_len`` taps, (filter_len, emb_dim) float32, computed
    with its own operations: ``t`` in [0, 1], then ``cos`` and ``-sin`` of ``2 pi f i / filter_len``."""
    t = torch.linspace(0, 1, filter_len)[:, None]
    bands = (emb_dim - 1) // 2
    w = 2 * math.pi * torch.linspace(0, filter_len - 1, filter_len)[:, None] / filter_len
    z = torch.exp(-1j * torch.linspace(1e-4, bands - 1, bands)[None] * w)
    return torch.cat([t, z.real, z.imag], dim=-1)


class ImplicitFilter(nn.Module):
    """Hyena's implicit long filter: ``h[t] = MLP(features(t)) * (exp(-rate t) + shift)``.

    The MLP has ``layers`` sine-activated hidden layers. Features of a position are ``t``,
    ``cos(2 pi f s)`` and ``-sin(2 pi f s)`` for ``(emb_dim - 1) / 2`` frequencies ``f``, and the
    decay rates are spread over the channels so that the window falls to 1e-2 between 0.3 and
    ``reach`` (default 1.5) filter lengths. Two styles (``ModelConfig.hyena_filter_style``):

    * ``"genoseq"``: ``t = s = i / filter_len`` for tap ``i``. Nothing depends on the sequence
      length, so the filter is defined at any length and a tap is the same for every length:
      full-sequence, windowed and incremental evaluation agree.
    * ``"hyenadna"``: HyenaDNA's filters of ``filter_len`` taps (its ``l_max``): ``t = i /
      (filter_len - 1)``, ``s = i / filter_len``; the features are a stored table (the buffer
      ``features``, as in HyenaDNA's checkpoints) and taps at or beyond ``filter_len`` are zero.
    """

    def __init__(self, channels: int, emb_dim: int, hidden: int, filter_len: int, *, style: str = "genoseq",
                 layers: int = 2, sine_freq: float = 1.0, shift: float = 0.0, reach: float = 1.5) -> None:
        super().__init__()
        self.channels, self.filter_len, self.style, self.shift = channels, filter_len, style, shift
        n_freq = (emb_dim - 1) // 2
        self.register_buffer("freqs", torch.linspace(1e-4, n_freq - 1, n_freq), persistent=False)
        target = math.log(1e-2)
        if style == "hyenadna":  # slow to fast decay, computed as HyenaDNA does
            rates = torch.linspace(target / 1.5, target / 0.3, channels).abs()
            self.register_buffer("features", hyenadna_features(filter_len, emb_dim))
        else:  # fast to slow: the slowest channel's window reaches 1e-2 at `reach` filter lengths
            rates = torch.linspace(-target / 0.3, -target / reach, channels)
        self.register_buffer("rates", rates, persistent=False)
        mlp: list[nn.Module] = [nn.Linear(emb_dim, hidden), Sin(hidden, sine_freq)]
        for _ in range(layers - 1):
            mlp += [nn.Linear(hidden, hidden), Sin(hidden, sine_freq)]
        self.mlp = nn.Sequential(*mlp, nn.Linear(hidden, channels, bias=False))

    def reset_special_parameters(self) -> None:
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                module.reset_parameters()
            elif isinstance(module, Sin):
                nn.init.constant_(module.freq, module.init)

    def positions(self, length: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(t, features)`` of the first ``length`` taps: (length, 1) and (length, emb_dim), float32
        (``length <= filter_len`` in the hyenadna style)."""
        dtype = torch.promote_types(self.rates.dtype, torch.float32)
        if self.style == "hyenadna":
            t = torch.linspace(0, 1, self.filter_len, device=device, dtype=dtype)[:length, None]
            return t, self.features[:length].to(device=device, dtype=dtype)
        t = torch.arange(length, device=device, dtype=dtype)[:, None] / self.filter_len
        angle = 2 * math.pi * t * self.freqs
        return t, torch.cat([t, torch.cos(angle), -torch.sin(angle)], dim=-1)

    def forward(self, length: int, device=None) -> torch.Tensor:
        """Filter taps (length, channels) in float32."""
        device = device or self.freqs.device
        taps = min(length, self.filter_len) if self.style == "hyenadna" else length
        with torch.autocast(device_type=torch.device(device).type, enabled=False):
            t, features = self.positions(taps, device)
            h = self.mlp(features) * (torch.exp(-t * self.rates) + self.shift)
            return F.pad(h, (0, 0, 0, length - taps)) if taps < length else h


def fft_causal_conv(v: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``y[b, t, d] = sum_{s <= t} k[t - s, d] v[b, s, d]`` by FFT with 2L zero padding, in float32."""
    L = v.shape[1]
    n = 2 * L
    # transforms along the last dimension (channels-first views): faster than along dim 1 on CPU
    v_f = torch.fft.rfft(to_acc(v).transpose(1, 2), n=n)
    k_f = torch.fft.rfft(to_acc(k[:L]).t(), n=n)
    return torch.fft.irfft(v_f * k_f, n=n)[..., :L].transpose(1, 2)


def packed_causal_conv(v: torch.Tensor, k: torch.Tensor, seq_idx: torch.Tensor) -> torch.Tensor:
    """``fft_causal_conv`` of each packed sequence on its own: unpack, convolve, pack again."""
    batch, L, D = v.shape
    seg = segment_ids(seq_idx)
    pos = positions_in_segment(seg)
    row_segments = seg[:, -1] + 1
    first = torch.cumsum(row_segments, 0) - row_segments  # global number of each row's first segment
    gid = seg + first[:, None]
    n_seg, longest = int(row_segments.sum()), int(pos.max()) + 1
    unpacked = to_acc(v).new_zeros(n_seg, longest, D)
    unpacked[gid, pos] = to_acc(v)
    return fft_causal_conv(unpacked, k)[gid, pos]


@dataclass
class HyenaCache:
    max_len: int
    conv_state: torch.Tensor | None = None  # (B, (order+1) D, K-1)
    inputs: torch.Tensor | None = None  # (order-1, B, max_len, D): inputs of each long conv
    filters: torch.Tensor | None = None  # (order-1, max_len, D), float32, time-reversed
    # what the inputs before `carry_upto` add to each long conv's output at every later position
    # (order-1, B, max_len, D), float32; made by a prefill, valid while no token has been added since
    carry: torch.Tensor | None = None
    carry_upto: int = -1

    def select(self, rows: torch.Tensor) -> "HyenaCache":
        """A cache whose row ``j`` is a copy of row ``rows[j]`` of this one (filters shared)."""
        return HyenaCache(self.max_len, select_rows(self.conv_state, rows), select_rows(self.inputs, rows, dim=1), self.filters,
                          select_rows(self.carry, rows, dim=1), self.carry_upto)


class Hyena(nn.Module):
    """Hyena operator of order N >= 2 (HyenaDNA's recurrence of gates and long convolutions).

    ``in_proj`` makes N+1 streams, a short depthwise causal conv mixes neighbours, giving gates
    x_0..x_{N-1} and a value v. Then for each of the N-1 long filters h_i::

        v = h_i * (v . x_i) + bias_i . (v . x_i)        (long causal conv by FFT, plus a skip)

    and the output is ``out_proj(v . x_0)``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.order, self.d_model = cfg.hyena_order, cfg.d_model
        self.dropout = nn.Dropout(cfg.dropout)
        streams = (self.order + 1) * cfg.d_model
        self.in_proj = nn.Linear(cfg.d_model, streams)
        self.conv_weight, self.conv_bias = _conv_param(streams, cfg.hyena_short_conv)
        self.filter = ImplicitFilter(
            (self.order - 1) * cfg.d_model, cfg.hyena_filter_emb, cfg.hyena_filter_dim, cfg.hyena_filter_len,
            style=cfg.hyena_filter_style, layers=cfg.hyena_filter_layers, sine_freq=cfg.hyena_sine_freq,
            shift=cfg.hyena_modulation_shift, reach=cfg.hyena_filter_reach,
        )
        self.filter_bias = nn.Parameter(torch.empty(self.order - 1, cfg.d_model))
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.reset_special_parameters()

    def reset_special_parameters(self) -> None:
        with torch.no_grad():
            _reset_conv(self.conv_weight, self.conv_bias)
            nn.init.normal_(self.filter_bias, std=1.0)
            self.filter.reset_special_parameters()

    def new_cache(self, max_len: int | None) -> HyenaCache:
        if max_len is None:
            raise ValueError("a Hyena layer's cache needs max_len (the longest sequence it will hold)")
        return HyenaCache(max_len)

    def filters(self, length: int, device=None) -> torch.Tensor:
        """The long filters as (order-1, length, D), float32."""
        return self.filter(length, device).view(length, self.order - 1, self.d_model).transpose(0, 1)

    def forward(self, u, seq_idx=None, cache: HyenaCache | None = None, offset: int = 0, cp=None):
        if cp is not None:
            return self._forward_context_parallel(u, cp)
        if cache is not None and u.shape[1] == 1:
            return self.step(u[:, 0], cache, offset)[:, None]
        if cache is not None and seq_idx is not None:
            raise ValueError("packed sequences (seq_idx) cannot be combined with an inference cache")
        batch, L, _ = u.shape
        if cache is not None:
            self._init_cache(cache, batch, u)
            if offset + L > cache.max_len:
                raise ValueError(f"Hyena cache holds {cache.max_len} positions; got {offset + L}")
        p = self.in_proj(u)
        conv_out = causal_conv1d(
            p, self.conv_weight, self.conv_bias, seq_idx=seq_idx,
            initial_state=None if cache is None else cache.conv_state, return_final_state=cache is not None,
        )
        if cache is not None:
            p, cache.conv_state = conv_out
        else:
            p = conv_out
        *gates, v = p.split(self.d_model, dim=-1)
        k = self.filters(offset + L, u.device)
        # With a cache: a prefill (offset 0) convolves over the whole cache length, so that what the
        # prefix adds to every later output is kept (the carry); a call right after it then convolves
        # only its own tokens and adds the carry: a continuation of T tokens after a prefix of P costs
        # an FFT of 2T, not 2(P + T) (saturation mutagenesis, shared-prefix variant scoring).
        prefill = cache is not None and offset == 0 and L < cache.max_len
        use_carry = cache is not None and not prefill and cache.carry is not None and cache.carry_upto == offset
        if prefill and cache.carry is None:
            cache.carry = torch.zeros_like(cache.inputs)
        for i in range(self.order - 1):
            v = self.dropout(v * gates[self.order - 1 - i])
            if prefill:
                cache.inputs[i, :, :L] = v
                full = fft_causal_conv(cache.inputs[i], cache.filters[i].flip(0))  # zeros after L
                cache.carry[i] = full
                conv = full[:, :L]
            elif use_carry:
                cache.inputs[i, :, offset : offset + L] = v
                conv = cache.carry[i, :, offset : offset + L] + fft_causal_conv(v, k[i])
            elif cache is not None:  # continue the cached sequence: convolve over all of it
                cache.inputs[i, :, offset : offset + L] = v
                conv = fft_causal_conv(cache.inputs[i, :, : offset + L], k[i])[:, offset:]
            elif seq_idx is not None:
                conv = packed_causal_conv(v, k[i], seq_idx)
            else:
                conv = fft_causal_conv(v, k[i])
            v = (conv + to_acc(v) * self.filter_bias[i]).to(v.dtype)
        if cache is not None:
            cache.carry_upto = L if prefill else -1  # a carry covers the inputs up to where it was made
        return self.out_proj(v * gates[0])

    def _forward_context_parallel(self, u, cp):
        """``forward`` of a sequence slice per rank: this rank's channels over the whole sequence
        (see :mod:`genoseq.models.parallel`)."""
        streams = [self.d_model] * (self.order + 1)
        p = cp.seq_to_channels(self.in_proj(u), streams)
        p = causal_conv1d(p, cp.channel_slice(self.conv_weight, streams), cp.channel_slice(self.conv_bias, streams))
        *gates, v = p.split(self.d_model // cp.size, dim=-1)
        k = cp.channel_slice(self.filters(p.shape[1], u.device), [self.d_model], dim=2)
        bias = cp.channel_slice(self.filter_bias, [self.d_model], dim=1)
        for i in range(self.order - 1):
            v = self.dropout(v * gates[self.order - 1 - i])
            v = (fft_causal_conv(v, k[i]) + to_acc(v) * bias[i]).to(v.dtype)
        return self.out_proj(cp.channels_to_seq(v * gates[0]))

    def _init_cache(self, cache: HyenaCache, batch: int, like: torch.Tensor) -> None:
        if cache.inputs is None:
            streams = (self.order + 1) * self.d_model
            cache.conv_state = like.new_zeros(batch, streams, self.cfg.hyena_short_conv - 1)
            cache.inputs = to_acc(like).new_zeros(self.order - 1, batch, cache.max_len, self.d_model)
            cache.filters = self.filters(cache.max_len, like.device).flip(1)

    def step(self, u_t: torch.Tensor, cache: HyenaCache, offset: int) -> torch.Tensor:
        """One token at position ``offset``: each long conv is a dot product with the cached inputs."""
        batch = u_t.shape[0]
        self._init_cache(cache, batch, u_t)
        cache.carry_upto = -1
        if offset >= cache.max_len:
            raise ValueError(f"Hyena cache holds {cache.max_len} positions; got {offset + 1}")
        p, cache.conv_state = causal_conv1d_step(self.in_proj(u_t), cache.conv_state, self.conv_weight, self.conv_bias)
        *gates, v = p.split(self.d_model, dim=-1)
        taps = cache.filters[:, cache.max_len - 1 - offset :]  # h[offset], ..., h[0]
        for i in range(self.order - 1):
            v = v * gates[self.order - 1 - i]
            cache.inputs[i, :, offset] = v
            conv = torch.einsum("btd,td->bd", cache.inputs[i, :, : offset + 1], taps[i].to(cache.inputs.dtype))
            v = (conv + to_acc(v) * self.filter_bias[i]).to(v.dtype)
        return self.out_proj(v * gates[0])


# ----------------------------------------------------------------------------- the block
MIXERS = {"hyena": Hyena, "mamba2": Mamba2}  # attention is built with its layer's window


class Block(nn.Module):
    """Pre-norm residual block: ``x + mixer(norm(x))``, then ``x + mlp(norm(x))`` where there is one."""

    def __init__(self, cfg: ModelConfig, kind: str, attention_window: int | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.norm = make_norm(cfg)
        self.mixer = Attention(cfg, attention_window) if kind == "attention" else MIXERS[kind](cfg)
        has_mlp = kind != "mamba2" or cfg.mamba_mlp
        self.mlp_norm = make_norm(cfg) if has_mlp else None
        self.mlp = MLP(cfg) if has_mlp else None
        self.drop = nn.Dropout(cfg.dropout)

    def new_cache(self, max_len: int | None):
        return self.mixer.new_cache(max_len)

    def forward(self, x, seq_idx=None, cache=None, offset: int = 0, cp=None):
        x = x + self.drop(self.mixer(self.norm(x), seq_idx=seq_idx, cache=cache, offset=offset, cp=cp))
        if self.mlp is not None:
            x = x + self.drop(self.mlp(self.mlp_norm(x)))
        return x
