# Language-model interpretation: saturation mutagenesis of named regions of a prepared genome
# (interpret.sets.<set>: genome, regions), per model.


rule interpret_ism:
    """The LLR of every substitution in each region: genoseq interpret ism (ism.npz, summary.tsv,
    ism.bedgraph in genome coordinates, figures/, ism.json)."""
    input:
        model=model_dir,
        genome=lambda wc: genome_store(entry("interpret", "sets", wc.region_set)["genome"]),
    output:
        folder=directory(f"{RESULTS}/interpret/{{model}}/{{region_set}}"),
    log:
        f"{LOGS}/interpret_ism/{{model}}/{{region_set}}.log",
    params:
        options=lambda wc: options_json(section("interpret").get("options"),
                                        {"region": entry("interpret", "sets", wc.region_set)["regions"]},
                                        entry("interpret", "sets", wc.region_set).get("options")),
    threads: threads_of("interpret", 2)
    resources:
        mem_mb=resource("interpret", "mem_mb", 8000),
        runtime=resource("interpret", "runtime", 120),
        gpu=resource("interpret", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq interpret ism --config {params.options:q}"
        " --model {input.model:q} --fasta {input.genome:q} --out {output.folder:q} > {log:q} 2>&1"
