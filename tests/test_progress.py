"""Progress that reaches a log file: plain lines while a job runs when its output is not a terminal."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from genoseq.errors import InputError
from genoseq.progress import Progress, end_bar_line, format_count, format_duration, resolve_progress

LINE = re.compile(r"^\[[a-z ]+\]( [a-z]+)?( [a-z_/]+=\S+)+( [a-z]+)?( [a-z_/]+=\S+)*$")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_resolve_progress(monkeypatch):
    monkeypatch.delenv("GENOSEQ_PROGRESS", raising=False)
    assert resolve_progress("auto", io.StringIO()) == "lines"  # a file or a pipe
    assert resolve_progress("auto", _Terminal()) == "bar"
    assert resolve_progress(True, io.StringIO()) == "lines"
    assert resolve_progress(False) == "none"
    assert resolve_progress("LINES") == "lines"
    monkeypatch.setenv("GENOSEQ_PROGRESS", "none")
    assert resolve_progress("auto", _Terminal()) == "none"  # the environment replaces auto...
    assert resolve_progress("bar") == "bar"  # ...but not an explicit choice
    with pytest.raises(InputError, match="auto, bar, lines, none"):
        resolve_progress("fancy")


def test_lines_are_plain_key_value_and_come_at_the_interval():
    out = io.StringIO()
    with Progress(1000, desc="score", unit="bp", mode="lines", stream=out, interval=0) as bar:
        for _ in range(4):
            bar.update(250)
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # one per update (interval 0) and the final one
    assert lines[0].startswith("[score] done=250/1k bp pct=25.0 rate=")
    assert "eta=" in lines[0] and lines[-1].split()[-1] == "finished"
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()

    quiet = io.StringIO()
    with Progress(10, desc="x", mode="lines", stream=quiet, interval=3600) as bar:
        bar.update(10)
    assert len(quiet.getvalue().splitlines()) == 1  # only the final line within the interval
    nothing = io.StringIO()
    with Progress(10, desc="x", mode="none", stream=nothing) as bar:
        bar.update(10)
    assert nothing.getvalue() == ""


def test_a_bar_left_open_is_ended_before_an_error_line(capsys):
    """A bar no ``with`` closed (a signal came while it was being made or drawn) still has its
    line ended by end_bar_line, which the command line calls before its one-line error; a bar
    that ended its line gets no second newline."""
    from genoseq.cli import _tell

    bar = Progress(10, desc="score", unit="bp", mode="bar", stream=sys.stderr)
    bar.update(3)
    _tell("interrupted")
    err = capsys.readouterr().err
    assert err.endswith("\ngenoseq: interrupted\n") and "score:" in err, repr(err)
    end_bar_line()  # nothing left open: nothing more is written
    assert capsys.readouterr().err == ""
    with Progress(10, desc="embed", unit="seq", mode="bar", stream=sys.stderr) as closed:
        closed.update(10)
    _tell("interrupted")
    err = capsys.readouterr().err
    assert err.endswith("seq/s]\ngenoseq: interrupted\n") and "\n\n" not in err, repr(err)


def test_formatting():
    assert format_duration(3725) == "1:02:05" and format_duration(None) == "?"
    assert format_count(950) == "950" and format_count(12_345) == "12.3k" and format_count(5_472_672) == "5.47M"


def _run_logged(args: list[str], log: Path, cwd: Path) -> tuple[list[str], int]:
    """Run a genoseq command with stdout and stderr going to ``log``; return the progress lines
    that were in the log while the process was still running, and its exit status."""
    env = dict(os.environ, GENOSEQ_PROGRESS_INTERVAL="0", PYTHONUNBUFFERED="1")
    env.pop("GENOSEQ_PROGRESS", None)
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "genoseq.cli", *args], stdout=fh, stderr=subprocess.STDOUT,
                                cwd=cwd, env=env, stdin=subprocess.DEVNULL)
        seen_while_running: list[str] = []
        while proc.poll() is None:
            text = log.read_text(errors="replace")
            if proc.poll() is None:  # still running after the read: these lines came before the end
                seen_while_running = [ln for ln in text.splitlines() if ln.startswith("[")]
            time.sleep(0.05)
    return seen_while_running, proc.returncode


def test_training_and_scoring_write_progress_lines_before_they_end(tmp_path, lambda_fasta):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"d_model": 32, "pattern": "HA", "n_heads": 2, "hyena_filter_dim": 16},
        "window": {"length": 128, "batch_size": 4, "windows_per_epoch": 400, "max_val_windows": 4},
        "optim": {"warmup_steps": 5},
        "trainer": {"max_steps": 60, "val_check_interval": 30},
    }))
    run = tmp_path / "run"
    during, rc = _run_logged(["pretrain", "--config", str(cfg), "--out", str(run)], tmp_path / "pretrain.log", tmp_path)
    log = (tmp_path / "pretrain.log").read_text()
    assert rc == 0, log
    steps = [ln for ln in during if re.match(r"\[pretrain\] step=\d+/60 ", ln)]
    assert steps, f"no progress line before the end of training:\n{log}"
    assert int(steps[0].split("step=")[1].split("/")[0]) < 60
    for ln in [ln for ln in log.splitlines() if ln.startswith("[pretrain]")]:
        assert LINE.match(ln), ln
    assert "[pretrain] val step=30 val_loss=" in log
    final = [ln for ln in log.splitlines() if ln.startswith("[pretrain] finished step=60/60")]
    assert final and "loss=" in final[0] and "tok/s=" in final[0]
    for noise in ("Total FLOPs", "litlogger", "LeafSpec", "GPU available", "Epoch"):
        assert noise not in log, noise
    assert "\r" not in log

    during, rc = _run_logged(["score", "--model", str(run / "model"), "--fasta", str(lambda_fasta),
                              "--out", str(tmp_path / "scores.tsv"), "--chunk_size", "1024", "--context", "128",
                              "--batch_size", "1"], tmp_path / "score.log", tmp_path)
    log = (tmp_path / "score.log").read_text()
    assert rc == 0, log
    assert [ln for ln in during if ln.startswith("[score] done=")], f"no progress line before the end of scoring:\n{log}"
    done = [ln for ln in log.splitlines() if ln.startswith("[score] done=")]
    assert done[-1].startswith("[score] done=48.5k/48.5k bp pct=100.0") and done[-1].endswith("finished")
    assert "\r" not in log


def test_progress_none_and_bar_on_the_command_line(tmp_path, lambda_fasta, capsys):
    from genoseq.cli import main

    cfg = {"model": {"d_model": 16, "pattern": "H", "hyena_filter_dim": 8},
           "window": {"length": 64, "batch_size": 2, "windows_per_epoch": 8, "max_val_windows": 2},
           "optim": {"warmup_steps": 1}, "trainer": {"max_steps": 3, "val_check_interval": 3}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["pretrain", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r"), "--progress", "none"]) == 0
    err = capsys.readouterr().err
    assert "[pretrain]" not in err and "step" not in err
    assert main(["pretrain", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r2"), "--progress", "lines"]) == 0
    assert "[pretrain] finished step=3/3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["pretrain", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r3"), "--progress", "sideways"])
    assert stop.value.code == 2
