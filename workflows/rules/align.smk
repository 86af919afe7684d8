# Read mapping by embedding search (`genoseq align`): per aligner (align.aligners.<aligner>) a read
# encoder trained on reads simulated from its genomes and a faiss index of both strands of those
# genomes' fragments; per read set (align.sets.<name>) a coordinate-sorted, indexed BAM.


rule align_train:
    """Train a read/fragment encoder on reads simulated from the aligner's genomes: genoseq align
    train. The folder holds the released encoder (config.json, tokenizer.json, model.safetensors),
    metrics.json and metrics.csv. Options: align.train_options deep-merged with the aligner's
    train_options; `init` (a model of `models`) starts it from that model's backbone."""
    input:
        reference=lambda wc: aligner_references(wc.aligner),
        init=aligner_init,
    output:
        encoder=directory(f"{RESULTS}/align/{{aligner}}/encoder"),
    log:
        f"{LOGS}/align_train/{{aligner}}.log",
    params:
        options=lambda wc: options_json(section("align").get("train_options"), aligner_cfg(wc.aligner).get("train_options")),
        reference=lambda wc, input: json.dumps(list(input.reference)),
        init=lambda wc, input: optional_path(input.init[0] if input.init else None),
    threads: threads_of("align", 4)
    resources:
        mem_mb=resource("align", "mem_mb", 16000),
        runtime=resource("align", "runtime", 240),
        gpu=resource("align", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq align train --config {params.options:q}"
        " --reference {params.reference:q} --init {params.init:q} --out {output.encoder:q}"
        " --threads {threads} --overwrite true > {log:q} 2>&1"


rule align_index:
    """Embed both strands of overlapping fragments of the aligner's genomes and build a faiss
    index: genoseq align index (manifest.json, fragments.npz, faiss.index, a copy of the encoder
    in model/). Options: align.index_options deep-merged with the aligner's index_options."""
    input:
        encoder=rules.align_train.output.encoder,
        reference=lambda wc: aligner_references(wc.aligner),
    output:
        index=directory(f"{RESULTS}/align/{{aligner}}/index"),
    log:
        f"{LOGS}/align_index/{{aligner}}.log",
    params:
        options=lambda wc: options_json(section("align").get("index_options"), aligner_cfg(wc.aligner).get("index_options")),
        reference=lambda wc, input: json.dumps(list(input.reference)),
    threads: threads_of("align", 4)
    resources:
        mem_mb=resource("align", "mem_mb", 16000),
        runtime=resource("align", "runtime", 120),
        gpu=resource("align", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq align index --config {params.options:q}"
        " --model {input.encoder:q} --reference {params.reference:q} --out {output.index:q}"
        " --threads {threads} --overwrite true > {log:q} 2>&1"


rule align_map:
    """Map a read set (FASTQ/FASTA dataset) with an aligner's index: genoseq align map (BAM sorted
    by coordinate + .bai index + .bam.json counts). The reference is handed over explicitly and
    checked against the index's checksums. Options: align.map_options deep-merged with the set's
    options; `threads` is also the number of alignment processes."""
    input:
        index=rules.align_index.output.index,
        reference=lambda wc: aligner_references(wc.aligner),
        reads=lambda wc: dataset(align_set(wc.readset)["reads"]),
    output:
        bam=f"{RESULTS}/align/{{aligner}}/{{readset}}.bam",
        bai=f"{RESULTS}/align/{{aligner}}/{{readset}}.bam.bai",
        summary=f"{RESULTS}/align/{{aligner}}/{{readset}}.bam.json",
    log:
        f"{LOGS}/align_map/{{aligner}}/{{readset}}.log",
    params:
        options=lambda wc: options_json(section("align").get("map_options"), align_set(wc.readset).get("options")),
        reference=lambda wc, input: json.dumps(list(input.reference)),
    threads: threads_of("align", 4)
    resources:
        mem_mb=resource("align", "mem_mb", 16000),
        runtime=resource("align", "runtime", 120),
        gpu=resource("align", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq align map --config {params.options:q}"
        " --index {input.index:q} --reference {params.reference:q} --reads {input.reads:q}"
        " --out {output.bam:q} --threads {threads} > {log:q} 2>&1"
