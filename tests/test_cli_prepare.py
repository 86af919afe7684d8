"""`genoseq prepare` end to end through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from genoseq.cli import main
from genoseq.genome import open_genome

REPO = Path(__file__).resolve().parents[1]


def test_prepare_default_genome_via_main(tmp_path, capsys):
    out = tmp_path / "runs" / "genome.h5"
    assert main(["prepare", "--out", str(out), "--progress", "false"]) == 0
    assert open_genome(out).contigs == {"NC_001416.1": 48_502}
    summary = json.loads(out.with_name("genome.h5.json").read_text())
    assert summary["total_length"] == 48_502 and summary["compression"] == "gzip"
    assert "wrote" in capsys.readouterr().err


def test_prepare_two_files_from_a_yaml_config(tmp_path, ecoli_fasta, lambda_fasta):
    config = tmp_path / "prepare.yaml"
    out = tmp_path / "two.h5"
    config.write_text(f"fasta: [{lambda_fasta}, {ecoli_fasta}]\nout: {out}\ncompression: lzf\nprogress: false\n")
    assert main(["prepare", "--config", str(config)]) == 0
    assert open_genome(out).contigs == {"NC_001416.1": 48_502, "K-12-MG1655": 4_639_675}


def test_bad_fasta_exits_2_naming_file_record_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.fa"
    bad.write_text(">chr1\nACGT\n>chr2\nACGT\nACQT\n")
    out = tmp_path / "bad.h5"
    assert main(["prepare", "--fasta", str(bad), "--out", str(out), "--progress", "false"]) == 2
    err = capsys.readouterr().err
    assert f"genoseq: error: {bad}, record 'chr2', line 5" in err and "'Q'" in err
    assert not out.exists()


def test_plain_gzip_exits_2_then_converts_with_the_flag(tmp_path, data_dir, capsys):
    src = tmp_path / "lambda.fa.gz"
    src.write_bytes((data_dir / "lambda_phage.fa.gz").read_bytes())
    out = tmp_path / "lambda.h5"
    assert main(["prepare", "--fasta", str(src), "--out", str(out), "--progress", "false"]) == 2
    assert "convert_gzip" in capsys.readouterr().err
    assert main(["prepare", "--fasta", str(src), "--out", str(out), "--progress", "false", "--convert_gzip", "true"]) == 0
    assert open_genome(out).contigs == {"gi|9626243|ref|NC_001416.1|": 48_502}


def test_missing_input_exits_2(tmp_path, capsys):
    assert main(["prepare", "--fasta", str(tmp_path / "nope.fa"), "--out", str(tmp_path / "x.h5")]) == 2
    assert "nope.fa" in capsys.readouterr().err


def test_installed_command_in_a_subprocess(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    exe = Path(sys.executable).with_name("genoseq")
    help_run = subprocess.run([str(exe), "prepare", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert help_run.returncode == 0 and "--convert_gzip" in help_run.stdout and "--fasta" in help_run.stdout
    out = tmp_path / "lambda.h5"
    run = subprocess.run([str(exe), "prepare", "--out", str(out)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "48,502 bp" in run.stderr and out.exists()
    again = subprocess.run([str(exe), "prepare", "--out", str(out)], capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr
