"""Recall of a copied segment, bits/base by context and the genome's own repeats, on real DNA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genoseq
from genoseq.errors import InputError
from genoseq.genome import MemoryGenome, open_genome
from genoseq.models import GenoSeqLM, ModelConfig
from genoseq.tasks.long_range import Repeat, context_curve, copy_recall, find_repeats, genome_repeats, repeat_recall
from genoseq.tokenizer import A, N


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


def planted(lam) -> np.ndarray:
    """20 kb of lambda with 700 bases from 2,000 written again at 12,000 (3 substitutions), 300
    from 5,000 again at 5,600 (too close), and 40 bases of one dinucleotide at 16,000 and 18,000."""
    ids = lam.fetch(next(iter(lam.contigs)), 0, 20000).copy()
    ids[12000:12700] = ids[2000:2700]
    for i in (12100, 12350, 12600):
        ids[i] = A + (ids[i] - A + 1) % 4
    ids[5600:5900] = ids[5000:5300]
    ids[16000:16040] = ids[18000:18040] = np.tile([A, A + 3], 20)
    return ids


def test_find_repeats_finds_a_planted_copy_through_substitutions(lam):
    ids = planted(lam)
    assert find_repeats(ids, contig="x", min_length=200, min_distance=1000) == [Repeat("x", 2000, 12000, 700, 697 / 700)]
    # closer copies, when asked for; a repeat never overlaps its own earlier copy
    near = [r for r in find_repeats(ids, min_length=200, min_distance=100) if r.later < 12000]
    # (the two bases before each copy happen to be equal too)
    assert [(r.distance, r.later, r.later + r.length) for r in near] == [(600, 5598, 5900)]
    assert find_repeats(ids, min_length=200, min_distance=1000, max_distance=5000) == []
    assert find_repeats(ids, min_length=800, min_distance=1000) == []
    ids[12300] = N  # a lone N is bridged like a substitution
    assert [(r.length, r.identity) for r in find_repeats(ids, min_length=200, min_distance=1000)] == [(700, 696 / 700)]
    ids[12300:12400] = N  # a run of them seeds nothing: the copy is cut in two
    pieces = find_repeats(ids, min_length=100, min_distance=1000)
    assert sorted((r.first, r.later, r.length) for r in pieces) == [(2000, 12000, 300), (2400, 12400, 300)]


def test_the_repeats_of_a_real_genome_are_long_and_nearly_identical(ecoli_fasta):
    # 350 kb of E. coli K-12 holding its rrnC, rrnA, rrnB and rrnE operons
    ecoli = open_genome(ecoli_fasta)
    name = next(iter(ecoli.contigs))
    ids = ecoli.fetch(name, 3_900_000, 4_250_000)
    repeats = find_repeats(ids, contig=name, min_length=500)
    assert repeats and repeats[0].length > 1500
    for r in repeats:
        assert r.identity > 0.95 and 2048 <= r.distance <= 131072
        assert (ids[r.first : r.first + r.length] == ids[r.later : r.later + r.length]).mean() == r.identity


def test_repeat_recall_shows_what_a_model_reaches(lam):
    genome = MemoryGenome({"x": "".join("ACGTN"[i - A] for i in planted(lam))})
    [rep] = genome_repeats(genome, min_length=200, min_distance=1000)
    copier = CopyingModel(ModelConfig(d_model=8, pattern="M", headdim=8, d_state=8))
    seen = []
    [far] = repeat_recall(copier, genome, [rep], chunk_size=16384, context=0, on_progress=seen.append)
    assert seen == [12700 - 1000]
    assert far.first_bits_per_base == pytest.approx(4.0, abs=1e-4)
    assert 3.85 < far.background_bits_per_base < 3.95  # 4 bits but where the close copy at 5,600 is predicted
    # the copy is predicted but for its first 12 bases and each substitution (29 bits for the
    # confident wrong guess, then 12 uniform bases): about 0.4 bits/base
    assert 0.3 < far.later_bits_per_base < 0.5
    [near] = repeat_recall(copier, genome, [rep], chunk_size=2048, context=512)  # windows that never reach back
    assert near.later_bits_per_base == pytest.approx(4.0, abs=1e-4)
