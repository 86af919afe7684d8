"""Embeddings of real E. coli regions: pooling, layers, echo, strand averaging, HDF5 output."""

from __future__ import annotations

import gzip

import h5py
import numpy as np
import pytest
import torch

from genoseq.cli import main
from genoseq.models.embedding import ENDS_WIDTH, Embedder, echo_batch, pooled_dim, pooled_embeddings
from genoseq.tokenizer import Tokenizer

TOK = Tokenizer()


@pytest.fixture(scope="module")
def model(tiny_lm):
    return tiny_lm().eval()


@pytest.fixture(scope="module")
def regions(data_dir, tmp_path_factory):
    """40 labelled 200 bp E. coli regions (a few cut shorter, so batches need padding) as a TSV."""
    with gzip.open(data_dir / "ecoli_regions.tsv.gz", "rt") as handle:
        lines = handle.read().splitlines()[:41]
    rows = [line.split("\t") for line in lines[1:]]
    for i in range(0, len(rows), 3):
        rows[i][0] = rows[i][0][: 120 + i]
    path = tmp_path_factory.mktemp("embed") / "regions.tsv"
    path.write_text("sequence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in rows))
    return path, [s for s, _ in rows], [label for _, label in rows]


def rc(seq: str) -> str:
    return TOK.decode(TOK.reverse_complement(TOK.encode(seq)))


def test_shapes_and_batching_do_not_change_results(model, regions):
    _, seqs, _ = regions
    batched = Embedder(model, batch_size=16, device="cpu").embed(seqs)
    single = Embedder(model, batch_size=1, device="cpu").embed(seqs[:6])
    assert batched.shape == (len(seqs), 32) and batched.dtype == np.float32
    np.testing.assert_allclose(batched[:6], single, atol=1e-5)  # right padding is invisible


def test_mean_pooling_is_the_mean_of_hidden_states(model, regions):
    _, seqs, _ = regions
    ids = torch.from_numpy(TOK.encode(seqs[1]).astype(np.int64))[None]
    with torch.no_grad():
        hidden = model.hidden_states(ids, layer=-1)[0]
    vec = Embedder(model, device="cpu").embed([seqs[1]])[0]
    np.testing.assert_allclose(vec, hidden.mean(0).numpy(), atol=1e-5)
    last = Embedder(model, pooling="last", device="cpu").embed([seqs[1]])[0]
    np.testing.assert_allclose(last, hidden[-1].numpy(), atol=1e-5)


def test_poolings_and_layers_differ(model, regions):
    _, seqs, _ = regions
    out = {p: Embedder(model, pooling=p, device="cpu").embed(seqs[:8]) for p in ("mean", "last", "echo")}
    for a, b in (("mean", "last"), ("mean", "echo"), ("last", "echo")):
        assert not np.allclose(out[a], out[b], atol=1e-3), (a, b)
    first = Embedder(model, layer=1, device="cpu").embed(seqs[:8])
    final = Embedder(model, layer=None, device="cpu").embed(seqs[:8])
    assert not np.allclose(first, out["mean"], atol=1e-3) and not np.allclose(final, out["mean"], atol=1e-3)
    with pytest.raises(ValueError, match="out of range"):
        Embedder(model, layer=5, device="cpu")


def test_echo_pools_the_second_copy(model, regions):
    _, seqs, _ = regions
    ids = torch.from_numpy(TOK.encode(seqs[2]).astype(np.int64))
    with torch.no_grad():
        hidden = model.hidden_states(torch.cat([ids, ids])[None], layer=-1)[0]
    vec = Embedder(model, pooling="echo", device="cpu").embed([seqs[2]])[0]
    np.testing.assert_allclose(vec, hidden[len(ids):].mean(0).numpy(), atol=1e-5)
    echoed, second = echo_batch(torch.tensor([[5, 6, 7, 0], [8, 8, 8, 8]]), torch.tensor([3, 4]))
    assert echoed.tolist() == [[5, 6, 7, 5, 6, 7, 0, 0], [8] * 8]
    assert second.tolist() == [[False] * 3 + [True] * 3 + [False] * 2, [False] * 4 + [True] * 4]


def test_rc_averaging_makes_strands_agree(model, regions):
    _, seqs, _ = regions
    rcs = [rc(s) for s in seqs[:10]]
    plain = Embedder(model, pooling="echo", device="cpu")
    assert not np.allclose(plain.embed(seqs[:10]), plain.embed(rcs), atol=1e-3)
    averaged = Embedder(model, pooling="echo", rc_average=True, device="cpu")
    np.testing.assert_allclose(averaged.embed(seqs[:10]), averaged.embed(rcs), atol=1e-5)


def test_phase_and_ends_pool_their_positions(model, regions):
    """phase: a mean per codon phase; ends: the first and last 16 tokens; '+' concatenates."""
    _, seqs, _ = regions
    padded_batch = [seqs[0], seqs[1]]  # seqs[0] is cut to 120 bases: the batch is padded
    vec = Embedder(model, pooling="phase+ends+last", device="cpu").embed(padded_batch)
    assert vec.shape == (2, pooled_dim(32, "phase+ends+last")) == (2, 32 * 6)
    for row, seq in enumerate(padded_batch):
        ids = torch.from_numpy(TOK.encode(seq).astype(np.int64))[None]
        with torch.no_grad():
            hidden = model.hidden_states(ids, layer=-1)[0].numpy()
        expected = [hidden[p::3].mean(0) for p in range(3)]
        expected += [hidden[:ENDS_WIDTH].mean(0), hidden[-ENDS_WIDTH:].mean(0), hidden[-1]]
        np.testing.assert_allclose(vec[row], np.concatenate(expected), atol=1e-5)
    short = Embedder(model, pooling="ends", device="cpu").embed(["ACGTACG"])[0]  # shorter than ENDS_WIDTH
    np.testing.assert_allclose(short[:32], short[32:], atol=1e-6)
    for bad in ("max", "echo+mean", "mean+mean", ""):
        with pytest.raises(ValueError, match="pooling must be"):
            Embedder(model, pooling=bad, device="cpu")


def test_rc_concat_puts_both_strands_side_by_side(model, regions):
    _, seqs, _ = regions
    both = Embedder(model, pooling="phase+ends", rc_concat=True, device="cpu").embed(seqs[:6])
    fwd = Embedder(model, pooling="phase+ends", device="cpu")
    assert both.shape == (6, 2 * 5 * 32)
    np.testing.assert_allclose(both[:, :160], fwd.embed(seqs[:6]), atol=1e-5)
    np.testing.assert_allclose(both[:, 160:], fwd.embed([rc(s) for s in seqs[:6]]), atol=1e-5)
    with pytest.raises(ValueError, match="exclude each other"):
        Embedder(model, rc_average=True, rc_concat=True, device="cpu")


def test_pooled_embeddings_are_differentiable(model, regions):
    _, seqs, _ = regions
    batch = TOK.encode_batch(seqs[:4])
    vec = pooled_embeddings(model, batch["input_ids"], batch["attention_mask"], pooling="mean", rc_average=True)
    vec.sum().backward()
    assert model.backbone.embedding.weight.grad is not None
    model.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="right padding"):
        pooled_embeddings(model, batch["input_ids"], batch["attention_mask"].flip(1))


def test_cli_writes_hdf5_with_names_labels_and_attributes(model, regions, tmp_path):
    path, seqs, labels = regions
    model_dir = model.save_pretrained(tmp_path / "model")
    out = tmp_path / "emb.h5"
    code = main(["embed", "--model", str(model_dir), "--tsv", str(path), "--out", str(out), "--pooling", "echo",
                 "--layer", "-1", "--rc_average", "true", "--device", "cpu", "--progress", "false"])
    assert code == 0
    with h5py.File(out) as h5:
        emb = h5["embeddings"][:]
        assert emb.shape == (len(seqs), 32)
        assert [x.decode() for x in h5["labels"][:]] == labels
        assert h5["names"][0].decode() == "row1"
        assert (h5.attrs["pooling"], int(h5.attrs["layer"]), bool(h5.attrs["rc_average"])) == ("echo", -1, True)
        assert h5.attrs["model"] == str(model_dir)
    expected = Embedder(model, pooling="echo", rc_average=True, device="cpu").embed(seqs)
    np.testing.assert_allclose(emb, expected, atol=1e-5)

    fasta = tmp_path / "x.fa"
    fasta.write_text("".join(f">seq{i}\n{s}\n" for i, s in enumerate(seqs[:3])))
    assert main(["embed", "--model", str(model_dir), "--fasta", str(fasta), "--out", str(tmp_path / "f.h5"),
                 "--device", "cpu", "--progress", "false"]) == 0
    with h5py.File(tmp_path / "f.h5") as h5:
        assert [x.decode() for x in h5["names"][:]] == ["seq0", "seq1", "seq2"] and "labels" not in h5


def test_cli_bad_input_exits_2(model, tmp_path, capsys):
    model_dir = model.save_pretrained(tmp_path / "model")
    bad = tmp_path / "bad.tsv"
    bad.write_text("sequence\tlabel\nACGTXX\ta\n")
    out = tmp_path / "emb.h5"
    assert main(["embed", "--model", str(model_dir), "--tsv", str(bad), "--out", str(out)]) == 2
    assert "bad.tsv" in capsys.readouterr().err and not out.exists()
    assert main(["embed", "--model", str(model_dir), "--out", str(out)]) == 2  # neither --fasta nor --tsv
    good = tmp_path / "good.tsv"
    good.write_text("sequence\tlabel\nACGTAC\ta\n")
    capsys.readouterr()
    assert main(["embed", "--model", str(model_dir), "--tsv", str(good), "--out", str(out), "--pooling", "max"]) == 2
    assert "pooling must be" in capsys.readouterr().err and not out.exists()
