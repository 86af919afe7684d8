"""Long-context model options: sliding-window and blockwise attention, activation checkpointing,
Hyena filter reach, and their checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genoseq.models.attention import Attention, apply_rotary, blockwise_attention, visible
from genoseq.models.backbone import Backbone
from genoseq.models.blocks import ImplicitFilter
from genoseq.models.config import ModelConfig
from genoseq.models.tensor_utils import positions_in_segment
from genoseq.kernels import segment_ids

torch.set_num_threads(1)


def tiny(pattern: str, **kw) -> ModelConfig:
    base = dict(d_model=32, pattern=pattern, n_heads=4, headdim=16, d_state=16, chunk_size=16,
                hyena_filter_len=64, hyena_filter_dim=16)
    return ModelConfig(**{**base, **kw})


def qkv(L: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, L, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]


def dense(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("window", [None, 1, 7, 40])
def test_blockwise_attention_equals_dense_masked_attention(window):
    L = 70
    q, k, v = qkv(L)
    pos = torch.arange(L)
    want = dense(q, k, v, visible(pos, pos, window))
    got = blockwise_attention(q, k, v, window=window, block=16)
    torch.testing.assert_close(got, want)
    g = torch.randn_like(want)
    grads_want = torch.autograd.grad(want, (q, k, v), g)
    grads_got = torch.autograd.grad(got, (q, k, v), g)
    for a, b in zip(grads_got, grads_want):
        torch.testing.assert_close(a, b)


def test_blockwise_attention_of_packed_rows_stays_inside_each_sequence():
    L = 50
    q, k, v = qkv(L, seed=1)
    seq_idx = torch.tensor([[0] * 20 + [1] * 25 + [2] * 5, [4] * 3 + [5] * 47])
    seg = segment_ids(seq_idx)
    pos = torch.arange(L)
    mask = visible(pos, pos, 9)[None] & (seg[:, :, None] == seg[:, None, :])
    want = dense(q, k, v, mask[:, None])
    torch.testing.assert_close(blockwise_attention(q, k, v, window=9, seg=seg, block=8), want)
    assert positions_in_segment(seg)[0, 20] == 0


def test_sliding_window_layer_sees_only_its_window_and_streams_exactly():
    torch.manual_seed(0)
    model = Backbone(tiny("A", attention_window=5)).double().eval()
    ids = torch.randint(5, 9, (1, 30))
    out = model(ids)
    changed = ids.clone()
    changed[0, 10] = 5 if ids[0, 10] != 5 else 6
    moved = (model(changed) - out).abs().amax(-1)[0]
    # one attention layer: position 10 reaches positions 10..14 and no further
    assert (moved[10:15] > 0).all() and (moved[15:] == 0).all() and (moved[:10] == 0).all()
    cache = model.new_cache(max_len=30)
    steps = torch.cat([model(ids[:, :12], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(12, 30)], 1)
    torch.testing.assert_close(steps, out)


def test_global_attention_layers_keep_full_attention():
    model = Backbone(tiny("AHA", attention_window=4, global_attention_layers=[2]))
    assert [getattr(b.mixer, "window", "-") for b in model.layers] == [4, "-", None]


@pytest.mark.parametrize("pattern", ["HMA", "AHM"])
def test_checkpointing_gives_the_same_loss_and_gradients(pattern):
    ids = torch.randint(5, 9, (2, 48))

    def step(checkpointing):
        torch.manual_seed(0)
        model = Backbone(tiny(pattern, checkpointing=checkpointing)).double().train()
        loss = model(ids).square().mean()
        loss.backward()
        return loss, {n: p.grad for n, p in model.named_parameters()}

    loss, grads = step(False)
    for option in (True, [0, 2]):
        loss_ckpt, grads_ckpt = step(option)
        torch.testing.assert_close(loss_ckpt, loss)
        for name, grad in grads.items():
            torch.testing.assert_close(grads_ckpt[name], grad, msg=lambda m: f"{name}: {m}")


def test_hyena_filter_reach_moves_the_slowest_decay_only():
    short = ImplicitFilter(8, 5, 16, 100, reach=1.5)
    long = ImplicitFilter(8, 5, 16, 100, reach=30.0)
    assert short.rates[0] == long.rates[0]  # the fastest channel reaches 0.3 filter lengths either way
    # the slowest channel's window exp(-rate t) falls to 1e-2 at `reach` filter lengths (t = 1 per length)
    assert torch.exp(-long.rates[-1] * 30.0).item() == pytest.approx(1e-2)
    assert torch.exp(-short.rates[-1] * 1.5).item() == pytest.approx(1e-2)


def test_partial_rotary_rotates_the_first_dimensions_and_leaves_the_rest():
    x = torch.randn(2, 3, 10, 8, dtype=torch.float64)
    pos = torch.arange(10)
    inv_freq = 100.0 ** (-torch.arange(0, 4, 2, dtype=torch.float64) / 4)
    y = apply_rotary(x, pos, inv_freq)
    torch.testing.assert_close(y[..., :4], apply_rotary(x[..., :4], pos, inv_freq))
    assert torch.equal(y[..., 4:], x[..., 4:])
    assert torch.equal(apply_rotary(x, pos, inv_freq[:0]), x)


def test_attention_without_positions_scores_keys_by_content_at_any_distance():
    """rope_fraction 0 (NoPE): the last query sees every key by content alone, so shuffling the
    positions before it changes nothing; with rotary positions it does."""
    torch.manual_seed(0)
    nope = Attention(tiny("A", rope_fraction=0.0)).double().eval()
    rotary = Attention(tiny("A")).double().eval()
    rotary.load_state_dict(nope.state_dict())
    x = torch.randn(1, 40, 32, dtype=torch.float64)
    shuffled = torch.cat([x[:, torch.randperm(39)], x[:, 39:]], 1)
    torch.testing.assert_close(nope(shuffled)[:, -1], nope(x)[:, -1])
    assert not torch.allclose(rotary(shuffled)[:, -1], rotary(x)[:, -1])


def test_attention_conv_streams_exactly_and_stays_inside_packed_sequences():
    torch.manual_seed(0)
    model = Backbone(tiny("HA", attention_conv=4, rope_fraction=0.5)).double().eval()
    with torch.no_grad():
        model.layers[1].mixer.conv_weight.normal_()  # not the identity it starts as
    ids = torch.randint(5, 9, (2, 30))
    out = model(ids)
    cache = model.new_cache(max_len=30)
    steps = torch.cat([model(ids[:, :12], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(12, 30)], 1)
    torch.testing.assert_close(steps, out)
    packed = model(ids.reshape(1, 60), seq_idx=torch.arange(2).repeat_interleave(30)[None])
    torch.testing.assert_close(packed.reshape(2, 30, -1), out)


def _attention_weights(layer: Attention, x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, L) causal attention probabilities of ``layer`` (no rotary) on inputs ``x``."""
    from genoseq.kernels import causal_conv1d

    qkv = causal_conv1d(layer.qkv(x), layer.conv_weight)
    B, L, _ = x.shape
    q_dims, kv_dims = layer.n_heads * layer.head_dim, layer.n_kv_heads * layer.head_dim
    q, k, _ = qkv.split([q_dims, kv_dims, kv_dims], dim=-1)
    q = q.view(B, L, layer.n_heads, -1).transpose(1, 2)
    k = k.view(B, L, layer.n_kv_heads, -1).transpose(1, 2).repeat_interleave(layer.n_heads // layer.n_kv_heads, dim=1)
    scores = (q @ k.transpose(-1, -2)) / layer.head_dim ** 0.5
    return scores.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)


@pytest.mark.parametrize("n_kv_heads", [None, 1])
def test_an_induction_initialised_layer_reads_what_followed_the_earlier_occurrence(n_kv_heads):
    """From the start, a query inside a copied segment attends to the position after its own
    k-mer's earlier occurrence (whose value is the base that comes next); default init does not."""
    torch.manual_seed(0)
    cfg = dict(d_model=64, n_heads=2, n_kv_heads=n_kv_heads, attention_conv=8, rope_fraction=0.0)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 9, (1, 300), generator=g)
    src, dst, s = 40, 200, 60
    ids[0, dst : dst + s] = ids[0, src : src + s]
    queries = torch.arange(dst + 10, dst + s - 1)  # inside the copy, past its first k-mer
    right = queries - (dst - src) + 1
    share = {}
    for init in ("induction", "default"):
        model = Backbone(tiny("A", attention_init=init, **cfg)).eval()
        with torch.no_grad():
            x = model.layers[0].norm(model.embedding(ids))
            p = _attention_weights(model.layers[0].mixer, x)
        share[init] = p[0][:, queries, right].mean().item()
    assert share["induction"] > 0.15, share  # uniform: 1 / 250
    assert share["default"] < 0.05, share
    layer = Backbone(tiny("A", attention_init="induction", **cfg)).layers[0].mixer
    q_rows, kv_rows = layer.n_heads * layer.head_dim, layer.n_kv_heads * layer.head_dim
    assert torch.equal(layer.qkv.weight[q_rows : q_rows + kv_rows], layer.qkv.weight[:kv_rows])
    assert torch.equal(layer.conv_weight[q_rows + kv_rows :, -1], torch.ones(kv_rows))  # values pass through


def test_attention_conv_hands_sdpa_heads_it_can_run_in_linear_memory(monkeypatch):
    """The conv's output is channels-first in memory; a head's dimensions must reach SDPA
    contiguous, or PyTorch falls back from flash attention to its math kernel, which forms the
    L x L matrix (23 GiB for one 32 kb window)."""
    import genoseq.models.attention as attention

    seen = []
    sdpa = attention.F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append([t.stride(-1) for t in (q, k, v)])
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    model = Backbone(tiny("A", attention_conv=4, rope_fraction=0.0)).eval()
    with torch.no_grad():
        model(torch.randint(5, 9, (2, 40)))
    assert seen == [[1, 1, 1]]


def test_long_context_options_are_checked():
    with pytest.raises(ValueError, match=r"global_attention_layers \[1\] are not attention layers.*\[0, 2\]"):
        tiny("AHA", attention_window=8, global_attention_layers=[1])
    with pytest.raises(ValueError, match="needs attention_window"):
        tiny("AHA", global_attention_layers=[0])
    with pytest.raises(ValueError, match=r"checkpointing names layers \[5\], but the model has layers 0..2"):
        tiny("HMA", checkpointing=[0, 5])
    with pytest.raises(ValueError, match="attention_window must be >= 1"):
        tiny("A", attention_window=0)
    with pytest.raises(ValueError, match="hyena_filter_reach"):
        tiny("H", hyena_filter_reach=0.1)
    with pytest.raises(ValueError, match=r"rope_fraction must be in \[0, 1\]"):
        tiny("A", rope_fraction=1.5)
    with pytest.raises(ValueError, match="attention_conv must be >= 0"):
        tiny("A", attention_conv=-1)
    with pytest.raises(ValueError, match=r"attention_init 'induction' needs attention_conv >= 2.*got 0"):
        tiny("A", attention_init="induction")
    with pytest.raises(ValueError, match="attention_init must be 'default' or 'induction'"):
        tiny("A", attention_init="copy")
    with pytest.raises(ValueError, match=r"head of at least attention_conv - 1 = 11 dimensions, got d_model 32 / n_heads 4"):
        tiny("A", attention_init="induction", attention_conv=12)
    with pytest.raises(ValueError, match="applies to hyena_filter_style 'genoseq'"):
        tiny("H", hyena_filter_style="hyenadna", hyena_filter_reach=3.0)
    assert ModelConfig.from_dict(tiny("HMA", checkpointing=[2, 0]).to_dict()).checkpointing == [0, 2]


@pytest.mark.parametrize("window,sink", [(9, 3), (9, 0), (40, 5), (5, 20)])
def test_blockwise_attention_with_sinks_equals_the_lambda_mask(window, sink):
    L = 70
    q, k, v = qkv(L, seed=2)
    pos = torch.arange(L)
    want = dense(q, k, v, visible(pos, pos, window, sink))
    torch.testing.assert_close(blockwise_attention(q, k, v, window=window, sink=sink, block=16), want)


def test_limit_attention_runs_a_model_as_if_its_attention_were_local():
    from genoseq.models.inference import limit_attention, token_log_probs
    from genoseq.models.lm import GenoSeqLM

    torch.manual_seed(0)
    full = GenoSeqLM(tiny("HA")).double().eval()
    torch.manual_seed(0)
    local = GenoSeqLM(tiny("HA", attention_window=16)).double().eval()
    ids = torch.randint(5, 9, (1, 80))
    with torch.no_grad():
        with limit_attention(full, 16):
            torch.testing.assert_close(full(ids), local(ids))
            assert full.backbone.layers[1].mixer.window == 16
        assert full.backbone.layers[1].mixer.window is None  # restored
        with limit_attention(full, 100):  # longer than the sequence: nothing changes
            torch.testing.assert_close(full(ids), full(ids))
        lp = token_log_probs(full, ids[0], chunk_size=80, context=0)
        with limit_attention(full, 16):
            assert not torch.allclose(token_log_probs(full, ids[0], chunk_size=80, context=0), lp)


def test_plant_copies_copies_a_segment_further_on_and_is_reproducible():
    from genoseq.models.lm import plant_copies

    ids = torch.randint(5, 9, (6, 4096))
    out = plant_copies({"input_ids": ids}, 1.0, torch.Generator().manual_seed(3))["input_ids"]
    again = plant_copies({"input_ids": ids}, 1.0, torch.Generator().manual_seed(3))["input_ids"]
    assert torch.equal(out, again) and not torch.equal(out, ids)
    for row in range(6):
        changed = torch.nonzero(out[row] != ids[row]).flatten()
        first, last = int(changed.min()), int(changed.max())
        # the overwritten stretch (64..1024 bases) repeats an earlier stretch of the same row exactly
        s = last - first + 1
        assert s <= 1024
        text = "".join(map(str, out[row].tolist()))
        assert text.find(text[first : last + 1]) < first
    assert torch.equal(plant_copies({"input_ids": ids}, 0.0, torch.Generator())["input_ids"], ids)
    packed = {"input_ids": ids, "seq_idx": torch.zeros_like(ids)}
    assert plant_copies(packed, 1.0, torch.Generator()) is packed
    with pytest.raises(ValueError, match="copy_augment"):
        from genoseq.models.config import TrainingConfig

        TrainingConfig(copy_augment=1.5)
