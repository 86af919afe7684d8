# Embeddings: pooled hidden states of each model for the sequences of embed.sets.<name>
# (a labelled/unlabelled table or a FASTA dataset), written to HDF5.


rule embed:
    """Embed sequences with a model: genoseq embed (HDF5 of pooled vectors, names and labels)."""
    input:
        model=model_dir,
        sequences=lambda wc: dataset(entry("embed", "sets", wc.embedding)["input"]),
    output:
        h5=f"{RESULTS}/embed/{{model}}/{{embedding}}.h5",
    log:
        f"{LOGS}/embed/{{model}}/{{embedding}}.log",
    params:
        options=lambda wc: options_json(section("embed").get("options"), entry("embed", "sets", wc.embedding).get("options")),
        input_option=lambda wc: "--fasta" if dataset_format(entry("embed", "sets", wc.embedding)["input"]) == "fasta" else "--tsv",
    threads: threads_of("embed", 2)
    resources:
        mem_mb=resource("embed", "mem_mb", 8000),
        runtime=resource("embed", "runtime", 60),
        gpu=resource("embed", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq embed --config {params.options:q}"
        " --model {input.model:q} {params.input_option} {input.sequences:q} --out {output.h5:q} > {log:q} 2>&1"
