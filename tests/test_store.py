"""The HDF5 token store: same windows as the FASTA, checksums, N runs, atomic and refused when incomplete."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest

from genoseq import InputError
from genoseq.fasta import iter_fasta
from genoseq.genome import StoreGenome, open_genome
from genoseq.pipelines.prepare import prepare
from genoseq.store import TokenStoreWriter, write_store

SAUREUS = "gi|29165615|ref|NC_002745.2|"
ECOLI = "K-12-MG1655"


@pytest.fixture(scope="module")
def two_genome_store(tmp_path_factory, ecoli_fasta, saureus_fasta):
    out = tmp_path_factory.mktemp("store") / "bacteria.h5"
    summary = prepare([str(ecoli_fasta), str(saureus_fasta)], out=str(out), progress=False)
    return out, summary


def test_prepare_writes_store_manifest_and_summary(two_genome_store, ecoli_fasta, saureus_fasta):
    out, summary = two_genome_store
    store = open_genome(out)
    assert isinstance(store, StoreGenome)
    assert store.contigs == {ECOLI: 4_639_675, SAUREUS: 2_814_816}
    manifest = store.manifest
    assert manifest["format"] == "genoseq.token_store" and manifest["genoseq_version"]
    assert manifest["tokenizer"]["type"] == "genoseq.Tokenizer"
    assert manifest["sources"] == sorted([str(ecoli_fasta), str(saureus_fasta)])
    on_disk = json.loads(out.with_name(out.name + ".json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["contigs"] == manifest["contigs"] and on_disk["store_bytes"] == out.stat().st_size
    # gzip-compressed uint8 ids: far below one byte per base
    assert out.stat().st_size < 0.5 * (4_639_675 + 2_814_816)
    with h5py.File(out) as f:
        ds = f[manifest["contigs"][0]["dataset"]]
        assert ds.dtype == np.uint8 and ds.chunks == (65536,) and ds.compression == "gzip"
        assert ds.attrs["name"] == ECOLI and ds.attrs["length"] == 4_639_675


def test_checksums_match_the_fasta_sequence(two_genome_store, saureus_fasta):
    out, _ = two_genome_store
    store = open_genome(out)
    (record,) = list(iter_fasta(saureus_fasta))
    info = next(c for c in store.manifest["contigs"] if c["name"] == SAUREUS)
    assert info["md5"] == hashlib.md5(record.sequence.upper().encode()).hexdigest()
    store.verify()


@pytest.mark.parametrize("fixture, contig", [("ecoli_fasta", ECOLI), ("saureus_fasta", SAUREUS)])
def test_store_windows_equal_fasta_windows_on_both_strands(two_genome_store, request, fixture, contig):
    out, _ = two_genome_store
    store, fasta = open_genome(out), open_genome(request.getfixturevalue(fixture))
    length = fasta.contigs[contig]
    rng = np.random.default_rng(7)
    for _ in range(200):
        size = int(rng.choice([1, 100, 1024, 32_768]))
        start = int(rng.integers(0, length - size + 1))
        strand = "+" if rng.random() < 0.5 else "-"
        from_store = store.fetch(contig, start, start + size, strand)
        assert from_store.dtype == np.uint8
        assert np.array_equal(from_store, fasta.fetch(contig, start, start + size, strand)), (contig, start, size, strand)
    # the very ends of the contig
    assert np.array_equal(store.fetch(contig, length - 10, length, "-"), fasta.fetch(contig, length - 10, length, "-"))
    with pytest.raises(InputError, match="outside the contig"):
        store.fetch(contig, length - 10, length + 1)


def test_n_runs_are_recorded_and_match_the_fasta(tmp_path, lambda_fasta):
    (record,) = list(iter_fasta(lambda_fasta))
    seq = record.sequence
    seq = seq[:1000] + "N" * 500 + seq[1500:30_000] + "nnRY" + seq[30_004:]
    fa = tmp_path / "gappy.fa"
    fa.write_text(">gappy\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    out = tmp_path / "gappy.h5"
    manifest = write_store([fa], out, progress=False, block_size=700)  # runs cross block borders
    expected = [[1000, 1500], [30_000, 30_004]]
    assert open_genome(out).n_runs("gappy").tolist() == expected
    assert open_genome(fa).n_runs("gappy").tolist() == expected
    assert manifest["contigs"][0]["n_bases_n"] == 504
    assert manifest["contigs"][0]["md5"] == hashlib.md5(seq.upper().encode()).hexdigest()


def test_unfinished_store_is_refused_and_never_appears_under_its_name(tmp_path, lambda_fasta):
    out = tmp_path / "genome.h5"
    (record,) = list(iter_fasta(lambda_fasta))
    writer = TokenStoreWriter(out)
    writer.add_contig("NC_001416.1", len(record), [record.sequence], source=str(lambda_fasta))
    writer._file.flush()
    assert not out.exists() and writer.tmp_path.exists()
    with pytest.raises(InputError, match="incomplete"):
        open_genome(writer.tmp_path)  # what an interrupted prepare leaves behind
    writer.abort()
    assert not writer.tmp_path.exists() and not out.exists()


def test_store_without_completion_marker_is_refused(tmp_path):
    out = tmp_path / "lambda.h5"
    prepare(out=str(out), progress=False)
    assert open_genome(out).contigs == {"NC_001416.1": 48_502}
    with h5py.File(out, "r+") as f:
        del f.attrs["complete"]
    with pytest.raises(InputError, match="incomplete") as err:
        open_genome(out)
    assert err.value.path == str(out)


def test_failed_prepare_leaves_nothing_behind(tmp_path, lambda_fasta):
    bad = tmp_path / "bad.fa"
    bad.write_text(">ok\nACGT\n>broken\nAC!T\n")
    out = tmp_path / "out.h5"
    with pytest.raises(InputError, match="'!'"):
        prepare([str(lambda_fasta), str(bad)], out=str(out), progress=False)
    assert list(tmp_path.iterdir()) == [bad]  # no store, no temp file, no summary


def test_duplicate_contig_names_across_inputs_are_an_error(tmp_path, lambda_fasta):
    copy = tmp_path / "again.fa"
    copy.write_text(lambda_fasta.read_text())
    with pytest.raises(InputError, match="also used in") as err:
        prepare([str(lambda_fasta), str(copy)], out=str(tmp_path / "x.h5"), progress=False)
    assert err.value.record == "NC_001416.1" and err.value.path == str(copy)
    assert not (tmp_path / "x.h5").exists()


def test_existing_store_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "lambda.h5"
    prepare(out=str(out), progress=False, compression="none")
    before = out.stat().st_mtime_ns
    with pytest.raises(InputError, match="already exists"):
        prepare(out=str(out), progress=False)
    assert out.stat().st_mtime_ns == before
    prepare(out=str(out), progress=False, compression="lzf", overwrite=True)
    with h5py.File(out) as f:
        assert f["tokens/0"].compression == "lzf"


def test_non_store_hdf5_is_refused(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(InputError, match="not a genoseq token store"):
        open_genome(path)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
def test_blocks_of_any_size_land_whole_chunk_by_chunk(tmp_path, chunk_size):
    """Blocks that do not line up with the chunks (the writer stores whole chunks, buffering the
    rest) read back as the sequence, for contigs shorter and longer than a chunk."""
    rng = np.random.default_rng(chunk_size)
    seqs = {name: "".join(rng.choice(list("ACGTN"), n)) for name, n in (("short", 5), ("long", 333))}
    out = tmp_path / "s.h5"
    with TokenStoreWriter(out, chunk_size=chunk_size) as writer:
        for name, seq in seqs.items():
            cuts = sorted(rng.choice(np.arange(1, len(seq)), size=min(4, len(seq) - 1), replace=False))
            blocks = [seq[a:b] for a, b in zip([0, *cuts], [*cuts, len(seq)])]
            writer.add_contig(name, len(seq), blocks, source="test")
        writer.finalize()
    from genoseq.tokenizer import Tokenizer

    with open_genome(out) as genome:
        for name, seq in seqs.items():
            assert np.array_equal(genome.fetch(name, 0, len(seq)), Tokenizer().encode(seq))
