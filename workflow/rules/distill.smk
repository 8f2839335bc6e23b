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


# Cross-fitted targets (distill.crossfit), built only for students with `teachers: fused_cross_fit` or
# `average_cross_fit`: the student clips in two folds by recording location, the teachers trained again without
# each (teachers.smk), each student clip's logits from the teacher that did not see it, and their fusion.
rule cross_fit_folds:
    input:
        students=lambda wildcards: student_clips(wildcards.subset),
    output:
        **{f"fold{fold}": CROSS_FIT.teacher_train(fold) for fold in layout.CROSS_FIT_FOLDS},
    params:
        out=lambda wildcards, output: named_flags(
            "out", {fold: output[f"fold{fold}"] for fold in layout.CROSS_FIT_FOLDS}
        ),
    log:
        "logs/{subset}/distill/cross_fit_folds.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/cross_fit_folds.tsv"
    priority: PRIORITY["teachers"]
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet cross-fit-folds --student-clips {input.students:q} {params.out} > {log:q} 2>&1"


rule cross_fit_teacher_logits:
    input:
        full=TEACHER.logits,
        folds=[CROSS_FIT.fold_teacher(fold).logits for fold in layout.CROSS_FIT_FOLDS],
        fold_clips=[CROSS_FIT.teacher_train(fold) for fold in layout.CROSS_FIT_FOLDS],
        students=lambda wildcards: student_clips(wildcards.subset),
    output:
        CROSS_FIT.logits(),
    params:
        folds=lambda wildcards, input: named_flags("fold-logits", dict(zip(layout.CROSS_FIT_FOLDS, input.folds))),
        fold_clips=lambda wildcards, input: named_flags(
            "fold-clips", dict(zip(layout.CROSS_FIT_FOLDS, input.fold_clips))
        ),
    log:
        "logs/{subset}/distill/cross_fit_logits_{teacher}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/cross_fit_teacher_logits_{{teacher}}.tsv"
    priority: PRIORITY["teachers"]
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet cross-fit-logits --full {input.full:q} {params.folds} {params.fold_clips}"
        " --student-clips {input.students:q} --out {output:q} > {log:q} 2>&1"


# The same fusion, fitted on the hold-out as configured (its rows: from teachers that never saw it), of the
# cross-fitted logits; the report says no student clip's targets come from a teacher that saw it. (A rule of its
# own rather than `use rule fuse_teachers`: its flag would change fuse_teachers' command, which reruns it.)
rule fuse_cross_fit_teachers:
    input:
        logits=lambda wildcards: [layout.cross_fit(wildcards.subset).logits(name) for name in TEACHERS],
        train=CACHE["train"],
        test=CACHE["test"],
        students=lambda wildcards: student_clips(wildcards.subset),
        teacher_train=layout.splits().teacher_train,
        holdout=layout.splits().fusion_holdout,
    output:
        fused=CROSS_FIT.ensemble.fused,
        average=CROSS_FIT.ensemble.average,
        report=CROSS_FIT.ensemble.report,
    params:
        fit=config["teachers"]["fusion"]["fit"],
        fit_clips=lambda wildcards, input: (
            input.holdout if config["teachers"]["fusion"]["fit"] == "holdout" else input.teacher_train
        ),
        steps=config["teachers"]["fusion"]["steps"],
    log:
        "logs/{subset}/distill/fuse_cross_fit_teachers.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/fuse_cross_fit_teachers.tsv"
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
        " --cross-fitted --out-fused {output.fused:q}"
        " --out-average {output.average:q} --out-report {output.report:q} > {log:q} 2>&1"
