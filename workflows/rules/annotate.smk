# Per-base genome annotation: a segmenter per model and task (annotate.tasks.<task>), trained on
# a genome and its annotation (a GFF3 dataset; its ##FASTA section is the genome unless the task
# names one) with whole contigs held out (fit_options.holdout), then scored on them.


rule annotate_fit:
    """Train a segmenter (probe by default; fit_options.method: finetune on GPUs): genoseq annotate fit.
    The folder holds config.json, tokenizer.json, model.safetensors, training.json."""
    input:
        model=model_dir,
        annotation=lambda wc: dataset(entry("annotate", "tasks", wc.task)["annotation"]),
        genome=lambda wc: [data_path(genome_cfg(g)["fasta"]) for g in [entry("annotate", "tasks", wc.task).get("genome")] if g],
    output:
        segmenter=directory(f"{RESULTS}/annotate/{{model}}/{{task}}/segmenter"),
    log:
        f"{LOGS}/annotate_fit/{{model}}/{{task}}.log",
    params:
        options=lambda wc: options_json(section("annotate").get("fit_options"), entry("annotate", "tasks", wc.task).get("fit_options")),
        genome=lambda wc, input: optional_path(input.genome[0] if input.genome else None),
    threads: threads_of("annotate", 2)
    resources:
        mem_mb=resource("annotate", "mem_mb", 16000),
        runtime=resource("annotate", "runtime", 240),
        gpu=resource("annotate", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq annotate fit --config {params.options:q}"
        " --model {input.model:q} --annotation {input.annotation:q} --genome {params.genome:q}"
        " --out {output.segmenter:q} > {log:q} 2>&1"


rule annotate_evaluate:
    """Score the segmenter on the contigs fit held out: genoseq annotate evaluate (metrics.json)."""
    input:
        segmenter=rules.annotate_fit.output.segmenter,
        annotation=lambda wc: dataset(entry("annotate", "tasks", wc.task)["annotation"]),
        genome=lambda wc: [data_path(genome_cfg(g)["fasta"]) for g in [entry("annotate", "tasks", wc.task).get("genome")] if g],
    output:
        metrics=f"{RESULTS}/annotate/{{model}}/{{task}}/evaluation/metrics.json",
    log:
        f"{LOGS}/annotate_evaluate/{{model}}/{{task}}.log",
    params:
        options=lambda wc: options_json(section("annotate").get("evaluate_options"), entry("annotate", "tasks", wc.task).get("evaluate_options")),
        genome=lambda wc, input: optional_path(input.genome[0] if input.genome else None),
    threads: threads_of("annotate", 2)
    resources:
        mem_mb=resource("annotate", "mem_mb", 16000),
        runtime=resource("annotate", "runtime", 120),
        gpu=resource("annotate", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq annotate evaluate --config {params.options:q}"
        " --segmenter {input.segmenter:q} --annotation {input.annotation:q} --genome {params.genome:q}"
        " --out {output.metrics:q} > {log:q} 2>&1"
