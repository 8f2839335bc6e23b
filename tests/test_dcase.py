"""The DCASE workflow: complexity limits enforced by each student's complexity job, the challenge submission of
one int8 student, the data-efficiency curve over the DCASE'24 training subsets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dsflexinet.cli import main
from tests.conftest import REPO, copy_project, tiny_pipeline_config

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
