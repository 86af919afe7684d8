# Designs (CRE generation): `genoseq generate fit` fine-tunes a model for conditional generation
# on a labelled table (one condition token per label); `genoseq generate sample` samples designs
# from it (or from the pretrained model), with optional constraints and a classifier of
# classify.tasks as the oracle that selects and refines them.


rule generate_fit:
    """Fine-tune a pretrained model for conditional generation: genoseq generate fit.
    The folder holds the released conditional model, metrics.json and training_sequences.tsv.gz
    (the report's default reference)."""
    input:
        model=model_dir,
        train=lambda wc: dataset(entry("generate", "conditional", wc.conditional)["train"]),
    output:
        model=directory(f"{RESULTS}/generate/{{model}}/conditional/{{conditional}}"),
    log:
        f"{LOGS}/generate_fit/{{model}}/{{conditional}}.log",
    params:
        options=lambda wc: options_json(section("generate").get("fit_options"), entry("generate", "conditional", wc.conditional).get("options")),
    threads: threads_of("generate", 2)
    resources:
        mem_mb=resource("generate", "mem_mb", 8000),
        runtime=resource("generate", "runtime", 240),
        gpu=resource("generate", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq generate fit --config {params.options:q}"
        " --model {input.model:q} --train {input.train:q} --out {output.model:q} --overwrite true > {log:q} 2>&1"


rule generate_sample:
    """Sample a set of designs: genoseq generate sample (FASTA + report .tsv/.json/.png beside it).
    generate.designs.<design> names the conditional model (or none: the pretrained model) and the
    classify task whose classifier is the oracle (optional)."""
    input:
        model=lambda wc: design_model(wc),
        oracle=lambda wc: design_oracle(wc),
    output:
        fasta=f"{RESULTS}/generate/{{model}}/{{design}}.fa",
        tsv=f"{RESULTS}/generate/{{model}}/{{design}}.tsv",
        summary=f"{RESULTS}/generate/{{model}}/{{design}}.json",
        png=f"{RESULTS}/generate/{{model}}/{{design}}.png",
    log:
        f"{LOGS}/generate_sample/{{model}}/{{design}}.log",
    params:
        options=lambda wc: options_json(section("generate").get("sample_options"), entry("generate", "designs", wc.design).get("options")),
        oracle=lambda wc, input: optional_path(input.oracle[0] if input.oracle else None),
    threads: threads_of("generate", 2)
    resources:
        mem_mb=resource("generate", "mem_mb", 8000),
        runtime=resource("generate", "runtime", 120),
        gpu=resource("generate", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq generate sample --config {params.options:q}"
        " --model {input.model:q} --oracle {params.oracle:q} --out {output.fasta:q} --report true > {log:q} 2>&1"
