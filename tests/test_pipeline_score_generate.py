"""genoseq score and genoseq generate with a tiny model trained a few steps on lambda."""

import csv
import json
import math

import pytest
import torch

from genoseq.cli import main
from genoseq.fasta import iter_fasta
from genoseq.models import GenoSeqLM
from genoseq.models.inference import token_log_probs
from genoseq.pipelines.pretrain import pretrain


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    pretrain(out=str(run), model={"d_model": 32, "pattern": "MA", "n_heads": 2, "d_state": 16, "headdim": 16},
             window={"length": 128, "batch_size": 4, "windows_per_epoch": 64, "max_val_windows": 4},
             trainer={"max_steps": 12, "val_check_interval": 12, "enable_progress_bar": False})
    return run / "model"


def test_score_matches_the_model(model_dir, tmp_path, ecoli_fasta):
    fasta = tmp_path / "two.fa"
    seq = next(iter_fasta(ecoli_fasta)).sequence
    fasta.write_text(f">a\n{seq[:3000]}\n>b\n{seq[10_000:10_700]}NNNN{seq[20_000:20_300]}\n")
    out = tmp_path / "scores.tsv"
    assert main(["score", "--model", str(model_dir), "--fasta", str(fasta), "--out", str(out),
                 "--chunk_size", "512", "--context", "128", "--progress", "false"]) == 0
    rows = list(csv.DictReader(open(out), delimiter="\t"))
    assert [r["name"] for r in rows] == ["a", "b"]
    assert [int(r["length"]) for r in rows] == [3000, 1004]
    assert int(rows[1]["scored_bases"]) == 1003 - 4  # position 1 and the Ns are not scored
    lm = GenoSeqLM.from_pretrained(model_dir)
    ids = torch.from_numpy(lm.tokenizer.encode(seq[:3000]).astype("int64"))
    expected = float(token_log_probs(lm, ids, chunk_size=512, context=128).double().sum())
    assert math.isclose(float(rows[0]["log_likelihood"]), expected, rel_tol=1e-6)
    assert math.isclose(float(rows[0]["bits_per_base"]), -expected / 2999 / math.log(2), rel_tol=1e-4)
    summary = json.loads((tmp_path / "scores.tsv.json").read_text())
    assert summary["scored_bases"] == 2999 + 999


def test_generate_is_seeded_and_keeps_the_prompt(model_dir, tmp_path):
    outs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.fa"
        assert main(["generate", "--model", str(model_dir), "--prompt", "acgtTG", "--max_new_tokens", "40",
                     "--num_samples", "3", "--top_p", "0.9", "--seed", str(seed), "--out", str(out)]) == 0
        outs.append([r.sequence for r in iter_fasta(out)])
    assert outs[0] == outs[1] != outs[2]
    assert all(len(s) == 46 and s.startswith("ACGTTG") and set(s) <= set("ACGT") for s in outs[0])


def test_generate_bad_prompt_exits_2(model_dir, tmp_path, capsys):
    assert main(["generate", "--model", str(model_dir), "--prompt", "ACGU", "--out", str(tmp_path / "x.fa")]) == 2
    assert "position 4" in capsys.readouterr().err
    assert not (tmp_path / "x.fa").exists()
