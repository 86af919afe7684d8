"""`genoseq subset` on the shared data: genome slices, first records, matching records, bad input."""

from __future__ import annotations

import gzip
import itertools
import re

import pytest

from genoseq import InputError
from genoseq.cli import main
from genoseq.fasta import iter_fasta
from genoseq.fastq import iter_fastq
from genoseq.pipelines.subset import subset

ECOLI_CONTIG = "K-12-MG1655"
READS_BEFORE_90K = "^@K-12-MG1655_[0-8]?[0-9]{1,4}_"  # read names carry their true start


def test_genome_cut_to_its_first_bases_via_main(tmp_path, data_dir, capsys):
    out = tmp_path / "ecoli.fa"
    assert main(["subset", "--input", str(data_dir / "ecoli_k12_mg1655.fa.gz"), "--format", "fasta",
                 "--max_bases", "100000", "--out", str(out)]) == 0
    assert "genoseq subset: 1 fasta record(s)" in capsys.readouterr().err
    [record] = list(iter_fasta(out))
    whole = next(iter_fasta(data_dir / "ecoli_k12_mg1655.fa.gz"))
    assert record.name == ECOLI_CONTIG and record.sequence == whole.sequence[:100_000]
    with gzip.open(data_dir / "ecoli_k12_mg1655.fa.gz", "rt") as source:
        head = list(itertools.islice(source, 3))
    assert out.read_text().splitlines(keepends=True)[:3] == head  # header and line width as in the source


def test_no_option_is_the_decompressed_file(tmp_path, data_dir):
    out = tmp_path / "lambda.fa"
    summary = subset(input=str(data_dir / "lambda_phage.fa.gz"), out=str(out), format="fasta")
    assert out.read_bytes() == gzip.decompress((data_dir / "lambda_phage.fa.gz").read_bytes())  # its blank last line too
    assert summary["records"] == 1 and summary["format"] == "fasta"


def test_first_matching_reads(tmp_path, data_dir):
    out = tmp_path / "reads.fastq"
    assert subset(input=str(data_dir / "ecoli_reads_250bp.fq.gz"), out=str(out), format="fastq",
                  max_records=32, match=READS_BEFORE_90K)["records"] == 32
    wanted = [r for r in iter_fastq(data_dir / "ecoli_reads_250bp.fq.gz") if int(r.name.split("_")[1]) < 90_000][:32]
    assert [(r.name, r.sequence, r.quality) for r in iter_fastq(out)] == [(r.name, r.sequence, r.quality) for r in wanted]
    assert len(out.read_text().splitlines()) == 4 * 32


def test_first_table_rows_and_matching_rows(tmp_path, data_dir):
    with gzip.open(data_dir / "ecoli_regions.tsv.gz", "rt") as fh:
        lines = fh.read().splitlines()
    first = tmp_path / "first.tsv"
    subset(input=str(data_dir / "ecoli_regions.tsv.gz"), out=str(first), format="tsv", max_records=60)
    assert first.read_text().splitlines() == lines[:61]  # the header line and 60 rows
    upstream = tmp_path / "upstream.tsv"
    kept = subset(input=str(data_dir / "ecoli_regions.tsv.gz"), out=str(upstream), format="tsv", match=r"\tupstream$")
    assert upstream.read_text().splitlines() == [lines[0]] + [line for line in lines[1:] if line.endswith("\tupstream")]
    assert kept["records"] == len(upstream.read_text().splitlines()) - 1 > 0


def test_first_vcf_records_keep_every_header_line(tmp_path, data_dir):
    with gzip.open(data_dir / "ecoli_snvs.vcf.gz", "rt") as fh:
        lines = fh.read().splitlines()
    out = tmp_path / "snvs.vcf"
    assert subset(input=str(data_dir / "ecoli_snvs.vcf.gz"), out=str(out), format="vcf", max_records=20)["records"] == 20
    header = [line for line in lines if line.startswith("#")]
    assert out.read_text().splitlines() == header + [line for line in lines if not line.startswith("#")][:20]


def test_fasta_records_matching_a_name_cut_short(tmp_path):
    src = tmp_path / "three.fa"
    src.write_text(">a one\nACGTAC\nGT\n\n>b two\nTTTT\n>a2 three\nGGGGGG\nCC\n")
    out = tmp_path / "a.fa"
    assert subset(input=str(src), out=str(out), format="fasta", match="^>a", max_bases=7)["records"] == 2
    assert out.read_text() == ">a one\nACGTAC\nG\n>a2 three\nGGGGGG\nC\n"
    assert subset(input=str(src), out=str(out), format="fasta", max_records=1)["records"] == 1
    assert out.read_text() == ">a one\nACGTAC\nGT\n\n"  # a blank line inside a kept record stays


@pytest.mark.parametrize("text, fmt, message", [
    ("ACGT\n>a\nACGT\n", "fasta", "line 1: sequence line before any '>' header"),
    ("@r1\nACGT\n+\nIIII\nr2\nACGT\n+\nIIII\n", "fastq", "line 5: expected a read header starting with '@'"),
    ("@r1\nACGT\nIIII\n@r2\n", "fastq", "line 3: expected the '+' separator line"),
    ("@r1\nACGT\n+\n", "fastq", "line 1: truncated record"),
    ("\n\n", "tsv", "empty file"),
])
def test_malformed_input_is_an_input_error(tmp_path, text, fmt, message):
    src = tmp_path / f"bad.{fmt}"
    src.write_text(text)
    out = tmp_path / "out.txt"
    with pytest.raises(InputError, match=re.escape(message)) as err:
        subset(input=str(src), out=str(out), format=fmt)
    assert err.value.path == str(src)
    assert not out.exists() and list(tmp_path.iterdir()) == [src]  # no partial copy left behind


@pytest.mark.parametrize("options, message", [
    ({"max_records": -1}, "max_records must be 0 or more"),
    ({"max_bases": 0}, "max_bases must be 1 or more"),
    ({"match": "(unclosed"}, "is not a regular expression"),
])
def test_bad_options_are_input_errors(tmp_path, lambda_fasta, options, message):
    with pytest.raises(InputError, match=message):
        subset(input=str(lambda_fasta), out=str(tmp_path / "out.fa"), format="fasta", **options)


def test_cli_exits_2_on_bad_input(tmp_path, data_dir, capsys):
    out = tmp_path / "out.tsv"
    args = ["subset", "--input", str(data_dir / "ecoli_regions.tsv.gz"), "--format", "tsv", "--out", str(out)]
    assert main(args + ["--max_bases", "10"]) == 2
    assert "genoseq: error: max_bases cuts FASTA records" in capsys.readouterr().err
    assert main(["subset", "--input", str(tmp_path), "--format", "tsv", "--out", str(out)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["subset", "--input", str(tmp_path / "nope.tsv"), "--format", "tsv", "--out", str(out)]) == 2
    assert "nope.tsv" in capsys.readouterr().err
    assert not out.exists()
