# The 12 teachers (PaSST and CP-ResNet, FMS or DIR+FMS, three seeds) and their logit dumps.


rule train_teacher:
    input:
        unpack(teacher_inputs),
    output:
        model=TEACHER.training.model,
        history=TEACHER.training.history,
    params:
        spec=lambda wildcards: as_json(teacher_spec(config, wildcards.teacher)),
        compute=as_json(COMPUTE_IDENTITY),
        optional=optional_training_flags,
        work_dir=work_dir(TEACHER.training),
    log:
        "logs/{subset}/teachers/train_{teacher}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/train_teacher_{{teacher}}.tsv"
    threads: THREADS
    priority: PRIORITY["teachers"]
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} train --spec {params.spec:q} --compute {params.compute:q}"
        " --num-workers {resources.num_workers} --train-cache {input.train:q} --test-cache {input.test:q} {params.optional}"
        " --out-model {output.model:q} --out-history {output.history:q} --work-dir {params.work_dir:q}"
        " > {log:q} 2>&1"


rule dump_teacher_logits:
    input:
        model=TEACHER.training.model,
        caches=[CACHE["train"], CACHE["test"]],
    output:
        TEACHER.logits,
    params:
        caches=lambda wildcards, input: " ".join(f"--cache {shlex.quote(path)}" for path in input.caches),
    log:
        "logs/{subset}/teachers/dump_logits_{teacher}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/dump_teacher_logits_{{teacher}}.tsv"
    threads: THREADS
    priority: PRIORITY["teachers"]
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} dump-logits --model {input.model:q} {params.caches}"
        " --out {output:q} > {log:q} 2>&1"


# Cross-fitted targets (students with `teachers: *_cross_fit` only): each teacher again per fold of the student
# clips, on the clips outside the fold (distill.smk's cross_fit_folds), with the same spec and weights.
use rule train_teacher as train_teacher_fold with:
    input:
        unpack(fold_teacher_inputs),
    output:
        model=CROSS_FIT.fold_teacher().training.model,
        history=CROSS_FIT.fold_teacher().training.history,
    params:
        spec=lambda wildcards: as_json(teacher_spec(config, wildcards.teacher)),
        compute=as_json(COMPUTE_IDENTITY),
        optional=optional_training_flags,
        work_dir=work_dir(CROSS_FIT.fold_teacher().training),
    log:
        "logs/{subset}/cross_fit/fold{fold}/train_{teacher}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/cross_fit/train_teacher_fold{{fold}}_{{teacher}}.tsv"


use rule dump_teacher_logits as dump_teacher_fold_logits with:
    input:
        model=CROSS_FIT.fold_teacher().training.model,
        caches=[CACHE["train"], CACHE["test"]],
    output:
        CROSS_FIT.fold_teacher().logits,
    log:
        "logs/{subset}/cross_fit/fold{fold}/dump_logits_{teacher}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/cross_fit/dump_teacher_fold{{fold}}_logits_{{teacher}}.tsv"
