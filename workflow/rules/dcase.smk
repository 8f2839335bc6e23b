# The DCASE workflow, an opt-in target (not part of `rule all`):
#   snakemake submission        the challenge's output.csv and info.json of one student in int8
# Complexity limits are checked by every student's complexity job (students.smk), which the submission reads.
from dsflexinet.config import submission_seed

SUBMISSION_FILES = layout.submission(SUBSET, config["submission"]["run"], submission_seed(config))
# The folder whose clips are submitted: the configured one, or this data set's own (its test split's table).
EVALUATION_INPUTS = (
    {"evaluation_root": DATA["evaluation_root"]}
    if DATA["evaluation_root"]
    else {"clip_table": f"{DATASET}/{SPLIT_FILES['test']}", "audio": f"{DATASET}/audio"}
)


rule submission:
    input:
        SUBMISSION_FILES.output,
        SUBMISSION_FILES.info,


rule write_submission:
    input:
        **EVALUATION_INPUTS,
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
