"""Masked-LM scores of a bidirectional model (a converted Caduceus fixture): pseudo-log-likelihood,
masked marginals for variants and mutagenesis, through the same entry points as causal models.

Every expectation is a literal computation: mask one position of a row, run one forward pass,
read the log-softmax there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import genoseq
from genoseq.cli import main
from genoseq.errors import InputError
from genoseq.genome import MemoryGenome
from genoseq.models.inference import generate, sequence_log_likelihood, token_log_probs
from genoseq.models.masked import masked_windows
from genoseq.tasks.variants import MASKED_SCORE, Variant, VariantEffectScorer, window_bounds
from genoseq.tokenizer import MASK, A, T, Tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
TOK = Tokenizer()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("masked")
    for name in ("caduceus_ps", "caduceus_ph"):
        assert main(["convert", "caduceus", "--checkpoint", str(FIXTURES / name), "--out", str(root / name)]) == 0
    return {name: root / name for name in ("caduceus_ps", "caduceus_ph")}


@pytest.fixture(scope="module")
def ps(folders):
    return genoseq.load(folders["caduceus_ps"], device="cpu")


@pytest.fixture(scope="module")
def lambda_seq(lambda_fasta) -> str:
    return "".join(line.strip() for line in Path(lambda_fasta).read_text().splitlines()[1:])


def masked_log_probs(model, ids: torch.Tensor, t: int) -> torch.Tensor:
    """log-softmax (V,) at position t of ``ids`` with t masked: one forward pass."""
    row = ids.clone()
    row[t] = MASK
    with torch.no_grad():
        return torch.log_softmax(model(row[None])[0, t].double(), dim=-1)


def literal_pll_terms(model, ids: torch.Tensor) -> torch.Tensor:
    return torch.tensor([float(masked_log_probs(model, ids, t)[ids[t]]) if A <= ids[t] <= T else float("nan")
                         for t in range(len(ids))], dtype=torch.float64)


def encode(seq: str) -> torch.Tensor:
    return torch.from_numpy(TOK.encode(seq).astype(np.int64))


# ----------------------------------------------------------------------------- pseudo-log-likelihood
def test_pll_equals_a_literal_loop_and_counts_position_one(ps, lambda_seq):
    seq = lambda_seq[1000:1020] + "N" + lambda_seq[1021:1040]
    ids = encode(seq)
    terms = token_log_probs(ps.model, ids, max_rows=7)  # 39 masked copies in passes of 7 rows
    expected = literal_pll_terms(ps.model, ids)
    assert terms.shape == (40,) and torch.isnan(terms[20]) and not torch.isnan(terms[0])
    assert torch.allclose(terms.double()[~torch.isnan(expected)], expected[~torch.isnan(expected)], atol=1e-4)
    found = ps.score(seq)
    assert found.scored_bases == 39 and found.length == 40
    assert found.log_likelihood == pytest.approx(float(np.nansum(expected.numpy())), abs=1e-3)
    many = sequence_log_likelihood(ps.model, [seq, seq[:25]], batch_size=16)
    assert many.num_scored.tolist() == [39, 24]
    assert many.log_likelihood[0] == pytest.approx(found.log_likelihood, abs=1e-3)
    per_base = ps.log_probs(seq)
    assert np.isnan(per_base[20]) and per_base[0] == pytest.approx(float(expected[0]), abs=1e-4)


@pytest.mark.parametrize("n,width,context", [(1, 8, 2), (8, 8, 3), (9, 8, 3), (50, 8, 0), (50, 8, 3), (123, 20, 9),
                                             (1000, 64, 16), (65, 64, 31)])
def test_masked_windows_tile_the_sequence_with_context_on_both_sides(n, width, context):
    windows = masked_windows(n, width, context)
    covered = 0
    for start, lo, hi in windows:
        end = start + min(width, n)
        assert lo == covered and lo < hi and 0 <= start <= lo and hi <= end <= n
        assert lo - start >= min(context, lo) and end - hi >= min(context, n - hi)  # context each side
        covered = hi
    assert covered == n


def test_masked_windows_refuse_a_context_that_leaves_no_room():
    with pytest.raises(ValueError, match="context"):
        masked_windows(100, 20, 10)


def test_windowed_pll_is_the_single_pass_value_when_it_fits_and_bounded_otherwise(ps, lambda_seq):
    ids = encode(lambda_seq[5000:5060])
    whole = token_log_probs(ps.model, ids, chunk_size=64, context=16, max_rows=64)
    assert torch.equal(whole, token_log_probs(ps.model, ids, chunk_size=60, context=29, max_rows=64))
    shapes = []
    hook = ps.model.register_forward_pre_hook(lambda _, args: shapes.append(tuple(args[0].shape)))
    try:
        windowed = token_log_probs(ps.model, ids, chunk_size=24, context=6, max_rows=5)
    finally:
        hook.remove()
    assert max(s[1] for s in shapes) == 24 and max(s[0] for s in shapes) == 5
    assert sum(s[0] for s in shapes) == 60  # one masked copy per base
    for start, lo, hi in masked_windows(60, 24, 6):  # each base masked in the window that scores it
        window = ids[start : start + 24]
        for t in (lo, hi - 1):
            expected = float(masked_log_probs(ps.model, window, t - start)[ids[t]])
            assert float(windowed[t]) == pytest.approx(expected, abs=1e-4)


# ----------------------------------------------------------------------------- variant effects
def hand_masked_marginal(model, window: torch.Tensor, i: int, ref: str, alt: str) -> tuple[float, float]:
    """(forward, reverse) log P(alt) - log P(ref) at window position i, masked."""
    fwd = masked_log_probs(model, window, i)
    rc = torch.from_numpy(TOK.reverse_complement(window.numpy().astype(np.uint8)).astype(np.int64))
    rev = masked_log_probs(model, rc, len(window) - 1 - i)
    comp = {"A": "T", "C": "G", "G": "C", "T": "A"}
    return (float(fwd[TOK.encode(alt)[0]] - fwd[TOK.encode(ref)[0]]),
            float(rev[TOK.encode(comp[alt])[0]] - rev[TOK.encode(comp[ref])[0]]))


@pytest.mark.parametrize("name", ["caduceus_ps", "caduceus_ph"])
def test_vep_snv_is_the_masked_marginal_and_rc_equivariant_models_agree_on_both_strands(folders, lambda_seq, name):
    lm = genoseq.load(folders[name], device="cpu")
    contig = lambda_seq[:120]
    genome = MemoryGenome({"chrL": contig})
    scorer = VariantEffectScorer(lm.model, genome, window_length=32, batch_size=4, device="cpu")
    pos = 61
    ref = contig[pos - 1]
    alts = [b for b in "ACGT" if b != ref]
    effects = scorer.score([Variant("chrL", pos, ref, alt) for alt in alts])
    start, end = window_bounds(len(contig), pos - 1, 1, 32)
    window = encode(contig[start:end])
    for alt, e in zip(alts, effects):
        fwd, rev = hand_masked_marginal(lm.model, window, pos - 1 - start, ref, alt)
        assert e.status == "ok" and e.llr_forward == pytest.approx(fwd, abs=1e-4)
        assert e.llr_reverse == pytest.approx(rev, abs=1e-4) and e.llr == pytest.approx((fwd + rev) / 2, abs=1e-4)
        assert e.llr_forward == pytest.approx(e.llr_reverse, abs=1e-4)  # PS and Ph are RC-equivariant
    assert scorer.windows_scored == 2  # the three ALTs share one masked row per strand
    assert scorer.score_description == MASKED_SCORE


def test_vep_indel_is_the_pll_difference_of_the_windows(ps, lambda_seq):
    contig = lambda_seq[200:300]
    scorer = VariantEffectScorer(ps.model, MemoryGenome({"c": contig}), window_length=16, strands="forward",
                                 device="cpu")
    pos = 50
    deletion = Variant("c", pos, contig[pos - 1 : pos + 2], contig[pos - 1])
    [effect] = scorer.score([deletion])
    start, end = window_bounds(len(contig), pos - 1, 3, 16)
    ref_window = contig[start:end]
    i = pos - 1 - start
    alt_window = ref_window[: i + 1] + ref_window[i + 3 :]
    expected = (np.nansum(literal_pll_terms(ps.model, encode(alt_window)).numpy())
                - np.nansum(literal_pll_terms(ps.model, encode(ref_window)).numpy()))
    assert effect.status == "ok" and effect.llr == pytest.approx(expected, abs=1e-3)


# ----------------------------------------------------------------------------- the commands
def test_cli_score_and_vep_write_sane_files_that_say_what_they_hold(folders, ps, lambda_seq, tmp_path, capsys):
    model = str(folders["caduceus_ps"])
    records = {"a": lambda_seq[300:345], "b": "N" + lambda_seq[400:430]}
    fasta = tmp_path / "x.fa"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in records.items()))
    out = tmp_path / "s.tsv"
    assert main(["score", "--model", model, "--fasta", str(fasta), "--out", str(out), "--chunk_size", "32",
                 "--context", "8", "--max_rows", "16", "--progress", "none"]) == 0
    assert "pseudo-log-likelihood" in capsys.readouterr().out
    header, *rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert header == ["name", "length", "scored_bases", "log_likelihood", "bits_per_base"]
    summary = json.loads(Path(str(out) + ".json").read_text())
    assert summary["likelihood"] == "pseudo" and "pseudo-log-likelihood" in summary["likelihood_note"]
    for (name, seq), row in zip(records.items(), rows):
        expected = ps.score(seq, chunk_size=32, context=8)
        assert row[0] == name and int(row[2]) == sum(b in "ACGT" for b in seq) == expected.scored_bases
        assert float(row[3]) == pytest.approx(expected.log_likelihood, abs=1e-3) and float(row[3]) < 0

    reference = tmp_path / "ref.fa"
    contig = lambda_seq[1000:1100]
    reference.write_text(f">chrL\n{contig}\n")
    vcf = tmp_path / "in.vcf"
    snv_alt = "A" if contig[49] != "A" else "C"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chrL,length=100>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"chrL\t50\t.\t{contig[49]}\t{snv_alt}\t.\t.\t.\n"
                   f"chrL\t60\t.\t{contig[59:62]}\t{contig[59]}\t.\t.\t.\n"
                   f"chrL\t70\t.\t{'A' if contig[69] != 'A' else 'C'}\tG\t.\t.\t.\n")
    table = tmp_path / "out.tsv"
    assert main(["vep", "--model", model, "--reference", str(reference), "--vcf", str(vcf), "--out", str(table),
                 "--format", "tsv", "--window_length", "16", "--progress", "none"]) == 0
    lines = [line.split("\t") for line in table.read_text().splitlines()]
    assert [r[5] for r in lines[1:]] == ["ok", "ok", "ref_mismatch"]
    assert all(np.isfinite(float(r[4])) for r in lines[1:3]) and lines[3][4] in ("", ".", "NA", "nan")
    assert json.loads((tmp_path / "out.tsv.json").read_text())["score"] == MASKED_SCORE
    annotated = tmp_path / "out.vcf"
    assert main(["vep", "--model", model, "--reference", str(reference), "--vcf", str(vcf), "--out", str(annotated),
                 "--window_length", "16", "--progress", "none"]) == 0
    assert "masked marginal" in annotated.read_text()


# ----------------------------------------------------------------------------- mutagenesis, generation
def test_ism_is_the_masked_marginal_at_every_position(folders, ps, lambda_seq, tmp_path):
    seq = lambda_seq[1990:2040]  # bases 11-40 mutated, 10 bases of context on each side
    found = ps.ism(seq, regions=[(10, 40)], batch_size=16)
    ids = encode(seq)
    assert found.llr.shape == (30, 4) and np.allclose(found.llr_forward, found.llr_reverse, atol=1e-4)
    for i in (0, 17, 29):
        lp = masked_log_probs(ps.model, ids, 10 + i)[A : T + 1].numpy()
        assert np.allclose(found.llr_forward[i], lp - lp[int(ids[10 + i]) - A], atol=1e-4)
    assert (found.llr[np.arange(30), ids[10:40].numpy() - A] == 0).all()
    with pytest.raises(InputError, match="dependency maps"):
        ps.dependencies(seq)
    fasta = tmp_path / "g.fa"
    fasta.write_text(f">g\n{seq}\n")
    assert main(["interpret", "ism", "--model", str(folders["caduceus_ps"]), "--fasta", str(fasta), "--region",
                 "g:11-40", "--flank", "10", "--figures", "0", "--out", str(tmp_path / "ism"), "--progress", "none"]) == 0
    assert json.loads((tmp_path / "ism" / "ism.json").read_text())["score"] == "masked marginal"
    written = np.load(tmp_path / "ism" / "ism.npz")["llr_forward"][0]
    assert np.allclose(written, found.llr_forward, atol=1e-4)  # the same bases in context


def test_generation_refuses_a_masked_model(ps):
    with pytest.raises(InputError, match="bidirectional.*cannot generate"):
        generate(ps.model, "ACGT", max_new_tokens=4)


# ----------------------------------------------------------------------------- the API
def test_api_scores_and_variants_of_a_masked_model_as_the_library_does(folders, ps, lambda_seq):
    import time

    from fastapi.testclient import TestClient

    from genoseq.api import ApiSettings, create_app

    settings = ApiSettings(model=str(folders["caduceus_ps"]), device="cpu", chunk_size=32, context=8)
    seqs = [lambda_seq[3000:3040], lambda_seq[3100:3125]]
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        scored = client.post("/v1/score", json={"sequences": seqs, "token_log_probs": True}).json()
        contig = lambda_seq[:100]
        ref = contig[49]
        effects = client.post("/v1/variants", json={
            "variants": [{"sequence": contig, "pos": 50, "ref": ref, "alt": "A" if ref != "A" else "C"}],
            "window_length": 16}).json()
    assert scored["likelihood"] == "pseudo"
    for seq, got in zip(seqs, scored["scores"]):
        expected = ps.score(seq, chunk_size=32, context=8)
        assert got["scored_bases"] == len(seq) == expected.scored_bases and got["token_log_probs"][0] is not None
        assert got["log_likelihood"] == pytest.approx(expected.log_likelihood, abs=1e-3)
    effect = ps.variant_effects({"c": contig}, ("c", 50, ref, "A" if ref != "A" else "C"), window_length=16)
    assert effects["score"] == MASKED_SCORE
    assert effects["effects"][0]["llr"] == pytest.approx(effect.llr, abs=1e-4)
