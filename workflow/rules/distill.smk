# Teacher fusion (paper eq. 4) and the averaged ensemble: the soft targets of knowledge distillation.


rule fuse_teachers:
    input:
        logits=lambda wildcards: [layout.teacher(wildcards.subset, name).logits for name in TEACHERS],
        train=CACHE["train"],
        test=CACHE["test"],
        students=layout.splits().train,
        teacher_train=layout.splits().teacher_train,
        holdout=layout.splits().fusion_holdout,
    output:
        fused=ENSEMBLE.fused,
        average=ENSEMBLE.average,
        report=ENSEMBLE.report,
    params:
        fit=config["teachers"]["fusion"]["fit"],
        fit_clips=lambda wildcards, input: (
            input.holdout if config["teachers"]["fusion"]["fit"] == "holdout" else input.teacher_train
        ),
        steps=config["teachers"]["fusion"]["steps"],
    log:
        "logs/{subset}/distill/fuse_teachers.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/fuse_teachers.tsv"
    threads: THREADS
    priority: PRIORITY["teachers"]
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} fuse {input.logits:q} --train-cache {input.train:q}"
        " --test-cache {input.test:q} --fit {params.fit} --fit-clips {params.fit_clips:q}"
        " --student-clips {input.students:q} --holdout-clips {input.holdout:q} --steps {params.steps}"
        " --out-fused {output.fused:q}"
        " --out-average {output.average:q} --out-report {output.report:q} > {log:q} 2>&1"


rule ensemble_holdout:
    input:
        logits=lambda wildcards: [layout.teacher(wildcards.subset, name).logits for name in TEACHERS],
        train=CACHE["train"],
        holdout=layout.splits().fusion_holdout,
        fusion=ENSEMBLE.report,
    output:
        average=layout.ensemble_holdout_clips(kind="average"),
        fused=layout.ensemble_holdout_clips(kind="fused"),
    params:
        steps=config["teachers"]["fusion"]["steps"],
    log:
        "logs/{subset}/distill/ensemble_holdout.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/ensemble_holdout.tsv"
    threads: THREADS
    priority: PRIORITY["evaluation"]
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} ensemble-holdout {input.logits:q} --train-cache {input.train:q}"
        " --holdout-clips {input.holdout:q} --fusion {input.fusion:q} --steps {params.steps}"
        " --out-average {output.average:q} --out-fused {output.fused:q} > {log:q} 2>&1"
