"""Output writing shared by every job: atomic replacement, ordinary file modes, and the one
JSON, TSV and figure writer and missing-input error."""

from __future__ import annotations

import os
import stat

import pytest

from genoseq.runtime import atomic_output, atomic_path, require_file, safe_name, save_figure, write_json, write_tsv


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


def test_require_file_names_what_is_missing(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    assert require_file(str(tmp_path / "f.txt")) == tmp_path / "f.txt"
    assert require_file(tmp_path, kind="folder") == tmp_path
    with pytest.raises(FileNotFoundError) as err:
        require_file(tmp_path / "nope.fa")
    assert (err.value.errno, err.value.strerror, err.value.filename) == (2, "No such file or directory",
                                                                        str(tmp_path / "nope.fa"))
    with pytest.raises(FileNotFoundError, match="No such model folder"):
        require_file(tmp_path / "f.txt", "No such model folder", kind="folder")
    with pytest.raises(FileNotFoundError):
        require_file(tmp_path, kind="file")


def test_json_tsv_and_figure_writers(tmp_path):
    write_json(tmp_path / "a" / "x.json", {"b": [1, 2.5], "a": None})
    assert (tmp_path / "a" / "x.json").read_text() == '{\n  "b": [\n    1,\n    2.5\n  ],\n  "a": null\n}\n'
    write_tsv(tmp_path / "t.tsv", ["name", "value"], iter([["s1", "0.5"], ["s2", "1"]]))
    assert (tmp_path / "t.tsv").read_text() == "name\tvalue\ns1\t0.5\ns2\t1\n"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    save_figure(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "f.png", "t.tsv"]
    assert safe_name("K-12|gi 5/x.1") == "K-12_gi_5_x.1" and len(safe_name("a" * 99)) == 60
