"""The Snakemake DAG: dry runs list the expected jobs, lint is clean, the config schema catches typos."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from dsflexinet.config import load_config, student_spec, teacher_spec, validate_config
from dsflexinet.errors import PipelineError
from tests.conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def job_counts(*args: str, cwd: Path = REPO) -> dict[str, int]:
    """The 'Job stats' table of a forced dry run: every job of the DAG, whatever already exists."""
    result = snakemake("-n", "--forceall", "--nolock", *args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout.split("Job stats:")[1].split("\n\n")[0]
    counts = {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}
    assert counts.pop("total") == sum(counts.values())
    return counts


# Every job one float student and its int8 model need from the raw data: the teachers, their fusion and the student.
ONE_STUDENT_JOBS = {
    "generate_synthetic_dataset": 1, "synthesise_impulse_responses": 1, "validate_dataset": 1,
    "cache_waveforms": 2, "split_training_clips": 1, "energy_analysis": 1, "validation_subset": 1,
    "generate_pretraining_corpus": 1, "pretrain_weights": 2,
    "train_teacher": 12, "dump_teacher_logits": 12, "fuse_teachers": 1,
    "train_student": 1, "qat_student": 1, "evaluate_student": 1, "student_complexity": 1,
}  # fmt: skip


# The jobs of cross-fitted targets (a student run with `teachers: fused_cross_fit`): the 12 teachers trained and
# dumped once per fold, one cross-fitted logit file per teacher, their fusion.
CROSS_FIT_JOBS = {
    "cross_fit_folds": 1, "train_teacher_fold": 2 * 12, "dump_teacher_fold_logits": 2 * 12,
    "cross_fit_teacher_logits": 12, "fuse_cross_fit_teachers": 1,
}  # fmt: skip


def test_default_dag_has_every_step_of_the_paper() -> None:
    counts = job_counts()
    assert counts == {
        "generate_synthetic_dataset": 1, "synthesise_impulse_responses": 1, "validate_dataset": 1,
        "cache_waveforms": 2, "split_training_clips": 1, "energy_analysis": 1,
        "validation_subset": 1,  # the test locations every per-epoch curve reads
        "generate_pretraining_corpus": 1, "pretrain_weights": 2,  # one checkpoint per teacher architecture
        "train_teacher": 12, "dump_teacher_logits": 12, "fuse_teachers": 1,  # 2 architectures x 2 recipes x 3 seeds
        "train_student": 11, "qat_student": 11, "evaluate_student": 22, "student_complexity": 11,
        "report_table": 4, "report_confusion": 2, "report_claims": 1, "report_metrics": 1, "all": 1,
    }  # fmt: skip


def test_jobs_on_the_long_path_start_first() -> None:
    """When more jobs are ready than cores, Snakemake starts the higher priority first: the data chain, then
    teachers and their fusion, students, QAT, evaluations, and whatever is left (complexity, reports)."""
    result = snakemake("-n", "--forceall", "--nolock")
    assert result.returncode == 0, result.stdout + result.stderr
    priorities: dict[str, set[int]] = {}
    for block in re.split(r"^\[.*\]$", result.stdout, flags=re.M):  # each job's block starts with its time
        rule = re.search(r"^(?:local)?rule (\w+):", block, flags=re.M)
        if rule:
            priority = re.search(r"^\s+priority: (\d+)$", block, flags=re.M)
            priorities.setdefault(rule.group(1), set()).add(int(priority.group(1)) if priority else 0)
    assert all(len(values) == 1 for values in priorities.values()), priorities
    order = [
        ["generate_synthetic_dataset", "synthesise_impulse_responses", "validate_dataset", "cache_waveforms",
         "split_training_clips", "validation_subset", "energy_analysis"],
        ["train_teacher", "dump_teacher_logits", "fuse_teachers"],
        ["train_student"], ["qat_student"], ["evaluate_student"],
        ["student_complexity", "report_table", "report_confusion", "report_claims", "report_metrics"],
    ]  # fmt: skip
    levels = [{priorities[rule].pop() for rule in rules} for rules in order]
    assert all(len(level) == 1 for level in levels), levels
    assert [level.pop() for level in levels] == [50, 40, 30, 20, 10, 0]


def test_real_data_dag_downloads_everything() -> None:
    counts = job_counts("--configfile", "config/tau22.yaml")
    assert counts["download_tau22_archive"] == 17  # 16 audio zips and the meta zip
    assert counts["extract_tau22"] == 1
    assert counts["fetch_micirp"] == 1
    assert counts["fetch_weights"] == 1  # PaSST-S's AudioSet checkpoint, verified, before its six teachers
    assert "generate_synthetic_dataset" not in counts
    assert "validation_subset" not in counts  # the real run's curves read the whole test split


def test_lint_is_clean() -> None:
    result = snakemake("--lint")
    output = result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in output and "Lints for" not in output, output


def test_config_typo_stops_the_workflow_with_the_key() -> None:
    result = snakemake("-n", "--nolock", "--config", "data={'sourse': 'synthetic'}")
    assert result.returncode != 0
    assert "config: unknown key 'data.sourse'" in result.stdout + result.stderr


def test_both_configs_are_valid() -> None:
    default = load_config([REPO / "config.yaml"], SCHEMA)
    real = load_config([REPO / "config.yaml", REPO / "config" / "tau22.yaml"], SCHEMA)
    assert default["data"]["source"] == "synthetic" and real["data"]["source"] == "download"
    assert real["data"]["splits"] == default["data"]["splits"]  # merged, not replaced
    shorter = load_config([REPO / "config.yaml", REPO / "config" / "students-8-epochs.yaml"], SCHEMA)
    assert shorter["students"]["defaults"]["schedule"]["epochs"] == 8
    assert shorter["students"]["defaults"]["schedule"]["lr"] == default["students"]["defaults"]["schedule"]["lr"]


def test_job_specs_are_copies_of_the_config() -> None:
    config = load_config([REPO / "config.yaml"], SCHEMA)
    for spec in (teacher_spec(config, "cpresnet-fms-s1"), student_spec(config, "sm2", 1)):
        spec["schedule"]["epochs"] = 999
        spec["augment"]["freq_mixstyle"]["p"] = 0.99
    assert config["teachers"]["architectures"]["cpresnet"]["schedule"]["epochs"] == 20
    assert config["teachers"]["architectures"]["cpresnet"]["freq_mixstyle"]["p"] == 0.4
    assert config["students"]["defaults"]["schedule"]["epochs"] == 16


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["data"]["synthetic"].update(seeed=1), r"unknown key 'data\.synthetic\.seeed' \(allowed here: "),
        (lambda c: c["data"].update(source="zenodo"), r"data\.source: 'zenodo' is not one of"),
        (lambda c: c["data"].update(sample_rate="32k"), r"data\.sample_rate: '32k' is not of type 'integer'"),
        (lambda c: c["data"].pop("splits"), r"data: 'splits' is a required property"),
        (lambda c: c["compute"].update(accelerator="gpu", devices=2),
         r"compute\.devices is 2 but resources\.train\.gpu asks for 0 GPU\(s\) per training job"),
    ],
)
def test_schema_errors_are_one_line(change, message: str) -> None:
    config = load_config([REPO / "config.yaml"], SCHEMA)
    change(config)
    with pytest.raises(PipelineError, match=message) as error:
        validate_config(config, SCHEMA)
    assert "\n" not in str(error.value)


def test_conda_environment_pins_match_pyproject() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    environment = yaml.safe_load((REPO / "envs" / "pipeline.yaml").read_text())
    conda_pins = set(next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict)))
    workflow_only = {"snakemake", "snakemake-executor-plugin-slurm", "dvc", "pytest"}  # not needed inside jobs
    assert conda_pins == {pin for pin in pyproject if pin.split("==")[0] not in workflow_only}
    lock = set((REPO / "requirements.lock").read_text().split())
    assert set(pyproject) <= lock


def test_shared_students_train_once() -> None:
    """sm4 (RN + FMS + ADIR, fused KD) is a row of Tables II, IV and V and Fig. 3: one job."""
    result = snakemake("-n", "--forceall", "--nolock", "results/tables/table2.csv", "results/tables/table4.csv",
                       "results/tables/table5.csv", "results/figures/fig3_confusion_channel.png")  # fmt: skip
    assert result.stdout.count("results/split100/students/sm4/s1/model.pt") >= 1
    trained = re.findall(r"output: results/split100/students/([\w.-]+)/s1/model\.pt", result.stdout)
    assert sorted(trained) == sorted(set(trained)) and "sm4" in trained


def test_dvc_plots_cover_every_student_run() -> None:
    config = load_config([REPO / "config.yaml"], SCHEMA)
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    for plot in plots:
        if isinstance(plot, dict):
            (definition,) = plot.values()
            (columns,) = definition["y"].values()
            assert columns == list(config["students"]["runs"])


def test_table_rows_keep_the_order_of_their_report_section() -> None:
    """Table IV lists w/o teachers, averaged, fused, as config.yaml's reports.table4 does (not alphabetically)."""
    result = snakemake("-n", "--forceall", "--nolock", "-p", "results/tables/table4.md")
    assert result.returncode == 0, result.stderr[-2000:]
    command = next(line for line in result.stdout.splitlines() if "report-table table4" in line)
    labels = re.findall(r'"(Teacher\(w/o\)|Averaged|Fused)":', command)
    assert labels == ["Teacher(w/o)", "Averaged", "Fused"]


def test_every_student_run_is_trained_once_per_seed(tmp_path: Path) -> None:
    """students.seeds: each run's training, QAT and evaluations once per seed; teachers and shared jobs once."""
    seeds = tmp_path / "seeds.yaml"
    seeds.write_text("students: {seeds: [1, 2]}\n")
    counts = job_counts("--configfile", str(seeds))
    assert counts["train_student"] == 2 * 11 and counts["qat_student"] == 2 * 11
    assert counts["evaluate_student"] == 2 * 22 and counts["train_teacher"] == 12 and counts["fuse_teachers"] == 1
    assert counts["report_table"] == 4 and counts["report_claims"] == 1


def test_development_run_validates_on_the_holdout_and_builds_no_test_report() -> None:
    """config/development.yaml: students learn from the teachers' share, every training job validates on the
    fusion hold-out, the run ends in development.json, and a report that reads training curves is refused."""
    counts = job_counts("--configfile", "config/development.yaml")
    assert counts == {
        "generate_synthetic_dataset": 1, "synthesise_impulse_responses": 1, "validate_dataset": 1,
        "cache_waveforms": 2, "split_training_clips": 1, "energy_analysis": 1,
        "generate_pretraining_corpus": 1, "pretrain_weights": 2,
        # 11 student runs and 7 candidate settings, each trained; sm4 and two QAT-only candidates quantized from
        # sm4's float model and scored in int8 too
        "train_teacher": 12, "dump_teacher_logits": 12, "fuse_teachers": 1, "train_student": 11 + 7,
        "qat_student": 3, "evaluate_student_holdout": 11 + 7 + 3, "ensemble_holdout": 1,
        # sm4-crossfit's cross-fitted targets: the 12 teachers again per fold of the students' locations
        **CROSS_FIT_JOBS,
        "report_development": 1, "report_power": 1, "all": 1,
    }  # fmt: skip
    result = snakemake("-n", "--forceall", "--nolock", "-p", "--configfile", "config/development.yaml")
    training = [line for line in result.stdout.splitlines() if " -m dsflexinet" in line and " train " in line]
    assert len(training) == 12 + 11 + 7 + 24
    qat = [line for line in result.stdout.splitlines() if " -m dsflexinet" in line and " qat " in line]
    assert len(qat) == 3 and all("--float-model results/development/split100/students/sm4/s1/model.pt" in line
                                 for line in qat)  # fmt: skip
    (report,) = [line for line in result.stdout.splitlines() if " report-development " in line]
    assert "sm4-lambda-constant-0.02/s1/holdout_float_clips.tsv" in report
    assert "sm4-qat-lr-5e-5/s1/holdout_int8_clips.tsv" in report and "sm4/s1/holdout_int8_clips.tsv" in report
    holdout, teacher_share = "results/development/split100/splits/fusion_holdout.tsv", "teacher_train.tsv"
    assert all(f"--validation-clips {holdout}" in line for line in training)
    folds = [line for line in training if "--work-dir results/development/split100/cross_fit/fold" in line]
    assert len(folds) == 24 and all(f"--validation-clips {holdout}" in line for line in folds)
    assert all(f"--train-clips results/development/split100/splits/{teacher_share}" in line
               for line in training if line not in folds)  # fmt: skip
    # The folds split the students' clips, the teachers' share: the hold-out stays unseen by every teacher.
    (split,) = [line for line in result.stdout.splitlines() if " cross-fit-folds " in line]
    assert f"--student-clips results/development/split100/splits/{teacher_share}" in split
    # Apart from the default run's outputs: nothing of results/split100/ is written or read.
    assert "results/split100/" not in result.stdout and "results/development/development.json" in result.stdout
    # The teachers' margin over the student on labels alone (Table IV's Teacher(w/o)), paired clip by clip.
    margin = "--ensemble-clips results/development/split100/ensemble/holdout_fused_clips.tsv --labels-only-clips"
    assert f"{margin} results/development/split100/students/sm4-nokd/s1/holdout_float_clips.tsv" in result.stdout
    # The power analysis that sizes the default run's test split reads the hold-out's tables, never the test's.
    power = next(line for line in result.stdout.splitlines() if " -m dsflexinet power " in line)
    assert "holdout_float_clips.tsv" in power and "eval_float_clips" not in power and "KD: Fused > Averaged" in power
    refused = snakemake("-n", "--nolock", "results/tables/table4.md", "--configfile", "config/development.yaml")
    assert refused.returncode != 0
    assert "the training curves are on the fusion hold-out" in refused.stdout + refused.stderr
    default = snakemake("-n", "--forceall", "--nolock", "-p")
    # The default run's curves read the fixed test locations, rows of the test cache; nothing of the hold-out.
    jobs = [line for line in default.stdout.splitlines()
            if " -m dsflexinet" in line and (" train " in line or " qat " in line)]  # fmt: skip
    assert len(jobs) == 12 + 11 + 11 and default.stdout.count("splits/train.tsv") >= 11
    subset = "--validation-clips results/splits/test_validation.tsv --validation-cache results/cache/test.npy"
    assert all(subset in line for line in jobs) and "fusion_holdout.tsv --" not in " ".join(jobs)
    # The default run fits the fusion on the hold-out locations alone, which no teacher trained on.
    (fuse,) = [line for line in default.stdout.splitlines() if " -m dsflexinet" in line and " fuse " in line]
    assert "--fit holdout --fit-clips results/split100/splits/fusion_holdout.tsv " in fuse
    teachers = [line for line in default.stdout.splitlines() if " train " in line and "/teachers/" in line]
    assert len(teachers) == 12
    assert all("--train-clips results/split100/splits/teacher_train.tsv " in line for line in teachers)


def test_cross_fitted_targets_train_each_teacher_again_per_fold(tmp_path: Path) -> None:
    """A student run with `teachers: fused_cross_fit` adds the fold teachers (same spec and weights as the full
    ones, on the student clips outside their fold), one cross-fitted logit file per teacher and one fusion, which
    it learns from; the default DAG (above) has none of them."""
    overlay = tmp_path / "cross_fit.yaml"
    overlay.write_text("students: {runs: {sm4-crossfit: {teachers: fused_cross_fit}}}\n")
    default = job_counts()
    counts = job_counts("--configfile", str(overlay))
    added = {name: count - default.get(name, 0) for name, count in counts.items() if count != default.get(name, 0)}
    assert added == CROSS_FIT_JOBS | {"train_student": 1, "qat_student": 1, "evaluate_student": 2,
                                      "student_complexity": 1}  # fmt: skip
    target = "results/split100/students/sm4-crossfit/s1/model.pt"
    result = snakemake("-n", "--forceall", "--nolock", "-p", target, "--configfile", str(overlay))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if " -m dsflexinet" in line]
    specs = {}
    for line in lines:
        if " train " in line and "/teachers/" in line:
            name = re.search(r"teachers/([\w-]+)/model\.pt", line).group(1)
            fold = re.search(r"cross_fit/fold(\d)/", line)
            specs.setdefault(name, {})[fold and fold.group(1)] = re.search(r"--spec ('[^']*')", line).group(1)
            if fold:
                assert f"--train-clips results/split100/cross_fit/splits/teacher_train_fold{fold.group(1)}.tsv" in line
    assert len(specs) == 12 and all(len(set(by_fold.values())) == 1 and len(by_fold) == 3 for by_fold in specs.values())
    assert all("pretrained_path" in spec for by_fold in specs.values() for spec in by_fold.values())
    (split,) = [line for line in lines if " cross-fit-folds " in line]
    assert "--student-clips results/split100/splits/train.tsv" in split
    (fuse,) = [line for line in lines if " fuse " in line]
    assert "--cross-fitted" in fuse and "--out-fused results/split100/cross_fit/ensemble/fused.npz" in fuse
    assert "--fit-clips results/split100/splits/fusion_holdout.tsv" in fuse
    assert fuse.count("results/split100/cross_fit/teachers/") == 12
    (student,) = [line for line in lines if " train " in line and "/students/" in line]
    assert "--teacher-logits results/split100/cross_fit/ensemble/fused.npz" in student
