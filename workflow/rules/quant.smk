# Quantization-aware fine-tuning of each student and its int8 conversion (exported TorchScript).


rule qat_student:
    input:
        unpack(student_inputs),
        float_model="results/students/{run}/model.pt",
    output:
        model="results/students/{run}/qat/model_int8.pt",
        info="results/students/{run}/qat/quantized.json",
        history="results/students/{run}/qat/history.csv",
    params:
        spec=lambda wildcards: as_json(qat_spec(config, wildcards.run)),
        compute=as_json(COMPUTE),
        optional=optional_training_flags,
        out_dir=lambda wildcards, output: Path(output.model).parent,
    log:
        "logs/quant/qat_{run}.log",
    benchmark:
        "results/benchmarks/qat_student_{run}.tsv"
    threads: THREADS
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} qat --model {input.float_model:q} --spec {params.spec:q} --compute {params.compute:q}"
        " --train-cache {input.train:q} --test-cache {input.test:q} {params.optional}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"
