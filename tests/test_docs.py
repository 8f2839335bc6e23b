"""The documentation cannot drift: results tables are written from a run, config/README.md from the schema, and
every link, repository path and Snakemake target the pages name exists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dsflexinet.errors import PipelineError
from dsflexinet.report.docs import (
    PLACEHOLDER,
    RESULTS_BLOCK,
    block,
    missing_descriptions,
    replace_block,
    repository_config_reference,
    write_results_blocks,
)
from tests.conftest import REPO

PAGES = sorted([REPO / "README.md", REPO / "CHANGELOG.md", REPO / "ARCHITECTURE.md", REPO / "config" / "README.md",
                *(REPO / "docs").glob("*.md")])  # fmt: skip
# Paths a run creates or a user supplies: named in the pages, never in the repository.
GENERATED = ("results/", "logs/", "data/", "data-tau22/", ".venv/", "report.html", "my_recordings/", "predictions.csv",
             ".snakemake/", "$OUT")  # fmt: skip
TOP_LEVEL = {path.name for path in REPO.iterdir()} - {".git", ".venv", "results", "data", "logs"}


def _fixture_run(results: Path, claim_columns: dict[str, list] | None = None) -> None:
    (results / "tables").mkdir(parents=True)
    machine = {"cpu": "Test CPU (family 1, model 2)", "kernel_flags": ["avx2"], "onednn_max_cpu_isa": None,
               "logical_cpus": 2, "torch": "2.0", "gpu": None}  # fmt: skip
    invocation = {"commit": "abc1234", "started": "2026-12-07T05:00:00+00:00", "student_seeds": [1, 2],
                  "config_files": ["config.yaml", "config/seeds.yaml"], "finished": "2026-12-07T05:20:00+00:00",
                  "wall_seconds": 1200.0, "cores": 2, "machine": machine}  # fmt: skip
    resumed = invocation | {"wall_seconds": 600.0, "finished": "2026-12-08T01:00:00+00:00"}
    (results / "run.json").write_text(json.dumps({"invocations": [invocation, resumed]}))
    summary = {"mean": 0.42, "std": 0.01, "n": 2}
    metrics = {
        "students": {
            "sm1": {"accuracy_float": summary, "accuracy_int8": summary | {"mean": 0.415, "std": 0.02},
                    "unseen_accuracy_float": summary | {"mean": 0.3}},
            "sm4-nokd": {"accuracy_float": {"mean": 0.638, "std": None, "n": 1},
                         "accuracy_int8": {"mean": 0.63, "std": None, "n": 1},
                         "unseen_accuracy_float": {"mean": 0.4, "std": None, "n": 1}},
        },
        "teachers": {"test_accuracy": {"passt-fms-s1": 0.25, "fused": 0.573}},
    }  # fmt: skip
    (results / "metrics.json").write_text(json.dumps(metrics))
    claims = {
        "claim": ["KD: Fused > Averaged", "ResNorm over channels > over frequency", "KD: Fused > Averaged"],
        "source": ["Table IV", "Fig. 3", "Table IV"], "statistic": ["accuracy", "accuracy", "macro_accuracy"],
        "a": ["sm4", "sm4", "sm4"], "b": ["sm4-avg", "sm4-rnfreq", "sm4-avg"],
        "paper_pp": [1.78, None, 1.78], "difference_pp": [3.4, -4.4, 3.5], "low_pp": [-2.3, -8.0, -2.2],
        "high_pp": [9.1, -1.0, 9.0], "verdict": ["not distinguishable", "contradicted", "not distinguishable"],
        "n_seeds": [2, 2, 2],
    } | (claim_columns or {})  # fmt: skip
    import pandas as pd

    pd.DataFrame(claims).to_csv(results / "tables" / "claims.csv", index=False)


README_BLOCK = """\
Run of commit abc1234 (`config.yaml`, `config/seeds.yaml`), finished 2026-12-08: student seeds 1, 2; wall time \
30.0 min over 2 invocations with `--cores 2` on Test CPU (family 1, model 2) [avx2], torch 2.0, 2 logical CPUs.

| claim (A - B, points) | paper | this run [95 % interval] | seeds | verdict |
|---|---|---|---|---|
| KD: Fused > Averaged | +1.78 | +3.40 [-2.30, +9.10] | 2 | not distinguishable |
| ResNorm over channels > over frequency |  | -4.40 [-8.00, -1.00] | 2 | contradicted |

| student run | paper float | this run float | paper int8 (QAT) | this run int8 | this run, unseen S4-S6 |
|---|---|---|---|---|---|
| sm1 | 56.54 | 42.0 ± 1.0 (n=2) | 53.44 | 41.5 ± 2.0 (n=2) | 30.0 ± 1.0 (n=2) |"""


def test_results_blocks_are_written_from_the_run(tmp_path: Path) -> None:
    _fixture_run(tmp_path / "results")
    readme, page = tmp_path / "README.md", tmp_path / "results.md"
    for path in (readme, page):
        path.write_text(f"# Title\n\n<!-- results:begin -->\n{PLACEHOLDER}\n<!-- results:end -->\n\nAfter.\n")
    command = [sys.executable, "-m", "dsflexinet", "docs-results", "--results", str(tmp_path / "results"),
               "--readme", str(readme), "--page", str(page)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, env={"PYTHONPATH": str(REPO / "src")})
    text = readme.read_text()
    assert text == f"# Title\n\n<!-- results:begin -->\n{README_BLOCK}\n<!-- results:end -->\n\nAfter.\n"
    written = block(page.read_text(), RESULTS_BLOCK)
    assert "| sm4-nokd |  | 63.8 (n=1) |  | 63.0 (n=1) | 40.0 (n=1) |" in written  # every run on the page
    assert "| fused | 57.3 |" in written
    assert "**The paper's claims, macro accuracy**" in written and "+3.50 [-2.20, +9.00]" in written
    # A second pass from the same run changes nothing.
    write_results_blocks(tmp_path / "results", readme, page)
    assert readme.read_text() == text


def test_claims_columns_are_shown_only_where_the_run_has_them(tmp_path: Path) -> None:
    _fixture_run(tmp_path / "results", {"family_verdict": ["not distinguishable"] * 3,
                                        "paper_in_interval": [False, None, True]})  # fmt: skip
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:begin -->\nold\n<!-- results:end -->\n")
    write_results_blocks(tmp_path / "results", readme, None)
    header = next(line for line in readme.read_text().splitlines() if line.startswith("| claim"))
    assert header == ("| claim (A - B, points) | paper | this run [95 % interval] | paper in interval "
                      "| family-wise verdict | seeds | verdict |")  # fmt: skip
    assert "half-width" not in readme.read_text()
    rows = [line for line in readme.read_text().splitlines() if line.startswith(("| KD", "| ResNorm"))]
    assert [row.split(" | ")[3] for row in rows] == ["no", ""]  # outside; no paper value to place


def test_results_need_a_finished_run(tmp_path: Path) -> None:
    _fixture_run(tmp_path / "results")
    (tmp_path / "results" / "run.json").unlink()
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:begin -->\nold\n<!-- results:end -->\n")
    with pytest.raises(PipelineError, match="run.json"):
        write_results_blocks(tmp_path / "results", readme, None)
    assert "old" in readme.read_text()


@pytest.mark.parametrize("text", ["no block", "<!-- results:begin -->\na\n<!-- results:end -->\n" * 2])
def test_a_results_block_must_be_there_once(text: str) -> None:
    with pytest.raises(PipelineError, match="block"):
        replace_block(text, RESULTS_BLOCK, "new")


@pytest.mark.parametrize("page", ["README.md", "docs/results.md"])
def test_committed_pages_hold_one_results_block(page: str) -> None:
    text = (REPO / page).read_text()
    assert block(text, RESULTS_BLOCK)
    assert replace_block(text, RESULTS_BLOCK, block(text, RESULTS_BLOCK)) == text


def test_readme_is_a_front_page() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


def test_config_reference_is_current() -> None:
    assert (REPO / "config" / "README.md").read_text() == repository_config_reference(REPO), (
        "config/README.md is stale: run `python -m dsflexinet config-reference`"
    )


def test_every_setting_is_described_and_documented() -> None:
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert missing_descriptions(schema) == []
    reference = (REPO / "config" / "README.md").read_text()

    def leaves(node: dict, prefix: str = ""):
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else key
            if prefix.startswith(("students.runs", "teachers.architectures", "reports.", "weights",
                                  "students.defaults.distillation.label_weight")):  # fmt: skip
                continue
            yield name
            if isinstance(value, dict):
                yield from leaves(value, name)

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert [name for name in leaves(config) if f"`{name}`" not in reference] == []


def _links_and_paths(page: Path) -> tuple[list[str], list[str]]:
    text = page.read_text()
    links = [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:|#", target)]
    spans = re.findall(r"`([^`\n]+)`", text)
    paths = []
    for span in spans:
        for word in span.split():
            word = word.strip(",;:()'\"")
            head = word.split("/")[0]
            if "/" in word and head in TOP_LEVEL and not any(c in word for c in "<{*$"):
                paths.append(word)
            elif word in TOP_LEVEL - {"README.md"}:
                paths.append(word)
    return links, paths


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(REPO)))
def test_every_link_and_repository_path_exists(page: Path) -> None:
    links, paths = _links_and_paths(page)
    missing = [link for link in links if not (page.parent / link.split("#")[0]).exists()]
    missing += [path for path in paths if not path.startswith(GENERATED) and not (REPO / path).exists()]
    assert missing == []


def test_link_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("See [this](nowhere.md) and `src/dsflexinet/nowhere.py`, `config/tau22.yaml`.\n")
    links, paths = _links_and_paths(page)
    assert links == ["nowhere.md"] and paths == ["src/dsflexinet/nowhere.py", "config/tau22.yaml"]


def _documented_targets() -> tuple[dict[tuple[str, ...], set[str]], set[str]]:
    """The targets of every `snakemake` command line in the pages' code blocks, by the config files the line adds
    (`--configfile`), and the lines' `--forcerun` arguments."""
    targets: dict[tuple[str, ...], set[str]] = {}
    forced: set[str] = set()
    takes_value = {"--cores", "--profile", "--forcerun", "--report", "-j", "--sdm", "--config"}
    for page in PAGES:
        for code in re.findall(r"```(?:bash|sh)?\n(.*?)```", page.read_text(), re.S):
            for line in code.splitlines():
                words = line.split("#")[0].split()
                if "snakemake" not in words:
                    continue
                previous, configfiles, named = "", [], set()
                for word in words[words.index("snakemake") + 1 :]:
                    if previous == "--forcerun" and not word.startswith("-"):
                        forced.add(word)
                    elif previous == "--configfile" and not word.startswith("-"):
                        configfiles.append(word)
                        continue  # --configfile takes every file after it
                    elif not word.startswith("-") and previous not in takes_value:
                        named.add(word)
                    previous = word if word.startswith("-") else ""
                targets.setdefault(tuple(configfiles), set()).update(named)
    return targets, forced


def test_documented_snakemake_targets_are_in_the_dag() -> None:
    """Each documented target is dry-run with the config files its command line adds."""
    targets, forced = _documented_targets()
    assert {"submission", "data_efficiency"} <= targets[()] and "fuse_teachers" in forced
    assert "dcase25_development" in targets[("config/development.yaml",)]
    rules = set(subprocess.run([sys.executable, "-m", "snakemake", "--list-rules"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.split())  # fmt: skip
    forced_files = sorted(name for name in forced if name not in rules)
    assert all("/" in name for name in forced_files), f"no such rule: {forced_files}"
    for configfiles, named in targets.items():
        if not named:
            continue  # `rule all` of another config (the real run): its data is not here
        options = ["--configfile", *configfiles] if configfiles else []
        files = [] if configfiles else forced_files
        command = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--nolock", "--quiet", "all", *options, "--",
                   *sorted(named), *files]  # fmt: skip
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, f"{configfiles}: {result.stdout[-2000:]}"


def test_no_file_outside_the_repository_is_cited() -> None:
    outside = ["-e", "FACTS.md", "-e", "shared/reference"]
    excluded = [":!tests/test_docs.py"]
    listing = subprocess.run(["git", "grep", "-n", "-I", *outside, "--", ".", *excluded], cwd=REPO,
                             capture_output=True, text=True)  # fmt: skip
    assert listing.stdout == ""


def test_report_pages_render_tables_inline() -> None:
    from dsflexinet.report.docs import markdown_html

    markdown = "# Table II\n\n| System | ACC/% |\n|---|---|\n| sm1 | 42.0 (n=1) |\n\nPaper: 56.54\n"
    html = markdown_html(markdown, "table2")
    assert "<title>table2</title>" in html and "<h1>Table II</h1>" in html
    assert "<td>sm1</td>" in html and "<td>42.0 (n=1)</td>" in html and "<p>Paper: 56.54</p>" in html


@pytest.mark.parametrize("table", ["table2", "table3", "table4", "table5"])
def test_report_captions_render_without_warnings(table: str) -> None:
    """The report's front page and captions as Snakemake renders them (Jinja, then reStructuredText), with docutils
    set to stop at the first warning."""
    from types import SimpleNamespace

    import jinja2
    from docutils.core import publish_parts

    snakemake = SimpleNamespace(wildcards=SimpleNamespace(table=table))
    captions = sorted((REPO / "workflow" / "report").glob("*.rst"))
    assert {"workflow.rst", "tables.rst", "claims.rst", "claims_figure.rst"} <= {path.name for path in captions}
    for path in captions:
        text = jinja2.Template(path.read_text()).render(snakemake=snakemake)
        body = publish_parts(text, writer="html", settings_overrides={"halt_level": 2, "report_level": 2})["body"]
        assert "system-message" not in body
    rendered = jinja2.Template((REPO / "workflow" / "report" / "tables.rst").read_text()).render(snakemake=snakemake)
    numeral = {"table2": "II", "table3": "III", "table4": "IV", "table5": "V"}[table]
    assert rendered.strip().startswith(f"Table {numeral} of the paper")


def test_a_run_without_the_papers_students_says_so(tmp_path: Path) -> None:
    from dsflexinet.report.docs import students_table

    assert students_table({"students": {"tiny": {}}}, ["sm1", "sm2"]).startswith("No student run")
