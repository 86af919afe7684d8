# Pretraining: one run folder per configured model (models.<name>), trained on HDF5 token stores.


rule pretrain:
    """Pretrain a DNA language model: genoseq pretrain.

    Writes the run folder RESULTS/pretrain/<model>/ (checkpoints/last.ckpt, config.yaml,
    metrics.csv, training_curve.png) with the released model in model/ and the final numbers in
    metrics.json. Options: pretrain.options deep-merged with models.<model>.options.
    """
    input:
        data=lambda wc: genome_stores(model_cfg(wc.model).get("genomes")),
        val_data=lambda wc: genome_stores(model_cfg(wc.model).get("val_genomes")),
    output:
        model=directory(f"{RESULTS}/pretrain/{{model}}/model"),
        metrics=f"{RESULTS}/pretrain/{{model}}/metrics.json",
    log:
        f"{LOGS}/pretrain/{{model}}.log",
    params:
        options=lambda wc: options_json(section("pretrain").get("options"), model_cfg(wc.model).get("options")),
        data=lambda wc, input: json.dumps(list(input.data)),
        val_data=lambda wc, input: json.dumps(list(input.val_data)),
        run_dir=lambda wc, output: str(Path(output.metrics).parent),
    threads: threads_of("pretrain", 4)
    resources:
        mem_mb=resource("pretrain", "mem_mb", 16000),
        runtime=resource("pretrain", "runtime", 720),
        gpu=resource("pretrain", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq pretrain --config {params.options:q}"
        " --data {params.data:q} --val_data {params.val_data:q} --out {params.run_dir:q}"
        " --overwrite true > {log:q} 2>&1"
