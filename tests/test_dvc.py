"""DVC versions a run: a tiny configuration is run, tracked, pushed to a local remote; one student setting
changes and only what depends on it reruns; `dvc metrics diff` shows the change; a second clone restores the
first run with `dvc pull` and `snakemake --touch` without recomputing anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_project, tiny_pipeline_config

pytestmark = pytest.mark.slow


def run(*command: str, cwd: Path, env: dict) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def snakemake(*args: str, cwd: Path, env: dict) -> str:
    return run(sys.executable, "-m", "snakemake", "--cores", "2", *args, cwd=cwd, env=env)


def commit(message: str, cwd: Path, env: dict) -> None:
    run("make", "-s", "track", cwd=cwd, env=env)
    tracked = [str(path.relative_to(cwd)) for path in cwd.glob("results/*.dvc")]
    run("git", "add", "config.yaml", "data.dvc", *tracked, cwd=cwd, env=env)
    run("git", "commit", "-qm", message, cwd=cwd, env=env)


@pytest.fixture
def env(tmp_path: Path) -> dict:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.org",
    }  # fmt: skip


def test_run_is_versioned_compared_and_restored(tmp_path: Path, env: dict) -> None:
    config = tiny_pipeline_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    repo = copy_project(tmp_path / "repo", config)
    # dvc.yaml names the plotted student runs: list this configuration's, as a user who changes the runs does.
    plots = yaml.safe_load((repo / "dvc.yaml").read_text())
    for plot in plots["plots"]:
        if isinstance(plot, dict):
            (definition,) = plot.values()
            (table,) = definition["y"]
            definition["y"][table] = list(config["students"]["runs"])
    (repo / "dvc.yaml").write_text(yaml.safe_dump(plots, sort_keys=False))
    run("git", "init", "-q", "-b", "main", cwd=repo, env=env)
    run("dvc", "remote", "add", "-d", "storage", str(tmp_path / "remote"), cwd=repo, env=env)
    run("git", "add", "-A", cwd=repo, env=env)
    run("git", "commit", "-qm", "project", cwd=repo, env=env)

    snakemake(cwd=repo, env=env)
    assert "Nothing to be done" in snakemake("-n", cwd=repo, env=env)
    # The run records its commit, seeds and wall time (a dry run adds nothing), which the docs' tables state.
    (invocation,) = json.loads((repo / "results/run.json").read_text())["invocations"]
    assert invocation["commit"] == run("git", "rev-parse", "--short", "HEAD", cwd=repo, env=env).strip()
    assert invocation["student_seeds"] == [1] and invocation["wall_seconds"] > 0
    run(sys.executable, "-m", "dsflexinet", "docs-results", "--readme", "README.md", "--page", "docs/results.md",
        "--figure", "docs/claims.png", cwd=repo, env=env)  # fmt: skip
    assert f"Run of commit {invocation['commit']} (`config.yaml`)" in (repo / "README.md").read_text()
    snakemake("--report", "report.html", cwd=repo, env=env)
    assert "Table II of the paper measured by this run" in (repo / "report.html").read_text()
    run("git", "checkout", "-q", "--", "README.md", "docs", cwd=repo, env=env)
    # Worker processes and threads change how fast, not what is computed: nothing reruns for them.
    hardware = tmp_path / "hardware.yaml"
    hardware.write_text(yaml.safe_dump({"compute": {"num_workers": 2, "threads": 2}}))
    assert "Nothing to be done" in snakemake("-n", "--configfile", str(hardware), cwd=repo, env=env)
    commit("first run", cwd=repo, env=env)
    run("dvc", "push", "-q", cwd=repo, env=env)
    first = json.loads((repo / "results/metrics.json").read_text())
    run("dvc", "plots", "show", "-q", "-o", str(tmp_path / "plots"), cwd=repo, env=env)
    page = (tmp_path / "plots" / "index.html").read_text()
    assert '"field": "epoch", "type": "quantitative"' in page and '"field": "device", "type": "nominal"' in page

    # One student setting changes: that student and the reports reading it rerun, nothing else.
    config["students"]["runs"]["tiny-rn"] = {"model": {"name": "dsflexinet_sm2"}}
    (repo / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    plan = snakemake("-n", "--quiet", "rules", cwd=repo, env=env)
    planned = {line.split()[0] for line in plan.splitlines() if line[:1].isalpha() and len(line.split()) == 2}
    assert {"train_student", "qat_student", "evaluate_student", "student_complexity", "report_metrics"} <= planned
    assert not planned & {"train_teacher", "dump_teacher_logits", "fuse_teachers", "cache_waveforms"}
    outputs = [line for line in snakemake("-n", cwd=repo, env=env).splitlines() if line.strip().startswith("output:")]
    assert any("students/tiny-rn/" in line for line in outputs)
    assert not any("students/tiny-rnfreq/" in line for line in outputs)
    snakemake(cwd=repo, env=env)
    commit("sm2 instead of sm1", cwd=repo, env=env)
    diff = run("dvc", "metrics", "diff", "HEAD~1", "HEAD", cwd=repo, env=env)
    assert "students.tiny-rn.params" in diff and "students.tiny-rnfreq.params" not in diff
    second = json.loads((repo / "results/metrics.json").read_text())
    assert second["students"]["tiny-rn"]["params"] > first["students"]["tiny-rn"]["params"]
    assert second["students"]["tiny-rnfreq"] == first["students"]["tiny-rnfreq"]

    # Another clone restores the first run from the remote, with nothing left to compute.
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path, env=env)
    run("git", "checkout", "-q", "HEAD~1", cwd=clone, env=env)
    run("dvc", "pull", "-q", cwd=clone, env=env)
    assert json.loads((clone / "results/metrics.json").read_text()) == first
    snakemake("--touch", cwd=clone, env=env)
    assert "Nothing to be done" in snakemake("-n", cwd=clone, env=env)
