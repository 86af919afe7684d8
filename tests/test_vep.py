"""genoseq vep on real E. coli variants: a 200 kb slice of the genome and the SNVs inside it."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pysam
import pytest
import torch

from genoseq.cli import main
from genoseq.models import GenoSeqLM, ModelConfig
from genoseq.models.inference import shared_prefix_log_likelihood
from genoseq.pipelines.vep import vep
from genoseq.tasks.variants import Variant, VariantEffectScorer, window_bounds
from genoseq.tokenizer import Tokenizer

SLICE = 200_000
CONTIG = "K-12-MG1655"
WINDOW = 64
TOK = Tokenizer()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("vep")


@pytest.fixture(scope="module")
def reference(ecoli_fasta, workdir):
    """The first 200 kb of E. coli as its own FASTA, and the sequence."""
    seq = []
    with open(ecoli_fasta) as handle:
        next(handle)
        for line in handle:
            seq.append(line.strip())
            if sum(map(len, seq)) >= SLICE:
                break
    seq = "".join(seq)[:SLICE]
    path = workdir / "ecoli_200kb.fa"
    path.write_text(f">{CONTIG}\n" + "\n".join(seq[i : i + 80] for i in range(0, SLICE, 80)) + "\n")
    return path, seq


@pytest.fixture(scope="module")
def model_dir(workdir, tiny_lm):
    return tiny_lm().save_pretrained(workdir / "model")


@pytest.fixture(scope="module")
def model(model_dir):
    from genoseq.models import GenoSeqLM

    return GenoSeqLM.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def vcf(data_dir, reference, workdir):
    """30 real SNVs inside the slice, then hand-made records for every special case."""
    _, seq = reference
    header, snvs = [], []
    with gzip.open(data_dir / "ecoli_snvs.vcf.gz", "rt") as handle:
        for line in handle:
            if line.startswith("#"):
                header.append(line)
            elif int(line.split("\t")[1]) <= SLICE and len(snvs) < 30:
                snvs.append(line)
    first = snvs[0].split("\t")
    p = 5000  # 1-based position for the indels
    wrong = {"A": "C", "C": "G", "G": "T", "T": "A"}[seq[p - 1]]
    extra = [
        f"{CONTIG}\t{first[1]}\tmulti\t{first[3]}\t{first[4]},<DEL>,{wrong if wrong != first[3] else 'A'}\t.\t.\t.\n",
        f"{CONTIG}\t{p}\tins\t{seq[p - 1]}\t{seq[p - 1]}GAT\t.\t.\t.\n",
        f"{CONTIG}\t{p}\tdel\t{seq[p - 1:p + 3]}\t{seq[p - 1]}\t.\t.\t.\n",
        f"{CONTIG}\t{p}\tmismatch\t{wrong}\t{seq[p - 1]}\t.\t.\t.\n",
        f"{CONTIG}\t2\tstart\t{seq[1]}\t{wrong}\t.\t.\t.\n",
        f"{CONTIG}\t{SLICE - 1}\tend\t{seq[SLICE - 2]}\t{wrong}\t.\t.\t.\n",
        "plasmid\t10\tunknown\tA\tG\t.\t.\t.\n",
    ]
    path = workdir / "variants.vcf"
    path.write_text("".join(header + snvs + extra))
    return path, len(snvs)


@pytest.fixture(scope="module")
def annotated(model_dir, reference, vcf, workdir):
    out = workdir / "out.vcf.gz"
    with pytest.warns(UserWarning) as caught:
        summary = vep(str(model_dir), str(reference[0]), str(vcf[0]), str(out), window_length=WINDOW,
                      batch_size=16, device="cpu", progress=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "missing from the reference (plasmid)" in messages and "REF does not match" in messages
    with pysam.VariantFile(str(out)) as handle:
        records = {r.id: r for r in handle if r.id}
    with pysam.VariantFile(str(out)) as handle:
        header = handle.header
        all_records = list(handle)
    return summary, header, records, all_records


def direct_log_likelihood(model, seq: str) -> float:
    """sum_t log P(x_t | x_<t), t >= 1, by one unbatched forward pass."""
    ids = torch.from_numpy(TOK.encode(seq).astype(np.int64))[None]
    with torch.no_grad():
        logp = torch.log_softmax(model(ids)[0, :-1].float(), -1)
    return float(logp.gather(-1, ids[0, 1:, None]).sum())


def direct_llr(model, seq: str, pos: int, ref: str, alt: str) -> float:
    start, end = window_bounds(len(seq), pos - 1, len(ref), WINDOW)
    ref_win = seq[start:end]
    i = pos - 1 - start
    assert ref_win[i : i + len(ref)] == ref
    alt_win = ref_win[:i] + alt + ref_win[i + len(ref) :]
    rc = lambda s: TOK.decode(TOK.reverse_complement(TOK.encode(s)))  # noqa: E731
    forward = direct_log_likelihood(model, alt_win) - direct_log_likelihood(model, ref_win)
    reverse = direct_log_likelihood(model, rc(alt_win)) - direct_log_likelihood(model, rc(ref_win))
    return 0.5 * (forward + reverse)


def test_header_declares_llr_and_filters(annotated):
    _, header, _, _ = annotated
    info = header.info["GENOSEQ_LLR"]
    assert (info.number, info.type) == ("A", "Float")
    assert "GENOSEQ_REF_MISMATCH" in header.filters and "GENOSEQ_UNKNOWN_CONTIG" in header.filters


def test_every_real_snv_gets_a_finite_score(annotated, vcf):
    summary, _, _, records = annotated
    n_snvs = vcf[1]
    real = records[:n_snvs]
    assert len(real) == n_snvs
    for record in real:
        (llr,) = record.info["GENOSEQ_LLR"]
        assert math.isfinite(llr) and record.info["GENOSEQ_STATUS"] == ("ok",)
        assert record.info["EFFECT"] in ("synonymous", "missense", "stop_gained")  # input INFO kept
    assert summary["records"] == n_snvs + 7


def test_llr_equals_direct_computation_both_strands(annotated, model, reference, vcf):
    _, seq = reference
    _, _, _, records = annotated
    record = records[0]
    expected = direct_llr(model, seq, record.pos, record.ref, record.alts[0])
    assert record.info["GENOSEQ_LLR"][0] == pytest.approx(expected, abs=2e-4)
    assert abs(expected) > 1e-3  # a real difference, not a cancellation to zero


def test_indels_compare_windows_over_the_same_reference_span(annotated, model, reference):
    _, seq = reference
    _, _, records, _ = annotated
    for name in ("ins", "del"):
        record = records[name]
        assert record.info["GENOSEQ_STATUS"] == ("ok",)
        expected = direct_llr(model, seq, record.pos, record.ref, record.alts[0])
        assert record.info["GENOSEQ_LLR"][0] == pytest.approx(expected, abs=2e-4)


def test_multiallelic_record_gets_one_score_per_alt(annotated):
    _, _, records, all_records = annotated
    multi = records["multi"]
    llr, status = multi.info["GENOSEQ_LLR"], multi.info["GENOSEQ_STATUS"]
    assert len(llr) == len(multi.alts) == 3
    assert status[0] == "ok" and status[1] == "symbolic" and llr[1] is None
    assert llr[0] == pytest.approx(all_records[0].info["GENOSEQ_LLR"][0], abs=1e-6)  # same SNV as record 1
    assert status[2] in ("ok",) and math.isfinite(llr[2])


def test_ref_mismatch_is_flagged_not_scored(annotated):
    summary, _, records, _ = annotated
    record = records["mismatch"]
    assert "GENOSEQ_REF_MISMATCH" in record.filter.keys()
    assert record.info["GENOSEQ_LLR"] == (None,) and record.info["GENOSEQ_STATUS"] == ("ref_mismatch",)
    assert summary["status_counts"]["ref_mismatch"] == 1


def test_unknown_contig_is_reported_flagged_and_written(annotated):
    summary, _, records, _ = annotated
    record = records["unknown"]
    assert record.chrom == "plasmid" and "GENOSEQ_UNKNOWN_CONTIG" in record.filter.keys()
    assert record.info["GENOSEQ_STATUS"] == ("unknown_contig",)
    assert summary["unknown_contigs"] == ["plasmid"] and summary["status_counts"]["unknown_contig"] == 1


def test_variants_at_contig_ends_are_scored(annotated, model, reference):
    _, seq = reference
    _, _, records, _ = annotated
    for name in ("start", "end"):
        record = records[name]
        expected = direct_llr(model, seq, record.pos, record.ref, record.alts[0])
        assert record.info["GENOSEQ_LLR"][0] == pytest.approx(expected, abs=2e-4)


def test_window_bounds_shift_inward_at_contig_ends():
    assert window_bounds(1000, 500, 1, 64) == (469, 533)
    assert window_bounds(1000, 1, 1, 64) == (0, 64)
    assert window_bounds(1000, 998, 1, 64) == (936, 1000)
    assert window_bounds(30, 10, 1, 64) == (0, 30)


def test_shared_windows_are_scored_once(model, reference):
    path, seq = reference
    rows = []
    hook = model.register_forward_hook(lambda module, args, output: rows.append(args[0].shape[0]))
    try:
        scorer = VariantEffectScorer(model, str(path), window_length=WINDOW, device="cpu")
        pos = 12_345
        ref = seq[pos - 1]
        alts = [b for b in "ACGT" if b != ref]
        effects = scorer.score([Variant(CONTIG, pos, ref, alt) for alt in alts])
        # per strand: one reference window and three alternative windows, which share the
        # prefix before the variant: one pass over the prefix, then four continuations
        assert scorer.windows_scored == 2 * (1 + 3)
        assert sum(rows) == 2 * (1 + (1 + 3))
        again = scorer.score_variant(CONTIG, pos, ref, alts[0])
        assert sum(rows) == 10 and again.llr == effects[0].llr
    finally:
        hook.remove()


def test_tsv_format_and_cli(model_dir, reference, vcf, workdir):
    out = workdir / "out.tsv"
    with pytest.warns(UserWarning):
        code = main(["vep", "--model", str(model_dir), "--reference", str(reference[0]), "--vcf", str(vcf[0]),
                     "--out", str(out), "--format", "tsv", "--window_length", str(WINDOW), "--device", "cpu",
                     "--progress", "false"])
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines[0].split("\t")[:6] == ["chrom", "pos", "ref", "alt", "llr", "status"]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == vcf[1] + 3 + 6  # one row per ALT: 30 SNVs, 3 multi-allelic ALTs, 6 others
    scored = [r for r in rows if r[5] == "ok"]
    assert all(math.isfinite(float(r[4])) for r in scored) and all(r[4] == "" for r in rows if r[5] != "ok")


def test_cli_bad_input_exits_2(model_dir, reference, workdir, capsys):
    bad = workdir / "bad.vcf"
    bad.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\tnotanumber\n")
    out = workdir / "never.vcf"
    code = main(["vep", "--model", str(model_dir), "--reference", str(reference[0]), "--vcf", str(bad), "--out", str(out)])
    assert code == 2 and not out.exists()
    code = main(["vep", "--model", str(model_dir), "--reference", str(reference[0]), "--vcf", str(workdir / "missing.vcf"),
                 "--out", str(out)])
    assert code == 2 and "missing.vcf" in capsys.readouterr().err


def test_plain_gzip_vcf_is_read(model_dir, reference, data_dir, workdir):
    """The shared VCFs are plain gzip (not bgzip), which htslib cannot open directly."""
    out = workdir / "gz.tsv"
    summary = vep(str(model_dir), str(reference[0]), str(data_dir / "ecoli_snvs.vcf.gz"), str(out), format="tsv",
                  window_length=WINDOW, batch_size=64, device="cpu", progress=False, strands="forward")
    in_slice = summary["status_counts"]["ok"]
    assert summary["records"] == 4923 and in_slice > 100
    assert summary["status_counts"]["out_of_bounds"] == 4923 - in_slice  # the rest lie past the 200 kb slice


def test_round_trip_keeps_every_header_line_and_record(annotated, vcf):
    """Every input header line and every input record (fields and INFO) survive; only ours is added."""
    path, _ = vcf
    _, header, _, records = annotated
    lines = path.read_text().splitlines()
    in_meta = [line for line in lines if line.startswith("##")]
    out_meta = set(str(header).splitlines())
    assert all(line in out_meta for line in in_meta if not line.startswith("##contig")), "a header line was lost"
    added = [line for line in str(header).splitlines() if line.startswith("##") and line not in in_meta]
    # htslib itself declares PASS, INFO/END and contigs met in the records
    assert all("GENOSEQ" in line or "genoseq" in line
               or line.startswith(("##contig", "##FILTER=<ID=PASS", "##INFO=<ID=END,")) for line in added), added
    body = [line.split("\t") for line in lines if not line.startswith("#")]
    assert len(records) == len(body)
    for fields, record in zip(body, records):
        assert (record.chrom, record.pos, record.id or ".", record.ref, ",".join(record.alts)) == (
            fields[0], int(fields[1]), fields[2], fields[3], fields[4])
        for item in fields[7].split(";"):
            if item != ".":
                key, _, value = item.partition("=")
                assert str(record.info[key]) == value or record.info[key] in (value, (value,))


def test_scores_are_deterministic(model_dir, reference, vcf, workdir):
    """Two runs (other batch size) give the same LLRs."""
    outs = []
    for batch_size, name in ((16, "det1.tsv"), (5, "det2.tsv")):
        with pytest.warns(UserWarning):
            vep(str(model_dir), str(reference[0]), str(vcf[0]), str(workdir / name), window_length=WINDOW,
                batch_size=batch_size, device="cpu", progress=False, format="tsv")
        outs.append([line.split("\t") for line in (workdir / name).read_text().splitlines()])
    header = outs[0][0]
    col = header.index("llr")
    assert len(outs[0]) == len(outs[1]) > 30
    for a, b in zip(*outs):
        assert a[:col] == b[:col]
        if a[col] not in ("", ".", "NA") and a is not outs[0][0]:
            assert float(a[col]) == pytest.approx(float(b[col]), abs=1e-4)


def test_shared_prefix_passes_equal_full_passes_for_every_block_type(reference):
    """A family's prefix pass plus cached continuations gives each window's full-pass sum."""
    _, seq = reference
    torch.manual_seed(0)
    model = GenoSeqLM(ModelConfig(d_model=32, pattern="HMA", n_heads=2, headdim=16, d_state=16, chunk_size=32,
                                  hyena_filter_dim=16)).eval()
    ref = model.tokenizer.encode(seq[1000:1064])
    windows, offsets = [], []
    for i in (0, 1, 20, 40, 63):  # 63: only the last base is scored
        alt = ref.copy()
        alt[i] = 5 + (int(alt[i]) - 5 + 1) % 4
        windows += [ref, alt]
        offsets += [i, i]
    got, _ = shared_prefix_log_likelihood(model, windows, offsets, batch_size=4, device="cpu")  # what vep runs
    ids = torch.from_numpy(np.stack(windows).astype(np.int64))
    with torch.inference_mode():
        lp = torch.log_softmax(model(ids)[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    for k, offset in enumerate(offsets):
        assert got[k] == pytest.approx(float(lp[k, max(offset, 1) - 1 :].sum()), abs=1e-4), (k, offset)


@pytest.mark.parametrize("layout", ["crlf", "cr", "blank_lines"])
def test_vcf_line_layouts_give_the_same_scores(model_dir, reference, vcf, workdir, layout):
    lines = [line for line in vcf[0].read_text().splitlines() if line.startswith("#")]
    lines += [line for line in vcf[0].read_text().splitlines() if not line.startswith("#")][:5]
    plain = workdir / "five.vcf"
    plain.write_text("\n".join(lines) + "\n")
    text = {"crlf": "\r\n".join(lines) + "\r\n", "cr": "\r".join(lines) + "\r",
            "blank_lines": "\n\n".join(lines) + "\n\n"}[layout]
    odd = workdir / f"five_{layout}.vcf"
    odd.write_bytes(text.encode())
    outs = []
    for path in (plain, odd):
        out = workdir / f"{path.stem}.tsv"
        assert main(["vep", "--model", str(model_dir), "--reference", str(reference[0]), "--vcf", str(path),
                     "--out", str(out), "--format", "tsv", "--window_length", str(WINDOW), "--device", "cpu",
                     "--progress", "none"]) == 0
        outs.append(out.read_text())
    assert outs[0] == outs[1] and len(outs[0].splitlines()) == 6
