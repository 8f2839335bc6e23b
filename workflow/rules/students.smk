# DS-FlexiNet students: training (RN, FMS, DIR/ADIR, KD as each run's settings say) and evaluation.


rule train_student:
    input:
        unpack(student_inputs),
    output:
        model="results/students/{run}/model.pt",
        history="results/students/{run}/history.csv",
    params:
        spec=lambda wildcards: as_json(student_spec(config, wildcards.run)),
        compute=as_json(COMPUTE),
        optional=optional_training_flags,
        out_dir=lambda wildcards, output: Path(output.model).parent,
    log:
        "logs/students/train_{run}.log",
    benchmark:
        "results/benchmarks/train_student_{run}.tsv"
    threads: THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} train --spec {params.spec:q} --compute {params.compute:q}"
        " --train-cache {input.train:q} --test-cache {input.test:q} {params.optional}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule evaluate_student:
    input:
        model=student_model,
        cache=CACHE["test"],
    output:
        "results/students/{run}/eval_{precision}.json",
    log:
        "logs/students/evaluate_{run}_{precision}.log",
    benchmark:
        "results/benchmarks/evaluate_student_{run}_{precision}.tsv"
    threads: THREADS
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} evaluate --model {input.model:q} --cache {input.cache:q}"
        " --out {output:q} > {log:q} 2>&1"


rule student_complexity:
    output:
        "results/students/{run}/complexity.json",
    params:
        model=lambda wildcards: student_spec(config, wildcards.run)["model"]["name"],
        norm=lambda wildcards: flag("norm", student_spec(config, wildcards.run)["model"]["options"].get("norm")),
    log:
        "logs/students/complexity_{run}.log",
    benchmark:
        "results/benchmarks/student_complexity_{run}.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet complexity {params.model} {params.norm} --out {output:q} > {log:q} 2>&1"
