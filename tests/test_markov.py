import collections
import math

import numpy as np
import pyfaidx

from genoseq.markov import MarkovModel
from genoseq.tokenizer import Tokenizer

tok = Tokenizer()


def test_counts_match_naive_counting_on_lambda(lambda_fasta):
    seq = str(pyfaidx.Fasta(str(lambda_fasta))[0][:3000]).upper()
    model = MarkovModel(k=2, alpha=0.5).fit([tok.encode(seq)], both_strands=False)
    naive = collections.Counter(seq[i : i + 3] for i in range(len(seq) - 2))
    for kmer, count in naive.items():
        code = sum("ACGT".index(c) * 4 ** (2 - j) for j, c in enumerate(kmer))
        assert model.counts[code] == count
    # the probability of one transition, by hand
    ctx = "GCG"[:2]
    row = {b: naive.get(ctx + b, 0) + 0.5 for b in "ACGT"}
    lp = model.log2_probs(tok.encode("GCGA"))  # positions 2 and 3: GCG, CGA
    assert math.isclose(lp[0], math.log2(row["G"] / sum(row.values())))


def test_n_is_skipped():
    model = MarkovModel(k=1).fit([tok.encode("ACGTNACGT")], both_strands=False)
    assert model.counts.sum() == 6  # AC CG GT, AC CG GT; none across N
    assert model.log2_probs(tok.encode("ANC")).size == 0


def test_order6_beats_order0_on_held_out_ecoli(ecoli_fasta):
    ids = tok.encode(str(pyfaidx.Fasta(str(ecoli_fasta))[0][:600_000]))
    train, held_out = ids[:500_000], ids[500_000:]
    bpb0 = MarkovModel(k=0).fit([train]).bits_per_base([held_out])
    bpb6 = MarkovModel(k=6).fit([train]).bits_per_base([held_out])
    assert 1.98 < bpb0 < 2.01  # E. coli is close to 50% GC, about 2 bits per base
    assert bpb6 < bpb0 - 0.02
    assert np.isfinite(bpb6)


def test_llr_is_the_two_strand_mean_of_the_log_likelihood_change(lambda_fasta):
    seq = str(pyfaidx.Fasta(str(lambda_fasta))[0][:3000]).upper()
    model = MarkovModel(k=3).fit([tok.encode(seq)])
    ref = tok.encode(seq[1000:1021])
    alt = ref.copy()
    alt[10] = tok.encode("A" if seq[1010] != "A" else "C")[0]
    by_hand = []
    for r, a in ((ref, alt), (tok.reverse_complement(ref), tok.reverse_complement(alt))):
        by_hand.append(sum(math.log(2) * (x - y) for x, y in zip(model.log2_probs(a), model.log2_probs(r))))
    assert all(math.isclose(x, y, rel_tol=1e-12) for x, y in zip(model.strand_llrs(ref, alt), by_hand))
    assert math.isclose(model.llr(ref, alt), (by_hand[0] + by_hand[1]) / 2, rel_tol=1e-12)
    assert model.llr(ref, ref) == 0.0
