"""The REST API against the command line: every route's answer equals the CLI's for the same input.

A tiny model trained a few steps on phage lambda, a frozen-probe classifier on real E. coli
regions, the lambda genome as the reference. Also: error cases (4xx naming the field), limits,
authentication, and a real `genoseq serve` subprocess on loopback.
"""

from __future__ import annotations

import concurrent.futures
import csv
import gzip
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import httpx
import numpy as np
import pysam
import pytest
from fastapi.testclient import TestClient

import genoseq
from genoseq.api import ApiSettings, Limits, create_app
from genoseq.api.settings import is_loopback
from genoseq.cli import main
from genoseq.design import max_homopolymer
from genoseq.fasta import iter_fasta
from genoseq.pipelines.pretrain import pretrain

KEY = "s3cret-key-for-tests"


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def model_dir(workdir) -> Path:
    run = workdir / "run"
    pretrain(out=str(run), model={"d_model": 32, "pattern": "MA", "n_heads": 2, "d_state": 16, "headdim": 16},
             window={"length": 128, "batch_size": 4, "windows_per_epoch": 40, "max_val_windows": 2},
             trainer={"max_steps": 10, "val_check_interval": 10, "enable_progress_bar": False})
    return run / "model"


@pytest.fixture(scope="module")
def py_model(model_dir):
    """The same model through the Python API."""
    return genoseq.load(model_dir, device="cpu")


@pytest.fixture(scope="module")
def regions(data_dir) -> list[tuple[str, str]]:
    """120 (sequence, label) rows of the real E. coli regions table."""
    with gzip.open(data_dir / "ecoli_regions.tsv.gz", "rt") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    rng = np.random.default_rng(1)
    return [(rows[i]["sequence"], rows[i]["label"]) for i in rng.permutation(len(rows))[:120]]


@pytest.fixture(scope="module")
def classifier_dir(model_dir, regions, workdir) -> Path:
    from genoseq.pipelines.classify import fit

    train = workdir / "train.tsv"
    train.write_text("sequence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in regions[:100]))
    out = workdir / "probe"
    fit(str(model_dir), str(train), str(out), frozen=True, device="cpu", progress=False)
    return out


@pytest.fixture(scope="module")
def lambda_seq(lambda_fasta) -> str:
    return next(iter_fasta(lambda_fasta)).sequence.upper()


@pytest.fixture(scope="module")
def settings(model_dir, classifier_dir, lambda_fasta) -> ApiSettings:
    # chunk_size / context as the CLI runs below use them, so long sequences take several windows
    return ApiSettings(model=str(model_dir), classifier=str(classifier_dir), generator=str(model_dir),
                       reference=str(lambda_fasta), device="cpu", chunk_size=512, context=128,
                       limits=Limits(max_sequence_length=5000, max_sequences=8, max_variants=16,
                                     max_body_bytes=64 * 1024, max_new_tokens=100, max_designs=5))


def wait_ready(client, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        assert response.json()["status"] == "loading", response.json()
        time.sleep(0.05)
    raise TimeoutError("models not loaded in time")


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


def detail(response) -> str:
    """All messages of an error response, joined."""
    body = response.json()["detail"]
    return body if isinstance(body, str) else " | ".join(f"{e['loc']}: {e['msg']}" for e in body)


# ---------------------------------------------------------------------- health and models
def test_health_ready_and_models(client, regions):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    info = client.get("/v1/models").json()
    assert info["device"] == "cpu"
    assert info["model"]["name"] == "model" and info["model"]["config"]["pattern"] == "MA"
    assert info["model"]["parameters"] > 1000
    assert info["classifier"]["classes"] == sorted({label for _, label in regions[:100]})
    assert info["reference"] == {"name": "lambda_phage.fa", "contigs": 1, "bases": 48502}
    assert info["scoring"]["chunk_size"] == 512 and info["limits"]["max_sequences"] == 8
    schema = client.get("/openapi.json").json()
    assert {"/v1/score", "/v1/embed", "/v1/variants", "/v1/classify", "/v1/generate", "/v1/align"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


def test_openapi_schema_is_valid(client):
    from openapi_spec_validator import validate

    validate(client.get("/openapi.json").json())


# ---------------------------------------------------------------------- score
def test_score_equals_genoseq_score(client, lambda_seq, workdir, model_dir):
    records = {"long": lambda_seq[1000:2700], "with_n": lambda_seq[5000:5300] + "NNNN" + lambda_seq[9000:9200],
               "short": lambda_seq[20_000:20_050].lower(), "one": "A"}
    fasta = workdir / "score.fa"
    fasta.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    out = workdir / "scores.tsv"
    assert main(["score", "--model", str(model_dir), "--fasta", str(fasta), "--out", str(out), "--chunk_size", "512",
                 "--context", "128", "--device", "cpu", "--progress", "false"]) == 0
    expected = {r["name"]: r for r in json.loads((workdir / "scores.tsv.json").read_text())["per_record"]}

    response = client.post("/v1/score", json={"sequences": list(records.values()), "names": list(records)})
    assert response.status_code == 200, response.text
    scores = {s["name"]: s for s in response.json()["scores"]}
    for name, want in expected.items():
        got = scores[name]
        assert got["length"] == want["length"] and got["scored_bases"] == want["scored_bases"]
        assert math.isclose(got["log_likelihood"], want["log_likelihood"], rel_tol=1e-9, abs_tol=1e-9), name
        if want["scored_bases"]:
            assert math.isclose(got["bits_per_base"], want["bits_per_base"], rel_tol=1e-9)
    assert scores["with_n"]["scored_bases"] == 503 - 4  # position 1 and the Ns are not scored
    assert scores["one"]["scored_bases"] == 0 and scores["one"]["bits_per_base"] is None
    # the TSV, as written, says the same
    for row in csv.DictReader(open(out), delimiter="\t"):
        assert f"{scores[row['name']]['log_likelihood']:.4f}" == row["log_likelihood"]
    # and so does the Python API, for a list and for one sequence
    found = genoseq.load(model_dir, device="cpu").score(list(records.values()), names=list(records), chunk_size=512,
                                                        context=128)
    for got in found:
        want = expected[got.name]
        assert (got.length, got.scored_bases) == (want["length"], want["scored_bases"])
        assert math.isclose(got.log_likelihood, want["log_likelihood"], rel_tol=1e-9, abs_tol=1e-9), got.name
    one = genoseq.load(model_dir, device="cpu").score(records["long"], chunk_size=512, context=128)
    assert math.isclose(one.log_likelihood, expected["long"]["log_likelihood"], rel_tol=1e-9)


def test_score_token_log_probs(client, lambda_seq):
    seq = lambda_seq[300:340] + "N" + lambda_seq[340:360]
    got = client.post("/v1/score", json={"sequences": [seq], "token_log_probs": True}).json()["scores"][0]
    per_token = got["token_log_probs"]
    assert len(per_token) == len(seq) and per_token[0] is None
    assert per_token[40] is None and per_token[41] is not None  # the N is not scored; the base after it is
    values = [v for v in per_token if v is not None]
    assert len(values) == got["scored_bases"] and all(v < 0 for v in values)
    assert math.isclose(sum(values), got["log_likelihood"], rel_tol=1e-5)


def test_concurrent_score_requests_are_batched_and_exact(client, lambda_seq):
    seqs = [lambda_seq[i * 300 : i * 300 + 300] for i in range(24)]
    before = client.get("/v1/models").json()["scoring"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda s: client.post("/v1/score", json={"sequences": [s]}), seqs))
    after = client.get("/v1/models").json()["scoring"]
    assert all(r.status_code == 200 for r in responses)
    model_dir = client.app.state.service.settings.model
    for seq, response in zip(seqs[:6], responses):
        want = client_free_score(model_dir, seq)  # batching rows only changes float rounding
        assert math.isclose(response.json()["scores"][0]["log_likelihood"], want, rel_tol=1e-5)
    assert after["batched_rows"] - before["batched_rows"] == len(seqs)
    assert after["batches"] - before["batches"] < len(seqs)  # some requests shared a forward pass


# ---------------------------------------------------------------------- embed
def test_embed_equals_genoseq_embed(client, regions, workdir, model_dir, py_model):
    seqs = [s for s, _ in regions[:5]]
    fasta = workdir / "embed.fa"
    fasta.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(seqs)))
    for pooling, rc_average, rc_concat, layer in (("mean", False, False, -1), ("echo", True, False, 1),
                                                  ("phase+ends", False, True, -1)):
        out = workdir / f"embed_{pooling}.h5"
        assert main(["embed", "--model", str(model_dir), "--fasta", str(fasta), "--out", str(out), "--pooling", pooling,
                     "--rc_average", str(rc_average).lower(), "--rc_concat", str(rc_concat).lower(),
                     "--layer", str(layer), "--device", "cpu", "--progress", "false"]) == 0
        with h5py.File(out) as h5:
            expected = h5["embeddings"][:]
        response = client.post("/v1/embed", json={"sequences": seqs, "pooling": pooling, "rc_average": rc_average,
                                                  "rc_concat": rc_concat, "layer": layer})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["dim"] == expected.shape[1] == (320 if rc_concat else 32) and body["pooling"] == pooling
        np.testing.assert_allclose(np.array(body["embeddings"]), expected, rtol=1e-5, atol=1e-5)
        vectors = py_model.embed(seqs, pooling=pooling, rc_average=rc_average, rc_concat=rc_concat, layer=layer)
        np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(py_model.embed(seqs[0], pooling=pooling, rc_average=rc_average, rc_concat=rc_concat,
                                                  layer=layer), expected[0], rtol=1e-5, atol=1e-5)


def test_embed_bad_pooling(client):
    from genoseq.api.schemas import POOLING_CHOICES
    from genoseq.models.embedding import pooling_parts

    assert len(POOLING_CHOICES) == 16 and all(pooling_parts(p) for p in POOLING_CHOICES)
    response = client.post("/v1/embed", json={"sequences": ["ACGT"], "pooling": "max"})
    assert response.status_code == 422 and "pooling" in detail(response)
    response = client.post("/v1/embed", json={"sequences": ["ACGT"], "rc_average": True, "rc_concat": True})
    assert response.status_code == 422 and "exclude each other" in detail(response)


def test_embed_bad_layer(client):
    response = client.post("/v1/embed", json={"sequences": ["ACGT"], "layer": 7})
    assert response.status_code == 422 and "layer" in detail(response) and "2-layer" in detail(response)


# ---------------------------------------------------------------------- variants
def test_variants_equal_genoseq_vep(client, lambda_seq, lambda_fasta, workdir, model_dir, py_model):
    # SNVs at known bases, an insertion and a deletion, one near the contig start
    positions = [10, 5000, 12_345, 30_001, 48_400]
    alt_of = {"A": "G", "C": "T", "G": "A", "T": "C"}
    variants = [{"chrom": "NC_001416.1", "pos": p, "ref": lambda_seq[p - 1], "alt": alt_of[lambda_seq[p - 1]]}
                for p in positions]
    variants.append({"chrom": "NC_001416.1", "pos": 20_000, "ref": lambda_seq[19_999], "alt": lambda_seq[19_999] + "GAT"})
    variants.append({"chrom": "NC_001416.1", "pos": 25_000, "ref": lambda_seq[24_999:25_003], "alt": lambda_seq[24_999]})
    vcf = workdir / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=NC_001416.1,length=48502>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   + "".join(f"{v['chrom']}\t{v['pos']}\t.\t{v['ref']}\t{v['alt']}\t.\t.\t.\n" for v in variants))
    out = workdir / "vep.tsv"
    assert main(["vep", "--model", str(model_dir), "--reference", str(lambda_fasta), "--vcf", str(vcf),
                 "--out", str(out), "--format", "tsv", "--window_length", "128", "--device", "cpu",
                 "--progress", "false"]) == 0
    expected = list(csv.DictReader(open(out), delimiter="\t"))

    response = client.post("/v1/variants", json={"variants": variants, "window_length": 128})
    assert response.status_code == 200, response.text
    effects = response.json()["effects"]
    assert [(e["pos"], e["ref"], e["alt"]) for e in effects] == [(v["pos"], v["ref"], v["alt"]) for v in variants]
    for effect, row in zip(effects, expected):
        assert row["status"] == "ok"
        assert math.isclose(effect["llr"], float(row["llr"]), rel_tol=1e-4, abs_tol=1e-4)
        assert math.isclose(effect["llr_reverse"], float(row["llr_reverse"]), rel_tol=1e-4, abs_tol=1e-4)
    found = py_model.variant_effects(lambda_fasta, [(v["chrom"], v["pos"], v["ref"], v["alt"]) for v in variants],
                                     window_length=128)
    for effect, row in zip(found, expected, strict=True):
        assert effect.status == "ok" and math.isclose(effect.llr, float(row["llr"]), rel_tol=1e-4, abs_tol=1e-4)
    bad = py_model.variant_effects({"s": "ACGTACGTAC"}, ("s", 2, "G", "T"), window_length=128)
    assert bad.status == "ref_mismatch" and bad.llr is None and "does not match" in bad.detail

    # the same variant given in a sequence that holds its whole window scores the same
    start = 12_345 - 1 - 200
    local = {"sequence": lambda_seq[start : start + 400], "pos": 201, "ref": variants[2]["ref"], "alt": variants[2]["alt"]}
    got = client.post("/v1/variants", json={"variants": [local], "window_length": 128}).json()["effects"][0]
    assert got["chrom"] is None
    # the same window, scored in a batch of another size: float32 sums agree to ~1e-5
    assert math.isclose(got["llr"], effects[2]["llr"], rel_tol=1e-4, abs_tol=1e-4)


@pytest.mark.parametrize("variant, field, words", [
    ({"chrom": "NC_001416.1", "pos": 10, "ref": "T", "alt": "G"}, "ref", "does not match"),
    ({"chrom": "chrZ", "pos": 10, "ref": "A", "alt": "G"}, "chrom", "unknown contig"),
    ({"chrom": "NC_001416.1", "pos": 48_502, "ref": "AC", "alt": "A"}, "pos", "past the end"),
    ({"sequence": "ACGTACGT", "pos": 3, "ref": "G", "alt": "<DEL>"}, "alt", "position 1"),
    ({"sequence": "ACGTAXGT", "pos": 3, "ref": "G", "alt": "A"}, "sequence", "position 6"),
    ({"sequence": "ACGTACGT", "pos": 0, "ref": "A", "alt": "G"}, "pos", "greater than or equal to 1"),
    ({"sequence": "ACGT", "chrom": "NC_001416.1", "pos": 1, "ref": "A", "alt": "G"}, "", "exactly one"),
    ({"sequence": "A" * 200, "pos": 1, "ref": "A" * 70, "alt": "A"}, "ref", "longer than the limit of 64"),
])
def test_bad_variants_get_422_naming_the_field(client, lambda_seq, variant, field, words):
    if variant.get("ref") == "T" and lambda_seq[9] == "T":
        variant = dict(variant, ref="C")
    good = {"sequence": "ACGTACGTAC", "pos": 2, "ref": "C", "alt": "T"}
    response = client.post("/v1/variants", json={"variants": [good, variant], "window_length": 128})
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"][:3] == ["body", "variants", 1] and (not field or error["loc"][3] == field), error
    assert words in error["msg"], error


# ---------------------------------------------------------------------- classify
def test_classify_equals_classify_predict(client, regions, workdir, classifier_dir):
    test_rows = regions[100:108]
    table = workdir / "test.tsv"
    table.write_text("sequence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in test_rows))
    out = workdir / "pred.tsv"
    assert main(["classify", "predict", "--classifier", str(classifier_dir), "--input", str(table), "--out", str(out),
                 "--device", "cpu", "--progress", "false"]) == 0
    expected = list(csv.DictReader(open(out), delimiter="\t"))
    response = client.post("/v1/classify", json={"sequences": [s for s, _ in test_rows]})
    assert response.status_code == 200, response.text
    body = response.json()
    for prediction, row in zip(body["predictions"], expected):
        assert prediction["label"] == row["predicted"]
        for cls in body["classes"]:
            assert math.isclose(prediction["probabilities"][cls], float(row[f"p_{cls}"]), rel_tol=1e-4, abs_tol=1e-6)
        assert math.isclose(sum(prediction["probabilities"].values()), 1.0, rel_tol=1e-6)
    clf = genoseq.load(classifier_dir, device="cpu")
    proba = clf.predict_proba([s for s, _ in test_rows])
    assert clf.predict([s for s, _ in test_rows]) == [row["predicted"] for row in expected]
    assert clf.predict(test_rows[0][0]) == expected[0]["predicted"]
    for p, row in zip(proba, expected, strict=True):
        np.testing.assert_allclose(p, [float(row[f"p_{c}"]) for c in clf.classes], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------- generate
def test_generate_equals_generate_sample(client, model_dir, classifier_dir, workdir):
    options = {"prompt": "ACGTTG", "max_new_tokens": 40, "num_samples": 3, "top_p": 0.9, "seed": 7,
               "gc_min": 0.2, "gc_max": 0.8, "forbid": ["GAATTC"], "max_homopolymer": 5}
    out = workdir / "designs.fa"
    assert main(["generate", "sample", "--model", str(model_dir), "--prompt", "ACGTTG", "--max_new_tokens", "40",
                 "--num_samples", "3", "--top_p", "0.9", "--seed", "7", "--gc_min", "0.2", "--gc_max", "0.8",
                 "--forbid", "[GAATTC]", "--max_homopolymer", "5", "--device", "cpu", "--report", "false",
                 "--out", str(out)]) == 0
    expected = [r.sequence for r in iter_fasta(out)]
    response = client.post("/v1/generate", json=options)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [d["sequence"] for d in body["designs"]] == expected
    for design in body["designs"]:
        seq = design["sequence"]
        assert len(seq) == 46 and seq.startswith("ACGTTG") and "GAATTC" not in seq  # (its own reverse complement)
        assert max_homopolymer(seq) <= 5
        assert 0.2 <= design["gc"] <= 0.8 and design["oracle_p"] is None
    assert body["shortfall"] == 0 and body["attempts"] >= 3
    assert genoseq.load(model_dir, device="cpu").generate(
        "ACGTTG", max_new_tokens=40, num_samples=3, top_p=0.9, seed=7, gc_min=0.2, gc_max=0.8, forbid=["GAATTC"],
        max_homopolymer=5) == expected

    classes = client.get("/v1/models").json()["classifier"]["classes"]
    with_oracle = client.post("/v1/generate", json={"max_new_tokens": 30, "num_samples": 2, "seed": 1, "oracle": True,
                                                    "oracle_class": classes[0], "select": "top-k", "oversample": 2})
    assert with_oracle.status_code == 200, with_oracle.text
    p = [d["oracle_p"] for d in with_oracle.json()["designs"]]
    assert len(p) == 2 and all(0 <= x <= 1 for x in p) and p[0] >= p[1]


@pytest.mark.parametrize("options, field, words", [
    ({"num_samples": 6}, "num_samples", "limit of 5"),
    ({"max_new_tokens": 101}, "max_new_tokens", "limit of 100"),
    ({"prompt": "ACGU"}, "prompt", "position 4"),
    ({"condition": "enhancer"}, "condition", "unknown label"),
    ({"oracle": True, "oracle_class": "nope"}, "oracle_class", "not one of"),
    ({"select": "top-k"}, "oracle", "need oracle=true"),
    ({"gc_min": 0.7, "gc_max": 0.3}, None, "above gc_max"),
    ({"forbid": ["GAANTC"]}, "forbid", "pattern"),
    ({"temperature": -1}, "temperature", "greater than or equal"),
    ({"num_samples": 1, "seed": 0, "nonsense": 1}, "nonsense", "Extra inputs"),
])
def test_bad_generate_options(client, options, field, words):
    response = client.post("/v1/generate", json={"max_new_tokens": 20, **options})
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert field is None or field in error["loc"], error
    assert words in error["msg"], error


# ---------------------------------------------------------------------- align
ALIGN_START, ALIGN_END = 1_000_000, 1_030_000  # 30 kb of E. coli: a tiny read index builds in seconds


@pytest.fixture(scope="module")
def align_slice(ecoli_fasta, workdir) -> tuple[Path, str]:
    seq = next(iter_fasta(ecoli_fasta)).sequence[ALIGN_START:ALIGN_END].upper()
    path = workdir / "ecoli_slice.fa"
    path.write_text(">ecoli_slice\n" + "\n".join(seq[i:i + 80] for i in range(0, len(seq), 80)) + "\n")
    return path, seq


@pytest.fixture(scope="module")
def align_index(align_slice, workdir) -> Path:
    """A read encoder trained 4 steps (tests/test_align.py's recipe, smaller) and its index of the slice."""
    from genoseq.pipelines import align

    encoder, index = workdir / "read_encoder", workdir / "read_index"
    align.train(str(align_slice[0]), str(encoder), steps=4, batch_size=8, val_pairs=256, progress=False,
                embed_dim=32, seed=0)
    align.index(str(encoder), str(align_slice[0]), str(index), progress=False)
    return index


@pytest.fixture(scope="module")
def align_client(model_dir, align_index):
    settings = ApiSettings(model=str(model_dir), index=str(align_index), device="cpu",
                           limits=Limits(max_sequence_length=1000, max_reads=6))
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


def revcomp(seq: str) -> str:
    return seq.translate(str.maketrans("ACGT", "TGCA"))[::-1]


def test_align_equals_genoseq_align_map(align_client, align_slice, align_index, workdir):
    seq = align_slice[1]
    rng = np.random.default_rng(3)
    sub = "A" if seq[20_100] != "A" else "C"
    reads = {
        "fwd": seq[5_000:5_250],
        "rev": revcomp(seq[12_000:12_250]),
        "edited": (seq[20_000:20_100] + sub + seq[20_101:20_180] + seq[20_181:20_251]).lower(),  # 1 mismatch, 1 deletion
        "random": "".join(rng.choice(list("ACGT"), 250)),
    }
    quals = {name: "".join(chr(33 + int(q)) for q in rng.integers(2, 41, len(r))) for name, r in reads.items()}
    fastq = workdir / "align_reads.fq"
    fastq.write_text("".join(f"@{name}\n{r}\n+\n{quals[name]}\n" for name, r in reads.items()))
    entries = json.loads((align_index / "manifest.json").read_text())["n_entries"]
    # genoseq align map's defaults, then every index entry retrieved (placement independent of the tiny encoder)
    for options in ({}, {"top_k": entries, "max_error_rate": 0.05, "extended_cigar": False}):
        out = workdir / f"align_{len(options)}.sam"
        args = [x for k, v in options.items() for x in (f"--{k}", str(v).lower())]
        assert main(["align", "map", "--index", str(align_index), "--reads", str(fastq), "--out", str(out),
                     "--device", "cpu", "--progress", "false", *args]) == 0
        with pysam.AlignmentFile(str(out), "r") as sam_file:
            expected = list(sam_file)
            sq = sam_file.header.to_dict()["SQ"]
        cli_lines = [line for line in out.read_text().splitlines() if not line.startswith("@")]

        response = align_client.post("/v1/align", json={"sequences": list(reads.values()), "names": list(reads),
                                                        "qualities": list(quals.values()), "sam": True, **options})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["top_k"] == options.get("top_k", 8) and body["flank"] == 250
        got = body["alignments"]
        assert [a["sam"] for a in got] == cli_lines  # the very records the CLI writes
        assert pysam.AlignmentHeader.from_text(body["sam_header"]).to_dict()["SQ"] == sq
        aligner = genoseq.load(align_index, device="cpu")
        found_py = aligner.map(list(zip(reads, reads.values(), quals.values())), **options)
        assert aligner.to_sam(found_py) == cli_lines  # the Python API gives the same records
        for a, rec in zip(got, expected, strict=True):
            assert (a["name"], a["flag"], a["mapped"], a["mapq"]) == (rec.query_name, rec.flag, not rec.is_unmapped,
                                                                      rec.mapping_quality)
            if rec.is_unmapped:
                assert a["contig"] is a["pos"] is a["strand"] is a["cigar"] is a["edit_distance"] is None
                continue
            assert (a["contig"], a["pos"], a["strand"], a["cigar"]) == (
                rec.reference_name, rec.reference_start + 1, "-" if rec.is_reverse else "+", rec.cigarstring)
            assert (a["edit_distance"], a["alignment_score"]) == (rec.get_tag("NM"), rec.get_tag("AS"))
            assert a["second_best_score"] == (rec.get_tag("XS") if rec.has_tag("XS") else None)

    found = {a["name"]: a for a in got}  # every entry searched: the true placements
    assert [found["fwd"][k] for k in ("contig", "pos", "strand", "cigar", "mapq")] == ["ecoli_slice", 5_001, "+", "250M", 60]
    assert [found["rev"][k] for k in ("pos", "strand", "cigar", "edit_distance")] == [12_001, "-", "250M", 0]
    assert found["edited"]["pos"] == 20_001 and found["edited"]["edit_distance"] == 2
    assert found["edited"]["alignment_score"] == -2 and "1D" in found["edited"]["cigar"]
    assert not found["random"]["mapped"] and found["random"]["alignment_score"] is None


def test_align_defaults_and_odd_reads(align_client, align_slice):
    # no names or qualities; a 1-base read, Ns and IUPAC codes are valid input, never a 500
    reads = [align_slice[1][7_000:7_250], "A", "NNNNNNNNNN", "acgtRYKMacgt"]
    response = align_client.post("/v1/align", json={"sequences": reads, "sam": True})
    assert response.status_code == 200, response.text
    got = response.json()["alignments"]
    assert [a["name"] for a in got] == ["#1", "#2", "#3", "#4"]
    assert got[0]["sam"].split("\t")[10] == "*"  # no qualities
    assert got[3]["sam"].split("\t")[9] == "ACGTNNNNACGT"  # normalised as genoseq align map does (its own RC)
    assert response.json()["sam_header"].startswith("@HD")
    assert align_client.post("/v1/align", json={"sequences": reads}).json()["alignments"][0]["sam"] is None


def test_align_models_info(align_client):
    info = align_client.get("/v1/models").json()["index"]
    assert info["name"] == "read_index" and info["index_type"] == "flat"
    assert info["contigs"] == [{"name": "ecoli_slice", "length": ALIGN_END - ALIGN_START}]
    assert info["entries"] == 2 * info["fragments"] and (info["fragment_length"], info["overlap"]) == (500, 250)
    assert info["encoder"]["model_type"] == "GenoSeqReadEncoder" and info["encoder"]["parameters"] > 1000
    assert info["encoder"]["config"]["encoder"]["embed_dim"] == 32
    assert info["mapping"] == {"top_k": 8, "rescue_k": 64, "flank": 250, "max_error_rate": 0.1, "extended_cigar": True,
                               "batch_size": 1024}


def test_align_without_index_is_404(client):
    response = client.post("/v1/align", json={"sequences": ["ACGT"]})
    assert response.status_code == 404 and "--index" in response.json()["detail"]
    assert client.get("/v1/models").json()["index"] is None


@pytest.mark.parametrize("body, loc, words", [
    ({"sequences": ["ACGTACGT", "ACGXT"]}, ["sequences", 1], ("'X'", "position 4")),
    ({"sequences": ["ACGT", ""]}, ["sequences", 1], "at least 1 character"),
    ({"sequences": ["ACGT", "A" * 1001]}, ["sequences", 1], "limit of 1000"),
    ({"sequences": ["ACGT"] * 7}, ["sequences"], "7 reads is more than the limit of 6"),
    ({"sequences": [], "top_k": 2}, ["sequences"], "at least 1 item"),
    ({"sequences": ["ACGT", "ACGT"], "qualities": ["IIII", "III"]}, ["qualities", 1], "3 quality characters"),
    ({"sequences": ["ACGT"], "qualities": ["II I"]}, ["qualities", 0], "pattern"),
    ({"sequences": ["ACGT"], "names": ["read one"]}, ["names", 0], "pattern"),
    ({"sequences": ["ACGT", "ACGT"], "names": ["a"]}, [], "names has 1 entries for 2 sequences"),
    ({"sequences": ["ACGT"], "top_k": 0}, ["top_k"], "greater than or equal to 1"),
    ({"sequences": ["ACGT"], "max_error_rate": 1.0}, ["max_error_rate"], "less than 1"),
    ({"sequences": ["ACGT"], "flank": -1}, ["flank"], "greater than or equal to 0"),
    ({"sequences": ["ACGT"], "sam": 1}, ["sam"], "boolean"),
    ({"sequences": ["ACGT"], "threads": 4}, ["threads"], "Extra inputs"),
])
def test_bad_align_requests_get_422(align_client, body, loc, words):
    response = align_client.post("/v1/align", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", *loc], error
    assert all(w in error["msg"] for w in ((words,) if isinstance(words, str) else words)), error
    assert "input" not in error  # rejected input is not echoed back


# ---------------------------------------------------------------------- bad input and limits
@pytest.mark.parametrize("route", ["/v1/score", "/v1/embed", "/v1/classify"])
def test_bad_sequences_get_422_with_field_and_position(client, route):
    response = client.post(route, json={"sequences": ["ACGT", "ACGTNRYacgt", "ACGXT"]})
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "sequences", 2] and "'X'" in error["msg"] and "position 4" in error["msg"]

    empty = client.post(route, json={"sequences": ["ACGT", ""]})
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "sequences", 1]
    assert "at least 1 character" in empty.json()["detail"][0]["msg"]
    assert "input" not in empty.json()["detail"][0]  # rejected input is not echoed back

    too_long = client.post(route, json={"sequences": ["A" * 5001]})
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["body", "sequences", 0]
    assert "limit of 5000" in too_long.json()["detail"][0]["msg"]

    too_many = client.post(route, json={"sequences": ["ACGT"] * 9})
    assert too_many.status_code == 422 and "limit of 8" in too_many.json()["detail"][0]["msg"]

    none = client.post(route, json={"sequences": []})
    assert none.status_code == 422 and none.json()["detail"][0]["loc"] == ["body", "sequences"]

    not_json = client.post(route, content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 422

    wrong_type = client.post(route, json={"sequences": "ACGT"})
    assert wrong_type.status_code == 422


def test_score_names_must_match(client):
    response = client.post("/v1/score", json={"sequences": ["ACGT", "ACGT"], "names": ["a"]})
    assert response.status_code == 422 and "names has 1 entries for 2 sequences" in detail(response)


def test_body_limit_413(client):
    big = {"sequences": ["ACGT" * 20_000]}  # 80 kB > 64 KiB
    assert client.post("/v1/score", json=big).status_code == 413

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b"A" * 8192

    response = client.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit of 65536 bytes" in response.json()["detail"]


def test_request_log_has_counts_not_sequences(client, caplog):
    secret = "ACGTTTGACCAGTAGGACCATTAGGCAT"
    with caplog.at_level("INFO", logger="genoseq.api.access"):
        client.post("/v1/score", json={"sequences": [secret, "ACGT"]})
    lines = [r.getMessage() for r in caplog.records if r.name == "genoseq.api.access"]
    assert any("POST /v1/score 200" in line and "sequences=2 bases=32" in line and "ms" in line for line in lines)
    assert not any(secret in line for line in lines)


# ---------------------------------------------------------------------- models missing, loading, auth
def test_missing_models_and_failed_loading(model_dir, tmp_path):
    with TestClient(create_app(model=str(model_dir), device="cpu")) as c:
        wait_ready(c)
        info = c.get("/v1/models").json()
        assert info["classifier"] is None and info["generator"] is None and info["reference"] is None
        response = c.post("/v1/classify", json={"sequences": ["ACGT"]})
        assert response.status_code == 404 and "--classifier" in response.json()["detail"]
        assert c.post("/v1/generate", json={}).status_code == 404
        by_contig = c.post("/v1/variants", json={"variants": [{"chrom": "x", "pos": 1, "ref": "A", "alt": "G"}]})
        assert by_contig.status_code == 422 and "--reference" in detail(by_contig)

    with TestClient(create_app(model=str(tmp_path / "missing"), device="cpu")) as c:
        deadline = time.monotonic() + 30
        while c.get("/readyz").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "failed" and ready.json()["error"]
        assert c.get("/healthz").status_code == 200
        response = c.post("/v1/score", json={"sequences": ["ACGT"]})
        assert response.status_code == 503 and "failed to load" in response.json()["detail"]


def test_api_key(model_dir):
    with TestClient(create_app(model=str(model_dir), device="cpu", api_key=KEY)) as c:
        wait_ready(c)
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
        body = {"sequences": ["ACGTACGT"]}
        missing = c.post("/v1/score", json=body)
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
        assert c.post("/v1/score", json=body, headers={"X-API-Key": KEY + "x"}).status_code == 401
        assert c.get("/v1/models").status_code == 401
        assert c.post("/v1/align", json=body).status_code == 401
        assert c.post("/v1/align", json=body, headers={"X-API-Key": KEY}).status_code == 404  # no index loaded
        assert c.post("/v1/score", json=body, headers={"X-API-Key": KEY}).status_code == 200
        assert c.get("/v1/models", headers={"X-API-Key": KEY}).status_code == 200
        schema = c.get("/openapi.json").json()
        assert "APIKeyHeader" in schema["components"]["securitySchemes"]


def test_serve_refuses_open_public_host(model_dir, tmp_path, capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    assert main(["serve", "--model", str(model_dir), "--host", "0.0.0.0"]) == 2
    assert "refusing to serve without an API key" in capsys.readouterr().err
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    assert main(["serve", "--model", str(model_dir), "--host", "0.0.0.0", "--api_key_file", str(empty)]) == 2
    assert "API key file is empty" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["serve", "--model", str(model_dir), "--index", str(tmp_path)]) == 2
    assert "not a genoseq align index" in capsys.readouterr().err


# ---------------------------------------------------------------------- offline docs
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def test_docs_pages_load_nothing_from_the_internet(client):
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        html = response.text
        assert not EXTERNAL.search(html), f"{page} references an external host"
        assert "fonts.googleapis" not in html and "cdn.jsdelivr" not in html
        assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
        assert len(assets) >= 2  # the script (and style sheet / favicon) of the page
        for asset in assets:
            assert asset.startswith("/"), asset
            got = client.get(asset)
            assert got.status_code == 200 and len(got.content) > 1000, asset
    assert client.get("/openapi.json").json()["info"]["title"] == "genoseq"


def _browser() -> str | None:
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason="no headless browser (Debian: apt-get install chromium)")
def test_docs_render_in_a_headless_browser_without_internet(model_dir):
    """Swagger UI and ReDoc render the API's operations in a real browser, from packaged assets."""
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "genoseq.cli", "serve", "--model", str(model_dir), "--port", str(port),
                             "--device", "cpu"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, f"{base}/healthz", 120)
        for page, marker in (("/docs", "opblock"), ("/redoc", "/v1/score")):
            # --proxy-server to nowhere: any request off loopback fails, as on an offline node
            dom = subprocess.run(
                [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                 "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1", "--dump-dom", base + page],
                capture_output=True, text=True, timeout=180).stdout
            assert marker in dom, f"{page} did not render ({len(dom)} bytes of DOM)"
            assert "score" in dom.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# ---------------------------------------------------------------------- a real server
def wait_until_up(proc, url: str, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail if the server process exits or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "server exited"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} not answering within {timeout:.0f} s"
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_genoseq_serve_subprocess(model_dir, lambda_seq, tmp_path):
    port = free_port()
    key_file = tmp_path / "api.key"
    key_file.write_text(KEY + "\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "genoseq.cli", "serve", "--model", str(model_dir), "--port", str(port),
                             "--device", "cpu", "--api_key_file", str(key_file), "--chunk_size", "512", "--context", "128"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, f"{base}/readyz", 60)
        seq = lambda_seq[100:600]
        response = httpx.post(f"{base}/v1/score", json={"sequences": [seq]}, headers={"X-API-Key": KEY}, timeout=30)
        assert response.status_code == 200, response.text
        direct = client_free_score(model_dir, seq)
        assert math.isclose(response.json()["scores"][0]["log_likelihood"], direct, rel_tol=1e-9)
        assert httpx.post(f"{base}/v1/score", json={"sequences": [seq]}, timeout=30).status_code == 401
    finally:
        proc.terminate()
        try:
            output = proc.communicate(timeout=20)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0].decode()
    assert "POST /v1/score 200" in output and "sequences=1 bases=500" in output
    assert seq not in output


def client_free_score(model_dir, seq: str) -> float:
    """The log-likelihood `genoseq score` computes for one sequence (its own functions, no server)."""
    import torch

    from genoseq.models import GenoSeqLM
    from genoseq.models.inference import token_log_probs
    from genoseq.tasks.scoring import summarize_log_probs

    lm = GenoSeqLM.from_pretrained(model_dir)
    ids = torch.from_numpy(lm.tokenizer.encode(seq).astype("int64"))
    return summarize_log_probs(ids, token_log_probs(lm, ids, chunk_size=512, context=128))[0]
