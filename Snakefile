# DS-FlexiNet reproducibility pipeline: raw TAU22 (or the synthetic default) -> tables and figures of the paper.
# Rules are thin calls of the package CLI (`python -m dsflexinet ...`); the logic lives in src/dsflexinet.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/students.smk"
include: "workflow/rules/quant.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/dcase.smk"


rule all:
    input:
        final_targets(),
    default_target: True
