"""The workflow profile (profiles/default): a failed job's reason reaches the terminal, not only its log."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

FAILING_RULE = """
rule broken:
    output:
        "out.txt",
    log:
        "logs/broken.log",
    shell:
        "echo 'data/audio/x.wav: 1 of 44100 samples are NaN or infinite' > {log}; exit 1"
"""


def _run(workflow: Path, *args: str) -> str:
    command = [sys.executable, "-m", "snakemake", "--cores", "1", *args]
    result = subprocess.run(command, cwd=workflow, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0
    return result.stdout + result.stderr


def test_failed_job_log_is_shown(tmp_path: Path) -> None:
    shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    (tmp_path / "Snakefile").write_text(FAILING_RULE)
    reason = "data/audio/x.wav: 1 of 44100 samples are NaN or infinite"
    shown = _run(tmp_path)
    assert "Using workflow specific profile profiles/default" in shown
    assert f"Logfile logs/broken.log:\n{'=' * 56}\n{reason}\n" in shown
    assert "Logfile logs/broken.log:" not in _run(tmp_path, "--workflow-profile", "none")  # Snakemake's default
