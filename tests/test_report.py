"""Tables over seeds: the CSV keeps one row per seed, the Markdown shows mean ± std (n) in the configured row
order; metrics.json gives mean, std and n; Table V's statistic is the mean of the last ten validation epochs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dsflexinet.data.tau22 import DEVICES, SCENES
from dsflexinet.report.summary import student_metrics
from dsflexinet.report.tables import last_epochs_accuracy, write_table


def _evaluation(path: Path, accuracy: float) -> Path:
    devices = {device: {"accuracy": accuracy, "clips": 200} for device in DEVICES}
    groups = {name: {"accuracy": accuracy, "clips": 600} for name in ("real", "seen_simulated", "unseen_simulated")}
    path.write_text(json.dumps({"accuracy": accuracy, "class_averaged_accuracy": accuracy, "log_loss": 1.0 - accuracy,
                                "devices": devices, "groups": groups, "labels": list(SCENES)}))  # fmt: skip
    return path


def _history(path: Path, accuracies: list[float]) -> Path:
    pd.DataFrame({"epoch": range(1, len(accuracies) + 1), "val_acc": accuracies}).to_csv(path, index=False)
    return path


def _runs(tmp_path: Path) -> dict:
    """Two runs (`worse` listed first) of two seeds each: accuracies 0.4/0.6 and 0.5/0.5."""
    runs = {}
    for label, accuracies in (("worse", (0.4, 0.6)), ("better", (0.5, 0.5))):
        runs[label] = {}
        for seed, accuracy in zip(("1", "2"), accuracies, strict=True):
            folder = tmp_path / label / seed
            folder.mkdir(parents=True)
            history = [None] * 5 + [accuracy - 0.1] * 5 + [accuracy] * 10  # 20 epochs, the first 5 not validated
            runs[label][seed] = {"eval_float": _evaluation(folder / "eval_float.json", accuracy),
                                 "history": _history(folder / "history.csv", history)}  # fmt: skip
    return runs


def test_device_table_over_seeds(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    frame = write_table("table5", runs, tmp_path / "t5.csv", tmp_path / "t5.md")
    assert list(zip(frame["Model"], frame["seed"], strict=True)) == [("worse", 1), ("worse", 2), ("better", 1),
                                                                     ("better", 2)]  # fmt: skip
    assert frame["ACC"].tolist() == [40.0, 60.0, 50.0, 50.0]
    assert frame["ACC (last 10 epochs)"].tolist() == pytest.approx([40.0, 60.0, 50.0, 50.0])
    markdown = (tmp_path / "t5.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| worse") or line.startswith("| better")]
    assert rows[0].startswith("| worse |") and "| 50.00 ± 14.14 (n=2) |" in rows[0]  # the section's order
    assert rows[1].startswith("| better |") and "| 50.00 ± 0.00 (n=2) |" in rows[1]
    assert pd.read_csv(tmp_path / "t5.csv").shape == (4, len(frame.columns))


def test_a_run_with_fewer_validated_epochs_is_named_under_its_table(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    write_table("table5", runs, tmp_path / "full.csv", tmp_path / "full.md")
    assert "Note:" not in (tmp_path / "full.md").read_text()  # 15 validated epochs in every run: ten averaged
    _history(runs["better"]["2"]["history"], [None] * 4 + [0.5] * 8)  # an 8-epoch curve in one seed
    frame = write_table("table5", runs, tmp_path / "t5.csv", tmp_path / "t5.md")
    assert frame["ACC (last 10 epochs)"].tolist() == pytest.approx([40.0, 60.0, 50.0, 50.0])
    this_run = (tmp_path / "t5.md").read_text().split("The paper")[0]
    note = "Note: ACC (last 10 epochs) averages fewer epochs where fewer were validated (better seed 2: 8).\n"
    assert note in this_run


def test_tables_name_the_machines_of_their_rows(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    write_table("table5", runs, tmp_path / "old.csv", tmp_path / "old.md")  # evaluations from before the records
    assert "\nTrained on: not recorded. Evaluated on: not recorded.\n" in (tmp_path / "old.md").read_text()
    epyc, xeon = {"cpu": "AMD EPYC 7B13", "torch": "2.14.1", "threads": 1}, {"cpu": "Intel Xeon", "torch": "2.14.1"}
    for seed, machine in (("1", epyc), ("2", xeon)):
        for label in runs:
            path = runs[label][seed]["eval_float"]
            path.write_text(json.dumps(json.loads(path.read_text()) | {"trained_on": [machine], "measured_on": epyc}))
    write_table("table5", runs, tmp_path / "t5.csv", tmp_path / "t5.md")
    assert ("\nTrained on: AMD EPYC 7B13 [no AVX2], torch 2.14.1, 1 thread(s); Intel Xeon [no AVX2], torch 2.14.1. "
            "Evaluated on: AMD EPYC 7B13 [no AVX2], torch 2.14.1, 1 thread(s).\n") in (tmp_path / "t5.md").read_text()


def test_last_ten_epochs_and_metrics_over_seeds(tmp_path: Path) -> None:
    history = _history(tmp_path / "h.csv", [None, 0.1, 0.2] + [0.5] * 9 + [0.8])
    assert last_epochs_accuracy(history) == pytest.approx((0.5 * 9 + 0.8) / 10)
    assert last_epochs_accuracy(_history(tmp_path / "short.csv", [0.2, 0.4])) == pytest.approx(0.3)
    seeds = _runs(tmp_path)["worse"]
    for files in seeds.values():
        files["eval_int8"] = files["eval_float"]
        files["complexity"] = tmp_path / "complexity.json"
    (tmp_path / "complexity.json").write_text(json.dumps([{"params": 1000, "macs": 2000, "size_kb_int8": 1.0}]))
    metrics = student_metrics(seeds)
    assert metrics["accuracy_float"] == {"mean": 0.5, "std": pytest.approx(0.1414, abs=1e-4), "n": 2}
    assert metrics["unseen_accuracy_int8"]["n"] == 2 and metrics["params"] == 1000


def test_development_metrics_summarise_curves_on_the_holdout(tmp_path: Path) -> None:
    from dsflexinet.report.summary import write_development_metrics

    epochs = 12
    curve = pd.DataFrame({"epoch": range(1, epochs + 1), "train_acc": [0.2] * (epochs - 1) + [0.9],
                          "train_loss": [2.0] * (epochs - 1) + [0.5], "val_acc": [None] * 2 + [0.5] * 9 + [0.7],
                          "val_loss": [None] * 2 + [1.5] * 9 + [1.2]})  # fmt: skip
    curve.to_csv(tmp_path / "history.csv", index=False)
    held = pd.DataFrame({"filename": [f"audio/park-lyon-{i // 4}-0-{i}-a.wav" for i in range(12)],
                         "scene_label": "park", "label": 0, "city": "lyon",
                         "identifier": [f"lyon-{i // 4}" for i in range(12)], "device": "a"})  # fmt: skip
    held.to_csv(tmp_path / "holdout.tsv", sep="\t", index=False)
    fusion = {"teachers": ["t1"], "holdout": {"t1": {"accuracy": 0.6}, "average": {"accuracy": 0.65}}}
    (tmp_path / "fusion.json").write_text(json.dumps(fusion))
    metrics = write_development_metrics({"student sm4": tmp_path / "history.csv"}, tmp_path / "fusion.json",
                                        tmp_path / "holdout.tsv", tmp_path / "development.json")  # fmt: skip
    assert metrics == json.loads((tmp_path / "development.json").read_text())
    assert metrics["holdout"] == {"clips": 12, "locations": 3}
    assert metrics["curves"]["student sm4"] == {
        "epochs": 12, "validated_epochs": 10, "val_accuracy_last": 0.7, "val_accuracy_last10": 0.52,
        "val_log_loss_last": 1.2, "train_accuracy_last": 0.9, "train_loss_last": 0.5,
    }  # fmt: skip
    assert metrics["ensemble_holdout_accuracy"] == {"average": 0.65}  # the teachers' own are in their curves
    assert "teachers_over_labels_only" not in metrics


def test_development_metrics_give_the_teachers_margin_with_its_interval(tmp_path: Path) -> None:
    """The fused ensemble against the student on labels alone, paired over the hold-out's locations: a known
    difference (9 of 12 against 6 of 12 right: +25 points) and the location bootstrap's interval around it."""
    from dsflexinet.report.summary import TEACHER_MARGIN_PP, write_development_metrics

    pd.DataFrame({"epoch": [1], "train_acc": [0.5], "train_loss": [1.0], "val_acc": [0.5], "val_loss": [1.0]}).to_csv(
        tmp_path / "history.csv", index=False)  # fmt: skip
    names = [f"audio/park-lyon-{i // 4}-0-{i}-a.wav" for i in range(12)]
    identifiers = [f"lyon-{i // 4}" for i in range(12)]
    pd.DataFrame({"filename": names, "scene_label": "park", "label": 0, "city": "lyon", "identifier": identifiers,
                  "device": "a"}).to_csv(tmp_path / "holdout.tsv", sep="\t", index=False)  # fmt: skip
    (tmp_path / "fusion.json").write_text(json.dumps({"teachers": [], "holdout": {}}))
    for name, right in (("ensemble", [1, 1, 1, 0] * 3), ("student", [1, 1, 0, 0] * 3)):
        pd.DataFrame({"filename": names, "identifier": identifiers, "device": "a", "label": 0,
                      "prediction": [0 if r else 1 for r in right], "nll": 0.5}).to_csv(
            tmp_path / f"{name}.tsv", sep="\t", index=False)  # fmt: skip
    comparison = {"fused ensemble": tmp_path / "ensemble.tsv", "sm4-nokd": tmp_path / "student.tsv"}
    metrics = write_development_metrics({"student": tmp_path / "history.csv"}, tmp_path / "fusion.json",
                                        tmp_path / "holdout.tsv", tmp_path / "development.json", comparison)
    margin = metrics["teachers_over_labels_only"]
    assert margin["a"] == "fused ensemble" and margin["b"] == "sm4-nokd"
    assert (margin["a_accuracy"], margin["b_accuracy"], margin["difference_pp"]) == (0.75, 0.5, 25.0)
    assert margin["locations"] == 3 and margin["clips"] == 12 and margin["target_pp"] == TEACHER_MARGIN_PP
    # Every location gains one clip of four: every resample gives the same +25, so the interval is that point.
    assert margin["low_pp"] == margin["high_pp"] == 25.0 and margin["reached"] is True


def _holdout_outcomes(path: Path, right: list[int]) -> Path:
    """Per-clip hold-out outcomes of one system: 4 clips at each of len(right) / 4 locations."""
    clips = pd.DataFrame({"filename": [f"audio/park-lyon-{i // 4}-0-{i}-a.wav" for i in range(len(right))],
                          "identifier": [f"lyon-{i // 4}" for i in range(len(right))], "device": "a", "label": 0,
                          "prediction": [0 if r else 1 for r in right], "nll": 0.5})  # fmt: skip
    clips.to_csv(path, sep="\t", index=False)
    return path


def test_a_default_changes_only_for_a_distinguishable_gain_on_the_holdout(tmp_path: Path) -> None:
    """Known outcomes: one candidate gains one clip of four at every location (+25 points, an interval that is
    that point), one gains at one location only (not distinguishable): the first is chosen. Where no candidate's
    interval lies above 0, the baseline stays even when a candidate's estimate is higher."""
    from dsflexinet.report.summary import default_choices

    baseline = _holdout_outcomes(tmp_path / "sm4.tsv", [1, 1, 0, 0] * 3)
    better = _holdout_outcomes(tmp_path / "lr-low.tsv", [1, 1, 1, 0] * 3)
    lucky = _holdout_outcomes(tmp_path / "lr-high.tsv", [1, 1, 1, 1] + [1, 1, 0, 0] * 2)
    plan = {
        "lr": {"precision": "float",
               "baseline": {"run": "sm4", "clips": str(baseline), "values": {"schedule": {"lr": 3e-3}}},
               "candidates": {"lr-low": {"clips": str(better), "values": {"schedule": {"lr": 1e-3}}},
                              "lr-high": {"clips": str(lucky), "values": {"schedule": {"lr": 1e-2}}}}},
        "qat_lr": {"precision": "int8",
                   "baseline": {"run": "sm4", "clips": str(baseline), "values": {"qat": {"lr": 1e-4}}},
                   "candidates": {"qat-high": {"clips": str(lucky), "values": {"qat": {"lr": 3e-4}}}}},
    }  # fmt: skip
    choices = default_choices(plan)
    lr = choices["lr"]
    assert lr["baseline"] == {"run": "sm4", "values": {"schedule": {"lr": 3e-3}}, "accuracy": 0.5}
    assert lr["candidates"]["lr-low"]["difference_pp"] == 25.0 and lr["candidates"]["lr-low"]["low_pp"] == 25.0
    assert lr["candidates"]["lr-high"]["difference_pp"] == pytest.approx(16.67)
    assert lr["candidates"]["lr-high"]["low_pp"] == 0.0 and not lr["candidates"]["lr-high"]["distinguishable"]
    assert lr["chosen"] == "lr-low" == lr["highest_on_holdout"]
    qat = choices["qat_lr"]
    assert qat["precision"] == "int8" and qat["highest_on_holdout"] == "qat-high" and qat["chosen"] == "sm4"


def test_run_record_names_config_files_as_the_checkout_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsflexinet.report import runrecord

    monkeypatch.setattr(runrecord, "git_commit", lambda repository: "abc1234")
    outside = tmp_path.parent / "elsewhere.yaml"
    given = [str(tmp_path / "config" / "seeds.yaml"), "config/dcase25.yaml", str(outside)]
    record = runrecord.start_invocation(tmp_path, {"students": {"seeds": [1, 2]}}, given)
    assert record["config_files"] == ["config.yaml", "config/seeds.yaml", "config/dcase25.yaml", str(outside)]
    assert record["commit"] == "abc1234" and record["student_seeds"] == [1, 2]
