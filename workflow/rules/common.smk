# Shared definitions: config validation, job specs and the functions that list each step's inputs.
# Specs are resolved by the package (dsflexinet.config), paths come from its run layout (dsflexinet.layout); this
# file only maps one onto the other.
import json
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from dsflexinet import layout
from dsflexinet.config import (
    development_plan,
    fixed_energy_threshold,
    float_run,
    needs_energy_analysis,
    pretraining_architecture,
    qat_spec,
    student_runs,
    student_seeds,
    student_spec,
    teacher_names,
    teacher_spec,
    validate_config,
)
from dsflexinet.data.download import read_manifest
from dsflexinet.data.subsets import SUBSET_FRACTIONS, subset_file
from dsflexinet.data.tau22 import DATASET_DIRNAME, SPLIT_FILES
from dsflexinet.errors import PipelineError
from dsflexinet.report.claims import claims_plan, paper_claims, plan_inputs

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
SUBSET_TABLES = [f"{DATASET}/{subset_file(fraction)}" for fraction in SUBSET_FRACTIONS]  # DCASE'24 split5..50
TAU22_ARCHIVES = read_manifest("tau22.md5")
IR_DIR = f"{DATA_ROOT}/impulse_responses/{DATA['impulse_responses']['source']}"
CACHE = {split: layout.cache(split) for split in DATA["splits"]}
PRETRAINING_CORPUS = layout.pretraining_corpus(DATA_ROOT)
TEACHERS = teacher_names(config)
STUDENTS = list(student_runs(config))  # in a development run, with its candidate settings
# The runs with a float training of their own (a QAT-only candidate of a development run shares its baseline's).
FLOAT_TRAINED = [run for run in STUDENTS if float_run(config, run) == run]
SEEDS = student_seeds(config)
REPORTS = config["reports"]
# A development run (config/development.yaml): students learn from the teachers' share of the training clips and
# every training job validates on the fusion hold-out, so settings are compared without the test split.
DEVELOPMENT = config["validation"] == "holdout"
# Otherwise the curves read a fixed subset of the test locations (None: the whole test split).
VALIDATION_LOCATIONS = config["validation_locations_per_scene"]
SUBSET = layout.subset_name(DATA["train_subset"], DEVELOPMENT)
COMPUTE = config["compute"]
# Part of a result's identity: settings that change what training computes. Worker processes and threads only
# change how fast (they reach the jobs as `threads` and a resource, which Snakemake does not rerun jobs for).
COMPUTE_IDENTITY = {key: COMPUTE[key] for key in ("accelerator", "devices", "strategy", "precision")}
THREADS = COMPUTE["threads"]
# Training jobs also get their DataLoader workers as a resource: not part of a result's identity.
TRAIN_RESOURCES = config["resources"]["train"] | {"num_workers": COMPUTE["num_workers"]}
LIGHT_RESOURCES = config["resources"]["light"]
DATA_RESOURCES = config["resources"]["data"]
ENV = "../../envs/pipeline.yaml"
# Which ready job starts first when there are more than cores: the chain to the teachers' fusion, then the
# longest stages, so a run does not end on a student that waited behind short QAT and evaluation jobs.
# Scheduling only: no output changes.
PRIORITY = {"data": 50, "teachers": 40, "students": 30, "qat": 20, "evaluation": 10}
# Wildcard patterns of the run layout.
TEACHER = layout.teacher()
ENSEMBLE = layout.ensemble()
ENERGY = layout.energy()
STUDENT = layout.student()
CROSS_FIT = layout.cross_fit()


wildcard_constraints:
    subset=layout.SUBSET_PATTERN,
    seed=r"\d+",
    precision="float|int8",
    fold="|".join(map(str, layout.CROSS_FIT_FOLDS)),


def as_json(value):
    """Compact, key-sorted JSON for `--spec` params: equal settings give equal strings (no spurious reruns)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def as_ordered_json(value):
    """Compact JSON that keeps the config's order: the rows of a table come in the order its section lists them."""
    return json.dumps(value, separators=(",", ":"))


def flag(name, path):
    """`--name 'path'` for an optional input, nothing when the job does not need it."""
    return f"--{name} {shlex.quote(str(path))}" if path else ""


def work_dir(files):
    """A job's working directory (checkpoints, TensorBoard log) for the rule's wildcards."""
    return lambda wildcards: files.directory.format(**wildcards)


def subset_table(subset):
    """The split table of a training subset: fold1_train.csv for split100, split<N>.csv for the others."""
    return f"{DATASET}/{subset_file(layout.subset_percent(subset))}"


def training_inputs(spec, subset, train_clips, teachers=None):
    """Files a training job reads: the caches and its clip tables (what it learns from; in a development run also
    the hold-out it validates on), the DIR set, the energy analysis, teacher logits."""
    inputs = {"train": CACHE["train"], "test": CACHE["test"], "train_clips": train_clips}
    if DEVELOPMENT:
        inputs["validation_clips"] = layout.splits(subset).fusion_holdout
    elif VALIDATION_LOCATIONS:
        inputs |= {"validation_clips": layout.VALIDATION_SUBSET, "validation_cache": CACHE["test"]}
    if spec["augment"]["device_ir"]:
        inputs["impulse_responses"] = IR_DIR
    if needs_energy_analysis(spec):
        inputs["energy"] = layout.energy(subset).stats
    if teachers:
        inputs["teacher_logits"] = layout.distillation_targets(subset, teachers)
    return inputs


def teacher_inputs(wildcards):
    spec = teacher_spec(config, wildcards.teacher)
    inputs = training_inputs(spec, wildcards.subset, layout.splits(wildcards.subset).teacher_train)
    weights = spec["model"].get("options", {}).get("pretrained_path")
    return inputs | ({"weights": weights, "weights_checksum": layout.checksum_beside(weights)} if weights else {})


def fold_teacher_inputs(wildcards):
    """A teacher trained again without one fold of the student clips (cross-fitted targets): the full teacher's
    inputs, spec and weights, learning from the student clips outside the fold."""
    fold_clips = layout.cross_fit(wildcards.subset).teacher_train(wildcards.fold)
    return teacher_inputs(wildcards) | {"train_clips": fold_clips}


def weights_pattern(kind):
    """The `{name}` wildcard of the weights made one way: `url` (fetched) or `pretrain` (on the corpus)."""
    names = [name for name, entry in config.get("weights", {}).items() if kind in entry]
    return "|".join(names) or "^$"


def student_clips(subset):
    """The clip table students learn from: the subset's training clips, in a development run the teachers' share
    (the hold-out is where students are scored)."""
    splits = layout.splits(subset)
    return splits.teacher_train if DEVELOPMENT else splits.train


def student_inputs(wildcards):
    spec = student_spec(config, wildcards.run, int(wildcards.seed))
    teachers = spec.get("distillation", {}).get("teachers")
    return training_inputs(spec, wildcards.subset, student_clips(wildcards.subset), teachers)


def qat_inputs(wildcards):
    """QAT reads the resolved spec from the float model: the energy analysis is not needed again."""
    inputs = student_inputs(wildcards)
    inputs.pop("energy", None)
    return inputs


def optional_training_flags(wildcards, input):
    names = ("train_clips", "validation_clips", "validation_cache", "impulse_responses", "energy", "teacher_logits")
    return " ".join(flag(name.replace("_", "-"), input.get(name)) for name in names)


# The files of a student run that each report reads, by role.
TABLE_ROLES = {
    "table2": ("eval_float", "eval_int8", "complexity", "quantized"),
    "table3": ("eval_int8", "complexity"),
    "table4": ("eval_float", "history"),
    "table5": ("eval_float", "history"),
}
METRICS_ROLES = ("eval_float", "eval_int8", "complexity", "history")


def run_files(run, seed, subset=SUBSET):
    """Every file of one seed of a student run that reports read, by role."""
    files = layout.student(subset, run, seed)
    return {
        "eval_float": files.evaluation("float"),
        "eval_int8": files.evaluation("int8"),
        "complexity": files.complexity,
        "quantized": files.qat.info,
        "history": files.training.history,
    }


def report_inputs(runs, roles):
    """{label: {seed: {role: path}}} for labelled student runs: what a report command is given."""
    return {
        label: {str(seed): {role: run_files(run, seed)[role] for role in roles} for seed in SEEDS}
        for label, run in runs.items()
    }


def report_section(section):
    """{row label: run} of a report section; a list of runs labels each row by its run."""
    runs = REPORTS[section]
    return dict(runs) if isinstance(runs, dict) else {run: run for run in runs}


def input_paths(inputs):
    return [path for seeds in inputs.values() for files in seeds.values() for path in files.values()]


def test_curves(roles):
    """The roles a report reads, refused where it reads validation curves of a development run (on the hold-out,
    which the report would present as the test split's)."""
    if DEVELOPMENT and "history" in roles:
        raise WorkflowError(
            "validation: holdout: the training curves are on the fusion hold-out, not the test split; this report"
            " reads them (build the development run's development.json, or set validation: test)"
        )
    return roles


def table_inputs(wildcards):
    return input_paths(report_inputs(report_section(wildcards.table), test_curves(TABLE_ROLES[wildcards.table])))


# Each claim of the paper with the per-clip tables and evaluations of its two systems, every seed.
CLAIMS_PLAN = claims_plan(
    REPORTS,
    lambda run, precision: {seed: layout.student(SUBSET, run, seed).clips(precision) for seed in SEEDS},
    lambda run, precision: {seed: layout.student(SUBSET, run, seed).evaluation(precision) for seed in SEEDS},
)


def development_histories():
    """{name: history.csv} of every teacher and of every student run's first seed: what a development run compares."""
    return {
        **{f"teacher {name}": layout.teacher(SUBSET, name).training.history for name in TEACHERS},
        **{f"student {run}": layout.student(SUBSET, run, SEEDS[0]).training.history for run in FLOAT_TRAINED},
    }


def power_comparisons():
    """The paper's float comparisons of two student runs, on a development run's hold-out outcomes (first seed):
    what sizes the default run's test split (report.power) without reading it."""
    comparisons = {}
    for claim in paper_claims(REPORTS):
        a, b = claim["a"], claim["b"]
        if a["run"] != b["run"] and a["precision"] == b["precision"] == "float" and not (a["devices"] or b["devices"]):
            comparisons[claim["claim"]] = {
                side: {str(SEEDS[0]): layout.student(SUBSET, claim[side]["run"], SEEDS[0]).holdout()[1]}
                for side in ("a", "b")
            }
    return comparisons


# The development run's choice of defaults: each candidate setting against the baseline on the hold-out.
DEFAULTS_PLAN = development_plan(
    config, lambda run, precision: layout.student(SUBSET, run, SEEDS[0]).holdout(precision)[1]
)


def labels_only_comparison(wildcards, input):
    """report-development's flags for the teachers' margin over Table IV's student on labels alone, if any."""
    run = REPORTS.get("table4", {}).get("Teacher(w/o)")
    if run is None:
        return ""
    clips = layout.student(SUBSET, run, SEEDS[0]).holdout()[1]
    return f"--ensemble-clips {shlex.quote(input.ensemble)} --labels-only-clips {shlex.quote(clips)} --labels-only-run {run}"


def final_targets():
    if DEVELOPMENT:
        return [layout.DEVELOPMENT, layout.DEVELOPMENT_POWER]
    return [
        layout.DATASET_SUMMARY,
        layout.energy(SUBSET).stats,
        layout.energy(SUBSET).figure,
        layout.ensemble(SUBSET).report,
        *(layout.table(table) for table in ("table2", "table3", "table4", "table5")),
        *(layout.figure(f"fig3_confusion_{name}") for name in REPORTS["fig3"]),
        layout.METRICS,
        layout.table("claims"),
        layout.figure("claims"),
    ]


# DCASE'25 (dcase25.smk)
def device_training_inputs(wildcards):
    """What the general student's QAT reads, with the device's clips to learn from."""
    return qat_inputs(wildcards) | {"train_clips": layout.device_training_clips(wildcards.subset, wildcards.device)}


def device_student_files(wildcards):
    """The files of the device student a job's wildcards name."""
    return layout.device_student(wildcards.subset, wildcards.run, wildcards.seed, wildcards.device, wildcards.schedule)


def device_students_of(wildcards, schedule):
    """The files of every device's student of one schedule, for the run and seed a job's wildcards name."""
    return [layout.device_student(wildcards.subset, wildcards.run, wildcards.seed, device, schedule)
            for device in DCASE25_DEVICES]  # fmt: skip


def dcase25_development_inputs(wildcards):
    """The choice of dcase25.finetune (DCASE25_FINETUNE_PLAN), refused outside a development run."""
    if not DEVELOPMENT:
        raise WorkflowError(
            "dcase25_development chooses dcase25.finetune on the fusion hold-out: run it as a development run,"
            " snakemake dcase25_development --configfile config/development.yaml"
        )
    if not DCASE25_FINETUNE_PLAN["candidates"]:
        raise WorkflowError("dcase25_development: development.dcase25_finetune names no schedule to compare with"
                            " dcase25.finetune")  # fmt: skip
    return [layout.DCASE25_DEVELOPMENT]


def named_flags(name, paths):
    """`--name 'key=path'` for every key of a {general | device: path} mapping."""
    return " ".join(f"--{name} {shlex.quote(f'{key}={path}')}" for key, path in paths.items())
