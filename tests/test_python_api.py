"""The README's Python API example runs as written (on a small model in place of the demo's),
and the Python API's conventions hold: a string is one answer, a list is many."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genoseq
from genoseq.errors import InputError
from genoseq.pipelines.pretrain import pretrain

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("python_api") / "run"
    pretrain(out=str(run), model={"d_model": 32, "pattern": "MA", "n_heads": 2, "d_state": 16, "headdim": 16},
             window={"length": 128, "batch_size": 4, "windows_per_epoch": 40, "max_val_windows": 2},
             trainer={"max_steps": 6, "val_check_interval": 6, "enable_progress_bar": False})
    return run / "model"


def readme_example() -> str:
    text = README.read_text()
    marker = text.index("<!-- python-api-example")
    block = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    return block.group(1)


def test_readme_example_runs(model_dir):
    code = readme_example()
    assert 'genoseq.load("runs/demo/run/model")' in code
    check = """
import json, math
print("RESULT " + json.dumps({"scored": s.scored_bases, "bpb": s.bits_per_base, "per_base": len(per_base),
      "first_nan": math.isnan(per_base[0]), "rest_negative": bool((per_base[1:] < 0).all()),
      "vectors": list(vectors.shape), "status": effect.status, "llr": effect.llr, "designs": designs}))
"""
    # a fresh interpreter, as a reader's notebook would be: only what the example imports is there
    run = subprocess.run([sys.executable, "-c", code.replace("runs/demo/run/model", str(model_dir)) + check],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "bits/base over 1999 bases" in run.stdout
    got = json.loads(run.stdout.split("RESULT ", 1)[1])
    assert got["scored"] == 1999 and 0 < got["bpb"] < 4
    assert got["per_base"] == 100 and got["first_nan"] and got["rest_negative"]
    assert got["vectors"] == [2, 32] and got["status"] == "ok" and math.isfinite(got["llr"])
    assert len(got["designs"]) == 2 and all(d.startswith("ATG") and len(d) == 63 for d in got["designs"])


def test_one_sequence_one_answer_a_list_many(model_dir):
    m = genoseq.load(model_dir, device="cpu")
    seqs = ["ACGTTGCAAGGCTTAC" * 4, "TTGACA" * 8]
    many = m.score(seqs)
    assert [s.name for s in many] == ["#1", "#2"]
    one = m.score(seqs[0])
    assert math.isclose(one.log_likelihood, many[0].log_likelihood, rel_tol=1e-5)
    assert m.embed(seqs[0]).shape == (32,) and m.embed(seqs).shape == (2, 32)
    np.testing.assert_allclose(m.embed(seqs[1]), m.embed(seqs)[1], rtol=1e-5, atol=1e-6)


def test_variant_effects_take_one_or_many(model_dir):
    from genoseq.tasks.variants import Variant

    m = genoseq.load(model_dir, device="cpu")
    seq = {"s": "ACGTTGCAAGGCTTACGATCGGATCCATGAAAGCTTGCA" * 3}
    many = m.variant_effects(seq, [("s", 10, "G", "A"), Variant("s", 11, "G", "T"), ("s", 12, "T", "A")])
    assert [e.status for e in many] == ["ok", "ok", "ref_mismatch"] and many[2].field == "ref"
    one = m.variant_effects(seq, Variant("s", 11, "G", "T"))
    assert one.status == "ok" and math.isclose(one.llr, many[1].llr, rel_tol=1e-5, abs_tol=1e-6)


def test_bad_python_api_input_is_an_input_error(model_dir, tmp_path):
    m = genoseq.load(model_dir, device="cpu")
    with pytest.raises(InputError, match="position 5"):
        m.score("ACGTX")
    with pytest.raises(InputError, match="names has 1 entries for 2 sequences"):
        m.score(["ACGT", "ACGT"], names=["a"])
    with pytest.raises(InputError, match="condition"):
        m.generate("ACGT", max_new_tokens=5, condition="enhancer")
    with pytest.raises(InputError, match="no config.json"):
        genoseq.load(tmp_path)
    with pytest.raises(TypeError, match="for one sequence pass"):
        from genoseq.models.inference import sequence_log_likelihood

        sequence_log_likelihood(m.model, "ACGTACGT")
