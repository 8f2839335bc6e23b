"""results/metrics.json and results/plots/: the numbers `dvc metrics diff` and `dvc plots diff` compare."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dsflexinet.atomic import atomic_path, write_json
from dsflexinet.data.tau22 import DEVICES
from dsflexinet.report.tables import read_complexity, read_json


def _rounded(value: float) -> float:
    return round(float(value), 4)


def student_metrics(run: Path) -> dict:
    float_eval, int8_eval = read_json(run / "eval_float.json"), read_json(run / "eval_int8.json")
    complexity = read_complexity(run)
    return {
        "accuracy_float": _rounded(float_eval["accuracy"]),
        "accuracy_int8": _rounded(int8_eval["accuracy"]),
        "unseen_accuracy_float": _rounded(float_eval["groups"]["unseen_simulated"]["accuracy"]),
        "unseen_accuracy_int8": _rounded(int8_eval["groups"]["unseen_simulated"]["accuracy"]),
        "params": int(complexity["params"]),
        "macs": int(complexity["macs"]),
        "size_kb_int8": _rounded(complexity["size_kb_int8"]),
    }


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")


def write_plot_data(runs: dict[str, Path], plots_dir: Path) -> None:
    """Wide tables, one column per student run: validation accuracy per epoch, float accuracy per device."""
    curves = [pd.read_csv(run / "history.csv", usecols=["epoch", "val_acc"]).set_index("epoch")["val_acc"].rename(name)
              for name, run in runs.items()]  # fmt: skip
    _write_csv(pd.concat(curves, axis=1).reset_index(), plots_dir / "val_accuracy.csv")
    devices = pd.DataFrame({"device": [device.upper() for device in DEVICES]})
    for name, run in runs.items():
        per_device = read_json(run / "eval_float.json")["devices"]
        devices[name] = [per_device.get(device, {}).get("accuracy") for device in DEVICES]
    _write_csv(devices, plots_dir / "device_accuracy.csv")


def write_metrics(runs: dict[str, Path], fusion_json: Path, energy_json: Path, out: Path) -> dict:
    fusion = read_json(fusion_json)
    metrics = {
        "students": {name: student_metrics(run) for name, run in runs.items()},
        "teachers": {name: _rounded(result["accuracy"]) for name, result in fusion["test"].items()},
        "energy_threshold": _rounded(read_json(energy_json)["threshold"]),
    }
    write_json(out, metrics)
    write_plot_data(runs, Path(out).parent / "plots")
    return metrics
