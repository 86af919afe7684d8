"""Python API for annotation: genoseq.load(segmenter).annotate equals genoseq annotate predict."""

from __future__ import annotations

import numpy as np
import torch

import genoseq


def test_annotator_matches_predict(tmp_path, lambda_fasta):
    from genoseq.annotation import Feature, read_annotation
    from genoseq.genome import open_genome
    from genoseq.models import GenoSeqLM, ModelConfig
    from genoseq.models.segmenter import Segmenter
    from genoseq.pipelines.annotate import predict
    from genoseq.tokenizer import Tokenizer

    torch.manual_seed(0)
    lm = GenoSeqLM(ModelConfig(d_model=16, pattern="MA", n_heads=2, headdim=8, d_state=8, chunk_size=32))
    seg = Segmenter(lm, ["intergenic", "CDS_1", "CDS_2", "CDS_3"], {"CDS": "CDS"}, hidden=8, window=256, context=32)
    seg.save_pretrained(tmp_path / "seg")
    annotator = genoseq.load(tmp_path / "seg")
    assert type(annotator).__name__ == "Annotator" and annotator.classes[0] == "intergenic"
    seq = Tokenizer().decode(open_genome(lambda_fasta).fetch("NC_001416.1", 0, 5000))
    fasta = tmp_path / "x.fa"
    fasta.write_text(f">x\n{seq}\n")
    predict(str(tmp_path / "seg"), str(fasta), str(tmp_path / "x.gff3"), progress="none")
    got = annotator.annotate(seq, names=["x"])
    assert got.probs.shape == (2, 5000, 4)
    assert np.allclose(got.probs.astype(np.float32).sum(-1), 1.0, atol=1e-2)
    written = [(f.start, f.end, f.strand, f.type) for f in read_annotation(tmp_path / "x.gff3").features]
    assert [(f.start, f.end, f.strand, f.type) for f in got.features] == written
    assert len(annotator.annotate([seq[:1000], seq[1000:2000]])) == 2
