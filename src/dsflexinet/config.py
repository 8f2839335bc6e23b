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
    try:
        value = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: config file not found") from None
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
        return
    where = _location(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        key = f"{where}.{unknown[0]}" if error.absolute_path else unknown[0]
        raise PipelineError(f"config: unknown key '{key}' (allowed here: {', '.join(allowed)})")
    raise PipelineError(f"config: {where}: {error.message}")
