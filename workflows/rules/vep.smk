# Variant effects: each VCF of vep.sets annotated with zero-shot LLRs, per model.


rule vep:
    """Annotate a VCF with INFO/GENOSEQ_LLR and GENOSEQ_STATUS: genoseq vep (bgzip VCF +
    <vcf>.json summary). The reference is a prepared genome (vep.sets.<name>.genome)."""
    input:
        model=model_dir,
        reference=lambda wc: genome_store(vep_set(wc.vcf)["genome"]),
        vcf=lambda wc: dataset(vep_set(wc.vcf)["vcf"]),
    output:
        vcf=f"{RESULTS}/vep/{{model}}/{{vcf}}.vcf.gz",
        summary=f"{RESULTS}/vep/{{model}}/{{vcf}}.vcf.gz.json",
    log:
        f"{LOGS}/vep/{{model}}/{{vcf}}.log",
    params:
        options=lambda wc: options_json(section("vep").get("options"), vep_set(wc.vcf).get("options")),
    threads: threads_of("vep", 2)
    resources:
        mem_mb=resource("vep", "mem_mb", 8000),
        runtime=resource("vep", "runtime", 120),
        gpu=resource("vep", "gpu", 0),
    conda:
        conda_env
    shell:
        "OMP_NUM_THREADS={threads} genoseq vep --config {params.options:q}"
        " --model {input.model:q} --reference {input.reference:q} --vcf {input.vcf:q}"
        " --out {output.vcf:q} --format vcf > {log:q} 2>&1"
