"""results/run.json: which commit, machine, seeds and wall time produced a run's results.

The Snakefile calls `start_invocation` when a `snakemake` invocation starts and `finish_invocation` when it ends
without error; each successful invocation is appended, so a run resumed after an interruption, or extended by
`--configfile config/seeds.yaml`, lists every part. The machine is the host that ran `snakemake` (on a cluster,
the submitting host; the machines that trained and measured each model are in its evaluation files).
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from dsflexinet.atomic import read_json, write_json
from dsflexinet.machine import describe_machine


def git_commit(repository: str | Path) -> str:
    """`git describe --always --dirty` of the checkout, or "unknown" outside a git checkout."""
    try:
        result = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=repository, capture_output=True,
                                text=True, check=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def start_invocation(repository: str | Path, config: dict, config_files: list[str]) -> dict:
    """What is known when an invocation starts: its commit, time, seeds and config files."""
    return {
        "commit": git_commit(repository),
        "started": _utc(time.time()),
        "started_monotonic": time.monotonic(),
        "student_seeds": list(config["students"]["seeds"]),
        "config_files": ["config.yaml", *(_inside(path, repository) for path in config_files)],
    }


def _inside(path: str | Path, repository: str | Path) -> str:
    """A config file as the checkout names it (`config/seeds.yaml`): a run record names no machine's folders."""
    resolved, root = Path(path).resolve(), Path(repository).resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


def finish_invocation(record: dict, out: str | Path, cores: int | None) -> dict:
    """Append a finished invocation (wall time, cores, machine) to run.json and return the file's content. The
    machine's torch threads are left out: they are the scheduler process's, not the jobs'."""
    invocation = {key: value for key, value in record.items() if key != "started_monotonic"}
    invocation |= {
        "finished": _utc(time.time()),
        "wall_seconds": round(time.monotonic() - record["started_monotonic"], 1),
        "cores": cores,
        "machine": {key: value for key, value in describe_machine().items() if key != "threads"},
    }
    path = Path(out)
    previous = read_json(path)["invocations"] if path.is_file() else []
    content = {"invocations": [*previous, invocation]}
    write_json(path, content)
    return content
