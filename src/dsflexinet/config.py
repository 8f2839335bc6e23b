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

from dsflexinet.errors import PipelineError


def _read_yaml(path: Path) -> dict:
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
        config = merge(config, _read_yaml(Path(path)))
    validate_config(config, schema)
    return config


def _location(path: Iterable) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


def validate_config(config: dict, schema: str | Path) -> None:
    """Raise a one-line PipelineError for the first problem jsonschema finds, naming the key."""
    validator = jsonschema.Draft202012Validator(_read_yaml(Path(schema)))
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        _check_gpu_request(config)
        return
    where = _location(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        key = f"{where}.{unknown[0]}" if error.absolute_path else unknown[0]
        raise PipelineError(f"config: unknown key '{key}' (allowed here: {', '.join(allowed)})")
    raise PipelineError(f"config: {where}: {error.message}")


def _check_gpu_request(config: dict) -> None:
    """A GPU training job must ask its scheduler for as many GPUs as Lightning will use (no schema can say so)."""
    compute, asked = config["compute"], config["resources"]["train"].get("gpu", 0)
    devices = compute["devices"]
    if compute["accelerator"] == "gpu" and isinstance(devices, int) and devices > asked:
        raise PipelineError(
            f"config: compute.devices is {devices} but resources.train.gpu asks for {asked} GPU(s) per training job;"
            f" set resources.train.gpu to {devices}"
        )


# --- job specs: what one training job needs, resolved from the validated config --------------------------------


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
    return {
        "model": settings["model"],
        "frontend": settings["frontend"],
        "augment": {"time_roll": settings["time_roll"], "freq_mixstyle": settings["freq_mixstyle"],
                    "device_ir": device_ir},
        "schedule": settings["schedule"],
        "seed": seed,
    }  # fmt: skip


def student_settings(config: dict, run: str) -> dict:
    """A student run's settings: the run's keys merged onto `students.defaults`."""
    runs = config["students"]["runs"]
    if run not in runs:
        raise PipelineError(f"unknown student run {run!r}; the config defines {', '.join(runs)}")
    return merge(config["students"]["defaults"], runs[run] or {})


def student_spec(config: dict, run: str) -> dict:
    """The training spec of one student; `distillation` is absent when it learns from labels alone."""
    settings = student_settings(config, run)
    spec = {
        "model": settings["model"],
        "frontend": settings["frontend"],
        "augment": {"time_roll": settings["time_roll"], "freq_mixstyle": settings["freq_mixstyle"],
                    "device_ir": _device_ir(settings["device_ir"])},
        "schedule": settings["schedule"],
        "seed": settings["seed"],
    }  # fmt: skip
    if settings["teachers"] != "none":
        spec["distillation"] = {"teachers": settings["teachers"], **settings["distillation"]}
    return spec


def qat_spec(config: dict, run: str) -> dict:
    """QAT fine-tuning settings of a student run, apart from its training spec: changing them reruns QAT only."""
    return student_settings(config, run)["qat"]
