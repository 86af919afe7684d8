# Inputs: genomes staged as plain FASTA (optionally sliced) by `genoseq subset`, tokenised into
# HDF5 token stores by `genoseq prepare`; other inputs optionally cut to their first records
# (`genoseq subset`) for quick runs.


rule stage_genome:
    """Decompress a genome FASTA into the results folder, optionally keeping only the first
    max_bases bases of every record: genoseq subset.

    genoseq needs an indexable FASTA (plain or bgzip); the shared genomes are plain gzip, and
    `--convert_gzip` would write a bgzip copy next to the (read-only) input.
    """
    input:
        genome_source,
    output:
        fasta=f"{RESULTS}/genomes/{{genome}}.fa",
    log:
        f"{LOGS}/stage_genome/{{genome}}.log",
    params:
        options=lambda wc: options_json({"max_bases": genome_cfg(wc.genome).get("max_bases") or None}),
    threads: 1
    resources:
        mem_mb=500,
        runtime=30,
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq subset --config {params.options:q}"
        " --input {input:q} --format fasta --out {output.fasta:q} > {log:q} 2>&1"


rule subset_dataset:
    """The first max_records records of a VCF / TSV / CSV / FASTA / FASTQ (headers kept), only
    those whose name line (FASTA/FASTQ) or line matches the regular expression `match` if set,
    for quick runs and tests: genoseq subset. Only used for datasets that set max_records or
    match."""
    input:
        dataset_source,
    output:
        records=f"{RESULTS}/data/{{dataset}}.{{format}}",
    log:
        f"{LOGS}/subset_dataset/{{dataset}}.{{format}}.log",
    params:
        options=lambda wc: options_json(subset_options(wc.dataset)),
    threads: 1
    resources:
        mem_mb=500,
        runtime=30,
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq subset --config {params.options:q}"
        " --input {input:q} --format {wildcards.format} --out {output.records:q} > {log:q} 2>&1"


rule prepare:
    """Tokenise a genome into an HDF5 token store (+ <store>.json manifest): genoseq prepare."""
    input:
        fasta=rules.stage_genome.output.fasta,
    output:
        store=f"{RESULTS}/genomes/{{genome}}.h5",
        summary=f"{RESULTS}/genomes/{{genome}}.h5.json",
    log:
        f"{LOGS}/prepare/{{genome}}.log",
    params:
        options=options_json(section("prepare").get("options")),
    threads: threads_of("prepare")
    resources:
        mem_mb=resource("prepare", "mem_mb", 2000),
        runtime=resource("prepare", "runtime", 60),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq prepare --config {params.options:q}"
        " --fasta {input.fasta:q} --out {output.store:q} --overwrite true > {log:q} 2>&1"
