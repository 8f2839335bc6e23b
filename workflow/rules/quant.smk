# Quantization-aware fine-tuning of each student and its int8 conversion (exported TorchScript).


rule qat_student:
    input:
        unpack(qat_inputs),
        float_model=lambda wildcards: layout.student(
            wildcards.subset, float_run(config, wildcards.run), wildcards.seed
        ).training.model,
    output:
        model=STUDENT.qat.training.model,
        info=STUDENT.qat.info,
        history=STUDENT.qat.training.history,
    params:
        spec=lambda wildcards: as_json(qat_spec(config, wildcards.run)),
        compute=as_json(COMPUTE_IDENTITY),
        optional=optional_training_flags,
        work_dir=work_dir(STUDENT.qat.training),
    log:
        "logs/{subset}/quant/qat_{run}_s{seed}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/qat_student_{{run}}_s{{seed}}.tsv"
    threads: THREADS
    priority: PRIORITY["qat"]
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} qat --float-model {input.float_model:q} --spec {params.spec:q}"
        " --compute {params.compute:q} --num-workers {resources.num_workers} --train-cache {input.train:q}"
        " --test-cache {input.test:q} {params.optional}"
        " --out-model {output.model:q} --out-history {output.history:q} --out-info {output.info:q}"
        " --work-dir {params.work_dir:q} > {log:q} 2>&1"
