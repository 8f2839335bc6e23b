"""results/metrics.json and results/plots/: the numbers `dvc metrics diff` and `dvc plots diff` compare.

Every headline number of a student run is given as `{mean, std, n}` over its seeds (std null for one seed), so
a diff between two commits shows whether a change is larger than the spread.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from dsflexinet.atomic import atomic_path, read_json, write_json
from dsflexinet.data.tau22 import DEVICES
from dsflexinet.errors import PipelineError
from dsflexinet.report.stats import mean_std
from dsflexinet.report.tables import SeedFiles, first_seed, last_epochs_accuracy, read_complexity


def _rounded(value: float) -> float:
    return round(float(value), 4)


def _summary(values: list[float]) -> dict:
    mean, std, n = mean_std(values)
    return {"mean": _rounded(mean), "std": None if math.isnan(std) else _rounded(std), "n": n}


def student_metrics(seeds: SeedFiles) -> dict:
    """Headline numbers of one student run: mean, std and n over its seeds of every score; its size."""
    evaluations = {precision: [read_json(files[f"eval_{precision}"]) for files in seeds.values()]
                   for precision in ("float", "int8")}  # fmt: skip
    metrics = {}
    for precision, runs in evaluations.items():
        metrics[f"accuracy_{precision}"] = _summary([run["accuracy"] for run in runs])
        metrics[f"macro_accuracy_{precision}"] = _summary([run["class_averaged_accuracy"] for run in runs])
        metrics[f"log_loss_{precision}"] = _summary([run["log_loss"] for run in runs])
        metrics[f"unseen_accuracy_{precision}"] = _summary(
            [run["groups"]["unseen_simulated"]["accuracy"] for run in runs]
        )
    last_epochs = [last_epochs_accuracy(files["history"]) for files in seeds.values()]
    metrics["last10_val_accuracy_float"] = _summary(last_epochs)
    complexity = read_complexity(first_seed(seeds))
    return metrics | {
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


def ensemble_metrics(fusion: dict) -> dict:
    """The teachers' side: every teacher's and ensemble's test accuracy, their accuracy on the fusion hold-out
    (the development score teacher settings are compared on), and what the fusion fit did."""
    return {
        "test_accuracy": {name: _rounded(result["accuracy"]) for name, result in fusion["test"].items()},
        "holdout_accuracy": {name: _rounded(result["accuracy"]) for name, result in fusion["holdout"].items()},
        "fusion_fit": fusion["fit"]["on"],
        "alpha_sum": _rounded(fusion["alpha_sum"]),
        "holdout_cross_entropy": {name: None if value is None else _rounded(value)
                                  for name, value in fusion["holdout_cross_entropy"].items()},  # fmt: skip
        "student_train_top_probability": {name: _rounded(result["mean_top_probability"])
                                          for name, result in fusion["student_train"].items()},  # fmt: skip
        # The same apart: on the students' clips the teachers trained on, and on the hold-out clips they did not.
        "student_train_top_probability_split": {
            name: {part: _rounded(result[part]["mean_top_probability"]) if result[part]["clips"] else None
                   for part in ("teachers_saw", "teachers_did_not_see")}
            for name, result in fusion["student_train"].items()
        },  # fmt: skip
    }


def training_curve_summary(history: Path) -> dict:
    """The end of one training curve: the last epoch's validation and training scores, and the mean validation
    accuracy of the last validated epochs (up to ten, as the tables average)."""
    frame = pd.read_csv(history)
    validated = frame.dropna(subset=["val_acc"])
    if validated.empty:
        raise PipelineError(f"{history}: no validation accuracy per epoch")
    last, trained = validated.iloc[-1], frame.dropna(subset=["train_acc"]).iloc[-1]
    return {
        "epochs": int(frame["epoch"].max()),
        "validated_epochs": len(validated),
        "val_accuracy_last": _rounded(last["val_acc"]),
        "val_accuracy_last10": _rounded(last_epochs_accuracy(history)),
        "val_log_loss_last": _rounded(last["val_loss"]),
        "train_accuracy_last": _rounded(trained["train_acc"]),
        "train_loss_last": _rounded(trained["train_loss"]),
    }


# The teachers are to the student what the paper's are when their fused ensemble beats the student trained on
# labels alone by this much on the hold-out (the paper: fused ensemble teachers far above every student).
TEACHER_MARGIN_PP = 5.0


def write_development_metrics(
    histories: dict[str, Path], fusion_json: Path, holdout_clips: Path, out: Path,
    comparison: dict[str, Path] | None = None, defaults: dict | None = None,
) -> dict:  # fmt: skip
    """development.json of a development run (`validation: holdout`): every training curve's end on the fusion
    hold-out, which no model of the run trained on, and the ensembles' scores there; the hold-out's size, the n
    behind each accuracy. With `comparison` ({fused ensemble: its hold-out outcomes, labels-only student: its
    outcomes}), also the teachers' margin over that student, paired over the hold-out's locations, against
    TEACHER_MARGIN_PP. With `defaults` (config.development_plan), the choice of each default setting
    (`default_choices`). `dvc metrics diff` between two development runs compares settings without the test
    split."""
    from dsflexinet.data.splits import read_clip_table

    held = read_clip_table(holdout_clips)
    fusion = read_json(fusion_json)
    metrics = {
        "holdout": {"clips": len(held), "locations": int(held["identifier"].nunique())},
        "curves": {name: training_curve_summary(Path(path)) for name, path in histories.items()},
        "ensemble_holdout_accuracy": {name: _rounded(result["accuracy"])
                                      for name, result in fusion["holdout"].items() if name not in fusion["teachers"]},
    }  # fmt: skip
    if comparison:
        metrics["teachers_over_labels_only"] = teacher_margin(comparison)
    if defaults:
        metrics["defaults"] = default_choices(defaults)
    write_json(out, metrics)
    return metrics


def holdout_difference(name_a: str, clips_a: Path, name_b: str, clips_b: Path) -> dict:
    """Accuracy points of system A over system B on the same hold-out clips (one seed each), with the paired
    location bootstrap's 95 % interval (report.stats)."""
    from dsflexinet.report.stats import System, paired_difference

    difference = paired_difference(System.read(name_a, {0: clips_a}), System.read(name_b, {0: clips_b}))
    return {
        "a": name_a, "b": name_b, "a_accuracy": _rounded(difference.values_a[0]),
        "b_accuracy": _rounded(difference.values_b[0]), "difference_pp": round(100 * difference.estimate, 2),
        "low_pp": round(100 * difference.low, 2), "high_pp": round(100 * difference.high, 2),
        "locations": difference.locations, "clips": difference.clips,
    }  # fmt: skip


def teacher_margin(comparison: dict[str, Path]) -> dict:
    """The first system's margin over the second on the hold-out, and whether it reaches TEACHER_MARGIN_PP."""
    (name_a, path_a), (name_b, path_b) = comparison.items()
    margin = holdout_difference(name_a, path_a, name_b, path_b)
    return margin | {"target_pp": TEACHER_MARGIN_PP, "reached": bool(margin["difference_pp"] >= TEACHER_MARGIN_PP)}


# How a development run chooses a default among candidate settings: a candidate replaces the baseline only where
# its paired interval over the baseline lies above 0 (the largest such gain wins). Where none does, the setting
# is not distinguishable on the hold-out and the baseline (the paper's reading) stays: one seed on a few hundred
# clips cannot tell small gains from noise, and picking the highest point estimate would fit the hold-out's noise.
CHOICE_RULE = "a candidate replaces the baseline only where its paired 95 % interval over it lies above 0"


def default_choices(plan: dict) -> dict:
    """Per setting of config.development_plan: the baseline's and each candidate's hold-out accuracy, each
    candidate's paired difference from the baseline, and the setting chosen by CHOICE_RULE."""
    choices = {}
    for setting, entry in plan.items():
        baseline = entry["baseline"]
        candidates = {}
        for run, candidate in entry["candidates"].items():
            difference = holdout_difference(run, Path(candidate["clips"]), baseline["run"], Path(baseline["clips"]))
            candidates[run] = {"values": candidate["values"], **difference,
                               "distinguishable": difference["low_pp"] > 0 or difference["high_pp"] < 0}  # fmt: skip
        better = {run: result for run, result in candidates.items() if result["low_pp"] > 0}
        chosen = max(better, key=lambda run: better[run]["difference_pp"]) if better else baseline["run"]
        best = max(candidates, key=lambda run: candidates[run]["difference_pp"])
        choices[setting] = {
            "precision": entry["precision"], "rule": CHOICE_RULE,
            "baseline": {"run": baseline["run"], "values": baseline["values"],
                         "accuracy": next(iter(candidates.values()))["b_accuracy"]},
            "candidates": candidates, "chosen": chosen,
            "highest_on_holdout": best if candidates[best]["difference_pp"] > 0 else baseline["run"],
        }  # fmt: skip
    return choices


def write_metrics(
    runs: dict[str, SeedFiles], fusion_json: Path, energy_json: Path, out: Path, curves_csv: Path, devices_csv: Path
) -> dict:
    metrics = {
        "students": {name: student_metrics(seeds) for name, seeds in runs.items()},
        "teachers": ensemble_metrics(read_json(fusion_json)),
        "energy_threshold": _rounded(read_json(energy_json)["threshold"]),
    }
    write_json(out, metrics)
    write_plot_data(runs, curves_csv, devices_csv)
    return metrics
