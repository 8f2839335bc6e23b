# Teacher fusion (paper eq. 4) and the averaged ensemble: the soft targets of knowledge distillation.


rule fuse_teachers:
    input:
        logits=lambda wildcards: [layout.teacher(wildcards.subset, name).logits for name in TEACHERS],
        train=CACHE["train"],
        test=CACHE["test"],
    output:
        fused=ENSEMBLE.fused,
        average=ENSEMBLE.average,
        report=ENSEMBLE.report,
    params:
        steps=config["teachers"]["fusion_steps"],
    log:
        "logs/{subset}/distill/fuse_teachers.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/fuse_teachers.tsv"
    threads: THREADS
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} fuse {input.logits:q} --train-cache {input.train:q}"
        " --test-cache {input.test:q} --steps {params.steps} --out-fused {output.fused:q}"
        " --out-average {output.average:q} --out-report {output.report:q} > {log:q} 2>&1"
