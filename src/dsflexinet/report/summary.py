"""results/metrics.json and results/plots/: the numbers `dvc metrics diff` and `dvc plots diff` compare."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dsflexinet.atomic import atomic_path, write_json
from dsflexinet.data.tau22 import DEVICES
from dsflexinet.report.tables import SeedFiles, first_seed, read_complexity, read_json, seed_mean


def _rounded(value: float) -> float:
    return round(float(value), 4)


def student_metrics(seeds: SeedFiles) -> dict:
    """Headline numbers of one student run, means over its seeds."""
    complexity = read_complexity(first_seed(seeds))

    def unseen(metrics: dict) -> float:
        return metrics["groups"]["unseen_simulated"]["accuracy"]

    return {
        "accuracy_float": _rounded(seed_mean(seeds, "eval_float", lambda m: m["accuracy"])),
        "accuracy_int8": _rounded(seed_mean(seeds, "eval_int8", lambda m: m["accuracy"])),
        "unseen_accuracy_float": _rounded(seed_mean(seeds, "eval_float", unseen)),
        "unseen_accuracy_int8": _rounded(seed_mean(seeds, "eval_int8", unseen)),
        "params": int(complexity["params"]),
        "macs": int(complexity["macs"]),
        "size_kb_int8": _rounded(complexity["size_kb_int8"]),
    }


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")


def write_plot_data(runs: dict[str, SeedFiles], curves_csv: Path, devices_csv: Path) -> None:
    """Wide tables, one column per student run (means over seeds): validation accuracy per epoch, float
    accuracy per device."""
    curves = []
    for name, seeds in runs.items():
        histories = [pd.read_csv(files["history"], usecols=["epoch", "val_acc"]).set_index("epoch")["val_acc"]
                     for files in seeds.values()]  # fmt: skip
        curves.append((sum(histories) / len(histories)).rename(name))
    _write_csv(pd.concat(curves, axis=1).reset_index(), curves_csv)
    devices = pd.DataFrame({"device": [device.upper() for device in DEVICES]})
    for name, seeds in runs.items():
        per_seed = [read_json(files["eval_float"])["devices"] for files in seeds.values()]
        devices[name] = [
            sum(seed[device]["accuracy"] for seed in per_seed) / len(per_seed) if device in per_seed[0] else None
            for device in DEVICES
        ]
    _write_csv(devices, devices_csv)


def write_metrics(
    runs: dict[str, SeedFiles], fusion_json: Path, energy_json: Path, out: Path, curves_csv: Path, devices_csv: Path
) -> dict:
    fusion = read_json(fusion_json)
    metrics = {
        "students": {name: student_metrics(seeds) for name, seeds in runs.items()},
        "teachers": {name: _rounded(result["accuracy"]) for name, result in fusion["test"].items()},
        "energy_threshold": _rounded(read_json(energy_json)["threshold"]),
    }
    write_json(out, metrics)
    write_plot_data(runs, curves_csv, devices_csv)
    return metrics
