"""The DCASE workflow: complexity limits enforced by each student's complexity job, the challenge submission of
one int8 student, the data-efficiency curve over the DCASE'24 training subsets."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dsflexinet.atomic import write_json
from dsflexinet.cli import main
from dsflexinet.config import load_config
from dsflexinet.data.tau22 import DEVICES, SCENES, SPLIT_FILES
from dsflexinet.errors import PipelineError
from dsflexinet.modelfile import ModelInput, export_classifier
from dsflexinet.report.efficiency import efficiency_frame, write_data_efficiency
from dsflexinet.report.stats import System, paired_difference, statistic_interval
from tests.conftest import REPO, copy_project, tiny_pipeline_config
from tests.test_workflow import ONE_STUDENT_JOBS, job_counts, snakemake

# --- complexity limits ------------------------------------------------------------------------------------------

# dsflexinet_sm1 with Residual Normalization over channels (tests/test_models.py measures the sizes).
SM1 = ["complexity", "dsflexinet_sm1", "--options", '{"norm": "resnorm_channel"}']


def test_complexity_within_limits_records_them(tmp_path: Path) -> None:
    out = tmp_path / "complexity.json"
    assert main([*SM1, "--run", "sm1", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["within"] is True
    assert row["limits"] == {"precision": "int8", "param_bytes": row["params"], "max_macs": 30_000_000,
                             "max_param_bytes": 128_000}  # fmt: skip
    assert main([*SM1, "--run", "sm1", "--precision", "float32", "--out", str(out)]) == 0
    assert json.loads(out.read_text())[0]["limits"]["param_bytes"] == 4 * row["params"]
    assert main([*SM1, "--out", str(out)]) == 0  # without --run: a listing, nothing checked
    assert "limits" not in json.loads(out.read_text())[0]


def test_complexity_over_a_limit_fails_naming_run_and_number(tmp_path: Path, capsys) -> None:
    out = tmp_path / "complexity.json"
    assert main([*SM1, "--out", str(out)]) == 0
    macs, params = (json.loads(out.read_text())[0][key] for key in ("macs", "params"))
    out.unlink()
    assert main([*SM1, "--run", "sm1-wide", "--max-macs", str(macs - 1), "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"error: run sm1-wide: {macs:,} MACs ({macs / 1e6:.2f} M) exceed complexity.max_macs ({macs - 1:,})\n"
    )
    assert not out.exists()  # checked before anything is written
    assert main([*SM1, "--run", "sm1", "--max-param-bytes", str(params - 1), "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"error: run sm1: {params:,} bytes of parameters ({params:,} at int8) exceed complexity.max_param_bytes "
        f"({params - 1:,})\n"
    )
    assert not out.exists()
    assert main(["complexity", "dsflexinet_sm1", "dsflexinet_sm2", "--run", "sm1"]) == 1
    assert "a student run has one model, not 2" in capsys.readouterr().err


def _snakemake(project: Path, *args: str) -> subprocess.CompletedProcess:
    """Jobs run `python -m dsflexinet`: this interpreter's, as in the venv a user activated."""
    command = [sys.executable, "-m", "snakemake", "--cores", "1", *args]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_a_student_over_a_limit_fails_its_complexity_job(tmp_path: Path) -> None:
    """The complexity job needs no other job: run it for real, once within the limits and once over them."""
    config = tiny_pipeline_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    project = copy_project(tmp_path / "project", config)
    record = "results/split100/students/tiny-rn/s1/complexity.json"
    done = _snakemake(project, record)
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = json.loads((project / record).read_text())
    assert row["within"] is True and row["limits"]["max_macs"] == 30_000_000

    config["complexity"]["max_macs"] = row["macs"] - 1  # a new limit: the job reruns and now fails
    (project / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    failed = _snakemake(project, record)
    assert failed.returncode != 0
    expected = (f"error: run tiny-rn: {row['macs']:,} MACs ({row['macs'] / 1e6:.2f} M) exceed complexity.max_macs "
                f"({row['macs'] - 1:,})")  # fmt: skip
    assert expected in failed.stdout + failed.stderr  # the failed job's log, shown by the workflow profile
    assert not (project / record).exists()


# --- the challenge submission -----------------------------------------------------------------------------------


# What the float training, QAT and the development-test evaluation recorded (machine.describe_machine)
TRAINED_ON = ({"cpu": "AMD EPYC 7B13", "torch": "2.14.1", "threads": 1}, {"cpu": "a QAT node", "threads": 4})
MEASURED_ON = {"cpu": "Intel(R) Xeon(R) Processor", "torch": "2.14.1", "threads": 1}


@pytest.fixture
def student(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """The files of one exported student as the workflow hands them to `submission`: a fixed BandEnergy model,
    its complexity record (within the limits), QAT's record and its development-test evaluation."""
    from tests.test_predict import RATE, BandEnergy

    files = {name: tmp_path / "student" / name for name in ("model_int8.pt", "complexity.json", "quantized.json",
                                                           "eval_int8.json")}  # fmt: skip
    files["model_int8.pt"].parent.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated in favour of torch.export
        export_classifier(BandEnergy(), files["model_int8.pt"], ModelInput(RATE, RATE), "fbgemm", TRAINED_ON)
    limits = {"precision": "int8", "param_bytes": 61_148, "max_macs": 30_000_000, "max_param_bytes": 128_000}
    write_json(files["complexity.json"], [{"model": "dsflexinet_sm2", "params": 61_148, "macs": 8_270_000,
                                           "limits": limits, "within": True}])  # fmt: skip
    write_json(files["quantized.json"], {"backend": "fbgemm", "file_bytes": files["model_int8.pt"].stat().st_size})
    write_json(files["eval_int8.json"], {"clips": 180, "accuracy": 0.5, "class_averaged_accuracy": 0.45,
                                         "devices": {"a": {"accuracy": 0.6, "clips": 20},
                                                     "s6": {"accuracy": 0.3, "clips": 20}},
                                         "measured_on": MEASURED_ON})  # fmt: skip
    threads = torch.get_num_threads()
    yield files
    torch.set_num_threads(threads)  # `_submit` runs with --threads 1 (1 s clips: more threads only add overhead)


def _submit(student: dict[str, Path], root: Path, out: Path) -> int:
    return main([
        "--threads", "1", "submission", "--model", str(student["model_int8.pt"]), "--evaluation-root", str(root),
        "--complexity", str(student["complexity.json"]), "--quantized", str(student["quantized.json"]),
        "--evaluation", str(student["eval_int8.json"]), "--run", "sm2", "--out-csv", str(out / "output.csv"),
        "--out-info", str(out / "info.json"), "--incomplete-csv", str(out / "incomplete" / "output.csv"),
        "--incomplete-info", str(out / "incomplete" / "info.json"),
    ])  # fmt: skip


def test_submission_writes_the_dcase_files(student: dict[str, Path], tiny_dataset: Path, tmp_path: Path) -> None:
    from tests.test_predict import expected_probabilities

    out = tmp_path / "submission"
    assert _submit(student, tiny_dataset, out) == 0
    lines = (out / "output.csv").read_text().splitlines()
    listed = list(pd.read_csv(tiny_dataset / SPLIT_FILES["fold1_test"], sep="\t")["filename"])
    assert lines[0] == "filename\tscene_label\t" + "\t".join(sorted(SCENES))
    assert len(lines) == 1 + len(listed) == 181
    rows = [line.split("\t") for line in lines[1:]]
    assert [row[0] for row in rows] == [name.removeprefix("audio/") for name in listed]
    assert all(len(row) == 2 + len(SCENES) for row in rows)
    probabilities = np.array([[float(value) for value in row[2:]] for row in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert [row[1] for row in rows] == [SCENES[i] for i in probabilities.argmax(axis=1)]
    np.testing.assert_allclose(probabilities[5], expected_probabilities(tiny_dataset / listed[5]), atol=1e-6)

    info = json.loads((out / "info.json").read_text())
    assert info == {
        "run": "sm2", "model_file": str(student["model_int8.pt"]),
        "model_file_bytes": student["model_int8.pt"].stat().st_size, "quantized_engine": "fbgemm",
        "input": {"sample_rate": 32000, "clip_samples": 32000, "classes": list(SCENES)},
        "trained_on": list(TRAINED_ON),
        "parameters": 61_148, "macs": 8_270_000, "parameter_bytes": 61_148, "parameter_precision": "int8",
        "complexity_limits": {"max_macs": 30_000_000, "max_param_bytes": 128_000, "within": True},
        "development_test": {"evaluation": str(student["eval_int8.json"]), "clips": 180, "accuracy": 0.5,
                             "macro_accuracy": 0.45, "devices": {"a": 0.6, "s6": 0.3},
                             "measured_on": MEASURED_ON},
        "evaluation_root": str(tiny_dataset), "clips": 180, "classified": 180, "complete": True, "unreadable": [],
    }  # fmt: skip
    assert not (out / "incomplete").exists()


def test_an_incomplete_submission_is_kept_apart_and_fails(
    student: dict[str, Path], tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    root = tmp_path / "evaluation"
    (root / "audio").mkdir(parents=True)
    listed = list(pd.read_csv(tiny_dataset / SPLIT_FILES["fold1_test"], sep="\t")["filename"])[:6]
    for name in listed:
        shutil.copy(tiny_dataset / name, root / name)
    (root / listed[2]).write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    out = tmp_path / "submission"
    assert _submit(student, root / "audio", out) == 1  # a plain folder of WAVs
    name = Path(listed[2]).name
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {out / 'output.csv'}: not written, 1 of 6 clips could not be classified (first: {name}); "
        f"the incomplete submission is in {out / 'incomplete'}"
    )
    assert not (out / "output.csv").exists() and not (out / "info.json").exists()
    kept = json.loads((out / "incomplete" / "info.json").read_text())
    assert (kept["clips"], kept["classified"], kept["complete"], kept["unreadable"]) == (6, 5, False, [name])
    assert len((out / "incomplete" / "output.csv").read_text().splitlines()) == 1 + 5

    shutil.copy(tiny_dataset / listed[2], root / listed[2])  # repaired: the next try is complete
    assert _submit(student, root / "audio", out) == 0
    assert json.loads((out / "info.json").read_text())["complete"] is True
    assert not (out / "incomplete").exists()

    (root / listed[4]).write_bytes(b"")  # broken again: the last try's complete pair does not stay beside this one
    assert _submit(student, root / "audio", out) == 1
    assert not (out / "output.csv").exists() and not (out / "info.json").exists()
    assert json.loads((out / "incomplete" / "info.json").read_text())["unreadable"] == [Path(listed[4]).name]


def test_submission_refuses_records_that_do_not_belong(
    student: dict[str, Path], tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "submission"
    write_json(student["quantized.json"], {"backend": "fbgemm", "file_bytes": 1234})
    assert _submit(student, tiny_dataset, out) == 1
    size = student["model_int8.pt"].stat().st_size
    assert capsys.readouterr().err == (
        f"error: {student['model_int8.pt']}: {size:,} bytes, but {student['quantized.json']} records 1,234: not the "
        "model that QAT exported\n"
    )
    write_json(student["complexity.json"], [{"model": "dsflexinet_sm2", "params": 61_148, "macs": 8_270_000}])
    assert _submit(student, tiny_dataset, out) == 1
    assert capsys.readouterr().err == (
        f"error: {student['complexity.json']}: no 'limits', 'within' (the student's complexity job checks the DCASE "
        "limits with --run: rerun it)\n"
    )
    assert not out.exists()  # nothing written before the checks


def test_snakemake_submission_plans_the_student_it_names(tmp_path: Path) -> None:
    """Opt-in: the submitted student's training, QAT, complexity and int8 evaluation, on top of its teachers."""
    counts = job_counts("submission")
    assert counts == ONE_STUDENT_JOBS | {"evaluation_manifest": 1, "write_submission": 1, "submission": 1}
    choice = tmp_path / "choice.yaml"
    choice.write_text("submission: {run: sm2, seed: 7}\nstudents: {seeds: [1, 7]}\ndata: {train_subset: 25}\n")
    planned = snakemake("-n", "-p", "--forceall", "--nolock", "submission", "--configfile", str(choice)).stdout
    submitted = "results/split25/submission/sm2/s7"
    assert f"output: {submitted}/output.csv, {submitted}/info.json" in planned
    assert f"--incomplete-csv {submitted}/incomplete/output.csv" in planned
    assert "results/split25/students/sm2/s7/qat/model_int8.pt" in planned


def test_a_changed_evaluation_clip_reruns_the_submission(tmp_path: Path) -> None:
    """The submission's input is the clips' manifest (names, sizes, checksums); the manifest job reruns when a
    clip of the configured folder is replaced in place (same size) or added below it, and only then."""
    import soundfile

    from dsflexinet import layout
    from dsflexinet.evaluate.submission import write_manifest

    folder = tmp_path / "evaluation"
    (folder / "more").mkdir(parents=True)  # a subfolder: a clip added there leaves the folder's time as it is
    for index, name in enumerate(("a.wav", "b.wav")):
        soundfile.write(folder / name, np.full(16000, 0.1 * (index + 1)), 16000, subtype="PCM_16")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data"]["evaluation_root"] = str(folder)
    project = copy_project(tmp_path / "project", config)
    manifest = layout.evaluation_manifest("split100", "sm4", 1)

    def plan() -> str:
        result = snakemake("-n", manifest, cwd=project)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert snakemake("--cores", "1", manifest, cwd=project).returncode == 0
    first = pd.read_csv(project / manifest, sep="\t")
    assert list(first["filename"]) == ["a.wav", "b.wav"] and list(first["bytes"]) == [32044, 32044]
    assert first["sha256"].str.fullmatch("[0-9a-f]{64}").all()
    assert "Nothing to be done" in plan()

    soundfile.write(folder / "a.wav", np.full(16000, -0.1), 16000, subtype="PCM_16")  # replaced in place
    assert "reason: Params have changed since last execution" in plan()
    second = write_manifest(folder, tmp_path / "clips.tsv")
    assert list(second["bytes"]) == [32044, 32044] and list(second["sha256"] == first["sha256"]) == [False, True]

    shutil.copy(folder / "b.wav", folder / "more" / "c.wav")  # added in a subfolder
    planned = snakemake("-n", "submission", cwd=project).stdout
    job = planned.split("rule evaluation_manifest:")[1].split("\n\n")[0]
    assert "reason: Params have changed since last execution" in job
    submission = planned.split("rule write_submission:")[1].split("\n\n")[0]
    assert f"input: {folder}, {manifest}," in submission


# --- the data-efficiency curve ----------------------------------------------------------------------------------

# A test split of 20 recording locations, two per scene, ten clips each (the device cycles through all nine).
LOCATIONS = [(scene, copy) for scene in range(len(SCENES)) for copy in range(2)]


def _clips_table(path: Path, correct_per_location: list[int]) -> str:
    """A per-clip table where location i has its first correct_per_location[i] of 10 clips right."""
    rows = []
    for (scene, copy), correct in zip(LOCATIONS, correct_per_location, strict=True):
        for clip in range(10):
            rows.append({"filename": f"{SCENES[scene]}-x-{copy}-{clip}.wav", "identifier": f"x-{scene}-{copy}",
                         "device": DEVICES[clip % 9], "label": scene,
                         "prediction": scene if clip < correct else (scene + 1) % len(SCENES), "nll": 0.5})  # fmt: skip
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return str(path)


def _training_clips(path: Path, count: int) -> str:
    columns = {"filename": "f.wav", "scene_label": "bus", "label": 1, "device": "a", "city": "x", "identifier": "x-1"}
    pd.DataFrame([columns] * count).to_csv(path, sep="\t", index=False)
    return str(path)


@pytest.fixture
def efficiency_plan(tmp_path: Path) -> dict:
    """Run `small` at 25 % (35 training clips) and 50 % (70), two seeds, float and int8, with known answers:
    float at 25 %: every location 6 then 8 of 10 right (seeds 1, 2); int8 at 25 %: on both seeds the first
    location of each scene all right, the second all wrong; at 50 %: every location 9 of 10 right."""
    every = len(LOCATIONS)
    tables = {
        "six": _clips_table(tmp_path / "six.tsv", [6] * every),
        "eight": _clips_table(tmp_path / "eight.tsv", [8] * every),
        "half": _clips_table(tmp_path / "half.tsv", [10 if copy == 0 else 0 for _, copy in LOCATIONS]),
        "nine": _clips_table(tmp_path / "nine.tsv", [9] * every),
    }
    seeds = {
        (25, "float"): {"1": tables["six"], "2": tables["eight"]},
        (25, "int8"): {"1": tables["half"], "2": tables["half"]},
        (50, "float"): {"1": tables["nine"], "2": tables["nine"]},
        (50, "int8"): {"1": tables["nine"], "2": tables["eight"]},
    }
    return {
        "training_clips": {str(fraction): _training_clips(tmp_path / f"train{fraction}.tsv", count)
                           for fraction, count in ((25, 35), (50, 70))},
        "systems": [{"run": "small", "fraction": fraction, "precision": precision, "clips": clips}
                    for (fraction, precision), clips in seeds.items()],
    }  # fmt: skip


def test_data_efficiency_report_has_the_known_answers(efficiency_plan: dict, tmp_path: Path) -> None:
    out = {name: tmp_path / "out" / f"data_efficiency.{name}" for name in ("csv", "md", "png")}
    frame = write_data_efficiency(efficiency_plan, out["csv"], out["md"], out["png"])
    table = pd.read_csv(out["csv"])
    pd.testing.assert_frame_equal(table, frame, check_dtype=False)
    assert list(zip(table["fraction"], table["precision"], table["training_clips"], strict=True)) == [
        (25, "float", 35), (25, "int8", 35), (50, "float", 70), (50, "int8", 70)]  # fmt: skip
    assert set(table["interval_covers"]) == {"test locations and seeds (n=2)"}
    assert set(table["locations"]) == {20} and set(table["clips"]) == {200}
    # Constant per location: no bootstrap spread, only the seeds' t-interval, t(1) = 12.706 (two seeds): 0.7 +-
    # 1.27 and 0.85 +- 0.64, clipped to what an accuracy can be.
    row = table.iloc[0]
    assert (row["accuracy_pct"], row["accuracy_std_pct"], row["accuracy_low_pct"], row["accuracy_high_pct"]) == (
        70.0, 14.14, 0.0, 100.0)  # fmt: skip
    assert row["macro_accuracy_pct"] == 70.0
    half_width = 12.7062047 * np.std([0.9, 0.8], ddof=1) / np.sqrt(2)
    row = table.iloc[3]
    assert (row["accuracy_pct"], row["accuracy_std_pct"], row["accuracy_high_pct"]) == (85.0, 7.07, 100.0)
    assert row["accuracy_low_pct"] == pytest.approx(100 * (0.85 - half_width), abs=0.005)
    # Equal seeds, locations all right or all wrong: the bootstrap of 20 locations is Binomial(20, 0.5) / 20,
    # whose 2.5 % and 97.5 % quantiles are 6 and 14.
    row = table.iloc[1]
    assert (row["accuracy_pct"], row["accuracy_std_pct"], row["accuracy_low_pct"], row["accuracy_high_pct"]) == (
        50.0, 0.0, 30.0, 70.0)  # fmt: skip
    assert row["macro_accuracy_pct"] == 50.0
    assert (table.iloc[2]["accuracy_low_pct"], table.iloc[2]["accuracy_high_pct"]) == (90.0, 90.0)

    markdown = out["md"].read_text()
    ours, reference = markdown.split("## Reference, not this run: DCASE'24 Task 1 baseline (published)")
    assert "| small | split25 | 35 | 70.0 [0.0, 100.0] | 50.0 [30.0, 70.0] | 70.0 [0.0, 100.0] | 50.0 [" in ours
    assert "| small | split50 | 70 | 90.0 [90.0, 90.0] | 85.0 [" in ours
    assert ours.count("| small |") == 2  # two points per size
    assert "42.40" not in ours
    assert "| split5 | 42.40 ± 0.42 |" in reference and "| split100 | 56.99 ± 1.11 |" in reference
    assert "baseline" not in "".join(table["run"])  # the reference never enters this run's rows
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_seed_gets_the_location_interval_of_the_accuracy_itself(efficiency_plan: dict) -> None:
    for system in efficiency_plan["systems"]:
        system["clips"] = {"1": system["clips"]["1"]}
    frame = efficiency_frame(efficiency_plan)
    assert set(frame["interval_covers"]) == {"test locations only (1 seed)"} and set(frame["n_seeds"]) == {1}
    assert frame["accuracy_std_pct"].isna().all()  # one seed has no spread to show
    int8 = frame.iloc[1]
    assert (int8["accuracy_pct"], int8["accuracy_low_pct"], int8["accuracy_high_pct"]) == (50.0, 30.0, 70.0)
    assert (frame.iloc[0]["accuracy_low_pct"], frame.iloc[0]["accuracy_high_pct"]) == (60.0, 60.0)


def test_statistic_interval_is_the_difference_from_a_system_that_is_always_wrong(efficiency_plan: dict) -> None:
    """Two code paths, one answer: statistic(A) with its interval equals A - B where B never gets a clip right
    (its statistic is 0 in every resample), with the same resamples."""
    (system,) = [s for s in efficiency_plan["systems"] if (s["fraction"], s["precision"]) == (50, "int8")]
    a = System.read("a", system["clips"])
    wrong = {seed: clips.assign(prediction=(clips["label"] + 1) % len(SCENES)) for seed, clips in a.clips.items()}
    for name in ("accuracy", "macro_accuracy"):
        estimate = statistic_interval(a, name, resamples=2000)
        difference = paired_difference(a, System("never", wrong), name, resamples=2000)
        assert estimate.values == difference.values_a and estimate.estimate == pytest.approx(0.85)
        assert (estimate.low, estimate.high, estimate.test_low, estimate.test_high) == pytest.approx(
            (difference.low, difference.high, difference.test_low, difference.test_high), abs=1e-12)  # fmt: skip


def test_data_efficiency_plan_problems_are_one_line(efficiency_plan: dict) -> None:
    del efficiency_plan["training_clips"]["50"]
    with pytest.raises(PipelineError, match=r"^data-efficiency plan: fraction 50 has no training_clips entry$"):
        efficiency_frame(efficiency_plan)
    with pytest.raises(PipelineError, match=r"^data-efficiency plan: needs a non-empty list 'systems'$"):
        efficiency_frame({"training_clips": {}, "systems": []})


def test_snakemake_data_efficiency_trains_every_size_at_every_fraction(tmp_path: Path) -> None:
    """The tiny config with two fractions: every subset's own teachers, fusion and students, two points per size."""
    config = tiny_pipeline_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    config["data_efficiency"]["fractions"] = [25, 50]
    project = copy_project(tmp_path / "project", config)
    result = snakemake("-n", "--forceall", "--nolock", "data_efficiency", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts("data_efficiency", cwd=project)
    assert counts == {
        "generate_synthetic_dataset": 1, "synthesise_impulse_responses": 1, "validate_dataset": 1,
        "cache_waveforms": 2, "split_training_clips": 2, "energy_analysis": 2, "validation_subset": 1,
        "generate_pretraining_corpus": 1, "pretrain_weights": 2,  # pretrained once, whatever the subset
        "train_teacher": 4, "dump_teacher_logits": 4, "fuse_teachers": 2,  # 2 teachers per subset
        "train_student": 4, "qat_student": 4, "evaluate_student": 8,  # 2 sizes x 2 fractions x 1 seed, float + int8
        "report_data_efficiency": 1, "data_efficiency": 1,
    }  # fmt: skip
    trained = re.findall(r"output: results/(split\d+)/students/([\w.-]+)/s1/model\.pt", result.stdout)
    assert sorted(trained) == [("split25", "tiny-rn"), ("split25", "tiny-rnfreq"), ("split50", "tiny-rn"),
                               ("split50", "tiny-rnfreq")]  # fmt: skip
    assert "rule all" not in result.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data_efficiency: {runs: [sm1, sm9]}",
         r"^config: data_efficiency\.runs names student run 'sm9', which students\.runs does not define$"),
        ("submission: {run: sm4-typo}",
         r"^config: submission\.run names student run 'sm4-typo', which students\.runs does not define$"),
        ("submission: {seed: 5}",
         r"^config: submission\.seed 5 is not one of students\.seeds \[1\]: the submission sends a student the run "
         r"trains$"),
        ("data_efficiency: {fractions: [5, 20]}", r"^config: data_efficiency\.fractions\.1: 20 is not one of"),
        ("complexity: {precision: int4}", r"^config: complexity\.precision: 'int4' is not one of"),
        ("complexity: {max_macs: 0}", r"^config: complexity\.max_macs: 0 is less than the minimum of 1$"),
        ("complexity: {max_param_bytes: 128kB}",
         r"^config: complexity\.max_param_bytes: '128kB' is not of type 'integer'$"),
    ],
)
def test_dcase_settings_are_checked_before_any_job(tmp_path: Path, override: str, message: str) -> None:
    path = tmp_path / "override.yaml"
    path.write_text(override + "\n")
    with pytest.raises(PipelineError, match=message):
        load_config([REPO / "config.yaml", path], REPO / "workflow" / "schemas" / "config.schema.yaml")
