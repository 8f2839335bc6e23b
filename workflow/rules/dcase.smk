# The DCASE workflow, two opt-in targets (not part of `rule all`):
#   snakemake submission        the challenge's output.csv and info.json of one student in int8
#   snakemake data_efficiency   every configured student size trained on every configured DCASE'24 subset, and
#                               its accuracy against the training fraction (table and figure)
# Complexity limits are checked by every student's complexity job (students.smk), which the submission reads.
from dsflexinet.config import submission_seed
from dsflexinet.evaluate.submission import folder_state

SUBMISSION_FILES = layout.submission(SUBSET, config["submission"]["run"], submission_seed(config))
# The folder whose clips are submitted: the configured one, or this data set's own (its test split's table).
EVALUATION_INPUTS = (
    {"evaluation_root": DATA["evaluation_root"]}
    if DATA["evaluation_root"]
    else {"clip_table": f"{DATASET}/{SPLIT_FILES['fold1_test']}", "audio": f"{DATASET}/audio"}
)


rule submission:
    input:
        SUBMISSION_FILES.output,
        SUBMISSION_FILES.info,


# The clips' names, sizes and checksums. A configured folder is no rule's output, so Snakemake would see only
# its modification time: the digest of its files' sizes and times (a changed parameter reruns a job) rebuilds
# the manifest when a clip is replaced or added anywhere below it, and a changed manifest reruns the submission.
rule evaluation_manifest:
    input:
        **EVALUATION_INPUTS,
    output:
        layout.evaluation_manifest(),
    params:
        root=lambda wildcards, input: input.get("evaluation_root") or Path(input.audio).parent,
        state=lambda wildcards: folder_state(DATA["evaluation_root"]) if DATA["evaluation_root"] else "",
    log:
        "logs/{subset}/submission/{run}_s{seed}_clips.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet evaluation-manifest --evaluation-root {params.root:q} --out {output:q} > {log:q} 2>&1"


rule write_submission:
    input:
        **EVALUATION_INPUTS,
        manifest=layout.evaluation_manifest(),
        model=STUDENT.model("int8"),
        complexity=STUDENT.complexity,
        quantized=STUDENT.qat.info,
        evaluation=STUDENT.evaluation("int8"),
    output:
        output=layout.submission().output,
        info=layout.submission().info,
    params:
        root=lambda wildcards, input: input.get("evaluation_root") or Path(input.audio).parent,
        incomplete_csv=lambda wildcards: layout.incomplete_submission(**wildcards).output,
        incomplete_info=lambda wildcards: layout.incomplete_submission(**wildcards).info,
    log:
        "logs/{subset}/submission/{run}_s{seed}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/write_submission_{{run}}_s{{seed}}.tsv"
    threads: THREADS
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} submission --model {input.model:q}"
        " --evaluation-root {params.root:q} --complexity {input.complexity:q} --quantized {input.quantized:q}"
        " --evaluation {input.evaluation:q} --run {wildcards.run:q} --out-csv {output.output:q}"
        " --out-info {output.info:q} --incomplete-csv {params.incomplete_csv:q}"
        " --incomplete-info {params.incomplete_info:q} > {log:q} 2>&1"


# What report-data-efficiency reads: each subset's training clips, and the per-clip evaluations of every seed of
# each (run, fraction, precision).
DATA_EFFICIENCY_PLAN = {
    "training_clips": {
        str(fraction): layout.splits(layout.subset_name(fraction)).train
        for fraction in config["data_efficiency"]["fractions"]
    },
    "systems": [
        {
            "run": run,
            "fraction": fraction,
            "precision": precision,
            "clips": {
                str(seed): layout.student(layout.subset_name(fraction), run, seed).clips(precision) for seed in SEEDS
            },
        }
        for run in config["data_efficiency"]["runs"]
        for fraction in config["data_efficiency"]["fractions"]
        for precision in layout.PRECISIONS
    ],
}
DATA_EFFICIENCY_INPUTS = [
    *DATA_EFFICIENCY_PLAN["training_clips"].values(),
    *(path for system in DATA_EFFICIENCY_PLAN["systems"] for path in system["clips"].values()),
]
DATA_EFFICIENCY = {
    "csv": layout.table("data_efficiency", "csv"),
    "markdown": layout.table("data_efficiency", "md"),
    "figure": layout.figure("data_efficiency"),
}


rule data_efficiency:
    input:
        **DATA_EFFICIENCY,


rule report_data_efficiency:
    input:
        DATA_EFFICIENCY_INPUTS,
    output:
        csv=DATA_EFFICIENCY["csv"],
        markdown=DATA_EFFICIENCY["markdown"],
        figure=report(DATA_EFFICIENCY["figure"], caption="../report/data_efficiency.rst", category="Figures"),
    params:
        plan=as_json(DATA_EFFICIENCY_PLAN),
    log:
        "logs/report/data_efficiency.log",
    benchmark:
        f"{layout.BENCHMARKS}/report_data_efficiency.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet report-data-efficiency --plan {params.plan:q} --out-csv {output.csv:q}"
        " --out-md {output.markdown:q} --out-png {output.figure:q} > {log:q} 2>&1"
