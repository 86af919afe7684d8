"""genoseq align: encoder, index, mapping and evaluation on a 100 kb slice of E. coli.

The slice (K-12 MG1655 4,150,000-4,250,000) holds the rrnB and rrnE rRNA operons, real
near-identical repeats, so a read from them has two equally good placements. A tiny encoder
(the default k-mer embedding bag) is trained for a few dozen steps once per session, and a
sequence-model encoder as long where its path is tested. Tests of the aligner and SAM output
retrieve every index entry (``top_k`` = all), so they check placement, strand, CIGAR and MAPQ exactly
whatever the tiny encoder's quality; the encoder's own retrieval is checked separately.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pysam
import pytest

from genoseq.cli import main
from genoseq.errors import InputError
from genoseq.genome import MemoryGenome
from genoseq.pipelines import align as jobs
from genoseq.tasks import align
from genoseq.tasks.align import ErrorProfile, mutate, simulate_reads
from genoseq.tokenizer import Tokenizer

SLICE_START, SLICE_END = 4_150_000, 4_250_000
CONTIG = "ecoli_slice"
READ_LEN = 250
TOK = Tokenizer()
RC = str.maketrans("ACGT", "TGCA")


def revcomp(seq: str) -> str:
    return seq.translate(RC)[::-1]


def write_fastq(path, reads) -> str:
    with open(path, "w") as fh:
        for name, seq, qual in reads:
            fh.write(f"@{name}\n{seq}\n+\n{qual or 'I' * len(seq)}\n")
    return str(path)


@pytest.fixture(scope="session")
def slice_fa(tmp_path_factory, data_dir):
    seq = "".join(line.strip() for line in gzip.open(data_dir / "ecoli_k12_mg1655.fa.gz", "rt") if not line.startswith(">"))
    part = seq[SLICE_START:SLICE_END].upper()
    path = tmp_path_factory.mktemp("align") / "slice.fa"
    path.write_text(f">{CONTIG}\n" + "\n".join(part[i:i + 80] for i in range(0, len(part), 80)) + "\n")
    return path, part


@pytest.fixture(scope="session")
def encoder_dir(slice_fa, tmp_path_factory):
    out = tmp_path_factory.mktemp("align") / "encoder"
    metrics = jobs.train(str(slice_fa[0]), str(out), steps=30, batch_size=64, val_pairs=512, progress=False,
                         embed_dim=128, seed=0)
    return out, metrics


@pytest.fixture(scope="session")
def model_encoder_dir(slice_fa, tmp_path_factory):
    """A sequence-model encoder (kmer 0): two small Hyena blocks, a few dozen steps."""
    out = tmp_path_factory.mktemp("align") / "model_encoder"
    metrics = jobs.train(str(slice_fa[0]), str(out), kmer=0, steps=30, batch_size=32, val_pairs=512, progress=False,
                         model={"d_model": 32, "pattern": "HH", "hyena_filter_len": 256},
                         embed_dim=64, head_hidden=256, seed=0)
    return out, metrics


@pytest.fixture(scope="session")
def index_dir(encoder_dir, slice_fa, tmp_path_factory):
    out = tmp_path_factory.mktemp("align") / "index"
    jobs.index(str(encoder_dir[0]), str(slice_fa[0]), str(out), progress=False)
    return out


def all_entries(index_dir) -> int:
    return json.loads((index_dir / "manifest.json").read_text())["n_entries"]


def find_repeat(seq: str, length: int = READ_LEN) -> tuple[int, int]:
    """Two starts of an exact repeat of ``length`` bases, far apart (rRNA operons)."""
    seen: dict[str, int] = {}
    for i in range(len(seq) - length):
        key = seq[i:i + length]
        if key in seen and i - seen[key] > 5 * length:
            return seen[key], i
        seen.setdefault(key, i)
    raise AssertionError("no repeat found in the slice")


# ---------------------------------------------------------------------- simulator and encoder
def test_mutate_error_free_and_deletions():
    rng = np.random.default_rng(0)
    source = TOK.encode("ACGTACGTTTGACCA" * 20)
    read, consumed = mutate(source, 100, ErrorProfile(0, 0, 0), rng)
    assert np.array_equal(read, source[:100]) and consumed == 100
    read, consumed = mutate(source, 100, ErrorProfile(0, 0, 0.2), rng)
    assert len(read) == 100 and consumed > 100  # deletions consume extra source bases
    read, _ = mutate(source, 300, ErrorProfile(1.0 - 1e-9, 0, 0), rng)
    assert not np.any(read == source[:300])  # a substitution always changes the base


@pytest.mark.parametrize("which", ["kmer", "model"])
def test_encoder_learns_and_round_trips(which, encoder_dir, model_encoder_dir, slice_fa, tmp_path):
    from genoseq.models.read_encoder import ReadEncoder

    out, metrics = encoder_dir if which == "kmer" else model_encoder_dir
    dim = 128 if which == "kmer" else 64
    assert metrics["steps"] == 30
    assert metrics["encoder"]["kmer"] == (6 if which == "kmer" else 0)
    assert metrics["val_top1_of_256"] > (0.6 if which == "kmer" else 0.05)  # chance is 1/256
    enc = ReadEncoder.from_pretrained(out)
    assert (enc.config is None) == (which == "kmer")
    seqs = [TOK.encode(slice_fa[1][1000:1500]), TOK.encode(slice_fa[1][5000:5250])]
    vec = enc.embed(seqs)
    assert vec.shape == (2, dim) and np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    enc.save_pretrained(tmp_path / "copy")
    assert np.array_equal(ReadEncoder.from_pretrained(tmp_path / "copy").embed(seqs), vec)
    assert not any(p.suffix in (".pt", ".ckpt", ".pkl") for p in out.iterdir())


def test_kmer_codes_by_hand():
    """Base-4 codes with the first base most significant; k-mers over N or padding are left out."""
    import torch

    from genoseq.models.read_encoder import ReadEncoder

    enc = ReadEncoder(None, encoder={"kmer": 2, "embed_dim": 4})
    ids = torch.tensor(np.stack([TOK.encode("ACGNTT"), np.r_[TOK.encode("TGA"), [0, 0, 0]]]).astype(np.int64))
    codes, valid = enc.kmer_codes(ids, ids != 0)
    # AC = 0*4+1, CG = 1*4+2, GN and NT have an N, TT = 15; TG = 14, GA = 8, then padding
    assert codes[0][valid[0]].tolist() == [1, 6, 15] and valid[0].tolist() == [True, True, False, False, True]
    assert codes[1][valid[1]].tolist() == [14, 8] and valid[1].tolist() == [True, True, False, False, False]


def test_kmer_bag_is_the_normalised_sum_of_its_kmer_vectors():
    import torch

    from genoseq.models.read_encoder import ReadEncoder

    torch.manual_seed(0)
    enc = ReadEncoder(None, encoder={"kmer": 3, "embed_dim": 8})
    table = enc.kmer_embedding.detach().numpy()
    seqs = ["ACGTTGCA", "GGGNGGGG", "AC"]
    expected = []
    for seq in seqs:
        rows = [sum("ACGT".index(b) * 4 ** (2 - j) for j, b in enumerate(seq[i:i + 3]))
                for i in range(len(seq) - 2) if "N" not in seq[i:i + 3]]
        total = table[rows].sum(0) if rows else np.zeros(8, np.float32)
        expected.append(total / max(np.linalg.norm(total), 1e-12))
    got = enc.embed([TOK.encode(s) for s in seqs])
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-6)
    assert not got[2].any()  # shorter than k: no k-mer, the zero vector


def test_kmer_encoder_refuses_a_backbone(slice_fa, tmp_path, capsys):
    from genoseq.models.lm import GenoSeqLM
    from genoseq.models.config import ModelConfig
    from genoseq.models.read_encoder import ReadEncoder

    with pytest.raises(ValueError, match="no backbone"):
        ReadEncoder.from_lm(GenoSeqLM(ModelConfig(d_model=16, pattern="H", hyena_filter_len=64)), encoder={"kmer": 6})
    common = ["align", "train", "--reference", str(slice_fa[0]), "--out", str(tmp_path / "enc"), "--steps", "1"]
    assert main([*common, "--init", str(tmp_path), "--kmer", "6"]) == 2
    assert "--kmer 0" in capsys.readouterr().err
    assert main([*common, "--model.d_model", "16"]) == 2
    assert "--kmer 0" in capsys.readouterr().err
    assert main([*common, "--kmer", "11"]) == 2


def test_encoder_from_pretrained_lm_copies_backbone():
    import torch

    from genoseq.models.config import ModelConfig
    from genoseq.models.lm import GenoSeqLM
    from genoseq.models.read_encoder import ReadEncoder

    lm = GenoSeqLM(ModelConfig(d_model=32, pattern="HA", n_heads=4, hyena_filter_len=64))
    enc = ReadEncoder.from_lm(lm, encoder={"embed_dim": 16, "head_hidden": 32})
    for (name, a), (_, b) in zip(lm.backbone.state_dict().items(), enc.backbone.state_dict().items()):
        assert torch.equal(a, b), name


def test_search_recall(index_dir, slice_fa, tmp_path):
    ref = MemoryGenome.from_files(str(slice_fa[0]))
    reads = simulate_reads(ref.as_dict(), 200, READ_LEN, ErrorProfile(0.01, 0.0005, 0.0005), seed=7)
    recall = jobs.search_recall(index_dir, write_fastq(tmp_path / "r.fq", reads), ks=(1, 5, 20))
    # a read has 1-2 true entries among ~800 (chance recall@20 is about 4%); reads from the two
    # rRNA operons have a second copy that ranks as high as the true one
    assert recall["recall@1"] >= 0.8 and recall["recall@5"] >= 0.95
    assert recall["recall@1"] <= recall["recall@5"] <= recall["recall@20"]


# ---------------------------------------------------------------------- index
def test_index_round_trip(index_dir, encoder_dir, slice_fa):
    idx = align.load_index(index_dir)
    m = idx.manifest
    assert m["fragment_length"] == 500 and m["overlap"] == 250 and m["index_type"] == "flat"
    assert m["contigs"] == [{"name": CONTIG, "length": len(slice_fa[1]),
                             "md5": __import__("hashlib").md5(slice_fa[1].encode()).hexdigest()}]
    assert idx.start[0] == 0 and idx.end[-1] == len(slice_fa[1])
    assert np.all(np.diff(idx.start) <= 250) and np.all(idx.end - idx.start == 500)
    assert idx.faiss.ntotal == 2 * len(idx.start)
    # entries 2i / 2i+1 are fragment i's forward strand and reverse complement
    i = 37
    fwd = TOK.encode(slice_fa[1][idx.start[i]:idx.end[i]])
    vec = idx.encoder.embed([fwd, TOK.reverse_complement(fwd)])
    stored = np.stack([idx.faiss.reconstruct(2 * i), idx.faiss.reconstruct(2 * i + 1)])
    assert np.allclose(vec, stored, atol=1e-5)
    assert idx.faiss.search(vec[:1], 1)[1][0, 0] == 2 * i


def test_clip_and_extend():
    from genoseq import sam

    ref = b"ACGTACGTTTGACCAGGT"
    # 3 bases hanging over the left end placed as matches + insertions by an edit-distance aligner
    cigar = sam.parse_cigar("1=2I10=")
    query = b"A" + b"GG" + ref[1:11]
    assert sam.clip_and_extend(cigar, query, ref, 0, clip_penalty=1) == (sam.parse_cigar("3S10="), 1)
    # an existing clip grows back over matching bases; the query length is kept
    assert sam.clip_and_extend(sam.parse_cigar("1S9="), ref[:10], ref, 1) == (sam.parse_cigar("10="), 0)
    # a single mismatch near the end is kept, not clipped
    cigar = sam.parse_cigar("2=1X10=")
    assert sam.clip_and_extend(cigar, b"ACTTACGTTTGAC", ref, 0) == (cigar, 0)


def test_fragment_starts_cover_contig():
    starts = align.fragment_starts(1234, 500, 250)
    assert starts.tolist() == [0, 250, 500, 734]
    assert align.fragment_starts(300, 500, 250).tolist() == [0]
    with pytest.raises(ValueError):
        align.fragment_starts(1000, 500, 500)


# ---------------------------------------------------------------------- map: exact placements
@pytest.fixture(scope="session")
def designed(slice_fa, index_dir, tmp_path_factory):
    """Hand-made reads with known placement, mapped once to SAM and once to BAM."""
    seq = slice_fa[1]
    p = 20_000
    exact = seq[p:p + READ_LEN]
    # one insertion after 100 bases and one deletion 50 bases later, at unambiguous spots
    q = next(q for q in range(30_000, 40_000)
             if seq[q + 149] != seq[q + 150] != seq[q + 151] and seq[q + 99] != seq[q + 100])
    ins = next(b for b in "ACGT" if b not in (seq[q + 99], seq[q + 100]))
    indel = seq[q:q + 100] + ins + seq[q + 100:q + 150] + seq[q + 151:q + 250]
    rng = np.random.default_rng(5)
    random_reads = ["".join(rng.choice(list("ACGT"), READ_LEN)) for _ in range(3)]
    overhang = "".join(rng.choice(list("ACGT"), 20)) + seq[:230]
    r1, r2 = find_repeat(seq)
    reads = [
        ("exact_fwd", exact, None), ("exact_rev", revcomp(exact), None), ("indel", indel, None),
        ("indel_rev", revcomp(indel), None), ("overhang", overhang, None), ("repeat", seq[r1:r1 + READ_LEN], None),
        *[(f"random{i}", r, None) for i, r in enumerate(random_reads)],
    ]
    tmp = tmp_path_factory.mktemp("designed")
    fq = write_fastq(tmp / "designed.fq", reads)
    k = all_entries(index_dir)
    sam_summary = jobs.map_reads(str(index_dir), fq, str(tmp / "out.sam"), top_k=k, threads=2, progress=False)
    jobs.map_reads(str(index_dir), fq, str(tmp / "out.bam"), top_k=k, threads=1, progress=False)
    records = {r.query_name: r for r in pysam.AlignmentFile(str(tmp / "out.sam"), "r")}
    return {"records": records, "p": p, "q": q, "exact": exact, "indel": indel, "repeat": (r1, r2),
            "sam": tmp / "out.sam", "bam": tmp / "out.bam", "summary": sam_summary}


def test_exact_read_both_strands(designed):
    recs, p = designed["records"], designed["p"]
    fwd, rev = recs["exact_fwd"], recs["exact_rev"]
    assert (fwd.flag, fwd.reference_name, fwd.reference_start, fwd.cigarstring) == (0, CONTIG, p, "250=")
    assert fwd.get_tag("NM") == 0 and fwd.mapping_quality == 60
    assert (rev.flag, rev.reference_start, rev.cigarstring) == (16, p, "250=")
    assert rev.query_sequence == designed["exact"]  # SEQ is stored on the forward strand


def test_indel_read_cigar_and_nm(designed):
    recs, q = designed["records"], designed["q"]
    for name, flag in (("indel", 0), ("indel_rev", 16)):
        rec = recs[name]
        assert rec.flag == flag and rec.reference_start == q
        assert rec.cigarstring == "100=1I50=1D99="
        assert rec.get_tag("NM") == 2 and rec.get_tag("AS") == -2
        assert rec.query_sequence == designed["indel"]


def test_overhang_is_soft_clipped(designed):
    rec = designed["records"]["overhang"]
    assert rec.reference_start == 0 and rec.cigarstring == "20S230="
    assert rec.get_tag("NM") == 0


def test_rescue_searches_unmapped_reads_deeper(index_dir, slice_fa, designed):
    """A read left unmapped by its top-k candidates is searched again rescue_k deep and placed;
    mapped reads and rescue_k <= top_k leave the records as they are."""
    aligner = align.Aligner.open(index_dir, top_k=1, rescue_k=all_entries(index_dir))
    p, seq = designed["p"], designed["exact"]
    # the record a first pass writes when the true fragment was not among the candidates
    missed = align.AlignedRead("exact_fwd", 4, -1, -1, 0, None, seq.encode(), None, None, None, None)
    (rescued,), count = aligner.rescue([missed])
    assert count == 1 and (rescued.flag, rescued.pos, rescued.nm, rescued.mapq) == (0, p, 0, 60)
    assert aligner.rescue([rescued]) == ([rescued], 0)
    assert aligner.with_options(rescue_k=1).rescue([missed]) == ([missed], 0)
    random_read = designed["records"]["random0"].query_sequence.encode()
    unplaced = align.AlignedRead("random0", 4, -1, -1, 0, None, random_read, None, None, None, None)
    assert aligner.rescue([unplaced]) == ([unplaced], 0)  # nothing to find: still unmapped


def test_ties_between_repeat_copies_spread_by_read_name():
    """Equally good loci: the choice follows the read name (stable), both copies get reads, and
    the other copy is the second best (MAPQ 0); a worse locus never wins."""
    hits = [(3, 0, 0, 5000, 5250), (3, 0, 0, 5001, 5251), (3, 0, 0, 90000, 90250), (7, 0, 1, 200, 450)]
    picks = {align.mapper._best_two(list(hits), 250, f"read{i}")[0][3] for i in range(40)}
    assert picks == {5000, 90000}
    best, second = align.mapper._best_two(list(hits), 250, "read7")
    assert best == align.mapper._best_two(list(reversed(hits)), 250, "read7")[0]
    assert second[0] == 3 and abs(second[3] - best[3]) > 125
    best, second = align.mapper._best_two([(4, 0, 0, 10, 260), (2, 0, 1, 900, 1150)], 250, "x")
    assert (best[0], second[0]) == (2, 4)


def test_random_reads_unmapped(designed):
    for i in range(3):
        rec = designed["records"][f"random{i}"]
        assert rec.is_unmapped and rec.reference_name is None and rec.mapping_quality == 0
    assert designed["summary"]["unmapped"] == 3


def test_repeat_read_mapq0(designed):
    rec = designed["records"]["repeat"]
    assert rec.reference_start in designed["repeat"] and rec.cigarstring == "250="
    assert rec.mapping_quality == 0 and rec.get_tag("XS") == rec.get_tag("AS") == 0


def test_sam_and_bam_valid(designed):
    # samtools quickcheck / flagstat: the samtools bundled in pysam (raises SamtoolsError on failure)
    for path in (designed["sam"], designed["bam"]):
        pysam.quickcheck("-v", str(path))
        flagstat = pysam.flagstat(str(path))
        assert flagstat.startswith("9 + 0 in total") and "6 + 0 mapped" in flagstat
    with pysam.AlignmentFile(str(designed["bam"]), "rb") as bam:
        assert bam.header["HD"]["SO"] == "coordinate" and bam.check_index()
        starts = [r.reference_start for r in bam if not r.is_unmapped]
        assert starts == sorted(starts)
        assert bam.header["PG"][0]["ID"] == "genoseq-align"
        (sq,) = bam.header["SQ"]
        assert (sq["SN"], sq["LN"], len(sq["M5"])) == (CONTIG, SLICE_END - SLICE_START, 32)


# ---------------------------------------------------------------------- simulated and real reads
def test_map_simulated_reads_accuracy(slice_fa, index_dir, tmp_path):
    ref = MemoryGenome.from_files(str(slice_fa[0]))
    reads = simulate_reads(ref.as_dict(), 60, READ_LEN, ErrorProfile(0.01, 0.0005, 0.0005), seed=11)
    fq = write_fastq(tmp_path / "sim.fq", reads)
    jobs.map_reads(str(index_dir), fq, str(tmp_path / "sim.sam"), top_k=all_entries(index_dir), progress=False)
    result = jobs.evaluate_sam(tmp_path / "sim.sam")
    assert result["reads"] == 60 and result["mapped"] == 60
    assert result["fraction_correct"] >= 0.9  # the misses are reads inside the rRNA repeats
    assert result["precision_mapq20"] == 1.0


def test_shared_reads_inside_slice(data_dir, index_dir, tmp_path):
    """The shared simulated reads that fall in the slice, renamed to slice coordinates."""
    reads = []
    with gzip.open(data_dir / "ecoli_reads_250bp.fq.gz", "rt") as fh:
        while header := fh.readline().strip():
            seq, _, qual = fh.readline().strip(), fh.readline(), fh.readline().strip()
            truth = align.parse_truth(header[1:])
            if SLICE_START < truth.pos1 - 1 < SLICE_END - 2 * READ_LEN:
                rest = header[1:].split("_", 2)[2]
                reads.append((f"{CONTIG}_{truth.pos1 - SLICE_START}_{rest}", seq, qual))
    assert len(reads) > 50
    fq = write_fastq(tmp_path / "shared.fq", reads)
    jobs.map_reads(str(index_dir), fq, str(tmp_path / "shared.sam"), top_k=all_entries(index_dir), progress=False)
    result = jobs.evaluate_sam(tmp_path / "shared.sam")
    assert result["reads"] == len(reads) == result["mapped"]
    # the misses are reads from the two rRNA operons, placed in the other copy with MAPQ 0
    assert result["fraction_correct"] >= 0.85 and result["precision_mapq20"] == 1.0


# ---------------------------------------------------------------------- evaluation
def test_parse_truth():
    t = align.parse_truth("K-12-MG1655_1885062_1_0_1_0_0_2:0:0_0:0:0_0/1")
    assert t == align.Truth("K-12-MG1655", 1885062, False)
    t = align.parse_truth("chr_1_un_77_100_1_0_0_0_0:0:0_0:0:0_5/1", contigs=["chr_1_un", "chr_1"])
    assert t == align.Truth("chr_1_un", 77, True)
    with pytest.raises(Exception, match="truth"):
        align.parse_truth("read42")


def write_hand_sam(path, rows) -> None:
    """rows: (name, contig id, 0-based start, reverse, cigar, flag extra, mapq) on chrA/chrB."""
    header = {"HD": {"VN": "1.6"}, "SQ": [{"SN": "chrA", "LN": 10_000}, {"SN": "chrB", "LN": 10_000}]}
    with pysam.AlignmentFile(str(path), "wh", header=header) as out:
        for name, ref_id, start, reverse, cigar, extra, mapq in rows:
            seg = pysam.AlignedSegment(out.header)
            seg.query_name, seg.query_sequence = name, "A" * 250
            seg.flag = extra | (16 if reverse else 0)
            seg.reference_id, seg.reference_start, seg.mapping_quality = ref_id, start, mapq
            if cigar:
                seg.cigarstring = cigar
            out.write(seg)


def test_evaluate_sam_hand_made_records(tmp_path):
    path = tmp_path / "hand.sam"
    rows = [
        ("chrA_1001_1250_0_1_0_0_0:0:0_0:0:0_a/1", 0, 1000, False, "250M", 0, 60),  # exact: correct
        ("chrA_1001_1250_1_0_0_0_0:0:0_0:0:0_b/1", 0, 1009, True, "250M", 0, 60),  # 9 bp off, reverse: correct
        ("chrA_1001_1250_0_1_0_0_0:0:0_0:0:0_c/1", 0, 1011, False, "250M", 0, 60),  # 11 bp off: wrong
        ("chrA_1001_1250_0_1_0_0_0:0:0_0:0:0_d/1", 0, 1000, True, "250M", 0, 60),  # wrong strand
        ("chrA_1001_1250_0_1_0_0_0:0:0_0:0:0_e/1", 1, 1000, False, "250M", 0, 60),  # wrong contig
        ("chrA_1001_1250_0_1_0_0_0:0:0_0:0:0_f/1", 0, 1030, False, "30S220M", 0, 5),  # clip added back: correct
        ("chrA_1001_1250_0_1_0_0_0:0:0_0:0:0_g/1", -1, -1, False, None, 4, 0),  # unmapped
        ("chrA_1001_1250_0_1_0_0_0:0:0_0:0:0_a/1", 0, 5000, False, "250M", 256, 0),  # secondary: ignored
    ]
    write_hand_sam(path, rows)
    result = jobs.evaluate_sam(path)
    assert result == {"reads": 7, "mapped": 6, "correct": 3, "fraction_correct": round(3 / 7, 5),
                      "precision_mapped": 0.5, "mapq20": 5, "precision_mapq20": 0.4}


def test_compare_sams_counts_disagreements_and_repeat_ties(tmp_path):
    name = "chrA_1001_1250_0_1_0_0_0:0:0_0:0:0_{}/1"
    ours, theirs = tmp_path / "ours.sam", tmp_path / "theirs.sam"
    write_hand_sam(ours, [(name.format("a"), 0, 1000, False, "250M", 0, 0),    # right, a tie
                          (name.format("b"), 0, 1000, False, "250M", 0, 60),   # right, unique
                          (name.format("c"), 0, 7000, False, "250M", 0, 0),    # wrong, a tie
                          (name.format("d"), 0, 1000, False, "250M", 0, 60)])  # both right
    write_hand_sam(theirs, [(name.format("a")[:-2], 0, 7000, False, "250M", 0, 0),  # bwa drops /1
                            (name.format("b")[:-2], -1, -1, False, None, 4, 0),
                            (name.format("c")[:-2], 0, 1000, False, "250M", 0, 0),
                            (name.format("d")[:-2], 0, 1000, False, "250M", 0, 60)])
    assert jobs.compare_sams(ours, theirs) == {"only_ours_correct": 2, "only_ours_correct_mapq0_in_both": 1,
                                               "only_theirs_correct": 1, "only_theirs_correct_mapq0_in_both": 1}
    write_hand_sam(theirs, [(name.format("a"), 0, 1000, False, "250M", 0, 0)])
    with pytest.raises(InputError, match="different reads"):
        jobs.compare_sams(ours, theirs)


# ---------------------------------------------------------------------- CLI
def test_cli_bad_inputs_exit_2(index_dir, slice_fa, tmp_path, capsys):
    fq = write_fastq(tmp_path / "one.fq", [("r1", slice_fa[1][:READ_LEN], None)])
    assert main(["align", "map", "--index", str(tmp_path / "no_index"), "--reads", fq, "--out", str(tmp_path / "o.sam")]) == 2
    assert main(["align", "map", "--index", str(index_dir), "--reads", fq, "--out", str(tmp_path / "o.txt")]) == 2
    bad_fq = tmp_path / "bad.fq"
    bad_fq.write_text("@r1\nACGTXX\n+\nIIIIII\n")
    assert main(["align", "map", "--index", str(index_dir), "--reads", str(bad_fq), "--out", str(tmp_path / "o.sam")]) == 2
    assert "bad.fq" in capsys.readouterr().err
    assert not (tmp_path / "o.sam").exists()
    bad_fa = tmp_path / "bad.fa"
    bad_fa.write_text(">x\nACGT!!\n")
    assert main(["align", "train", "--reference", str(bad_fa), "--out", str(tmp_path / "enc"), "--steps", "1"]) == 2


def test_cli_map_writes_bam(index_dir, slice_fa, tmp_path):
    fq = write_fastq(tmp_path / "two.fq", [("a", slice_fa[1][500:750], None), ("b", revcomp(slice_fa[1][900:1150]), None)])
    out = tmp_path / "cli.bam"
    assert main(["align", "map", "--index", str(index_dir), "--reads", fq, "--out", str(out),
                 "--top-k", str(all_entries(index_dir)), "--progress", "false"]) == 0
    recs = list(pysam.AlignmentFile(str(out), "rb"))
    assert [(r.query_name, r.reference_start, r.is_reverse) for r in recs] == [("a", 500, False), ("b", 900, True)]
    assert json.loads((tmp_path / "cli.bam.json").read_text())["mapped"] == 2


def test_held_out_top1_with_fewer_pairs_than_a_group():
    """Fewer held-out pairs than 256 are scored as one group (not NaN); one pair scores nothing."""
    rng = np.random.default_rng(0)

    class Identity:  # reads embed exactly like their fragments, so each finds its own
        def embed(self, seqs):
            v = np.stack([np.asarray(s, float) for s in seqs])
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    pairs = [(x, x) for x in rng.normal(size=(10, 8))]
    assert align.held_out_top1(Identity(), pairs) == 1.0
    assert np.isnan(align.held_out_top1(Identity(), pairs[:1]))


@pytest.mark.parametrize("which", ["kmer", "model"])
def test_embedding_does_not_depend_on_the_batching(which, encoder_dir, model_encoder_dir, slice_fa):
    """The token cap per forward pass (small batches run faster on CPU) changes no embedding."""
    from genoseq.models.read_encoder import ReadEncoder

    enc = ReadEncoder.from_pretrained((encoder_dir if which == "kmer" else model_encoder_dir)[0])
    seq = slice_fa[1]
    seqs = [TOK.encode(seq[i * 997 : i * 997 + n]) for i, n in enumerate([250, 120, 250, 500, 37, 250, 300])]
    whole = enc.embed(seqs, batch_size=64, max_tokens=10**9)
    for max_tokens in (None, 600, 1):
        np.testing.assert_allclose(enc.embed(seqs, batch_size=64, max_tokens=max_tokens), whole, atol=1e-5)


def resume_options(**chosen) -> dict:
    """align train options of the resume tests: a sequence-model encoder with dropout, so the
    random state must come back as well as the data position."""
    return dict(kmer=0, model={"d_model": 16, "pattern": "H", "n_heads": 2, "hyena_filter_len": 64, "dropout": 0.1},
                embed_dim=16, head_hidden=32, fragment_length=200, read_length=100, batch_size=8, warmup_steps=2,
                val_pairs=64, progress=False, accelerator="cpu", **chosen)


def assert_same_run(resumed: dict, straight: dict, out, straight_out) -> None:
    """A resumed align train ended as the uninterrupted one: summary, every weight, and its
    checkpoint folder gone."""
    import torch

    from genoseq.models.read_encoder import ReadEncoder
    from genoseq.models.resume import checkpoint_dir

    for key in ("steps", "final_train_loss", "val_top1_of_256"):
        assert resumed[key] == straight[key], key
    a, b = ReadEncoder.from_pretrained(straight_out), ReadEncoder.from_pretrained(out)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not checkpoint_dir(out).exists()


def test_interrupted_train_resumes_to_the_same_encoder(slice_fa, tmp_path, monkeypatch, capsys):
    """align train (one epoch of steps) that dies after a mid-epoch checkpoint and is rerun with
    --resume true continues at the next batch and ends with the encoder of an uninterrupted run;
    the command line refuses to overwrite the left checkpoint unasked; the folder goes at the end,
    and --overwrite true starts an interrupted run again."""
    import torch

    from genoseq.models.resume import RandomState, checkpoint_dir

    options = resume_options(steps=6, checkpoint_every=2, seed=3)
    straight = jobs.train(str(slice_fa[0]), str(tmp_path / "straight"), **options)

    def crash(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 5:
            raise RuntimeError("simulated crash")

    out = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        patch.setattr(RandomState, "on_train_batch_start", crash, raising=False)
        with pytest.raises(RuntimeError, match="simulated crash"):
            jobs.train(str(slice_fa[0]), str(out), **options)
    last = checkpoint_dir(out) / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4 and not (out / "config.json").exists()
    saved = last.read_bytes()
    assert main(["align", "train", "--reference", str(slice_fa[0]), "--out", str(out), "--steps", "6"]) == 2
    assert "add --resume true to continue it" in capsys.readouterr().err and last.read_bytes() == saved
    resumed = jobs.train(str(slice_fa[0]), str(out), resume=True, **options)
    assert_same_run(resumed, straight, out, tmp_path / "straight")
    # --overwrite true starts a run again: the left checkpoint (here unreadable) is deleted, not read
    checkpoint_dir(out).mkdir()
    last.write_bytes(b"not a checkpoint")
    again = jobs.train(str(slice_fa[0]), str(out), overwrite=True, **options)
    assert again["final_train_loss"] == straight["final_train_loss"] and not checkpoint_dir(out).exists()


def test_train_killed_with_sigkill_resumes_to_the_same_encoder(slice_fa, tmp_path):
    """SIGKILL (what an out-of-memory kill or a scheduler's hard limit does: no exception, no
    cleanup) at some moment after align train's first checkpoint, wherever the run then is (a
    later step, or writing a later checkpoint), and --resume true ends with the encoder of an
    uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    from genoseq.models.resume import checkpoint_dir

    options = resume_options(steps=40, checkpoint_every=3, seed=5)
    out = tmp_path / "killed"
    script = ("import json, sys\nfrom genoseq.pipelines import align\n"
              "align.train(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3]))\n")
    log = tmp_path / "killed.log"
    with open(log, "w") as sink:
        job = subprocess.Popen([sys.executable, "-c", script, str(slice_fa[0]), str(out), json.dumps(options)],
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=sink, stderr=sink)
    last = checkpoint_dir(out) / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.poll() is None, f"the run ended before it was killed: {log.read_text()}"
    time.sleep(0.3)  # somewhere later in the run
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=60)
    assert job.returncode == -signal.SIGKILL
    assert not (out / "config.json").exists(), "the run finished before the kill: make it longer"
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert 3 <= killed_at < 40 and killed_at % 3 == 0
    resumed = jobs.train(str(slice_fa[0]), str(out), resume=True, **options)
    straight = jobs.train(str(slice_fa[0]), str(tmp_path / "straight"), **options)
    assert_same_run(resumed, straight, out, tmp_path / "straight")
