"""genoseq.design: constraints, masking, k-mer spectra and distance metrics on hand-made sequences."""

import math

import numpy as np
import pytest

from genoseq.design import (
    ConstraintMasker,
    DesignConstraints,
    find_motifs,
    gc_content,
    js_divergence,
    kmer_divergences,
    kmer_names,
    kmer_spectrum,
    max_homopolymer,
    mean_pairwise_distance,
    nearest_distances,
    novelty,
    reverse_complement,
    to_base_indices,
)
from genoseq.errors import InputError


def test_composition_by_hand():
    assert gc_content("GGCCAATT") == 0.5
    assert gc_content("ggcn") == 1.0  # N is not counted
    assert gc_content("ATAT") == 0.0
    assert max_homopolymer("ACGTTTTAC") == 4
    assert max_homopolymer("A") == 1
    assert max_homopolymer("acgTTtt") == 4
    assert reverse_complement("AACGTN") == "NACGTT"


def test_motifs_on_both_strands():
    # GGATCC is palindromic: one hit; GATTC's reverse complement GAATC is found on "-".
    seq = "TTGGATCCAAGAATCTT"
    assert find_motifs(seq, ["GGATCC"]) == [("GGATCC", 2, "+")]
    assert find_motifs(seq, ["GATTC"]) == [("GATTC", 10, "-")]
    assert find_motifs("AAAA", ["AA"]) == [("AA", 0, "+"), ("AA", 1, "+"), ("AA", 2, "+")]  # overlapping; TT absent
    rules = DesignConstraints(forbidden=("gattc",))
    assert rules.forbidden == ("GATTC",)
    assert rules.violations(seq) == ["motif"]


def test_constraint_violations_and_bad_values():
    rules = DesignConstraints(gc_min=0.4, gc_max=0.6, forbidden=("GAATTC",), max_homopolymer=3)
    assert rules.violations("ACGTACGTAC") == []  # GC 0.5, longest run 1
    assert rules.violations("AAAATTTT") == ["gc_low", "homopolymer"]
    assert rules.violations("GGGGCCGC") == ["gc_high", "homopolymer"]
    assert rules.violations("CCGAATTCGG") == ["motif"]  # GC 0.6 is inside the range
    assert not DesignConstraints().active and rules.active
    for bad in ({"gc_min": 0.7, "gc_max": 0.3}, {"gc_max": 1.5}, {"forbidden": ("GANTC",)}, {"max_homopolymer": 0}):
        with pytest.raises(InputError):
            DesignConstraints(**bad)


def test_masker_bans_exactly_the_breaking_bases():
    masker = ConstraintMasker(DesignConstraints(forbidden=("GAATTC", "ACG"), max_homopolymer=2))
    history = np.stack([to_base_indices(s) for s in ("TTGAATT", "CCCGTAA", "GGTTCAC", "NNAGAAN")])
    allowed = masker.allowed(history)
    # row 0: GAATT+C completes GAATTC; TT+T would be a run of 3
    assert allowed[0].tolist() == [True, False, True, False]
    # row 1: AA+A would be a run of 3; nothing else
    assert allowed[1].tolist() == [False, True, True, True]
    # row 2: AC+G would complete ACG
    assert allowed[2].tolist() == [True, True, False, True]
    # row 3: ends in N: no run, no motif
    assert allowed[3].tolist() == [True, True, True, True]
    # reverse strand: CGT is ACG's reverse complement, so after "...CG" T is banned
    assert masker.allowed(to_base_indices("TTCG")[None]).tolist() == [[True, True, True, False]]


def test_masker_never_bans_everything():
    # after "A": A extends a run beyond 1, and AC, AG, AT are all forbidden
    masker = ConstraintMasker(DesignConstraints(forbidden=("AC", "AG", "AT"), max_homopolymer=1))
    assert masker.allowed(to_base_indices("GA")[None]).tolist() == [[True] * 4]


def test_kmer_spectrum_by_hand():
    spectrum = kmer_spectrum(["ACGT", "AANA"], 2)  # AC CG GT + AA (NA, AN skipped)
    names = kmer_names(2)
    expected = {"AC": 0.25, "CG": 0.25, "GT": 0.25, "AA": 0.25}
    assert spectrum.sum() == pytest.approx(1.0)
    assert {names[i]: spectrum[i] for i in np.flatnonzero(spectrum)} == expected
    assert kmer_names(1) == ["A", "C", "G", "T"]
    assert kmer_spectrum(["AC"], 3).sum() == 0


def test_js_divergence_by_hand():
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint: 1 bit
    assert js_divergence([2, 2], [5, 5]) == pytest.approx(0.0)
    # p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4)
    kl_p = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_q = 1.0 * math.log2(1 / 0.75)
    assert js_divergence([1, 1], [1, 0]) == pytest.approx((kl_p + kl_q) / 2)
    # designs of all-A vs a reference of all-C share no 3-mer
    assert kmer_divergences(["AAAAA"], ["CCCCC"], ks=(3, 4)) == {"k3": pytest.approx(1.0), "k4": pytest.approx(1.0)}


def test_edit_distances_by_hand():
    designs = ["ACGTACGT", "ACGAACGT", "TTTT"]
    reference = ["ACGTACGT", "TTTTA", "GGGG"]
    dist, index = nearest_distances(designs, reference, block=2)  # blocks of two designs
    assert dist.tolist() == [0, 1, 1]
    assert index.tolist() == [0, 0, 1]
    assert novelty(dist) == pytest.approx(2 / 3)
    assert novelty(dist, copy_distance=1) == 0.0
    # pairs: 1 substitution; ACGTACGT -> TTTT keeps two Ts (4 deletions + 2 substitutions);
    # ACGAACGT -> TTTT keeps one T (4 deletions + 3 substitutions)
    assert mean_pairwise_distance(designs) == pytest.approx((1 + 6 + 7) / 3)
    assert math.isnan(mean_pairwise_distance(["ACGT"]))
