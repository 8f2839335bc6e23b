# DS-FlexiNet students: training (RN, FMS, DIR/ADIR, KD as each run's settings say) and evaluation. Every run is
# trained once per seed of `students.seeds`.


use rule train_teacher as train_student with:
    input:
        unpack(student_inputs),
    output:
        model=STUDENT.training.model,
        history=STUDENT.training.history,
    params:
        spec=lambda wildcards: as_json(student_spec(config, wildcards.run, int(wildcards.seed))),
        compute=as_json(COMPUTE_IDENTITY),
        optional=optional_training_flags,
        work_dir=work_dir(STUDENT.training),
    log:
        "logs/{subset}/students/train_{run}_s{seed}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/train_student_{{run}}_s{{seed}}.tsv"
    priority: PRIORITY["students"]


rule evaluate_student:
    input:
        model=lambda wildcards: layout.student(wildcards.subset, wildcards.run, wildcards.seed).model(
            wildcards.precision
        ),
        cache=CACHE["test"],
    output:
        metrics=STUDENT.evaluation(),
        clips=STUDENT.clips(),
    log:
        "logs/{subset}/students/evaluate_{run}_s{seed}_{precision}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/evaluate_student_{{run}}_s{{seed}}_{{precision}}.tsv"
    threads: THREADS
    priority: PRIORITY["evaluation"]
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} evaluate --model {input.model:q} --cache {input.cache:q}"
        " --out {output.metrics:q} --out-clips {output.clips:q} > {log:q} 2>&1"


rule student_complexity:
    output:
        STUDENT.complexity,
    params:
        model=lambda wildcards: student_spec(config, wildcards.run, int(wildcards.seed))["model"]["name"],
        options=lambda wildcards: as_json(student_spec(config, wildcards.run, int(wildcards.seed))["model"]["options"]),
        max_macs=int(config["complexity"]["max_macs"]),  # the schema's integers include 3.0e+7
        max_param_bytes=int(config["complexity"]["max_param_bytes"]),
        precision=config["complexity"]["precision"],
    log:
        "logs/{subset}/students/complexity_{run}_s{seed}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/student_complexity_{{run}}_s{{seed}}.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet complexity {params.model} --options {params.options:q} --run {wildcards.run:q}"
        " --max-macs {params.max_macs} --max-param-bytes {params.max_param_bytes} --precision {params.precision}"
        " --out {output:q} > {log:q} 2>&1"


rule evaluate_student_holdout:
    input:
        model=lambda wildcards: layout.student(wildcards.subset, wildcards.run, wildcards.seed).model(
            wildcards.precision
        ),
        cache=CACHE["train"],
        holdout=layout.splits().fusion_holdout,
    output:
        metrics=STUDENT.holdout("{precision}")[0],
        clips=STUDENT.holdout("{precision}")[1],
    log:
        "logs/{subset}/students/evaluate_holdout_{run}_s{seed}_{precision}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/evaluate_student_holdout_{{run}}_s{{seed}}_{{precision}}.tsv"
    threads: THREADS
    priority: PRIORITY["evaluation"]
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} evaluate --model {input.model:q} --cache {input.cache:q}"
        " --clips {input.holdout:q} --out {output.metrics:q} --out-clips {output.clips:q} > {log:q} 2>&1"
