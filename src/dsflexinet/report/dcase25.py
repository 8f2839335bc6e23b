"""DCASE 2025 Task 1 results on the test split: the device-specific system against the general one.

The device-specific system classifies each test clip with its device's fine-tuned model and every other clip
(the unseen S4-S6) with the general model, so on those clips it *is* the general model: `device_specific_outcomes`
composes its per-clip table from the models' evaluations and asserts that. Reported: accuracy overall, per
device and per class of both systems (test_accuracy.json, the metadata YAML), and the claim "device-specific >
general" on the devices with a model of their own, with the paired location-bootstrap interval and verdict rules
of claims.md (`report.claims`). A development run chooses the fine-tuning schedule the same way on the fusion
hold-out instead of the test split (`write_finetune_choice`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import yaml

from dsflexinet.atomic import atomic_path, read_json, write_json, write_text
from dsflexinet.data.tau22 import SCENES
from dsflexinet.errors import PipelineError
from dsflexinet.report.claims import write_claims
from dsflexinet.report.stats import read_clips

SYSTEMS = ("general", "device_specific")


def device_specific_outcomes(general: str | Path, devices: Mapping[str, str | Path], out: str | Path) -> pd.DataFrame:
    """The device-specific system's per-clip outcomes: each device's rows from its own model's evaluation (of
    the same test clips), every other row from the general model's; written atomically."""
    system = read_clips(general)
    for device, path in devices.items():
        own = read_clips(path)
        if not own["filename"].equals(system["filename"]):
            raise PipelineError(f"{path}: not an evaluation of the same test clips as {general}")
        rows = (system["device"] == device).to_numpy()
        system.loc[rows] = own.loc[rows].to_numpy()
    general_clips = read_clips(general)
    others = ~system["device"].isin(list(devices)).to_numpy()
    if not system.loc[others].equals(general_clips.loc[others]):
        raise PipelineError(f"{out}: the clips of devices without a model differ from the general model's")
    with atomic_path(out) as tmp:
        system.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return system


def accuracy_breakdown(clips: pd.DataFrame) -> dict:
    """Accuracy overall, per device and per class (scene names), in the clips' own order of devices."""
    correct = clips["label"] == clips["prediction"]
    return {
        "clips": len(clips),
        "accuracy": float(correct.mean()),
        "devices": {device: float(value) for device, value in correct.groupby(clips["device"], sort=False).mean()
                    .items()},
        "classes": {SCENES[label]: float(value) for label, value in correct.groupby(clips["label"]).mean().items()},
    }  # fmt: skip


def accuracy_summary(general: str | Path, device_specific: str | Path, devices: list[str], run: str, seed: int) -> dict:
    """test_accuracy.json's content: both systems' breakdowns, and their accuracy on the devices with a model of
    their own and on all others (where the two must be equal: checked)."""
    systems = {"general": read_clips(general), "device_specific": read_clips(device_specific)}
    result = {"run": run, "seed": seed, "devices_with_own_model": devices,
              **{name: accuracy_breakdown(clips) for name, clips in systems.items()}}  # fmt: skip
    for group, inside in (("seen_devices", True), ("unknown_devices", False)):
        chosen = {name: clips[clips["device"].isin(devices) == inside] for name, clips in systems.items()}
        result[group] = {"devices": sorted(set(chosen["general"]["device"])), "clips": len(chosen["general"]),
                         **{name: accuracy_breakdown(clips)["accuracy"] if len(clips) else None
                            for name, clips in chosen.items()}}  # fmt: skip
    unknown = result["unknown_devices"]
    if unknown["general"] != unknown["device_specific"]:
        raise PipelineError(f"{device_specific}: on devices without a model of their own the device-specific system "
                            f"scores {unknown['device_specific']}, the general model {unknown['general']}")  # fmt: skip
    return result


def claims_plan(run: str, devices: list[str], clips: Mapping[str, Mapping[str, str]],
                evaluations: Mapping[str, str]) -> dict:  # fmt: skip
    """The one claim, device-specific > general on `devices`, in report.claims' plan format: `clips[system]`
    maps seeds to per-clip tables, `evaluations` seeds to the general model's eval_int8.json."""

    def system(name: str, label: str) -> dict:
        return {"run": label, "precision": "int8", "devices": devices, "clips": dict(clips[name]),
                "evaluations": dict(evaluations)}  # fmt: skip

    claim = {"claim": "device-specific > general on the devices with their own model", "source": "DCASE 2025 Task 1",
             "a": system("device_specific", f"{run} device-specific"), "b": system("general", f"{run} general"),
             "paper_difference": None, "direction": 1, "threshold": 0.0}  # fmt: skip
    return {"claims": [claim]}


def write_evaluation(plan: Mapping, submitted_seed: str, run: str, devices: list[str], out_accuracy: str | Path,
                     out_claims_csv: str | Path, out_claims_md: str | Path) -> dict:  # fmt: skip
    """test_accuracy.json of the submitted seed and the claim over every seed (claims.csv, claims.md)."""
    (claim,) = plan["claims"]
    accuracy = accuracy_summary(claim["b"]["clips"][submitted_seed], claim["a"]["clips"][submitted_seed], devices, run,
                             int(submitted_seed))  # fmt: skip
    write_json(out_accuracy, accuracy)
    frame = write_claims(plan, out_claims_csv, out_claims_md)
    return accuracy | {"verdict": frame["verdict"].iloc[0], "difference_pp": float(frame["difference_pp"].iloc[0])}


def write_finetune_choice(plan: Mapping, out: str | Path) -> dict:
    """dcase25_finetune.json of a development run: the device-specific system of each fine-tuning schedule on
    the hold-out against the default schedule's, the choice by the development run's rule (report.summary
    CHOICE_RULE: the default stays unless a candidate's paired interval over it lies above 0), and each schedule
    against the general student it was fine-tuned from, overall and per device."""
    from dsflexinet.report.summary import default_choices, holdout_difference

    choice = default_choices({"dcase25.finetune": plan})["dcase25.finetune"]
    schedules = {plan["baseline"]["run"]: plan["baseline"]} | dict(plan["candidates"])
    general = plan["general"]
    systems = {"general": general["clips"]} | {name: schedule["clips"] for name, schedule in schedules.items()}
    outcomes = {name: read_clips(path) for name, path in systems.items()}
    result = choice | {
        "chosen_values": schedules[choice["chosen"]]["values"],
        "over_general": {name: holdout_difference(name, Path(schedule["clips"]), "general", Path(general["clips"]))
                         for name, schedule in schedules.items()},
        "device_wise": {name: accuracy_breakdown(clips)["devices"] for name, clips in outcomes.items()},
        "device_clips": outcomes["general"]["device"].value_counts(sort=False).to_dict(),
    }  # fmt: skip
    write_json(out, result)
    return result


def _percent(breakdown: Mapping) -> dict:
    return {"overall_accuracy": round(100 * breakdown["accuracy"], 2),
            "class_wise": {name: round(100 * value, 2) for name, value in breakdown["classes"].items()},
            "device_wise": {name: round(100 * value, 2) for name, value in breakdown["devices"].items()}}  # fmt: skip


def write_metadata(out: str | Path, module: str, run: str, accuracy: str | Path, complexity: Mapping) -> dict:
    """The submission's metadata YAML, filled from the run: the system, each model's complexity and the
    development results (test split) of the general and the device-specific system, class- and device-wise.
    Authors and affiliations are not the run's to know: add them before submitting."""
    results = read_json(accuracy)
    metadata = {
        "submission": {"label": module, "name": f"DS-FlexiNet {run}, device-specific", "abbreviation": "DSFlexiNet"},
        "system": {
            "description": {
                "input_sampling_rate": "32kHz", "acoustic_features": "log-mel energies (inside each model file)",
                "machine_learning_method": "DS-FlexiNet CNN, knowledge distillation from a fused teacher ensemble",
                "external_data_usage": "the teachers' pretrained checkpoints (config weights)",
                "model_compression": "int8 quantization (QAT)", "training_subset": "split25 (25 %)",
                "device_specific_models": {"devices": results["devices_with_own_model"], "fallback": "general"},
            },
            "complexity": {"limits": complexity["limits"], "models": complexity["models"]},
        },
        "results": {"development_dataset": {name: _percent(results[name]) for name in SYSTEMS}},
    }  # fmt: skip
    write_text(out, yaml.safe_dump(metadata, sort_keys=False))
    return metadata
