"""Annotation readers, the interval DataModule, the segmenter, `genoseq annotate`, /v1/annotate,
on slices of the real Prokka annotation (shared data)."""

from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pytest
import torch

from genoseq.annotation import (ClassScheme, class_scheme, label_bases, parse_class_map, read_annotation,
                                read_genbank)
from genoseq.errors import InputError

CONTIGS = ["BAC_00024", "BAC_00025", "BAC_00026", "BAC_00027"]  # 31-39 kb contigs of the draft


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("annotation")


@pytest.fixture(scope="module")
def slice_gff(data_dir, workdir):
    """The shared GFF3 cut to four contigs, with their sequences in a ##FASTA section."""
    lines = gzip.open(data_dir / "ecoli_draft_prokka.gff3.gz", "rt").read().split("\n")
    fasta_at = lines.index("##FASTA")
    keep = ["##gff-version 3"] + [l for l in lines[:fasta_at] if l and not l.startswith("#") and l.split("\t")[0] in CONTIGS]
    records, name = [], None
    for line in lines[fasta_at + 1 :]:
        if line.startswith(">"):
            name = line[1:].split()[0]
        if name in CONTIGS and line:
            records.append(line)
    path = workdir / "slice.gff3"
    path.write_text("\n".join(keep + ["##FASTA"] + records) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny_lm(workdir):
    from genoseq.models import GenoSeqLM, ModelConfig

    torch.manual_seed(0)
    model = GenoSeqLM(ModelConfig(d_model=16, pattern="MA", n_heads=2, headdim=8, d_state=8, chunk_size=32))
    model.save_pretrained(workdir / "lm")
    return workdir / "lm"


@pytest.fixture(scope="module")
def segmenter_dir(tiny_lm, slice_gff, workdir):
    from genoseq.pipelines.annotate import fit

    fit(str(tiny_lm), str(slice_gff), str(workdir / "seg"), holdout="BAC_00027", epochs=1, window=256, context=32,
        hidden=16, max_train_bases=40_000, progress="none")
    return workdir / "seg"


def test_gff3_reader_features_fasta_and_codon_labels(slice_gff):
    ann = read_annotation(slice_gff)
    assert set(ann.contigs()) <= set(CONTIGS) and ann.types()["CDS"] > 50
    genome = ann.genome()
    assert list(genome.contigs) == CONTIGS
    from genoseq.tokenizer import Tokenizer

    tok = Tokenizer()
    cds = [f for f in ann.features if f.type == "CDS" and f.start > 0 and f.end < genome.contigs[f.contig]]
    starts = [tok.decode(genome.fetch(f.contig, f.start, f.start + 3 if f.strand == "+" else f.end, f.strand))[:3]
              for f in cds]
    stops = [tok.decode(genome.fetch(f.contig, f.start, f.end, f.strand))[-3:] for f in cds]
    assert np.mean([s in ("ATG", "GTG", "TTG") for s in starts]) > 0.9  # 0-based half-open coordinates
    assert all(s in ("TAA", "TAG", "TGA") for s in stops)
    scheme = class_scheme(ann.features)
    labels, stats = label_bases(ann.features, genome.contigs, scheme)
    f = next(x for x in cds if x.strand == "-")
    codon = labels[f.contig][1, f.start:f.end]  # - strand: codon position 1 at the gene's 3'-most first codon base
    assert codon[-1] == scheme.classes.index("CDS_1") and codon[-3] == scheme.classes.index("CDS_3")
    assert stats.features == len(ann.features)


def test_bad_annotations_name_file_and_line(slice_gff, workdir):
    bad = workdir / "bad.gff3"
    text = slice_gff.read_text().split("\n")
    text[3] = "\t".join(text[3].split("\t")[:3] + ["x"] + text[3].split("\t")[4:])
    bad.write_text("\n".join(text))
    with pytest.raises(InputError, match=r"bad.gff3, line 4"):
        read_annotation(bad)
    ann = read_annotation(slice_gff)
    # contigs the genome lacks: counted and warned; none matching: an error
    with pytest.warns(UserWarning, match="contigs the genome lacks"):
        label_bases(ann.features, {"BAC_00024": 38955}, class_scheme(ann.features), path="a.gff3")
    with pytest.raises(InputError, match="no annotated feature"):
        label_bases(ann.features, {"other": 100}, class_scheme(ann.features))
    # past the contig end: clipped, warned with the line
    with pytest.warns(UserWarning, match=r"line \d+: \d+ features extend past"):
        label_bases(ann.features, {"BAC_00024": 20000}, class_scheme(ann.features))
    # a mapping leaving one class
    with pytest.raises(InputError, match="single class"):
        class_scheme(ann.features, "CDS=-,tRNA=-,rRNA=-,tmRNA=-")
    with pytest.raises(InputError, match="not type=class"):
        parse_class_map("CDS")


def test_overlap_rule_rna_over_cds():
    from genoseq.annotation import Feature

    feats = [Feature("c", 0, 30, "+", "CDS", phase=0), Feature("c", 10, 20, "+", "tRNA"), Feature("c", 25, 40, "+", "CDS", phase=0)]
    scheme = class_scheme(feats)
    labels, stats = label_bases(feats, {"c": 50}, scheme)
    assert (labels["c"][0, 10:20] == scheme.classes.index("tRNA")).all()
    assert stats.overlap_bases == 10 and stats.cds_overlap_bases == 5
    assert labels["c"][0, 25] == scheme.classes.index("CDS_1")  # the later CDS takes the shared bases
    assert (labels["c"][1] == 0).all()


def test_genbank_reader(workdir):
    from Bio.Seq import Seq
    from Bio.SeqFeature import CompoundLocation, FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord
    from Bio import SeqIO

    rec = SeqRecord(Seq("ATG" + "AAA" * 10 + "TAA" + "C" * 20), id="X1", name="X1", annotations={"molecule_type": "DNA"})
    loc = CompoundLocation([FeatureLocation(0, 10, 1), FeatureLocation(15, 36, 1)])
    rec.features.append(SeqFeature(loc, type="CDS", qualifiers={"gene": ["g"], "product": ["p"]}))
    path = workdir / "x.gb"
    SeqIO.write(rec, path, "genbank")
    ann = read_genbank(path)
    assert [(f.start, f.end, f.phase) for f in ann.features] == [(0, 10, 0), (15, 36, 2)]
    assert ann.features[0].name == "g" and ann.sequences["X1"].startswith("ATG")


def test_interval_datamodule_targets_splits_and_rc(slice_gff, workdir):
    import pyBigWig

    from genoseq.datamodules.intervals import IntervalDataModule

    ann = read_annotation(slice_gff)
    genome = ann.genome()
    dm = IntervalDataModule(genome, annotation=ann, target="segmentation", window_length=512, jitter=20,
                            rc_augment=True, test_contigs=["BAC_00027"], val_fraction=0.2, block_length=10_000)
    dm.setup()
    train, val = dm.examples["train"], dm.examples["val"]
    # no training base (jitter included) inside a validation or test region
    for i in range(len(train)):
        contig = dm.contig_names[train.cid[i]]
        assert contig != "BAC_00027"
        for r in dm.regions["val"] + dm.regions["test"]:
            assert r.contig != contig or train.end[i] + 20 <= r.start or train.start[i] - 20 >= r.end
    ds = dm.train_dataloader().dataset
    fwd, rev = ds[(0, 0, 0)], ds[(0, 0, 1)]
    assert torch.equal(rev["labels"][0], fwd["labels"][1].flip(0)) and torch.equal(rev["labels"][1], fwd["labels"][0].flip(0))
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].shape == (16, 2, 512) and len(val) > 0
    # BED intervals with a score and a bigWig
    bed = workdir / "x.bed"
    bed.write_text("".join(f"BAC_00024\t{s}\t{s + 200}\tr{s}\t{s / 1000}\t+\n" for s in range(0, 30000, 500)))
    bw_path = workdir / "x.bw"
    bw = pyBigWig.open(str(bw_path), "w")
    bw.addHeader([("BAC_00024", 38955)])
    bw.addEntries("BAC_00024", 0, values=(np.arange(38955) % 7).astype(float), span=1, step=1)
    bw.close()
    dm = IntervalDataModule(genome, intervals=bed, target="value", val_fraction=0.2, block_length=5000)
    dm.setup()
    b = next(iter(dm.train_dataloader()))
    assert b["targets"].shape[1] == 1 and torch.allclose(b["targets"][:, 0] * 1000 % 500, torch.zeros(len(b["targets"])))
    with pytest.warns(UserWarning, match="no bigWig data"):
        dm = IntervalDataModule(genome, intervals=bed, target="signal", bigwig=str(bw_path))
        dm.setup()
    ex = dm.examples["train"]
    item = dm.train_dataloader().dataset[(0, 0, 0)]
    s = int(ex.start[0])
    assert item["targets"][0] == pytest.approx(float(np.mean(np.arange(s, s + 200) % 7)), rel=1e-5)
    from genoseq.annotation import BigWigSignal

    with pytest.raises(InputError, match="none of the genome's contigs"):
        BigWigSignal(bw_path, {"other": 10})
    with pytest.raises(InputError, match="stranded"):
        IntervalDataModule(genome, intervals=bed, stranded=True, rc_augment=True)


def test_segmenter_strands_are_reverse_complement_equivariant(tiny_lm):
    from genoseq.models import GenoSeqLM
    from genoseq.models.segmenter import Segmenter
    from genoseq.tokenizer import Tokenizer

    seg = Segmenter(GenoSeqLM.from_pretrained(tiny_lm), ["intergenic", "CDS_1", "CDS_2", "CDS_3"], hidden=8).eval()
    ids = torch.from_numpy(Tokenizer().encode("ACGTTGCAATGCCGTA" * 8).astype(np.int64))[None]
    with torch.no_grad():
        a, b = seg(ids), seg(Tokenizer().reverse_complement(ids))
    assert torch.allclose(a[:, 0], b[:, 1].flip(1), atol=1e-5) and torch.allclose(a[:, 1], b[:, 0].flip(1), atol=1e-5)


def test_windowed_probabilities_do_not_depend_on_the_block(segmenter_dir, slice_gff):
    from genoseq.models.segmenter import Segmenter
    from genoseq.tasks.genome_annotation import contig_probabilities

    seg = Segmenter.from_pretrained(segmenter_dir)
    ids = read_annotation(slice_gff).genome().fetch("BAC_00027", 0, 6000)
    whole = contig_probabilities(seg, ids, block=6000)
    blocks = contig_probabilities(seg, ids, block=1000)
    assert np.abs(whole.astype(np.float32) - blocks.astype(np.float32)).max() < 2e-3


def test_snap_gene_to_codons():
    from genoseq.tasks.genome_annotation import snap_gene

    seq = b"CCTAA" + b"CCATG" + b"CTAGCT" * 20 + b"TGA" + b"CCCC"
    assert snap_gene(seq, 20, 110, 1) == (7, 133, False)  # the ATG, and the stop after the run
    assert snap_gene(seq, 20, 110, 2) is None  # stops inside the run, no start in reach: no gene
    start, end, _ = snap_gene(seq, 20, 110, None)  # the frame open longest is chosen
    assert (end - start) % 3 == 0 and end - start >= 90


def test_cli_fit_predict_evaluate_and_api(segmenter_dir, slice_gff, workdir):
    from fastapi.testclient import TestClient

    from genoseq.api import create_app
    from genoseq.cli import main

    info = json.loads((segmenter_dir / "training.json").read_text())
    assert info["holdout_contigs"] == ["BAC_00027"] and info["train_bases"] == 40_000
    read_annotation(slice_gff).write_fasta(workdir / "slice.fa")
    out = workdir / "pred.gff3"
    assert main(["annotate", "predict", "--segmenter", str(segmenter_dir), "--fasta",
                 str(workdir / "slice.fa"), "--out", str(out), "--contigs", "BAC_00027", "--progress", "none"]) == 0
    assert out.read_text().startswith("##gff-version 3")
    assert (workdir / "pred.plus.bedgraph").read_text().startswith("track type=bedGraph")
    pred = read_annotation(out)  # our own GFF3 reads back
    assert all(f.contig == "BAC_00027" for f in pred.features)
    metrics = workdir / "m.json"
    assert main(["annotate", "evaluate", "--segmenter", str(segmenter_dir), "--annotation", str(slice_gff),
                 "--out", str(metrics), "--progress", "none"]) == 0
    m = json.loads(metrics.read_text())
    assert 0.0 <= m["per_base"]["CDS"]["f1"] <= 1.0 and m["features"]["CDS"]["true"] > 5
    # bad input: nothing written
    assert main(["annotate", "predict", "--segmenter", str(segmenter_dir), "--fasta", str(workdir / "slice.fa"),
                 "--out", str(workdir / "none.gff3"), "--track", "nope", "--progress", "none"]) == 2
    assert not list(workdir.glob("none*"))
    seq = read_annotation(slice_gff).sequences["BAC_00027"][:3000]
    with TestClient(create_app(model=str(workdir / "lm"), segmenter=str(segmenter_dir), device="cpu",
                               load_in_background=False)) as c:
        r = c.post("/v1/annotate", json={"sequences": [seq], "probabilities": True})
        assert r.status_code == 200, r.text
        body = r.json()["annotations"][0]
        assert body["length"] == 3000 and len(body["probabilities"]["+"]["intergenic"]) == 3000
        assert c.post("/v1/annotate", json={"sequences": ["ACGX"]}).status_code == 422
    import genoseq

    annot = genoseq.load(segmenter_dir)
    one = annot.annotate(seq)
    assert one.probs.shape == (2, 3000, len(annot.classes))
    assert [(f.start, f.end, f.strand) for f in one.features] == [(f["start"], f["end"], f["strand"]) for f in body["features"]]


def test_fine_tuning_killed_with_sigkill_resumes_to_the_same_weights(tiny_lm, slice_gff, workdir):
    """annotate fit --method finetune killed with SIGKILL after its first epoch's checkpoint and
    rerun with --resume true ends with the weights and history of an uninterrupted run."""
    from genoseq.models.segmenter import Segmenter
    from genoseq.pipelines.annotate import fit
    from genoseq.models.resume import checkpoint_dir
    from sigkill import sigkill_at_epoch

    options = dict(holdout="BAC_00027", method="finetune", epochs=2, patience=2, window=256, context=32, hidden=16,
                   batch_size=16, accelerator="cpu", progress="none")
    straight = fit(str(tiny_lm), str(slice_gff), str(workdir / "ft_straight"), **options)
    out = workdir / "ft_resumed"
    sigkill_at_epoch("genoseq.pipelines.annotate.fit", [tiny_lm, slice_gff, out], options, 1, workdir / "killed.log")
    assert (checkpoint_dir(out) / "last.ckpt").is_file() and not out.exists()
    resumed = fit(str(tiny_lm), str(slice_gff), str(out), resume=True, **options)
    assert resumed["history"] == straight["history"]
    a, b = Segmenter.from_pretrained(workdir / "ft_straight"), Segmenter.from_pretrained(out)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not checkpoint_dir(out).exists()
