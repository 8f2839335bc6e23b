# Teacher fusion (paper eq. 4) and the averaged ensemble: the soft targets of knowledge distillation.


rule fuse_teachers:
    input:
        logits=expand("results/teachers/{teacher}/logits.npz", teacher=TEACHERS),
        train=CACHE["train"],
        test=CACHE["test"],
    output:
        fused="results/ensemble/fused.npz",
        average="results/ensemble/average.npz",
        report="results/ensemble/fusion.json",
    params:
        steps=config["teachers"]["fusion_steps"],
        out_dir=lambda wildcards, output: Path(output.report).parent,
    log:
        "logs/distill/fuse_teachers.log",
    benchmark:
        "results/benchmarks/fuse_teachers.tsv"
    threads: THREADS
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} fuse {input.logits:q} --train-cache {input.train:q}"
        " --test-cache {input.test:q} --steps {params.steps} --out-dir {params.out_dir:q} > {log:q} 2>&1"
