# Pretrained teacher weights: fetched and verified (the real run's PaSST-S AudioSet checkpoint), or made by
# pretraining a teacher architecture on the synthetic multi-label corpus (the default run's stand-in for AudioSet).
# Either way the checkpoint lies in the data root with its SHA-256 beside it, which training checks before loading.


rule fetch_weights:
    output:
        weights=layout.weights(DATA_ROOT),
        checksum=layout.weights_checksum(DATA_ROOT),
    wildcard_constraints:
        name=weights_pattern("url"),
    params:
        url=lambda wildcards: config["weights"][wildcards.name]["url"],
        sha256=lambda wildcards: config["weights"][wildcards.name]["sha256"],
    log:
        "logs/data/fetch_weights_{name}.log",
    retries: 2
    priority: PRIORITY["data"]
    resources:
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        ENV
    shell:
        "python -m dsflexinet fetch --url {params.url:q} --checksum {params.sha256} --algorithm sha256"
        " --out {output.weights:q} --out-checksum {output.checksum:q} > {log:q} 2>&1"


rule generate_pretraining_corpus:
    output:
        waves=PRETRAINING_CORPUS.waves,
        table=PRETRAINING_CORPUS.table,
    params:
        spec=as_json(config.get("pretraining", {}).get("corpus", {}) | {"sample_rate": DATA["sample_rate"]}),
    log:
        "logs/data/generate_pretraining_corpus.log",
    benchmark:
        f"{layout.BENCHMARKS}/generate_pretraining_corpus.tsv"
    priority: PRIORITY["data"]
    resources:
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        ENV
    shell:
        "python -m dsflexinet pretraining-corpus --spec {params.spec:q} --out-waves {output.waves:q}"
        " --out-table {output.table:q} > {log:q} 2>&1"


rule pretrain_weights:
    input:
        waves=PRETRAINING_CORPUS.waves,
        table=PRETRAINING_CORPUS.table,
    output:
        weights=layout.weights(DATA_ROOT),
        checksum=layout.weights_checksum(DATA_ROOT),
        report=layout.pretraining_report(DATA_ROOT),
    wildcard_constraints:
        name=weights_pattern("pretrain"),
    params:
        architecture=lambda wildcards: as_json(pretraining_architecture(config, wildcards.name)),
        schedule=lambda wildcards: as_json(config["weights"][wildcards.name]["schedule"]),
        seed=lambda wildcards: config["weights"][wildcards.name]["seed"],
    log:
        "logs/data/pretrain_weights_{name}.log",
    benchmark:
        f"{layout.BENCHMARKS}/pretrain_weights_{{name}}.tsv"
    threads: THREADS
    priority: PRIORITY["teachers"]
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} pretrain --architecture {params.architecture:q}"
        " --schedule {params.schedule:q} --seed {params.seed} --corpus-waves {input.waves:q}"
        " --corpus-table {input.table:q} --out-weights {output.weights:q} --out-checksum {output.checksum:q}"
        " --out-report {output.report:q} > {log:q} 2>&1"
