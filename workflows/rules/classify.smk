# Classification: a classifier per model and task (classify.tasks.<task>), trained on one
# labelled table and evaluated on another (e.g. E. coli regions -> S. aureus regions).


rule classify_fit:
    """Fine-tune (or, with frozen: true, probe) a sequence classifier: genoseq classify fit.
    The classifier directory holds config.json, tokenizer.json, model.safetensors, training.json."""
    input:
        model=model_dir,
        train=lambda wc: dataset(classify_task(wc.task)["train"]),
        val=lambda wc: [dataset(classify_task(wc.task)["val"])] if classify_task(wc.task).get("val") else [],
    output:
        classifier=directory(f"{RESULTS}/classify/{{model}}/{{task}}/classifier"),
    log:
        f"{LOGS}/classify_fit/{{model}}/{{task}}.log",
    params:
        options=lambda wc: options_json(section("classify").get("fit_options"), classify_task(wc.task).get("fit_options")),
        val=lambda wc, input: optional_path(input.val[0] if input.val else None),
    threads: threads_of("classify", 2)
    resources:
        mem_mb=resource("classify", "mem_mb", 8000),
        runtime=resource("classify", "runtime", 240),
        gpu=resource("classify", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq classify fit --config {params.options:q}"
        " --model {input.model:q} --train {input.train:q} --val {params.val:q}"
        " --out {output.classifier:q} > {log:q} 2>&1"


rule classify_evaluate:
    """Evaluate a classifier on held-out labelled data: genoseq classify evaluate
    (metrics.json, predictions.tsv, confusion_matrix.tsv, roc.png)."""
    input:
        classifier=rules.classify_fit.output.classifier,
        test=lambda wc: dataset(classify_task(wc.task)["test"]),
    output:
        metrics=f"{RESULTS}/classify/{{model}}/{{task}}/evaluation/metrics.json",
        predictions=f"{RESULTS}/classify/{{model}}/{{task}}/evaluation/predictions.tsv",
        confusion=f"{RESULTS}/classify/{{model}}/{{task}}/evaluation/confusion_matrix.tsv",
        roc=f"{RESULTS}/classify/{{model}}/{{task}}/evaluation/roc.png",
    log:
        f"{LOGS}/classify_evaluate/{{model}}/{{task}}.log",
    params:
        options=lambda wc: options_json(section("classify").get("evaluate_options"), classify_task(wc.task).get("evaluate_options")),
        report_dir=lambda wc, output: str(Path(output.metrics).parent),
    threads: threads_of("classify", 2)
    resources:
        mem_mb=resource("classify", "mem_mb", 8000),
        runtime=resource("classify", "runtime", 60),
        gpu=resource("classify", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq classify evaluate --config {params.options:q}"
        " --classifier {input.classifier:q} --input {input.test:q} --out {params.report_dir:q} > {log:q} 2>&1"
