"""Language-model saturation mutagenesis and dependency maps on a real E. coli slice: the
prefix-sharing computation equals full forward passes over each mutant window, and bad input
is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genoseq.errors import InputError
from genoseq.models import GenoSeqLM, ModelConfig
from genoseq.models.inference import batched_log_probs
from genoseq.tasks.interpret.ism import dependency_map, language_model, saturation_mutagenesis

WINDOW = 120


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    lm = GenoSeqLM(ModelConfig(d_model=32, pattern="HMA", n_heads=2, headdim=16, d_state=16, chunk_size=32,
                               hyena_filter_len=256), window_length=WINDOW).eval()
    with torch.no_grad():  # larger weights than the init: LLRs far from 0, so the checks can fail
        for p in lm.parameters():
            p.mul_(3)
    return lm


@pytest.fixture(scope="module")
def sequence(ecoli_fasta):
    with open(ecoli_fasta) as handle:
        next(handle)
        seq = "".join(next(handle).strip() for _ in range(10))
    return seq[100:400]


def _full_window_llr(model, ids, i, col, start, end, radius):
    ref = torch.tensor(ids[start:end].astype(np.int64))[None]
    mut = ref.clone()
    mut[0, i - start] = 5 + col
    lp = batched_log_probs(model, torch.cat([ref, mut]))  # targets at window positions 1..
    w = i - start
    a, z = max(w, 1) - 1, min(end - start, w + radius + 1) - 1
    return float((lp[1, a:z] - lp[0, a:z]).double().sum())


def test_ism_equals_full_passes(model, sequence):
    radius, block, lo, hi = 20, 8, 40, 140
    res = saturation_mutagenesis(model, [sequence], regions=[(lo, hi)], radius=radius, block=block, device="cpu")[0]
    ids = model.tokenizer.encode(sequence)
    n = len(ids)
    assert res.llr.shape == (hi - lo, 4) and res.sequence == sequence[lo:hi]
    for i in (40, 47, 48, 100, 139):  # block edges, the middle, the region end
        b1 = min(lo + (i - lo) // block * block + block, hi)
        end = min(n, b1 + radius)
        start = max(0, end - WINDOW)
        for col in range(4):
            if 5 + col == ids[i]:
                assert res.llr_forward[i - lo, col] == 0
                continue
            expected = _full_window_llr(model, ids, i, col, start, end, radius)
            assert res.llr_forward[i - lo, col] == pytest.approx(expected, abs=1e-4)
    assert np.abs(res.llr_forward).mean() > 0.1
    # the reverse strand: the same mutant scored on the reverse complement, averaged
    rc = model.tokenizer.reverse_complement(ids)
    i = 100
    j = n - 1 - i
    for col in range(4):
        if 5 + col == ids[i]:
            continue
        rc_lo = n - hi
        b1 = min(rc_lo + (j - rc_lo) // block * block + block, n - lo)
        end = min(n, b1 + radius)
        start = max(0, end - WINDOW)
        expected = _full_window_llr(model, rc, j, 3 - col, start, end, radius)
        assert res.llr_reverse[i - lo, col] == pytest.approx(expected, abs=1e-4)
        assert res.llr[i - lo, col] == pytest.approx((expected + res.llr_forward[i - lo, col]) / 2, abs=1e-4)
    assert res.importance[i - lo] == pytest.approx(np.abs(res.llr[i - lo]).sum() / 3)


def test_ism_n_positions_and_batching(model, sequence):
    seq = sequence[:60] + "NN" + sequence[62:120]
    alone = saturation_mutagenesis(model, [seq], radius=16, block=4, device="cpu")[0]
    assert np.isnan(alone.llr[60:62]).all() and not np.isnan(alone.llr[:60]).any()
    # two sequences of one length share passes: same numbers as each alone
    both = saturation_mutagenesis(model, [seq, sequence[:120]], radius=16, block=4, device="cpu")
    np.testing.assert_allclose(both[0].llr, alone.llr, atol=1e-4)


def test_dependency_map(model, sequence):
    seq = sequence[:48]
    dep = dependency_map(model, seq, block=8, device="cpu").dep
    assert dep.shape == (48, 48) and np.all(np.diag(dep) == 0) and (dep >= 0).all()
    # dep[i, j] for j > i from the forward strand: recompute one entry from two full passes
    ids = torch.tensor(model.tokenizer.encode(seq).astype(np.int64))[None]
    i, j = 10, 30
    best = 0.0
    for col in range(4):
        if 5 + col == int(ids[0, i]):
            continue
        mut = ids.clone()
        mut[0, i] = 5 + col
        with torch.inference_mode():
            lp = torch.log_softmax(model(torch.cat([ids, mut]))[:, j - 1, 5:9].float(), -1)
        odds = lp - torch.log1p(-lp.exp())
        best = max(best, float((odds[1] - odds[0]).abs().max()))
    assert dep[i, j] == pytest.approx(best, rel=1e-3, abs=1e-4)
    assert dep[j, i] > 0  # the reverse strand fills j < i


def test_bad_input(model, sequence, tmp_path):
    with pytest.raises(InputError, match="longer than the limit"):
        saturation_mutagenesis(model, [sequence], max_length=100, device="cpu")
    with pytest.raises(InputError, match="only N") as err:
        saturation_mutagenesis(model, ["N" * 50], device="cpu")
    assert err.value.field == ("sequence",)
    with pytest.raises(InputError, match="one window"):
        dependency_map(model, sequence, device="cpu")
    with pytest.raises(InputError, match="radius"):
        saturation_mutagenesis(model, [sequence], radius=-1, device="cpu")
    (tmp_path / "config.json").write_text('{"model_type": "GenoSeqClassifier"}')
    with pytest.raises(InputError, match="not a language model") as err:
        language_model(tmp_path)
    assert err.value.field == ("model",)
