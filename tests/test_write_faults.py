"""Faults while writing, for ``genoseq score``, ``vep``, ``embed`` and ``annotate predict`` on real
E. coli data: a full disk (a 16 kB tmpfs, smaller than what each command writes), a read-only
output folder (a read-only tmpfs) and SIGTERM in the middle of the job; ``genoseq prepare`` (an
HDF5 token store, written through h5py) meets the first two. Each ends with one line on stderr that
says what happened and names the output, the exit status of ``genoseq.cli`` (1 full disk,
2 read-only, 143 SIGTERM), no traceback, nothing in the output folder (no result, no temporary
file) and the inputs unchanged.

Mounting needs root (CAP_SYS_ADMIN), as on the development machine and in CI; elsewhere the
full-disk and read-only tests skip, saying why. Root ignores permission bits, so ``chmod 555``
cannot make a read-only folder here: a read-only mount does.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from genoseq.cli import main
from genoseq.runtime import atomic_output, atomic_outputs, write_json, write_tsv

CONTIG = "K-12-MG1655"
SLICE = 1_000_000  # bases of E. coli for the long (SIGTERM) jobs
COMMANDS = ("score", "vep", "embed", "annotate predict")
WRITERS = COMMANDS + ("prepare",)  # prepare takes a second, too short to stop in the middle
TMPFS_SIZE = "16k"


def fasta_text(records: list[tuple[str, str]]) -> str:
    return "".join(f">{name}\n" + "".join(seq[i : i + 80] + "\n" for i in range(0, len(seq), 80))
                   for name, seq in records)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, ecoli_fasta, data_dir, tiny_lm):
    """Inputs of two sizes (small: outputs of 20-130 kB; long: jobs of minutes), a tiny language
    model and an untrained segmenter on it."""
    from genoseq.annotation import CODING, CODON_CLASSES, INTERGENIC
    from genoseq.models import GenoSeqLM
    from genoseq.models.segmenter import Segmenter

    d = tmp_path_factory.mktemp("write_faults")
    parts, length = [], 0
    with open(ecoli_fasta) as handle:
        next(handle)  # the header
        while length < SLICE:
            parts.append(next(handle).strip())
            length += len(parts[-1])
    seq = "".join(parts)[:SLICE]
    (d / "genome.fa").write_text(fasta_text([(CONTIG, seq)]))
    (d / "genome_5kb.fa").write_text(fasta_text([("part", seq[:5000])]))
    (d / "records.fa").write_text(fasta_text([(f"r{i}", seq[i * 60 : i * 60 + 60]) for i in range(120)]))
    with gzip.open(data_dir / "ecoli_snvs.vcf.gz", "rt") as handle:
        lines = handle.read().splitlines(keepends=True)
    header = [line for line in lines if line.startswith("#")]
    snvs = [line for line in lines if not line.startswith("#") and int(line.split("\t")[1]) <= SLICE]
    (d / "snvs.vcf").write_text("".join(header + snvs[:300]))
    (d / "snvs_all.vcf").write_text("".join(header + snvs))
    with gzip.open(data_dir / "ecoli_regions.tsv.gz", "rt") as handle:
        regions = handle.read().splitlines(keepends=True)
    (d / "regions.tsv").write_text("".join(regions[:301]))
    (d / "regions_all.tsv").write_text("".join(regions))
    lm = tiny_lm().save_pretrained(d / "lm")
    seg = Segmenter(GenoSeqLM.from_pretrained(lm), [INTERGENIC, *CODON_CLASSES], {"CDS": CODING},
                    hidden=8, window=256, context=32)
    seg.save_pretrained(d / "segmenter")
    return SimpleNamespace(dir=d, lm=d / "lm", segmenter=d / "segmenter")


def command(name: str, inputs, out_dir: Path, long: bool = False) -> tuple[list[str], list[Path]]:
    """The command line of ``name`` writing into ``out_dir`` (on the small or the long input) and
    the files it would write there, in the order it opens them."""
    d, lm, device = inputs.dir, str(inputs.lm), ["--device", "cpu"]
    progress = ["--progress", "bar" if long else "none"]
    if name == "score":
        out = out_dir / "scores.tsv"
        argv = ["score", "--model", lm, "--fasta", str(d / ("genome.fa" if long else "records.fa")), "--out", str(out)]
        outputs = [out, out_dir / "scores.tsv.json"]
    elif name == "vep":
        out = out_dir / "scored.vcf"
        argv = ["vep", "--model", lm, "--reference", str(d / "genome.fa"), "--vcf",
                str(d / ("snvs_all.vcf" if long else "snvs.vcf")), "--out", str(out), "--window_length", "64",
                "--batch_size", "64"]
        outputs = [out, out_dir / "scored.vcf.json"]
    elif name == "embed":
        out = out_dir / "emb.h5"
        argv = ["embed", "--model", lm, "--tsv", str(d / ("regions_all.tsv" if long else "regions.tsv")),
                "--out", str(out), "--batch_size", "64"]
        outputs = [out]
    elif name == "prepare":
        out = out_dir / "genome.h5"
        return ["prepare", "--fasta", str(d / "genome.fa"), "--out", str(out)] + progress, [out, out_dir / "genome.h5.json"]
    else:
        out = out_dir / "pred.gff3"
        argv = ["annotate", "predict", "--segmenter", str(inputs.segmenter), "--out", str(out),
                "--fasta", str(d / ("genome.fa" if long else "genome_5kb.fa"))]
        outputs = [out_dir / "pred.plus.bedgraph", out_dir / "pred.minus.bedgraph", out]
    return argv + device + progress, outputs


def input_checksums(inputs) -> dict[str, str]:
    files = [p for p in inputs.dir.rglob("*") if p.is_file() and p.suffix != ".fai"]  # the FASTA index is made on first use
    return {str(p): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(options)``: a fresh tmpfs folder (unmounted afterwards); skips where mounting is not permitted."""
    mounted = []

    def mount(options: str) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount(8)")
        folder = tmp_path / f"mnt{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here (no CAP_SYS_ADMIN?): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


def error_line(captured) -> str:
    """The one line a failed command writes on stderr (stdout and stderr of the whole process)."""
    text = captured.out + captured.err
    assert "Traceback" not in text and "Exception ignored" not in text, text
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("name", WRITERS)
def test_a_full_disk_fails_naming_the_output_and_leaves_nothing(name, inputs, tmpfs, capfd):
    out_dir = tmpfs(f"size={TMPFS_SIZE},mode=0755")
    argv, outputs = command(name, inputs, out_dir)
    before = input_checksums(inputs)
    capfd.readouterr()
    assert main(argv) == 1
    line = error_line(capfd.readouterr())
    # score's table fits and its summary does not: neither may appear. annotate writes two
    # tracks at once: which one met the full disk is unknown, and the line names their folder
    named = outputs[1] if name == "score" else f"into {out_dir}" if name == "annotate predict" else outputs[0]
    assert line == f"genoseq: error: no space left on device writing {named}: the disk (or the quota of its folder) is full"
    assert sorted(os.listdir(out_dir)) == []
    assert input_checksums(inputs) == before


@pytest.mark.parametrize("name", WRITERS)
def test_a_read_only_folder_fails_naming_the_output_and_leaves_nothing(name, inputs, tmpfs, capfd):
    out_dir = tmpfs(f"ro,size={TMPFS_SIZE},mode=0755")
    argv, outputs = command(name, inputs, out_dir)
    before = input_checksums(inputs)
    capfd.readouterr()
    assert main(argv) == 2
    assert error_line(capfd.readouterr()) == f"genoseq: error: {outputs[0]}: read-only file system: cannot write there"
    assert os.listdir(out_dir) == []
    assert input_checksums(inputs) == before


def test_outputs_written_together_appear_together_or_not_at_all(tmp_path):
    """A result and its summary (score's and vep's ``out`` and ``out.json``) appear both or neither."""
    table, summary = tmp_path / "t.tsv", tmp_path / "t.tsv.json"
    with pytest.raises(RuntimeError, match="the summary failed"):
        with atomic_outputs():
            write_tsv(table, ["a"], [["1"]])
            assert not table.exists()  # complete, but not in place before the summary is
            with atomic_output(summary) as handle:
                handle.write("{")
                raise RuntimeError("the summary failed")
    assert os.listdir(tmp_path) == []
    with atomic_outputs():
        write_tsv(table, ["a"], [["1"]])
        write_json(summary, {"a": 1})
    assert sorted(os.listdir(tmp_path)) == ["t.tsv", "t.tsv.json"] and table.read_text() == "a\n1\n"


def stop_mid_job(argv: list[str], out_dir: Path) -> SimpleNamespace:
    """Run ``genoseq argv`` as its own process, send it SIGTERM as soon as its progress bar is drawn
    (its main loop has started), and return what it did: whether it got that far, the files in
    ``out_dir`` at that moment and after it ended, its exit status and its output."""
    proc = subprocess.Popen([sys.executable, "-m", "genoseq.cli", *argv], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        err, deadline = b"", time.monotonic() + 180
        while b"%|" not in err:
            ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(proc.stderr.fileno(), 4096) if ready else b""
            if not chunk:  # it ended, or never started its main loop
                break
            err += chunk
        working, seen = b"%|" in err, sorted(os.listdir(out_dir))
        proc.send_signal(signal.SIGTERM)
        out, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return SimpleNamespace(working=working, seen=seen, left=sorted(os.listdir(out_dir)), status=proc.returncode,
                           out=out.decode(errors="replace"), err=(err + rest).decode(errors="replace"))


@pytest.fixture(scope="module")
def stopped(inputs, tmp_path_factory):
    """Each command's long job stopped by SIGTERM (:func:`stop_mid_job`), and the input checksums
    from before. The four run at once: each is mostly a few seconds of imports, which two cores share."""
    before = input_checksums(inputs)
    jobs = {}
    for name in COMMANDS:
        out_dir = tmp_path_factory.mktemp("stopped")
        jobs[name] = (command(name, inputs, out_dir, long=True)[0], out_dir)
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        runs = {name: pool.submit(stop_mid_job, *job) for name, job in jobs.items()}
        return {name: run.result() for name, run in runs.items()}, before


@pytest.mark.parametrize("name", COMMANDS)
def test_sigterm_mid_job_stops_it_cleanly(name, inputs, stopped):
    runs, before = stopped
    run = runs[name]
    assert run.working, f"the job ended before its progress bar: {run.err}"
    if name == "annotate predict":  # its tracks are open from the start: their temporary files were there
        assert any(f.startswith(".pred.") for f in run.seen), run.seen
    assert run.status == 128 + signal.SIGTERM, run.err
    assert "Traceback" not in run.err and not run.out, run.err
    last = run.err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("genoseq: stopped by SIGTERM before the job finished: no output was written"), run.err
    assert run.left == []
    assert input_checksums(inputs) == before
