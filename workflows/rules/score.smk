# Scoring: log-likelihood and bits per base of every record of a genome, per model.


rule score:
    """Score every record of a prepared genome: genoseq score (TSV + <tsv>.json totals)."""
    input:
        model=model_dir,
        genome=lambda wc: genome_store(wc.genome),
    output:
        tsv=f"{RESULTS}/score/{{model}}/{{genome}}.tsv",
        summary=f"{RESULTS}/score/{{model}}/{{genome}}.tsv.json",
    log:
        f"{LOGS}/score/{{model}}/{{genome}}.log",
    params:
        options=options_json(section("score").get("options")),
    threads: threads_of("score", 2)
    resources:
        mem_mb=resource("score", "mem_mb", 8000),
        runtime=resource("score", "runtime", 120),
        gpu=resource("score", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq score --config {params.options:q}"
        " --model {input.model:q} --fasta {input.genome:q} --out {output.tsv:q} > {log:q} 2>&1"
