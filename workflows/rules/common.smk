# Config lookups shared by the rules: no rules here and no job logic, only which inputs each job
# reads and which options each genoseq command gets. Output paths are written once, in their
# rules; a lookup names one as rules.<rule>.output.<name>. (Snakemake's linter wants functions
# and rules in separate files.)

import json
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError

# workflows/ -> the repository root
REPO = Path(workflow.basedir).parent

# Shared input data: config data_dir, else $GENOSEQ_SHARED_DATA, else <repo>/../shared/data.
# A relative data_dir is relative to the working directory, like every path in the config.
DATA_DIR = Path(
    config.get("data_dir") or os.environ.get("GENOSEQ_SHARED_DATA") or REPO.parent / "shared" / "data"
)
RESULTS = config.get("results") or "results"
LOGS = config.get("logs") or "logs"

# Suffixes of the record formats that subset_dataset can cut (the first N records).
DATASET_FORMATS = {
    ".vcf": "vcf",
    ".tsv": "tsv",
    ".csv": "csv",
    ".fa": "fasta",
    ".fasta": "fasta",
    ".fna": "fasta",
    ".fq": "fastq",
    ".fastq": "fastq",
}


def conda_env(wildcards):
    """The rules' software: config conda_env, the name or prefix path of a conda environment
    with genoseq installed (activated per job with --sdm conda); null runs the `genoseq` found
    on PATH."""
    return config.get("conda_env") or None


def section(name):
    """A job's section of the config ({} when absent)."""
    return config.get(name) or {}


def merged(*mappings):
    """Deep merge of option mappings, later ones winning (like genoseq's own --config files)."""
    out = {}
    for mapping in mappings:
        for key, value in (mapping or {}).items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


def options_json(*mappings):
    """Options for a genoseq command, as the inline JSON document its --config accepts."""
    return json.dumps(merged(*mappings), sort_keys=True)


def threads_of(job, default=1):
    return int(section(job).get("threads", default))


def resource(job, key, default):
    """resources.<key> of a job's section: mem_mb, runtime (minutes), gpu (count)."""
    return (section(job).get("resources") or {}).get(key, default)


def data_path(path):
    """A configured input path with {data_dir} filled in."""
    return str(path).format(data_dir=DATA_DIR)


def output_path(template, **wildcards):
    """One output of a rule (rules.<rule>.output.<name>) with its wildcards filled in."""
    return expand(template, **wildcards)[0]


# ------------------------------------------------------------------ genomes
def genome_cfg(name):
    genomes = config.get("genomes") or {}
    if name not in genomes:
        raise WorkflowError(f"genome {name!r} is not defined under 'genomes' in the config")
    return genomes[name]


def genome_source(wildcards):
    return data_path(genome_cfg(wildcards.genome)["fasta"])


def genome_store(name):
    return output_path(rules.prepare.output.store, genome=name)


def genome_stores(names):
    for name in names or []:
        genome_cfg(name)
    return [genome_store(name) for name in names or []]


# ------------------------------------------------------------------ other inputs
def dataset_cfg(name):
    datasets = config.get("datasets") or {}
    if name not in datasets:
        raise WorkflowError(f"dataset {name!r} is not defined under 'datasets' in the config")
    return datasets[name]


def dataset_format(name):
    """Record format of a dataset, from its suffix (.gz ignored) unless 'format' is given."""
    cfg = dataset_cfg(name)
    if cfg.get("format"):
        return cfg["format"]
    suffixes = [s for s in Path(cfg["path"]).suffixes if s != ".gz" and s != ".bgz"]
    fmt = DATASET_FORMATS.get(suffixes[-1].lower()) if suffixes else None
    if fmt is None:
        raise WorkflowError(f"dataset {name!r}: cannot tell the format of {cfg['path']}; set 'format'")
    return fmt


def dataset_source(wildcards):
    return data_path(dataset_cfg(wildcards.dataset)["path"])


def subset_options(name):
    """genoseq subset options of a dataset that sets max_records or match."""
    cfg = dataset_cfg(name)
    return {"max_records": cfg.get("max_records") or None, "match": cfg.get("match") or None}


def dataset(name):
    """Path a job reads: the file itself, or the records subset_dataset keeps (max_records,
    match)."""
    cfg = dataset_cfg(name)
    if cfg.get("max_records") or cfg.get("match"):
        return output_path(rules.subset_dataset.output.records, dataset=name, format=dataset_format(name))
    return data_path(cfg["path"])


# ------------------------------------------------------------------ models
def models():
    """Names of the configured models (one set to null is left out)."""
    return [name for name, cfg in (config.get("models") or {}).items() if cfg is not None]


def model_cfg(name):
    if name not in models():
        raise WorkflowError(f"model {name!r} is not defined under 'models' in the config")
    return config["models"][name]


def trained_models():
    """Models this workflow pretrains (those without a 'pretrained' directory)."""
    return [name for name in models() if not model_cfg(name).get("pretrained")]


def model_path(name):
    """The released model a downstream job loads: pretrained here, or an existing directory."""
    cfg = model_cfg(name)
    if cfg.get("pretrained"):
        return data_path(cfg["pretrained"])
    return output_path(rules.pretrain.output.model, model=name)


def model_dir(wildcards):
    return model_path(wildcards.model)


def entries(job, group):
    """Names of the entries of a job's section; an entry set to null is left out (so a config
    merged over another can drop one)."""
    return [name for name, value in (section(job).get(group) or {}).items() if value is not None]


def entry(job, group, name):
    """One named entry of a job's section, e.g. entry("vep", "sets", "ecoli_snvs")."""
    if name not in entries(job, group):
        raise WorkflowError(f"{name!r} is not defined under '{job}: {group}:' in the config")
    return section(job)[group][name]


def vep_set(name):
    return entry("vep", "sets", name)


def classify_task(name):
    return entry("classify", "tasks", name)


def design_model(wildcards):
    """The model a design set samples from: its conditional model, else the pretrained one."""
    conditional = entry("generate", "designs", wildcards.design).get("conditional")
    if conditional:
        entry("generate", "conditional", conditional)
        return output_path(rules.generate_fit.output.model, model=wildcards.model, conditional=conditional)
    return model_dir(wildcards)


def design_oracle(wildcards):
    """[classifier folder] of the design set's oracle task, or [] without one."""
    task = entry("generate", "designs", wildcards.design).get("oracle")
    if not task:
        return []
    classify_task(task)
    return [output_path(rules.classify_fit.output.classifier, model=wildcards.model, task=task)]


def aligner_cfg(name):
    """One read aligner of align.aligners: its genomes, init model and options."""
    return entry("align", "aligners", name)


def align_set(name):
    return entry("align", "sets", name)


def readset_aligner(name):
    """The aligner a read set names (one of align.aligners)."""
    aligner = align_set(name).get("aligner")
    aligner_cfg(aligner)
    return aligner


def aligner_references(name):
    """Token stores of an aligner's genomes: what its encoder trains on, indexes and maps to."""
    genomes = aligner_cfg(name).get("genomes")
    if not genomes:
        raise WorkflowError(f"aligner {name!r} names no genomes (align: aligners: {name}: genomes:)")
    return genome_stores(genomes)


def aligner_init(wildcards):
    """[released model] whose backbone starts the aligner's encoder (init: a model of `models`),
    or [] to train it from scratch."""
    init = aligner_cfg(wildcards.aligner).get("init")
    return [model_path(init)] if init else []


def optional_path(path):
    """jsonargparse reads 'null' as None for an optional path option."""
    return str(path) if path else "null"


# ------------------------------------------------------------------ targets
def selected_targets(**outputs):
    """Outputs of the targets named in config 'targets'. `outputs` maps every target to a
    function returning its paths, called only when the target is named."""
    wanted = config.get("targets") or []
    unknown = [t for t in wanted if t not in outputs]
    if unknown:
        raise WorkflowError(f"unknown target(s) {unknown} in config 'targets'; known: {sorted(outputs)}")
    return [path for target in wanted for path in outputs[target]()]
