"""The single-nucleotide tokenizer on real genomes and on the edge cases of its contract."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from genoseq import InputError, Tokenizer
from genoseq.fasta import iter_fasta
from genoseq.tokenizer import BOS, EOS, N, PAD


@pytest.fixture(scope="module")
def ecoli_sequence(ecoli_fasta) -> str:
    (record,) = list(iter_fasta(ecoli_fasta))
    return record.sequence


def test_whole_ecoli_genome_round_trips_in_under_a_second(ecoli_sequence):
    tok = Tokenizer()
    started = time.perf_counter()
    ids = tok.encode(ecoli_sequence)
    text = tok.decode(ids)
    elapsed = time.perf_counter() - started
    assert len(ids) == 4_639_675 == len(ecoli_sequence)
    assert ids.dtype == np.uint8
    assert text == ecoli_sequence.upper()
    assert elapsed < 1.0, f"round trip took {elapsed:.2f} s"
    # a real genome: all four bases present at plausible frequencies
    counts = np.bincount(ids, minlength=10)[5:9] / len(ids)
    assert np.all((counts > 0.2) & (counts < 0.3))


def test_reverse_complement_twice_is_identity(ecoli_sequence):
    tok = Tokenizer()
    ids = tok.encode(ecoli_sequence[:100_000])
    rc = tok.reverse_complement(ids)
    assert not np.array_equal(rc, ids)
    assert np.array_equal(tok.reverse_complement(rc), ids)
    batch = torch.from_numpy(np.stack([ids[:500], ids[500:1000]]).astype(np.int64))
    assert torch.equal(tok.reverse_complement(tok.reverse_complement(batch)), batch)


def test_reverse_complement_of_known_sequence_numpy_and_torch():
    tok = Tokenizer()
    ids = tok.encode("AACGTNc")
    assert tok.decode(tok.reverse_complement(ids)) == "GNACGTT"
    as_torch = tok.reverse_complement(torch.from_numpy(ids.astype(np.int64)))
    assert tok.decode(as_torch) == "GNACGTT"
    assert as_torch.dtype == torch.int64


def test_iupac_codes_and_lower_case_map_to_n_and_bases():
    tok = Tokenizer()
    ids = tok.encode("RYSWKMBDHVNrysw")
    assert ids.tolist() == [N] * 15
    assert tok.decode(tok.encode("acgtn")) == "ACGTN"


@pytest.mark.parametrize("seq, position, char", [("ACGTXACGT", 5, "X"), ("ACG-T", 4, "-"), ("ACGTé", 5, "é")])
def test_bad_characters_raise_with_their_position(seq, position, char):
    with pytest.raises(InputError) as err:
        Tokenizer().encode(seq, name="chr1", path="genome.fa", offset=100)
    assert err.value.position == 100 + position
    assert err.value.record == "chr1"
    assert "genome.fa" in str(err.value) and repr(char) in str(err.value)


def test_unknown_characters_become_unk_on_request():
    assert Tokenizer().encode("AXG", on_invalid="unk").tolist() == [5, 4, 7]


def test_encode_batch_pads_right_and_left_with_mask():
    tok = Tokenizer()
    right = tok.encode_batch(["ACGT", "AC"])
    assert right["input_ids"].tolist() == [[5, 6, 7, 8], [5, 6, PAD, PAD]]
    assert right["attention_mask"].tolist() == [[True] * 4, [True, True, False, False]]
    assert right["input_ids"].dtype == torch.int64 and right["attention_mask"].dtype == torch.bool
    left = tok.encode_batch(["ACGT", "AC"], side="left", return_tensors="np")
    assert left["input_ids"].tolist() == [[5, 6, 7, 8], [PAD, PAD, 5, 6]]
    assert left["attention_mask"].tolist() == [[True] * 4, [False, False, True, True]]


def test_encode_batch_max_length_padding_truncation_and_specials():
    tok = Tokenizer()
    fixed = tok.encode_batch(["ACG", "A"], padding="max_length", max_length=6, add_bos=True, add_eos=True)
    assert fixed["input_ids"].tolist() == [[BOS, 5, 6, 7, EOS, PAD], [BOS, 5, EOS, PAD, PAD, PAD]]
    assert fixed["attention_mask"].sum(1).tolist() == [5, 3]
    with pytest.raises(InputError):
        tok.encode_batch(["ACGTACGT"], padding="max_length", max_length=4)
    kept_start = tok.encode_batch(["ACGTT"], padding="max_length", max_length=3, truncation=True)
    kept_end = tok.encode_batch(["ACGTT"], padding="max_length", max_length=3, truncation=True, side="left")
    assert tok.decode(kept_start["input_ids"][0]) == "ACG"
    assert tok.decode(kept_end["input_ids"][0]) == "GTT"


def test_save_and_load_json_keeps_condition_tokens(tmp_path):
    tok = Tokenizer(["human", "mouse"])
    assert tok.condition_id("mouse") == 11 and tok.vocab_size == 12
    path = tok.save(tmp_path)
    assert path.name == "tokenizer.json"
    loaded = Tokenizer.load(tmp_path)
    assert loaded == tok and loaded.tokens[-1] == "[COND:mouse]"
    assert Tokenizer.load(path).vocab_size == 12
    with pytest.raises(ValueError):
        Tokenizer.from_dict({"type": "something else"})
