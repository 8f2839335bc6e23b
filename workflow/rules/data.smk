# Data: the data set (synthetic or downloaded), impulse-response sets, validation, 32 kHz waveform caches.

if DATA["source"] == "synthetic":

    rule generate_synthetic_dataset:
        output:
            tables=DATASET_TABLES + SUBSET_TABLES,
            audio=directory(f"{DATASET}/audio"),
        params:
            spec=as_json(DATA["synthetic"]),
            root=lambda wildcards, output: Path(output.audio).parents[1],
        log:
            "logs/data/generate_synthetic_dataset.log",
        benchmark:
            f"{layout.BENCHMARKS}/generate_synthetic_dataset.tsv"
        threads: DATA_RESOURCES["threads"]
        priority: PRIORITY["data"]
        resources:
            mem_mb=DATA_RESOURCES["mem_mb"],
            runtime=DATA_RESOURCES["runtime"],
        conda:
            ENV
        shell:
            "python -m dsflexinet generate-synthetic --spec {params.spec:q} --workers {threads}"
            " --out {params.root:q} > {log:q} 2>&1"

else:

    rule download_tau22_archive:
        output:
            f"{DATA_ROOT}/downloads/{{archive}}",
        wildcard_constraints:
            archive="|".join(name.replace(".", r"\.") for name in TAU22_ARCHIVES),
        params:
            url=lambda wildcards: f"{DATA['download']['base_url']}/{wildcards.archive}",
            md5=lambda wildcards: TAU22_ARCHIVES[wildcards.archive],
        log:
            "logs/data/download_{archive}.log",
        retries: 2
        priority: PRIORITY["data"]
        resources:
            mem_mb=DATA_RESOURCES["mem_mb"],
            runtime=DATA_RESOURCES["runtime"],
        conda:
            ENV
        shell:
            "python -m dsflexinet fetch --url {params.url:q} --checksum {params.md5} --out {output:q} > {log:q} 2>&1"

    rule fetch_dcase24_subset:
        output:
            f"{DATASET}/evaluation_setup/split{{fraction}}.csv",
        wildcard_constraints:
            fraction="|".join(map(str, SUBSET_FRACTIONS)),
        params:
            url=DATA["download"]["subsets_url"],
        log:
            "logs/data/fetch_dcase24_subset_{fraction}.log",
        retries: 2
        priority: PRIORITY["data"]
        resources:
            mem_mb=DATA_RESOURCES["mem_mb"],
            runtime=DATA_RESOURCES["runtime"],
        conda:
            ENV
        shell:
            "python -m dsflexinet fetch-subset --fraction {wildcards.fraction} --base-url {params.url:q}"
            " --out {output:q} > {log:q} 2>&1"

    rule extract_tau22:
        input:
            expand(f"{DATA_ROOT}/downloads/{{archive}}", archive=TAU22_ARCHIVES),
        output:
            tables=DATASET_TABLES,
            audio=directory(f"{DATASET}/audio"),
        params:
            root=lambda wildcards, output: Path(output.audio).parents[1],
        log:
            "logs/data/extract_tau22.log",
        benchmark:
            f"{layout.BENCHMARKS}/extract_tau22.tsv"
        resources:
            mem_mb=DATA_RESOURCES["mem_mb"],
            runtime=DATA_RESOURCES["runtime"],
        conda:
            ENV
        shell:
            "python -m dsflexinet extract {input:q} --out {params.root:q} > {log:q} 2>&1"


rule synthesise_impulse_responses:
    output:
        directory(f"{DATA_ROOT}/impulse_responses/synthetic"),
    params:
        n_responses=DATA["impulse_responses"]["synthetic"]["count"],
        seed=DATA["impulse_responses"]["synthetic"]["seed"],
    log:
        "logs/data/synthesise_impulse_responses.log",
    benchmark:
        f"{layout.BENCHMARKS}/synthesise_impulse_responses.tsv"
    priority: PRIORITY["data"]
    resources:
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        ENV
    shell:
        "python -m dsflexinet synthesise-dirs --count {params.n_responses} --seed {params.seed} --out {output:q}"
        " > {log:q} 2>&1"


rule fetch_micirp:
    output:
        directory(f"{DATA_ROOT}/impulse_responses/micirp"),
    params:
        url=DATA["impulse_responses"]["micirp_url"],
        downloads=f"{DATA_ROOT}/downloads/micirp",
    log:
        "logs/data/fetch_micirp.log",
    benchmark:
        f"{layout.BENCHMARKS}/fetch_micirp.tsv"
    retries: 2
    priority: PRIORITY["data"]
    resources:
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        ENV
    shell:
        "python -m dsflexinet fetch-micirp --base-url {params.url:q} --downloads {params.downloads:q}"
        " --out {output:q} > {log:q} 2>&1"


rule validate_dataset:
    input:
        tables=DATASET_TABLES,
        audio=f"{DATASET}/audio",
    output:
        layout.DATASET_SUMMARY,
    params:
        root=lambda wildcards, input: Path(input.audio).parent,
    log:
        "logs/data/validate_dataset.log",
    benchmark:
        f"{layout.BENCHMARKS}/validate_dataset.tsv"
    priority: PRIORITY["data"]
    resources:
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        ENV
    shell:
        "python -m dsflexinet validate-dataset {params.root:q} --out {output:q} > {log:q} 2>&1"


rule cache_waveforms:
    input:
        summary=layout.DATASET_SUMMARY,
        audio=f"{DATASET}/audio",
        split=lambda wildcards: f"{DATASET}/{DATA['splits'][wildcards.split]}",
    output:
        waves=layout.cache(),
        table=layout.cache().replace(".npy", ".tsv"),
    params:
        root=lambda wildcards, input: Path(input.audio).parent,
        split_file=lambda wildcards: DATA["splits"][wildcards.split],
        sample_rate=DATA["sample_rate"],
        clip_seconds=DATA["clip_seconds"],
        expected_rate=(
            f"--expected-rate {DATA['expected_sample_rate']}" if DATA["expected_sample_rate"] else ""
        ),
    log:
        "logs/data/cache_waveforms_{split}.log",
    benchmark:
        f"{layout.BENCHMARKS}/cache_waveforms_{{split}}.tsv"
    threads: DATA_RESOURCES["threads"]
    priority: PRIORITY["data"]
    resources:
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        ENV
    shell:
        "python -m dsflexinet cache-waveforms --root {params.root:q} --split-file {params.split_file:q}"
        " --sample-rate {params.sample_rate} --clip-seconds {params.clip_seconds} {params.expected_rate}"
        " --workers {threads} --out {output.waves:q} > {log:q} 2>&1"


rule validation_subset:
    input:
        CACHE["test"].replace(".npy", ".tsv"),
    output:
        layout.VALIDATION_SUBSET,
    params:
        locations=VALIDATION_LOCATIONS,
    log:
        "logs/data/validation_subset.log",
    priority: PRIORITY["data"]
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet validation-subset --cache-table {input:q} --locations-per-scene {params.locations}"
        " --out {output:q} > {log:q} 2>&1"


rule split_training_clips:
    input:
        cache_table=CACHE["train"].replace(".npy", ".tsv"),
        subset_table=lambda wildcards: subset_table(wildcards.subset),
    output:
        train=layout.splits().train,
        teacher_train=layout.splits().teacher_train,
        holdout=layout.splits().fusion_holdout,
    params:
        fraction=lambda wildcards: layout.subset_percent(wildcards.subset),
        synthetic_flag=(
            f"--synthetic-spec {shlex.quote(as_json(DATA['synthetic']))}" if DATA["source"] == "synthetic" else ""
        ),
        holdout_fraction=config["teachers"]["fusion"]["holdout_fraction"],
        seed=config["teachers"]["fusion"]["seed"],
    log:
        "logs/{subset}/data/split_training_clips.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/split_training_clips.tsv"
    priority: PRIORITY["data"]
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet split-training --cache-table {input.cache_table:q} --subset-table {input.subset_table:q}"
        " --fraction {params.fraction} {params.synthetic_flag} --holdout-fraction {params.holdout_fraction}"
        " --seed {params.seed} --out-train {output.train:q} --out-teacher-train {output.teacher_train:q}"
        " --out-holdout {output.holdout:q} > {log:q} 2>&1"
