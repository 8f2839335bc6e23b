# Shared definitions: config validation, paths, job specs and the functions that list each step's inputs.
# Specs are resolved by the package (dsflexinet.config); this file only maps them onto files.
import json
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from dsflexinet.config import qat_spec, student_spec, teacher_names, teacher_spec, validate_config
from dsflexinet.data.download import read_manifest
from dsflexinet.data.tau22 import DATASET_DIRNAME, SPLIT_FILES
from dsflexinet.errors import PipelineError

try:
    validate_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
except PipelineError as error:
    raise WorkflowError(str(error)) from None

# Jobs run `python -m dsflexinet` from this checkout, in the venv, a conda env (--sdm conda) or on a cluster
# node; Snakemake's default strict-mode prefix is kept.
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH='{Path(workflow.basedir) / 'src'}'${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)

DATA = config["data"]
DATA_ROOT = DATA["root"]
DATASET = f"{DATA_ROOT}/{DATASET_DIRNAME}"
DATASET_TABLES = [f"{DATASET}/meta.csv"] + [f"{DATASET}/{path}" for path in SPLIT_FILES.values()]
TAU22_ARCHIVES = read_manifest("tau22.md5")
IR_DIR = f"{DATA_ROOT}/impulse_responses/{DATA['impulse_responses']['source']}"
CACHE = {split: f"results/cache/{split}.npy" for split in DATA["splits"]}
TEACHERS = teacher_names(config)
STUDENTS = list(config["students"]["runs"])
REPORTS = config["reports"]
COMPUTE = config["compute"]
THREADS = COMPUTE["threads"]
TRAIN_RESOURCES = config["resources"]["train"]
LIGHT_RESOURCES = config["resources"]["light"]
ENV = "../../envs/pipeline.yaml"


def as_json(value):
    """Compact, key-sorted JSON for `--spec` params: equal settings give equal strings (no spurious reruns)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def flag(name, path):
    """`--name 'path'` for an optional input, nothing when the job does not need it."""
    return f"--{name} {shlex.quote(str(path))}" if path else ""


def training_inputs(spec, teachers=None):
    """Files a training job reads besides the caches: the DIR set, the energy analysis, teacher logits."""
    inputs = {"train": CACHE["train"], "test": CACHE["test"]}
    device_ir = spec["augment"]["device_ir"]
    if device_ir:
        inputs["impulse_responses"] = IR_DIR
        if device_ir["mode"] == "adir" and device_ir["energy_threshold"] == "auto":
            inputs["energy"] = "results/energy/energy.json"
    if teachers:
        inputs["teacher_logits"] = f"results/ensemble/{teachers}.npz"
    return inputs


def teacher_inputs(wildcards):
    return training_inputs(teacher_spec(config, wildcards.teacher))


def student_inputs(wildcards):
    spec = student_spec(config, wildcards.run)
    return training_inputs(spec, spec.get("distillation", {}).get("teachers"))


def optional_training_flags(wildcards, input):
    return " ".join(
        flag(name.replace("_", "-"), input.get(name)) for name in ("impulse_responses", "energy", "teacher_logits")
    )


def student_model(wildcards):
    if wildcards.precision == "int8":
        return f"results/students/{wildcards.run}/qat/model_int8.pt"
    return f"results/students/{wildcards.run}/model.pt"


# What each table reads of a student run directory.
TABLE_FILES = {
    "table2": ("eval_float.json", "eval_int8.json", "complexity.json", "qat/quantized.json"),
    "table3": ("eval_int8.json", "complexity.json"),
    "table4": ("eval_float.json",),
    "table5": ("eval_float.json",),
}


def report_runs(section):
    """{row label: run directory} of a report section; a list of runs labels each row by its run."""
    runs = REPORTS[section]
    pairs = runs.items() if isinstance(runs, dict) else ((run, run) for run in runs)
    return {label: f"results/students/{run}" for label, run in pairs}


def table_inputs(wildcards):
    directories = report_runs(wildcards.table).values()
    return [f"{directory}/{name}" for directory in directories for name in TABLE_FILES[wildcards.table]]


def labelled_flags(pairs):
    return " ".join(f"--run {shlex.quote(f'{label}={path}')}" for label, path in pairs.items())


def final_targets():
    return [
        "results/data/dataset.json",
        "results/energy/energy.json",
        "results/ensemble/fusion.json",
        *expand("results/tables/{table}.md", table=["table2", "table3", "table4", "table5"]),
        "results/figures/fig2_energy_histogram.png",
        *expand("results/figures/fig3_confusion_{name}.png", name=REPORTS["fig3"]),
        "results/metrics.json",
    ]
