"""Readers (FASTA, FASTQ, BED, labelled tables) and open_genome on the shared real data."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genoseq import InputError, Tokenizer
from genoseq.bed import read_bed
from genoseq.fasta import detect_compression, iter_fasta, open_indexed_fasta, validate_fasta
from genoseq.fastq import iter_fastq
from genoseq.genome import FastaGenome, open_genome
from genoseq.tables import read_genomic_benchmarks, read_labelled, read_labelled_table

LAMBDA = "NC_001416.1"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def assert_names_the_place(read, path: Path, reason: str, record: str | None, line: int | None) -> None:
    """``read(path)`` raises an ``InputError`` that gives ``reason`` and names the file, record and line."""
    with pytest.raises(InputError) as err:
        read(path)
    assert reason in str(err.value)
    assert (err.value.path, err.value.record, err.value.line) == (str(path), record, line)


# ----------------------------------------------------------------------------- FASTA
def test_iter_fasta_reads_the_bundled_genome(lambda_fasta):
    (record,) = list(iter_fasta(lambda_fasta))
    assert record.name == LAMBDA
    assert record.description.startswith("Enterobacteria phage lambda")
    assert len(record) == 48_502
    assert record.sequence.startswith("GGGCGGCGACCTCGCGGG")


def test_iter_fasta_streams_plain_gzip(data_dir):
    (record,) = list(iter_fasta(data_dir / "saureus_n315.fa.gz"))
    assert record.name == "gi|29165615|ref|NC_002745.2|" and len(record) == 2_814_816


MALFORMED = {
    "empty": ("", "empty file", None, None),
    "no_header": ("\n\n", "no FASTA record", None, None),
    "sequence_before_header": ("ACGT\n>chr1\nACGT\n", "before any '>' header", None, 1),
    "duplicate_name": (">chr1\nACGT\n>chr2\nAC\n>chr1 again\nGG\n", "duplicate record name", "chr1", 5),
    "bad_character": (">chr1\nACGT\nACGT\n>chr2\nACGT\nAC*T\n", "invalid character '*' at column 3", "chr2", 6),
    "digits": (">chrX desc\nACGT1234\n", "invalid character '1'", "chrX", 2),
    "empty_record": (">chr1\n>chr2\nACGT\n", "record has no sequence", "chr1", 1),
    "nameless_header": (">chr1\nACGT\n> \nACGT\n", "header line has no record name", None, 3),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_fasta_names_file_record_and_line(tmp_path, case):
    text, reason, record, line = MALFORMED[case]
    path = write(tmp_path / f"{case}.fa", text)
    for reader in (validate_fasta, lambda p: list(iter_fasta(p)), open_indexed_fasta, open_genome):
        assert_names_the_place(reader, path, reason, record, line)
    assert not Path(str(path) + ".fai").exists() or case == "empty"


# Layouts that hand-edited and tool-written FASTA files have: any line width, ragged lines,
# blank lines inside and between records, \n / \r\n / \r (or a mix of) line endings,
# spaces and tabs inside or after sequence lines, no newline at the end.
_layouts = st.fixed_dictionaries({
    "ending": st.sampled_from(["\n", "\r\n", "\r", "mixed"]),
    "final_newline": st.booleans(),
    "records": st.lists(st.fixed_dictionaries({
        "seq": st.text(alphabet="ACGTNacgtnRYKM", min_size=1, max_size=300),
        "widths": st.lists(st.integers(1, 90), min_size=1, max_size=6),
        "blank_every": st.integers(0, 5),
        "space_every": st.integers(0, 5),
    }), min_size=1, max_size=4),
})


def _render(layout) -> tuple[str, dict[str, str]]:
    lines, truth = [], {}
    for r, rec in enumerate(layout["records"]):
        name = f"rec{r}"
        truth[name] = rec["seq"]
        lines.append(f">{name} a description")
        pos, k = 0, 0
        while pos < len(rec["seq"]):
            width = rec["widths"][k % len(rec["widths"])]
            piece = rec["seq"][pos:pos + width]
            if rec["space_every"] and k % rec["space_every"] == 1:
                piece = piece[: len(piece) // 2] + " \t" + piece[len(piece) // 2:] + " "
            lines.append(piece)
            if rec["blank_every"] and k % rec["blank_every"] == 0:
                lines.append("")
            pos, k = pos + width, k + 1
    ends = ["\n", "\r\n", "\r"] if layout["ending"] == "mixed" else [layout["ending"]]
    text = "".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
    if not layout["final_newline"]:
        text = text.rstrip("\r\n")
    return text, truth


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=_layouts)
def test_any_line_layout_reads_the_same_sequences(layout):
    """Every reader gives back the records exactly, whatever the line layout; a layout pyfaidx
    cannot index is read through a normalised copy (with a warning), never wrongly."""
    import tempfile
    import warnings

    text, truth = _render(layout)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.fa"
        path.write_bytes(text.encode())
        assert {r.name: r.sequence for r in iter_fasta(path)} == truth
        assert validate_fasta(path) == {k: len(v) for k, v in truth.items()}
        tok = Tokenizer()
        for _ in range(2):  # the second time reuses the index or the normalised copy
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                genome = open_genome(path)
            assert genome.contigs == {k: len(v) for k, v in truth.items()}
            for name, seq in truth.items():
                assert genome.fetch(name, 0, len(seq)).tolist() == tok.encode(seq).tolist()
            genome.close()


def test_blank_line_inside_a_record_is_read_through_a_normalised_copy(tmp_path):
    path = write(tmp_path / "edited.fa", ">a\nACGT\n\nACGT\n")
    with pytest.warns(UserWarning, match="blank or shorter line inside a record.*edited.normalized.fa"):
        genome = open_genome(path)
    assert genome.fetch("a", 0, 8).tolist() == Tokenizer().encode("ACGTACGT").tolist()
    assert (tmp_path / "edited.normalized.fa").read_text() == ">a\nACGTACGT\n"


def test_a_read_only_folder_gets_the_fix_in_the_message(tmp_path, monkeypatch):
    import genoseq.fasta

    path = write(tmp_path / "x.fa", ">a\nAC\nACGT\n")
    monkeypatch.setattr(genoseq.fasta.os, "access", lambda *a: False)  # root can write anywhere
    with pytest.raises(InputError, match="read-only.*seqkit seq -w 80"):
        open_genome(path)
    assert not (tmp_path / "x.normalized.fa").exists()


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_genome(tmp_path / "nope.fa")


def test_plain_gzip_fasta_is_refused_with_advice_then_converted_on_request(data_dir, tmp_path):
    src = tmp_path / "lambda_phage.fa.gz"
    shutil.copy(data_dir / "lambda_phage.fa.gz", src)
    src.chmod(0o644)
    assert detect_compression(src) == "gzip"
    with pytest.raises(InputError) as err:
        open_genome(src)
    message = str(err.value)
    assert str(src) in message and "plain gzip" in message
    assert "gunzip" in message and "bgzip" in message and "convert_gzip" in message

    genome = open_genome(src, convert_gzip=True)
    assert genome.path == tmp_path / "lambda_phage.fa.bgz"
    assert detect_compression(genome.path) == "bgzip"
    (record,) = list(iter_fasta(src))
    assert genome.contigs == {"gi|9626243|ref|NC_001416.1|": 48_502}
    tok = Tokenizer()
    assert tok.decode(genome.fetch("gi|9626243|ref|NC_001416.1|", 30_000, 30_500)) == record.sequence[30_000:30_500]


def test_fasta_genome_fetch_strands_and_errors(lambda_fasta):
    genome = open_genome(lambda_fasta)
    assert isinstance(genome, FastaGenome) and genome.contigs == {LAMBDA: 48_502}
    (record,) = list(iter_fasta(lambda_fasta))
    tok = Tokenizer()
    forward = genome.fetch(LAMBDA, 48_400, 48_502)
    assert forward.dtype == np.uint8 and tok.decode(forward) == record.sequence[48_400:]
    reverse = genome.fetch(LAMBDA, 48_400, 48_502, strand="-")
    assert np.array_equal(reverse, tok.reverse_complement(forward))
    assert len(genome.fetch(LAMBDA, 5, 5)) == 0
    with pytest.raises(InputError, match="unknown contig") as err:
        genome.fetch("chr1", 0, 10)
    assert err.value.record == "chr1"
    for start, end in [(-1, 10), (48_000, 48_503), (20, 10)]:
        with pytest.raises(InputError, match="outside the contig"):
            genome.fetch(LAMBDA, start, end)
    with pytest.raises(ValueError, match="strand"):
        genome.fetch(LAMBDA, 0, 10, strand="+1")


def test_genome_pickles_without_its_file_handle(lambda_fasta):
    genome = open_genome(lambda_fasta)
    expected = genome.fetch(LAMBDA, 1000, 1100)
    clone = pickle.loads(pickle.dumps(genome))
    assert clone._handle is None
    assert np.array_equal(clone.fetch(LAMBDA, 1000, 1100), expected)
    assert clone._handle is not None


# ----------------------------------------------------------------------------- FASTQ
def test_fastq_parses_all_5000_simulated_reads(data_dir):
    reads = list(iter_fastq(data_dir / "ecoli_reads_250bp.fq.gz"))
    assert len(reads) == 5_000
    assert all(len(r) == 250 and len(r.quality) == 250 for r in reads)
    first = reads[0]
    assert first.name == "K-12-MG1655_1885062_1_0_1_0_0_2:0:0_0:0:0_0/1"
    assert first.sequence.startswith("GCTCACGTCAGTAATCAGCG")
    phred = first.phred()
    assert phred.dtype == np.uint8 and phred.min() >= 0 and phred.max() <= 60
    assert len({r.name for r in reads}) == 5_000


FASTQ_CASES = {
    "no_at": ("@r1\nACGT\n+\nIIII\nr2\nACGT\n+\nIIII\n", "starting with '@'", None, 5),
    "no_plus": ("@r1\nACGT\n-\nIIII\n", "'+' separator", "r1", 3),
    "length_mismatch": ("@r1\nACGT\n+\nIIII\n@r2\nACGTA\n+\nIIII\n", "quality length 4 differs from sequence length 5", "r2", 8),
    "truncated": ("@r1\nACGT\n+\nIIII\n@r2\nACGT\n", "truncated", "r2", 6),
    "bad_base": ("@r1\nACXT\n+\nIIII\n", "invalid sequence character 'X' at column 3", "r1", 2),
    "empty": ("", "empty file", None, None),
}


@pytest.mark.parametrize("case", sorted(FASTQ_CASES))
def test_malformed_fastq_names_file_read_and_line(tmp_path, case):
    text, reason, record, line = FASTQ_CASES[case]
    path = tmp_path / f"{case}.fq.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    assert_names_the_place(lambda p: list(iter_fastq(p)), path, reason, record, line)


# ----------------------------------------------------------------------------- BED
def test_bed_reads_bed3_and_bed6_skipping_headers(tmp_path):
    path = write(
        tmp_path / "regions.bed",
        "track name=test\nbrowser position chr1\n# comment\n\n"
        "K-12-MG1655\t100\t200\n"
        "K-12-MG1655\t300\t450\tgeneA\t7.5\t-\textra1\n"
        "K-12-MG1655 500 500 . . .\n",
    )
    a, b, c = read_bed(path)
    assert (a.contig, a.start, a.end, a.name, a.strand, len(a)) == ("K-12-MG1655", 100, 200, None, None, 100)
    assert (b.name, b.score, b.strand, b.extra) == ("geneA", 7.5, "-", ("extra1",))
    assert (c.start, c.end, c.name, c.score, c.strand) == (500, 500, None, None, None)


BED_CASES = {
    "start_after_end": ("chr1\t10\t20\tok\nchr1\t300\t200\tgeneB\n", "start 300 is greater than end 200", "geneB", 2),
    "two_columns": ("chr1\t10\n", "at least 3 columns", None, 1),
    "not_integer": ("chr1\tten\t20\n", "start 'ten' is not an integer", "chr1", 1),
    "negative": ("chr1\t-5\t20\tx\n", "negative start", "x", 1),
    "strand": ("chr1\t5\t20\tx\t0\tplus\n", "strand 'plus'", "x", 1),
    "score": ("chr1\t5\t20\tx\thigh\t+\n", "score 'high'", "x", 1),
}


@pytest.mark.parametrize("case", sorted(BED_CASES))
def test_malformed_bed_names_file_record_and_line(tmp_path, case):
    text, reason, record, line = BED_CASES[case]
    assert_names_the_place(read_bed, write(tmp_path / f"{case}.bed", text), reason, record, line)


# ----------------------------------------------------------------------------- tables
def test_labelled_regions_table_has_three_labels(data_dir):
    rows = read_labelled(data_dir / "ecoli_regions.tsv.gz")
    assert len(rows) == 4_285
    assert {r.label for r in rows} == {"upstream", "coding", "downstream"}
    assert all(len(r.sequence) == 200 for r in rows)
    assert rows[0].sequence.startswith("GTTTGTTACCCAACAAACCGG")


def test_csv_table_with_extra_activity_column(tmp_path):
    path = write(tmp_path / "enhancers.csv", "id,sequence,label,activity\na,ACGT,on,1.5\nb,GGCC,off,0.1\n")
    rows = read_labelled_table(path)
    assert [(r.sequence, r.label, r.extra) for r in rows] == [
        ("ACGT", "on", {"id": "a", "activity": "1.5"}),
        ("GGCC", "off", {"id": "b", "activity": "0.1"}),
    ]


TABLE_CASES = {
    "missing_column": ("sequence\tclass\nACGT\ta\n", "missing column 'label'", None, 1),
    "bad_base": ("sequence\tlabel\nACGT\ta\nACJT\tb\n", "invalid character 'J' at sequence position 3", "row 2", 3),
    "field_count": ("sequence\tlabel\nACGT\ta\textra\n", "expected 2 fields, found 3", None, 2),
    "empty_label": ("sequence\tlabel\nACGT\t\n", "empty label", "row 1", 2),
    "no_rows": ("sequence\tlabel\n", "no rows", None, None),
}


@pytest.mark.parametrize("case", sorted(TABLE_CASES))
def test_malformed_table_names_file_row_and_line(tmp_path, case):
    text, reason, record, line = TABLE_CASES[case]
    assert_names_the_place(read_labelled_table, write(tmp_path / f"{case}.tsv", text), reason, record, line)


def make_genomic_benchmarks(root: Path, rows_by_split: dict[str, list]) -> Path:
    for split, rows in rows_by_split.items():
        for i, row in enumerate(rows):
            folder = root / split / row.label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.txt").write_text(row.sequence + "\n")
    return root


def test_genomic_benchmarks_layout(tmp_path, data_dir):
    rows = read_labelled(data_dir / "saureus_regions.tsv.gz")
    root = make_genomic_benchmarks(tmp_path / "gb", {"train": rows[:60], "test": rows[60:90]})
    train = read_labelled(root)
    test = read_genomic_benchmarks(root, "test")
    assert len(train) == 60 and len(test) == 30
    assert sorted(r.sequence for r in train) == sorted(r.sequence for r in rows[:60])
    assert {r.label for r in train} == {r.label for r in rows[:60]}
    by_id = {int(r.extra["id"]): r for r in train}
    assert all(by_id[i].label == rows[i].label and by_id[i].sequence == rows[i].sequence for i in by_id)
    with pytest.raises(InputError, match="no 'valid' folder"):
        read_genomic_benchmarks(root, "valid")
    (root / "train" / "coding" / "bad.txt").write_text("ACGU\n")
    with pytest.raises(InputError, match="invalid character 'U'") as err:
        read_genomic_benchmarks(root)
    assert err.value.path.endswith("bad.txt")


# The same line-layout sweep for the other text readers: \n, \r\n, \r or mixed endings,
# blank lines between records, no final newline.
def _join(lines: list[str], ending: str, final_newline: bool) -> str:
    ends = ["\n", "\r\n", "\r"] if ending == "mixed" else [ending]
    text = "".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
    return text if final_newline else text.rstrip("\r\n")


def _write_layout(path: Path, header: list[str], records: list[list[str]], ending: str, final_newline: bool,
                  blank_every: int) -> Path:
    """``header`` lines, then each record's lines with a blank line after every ``blank_every``-th
    record (0: none), in the line layout :func:`_join` makes."""
    lines = list(header)
    for i, record in enumerate(records):
        lines += record
        if blank_every and i % blank_every == 0:
            lines.append("")
    path.write_bytes(_join(lines, ending, final_newline).encode())
    return path


_text_layout = dict(ending=st.sampled_from(["\n", "\r\n", "\r", "mixed"]), final_newline=st.booleans(),
                    blank_every=st.integers(0, 3))
_bases = st.text(alphabet="ACGTN", min_size=1, max_size=60)


@settings(max_examples=40, deadline=None)
@given(reads=st.lists(_bases, min_size=1, max_size=5), **_text_layout)
def test_fastq_reads_the_same_under_any_line_layout(tmp_path_factory, reads, ending, final_newline, blank_every):
    records = [[f"@read{i} x", seq, "+", "I" * len(seq)] for i, seq in enumerate(reads)]
    path = _write_layout(tmp_path_factory.mktemp("fq") / "r.fq", [], records, ending, final_newline, blank_every)
    assert [(r.name, r.sequence, r.quality) for r in iter_fastq(path)] == [
        (f"read{i}", s, "I" * len(s)) for i, s in enumerate(reads)]


@settings(max_examples=40, deadline=None)
@given(spans=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 500)), min_size=1, max_size=6), **_text_layout)
def test_bed_reads_the_same_under_any_line_layout(tmp_path_factory, spans, ending, final_newline, blank_every):
    records = [[f"chr1\t{start}\t{start + size}\tr{i}\t0\t+"] for i, (start, size) in enumerate(spans)]
    path = _write_layout(tmp_path_factory.mktemp("bed") / "x.bed", ["track name=test", "# a comment"], records,
                         ending, final_newline, blank_every)
    assert [(b.start, b.end, b.name, b.strand) for b in read_bed(path)] == [
        (s, s + n, f"r{i}", "+") for i, (s, n) in enumerate(spans)]


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(_bases, st.sampled_from(["up", "down"])), min_size=1, max_size=6), **_text_layout)
def test_labelled_tables_read_the_same_under_any_line_layout(tmp_path_factory, rows, ending, final_newline, blank_every):
    records = [[f"{seq}\t{label}"] for seq, label in rows]
    path = _write_layout(tmp_path_factory.mktemp("tsv") / "t.tsv", ["sequence\tlabel"], records, ending, final_newline,
                         blank_every)
    assert [(r.sequence, r.label) for r in read_labelled(path)] == rows


def test_bedgraph_merges_runs_and_skips_missing_bases(tmp_path, lambda_fasta):
    import numpy as np

    from genoseq.bed import write_bedgraph
    from genoseq.fasta import iter_fasta

    seq = next(iter_fasta(lambda_fasta)).sequence[:500]
    gc = np.array([1.0 if b in "GC" else 0.0 for b in seq])
    gc[100:120] = np.nan  # bases without a value
    out = tmp_path / "gc.bedgraph"
    with open(out, "w") as handle:
        write_bedgraph(handle, [("NC_001416.1", 1000, gc)], name="gc")
    lines = out.read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph")
    back = np.full(len(seq), np.nan)
    prev_end = None
    for line in lines[1:]:
        contig, a, b, v = line.split("\t")
        a, b = int(a) - 1000, int(b) - 1000
        assert contig == "NC_001416.1" and a < b
        if prev_end is not None and a == prev_end:
            assert float(v) != back[a - 1]  # equal neighbours were merged
        back[a:b] = float(v)
        prev_end = b
    np.testing.assert_array_equal(np.isnan(back), np.isnan(gc))
    np.testing.assert_array_equal(back[~np.isnan(gc)], gc[~np.isnan(gc)])
