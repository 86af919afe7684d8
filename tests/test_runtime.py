"""Output writing shared by every job: atomic replacement and ordinary file modes."""

from __future__ import annotations

import os
import stat

import pytest

from genoseq.runtime import atomic_output, atomic_path


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_output_writes_with_the_usual_mode(tmp_path):
    out = tmp_path / "sub" / "result.tsv"
    with atomic_output(out) as fh:
        fh.write("a\tb\n")
    assert out.read_text() == "a\tb\n"
    plain = tmp_path / "plain.txt"  # what open() makes under this process's umask
    plain.write_text("x")
    assert _mode(out) == _mode(plain)
    assert [p.name for p in out.parent.iterdir()] == ["result.tsv"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    out = tmp_path / "result.tsv"
    out.write_text("old\n")
    for context in (atomic_output(out), atomic_path(out)):
        with pytest.raises(RuntimeError):
            with context as target:
                if hasattr(target, "write"):
                    target.write("half")
                else:
                    target.write_text("half")
                raise RuntimeError("interrupted")
        assert out.read_text() == "old\n"
        assert [p.name for p in tmp_path.iterdir()] == ["result.tsv"]
