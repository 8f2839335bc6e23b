"""DCASE 2025 Task 1: device IDs at inference, the device-specific system against the general one, and the
installable package, built from exported models and used from a fresh virtual environment."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
import yaml

from dsflexinet.atomic import write_json
from dsflexinet.cli import main
from dsflexinet.config import dcase25_module, load_config
from dsflexinet.data.tau22 import DEVICES, SCENES, SPLIT_FILES
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate import dcase25_package
from dsflexinet.evaluate.dcase25 import clip_devices
from dsflexinet.evaluate.submission import evaluation_clips
from dsflexinet.modelfile import ModelInput, export_classifier
from dsflexinet.report.dcase25 import (
    accuracy_summary,
    claims_plan,
    device_specific_outcomes,
    write_evaluation,
    write_finetune_choice,
)
from tests.conftest import REPO
from tests.test_predict import RATE, BandEnergy, expected_probabilities
from tests.test_workflow import ONE_STUDENT_JOBS, job_counts

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
MODULE = "Tester_Lab_task1_2"


class ReversedBandEnergy(BandEnergy):
    """A second fixed classifier, another answer than BandEnergy's: the device model of these tests."""

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return super().forward(waves).flip(1)


# --- device IDs ---------------------------------------------------------------------------------------------------


def test_device_ids_come_from_the_table_else_the_file_name(tiny_dataset: Path, tmp_path: Path) -> None:
    assert dcase25_package.DEVICES == DEVICES  # the package's own copy of TAU22's devices
    clips = evaluation_clips(tiny_dataset)  # fold1_test.csv: no device column, so the names decide
    devices = clip_devices(tiny_dataset, clips)
    assert len(devices) == 180 and pd.Series(devices).value_counts().to_dict() == dict.fromkeys(DEVICES, 20)
    assert all(name.endswith(f"-{device}.wav") for (name, _), device in zip(clips, devices, strict=True))

    table = tmp_path / "table"
    (table / "audio").mkdir(parents=True)
    names = ["audio/bus-x-1-0-0-a.wav", "audio/bus-x-1-0-0-b.wav", "audio/bus-x-1-0-0-s9.wav"]
    for name in names:
        soundfile.write(table / name, np.zeros(100), RATE)
    pd.DataFrame({"filename": names, "source_label": ["c", "", "s1"]}).to_csv(table / "meta.csv", sep="\t", index=False)
    assert clip_devices(table, evaluation_clips(table)) == ["c", "unknown", "s1"]  # the table wins over names
    (table / "meta.csv").unlink()
    plain = evaluation_clips(table / "audio")
    assert clip_devices(table / "audio", plain) == ["a", "b", "unknown"]  # s9 is no TAU22 device
    assert dcase25_package.device_from_file_name("recording.wav") == "unknown"


# --- the device-specific system on the test split ---------------------------------------------------------------


def _outcomes(path: Path, right: dict[str, int]) -> Path:
    """A per-clip table of 10 clips per device and 2 locations per scene: device d has the first right[d] of its
    clips per location right (any device not named: 5)."""
    rows = []
    for scene in range(len(SCENES)):
        for location in range(2):
            for device in DEVICES:
                for clip in range(10):
                    correct = clip < right.get(device, 5)
                    rows.append({"filename": f"{SCENES[scene]}-x-{location}-{clip}-0-{device}.wav",
                                 "identifier": f"x-{scene}-{location}", "device": device, "label": scene,
                                 "prediction": scene if correct else (scene + 1) % len(SCENES),
                                 "nll": 0.5})  # fmt: skip
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def test_the_device_specific_system_is_the_general_model_on_other_devices(tmp_path: Path) -> None:
    general = _outcomes(tmp_path / "general.tsv", {})
    own = {"a": _outcomes(tmp_path / "a.tsv", dict.fromkeys(DEVICES, 9)),  # right on every device: only a's rows count
           "b": _outcomes(tmp_path / "b.tsv", {"b": 8, "s4": 0})}  # fmt: skip
    system = device_specific_outcomes(general, own, tmp_path / "system.tsv")
    assert len(system) == 9 * 200
    correct = (system["label"] == system["prediction"]).groupby(system["device"]).mean()
    assert correct.to_dict() == {**dict.fromkeys(DEVICES, 0.5), "a": 0.9, "b": 0.8}

    summary = accuracy_summary(general, tmp_path / "system.tsv", ["a", "b"], "sm4", 1)
    assert summary["unknown_devices"] == {"devices": ["c", "s1", "s2", "s3", "s4", "s5", "s6"], "clips": 1400,
                                          "general": 0.5, "device_specific": 0.5}  # fmt: skip
    assert summary["seen_devices"] == {"devices": ["a", "b"], "clips": 400, "general": 0.5,
                                       "device_specific": pytest.approx(0.85)}  # fmt: skip
    assert summary["device_specific"]["devices"]["a"] == 0.9 and summary["general"]["devices"]["a"] == 0.5
    assert summary["device_specific"]["accuracy"] == pytest.approx((7 * 0.5 + 0.9 + 0.8) / 9)
    assert set(summary["general"]["classes"]) == set(SCENES)

    wrong = tmp_path / "wrong.tsv"  # a device-specific table whose other devices are not the general model's
    _outcomes(wrong, {"c": 6})
    with pytest.raises(PipelineError, match=r"on devices without a model of their own the device-specific system "
                                            r"scores 0\.51.*, the general model 0\.5$"):  # fmt: skip
        accuracy_summary(general, wrong, ["a", "b"], "sm4", 1)


def test_the_per_device_claim_reads_the_seen_devices_only(tmp_path: Path) -> None:
    general = _outcomes(tmp_path / "general.tsv", {})
    system = _outcomes(tmp_path / "system.tsv", {"a": 9, "b": 9})  # better on a and b, the same elsewhere
    plan = claims_plan("sm4", ["a", "b"], {"general": {"1": str(general)}, "device_specific": {"1": str(system)}},
                       {"1": str(_evaluation(tmp_path / "eval.json"))})  # fmt: skip
    out = {name: tmp_path / name for name in ("accuracy.json", "claims.csv", "claims.md")}
    summary = write_evaluation(plan, "1", "sm4", ["a", "b"], *out.values())
    (row,) = pd.read_csv(out["claims.csv"]).to_dict("records")
    # Every location +40 points on a and b: no spread to resample, so the interval is the point.
    assert (row["difference_pp"], row["low_pp"], row["high_pp"]) == (40.0, 40.0, 40.0)
    assert row["clips"] == 400 and row["locations"] == 20 and row["verdict"] == "provisional: supported"
    assert row["a"] == "sm4 device-specific int8 A-B" and row["b"] == "sm4 general int8 A-B"
    assert summary["verdict"] == "provisional: supported"
    assert json.loads(out["accuracy.json"].read_text())["unknown_devices"]["clips"] == 1400


def test_the_fine_tuning_schedule_is_chosen_on_the_holdout_by_the_development_rule(tmp_path: Path) -> None:
    general = _outcomes(tmp_path / "general.tsv", {})
    schedules = {"e2_lr0.0001": {"a": 6}, "e6_lr0.0001": {"a": 9, "b": 9}, "e2_lr0.001": {"a": 5, "b": 4}}
    clips = {name: str(_outcomes(tmp_path / f"{name}.tsv", right)) for name, right in schedules.items()}
    plan = {"precision": "float", "general": {"run": "general", "clips": str(general)},
            "baseline": {"run": "e2_lr0.0001", "clips": clips["e2_lr0.0001"], "values": {"epochs": 2, "lr": 1e-4}},
            "candidates": {name: {"clips": clips[name], "values": {"epochs": int(name[1]), "lr": 1e-4}}
                           for name in ("e6_lr0.0001", "e2_lr0.001")}}  # fmt: skip
    result = write_finetune_choice(plan, tmp_path / "choice.json")
    assert json.loads((tmp_path / "choice.json").read_text()) == json.loads(json.dumps(result))
    # Every location gains the same: no spread, the interval is the point. +3 of 10 on a, +4 on b: 7/90 of the clips.
    better = result["candidates"]["e6_lr0.0001"]
    assert (better["difference_pp"], better["low_pp"], better["high_pp"]) == (7.78, 7.78, 7.78)
    assert better["distinguishable"] and better["clips"] == 1800 and better["locations"] == 20
    assert result["candidates"]["e2_lr0.001"]["difference_pp"] == -2.22  # -1 of 10 on a and on b: -2/90
    assert result["chosen"] == result["highest_on_holdout"] == "e6_lr0.0001"
    assert result["chosen_values"] == {"epochs": 6, "lr": 1e-4}
    assert result["baseline"]["accuracy"] == pytest.approx((8 * 0.5 + 0.6) / 9, abs=1e-4)
    over_general = {name: entry["difference_pp"] for name, entry in result["over_general"].items()}
    assert over_general == {"e2_lr0.0001": 1.11, "e6_lr0.0001": 8.89, "e2_lr0.001": -1.11}
    assert result["device_wise"]["e6_lr0.0001"]["b"] == 0.9 and result["device_wise"]["general"]["b"] == 0.5
    assert result["device_clips"] == dict.fromkeys(DEVICES, 200)

    # A candidate whose gain is within the noise leaves the default in place.
    noisy = _outcomes(tmp_path / "noisy.tsv", {"a": 6})
    table = pd.read_csv(noisy, sep="\t")
    flip = (table["identifier"] == "x-0-0") & (table["device"] == "b")  # one location right on b, one scene
    table.loc[flip, "prediction"] = table.loc[flip, "label"]
    table.to_csv(noisy, sep="\t", index=False)
    plan["candidates"] = {"e6_lr0.0001": {"clips": str(noisy), "values": {"epochs": 6, "lr": 1e-4}}}
    result = write_finetune_choice(plan, tmp_path / "choice.json")
    assert result["candidates"]["e6_lr0.0001"]["difference_pp"] > 0
    assert result["candidates"]["e6_lr0.0001"]["low_pp"] <= 0 and result["chosen"] == "e2_lr0.0001"
    assert result["highest_on_holdout"] == "e6_lr0.0001"


def _evaluation(path: Path) -> Path:
    write_json(path, {"trained_on": [{"cpu": "a test CPU"}], "measured_on": {"cpu": "a test CPU"}})
    return path


# --- the package -----------------------------------------------------------------------------------------------


@pytest.fixture
def exported(tmp_path: Path) -> dict[str, dict[str, Path]]:
    """A general model (BandEnergy) and one for device b (ReversedBandEnergy), as QAT exports them, with the
    complexity and QAT records the workflow hands the package command."""
    files: dict[str, dict[str, Path]] = {}
    limits = {"precision": "int8", "param_bytes": 61_148, "max_macs": 30_000_000, "max_param_bytes": 128_000}
    for device, model in (("general", BandEnergy()), ("b", ReversedBandEnergy())):
        folder = tmp_path / "models" / device
        folder.mkdir(parents=True)
        paths = {name: folder / name for name in ("model_int8.pt", "complexity.json", "quantized.json")}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated for torch.export
            export_classifier(model, paths["model_int8.pt"], ModelInput(RATE, RATE), "fbgemm")
        write_json(paths["complexity.json"], [{"model": "dsflexinet_sm2", "params": 61_148, "macs": 8_270_000,
                                               "limits": limits, "within": True}])  # fmt: skip
        write_json(paths["quantized.json"], {"backend": "fbgemm", "file_bytes": paths["model_int8.pt"].stat().st_size})
        files[device] = paths
    return files


def _package_command(exported: dict, root: Path, accuracy: Path, out: Path) -> list[str]:
    flags = [f"--{flag}={device}={paths[name]}" for device, paths in exported.items()
             for flag, name in (("model", "model_int8.pt"), ("complexity", "complexity.json"),
                                ("quantized", "quantized.json"))]  # fmt: skip
    return ["--threads", "1", "dcase25-package", *flags, "--evaluation-root", str(root), "--accuracy", str(accuracy),
            "--module", MODULE, "--run", "sm2", "--out-package", str(out / "package"), "--out-csv",
            str(out / "output.csv"), "--out-complexity", str(out / "complexity.json"), "--out-metadata",
            str(out / f"{MODULE}.meta.yaml")]  # fmt: skip


def _fresh_venv(path: Path) -> Path:
    """A virtual environment without pip, seeing this environment's installed packages through a .pth file
    (torch, torchaudio, numpy, soundfile, and pip and setuptools to install with): no network and no large
    install. A .pth line adds a folder to sys.path without running the .pth files inside it, so this project's
    own editable install does not come along: `import dsflexinet` fails there, which the test checks."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(purelib, "project_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def test_the_package_installs_and_predicts_by_device(
    exported: dict, tiny_dataset: Path, tmp_path: Path
) -> None:  # fmt: skip
    out = tmp_path / "dcase25"
    accuracy = write_evaluation(
        claims_plan("sm2", ["b"], {"general": {"1": str(_outcomes(tmp_path / "g.tsv", {}))},
                                   "device_specific": {"1": str(_outcomes(tmp_path / "d.tsv", {"b": 7}))}},
                    {"1": str(_evaluation(tmp_path / "eval.json"))}),
        "1", "sm2", ["b"], tmp_path / "accuracy.json", tmp_path / "claims.csv", tmp_path / "claims.md",
    )  # fmt: skip
    assert accuracy["device_specific"]["devices"]["b"] == 0.7
    assert main(_package_command(exported, tiny_dataset, tmp_path / "accuracy.json", out)) == 0

    # output.csv: the DCASE format, every test clip, the b clips by the device model, all others by the general.
    listed = list(pd.read_csv(tiny_dataset / SPLIT_FILES["fold1_test"], sep="\t")["filename"])
    table = pd.read_csv(out / "output.csv", sep="\t")
    assert list(table.columns) == ["filename", "scene_label", *sorted(SCENES)]
    assert list(table["filename"]) == [name.removeprefix("audio/") for name in listed] and len(table) == 180
    probabilities = table[list(SCENES)].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert list(table["scene_label"]) == [SCENES[i] for i in probabilities.argmax(axis=1)]
    for row in (0, 1, 9):  # devices a, b, s6 of the first location
        expected = expected_probabilities(tiny_dataset / listed[row])
        device = listed[row].rsplit("-", 1)[1].removesuffix(".wav")
        np.testing.assert_allclose(probabilities[row], expected[::-1] if device == "b" else expected, atol=1e-6)
    assert [name.rsplit("-", 1)[1] for name in listed[:3]] == ["a.wav", "b.wav", "c.wav"]

    record = json.loads((out / "complexity.json").read_text())
    assert sorted(record["models"]) == ["b", "general"] and record["limits"]["max_param_bytes"] == 128_000
    metadata = yaml.safe_load((out / f"{MODULE}.meta.yaml").read_text())
    assert metadata["submission"]["label"] == MODULE
    results = metadata["results"]["development_dataset"]
    assert results["device_specific"]["device_wise"]["b"] == 70.0 and results["general"]["device_wise"]["b"] == 50.0
    assert sorted(results["general"]["class_wise"]) == sorted(SCENES)

    # Install it into a fresh environment and call it there, as a user of the package would.
    package = out / "package"
    assert sorted(path.name for path in (package / MODULE / "models").iterdir()) == ["b.pt", "general.pt"]
    python = _fresh_venv(tmp_path / "venv")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    pip = [python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-build-isolation", "--quiet"]
    installed = subprocess.run([*pip, str(package)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    clips = [tiny_dataset / name for name in listed[:4]]  # devices a, b, c, s1
    script = f"""
import json, sys, torch
try:
    import dsflexinet
    sys.exit("dsflexinet is importable: the package's test would not show that it runs without it")
except ImportError:
    pass
from {MODULE} import get_model_for_device, load_inputs, load_model, predict
files = {json.dumps([str(path) for path in clips])}
logits, classes = predict(files, ["a", "b", "unknown", None])
models = load_model()
waves, devices = load_inputs(files, ["a", "b", "unknown", None])
general = models["general"](waves).float()
print(json.dumps({{"shape": list(logits.shape), "classes": classes, "devices": devices, "models": sorted(models),
                  "logits": logits.tolist(), "general": general.tolist(),
                  "unknown_is_general": get_model_for_device(models, "unknown") is models["general"],
                  "b_is_own": get_model_for_device(models, "b") is models["b"]}}))
"""
    ran = subprocess.run([python, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["shape"] == [4, 10] and result["classes"] == list(SCENES) and result["models"] == ["b", "general"]
    assert result["devices"] == ["a", "b", "unknown", "s1"]  # None: the device from the file name
    assert result["unknown_is_general"] and result["b_is_own"]
    logits, general = np.array(result["logits"]), np.array(result["general"])
    np.testing.assert_array_equal(logits[[0, 2, 3]], general[[0, 2, 3]])  # a, the unknown and s1: the general model
    np.testing.assert_allclose(logits[1], general[1][::-1], atol=1e-6)  # b: its own model
    softmax = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    np.testing.assert_allclose(softmax[[0, 2, 3]], probabilities[[0, 2, 3]], atol=1e-6)  # the pipeline's output.csv

    checked = subprocess.run([python, "-m", f"{MODULE}.test_complexity"], capture_output=True, text=True, env=env,
                             cwd=tmp_path)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [
        f"{device}: 61,148 parameters (0 stored in int8), 61,148 bytes, 8.27 M MACs: within the limits"
        for device in ("general", "b")
    ]
    scored = subprocess.run([python, "-m", f"{MODULE}.evaluate_submission", str(tiny_dataset), "--out-csv",
                             "eval.csv", "--out-accuracy", "eval.json"], capture_output=True, text=True, env=env,
                            cwd=tmp_path)  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    package_csv = pd.read_csv(tmp_path / "eval.csv", sep="\t")
    assert list(package_csv["filename"]) == list(table["filename"])  # fold1_evaluate lists fold1_test's clips
    np.testing.assert_allclose(package_csv[list(SCENES)].to_numpy(), probabilities, atol=1e-5)
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert scores["clips"] == 180 and sorted(scores["devices"]) == sorted(DEVICES)


def test_a_model_over_the_limits_is_not_packaged(exported: dict, tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    complexity = exported["b"]["complexity.json"]
    (row,) = json.loads(complexity.read_text())
    write_json(complexity, [row | {"within": False}])
    write_json(tmp_path / "accuracy.json", {})
    assert main(_package_command(exported, tiny_dataset, tmp_path / "accuracy.json", tmp_path / "out")) == 1
    message = f"error: {complexity}: the model is not recorded as within the complexity limits\n"
    assert capsys.readouterr().err == message
    assert not (tmp_path / "out").exists()


# --- configuration and workflow ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dcase25: {finetune: {epoch: 2}}",
         r"^config: unknown key 'dcase25\.finetune\.epoch' \(allowed here: epochs, lr\)$"),
        ("dcase25: {devices: [a, s4]}", r"^config: dcase25\.devices\.1: 's4' is not one of"),
        ("dcase25: {label: Only-Dash}", r"^config: dcase25\.label: 'Only-Dash' does not match"),
    ],
)
def test_dcase25_settings_are_checked(tmp_path: Path, override: str, message: str) -> None:
    path = tmp_path / "override.yaml"
    path.write_text(override + "\n")
    with pytest.raises(PipelineError, match=message):
        load_config([REPO / "config.yaml", path], SCHEMA)


def test_a_candidate_fine_tuning_schedule_must_differ_from_the_default(tmp_path: Path) -> None:
    path = tmp_path / "override.yaml"
    path.write_text("development: {dcase25_finetune: [{epochs: 6, lr: 1.0e-4}, {epochs: 2, lr: 0.0001}]}\n")
    with pytest.raises(PipelineError, match=r"^config: development\.dcase25_finetune\.1: e2_lr0\.0001 is "
                                            r"dcase25\.finetune or an earlier candidate"):  # fmt: skip
        load_config([REPO / "config.yaml", REPO / "config" / "development.yaml", path], SCHEMA)


def test_the_dcase25_config_trains_on_split25_and_names_the_module() -> None:
    config = load_config([REPO / "config.yaml", REPO / "config" / "dcase25.yaml"], SCHEMA)
    assert config["data"]["train_subset"] == 25 and config["dcase25"]["devices"] == ["a", "b", "c", "s1", "s2", "s3"]
    assert dcase25_module(config) == "Anonymous_DSFlexiNet_task1_1"


def test_snakemake_dcase25_package_fine_tunes_one_copy_per_device() -> None:
    """Whatever data.train_subset says, the package is built from split25: its own teachers, fusion and student."""
    counts = job_counts("dcase25_package")
    assert counts == ONE_STUDENT_JOBS | {
        "device_training_clips": 6, "finetune_device_student": 6, "qat_device_student": 6,
        "evaluate_device_student": 6, "device_student_complexity": 6, "device_specific_system": 1,
        "dcase25_evaluation": 1, "evaluation_manifest": 1, "build_dcase25_package": 1, "dcase25_package": 1,
    }  # fmt: skip


def test_snakemake_dcase25_development_compares_every_schedule_on_the_holdout() -> None:
    """Six schedules (the default and five candidates) x six devices, each fine-tuned and scored on the hold-out,
    from one general student: no QAT, nothing read from the test split."""
    counts = job_counts("dcase25_development", "--configfile", "config/development.yaml")
    not_needed = ("qat_student", "evaluate_student", "student_complexity", "validation_subset")
    one_float_student = {name: count for name, count in ONE_STUDENT_JOBS.items() if name not in not_needed}
    assert counts == one_float_student | {
        "device_training_clips": 6, "finetune_device_student": 36, "evaluate_student_holdout": 1,
        "evaluate_device_student_holdout": 36, "device_specific_holdout": 6, "dcase25_finetune_choice": 1,
        "dcase25_development": 1,
    }  # fmt: skip
