"""DCASE 2025 Task 1: device IDs at inference, the device-specific output.csv, and the installable package.

A clip's device ID comes from its evaluation table's `source_label` or `device` column where the table has one,
otherwise from its TAU22 file name (`...-<device>.wav`); a clip with neither is `unknown`. A clip whose device
has no model of its own is classified by the general model: the package's `get_model_for_device` decides, and
this module uses the same function, so the pipeline's output.csv and the package route every clip alike.

The package (`build_package`) is the folder `dcase25_package/` of this directory (the task's API, a complexity
test and an evaluation script; torch, torchaudio, numpy and soundfile only) under the submission's module name,
with the exported int8 models as `models/general.pt` and `models/<device>.pt`, the complexity records of every
model as complexity.json, and a pyproject.toml that installs it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dsflexinet.atomic import write_json
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.dcase25_package import GENERAL, UNKNOWN, device_from_file_name, get_model_for_device
from dsflexinet.evaluate.predict import file_probabilities
from dsflexinet.evaluate.submission import CLIP_TABLES, complexity_row, exported_model_record, write_output_csv
from dsflexinet.modelfile import load_classifier

TEMPLATE = Path(__file__).resolve().parent / "dcase25_package"
TEMPLATE_FILES = ("__init__.py", "test_complexity.py", "evaluate_submission.py")
DEVICE_COLUMNS = ("source_label", "device")  # a TAU22 meta.csv names the device source_label
PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{module}"
version = "1.0.0"
description = "DCASE 2025 Task 1 submission {module}: DS-FlexiNet students per device, int8 TorchScript"
requires-python = ">=3.10"
dependencies = ["torch", "torchaudio", "numpy", "soundfile"]

[tool.setuptools]
packages = ["{module}"]

[tool.setuptools.package-data]
{module} = ["models/*.pt", "complexity.json"]
"""


def clip_devices(root: str | Path, clips: list[tuple[str, Path]]) -> list[str]:
    """The device ID of every clip of `evaluation_clips(root)`, in its order: the table's device column where
    the table that lists the clips has one, otherwise the file name's; `unknown` where neither names one."""
    root = Path(root)
    table = next((root / name for name in CLIP_TABLES if (root / name).is_file()), None)
    if table is not None:
        listed = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
        column = next((name for name in DEVICE_COLUMNS if name in listed.columns), None)
        if column is not None:
            return [device or UNKNOWN for device in listed[column]]
    return [device_from_file_name(path) for _, path in clips]


def device_probabilities(models: Mapping[str, Path], clips: list[tuple[str, Path]], devices: list[str]
                         ) -> list[np.ndarray | None]:  # fmt: skip
    """Class probabilities of every clip by its device's model (`get_model_for_device`): `models` maps device
    IDs and `general` to exported model files."""
    classifiers = {device: load_classifier(path) for device, path in models.items()}
    groups: dict[int, list[int]] = {}
    for index, device in enumerate(devices):
        groups.setdefault(id(get_model_for_device(classifiers, device)), []).append(index)
    by_id = {id(classifier): classifier for classifier in classifiers.values()}
    results: list[np.ndarray | None] = [None] * len(clips)
    for key, rows in groups.items():
        found = file_probabilities(by_id[key], [clips[index][1] for index in rows])
        for index, (_, probabilities) in zip(rows, found, strict=True):
            results[index] = probabilities
    return results


def write_device_output(models: Mapping[str, Path], clips: list[tuple[str, Path]], devices: list[str],
                        out: str | Path) -> int:  # fmt: skip
    """output.csv of the device-specific system; fails naming the first clip it could not classify (nothing is
    left at `out` then: a submission is never silently short)."""
    names, unreadable = write_output_csv(clips, device_probabilities(models, clips, devices), out)
    if unreadable:
        Path(out).unlink(missing_ok=True)
        raise PipelineError(f"{out}: not written, {len(unreadable)} of {len(clips)} clips could not be classified "
                            f"(first: {unreadable[0]})")  # fmt: skip
    return len(names)


def package_complexity(complexity: Mapping[str, Path], models: Mapping[str, Path], quantized: Mapping[str, Path]
                       ) -> dict:  # fmt: skip
    """complexity.json of the package: the limits and, per model (general and each device), the parameters, MACs
    and file size its complexity job and QAT recorded; a model not recorded within the limits, or whose file is
    not the one QAT exported, is refused."""
    rows = {device: complexity_row(path) for device, path in complexity.items()}
    limits = {row["limits"]["precision"]: row["limits"] for row in rows.values()}
    if len(limits) != 1:
        raise PipelineError(f"{', '.join(map(str, complexity.values()))}: the models were checked at different "
                            "precisions")  # fmt: skip
    (checked,) = limits.values()
    return {
        "limits": {key: checked[key] for key in ("precision", "max_macs", "max_param_bytes")},
        "models": {
            device: {"params": row["params"], "macs": row["macs"], "param_bytes": row["limits"]["param_bytes"],
                     "file_bytes": exported_model_record(models[device], quantized[device])["file_bytes"],
                     "within": True}
            for device, row in rows.items()
        },
    }  # fmt: skip


def build_package(out: str | Path, module: str, models: Mapping[str, Path], complexity: dict) -> Path:
    """The installable package folder `out` (written beside it, then moved into place): pyproject.toml and
    `module/` with the API, the models, complexity.json, the complexity test and the evaluation script."""
    out = Path(out)
    if GENERAL not in models:
        raise PipelineError(f"{out}: no general model (it classifies every device without one of its own)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        package = staging / module
        (package / "models").mkdir(parents=True)
        for name in TEMPLATE_FILES:
            shutil.copyfile(TEMPLATE / name, package / name)
        for device, path in models.items():
            shutil.copyfile(path, package / "models" / f"{device}.pt")
        write_json(package / "complexity.json", complexity)
        (staging / "pyproject.toml").write_text(PYPROJECT.format(module=module))
        staging.chmod(0o755)
        shutil.rmtree(out, ignore_errors=True)
        staging.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
