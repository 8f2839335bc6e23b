"""The SLURM profile on a real one-node cluster (munged, slurmctld, slurmd on 127.0.0.1): a small target of
the DAG is submitted through the Snakemake SLURM executor plugin and its outputs are checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_project, tiny_pipeline_config

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("munged", "slurmctld", "slurmd", "sbatch")),
        reason="Debian's slurm-wlm and munge are not installed (.ci/run installs them)",
    ),
    pytest.mark.skipif(
        not os.access("/etc/slurm" if Path("/etc/slurm").exists() else "/etc", os.W_OK),
        reason="the test cluster installs its configuration as /etc/slurm/slurm.conf (see tests/slurm/cluster.sh)",
    ),
]
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict]:
    state = tmp_path / "cluster"
    subprocess.run([CLUSTER, "start", state], check=True, timeout=120)
    try:
        yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf"),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    finally:
        subprocess.run([CLUSTER, "stop", state], check=True, timeout=60)


def test_profile_runs_jobs_on_the_cluster(tmp_path: Path, cluster: dict) -> None:
    repo = copy_project(tmp_path / "repo", tiny_pipeline_config(yaml.safe_load((REPO / "config.yaml").read_text())))
    # What a user does: fill in the partition (this cluster has no accounts to charge).
    profile = yaml.safe_load((repo / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = "debug"
    del profile["default-resources"]["slurm_account"]
    profile["slurm-no-account"] = True
    (repo / "profiles/slurm/config.yaml").write_text(yaml.safe_dump(profile))

    target = "results/split100/teachers/cpresnet-dir_fms-s1/history.csv"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks",
         "1", "--slurm-keep-successful-logs", target],
        cwd=repo, env=cluster, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # Every job went through sbatch (the plugin's line per submission; "Job" alone is in any Snakemake output).
    submitted = re.findall(r"^Job \d+ has been submitted with SLURM jobid \d+ ", output, flags=re.M)
    assert len(submitted) >= 3, output[-4000:]
    history = (repo / target).read_text().splitlines()
    assert history[0].startswith("epoch,") and len(history) == 2  # one epoch in the tiny configuration
    log_dir = repo / ".snakemake" / "slurm_logs"
    logs = {path.relative_to(log_dir).parts[0] for path in log_dir.rglob("*.log")}
    assert {"rule_generate_synthetic_dataset", "rule_cache_waveforms", "rule_train_teacher"} <= logs, logs
