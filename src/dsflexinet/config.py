"""Configuration: YAML files merged in order and validated against the workflow's JSON schema.

The Snakefile validates the config Snakemake assembled (config.yaml, any --configfile, any --config) with
`validate_config`; a typo in a key fails with one line naming the key and what is allowed there.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import jsonschema
import yaml

from dsflexinet import layout
from dsflexinet.errors import PipelineError


def read_config_file(path: Path) -> dict:
    """A YAML mapping; a syntax error is reported as `<file>:<line>:<column>: ...`, as editors jump to it."""
    try:
        value = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: config file not found") from None
    except yaml.MarkedYAMLError as error:
        mark, started = error.problem_mark or error.context_mark, error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        context = ""
        if error.problem and error.context and started:
            context = f" ({error.context} started at line {started.line + 1}, column {started.column + 1})"
        raise PipelineError(f"{where}: not valid YAML: {error.problem or error.context}{context}") from None
    except yaml.YAMLError as error:
        raise PipelineError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(value, dict):
        raise PipelineError(f"{path}: a config file must hold a mapping at the top level")
    return value


def merge(base: dict, override: dict) -> dict:
    """Recursive dictionary update, as Snakemake applies --configfile on top of the Snakefile's configfile."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(paths: Iterable[str | Path], schema: str | Path) -> dict:
    """Merge YAML files in order and validate the result."""
    config: dict = {}
    for path in paths:
        config = merge(config, read_config_file(Path(path)))
    validate_config(config, schema)
    return config


def _location(path: Iterable) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


def validate_config(config: dict, schema: str | Path) -> None:
    """Raise a one-line PipelineError for the first problem jsonschema finds, naming the key; then check what no
    schema can say (GPU requests, every job spec against the model registry, report names), so that a wrong
    setting stops the workflow before any job runs rather than after Snakemake has removed the old outputs."""
    schema = read_config_file(Path(schema))
    _raise_first(jsonschema.Draft202012Validator(schema), config)
    # What a run's keys merged onto students.defaults give must be a complete student, as the defaults are.
    _check_development(config)
    complete = jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/complete_student"})
    for run in student_runs(config):
        where = f"students.runs.{run}" if run in config["students"]["runs"] else f"development candidate {run}"
        _raise_first(complete, student_settings(config, run), f"{where} (merged onto the defaults)")
    _check_gpu_request(config)
    _check_job_specs(config)
    _check_fusion(config)
    _check_reports(config)


def _raise_first(validator: jsonschema.protocols.Validator, instance: dict, prefix: str = "") -> None:
    """The first problem jsonschema finds as one line naming its key (below `prefix`)."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return
    keys = [prefix, *map(str, error.absolute_path)] if prefix else list(map(str, error.absolute_path))
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        key = _location([*keys, unknown[0]])
        raise PipelineError(f"config: unknown key '{key}' (allowed here: {', '.join(allowed)})")
    raise PipelineError(f"config: {_location(keys)}: {error.message}")


def _check_gpu_request(config: dict) -> None:
    """A GPU training job must ask its scheduler for as many GPUs as Lightning will use (no schema can say so)."""
    compute, asked = config["compute"], config["resources"]["train"].get("gpu", 0)
    devices = compute["devices"]
    if compute["accelerator"] == "gpu" and isinstance(devices, int) and devices > asked:
        raise PipelineError(
            f"config: compute.devices is {devices} but resources.train.gpu asks for {asked} GPU(s) per training job;"
            f" set resources.train.gpu to {devices}"
        )


def _check_model(where: str, model: dict, frontend: dict) -> None:
    from dsflexinet.models.registry import model_spec

    try:
        spec = model_spec(model["name"])
    except PipelineError as error:
        raise PipelineError(f"config: {where}.model.name: {error}") from None
    unknown = sorted(set(model.get("options", {})) - set(spec.options))
    if unknown:
        raise PipelineError(
            f"config: {where}.model.options: {model['name']} takes no option {', '.join(map(repr, unknown))}"
            f" (it takes {', '.join(spec.options)})"
        )
    if frontend["preset"] != spec.frontend:
        raise PipelineError(
            f"config: {where}.frontend.preset is {frontend['preset']!r} but {model['name']} is fed by the"
            f" {spec.frontend!r} frontend"
        )


def _check_pretrained(where: str, architecture: dict, config: dict) -> None:
    from dsflexinet.models.registry import model_spec

    weights = config.get("weights", {})
    model, pretrained = architecture["model"], architecture.get("pretrained")
    if pretrained not in (None, NO_WEIGHTS) and pretrained not in weights:
        known = ", ".join(weights) or "none are configured"
        raise PipelineError(f"config: {where}.pretrained: {pretrained!r} is not a key of weights ({known})")
    if pretrained in weights and "pretrain" in weights[pretrained]:
        source = pretraining_architecture(config, pretrained)["model"]["name"]
        if source != model["name"]:
            raise PipelineError(f"config: {where}.pretrained: weights.{pretrained} pretrains a {source}, not this"
                                f" {model['name']}")  # fmt: skip
    from_path = "pretrained_path" in model.get("options", {})
    if model_spec(model["name"]).paper_pretrained and pretrained is None and not from_path:
        raise PipelineError(
            f"config: {where}: {model['name']} starts from pretrained weights in the paper; set pretrained to a key"
            f" of weights (fetched and verified), or pretrained: {NO_WEIGHTS} to train it from scratch"
        )


def _check_job_specs(config: dict) -> None:
    for name in config["teachers"]["architectures"]:
        architecture = config["teachers"]["architectures"][name]
        _check_model(f"teachers.architectures.{name}", architecture["model"], architecture["frontend"])
        _check_pretrained(f"teachers.architectures.{name}", architecture, config)
    for run in student_runs(config):
        settings = student_settings(config, run)
        _check_model(f"students.runs.{run}", settings["model"], settings["frontend"])
        qat = settings["qat"]
        if qat["freeze_last_epochs"] >= qat["epochs"]:
            raise PipelineError(
                f"config: students.runs.{run}.qat: freeze_last_epochs ({qat['freeze_last_epochs']}) must be smaller"
                f" than epochs ({qat['epochs']}): the observers need at least one epoch to calibrate"
            )


def _check_fusion(config: dict) -> None:
    fusion = config["teachers"]["fusion"]
    if fusion["fit"] == "holdout" and fusion["holdout_fraction"] == 0:
        raise PipelineError("config: teachers.fusion: fit 'holdout' needs a holdout_fraction above 0")
    if config["validation"] == "holdout" and fusion["holdout_fraction"] == 0:
        raise PipelineError("config: validation 'holdout' needs teachers.fusion.holdout_fraction above 0")


def _check_reports(config: dict) -> None:
    """Every run a report, the submission or the data-efficiency curve names is a student run, and the submitted
    seed one it is trained with."""
    named = []
    for section, entries in config["reports"].items():
        for label, run in (entries.items() if isinstance(entries, dict) else zip(entries, entries, strict=True)):
            named.append((f"reports.{section}" + (f".{label}" if isinstance(entries, dict) else ""), run))
    named.append(("submission.run", config["submission"]["run"]))
    named += [("data_efficiency.runs", run) for run in config["data_efficiency"]["runs"]]
    for key, run in named:
        if run not in config["students"]["runs"]:
            raise PipelineError(f"config: {key} names student run {run!r}, which students.runs does not define")
    seed = config["submission"]["seed"]
    if seed is not None and seed not in student_seeds(config):
        raise PipelineError(f"config: submission.seed {seed} is not one of students.seeds {student_seeds(config)}: "
                            "the submission sends a student the run trains")  # fmt: skip


def _check_development(config: dict) -> None:
    """Candidates are runs of a development run, named apart from `students.runs` and compared with one of them."""
    development = config.get("development")
    if not development:
        return
    if config["validation"] != "holdout":
        raise PipelineError("config: development: candidates are compared on the fusion hold-out; they need"
                            " validation: holdout (config/development.yaml)")  # fmt: skip
    runs = config["students"]["runs"]
    if development["baseline"] not in runs:
        raise PipelineError(f"config: development.baseline names student run {development['baseline']!r}, which"
                            " students.runs does not define")  # fmt: skip
    seen: set[str] = set()
    for setting, candidates in development["candidates"].items():
        for name in candidates:
            if name in runs or name in seen:
                raise PipelineError(f"config: development.candidates.{setting}.{name}: the name of a candidate must"
                                    " differ from every student run and other candidate")  # fmt: skip
            seen.add(name)
    names = [finetune_schedule_name(config["dcase25"]["finetune"])]
    for index, schedule in enumerate(development.get("dcase25_finetune", [])):
        name = finetune_schedule_name(schedule)
        if name in names:
            raise PipelineError(f"config: development.dcase25_finetune.{index}: {name} is dcase25.finetune or an"
                                " earlier candidate; each candidate schedule must differ from both")  # fmt: skip
        names.append(name)


# --- job specs: what one training job needs, resolved from the validated config --------------------------------

# A student's ADIR threshold `energy_analysis`: the threshold the energy analysis of its training set reports.
ENERGY_ANALYSIS = "energy_analysis"
NO_WEIGHTS = "none"  # a teacher's `pretrained`: train from scratch


def teacher_weights(config: dict, architecture: str) -> str | None:
    """The checkpoint file a teacher architecture starts from (layout.weights), None from scratch."""
    pretrained = config["teachers"]["architectures"][architecture].get("pretrained")
    return None if pretrained in (None, NO_WEIGHTS) else layout.weights(config["data"]["root"], pretrained)


def pretraining_architecture(config: dict, weights: str) -> dict:
    """What a `pretrain` entry of `weights` trains on the corpus: its teacher architecture's model (without a
    checkpoint to start from), frontend and time roll."""
    name = config["weights"][weights]["pretrain"]
    architectures = config["teachers"]["architectures"]
    if name not in architectures:
        raise PipelineError(f"config: weights.{weights}.pretrain: {name!r} is not a teacher architecture"
                            f" ({', '.join(architectures)})")  # fmt: skip
    architecture = architectures[name]
    options = {key: value for key, value in architecture["model"].get("options", {}).items()
               if key != "pretrained_path"}  # fmt: skip
    return {"model": {"name": architecture["model"]["name"], "options": options},
            "frontend": architecture["frontend"], "time_roll": architecture["time_roll"]}  # fmt: skip


def teacher_names(config: dict) -> list[str]:
    """`<architecture>-<recipe>-s<seed>`: 2 architectures x 2 recipes x 3 seeds = the paper's 12 teachers."""
    teachers = config["teachers"]
    return [
        f"{architecture}-{recipe}-s{seed}"
        for architecture in teachers["architectures"]
        for recipe in teachers["recipes"]
        for seed in teachers["seeds"]
    ]


def parse_teacher_name(config: dict, name: str) -> tuple[str, str, int]:
    if name not in teacher_names(config):
        raise PipelineError(f"unknown teacher {name!r}; the config defines {', '.join(teacher_names(config))}")
    architecture, recipe, seed = name.rsplit("-", 2)
    return architecture, recipe, int(seed[1:])


def _device_ir(setting: dict) -> dict | None:
    """None when off; the energy threshold only where ADIR uses it (so DIR runs ignore threshold changes)."""
    if setting["mode"] == "none":
        return None
    if setting["mode"] == "dir":
        return {key: value for key, value in setting.items() if key != "energy_threshold"}
    return setting


def teacher_spec(config: dict, name: str) -> dict:
    """The training spec of one teacher: its architecture's settings, DIR only in the `dir_fms` recipe. A copy:
    changing the spec leaves the config as it was."""
    architecture, recipe, seed = parse_teacher_name(config, name)
    settings = copy.deepcopy(config["teachers"]["architectures"][architecture])
    device_ir = {"mode": "dir", **settings["dir"]} if recipe == "dir_fms" else None
    weights = teacher_weights(config, architecture)
    if weights is not None:
        settings["model"].setdefault("options", {})["pretrained_path"] = weights
    return {
        "model": settings["model"],
        "frontend": settings["frontend"],
        "augment": {"time_roll": settings["time_roll"], "freq_mixstyle": settings["freq_mixstyle"],
                    "device_ir": device_ir},
        "schedule": settings["schedule"],
        "seed": seed,
    }  # fmt: skip


def merge_run_settings(base: dict, changes: dict | None) -> dict:
    """A run's keys merged onto settings; a label weight that names its kind of schedule is a whole schedule, not
    values for the base's kind."""
    settings = merge(base, changes or {})
    label_weight = ((changes or {}).get("distillation") or {}).get("label_weight") or {}
    if "schedule" in label_weight:
        settings["distillation"]["label_weight"] = copy.deepcopy(label_weight)
    return settings


def development_candidates(config: dict) -> dict[str, dict[str, dict]]:
    """{setting: {candidate run: what it changes from the baseline run}}: the defaults a development run chooses
    between on the hold-out. Empty in any other run."""
    if config["validation"] != "holdout":
        return {}
    return (config.get("development") or {}).get("candidates", {})


def student_runs(config: dict) -> dict[str, dict | None]:
    """Every student run: `students.runs` and, in a development run, each candidate setting as a run of its own
    (the baseline run's keys with the candidate's merged on)."""
    runs = dict(config["students"]["runs"])
    for candidates in development_candidates(config).values():
        baseline = runs[config["development"]["baseline"]] or {}
        runs.update({name: merge_run_settings(baseline, changes) for name, changes in candidates.items()})
    return runs


def qat_only_candidate(config: dict, run: str) -> bool:
    """Whether a run is a development candidate that changes QAT settings alone: it shares its baseline's float
    training, so the comparison isolates the QAT setting (and the float model is trained once)."""
    return any(run in candidates and set(candidates[run]) == {"qat"}
               for candidates in development_candidates(config).values())  # fmt: skip


def float_run(config: dict, run: str) -> str:
    """The run whose float model a run's QAT starts from: its own, or a QAT-only candidate's baseline's."""
    return config["development"]["baseline"] if qat_only_candidate(config, run) else run


def student_settings(config: dict, run: str) -> dict:
    """A student run's settings: the run's keys merged onto `students.defaults`."""
    runs = student_runs(config)
    if run not in runs:
        raise PipelineError(f"unknown student run {run!r}; the config defines {', '.join(runs)}")
    return merge_run_settings(config["students"]["defaults"], runs[run])


def _values_at(settings: dict, changes: dict) -> dict:
    """The values `settings` holds at the keys `changes` names (a whole label-weight schedule where it names
    one)."""
    values = {}
    for key, change in changes.items():
        whole = key == "label_weight" and "schedule" in change
        values[key] = _values_at(settings[key], change) if isinstance(change, dict) and not whole else settings[key]
    return values


def development_plan(config: dict, holdout_clips) -> dict:
    """What a development run's choice of defaults compares: per setting, the baseline run's and each candidate's
    hold-out outcomes (`holdout_clips(run, precision)`), in float or, for QAT settings, in int8, and the values
    each holds at the keys the setting changes."""
    baseline = config["development"]["baseline"] if development_candidates(config) else None
    plan = {}
    for setting, candidates in development_candidates(config).items():
        precision = "int8" if all(qat_only_candidate(config, run) for run in candidates) else "float"
        changed: dict = {}
        for changes in candidates.values():
            changed = merge(changed, changes)
        plan[setting] = {
            "precision": precision,
            "baseline": {"run": baseline, "clips": holdout_clips(baseline, precision),
                         "values": _values_at(student_settings(config, baseline), changed)},
            "candidates": {run: {"clips": holdout_clips(run, precision),
                                 "values": _values_at(student_settings(config, run), changed)}
                           for run in candidates},
        }  # fmt: skip
    return plan


def student_seeds(config: dict) -> list[int]:
    """The seeds every student run is trained with (each seed: its own training, QAT and evaluation)."""
    return list(config["students"]["seeds"])


def submission_seed(config: dict) -> int:
    """The seed of the submitted student: `submission.seed`, or the first of `students.seeds`."""
    seed = config["submission"]["seed"]
    return student_seeds(config)[0] if seed is None else seed


def student_spec(config: dict, run: str, seed: int) -> dict:
    """The training spec of one seed of a student run; `distillation` is absent when it learns from labels
    alone."""
    settings = student_settings(config, run)
    spec = {
        "model": settings["model"],
        "frontend": settings["frontend"],
        "augment": {"time_roll": settings["time_roll"], "freq_mixstyle": settings["freq_mixstyle"],
                    "device_ir": _device_ir(settings["device_ir"])},
        "schedule": settings["schedule"],
        "seed": seed,
    }  # fmt: skip
    if settings["teachers"] != "none":
        spec["distillation"] = {"teachers": settings["teachers"], **settings["distillation"]}
    return spec


def fixed_energy_threshold(config: dict) -> float | None:
    """`energy.threshold` as a number, None for `auto` (the mean energy of the training clips, as the paper)."""
    threshold = config["energy"]["threshold"]
    return None if threshold == "auto" else float(threshold)


def needs_energy_analysis(spec: dict) -> bool:
    """Whether a job's ADIR threshold comes from the energy analysis (so the job reads energy.json)."""
    device_ir = spec["augment"]["device_ir"]
    return bool(device_ir) and device_ir["mode"] == "adir" and device_ir["energy_threshold"] == ENERGY_ANALYSIS


def resolve_job_spec(spec: dict, energy_threshold: float | None) -> dict:
    """The spec as the job runs it: derived settings replaced by their values. The training job calls this once
    and records the result in model.pt; everything after reads the number from there."""
    if not needs_energy_analysis(spec):
        return spec
    if energy_threshold is None:
        raise PipelineError(f"the ADIR threshold is {ENERGY_ANALYSIS!r} but the job was given no energy analysis")
    resolved = copy.deepcopy(spec)
    resolved["augment"]["device_ir"]["energy_threshold"] = energy_threshold
    return resolved


def qat_spec(config: dict, run: str) -> dict:
    """QAT fine-tuning settings of a student run, apart from its training spec: changing them reruns QAT only."""
    return student_settings(config, run)["qat"]


# --- DCASE 2025 Task 1 ------------------------------------------------------------------------------------------

DCASE25_TRAIN_PERCENT = 25  # DCASE'25 allows the 25 % subset only: the package is built from split25 in any run


def dcase25_module(config: dict) -> str:
    """The package's module name, `<label>_task1_<index>`, as the task names submissions."""
    return f"{config['dcase25']['label']}_task1_{config['dcase25']['index']}"


def finetune_schedule_name(schedule: dict) -> str:
    """A fine-tuning schedule's name in the run layout, from its values (`e2_lr0.0001`): the same schedule is the
    same directory whether it is the default or a development candidate, and changing the default trains anew."""
    return f"e{schedule['epochs']}_lr{schedule['lr']:g}"


def finetune_schedules(config: dict) -> dict[str, dict]:
    """{name: schedule} of every fine-tuning schedule a run trains: `dcase25.finetune` first, then in a development
    run the candidates of `development.dcase25_finetune`."""
    schedules = [config["dcase25"]["finetune"]]
    if config["validation"] == "holdout":
        schedules += (config.get("development") or {}).get("dcase25_finetune", [])
    return {finetune_schedule_name(schedule): schedule for schedule in schedules}


def device_finetune_spec(config: dict, schedule: str, device: str) -> dict:
    """What one device's fine-tuning job runs: the named schedule (`finetune_schedules`) on `device`'s clips."""
    return {**finetune_schedules(config)[schedule], "device": device}


def finetune_development_plan(config: dict, general_clips: str, system_clips) -> dict:
    """What a development run's choice of `dcase25.finetune` compares on the hold-out, in float: the device-specific
    system of each schedule (`system_clips(name)`) against the default's (the baseline, as development_plan's)
    and against the general student it starts from (`general_clips`)."""
    (baseline, *candidates) = finetune_schedules(config).items()
    return {
        "precision": "float",
        "general": {"run": "general", "clips": general_clips},
        "baseline": {"run": baseline[0], "clips": system_clips(baseline[0]), "values": baseline[1]},
        "candidates": {name: {"clips": system_clips(name), "values": values} for name, values in candidates},
    }
