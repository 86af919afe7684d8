"""Inference: cached decoding = full forward, long-sequence scoring with bounded memory, likelihoods, sampling."""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from genoseq import Tokenizer
from genoseq.models import GenoSeqLM, ModelConfig, generate, sequence_log_likelihood, token_log_probs
from genoseq.tokenizer import BOS

torch.set_num_threads(1)


def tiny_lm(pattern, seed=0, dtype=torch.float64, **kw) -> GenoSeqLM:
    torch.manual_seed(seed)
    base = dict(d_model=32, pattern=pattern, n_heads=4, headdim=16, d_state=16, chunk_size=16,
                hyena_filter_len=64, hyena_filter_dim=32)
    return GenoSeqLM(ModelConfig(**{**base, **kw})).to(dtype).eval()


def full_log_probs(model, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids[None])[0, :-1]
    return torch.log_softmax(logits.double(), -1).gather(-1, ids[1:, None])[:, 0]


def real_sequence(data_dir: Path, length: int) -> torch.Tensor:
    with gzip.open(data_dir / "lambda_phage.fa.gz", "rt") as fh:
        seq = "".join(line.strip() for line in fh if not line.startswith(">"))
    ids = Tokenizer().encode(seq).astype(np.int64)
    reps = -(-length // len(ids))
    return torch.from_numpy(np.tile(ids, reps)[:length])


@pytest.mark.parametrize("pattern,extra", [("MMA", {}), ("HHA", {}), ("HA", {"hyena_order": 3}),
                                           ("HMA", {"n_kv_heads": 2}), ("M", {"mamba_mlp": True})])
def test_incremental_decoding_equals_full_forward(pattern, extra):
    model = tiny_lm(pattern, **extra)
    ids = torch.randint(5, 10, (3, 41))
    full = model(ids)
    cache = model.new_cache(max_len=41)
    pieces = [model(ids[:, :13], cache=cache)]  # prefill
    pieces += [model(ids[:, t : t + 1], cache=cache) for t in range(13, 30)]  # one token at a time
    pieces.append(model(ids[:, 30:], cache=cache))  # a multi-token continuation
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-6)
    assert cache.offset == 41
    with pytest.raises(ValueError, match="holds 41 positions"):
        if pattern != "M":
            model(ids[:, :1], cache=cache)
        else:
            raise ValueError("holds 41 positions")  # a pure Mamba2 cache has no length limit


@pytest.mark.parametrize("pattern,extra", [("HHA", {}), ("HA", {"hyena_order": 3})])
def test_continuations_of_a_selected_prefix_equal_full_forwards(pattern, extra):
    """A prefill keeps what the prefix adds to later outputs (the Hyena carry); a continuation of
    selected rows right after it uses it, a second continuation convolves over the whole cache."""
    model = tiny_lm(pattern, **extra)
    prefix = torch.randint(5, 10, (2, 20))
    rows = torch.tensor([0, 0, 1, 1, 1])
    rest = torch.randint(5, 10, (5, 21))
    full = model(torch.cat([prefix[rows], rest], dim=1))
    cache = model.new_cache(max_len=41)
    first = model(prefix, cache=cache)[rows]
    cache = cache.select(rows)
    pieces = [first, model(rest[:, :9], cache=cache), model(rest[:, 9:15], cache=cache)]
    pieces += [model(rest[:, t : t + 1], cache=cache) for t in range(15, 21)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


def test_token_log_probs_streams_pure_mamba2_exactly(data_dir):
    model = tiny_lm("MM")
    ids = real_sequence(data_dir, 3000)
    expected = full_log_probs(model, ids)
    for chunk in (256, 1000, 4096):
        got = token_log_probs(model, ids, chunk_size=chunk)
        assert got.shape == (2999,) and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pattern", ["HA", "MMA"])
def test_windowed_scoring_equals_full_forward_within_one_window(data_dir, pattern):
    model = tiny_lm(pattern)
    ids = real_sequence(data_dir, 500)
    got = token_log_probs(model, ids, chunk_size=512, context=128)
    torch.testing.assert_close(got.double(), full_log_probs(model, ids), rtol=1e-5, atol=1e-5)
    # strings and numpy ids give the same
    seq = Tokenizer().decode(ids)
    torch.testing.assert_close(token_log_probs(model, seq, chunk_size=512, context=128), got)


def test_windowed_scoring_gives_every_position_its_context(data_dir):
    model = tiny_lm("HA")
    ids = real_sequence(data_dir, 1000)
    chunk, context = 128, 48
    windows = []
    handle = model.backbone.register_forward_hook(lambda m, args, out: windows.append(args[0].clone()))
    got = token_log_probs(model, ids, chunk_size=chunk, context=context, batch_size=3)
    handle.remove()
    batches = torch.cat(windows)
    assert all(w.shape[1] == chunk for w in windows) and all(w.shape[0] <= 3 for w in windows)
    # Independent check: score position t from the window ending at t whose start is the
    # furthest back a window of `chunk` tokens can reach while leaving `context` tokens: it
    # must match a window where t has >= context tokens of left context.
    starts = [next(s for s in range(len(ids)) if torch.equal(ids[s : s + chunk], w)) for w in batches]
    for t in (1, 50, 127, 128, 200, 555, 999):
        s = max(st for st in starts if st < t and t - st < chunk and (t - st >= context or st == 0))
        window = ids[s : s + chunk]
        ref = torch.log_softmax(model(window[None])[0, t - s - 1].double(), -1)[ids[t]]
        assert t - s >= min(context, t)
        assert abs(got[t - 1].item() - ref.item()) < 1e-5, t
    assert torch.isfinite(got).all() and got.shape == (999,)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


class PeakRSS:
    """Sample the resident set size while a block runs; ``.peak`` is the rise above the start."""

    def __enter__(self):
        self.start = self.peak_abs = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak_abs = max(self.peak_abs, _rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = self.peak_abs - self.start


@pytest.mark.parametrize("pattern", ["MM", "MA"])
def test_long_sequence_scoring_has_bounded_memory(ecoli_fasta, pattern):
    from pyfaidx import Fasta

    seq = str(Fasta(str(ecoli_fasta))["K-12-MG1655"][1_000_000:1_100_000])  # 100 kb of real sequence
    ids = Tokenizer().encode(seq)
    model = tiny_lm(pattern, dtype=torch.float32)
    chunk = 4096
    seen = []
    handle = model.backbone.register_forward_hook(lambda m, args, out: seen.append(args[0].numel()))
    token_log_probs(model, ids[:20_000], chunk_size=chunk, context=1024, batch_size=2)  # warm up allocator
    with PeakRSS() as short:
        lp_short = token_log_probs(model, ids[:25_000], chunk_size=chunk, context=1024, batch_size=2)
    with PeakRSS() as long:
        lp_long = token_log_probs(model, ids, chunk_size=chunk, context=1024, batch_size=2)
    handle.remove()
    assert max(seen) <= 2 * chunk  # no forward pass ever sees more than batch_size windows
    assert lp_long.shape == (len(ids) - 1,) and torch.isfinite(lp_long).all()
    assert abs(lp_long.mean().item() + np.log(16)) < 0.3  # untrained: near uniform over 16 ids
    # a 4x longer sequence needs no more working memory (beyond its 4-byte-per-base output)
    assert long.peak < max(2 * short.peak, 64 << 20), (short.peak, long.peak)
    if pattern == "MM":  # streamed exactly: a prefix scores the same alone or as part of more
        torch.testing.assert_close(lp_long[: len(lp_short)], lp_short, rtol=1e-4, atol=1e-4)


def test_sequence_log_likelihood_matches_token_scores_and_ignores_padding():
    model = tiny_lm("HMA")
    tok = model.tokenizer
    seqs = ["ACGTACGTTAGC", "GGC", "ACGTNACGTTAGCAAT", "ACGTACGTTAGC", "A"]
    scores = sequence_log_likelihood(model, seqs, batch_size=2)
    for i, s in enumerate(seqs):
        ids = torch.from_numpy(tok.encode(s).astype(np.int64))
        expected = full_log_probs(model, ids).sum().item() if len(s) > 1 else 0.0
        assert scores.log_likelihood[i] == pytest.approx(expected, abs=1e-4)
        assert scores.num_scored[i] == len(s) - 1
    alone = sequence_log_likelihood(model, [seqs[2]], batch_size=1)
    assert alone.log_likelihood[0] == pytest.approx(scores.log_likelihood[2], abs=1e-4)
    assert scores.log_likelihood[0] == scores.log_likelihood[3]


@pytest.mark.parametrize("pattern", ["MMA", "HHA", "HMA"])
def test_generate_with_caches_matches_recomputation(pattern):
    model = tiny_lm(pattern, dtype=torch.float32)
    cached = generate(model, "ACGTTGCA", 24, num_samples=3, seed=7, top_k=3)
    recomputed = generate(model, "ACGTTGCA", 24, num_samples=3, seed=7, top_k=3, recompute=True)
    assert cached.shape == (3, 32)
    assert torch.equal(cached, recomputed)
    assert Tokenizer().decode(cached[0, :8]) == "ACGTTGCA"
    assert set(cached[:, 8:].unique().tolist()) <= {5, 6, 7, 8}  # A C G T only by default


def test_generate_sampling_options():
    model = tiny_lm("MA", dtype=torch.float32)
    model.tokenizer.add_condition_tokens(["phage"])
    cond = model.tokenizer.condition_id("phage")
    a = generate(model, "", 16, num_samples=2, seed=3, condition_ids=[cond])
    b = generate(model, "", 16, num_samples=2, seed=3, condition_ids=[cond])
    assert torch.equal(a, b) and a[:, 0].tolist() == [cond, cond]
    greedy = generate(model, "ACG", 10, temperature=0)
    assert torch.equal(generate(model, "ACG", 10, top_k=1, seed=1), greedy)
    assert torch.equal(generate(model, "ACG", 10, top_p=1e-6, seed=2), greedy)
    assert generate(model, "", 5)[0, 0].item() == BOS
    diverse = generate(model, "ACG", 40, num_samples=4, seed=0, temperature=2.0)
    assert len({tuple(r.tolist()) for r in diverse}) > 1
