"""results/metrics.json: the headline numbers of a run, the file `dvc metrics diff` compares."""

from __future__ import annotations

from pathlib import Path

from dsflexinet.atomic import write_json
from dsflexinet.report.tables import read_json


def _rounded(value: float) -> float:
    return round(float(value), 4)


def student_metrics(run: Path) -> dict:
    float_eval, int8_eval = read_json(run / "eval_float.json"), read_json(run / "eval_int8.json")
    complexity = read_json(run / "complexity.json")
    return {
        "accuracy_float": _rounded(float_eval["accuracy"]),
        "accuracy_int8": _rounded(int8_eval["accuracy"]),
        "unseen_accuracy_float": _rounded(float_eval["groups"]["unseen_simulated"]["accuracy"]),
        "unseen_accuracy_int8": _rounded(int8_eval["groups"]["unseen_simulated"]["accuracy"]),
        "params": int(complexity["params"]),
        "macs": int(complexity["macs"]),
        "size_kb_int8": _rounded(complexity["size_kb_int8"]),
    }


def write_metrics(runs: dict[str, Path], fusion_json: Path, energy_json: Path, out: Path) -> dict:
    fusion = read_json(fusion_json)
    teachers = {name: _rounded(result["accuracy"]) for name, result in fusion["test"].items()}
    metrics = {
        "students": {name: student_metrics(run) for name, run in runs.items()},
        "teachers": teachers,
        "energy_threshold": _rounded(read_json(energy_json)["threshold"]),
    }
    write_json(out, metrics)
    return metrics
