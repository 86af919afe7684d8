"""Recall of a copied segment and bits/base by context, on the bundled lambda genome."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genoseq
from genoseq.errors import InputError
from genoseq.genome import MemoryGenome, open_genome
from genoseq.models import GenoSeqLM, ModelConfig
from genoseq.tasks.long_range import context_curve, copy_recall


class CopyingModel(GenoSeqLM):
    """A model that knows nothing but copying: at each position it looks for the longest earlier
    match of the last 12 bases and predicts the base that followed it (uniform otherwise)."""

    def forward(self, input_ids, seq_idx=None, cache=None):
        ids = input_ids[0].tolist()
        logits = torch.zeros(1, len(ids), self.config.vocab_size, dtype=torch.float64)
        seen: dict[tuple, int] = {}
        for t in range(len(ids)):
            key = tuple(ids[max(0, t - 11) : t + 1])
            if len(key) == 12 and key in seen:
                logits[0, t, ids[seen[key] + 1]] = 20.0
            if t >= 11 and t + 1 < len(ids):
                seen[key] = t
        return logits


@pytest.fixture(scope="module")
def lam():
    return open_genome(genoseq.default_genome())


def test_a_copying_model_recalls_and_a_blind_one_does_not(lam):
    torch.manual_seed(0)
    copier = CopyingModel(ModelConfig(d_model=8, pattern="M", headdim=8, d_state=8))
    points = copy_recall(copier, lam, [64, 2000], segment=200, prefix=100, trials=2)
    assert [p.distance for p in points] == [64, 2000]
    for p in points:
        # uniform over the 16 ids (4 bits) until 12 bases of the copy have been seen: 11 of 200
        assert p.first_bits_per_base == pytest.approx(4.0) and p.copy_bits_per_base == pytest.approx(4.0 * 11 / 200, abs=0.03)
    blind = GenoSeqLM(ModelConfig(d_model=16, pattern="M", headdim=8, d_state=8)).eval()
    for p in copy_recall(blind, lam, [64], segment=100, prefix=50, trials=2):
        assert abs(p.copy_bits_per_base - p.first_bits_per_base) < 0.1


def test_context_curve_scores_the_same_targets(lam):
    model = GenoSeqLM(ModelConfig(d_model=16, pattern="HA", n_heads=2, hyena_filter_dim=8)).eval()
    seen = []
    points = context_curve(model, lam, [256, 16, 64], target=50, windows=3, on_progress=seen.append)
    assert [p.context for p in points] == [16, 64, 256] and all(p.windows == 3 for p in points)
    assert seen == [66, 114, 306] * 3
    assert all(np.isfinite(p.bits_per_base) for p in points)


def test_too_long_for_the_genome_is_an_input_error():
    genome = MemoryGenome({"short": "ACGT" * 100})
    model = GenoSeqLM(ModelConfig(d_model=16, pattern="M", headdim=8, d_state=8))
    with pytest.raises(InputError, match="no contig holds 1500 bases"):
        copy_recall(model, genome, [1000], segment=300, prefix=200)
