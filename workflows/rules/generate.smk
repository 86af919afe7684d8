# Designs: sequences sampled from each model, one FASTA per entry of generate.designs.


rule generate:
    """Sample sequences from a model into FASTA: genoseq generate. The entry's options set the
    prompt, number and length of samples, temperature / top-k / top-p and seed."""
    input:
        model=model_dir,
    output:
        fasta=f"{RESULTS}/generate/{{model}}/{{design}}.fa",
    log:
        f"{LOGS}/generate/{{model}}/{{design}}.log",
    params:
        options=lambda wc: options_json(section("generate").get("options"), entry("generate", "designs", wc.design).get("options")),
    threads: threads_of("generate", 1)
    resources:
        mem_mb=resource("generate", "mem_mb", 4000),
        runtime=resource("generate", "runtime", 60),
        gpu=resource("generate", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq generate --config {params.options:q}"
        " --model {input.model:q} --out {output.fasta:q} > {log:q} 2>&1"
