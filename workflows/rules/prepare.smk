# Inputs: genomes staged as plain FASTA (optionally sliced), tokenised into HDF5 token stores by
# `genoseq prepare`; other inputs optionally cut to their first records for quick runs.


rule stage_genome:
    """Decompress a genome FASTA into the results folder, optionally keeping only the first
    max_bases bases of every record.

    genoseq needs an indexable FASTA (plain or bgzip); the shared genomes are plain gzip, and
    `--convert_gzip` would write a bgzip copy next to the (read-only) input. This rule and
    subset_dataset are the only ones that do not run genoseq: they are a gzip | awk filter.
    """
    input:
        genome_source,
    output:
        f"{RESULTS}/genomes/{{genome}}.fa",
    log:
        f"{LOGS}/stage_genome/{{genome}}.log",
    params:
        max_bases=lambda wc: int(genome_cfg(wc.genome).get("max_bases") or 0),
        program=FASTA_SLICE_AWK,
    threads: 1
    resources:
        mem_mb=500,
        runtime=30,
    conda:
        conda_env
    shell:
        "(gzip -cdf {input:q} | awk -v max={params.max_bases} {params.program:q} > {output:q}) 2> {log:q}"


rule subset_dataset:
    """The first max_records records of a VCF / TSV / CSV / FASTA / FASTQ (headers kept), only
    those whose name line (FASTA/FASTQ) or line matches the regular expression `match` if set,
    for quick runs and tests. Only used for datasets that set max_records or match."""
    input:
        dataset_source,
    output:
        f"{RESULTS}/data/{{dataset}}.{{format}}",
    log:
        f"{LOGS}/subset_dataset/{{dataset}}.{{format}}.log",
    params:
        max_records=lambda wc: int(dataset_cfg(wc.dataset).get("max_records") or -1),
        pattern=lambda wc: dataset_cfg(wc.dataset).get("match") or "",
        program=lambda wc: SUBSET_AWK[wc.format],
    threads: 1
    resources:
        mem_mb=500,
        runtime=30,
    conda:
        conda_env
    shell:
        "(gzip -cdf {input:q} | awk -v max={params.max_records} -v pattern={params.pattern:q} {params.program:q} > {output:q}) 2> {log:q}"


rule prepare:
    """Tokenise a genome into an HDF5 token store (+ <store>.json manifest): genoseq prepare."""
    input:
        fasta=f"{RESULTS}/genomes/{{genome}}.fa",
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
