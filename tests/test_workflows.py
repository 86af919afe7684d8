"""The Snakemake workflow catalog (workflows/): lint, planning, and a real run on tiny real data.

Snakemake comes with the ``workflows`` extra; without it these tests fail (they do not skip), so
CI cannot pass while silently testing nothing. The real run uses workflows/config/test.yaml
(slices of the shared genomes, 20 variants, 90 labelled regions, an 8-step model, a 4-step read
encoder and 32 simulated reads) with ``--cores 2`` and finds ``genoseq`` in this interpreter's bin
folder. The same run goes through sbatch with the SLURM profile on the single-node cluster of
workflows/slurm/local_cluster.sh (skipped where that cannot run: no root, no apt-get) and must
write the same results.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "workflows"
SNAKEFILE = WORKFLOW / "Snakefile"
TEST_CONFIG = WORKFLOW / "config" / "test.yaml"
BIN = Path(sys.executable).parent

# Jobs of the default config (config.yaml): 3 genomes, 1 model, 2 scored genomes, 2 VCFs,
# 1 classification task, 1 conditional model, 2 design sets, 1 embedding set, 1 aligner, 1 read set.
DEFAULT_JOBS = {
    "stage_genome": 3, "prepare": 3, "pretrain": 1, "score": 2, "vep": 2, "classify_fit": 1,
    "classify_evaluate": 1, "generate_fit": 1, "generate_sample": 2, "embed": 1,
    "align_train": 1, "align_index": 1, "align_map": 1, "interpret_ism": 1, "all": 1,
}
# Jobs of test.yaml: an E. coli slice, three datasets cut to their first records and the reads
# that start in the slice.
TEST_JOBS = {
    "stage_genome": 1, "subset_dataset": 4, "prepare": 1, "pretrain": 1, "score": 1, "vep": 1,
    "classify_fit": 1, "classify_evaluate": 1, "generate_fit": 1, "generate_sample": 1, "embed": 1,
    "align_train": 1, "align_index": 1, "align_map": 1, "interpret_ism": 1, "all": 1,
}
TEST_READS = 32  # test.yaml: the first 32 shared reads that start before 90,000
ECOLI_CONTIG = "K-12-MG1655"


def _require_snakemake() -> None:
    if importlib.util.find_spec("snakemake") is None:
        pytest.fail("snakemake is not installed in this environment: pip install -e '.[workflows]'", pytrace=False)


def snakemake(*args: str, workdir: Path, config_file: Path | None = None, data_dir: Path | None = None,
              config: tuple[str, ...] = (), timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the snakemake CLI of this interpreter on the catalog, with genoseq from the same venv."""
    _require_snakemake()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir)]
    if config_file is not None:
        cmd += ["--configfile", str(config_file)]
    items = ([f"data_dir={data_dir}"] if data_dir is not None else []) + list(config)
    if items:
        cmd += ["--config", *items]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run(cmd + list(args), cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def output_of(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> number of jobs."""
    lines = text.splitlines()
    start = lines.index("Job stats:")
    counts = {}
    for line in lines[start + 3:]:  # skip the header and its dashes
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def fail_with_logs(result: subprocess.CompletedProcess, workdir: Path) -> None:
    logs = "\n".join(f"--- {p.relative_to(workdir)}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log")))
    pytest.fail(f"snakemake exited with {result.returncode}\n{output_of(result)[-6000:]}\n{logs}", pytrace=False)


# ---------------------------------------------------------------------- lint and planning
def test_lint_is_clean(tmp_path):
    for config_file in (None, TEST_CONFIG):
        result = snakemake("--lint", workdir=tmp_path, config_file=config_file)
        text = output_of(result)
        assert result.returncode == 0, text
        assert "Lints for" not in text, text
        assert "Congratulations, your workflow is in a good condition!" in text


def test_lint_catches_a_rule_without_log(tmp_path):
    """The lint check above can fail: the same catalog with one log directive removed is reported."""
    _require_snakemake()
    copy = tmp_path / "workflows"
    shutil.copytree(WORKFLOW, copy, ignore=shutil.ignore_patterns(".snakemake"))
    rule_file = copy / "rules" / "score.smk"
    text = rule_file.read_text()
    assert "    log:\n" in text
    rule_file.write_text(re.sub(r"    log:\n        [^\n]+\n", "", text))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(copy / "Snakefile"), "-d", str(tmp_path), "--lint"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Lints for rule score" in output_of(result) and "No log directive defined" in output_of(result)


def test_dry_run_plans_the_default_config(tmp_path, data_dir):
    result = snakemake("-n", "-p", workdir=tmp_path, data_dir=data_dir)
    text = output_of(result)
    assert result.returncode == 0, text
    assert job_counts(text) == DEFAULT_JOBS
    for command in ("genoseq prepare", "genoseq pretrain", "genoseq score", "genoseq vep", "genoseq classify fit",
                    "genoseq classify evaluate", "genoseq generate fit", "genoseq generate sample", "genoseq embed",
                    "genoseq align train", "genoseq align index", "genoseq align map"):
        assert command + " --config" in text, command
    # a GPU is requested for the model jobs of the default config, and the shared data is read
    assert re.search(r"rule pretrain:.*?resources:[^\n]*gpu=1", text, re.S)
    assert re.search(r"rule align_train:.*?resources:[^\n]*gpu=1", text, re.S)
    assert str(data_dir / "ecoli_k12_mg1655.fa.gz") in text
    assert str(data_dir / "ecoli_reads_250bp.fq.gz") in text and "--out results/align/ecoli/ecoli_reads.bam" in text


def test_dry_run_plans_the_test_config(tmp_path, data_dir):
    result = snakemake("-n", "-p", workdir=tmp_path, config_file=TEST_CONFIG, data_dir=data_dir)
    text = output_of(result)
    assert result.returncode == 0, text
    assert job_counts(text) == TEST_JOBS
    # options from the config reach genoseq as its inline --config document
    assert '"max_steps": 8' in text and '"window_length": 128' in text
    assert '"top_k": 1024' in text and "--init null" in text


def test_dry_run_aligner_from_a_pretrained_model(tmp_path, data_dir):
    """align.aligners.<name>.init names a model: its released folder is an input of align_train."""
    result = snakemake("-n", "-p", workdir=tmp_path, config_file=TEST_CONFIG, data_dir=data_dir,
                       config=("targets=[align]", "align={'aligners': {'ecoli': {'init': 'small'}}}"), timeout=120)
    text = output_of(result)
    assert result.returncode == 0, text
    assert job_counts(text) == {"stage_genome": 1, "subset_dataset": 1, "prepare": 1, "pretrain": 1,
                                "align_train": 1, "align_index": 1, "align_map": 1, "all": 1}
    assert "--init results/pretrain/small/model --out results/align/ecoli/encoder" in text


def test_slurm_profile_names_workflow_rules(tmp_path, data_dir):
    """The SLURM profile stays in step with the rules it configures (it runs on a local cluster below)."""
    import yaml

    profile = yaml.safe_load((WORKFLOW / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    result = snakemake("--list-rules", workdir=tmp_path, data_dir=data_dir, timeout=120)
    assert result.returncode == 0, output_of(result)
    rules = set(re.findall(r"^(\w+)", result.stdout, re.M))  # rule names; docstrings are indented
    assert {"pretrain", "vep", "classify_fit", "generate_sample", "align_train", "align_map"} <= rules
    assert set(profile["set-resources"]) <= rules
    model_rules = rules - {"all", "stage_genome", "subset_dataset", "prepare"}
    assert model_rules <= set(profile["set-resources"])  # every model job goes to the GPU partition


def test_unknown_target_is_an_error(tmp_path, data_dir):
    result = snakemake("-n", workdir=tmp_path, data_dir=data_dir, config=("targets=[pretrain,nonsense]",), timeout=120)
    assert result.returncode != 0
    assert "unknown target(s) ['nonsense']" in output_of(result)


# ---------------------------------------------------------------------- a real run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_dir):
    """Run test.yaml end to end once (--cores 2); the tests below check what it wrote."""
    workdir = tmp_path_factory.mktemp("workflow_run")
    result = snakemake("--cores", "2", workdir=workdir, config_file=TEST_CONFIG, data_dir=data_dir)
    if result.returncode != 0:
        fail_with_logs(result, workdir)
    return workdir


def _read_fasta_prefix(path: Path, n: int) -> str:
    """The first n bases of the first record of a gzipped FASTA."""
    parts, total = [], 0
    with gzip.open(path, "rt") as fh:
        next(fh)
        for line in fh:
            if line.startswith(">") or total >= n:
                break
            parts.append(line.strip())
            total += len(parts[-1])
    return "".join(parts)[:n]


@pytest.mark.slow
def test_run_prepares_genome_slices(tiny_run, data_dir):
    from genoseq.genome import open_genome
    from genoseq.tokenizer import Tokenizer

    results = tiny_run / "results"
    ecoli = open_genome(results / "genomes" / "ecoli.h5")
    assert ecoli.contigs == {ECOLI_CONTIG: 100_000}
    expected = Tokenizer().encode(_read_fasta_prefix(data_dir / "ecoli_k12_mg1655.fa.gz", 100_000))
    assert (ecoli.fetch(ECOLI_CONTIG, 0, 100_000) == expected).all()
    ecoli.close()
    summary = json.loads((results / "genomes" / "ecoli.h5.json").read_text())
    assert summary["total_length"] == 100_000


@pytest.mark.slow
def test_run_pretrains_a_loadable_model(tiny_run):
    from genoseq.models import GenoSeqLM

    run = tiny_run / "results" / "pretrain" / "small"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 8
    assert math.isfinite(metrics["final_val_bits_per_base"])
    lm = GenoSeqLM.from_pretrained(run / "model")
    assert lm.config.d_model == 32 and lm.config.pattern == "MA"
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert "genoseq pretrain: 8 steps" in (tiny_run / "logs" / "pretrain" / "small.log").read_text()


@pytest.mark.slow
def test_run_scores_a_genome(tiny_run):
    with open(tiny_run / "results" / "score" / "small" / "ecoli.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == 1
    row = rows[0]  # position 1 has no context and is not scored
    assert row["name"] == ECOLI_CONTIG and int(row["length"]) == 100_000 and int(row["scored_bases"]) == 99_999
    # an 8-step model is close to the 2 bits/base of a uniform guess, far from a broken 0 or inf
    assert 1.0 < float(row["bits_per_base"]) < 5.0
    assert float(row["log_likelihood"]) < 0


@pytest.mark.slow
def test_run_annotates_the_vcf(tiny_run, data_dir):
    import pysam

    with gzip.open(data_dir / "ecoli_snvs.vcf.gz", "rt") as source:  # plain gzip: pysam cannot open it
        rows = [line.split("\t") for line in source if not line.startswith("#")][:20]
    expected = [(r[0], int(r[1]), r[3], tuple(r[4].split(","))) for r in rows]
    with pysam.VariantFile(str(tiny_run / "results" / "vep" / "small" / "ecoli_snvs.vcf.gz")) as vcf:
        assert {"GENOSEQ_LLR", "GENOSEQ_STATUS"} <= set(vcf.header.info)
        records = list(vcf)
    assert [(r.chrom, r.pos, r.ref, r.alts) for r in records] == expected
    for record in records:
        assert record.info["GENOSEQ_STATUS"] == ("ok",)
        assert math.isfinite(record.info["GENOSEQ_LLR"][0])
        assert record.info["EFFECT"] in ("synonymous", "missense", "stop_gained")  # input INFO kept
    summary = json.loads((tiny_run / "results" / "vep" / "small" / "ecoli_snvs.vcf.gz.json").read_text())
    assert summary["alleles"] == 20 and summary["window_length"] == 128


@pytest.mark.slow
def test_run_trains_and_evaluates_a_classifier(tiny_run):
    task = tiny_run / "results" / "classify" / "small" / "regions"
    config = json.loads((task / "classifier" / "config.json").read_text())
    assert config["classifier"]["classes"] == ["coding", "downstream", "upstream"]
    training = json.loads((task / "classifier" / "training.json").read_text())
    assert training["n_train"] + training["n_val"] == 60  # the first 60 E. coli regions
    report = task / "evaluation"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n"] == 30 and 0.0 <= metrics["accuracy"] <= 1.0
    with open(report / "predictions.tsv") as fh:
        predictions = list(csv.DictReader(fh, delimiter="\t"))
    assert len(predictions) == 30
    for row in predictions:
        p = [float(row[f"p_{c}"]) for c in ("coding", "downstream", "upstream")]
        assert abs(sum(p) - 1) < 1e-3 and row["predicted"] in ("coding", "downstream", "upstream")
    with open(report / "confusion_matrix.tsv") as fh:
        matrix = [line.rstrip("\n").split("\t")[1:] for line in fh][1:]
    assert sum(int(v) for row in matrix for v in row) == 30
    assert (report / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_run_writes_designs(tiny_run):
    from genoseq.fasta import iter_fasta
    from genoseq.models import GenoSeqLM

    results = tiny_run / "results" / "generate" / "small"
    conditional = GenoSeqLM.from_pretrained(results / "conditional" / "regions")
    for label in ("coding", "downstream", "upstream"):
        conditional.tokenizer.condition_id(label)  # one condition token per region label
    records = list(iter_fasta(results / "upstream.fa"))
    assert len(records) == 3
    for record in records:
        assert len(record.sequence) == 60 and set(record.sequence) <= set("ACGT")
    summary = json.loads((results / "upstream.json").read_text())
    assert summary["condition"] == "upstream" and summary["settings"]["seed"] == 1
    assert summary["n_designs"] == 3 and summary["needed"] == 6  # oversample 2: the oracle kept the best half
    assert summary["oracle"].endswith("classify/small/regions/classifier")
    with open(results / "upstream.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == 3
    assert all(0.0 <= float(r["oracle_p"]) <= 1.0 for r in rows)
    assert (results / "upstream.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_run_writes_embeddings(tiny_run):
    import h5py
    import numpy as np

    with h5py.File(tiny_run / "results" / "embed" / "small" / "saureus_regions.h5", "r") as h5:
        vectors = h5["embeddings"][:]
        labels = [v.decode() if isinstance(v, bytes) else v for v in h5["labels"][:]]
    assert vectors.shape == (30, 32) and np.isfinite(vectors).all()
    assert set(labels) <= {"coding", "downstream", "upstream"}


@pytest.mark.slow
def test_run_maps_reads(tiny_run, data_dir):
    import pysam

    align = tiny_run / "results" / "align" / "ecoli"
    encoder = json.loads((align / "encoder" / "metrics.json").read_text())
    assert encoder["steps"] == 4 and encoder["init"] is None
    manifest = json.loads((align / "index" / "manifest.json").read_text())
    assert manifest["contigs"][0]["name"] == ECOLI_CONTIG and manifest["contigs"][0]["length"] == 100_000
    assert (align / "index" / "model" / "config.json").exists()

    bam = align / "ecoli_reads.bam"
    pysam.quickcheck(str(bam))  # raises on a truncated or malformed file
    assert (align / "ecoli_reads.bam.bai").exists()
    with pysam.AlignmentFile(str(bam)) as fh:
        assert fh.header["HD"]["SO"] == "coordinate"
        assert [(sq["SN"], sq["LN"]) for sq in fh.header["SQ"]] == [(ECOLI_CONTIG, 100_000)]
        mapped, unmapped = fh.mapped, fh.unmapped  # from the .bai
        records = list(fh.fetch(until_eof=True))
    assert mapped + unmapped == len(records) == TEST_READS
    assert len({r.query_name for r in records}) == TEST_READS and not any(r.is_secondary for r in records)
    # every read starts in the slice (truth in the name: CONTIG_POS1_POS2_STRAND1_...); a read is
    # placed when contig and strand match and its leftmost base (soft clip added back) is within 10 bp
    placed = 0
    for r in records:
        contig, pos1, _, strand1 = r.query_name.split("_")[:4]
        assert contig == ECOLI_CONTIG and int(pos1) < 90_000
        if r.is_unmapped:
            continue
        clip = r.cigartuples[0][1] if r.cigartuples[0][0] == pysam.CSOFT_CLIP else 0
        placed += (r.reference_name == contig and r.is_reverse == (strand1 == "1")
                   and abs(r.reference_start - clip + 1 - int(pos1)) <= 10)
    assert placed >= 0.9 * TEST_READS  # every index entry is searched: only a repeat could mislead
    summary = json.loads((align / "ecoli_reads.bam.json").read_text())
    assert summary["reads"] == TEST_READS and summary["mapped"] == mapped and summary["top_k"] == 1024
    assert "genoseq align map: 32 reads" in (tiny_run / "logs" / "align_map" / "ecoli" / "ecoli_reads.log").read_text()


@pytest.mark.slow
def test_run_mutates_a_region(tiny_run):
    import numpy as np

    out = tiny_run / "results" / "interpret" / "small" / "ecoli_thr_operon"
    with np.load(out / "ism.npz", allow_pickle=False) as data:
        assert data["llr"].shape == (1, 40, 4) and data["contigs"].tolist() == [ECOLI_CONTIG]
        assert data["starts"].tolist() == [300] and np.isfinite(data["llr"]).all()
    assert (out / "ism.bedgraph").read_text().splitlines()[1].split("\t")[:2] == [ECOLI_CONTIG, "300"]
    assert len(list((out / "figures").glob("*.png"))) == 1


@pytest.mark.slow
def test_run_logs_every_job(tiny_run):
    logs = sorted(p.relative_to(tiny_run / "logs").as_posix() for p in (tiny_run / "logs").rglob("*.log"))
    assert logs == [
        "align_index/ecoli.log", "align_map/ecoli/ecoli_reads.log", "align_train/ecoli.log",
        "classify_evaluate/small/regions.log", "classify_fit/small/regions.log", "embed/small/saureus_regions.log",
        "generate_fit/small/regions.log", "generate_sample/small/upstream.log",
        "interpret_ism/small/ecoli_thr_operon.log", "prepare/ecoli.log", "pretrain/small.log",
        "score/small/ecoli.log", "stage_genome/ecoli.log",
        "subset_dataset/ecoli_reads.fastq.log", "subset_dataset/ecoli_regions.tsv.log", "subset_dataset/ecoli_snvs.vcf.log",
        "subset_dataset/saureus_regions.tsv.log", "vep/small/ecoli_snvs.log",
    ]
    assert "genoseq score: 1 records" in (tiny_run / "logs" / "score" / "small" / "ecoli.log").read_text()


@pytest.mark.slow
def test_second_run_does_nothing(tiny_run, data_dir):
    outputs = [p for p in (tiny_run / "results").rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in outputs}
    dry = snakemake("-n", "--cores", "2", workdir=tiny_run, config_file=TEST_CONFIG, data_dir=data_dir)
    assert dry.returncode == 0, output_of(dry)
    assert "Nothing to be done (all requested files are present and up to date)." in output_of(dry)
    again = snakemake("--cores", "2", workdir=tiny_run, config_file=TEST_CONFIG, data_dir=data_dir)
    assert again.returncode == 0, output_of(again)
    assert "Nothing to be done" in output_of(again)
    assert {p: p.stat().st_mtime_ns for p in outputs} == before
    # while a changed option reruns exactly the job that uses it
    changed = snakemake("-n", "--cores", "2", workdir=tiny_run, config_file=TEST_CONFIG, data_dir=data_dir,
                        config=("vep={'options': {'window_length': 64}}",))
    assert changed.returncode == 0, output_of(changed)
    assert job_counts(output_of(changed)) == {"vep": 1, "all": 1}
    # an encoder option retrains it, and so re-indexes and re-maps; a map option only re-maps
    changed = snakemake("-n", "--cores", "2", workdir=tiny_run, config_file=TEST_CONFIG, data_dir=data_dir,
                        config=("align={'train_options': {'steps': 5}, 'map_options': {'top_k': 512}}",))
    assert changed.returncode == 0, output_of(changed)
    assert job_counts(output_of(changed)) == {"align_train": 1, "align_index": 1, "align_map": 1, "all": 1}
    changed = snakemake("-n", "--cores", "2", workdir=tiny_run, config_file=TEST_CONFIG, data_dir=data_dir,
                        config=("align={'map_options': {'top_k': 512}}",))
    assert changed.returncode == 0, output_of(changed)
    assert job_counts(output_of(changed)) == {"align_map": 1, "all": 1}


# ---------------------------------------------------------------------- the same run on SLURM
LOCAL_CLUSTER = WORKFLOW / "slurm" / "local_cluster.sh"
SLURM_PROFILE = WORKFLOW / "profiles" / "slurm"
SLURM_OVERLAY = WORKFLOW / "slurm" / "profile"  # the local cluster's differences, over SLURM_PROFILE
CLUSTER_UNAVAILABLE = 3  # local_cluster.sh's exit status where it cannot run (no root, no apt-get)


@pytest.fixture(scope="module")
def slurm_cluster():
    """The single-node cluster of workflows/slurm/local_cluster.sh: one already running is used
    as it is; otherwise it is started (slurm-wlm installed first where missing) and stopped after."""
    running = subprocess.run([str(LOCAL_CLUSTER), "status"], capture_output=True).returncode == 0
    if not running:
        started = subprocess.run([str(LOCAL_CLUSTER), "start"], capture_output=True, text=True, timeout=900)
        if started.returncode == CLUSTER_UNAVAILABLE:
            pytest.skip(f"no SLURM cluster on this machine: {started.stderr.strip()}")
        assert started.returncode == 0, started.stderr
    yield
    if not running:
        subprocess.run([str(LOCAL_CLUSTER), "stop"], check=True, capture_output=True, timeout=120)


def slurm_jobs(run_id: str) -> list[tuple[str, str, str]]:
    """(rule, state, partition) of each SLURM job of a Snakemake run, as squeue lists them: the
    plugin names every job after the run and puts its rule in the job's comment."""
    listed = subprocess.run(["squeue", "--states=all", "--noheader", "--name", run_id, "--format=%k|%T|%P"],
                            capture_output=True, text=True, check=True, timeout=60).stdout
    jobs = []
    for line in listed.splitlines():
        comment, state, partition = line.split("|")
        jobs.append((re.match(r"rule_(.+?)(_wildcards_.*)?$", comment).group(1), state, partition))
    return sorted(jobs)


@pytest.mark.slow
def test_slurm_run_matches_the_local_run(tiny_run, slurm_cluster, tmp_path, data_dir):
    """test.yaml through sbatch with the project's SLURM profile: every job is a SLURM job in the
    partition the profile names, and the results are the local run's (timings and paths aside)."""
    import yaml
    from workflow_outputs import differences

    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("snakemake-executor-plugin-slurm is not installed: pip install -e '.[test]'", pytrace=False)
    result = snakemake("--profile", str(SLURM_PROFILE), "--workflow-profile", str(SLURM_OVERLAY),
                       workdir=tmp_path, config_file=TEST_CONFIG, data_dir=data_dir, timeout=1800)
    if result.returncode != 0:
        fail_with_logs(result, tmp_path)
    gpu_rules = set(yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())["set-resources"])
    jobs = slurm_jobs(re.search(r"SLURM run ID: (\S+)", output_of(result)).group(1))
    expected = [(rule, "COMPLETED", "gpu" if rule in gpu_rules else "cpu")
                for rule, n in TEST_JOBS.items() if rule != "all" for _ in range(n)]  # `all` runs no command
    assert jobs == sorted(expected)
    assert differences(tiny_run, tmp_path) == []


@pytest.mark.slow
def test_run_comparison_sees_a_changed_number(tiny_run, tmp_path):
    """The comparison above can fail: a copy of the local run agrees with it until one weight of
    the pretrained model changes by one float step, while a changed timing does not count."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from workflow_outputs import differences

    shutil.copytree(tiny_run / "results", tmp_path / "results")
    metrics = tmp_path / "results" / "pretrain" / "small" / "metrics.json"
    metrics.write_text(json.dumps(dict(json.loads(metrics.read_text()), train_seconds=1e6)))
    assert differences(tiny_run, tmp_path) == []
    weights_file = tmp_path / "results" / "pretrain" / "small" / "model" / "model.safetensors"
    with safe_open(str(weights_file), "pt") as fh:
        metadata = fh.metadata()
    weights = load_file(weights_file)
    first = weights[sorted(weights)[0]].view(-1)
    first[0] = torch.nextafter(first[0], first[0] + 1)
    save_file(weights, weights_file, metadata=metadata)
    assert differences(tiny_run, tmp_path) == ["differs: pretrain/small/model/model.safetensors"]
