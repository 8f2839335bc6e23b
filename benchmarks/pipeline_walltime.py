"""Wall time of the whole default DAG from clean, of a rerun with nothing to do, and per rule.

A fresh `git clone` of this checkout is built with `snakemake --cores N` (`make run`'s job, without the
install step), then run again (nothing to do); the per-job times come from Snakemake's `benchmark:` files
(results/benchmarks/*.tsv), summed per rule. With `--existing DIR` the full build is skipped and an already
built clone is measured (the rerun and the per-rule table).

    .venv/bin/python benchmarks/pipeline_walltime.py [--cores N] [--clone /tmp/dag] [--out walltime.json]
    .venv/bin/python benchmarks/pipeline_walltime.py --existing /tmp/dag
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from dsflexinet.machine import describe_machine, machine_label

REPO = Path(__file__).resolve().parents[1]


def timed_snakemake(workdir: Path, cores: int) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores)], cwd=workdir, env=env,
                            capture_output=True, text=True)  # fmt: skip
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"snakemake failed in {workdir}:\n{result.stderr[-3000:]}")
    return elapsed


def per_rule_seconds(workdir: Path) -> dict[str, dict[str, float]]:
    """Jobs, summed wall and CPU seconds, and the slowest job per rule; file names are <rule>[_<wildcards>].
    Jobs share the cores, so a job's wall time includes its waits; CPU seconds are what it cost."""
    rules = _rule_names(workdir)
    rows: dict[str, list[dict]] = defaultdict(list)
    for path in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):  # per subset in subdirectories
        # the longest rule name that prefixes the file (a stale file of a removed rule counts under its own name)
        matching = [name for name in rules if path.stem == name or path.stem.startswith(f"{name}_")]
        rule = max(matching, key=len, default=path.stem)
        with path.open() as table:
            rows[rule].extend(csv.DictReader(table, delimiter="\t"))
    summary = {
        rule: {"jobs": len(jobs), "wall_s": round(sum(float(job["s"]) for job in jobs), 1),
               "cpu_s": round(sum(float(job["cpu_time"]) for job in jobs), 1),
               "slowest_s": round(max(float(job["s"]) for job in jobs), 1)}
        for rule, jobs in rows.items()
    }  # fmt: skip
    return dict(sorted(summary.items(), key=lambda item: -item[1]["cpu_s"]))


def _rule_names(workdir: Path) -> list[str]:
    result = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules"], cwd=workdir,
                            capture_output=True, text=True, check=True)  # fmt: skip
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def machine_without_threads() -> dict:
    """This machine; every job sets its own thread count (the rules' `threads`), so this process's is not theirs."""
    machine = describe_machine()
    del machine["threads"]
    return machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="default: every CPU, as `make run`")
    parser.add_argument("--clone", type=Path, help="where to clone and build (must not exist); default: a temp dir")
    parser.add_argument("--existing", type=Path, help="an already built clone: measure the rerun and the rules")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    report: dict = {"cores": args.cores, "cpus": os.cpu_count(), "machine": machine_without_threads()}
    if args.existing:
        workdir = args.existing.resolve()
    else:
        workdir = (args.clone or Path(tempfile.mkdtemp(prefix="dsflexinet-dag-")) / "clone").resolve()
        subprocess.run(["git", "clone", "-q", str(REPO), str(workdir)], check=True)
        report["from_clean_s"] = round(timed_snakemake(workdir, args.cores), 1)
    report["nothing_to_do_s"] = round(timed_snakemake(workdir, args.cores), 2)
    report["rules"] = per_rule_seconds(workdir)

    print(f"workdir {workdir}, --cores {args.cores} on {report['cpus']} CPUs; {machine_label(report['machine'])}")
    if "from_clean_s" in report:
        print(f"from clean: {report['from_clean_s'] / 60:.1f} min")
    print(f"rerun with nothing to do: {report['nothing_to_do_s']:.2f} s\n")
    print("| rule | jobs | CPU time / s | job wall times, summed / s | slowest job / s |\n|---|---|---|---|---|")
    for rule, row in report["rules"].items():
        print(f"| {rule} | {row['jobs']} | {row['cpu_s']} | {row['wall_s']} | {row['slowest_s']} |")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
