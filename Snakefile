# DS-FlexiNet reproducibility pipeline: raw TAU22 (or the synthetic default) -> tables and figures of the paper.
# Rules are thin calls of the package CLI (`python -m dsflexinet ...`); the logic lives in src/dsflexinet.
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from dsflexinet.config import read_config_file
from dsflexinet.errors import PipelineError

min_version("9.0")

# Snakemake's own reading of a broken config.yaml names no line; ours does. (A --configfile is read by Snakemake
# before this file runs: `python -m dsflexinet check-config FILE` names its line.)
try:
    read_config_file(Path(workflow.basedir) / "config.yaml")
except PipelineError as error:
    raise WorkflowError(str(error)) from None


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretraining.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/students.smk"
include: "workflow/rules/quant.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/dcase.smk"
include: "workflow/rules/dcase25.smk"


# results/run.json: the commit, machine, seeds and wall time of every invocation that finished without error
# (dry runs, `--touch` and invocations with nothing to do record nothing). `python -m dsflexinet docs-results`
# states them beside the results tables.
_invocation = {}


onstart:
    from dsflexinet.report.runrecord import start_invocation

    if not workflow.touch:
        configfiles = [str(path) for path in workflow.overwrite_configfiles or []]
        _invocation.update(start_invocation(workflow.basedir, config, configfiles))


onsuccess:
    from dsflexinet.report.runrecord import finish_invocation

    if _invocation:
        finish_invocation(_invocation, layout.RUN_RECORD, workflow.resource_settings.cores)


rule all:
    input:
        final_targets(),
    default_target: True
