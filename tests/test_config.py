"""Config files: YAML syntax errors name file, line and column; a run overrides part of a schedule; what must
stay complete (students.defaults, teacher schedules) still is."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from dsflexinet.config import (
    development_plan,
    float_run,
    load_config,
    read_config_file,
    student_runs,
    student_settings,
    student_spec,
    validate_config,
)
from dsflexinet.errors import PipelineError
from tests.conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT = REPO / "config.yaml"


def _override(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "override.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb: [1, 2\nc: 3\n",
         ("3:2: not valid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence started at line 2, "
         "column 4)")),
        ("a: 1\n\tb: 2\n", "2:1: not valid YAML: found character '\\t' that cannot start any token"),
        ("students:\n  runs:\n    sm4: {}\n   sm5: {}\n", ("4:4: not valid YAML: expected <block end>, but found "
         "'<block mapping start>' (while parsing a block mapping started at line 2, column 3)")),
        ("a: 1\n  b: 2\n", "2:4: not valid YAML: mapping values are not allowed here"),
    ],
)  # fmt: skip
def test_yaml_syntax_error_names_file_line_and_column(text: str, message: str, tmp_path: Path) -> None:
    path = _override(tmp_path, text)
    with pytest.raises(PipelineError) as failure:
        load_config([DEFAULT, path], SCHEMA)
    assert str(failure.value) == f"{path}:{message}"


def test_other_yaml_problems_stay_one_line(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"absent\.yaml: config file not found$"):
        read_config_file(tmp_path / "absent.yaml")
    with pytest.raises(PipelineError, match=r"override\.yaml: a config file must hold a mapping at the top level$"):
        read_config_file(_override(tmp_path, "- just\n- a list\n"))


def test_a_run_overrides_part_of_a_schedule(tmp_path: Path) -> None:
    config = load_config([DEFAULT, _override(tmp_path, "students: {runs: {sm4: {schedule: {epochs: 2}}}}\n")], SCHEMA)
    defaults = config["students"]["defaults"]["schedule"]
    assert student_spec(config, "sm4", 1)["schedule"] == defaults | {"epochs": 2}
    assert student_spec(config, "sm1", 1)["schedule"] == defaults  # other runs keep the defaults
    assert len(defaults) == 9 and defaults["epochs"] == 16


def test_a_run_overrides_part_of_the_label_weight(tmp_path: Path) -> None:
    text = "students: {runs: {sm4: {distillation: {label_weight: {end: 0.2}}}}}\n"
    config = load_config([DEFAULT, _override(tmp_path, text)], SCHEMA)
    assert student_spec(config, "sm4", 1)["distillation"]["label_weight"] == {"schedule": "linear", "start": 0.5,
                                                                          "end": 0.2}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("students: {runs: {sm4: {schedule: {epochs: 0}}}}", ("students.runs.sm4.schedule.epochs: 0 is less than "
         "the minimum of 1")),
        ("students: {runs: {sm4: {schedule: {epoch: 2}}}}", ("unknown key 'students.runs.sm4.schedule.epoch' "
         "(allowed here: batch_size, epochs, lr, min_lr_factor, rampdown_epochs, rampdown_start, validate_last_epochs, "
         "warmup_epochs, "
         "weight_decay)")),
        ("students: {runs: {sm4: {distillation: {label_weight: {end: 2}}}}}",
         "students.runs.sm4.distillation.label_weight.end: 2 is greater than the maximum of 1"),
        # naming the kind of schedule gives a whole one
        ("students: {runs: {sm4: {distillation: {label_weight: {schedule: linear, end: 0.3}}}}}",
         "students.runs.sm4.distillation.label_weight: 'start' is a required property"),
        ("students: {runs: {sm4: {distillation: {label_weight: {schedule: constant, value: 0.3, end: 0.1}}}}}",
         "unknown key 'students.runs.sm4.distillation.label_weight.end' (allowed here: schedule, value)"),
        ("students: {runs: {sm4: {distillation: {label_weight: {}}}}}",
         "students.runs.sm4.distillation.label_weight: {} should be non-empty"),
        # implausible settings that used to pass: a diverging rate, a path-like run name, a duplicated teacher
        ("students: {defaults: {schedule: {lr: 1.0e+9}}}",
         "students.defaults.schedule.lr: 1000000000.0 is greater than the maximum of 1"),
        ("students: {runs: {'..': {}}}", "students.runs: '..' does not match '^[A-Za-z0-9_][A-Za-z0-9_.-]*$'"),
        ("teachers: {seeds: [1, 1, 2]}", "teachers.seeds: [1, 1, 2] has non-unique elements"),
        ("data: {clip_seconds: 0.0001}", "data.clip_seconds: 0.0001 is less than the minimum of 0.25"),
    ],
)  # fmt: skip
def test_override_errors_name_the_key(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as failure:
        load_config([DEFAULT, _override(tmp_path, text + "\n")], SCHEMA)
    assert str(failure.value) == f"config: {message}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["students"]["defaults"].update(schedule={"epochs": 2}),
         "students.defaults.schedule: 'batch_size' is a required property"),
        (lambda c: c["teachers"]["architectures"]["cpresnet"].update(schedule={"epochs": 3}),
         "teachers.architectures.cpresnet.schedule: 'batch_size' is a required property"),
        (lambda c: c["students"]["defaults"]["distillation"].update(label_weight={"end": 0.2}),
         "students.defaults.distillation.label_weight: 'schedule' is a required property"),
        (lambda c: c["students"]["defaults"]["distillation"].update(label_weight={"schedule": "constant"}),
         "students.defaults.distillation.label_weight: 'value' is a required property"),
    ],
)  # fmt: skip
def test_defaults_and_teacher_schedules_stay_complete(change, message: str) -> None:
    config = load_config([DEFAULT], SCHEMA)
    change(config)
    with pytest.raises(PipelineError) as failure:
        validate_config(config, SCHEMA)
    assert str(failure.value) == f"config: {message}"


def test_merged_run_settings_must_be_a_complete_student(tmp_path: Path) -> None:
    """The config schema cannot see the default a partial override lands on: `{value: 0.3}` is a valid change of a
    constant weight, but merged onto this linear default it would be a linear schedule with a stray `value` that
    nothing reads. The merged settings of every run are checked against `$defs/complete_student`."""
    definitions = yaml.safe_load(SCHEMA.read_text())["$defs"]
    complete = jsonschema.Draft202012Validator({"$defs": definitions, "$ref": "#/$defs/complete_student"})
    config = load_config([DEFAULT, _override(tmp_path, "students: {runs: {sm1: {schedule: {epochs: 2}}}}\n")], SCHEMA)
    assert all(complete.is_valid(student_settings(config, run)) for run in config["students"]["runs"])
    text = "students: {runs: {sm4: {distillation: {label_weight: {value: 0.3}}}}}\n"
    with pytest.raises(PipelineError) as failure:
        load_config([DEFAULT, _override(tmp_path, text)], SCHEMA)
    assert str(failure.value) == (
        "config: unknown key 'students.runs.sm4 (merged onto the defaults).distillation.label_weight.value'"
        " (allowed here: end, schedule, start)"
    )


def test_a_run_naming_its_schedule_kind_replaces_the_default(tmp_path: Path) -> None:
    text = "students: {runs: {sm4: {distillation: {label_weight: {schedule: constant, value: 0.3}}}}}\n"
    config = load_config([DEFAULT, _override(tmp_path, text)], SCHEMA)
    assert student_spec(config, "sm4", 1)["distillation"]["label_weight"] == {"schedule": "constant", "value": 0.3}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["teachers"]["architectures"]["passt"]["model"].update(name="passt_tinny"),
         "teachers.architectures.passt.model.name: unknown model 'passt_tinny' (choose from "),
        (lambda c: c["students"]["runs"].update({"sm4": {"model": {"options": {"nrom": "batchnorm"}}}}),
         "students.runs.sm4.model.options: dsflexinet_sm4 takes no option 'nrom' (it takes norm, n_classes)"),
        (lambda c: c["students"]["runs"].update({"sm2": {"frontend": {"preset": "passt"}}}),
         "students.runs.sm2.frontend.preset is 'passt' but dsflexinet_sm4 is fed by the 'student' frontend"),
        (lambda c: c["students"]["defaults"]["qat"].update(epochs=2, freeze_last_epochs=2),
         "students.runs.sm1.qat: freeze_last_epochs (2) must be smaller than epochs (2)"),
        (lambda c: c["reports"]["table4"].update(Fused="sm4-fused"),
         "reports.table4.Fused names student run 'sm4-fused', which students.runs does not define"),
        (lambda c: c["reports"].update(table2=["sm1", "sm5"]),
         "reports.table2 names student run 'sm5', which students.runs does not define"),
        (lambda c: c["teachers"]["fusion"].update(holdout_fraction=0),
         "teachers.fusion: fit 'holdout' needs a holdout_fraction above 0"),
        (lambda c: (c["teachers"]["architectures"]["passt"]["model"].update(name="passt_s"),
                    c["teachers"]["architectures"]["passt"].pop("pretrained")),
         "teachers.architectures.passt: passt_s starts from pretrained weights in the paper; set pretrained to a key"),
        (lambda c: c["teachers"]["architectures"]["passt"].update(pretrained="passt_s_imagenet"),
         "teachers.architectures.passt.pretrained: 'passt_s_imagenet' is not a key of weights (passt_corpus,"
         " cpresnet_corpus)"),
        (lambda c: c["teachers"]["architectures"]["cpresnet"].update(pretrained="passt_corpus"),
         "teachers.architectures.cpresnet.pretrained: weights.passt_corpus pretrains a passt_tiny, not this"
         " cp_resnet"),
        (lambda c: c["weights"]["cpresnet_corpus"].update(pretrain="cp_resnet"),
         "weights.cpresnet_corpus.pretrain: 'cp_resnet' is not a teacher architecture (passt, cpresnet)"),
    ],
)  # fmt: skip
def test_job_settings_are_checked_before_any_job_runs(change, message: str) -> None:
    """What the schema cannot see (model names and options against the registry, a run's frontend, QAT epochs,
    report names) fails when the DAG is built, before Snakemake removes any old output."""
    config = load_config([DEFAULT], SCHEMA)
    change(config)
    with pytest.raises(PipelineError) as failure:
        validate_config(config, SCHEMA)
    assert str(failure.value).startswith(f"config: {message}") and "\n" not in str(failure.value)


def test_real_run_starts_passt_from_its_verified_checkpoint() -> None:
    from dsflexinet.config import teacher_spec

    config = load_config([DEFAULT, REPO / "config" / "tau22.yaml"], SCHEMA)
    spec = teacher_spec(config, "passt-fms-s1")
    assert spec["model"]["options"]["pretrained_path"] == "data-tau22/weights/passt_s_audioset.pt"
    assert "pretrained_path" not in teacher_spec(config, "cpresnet-fms-s1")["model"].get("options", {})
    config["teachers"]["architectures"]["passt"]["pretrained"] = "none"  # from scratch, explicitly
    validate_config(config, SCHEMA)
    assert "pretrained_path" not in teacher_spec(config, "passt-fms-s1")["model"]["options"]


def test_a_dry_run_stops_at_a_wrong_model_name() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--nolock", "--config", "students={'runs': {'sm1': {'model': "
         "{'name': 'dsflexinet_sm9'}}}}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "config: students.runs.sm1.model.name: unknown model 'dsflexinet_sm9'" in result.stdout + result.stderr


def test_check_config_names_the_line_snakemake_would_not(tmp_path: Path, capsys) -> None:
    from dsflexinet.cli import main

    schema = ["--base", str(DEFAULT), "--schema", str(SCHEMA)]
    assert main(["check-config", str(_override(tmp_path, "compute: {threads: 2}\n")), *schema]) == 0
    broken = _override(tmp_path, "students:\n  runs: {sm4: {schedule: {epochs: 2}}\n")
    assert main(["check-config", str(broken), *schema]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {broken}:3:1: not valid YAML") and "\n" not in error


def test_a_broken_config_yaml_stops_the_workflow_with_its_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import copy_project

    project = copy_project(tmp_path / "project")
    lines = (project / "config.yaml").read_text().splitlines()
    line = next(number for number, content in enumerate(lines, 1) if content.startswith("  seeds: [1]"))
    lines[line - 1] = "  seeds: [1"
    (project / "config.yaml").write_text("\n".join(lines) + "\n")
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n"], cwd=project, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode != 0
    assert f"config.yaml:{line + 1}:" in result.stdout + result.stderr, result.stderr[-2000:]


def test_a_config_error_stops_snakemake_before_any_old_output_is_removed(tmp_path: Path) -> None:
    """Snakemake removes the outputs of the jobs it is about to rerun; a wrong setting must stop it before."""
    import subprocess
    import sys

    from tests.conftest import copy_project

    project = copy_project(tmp_path / "project")
    old = project / "results" / "metrics.json"
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text('{"old": true}\n')
    override = _override(tmp_path, "students: {defaults: {schedule: {lr: 1.0e+9}}}\n")
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--forceall", "--configfile",
                             str(override)], cwd=project, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode != 0
    assert "config: students.defaults.schedule.lr: 1000000000.0 is greater than the maximum of 1" in result.stderr
    assert "Job stats" not in result.stdout + result.stderr  # stopped while parsing: no job was planned
    assert old.read_text() == '{"old": true}\n'


DEVELOPMENT = REPO / "config" / "development.yaml"


def test_development_candidates_are_the_baseline_with_one_setting_changed() -> None:
    """Each candidate is sm4 with the candidate's keys merged on; a QAT-only candidate quantizes sm4's own float
    model, and the plan compares it in int8; nothing of the candidates exists outside a development run."""
    config = load_config([DEFAULT, DEVELOPMENT], SCHEMA)
    runs = student_runs(config)
    assert len(runs) == len(config["students"]["runs"]) + 9
    baseline = student_settings(config, "sm4")
    constant = student_settings(config, "sm4-lambda-constant-0.02")
    assert constant["distillation"]["label_weight"] == {"schedule": "constant", "value": 0.02}
    assert {key: value for key, value in constant.items() if key != "distillation"} == {
        key: value for key, value in baseline.items() if key != "distillation"}  # fmt: skip
    assert student_settings(config, "sm4-lr-1.5e-3")["schedule"] == baseline["schedule"] | {"lr": 1.5e-3}
    assert float_run(config, "sm4-qat-lr-5e-5") == "sm4" and float_run(config, "sm4-lr-6e-3") == "sm4-lr-6e-3"
    assert student_spec(config, "sm4-qat-lr-5e-5", 1) == student_spec(config, "sm4", 1)  # the same float training
    plan = development_plan(config, lambda run, precision: f"{run}/{precision}.tsv")
    assert list(plan) == ["label_weight", "lr", "batch_size", "qat_lr", "teacher_targets"]
    assert plan["teacher_targets"]["baseline"]["values"] == {"teachers": "fused"}
    assert student_spec(config, "sm4-crossfit", 1)["distillation"]["teachers"] == "fused_cross_fit"
    assert student_spec(config, "sm4-crossfit", 1) | {"distillation": None} == student_spec(config, "sm4", 1) | {
        "distillation": None}  # fmt: skip
    assert plan["qat_lr"]["precision"] == "int8" and plan["qat_lr"]["baseline"]["clips"] == "sm4/int8.tsv"
    assert plan["qat_lr"]["baseline"]["values"] == {"qat": {"lr": 1.0e-4}}
    assert plan["label_weight"]["baseline"]["values"] == {
        "distillation": {"label_weight": {"schedule": "linear", "start": 0.5, "end": 0.1}}}  # fmt: skip
    assert plan["batch_size"]["candidates"]["sm4-batch-64"] == {"clips": "sm4-batch-64/float.tsv",
                                                                "values": {"schedule": {"batch_size": 64}}}
    default = load_config([DEFAULT], SCHEMA)
    assert student_runs(default) == default["students"]["runs"] and development_plan(default, None) == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(validation="test"), "development: candidates are compared on the fusion hold-out"),
        (lambda c: c["development"].update(baseline="sm5"),
         "development.baseline names student run 'sm5', which students.runs does not define"),
        (lambda c: c["development"]["candidates"]["lr"].update({"sm4-nokd": {"schedule": {"lr": 1.0e-3}}}),
         "development.candidates.lr.sm4-nokd: the name of a candidate must differ from every student run"),
    ],
)  # fmt: skip
def test_development_candidates_are_checked(change, message: str) -> None:
    config = load_config([DEFAULT, DEVELOPMENT], SCHEMA)
    change(config)
    with pytest.raises(PipelineError) as failure:
        validate_config(config, SCHEMA)
    assert str(failure.value).startswith(f"config: {message}")


def test_a_misspelt_candidate_setting_names_its_key(tmp_path: Path) -> None:
    text = "development: {candidates: {lr: {sm4-fast: {schedule: {lrr: 1.0e-2}}}}}\n"
    with pytest.raises(PipelineError, match=r"development\.candidates\.lr\.sm4-fast\.schedule.*lrr"):
        load_config([DEFAULT, DEVELOPMENT, _override(tmp_path, text)], SCHEMA)
