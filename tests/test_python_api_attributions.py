"""``genoseq.load(classifier).attributions``: the numbers of ``genoseq interpret attributions``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genoseq
from genoseq.cli import main
from genoseq.errors import InputError
from genoseq.fasta import iter_fasta
from genoseq.models import GenoSeqLM, ModelConfig
from genoseq.models.classifier import SequenceClassifier


@pytest.fixture(scope="module")
def clf_dir(tmp_path_factory):
    torch.manual_seed(0)
    lm = GenoSeqLM(ModelConfig(d_model=16, pattern="HA", n_heads=2, headdim=8, hyena_filter_len=64,
                               hyena_filter_dim=8, hyena_filter_emb=5))
    clf = SequenceClassifier(lm, ["coding", "upstream"], pooling="mean", rc_average=True, head_dropout=0.0)
    with torch.no_grad():
        clf.head.weight.normal_(0, 3.0)
    return clf.save_pretrained(tmp_path_factory.mktemp("api_attr") / "clf")


def test_attributions_match_the_cli(clf_dir, lambda_fasta, tmp_path):
    genome = next(iter_fasta(lambda_fasta)).sequence
    seqs = [genome[1000:1040], genome[5000:5040]]
    model = genoseq.load(clf_dir, device="cpu")
    res = model.attributions(seqs, method="ig", n_shuffles=3, n_steps=8, class_name="upstream")
    assert res.targets == ["upstream", "upstream"] and len(res.contributions) == 2
    assert res.contributions[0].shape == (40, 4)
    one = model.attributions(seqs[0], method="ism")
    assert len(one.ism) == 1 and one.ism[0].shape == (40, 4)
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))
    assert main(["interpret", "attributions", "--model", str(clf_dir), "--input", str(fasta), "--out",
                 str(tmp_path / "out"), "--method", "ig", "--n_shuffles", "3", "--n_steps", "8",
                 "--class_name", "upstream", "--logos", "0", "--progress", "none"]) == 0
    with np.load(tmp_path / "out" / "attributions.npz", allow_pickle=False) as data:
        assert np.allclose(data["contributions"], np.stack(res.contributions), atol=1e-6)
    with pytest.raises(InputError, match="coding, upstream"):
        model.attributions(seqs, class_name="downstream")
