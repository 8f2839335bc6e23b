# DCASE 2025 Task 1 (low-complexity acoustic scene classification with device information), one opt-in target:
#   snakemake dcase25_package   the installable inference package of submission.run (int8, one model per device
#                               of dcase25.devices plus the general one), output.csv, each model's complexity,
#                               the test accuracy of both systems, the metadata YAML, and the per-device claim
#   snakemake dcase25_development --configfile config/development.yaml
#                               a development run's choice of dcase25.finetune: each schedule of
#                               development.dcase25_finetune against it on the split25 hold-out
# Always trained on split25 (the task allows the 25 % subset only), teachers and fusion included, whatever
# data.train_subset says; config/dcase25.yaml sets that to 25 as well, so `rule all` reports the same models.
import re

from dsflexinet.config import (
    DCASE25_TRAIN_PERCENT,
    dcase25_module,
    device_finetune_spec,
    finetune_development_plan,
    finetune_schedule_name,
    finetune_schedules,
    qat_spec,
)
from dsflexinet.report.dcase25 import claims_plan as dcase25_claims_plan

DCASE25_SUBSET = layout.subset_name(DCASE25_TRAIN_PERCENT, DEVELOPMENT)
DCASE25_RUN = config["submission"]["run"]
DCASE25_SEED = submission_seed(config)
DCASE25_DEVICES = config["dcase25"]["devices"]
DCASE25_SCHEDULE = finetune_schedule_name(config["dcase25"]["finetune"])  # the submitted models'
DCASE25_MODULE = dcase25_module(config)
DCASE25 = layout.dcase25(DCASE25_SUBSET, DCASE25_RUN, DCASE25_SEED, DCASE25_MODULE)
DCASE25_CLAIMS = {extension: layout.dcase25_claims(DCASE25_SUBSET, DCASE25_RUN, extension) for extension in ("csv", "md")}
DEVICE_STUDENT = layout.device_student()
GENERAL_STUDENT = layout.student(DCASE25_SUBSET, DCASE25_RUN, DCASE25_SEED)
SUBMITTED_DEVICE_STUDENTS = {
    device: layout.device_student(DCASE25_SUBSET, DCASE25_RUN, DCASE25_SEED, device, DCASE25_SCHEDULE)
    for device in DCASE25_DEVICES
}
DCASE25_PLAN = dcase25_claims_plan(
    DCASE25_RUN,
    DCASE25_DEVICES,
    {
        "general": {str(seed): layout.student(DCASE25_SUBSET, DCASE25_RUN, seed).clips("int8") for seed in SEEDS},
        "device_specific": {
            str(seed): layout.dcase25(DCASE25_SUBSET, DCASE25_RUN, seed, DCASE25_MODULE).device_specific_clips
            for seed in SEEDS
        },
    },
    {str(seed): layout.student(DCASE25_SUBSET, DCASE25_RUN, seed).evaluation("int8") for seed in SEEDS},
) | {"run": DCASE25_RUN, "devices": DCASE25_DEVICES, "submitted_seed": str(DCASE25_SEED)}


wildcard_constraints:
    device="|".join(DCASE25_DEVICES),
    schedule="|".join(map(re.escape, finetune_schedules(config))),


rule dcase25_package:
    input:
        DCASE25.package,
        DCASE25.output,
        DCASE25.complexity,
        DCASE25.accuracy,
        DCASE25.metadata,
        *DCASE25_CLAIMS.values(),


rule device_training_clips:
    input:
        lambda wildcards: student_clips(wildcards.subset),
    output:
        layout.device_training_clips(),
    log:
        "logs/{subset}/students/device_clips_{device}.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet device-clips --clips {input:q} --device {wildcards.device} --out {output:q} > {log:q} 2>&1"


rule finetune_device_student:
    input:
        unpack(device_training_inputs),
        float_model=STUDENT.training.model,
    output:
        model=DEVICE_STUDENT.training.model,
        history=DEVICE_STUDENT.training.history,
    params:
        spec=lambda wildcards: as_json(device_finetune_spec(config, wildcards.schedule, wildcards.device)),
        compute=as_json(COMPUTE_IDENTITY),
        optional=optional_training_flags,
        work_dir=work_dir(DEVICE_STUDENT.training),
    log:
        "logs/{subset}/students/finetune_{run}_s{seed}_{schedule}_{device}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/finetune_device_student_{{run}}_s{{seed}}_{{schedule}}_{{device}}.tsv"
    threads: THREADS
    priority: PRIORITY["qat"]
    resources:
        **TRAIN_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} device-finetune --float-model {input.float_model:q}"
        " --spec {params.spec:q} --compute {params.compute:q} --num-workers {resources.num_workers}"
        " --train-cache {input.train:q} --test-cache {input.test:q} {params.optional}"
        " --out-model {output.model:q} --out-history {output.history:q} --work-dir {params.work_dir:q} > {log:q} 2>&1"


use rule qat_student as qat_device_student with:
    input:
        unpack(device_training_inputs),
        float_model=DEVICE_STUDENT.training.model,
    output:
        model=DEVICE_STUDENT.qat.training.model,
        info=DEVICE_STUDENT.qat.info,
        history=DEVICE_STUDENT.qat.training.history,
    params:
        spec=lambda wildcards: as_json(qat_spec(config, wildcards.run)),
        compute=as_json(COMPUTE_IDENTITY),
        optional=optional_training_flags,
        work_dir=work_dir(DEVICE_STUDENT.qat.training),
    log:
        "logs/{subset}/quant/qat_{run}_s{seed}_{schedule}_{device}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/qat_device_student_{{run}}_s{{seed}}_{{schedule}}_{{device}}.tsv"


use rule evaluate_student as evaluate_device_student with:
    input:
        model=lambda wildcards: device_student_files(wildcards).model(wildcards.precision),
        cache=CACHE["test"],
    output:
        metrics=DEVICE_STUDENT.evaluation(),
        clips=DEVICE_STUDENT.clips(),
    log:
        "logs/{subset}/students/evaluate_{run}_s{seed}_{schedule}_{device}_{precision}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/evaluate_device_student_{{run}}_s{{seed}}_{{schedule}}_{{device}}_{{precision}}.tsv"


# Each device's model is checked against the limits on its own (the task's rule); it has the general student's
# architecture, so the count is the same.
use rule student_complexity as device_student_complexity with:
    output:
        DEVICE_STUDENT.complexity,
    log:
        "logs/{subset}/students/complexity_{run}_s{seed}_{schedule}_{device}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/device_student_complexity_{{run}}_s{{seed}}_{{schedule}}_{{device}}.tsv"


rule device_specific_system:
    input:
        general=STUDENT.clips("int8"),
        devices=lambda wildcards: [files.clips("int8") for files in device_students_of(wildcards, DCASE25_SCHEDULE)],
    output:
        layout.dcase25(module=DCASE25_MODULE).device_specific_clips,
    params:
        devices=lambda wildcards, input: " ".join(
            f"--device {shlex.quote(f'{device}={path}')}" for device, path in zip(DCASE25_DEVICES, input.devices)
        ),
    log:
        "logs/{subset}/dcase25/device_system_{run}_s{seed}.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet device-system --general {input.general:q} {params.devices} --out {output:q} > {log:q} 2>&1"


rule dcase25_evaluation:
    input:
        plan_inputs(DCASE25_PLAN),
    output:
        accuracy=DCASE25.accuracy,
        claims_csv=DCASE25_CLAIMS["csv"],
        claims_md=DCASE25_CLAIMS["md"],
    params:
        plan=as_json(DCASE25_PLAN),
    log:
        f"logs/{DCASE25_SUBSET}/dcase25/evaluation.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet dcase25-evaluation --plan {params.plan:q} --out-accuracy {output.accuracy:q}"
        " --out-claims-csv {output.claims_csv:q} --out-claims-md {output.claims_md:q} > {log:q} 2>&1"


DCASE25_MODELS = {"general": GENERAL_STUDENT.model("int8")} | {
    device: files.model("int8") for device, files in SUBMITTED_DEVICE_STUDENTS.items()
}
DCASE25_COMPLEXITY = {"general": GENERAL_STUDENT.complexity} | {
    device: files.complexity for device, files in SUBMITTED_DEVICE_STUDENTS.items()
}
DCASE25_QUANTIZED = {"general": GENERAL_STUDENT.qat.info} | {
    device: files.qat.info for device, files in SUBMITTED_DEVICE_STUDENTS.items()
}


rule build_dcase25_package:
    input:
        **EVALUATION_INPUTS,
        manifest=layout.evaluation_manifest(DCASE25_SUBSET, DCASE25_RUN, DCASE25_SEED),
        models=list(DCASE25_MODELS.values()),
        complexity=list(DCASE25_COMPLEXITY.values()),
        quantized=list(DCASE25_QUANTIZED.values()),
        accuracy=DCASE25.accuracy,
    output:
        package=directory(DCASE25.package),
        output=DCASE25.output,
        complexity=DCASE25.complexity,
        metadata=DCASE25.metadata,
    params:
        root=lambda wildcards, input: input.get("evaluation_root") or Path(input.audio).parent,
        module=DCASE25_MODULE,
        run=DCASE25_RUN,
        files=" ".join(
            named_flags(name, paths)
            for name, paths in (("model", DCASE25_MODELS), ("complexity", DCASE25_COMPLEXITY), ("quantized", DCASE25_QUANTIZED))
        ),
    log:
        f"logs/{DCASE25_SUBSET}/dcase25/package.log",
    benchmark:
        f"{layout.BENCHMARKS}/{DCASE25_SUBSET}/build_dcase25_package.tsv"
    threads: THREADS
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet --threads {threads} dcase25-package {params.files} --evaluation-root {params.root:q}"
        " --accuracy {input.accuracy:q} --module {params.module} --run {params.run:q} --out-package {output.package:q}"
        " --out-csv {output.output:q} --out-complexity {output.complexity:q} --out-metadata {output.metadata:q}"
        " > {log:q} 2>&1"


# A development run (config/development.yaml) chooses dcase25.finetune: the device-specific system of every schedule
# (float, before QAT: the schedule is what changes) on the fusion hold-out of split25, which none of its models
# trained on, against the default schedule's and the general student's.
DCASE25_GENERAL_HOLDOUT = GENERAL_STUDENT.holdout("float")[1]
DCASE25_FINETUNE_PLAN = finetune_development_plan(
    config,
    DCASE25_GENERAL_HOLDOUT,
    lambda schedule: layout.device_specific_holdout_clips(DCASE25_SUBSET, DCASE25_RUN, DCASE25_SEED, schedule),
)


rule dcase25_development:
    input:
        dcase25_development_inputs,


use rule evaluate_student_holdout as evaluate_device_student_holdout with:
    input:
        model=lambda wildcards: device_student_files(wildcards).model(wildcards.precision),
        cache=CACHE["train"],
        holdout=layout.splits().fusion_holdout,
    output:
        metrics=DEVICE_STUDENT.holdout("{precision}")[0],
        clips=DEVICE_STUDENT.holdout("{precision}")[1],
    log:
        "logs/{subset}/students/evaluate_holdout_{run}_s{seed}_{schedule}_{device}_{precision}.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/evaluate_device_student_holdout_{{run}}_s{{seed}}_{{schedule}}_{{device}}_{{precision}}.tsv"


use rule device_specific_system as device_specific_holdout with:
    input:
        general=STUDENT.holdout("float")[1],
        devices=lambda wildcards: [files.holdout()[1] for files in device_students_of(wildcards, wildcards.schedule)],
    output:
        layout.device_specific_holdout_clips(),
    log:
        "logs/{subset}/dcase25/device_system_holdout_{run}_s{seed}_{schedule}.log",


rule dcase25_finetune_choice:
    input:
        DCASE25_GENERAL_HOLDOUT,
        DCASE25_FINETUNE_PLAN["baseline"]["clips"],
        *(candidate["clips"] for candidate in DCASE25_FINETUNE_PLAN["candidates"].values()),
    output:
        layout.DCASE25_DEVELOPMENT,
    params:
        plan=as_json(DCASE25_FINETUNE_PLAN),
    log:
        "logs/report/dcase25_finetune.log",
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet dcase25-finetune-choice --plan {params.plan:q} --out {output:q} > {log:q} 2>&1"
