"""The generated parts of the documentation: results tables written from a run, the settings reference from the
config schema. Nothing in README.md, docs/ or config/README.md that a run or the schema determines is typed by
hand.

A generated part of a Markdown file lives between `<!-- NAME:begin -->` and `<!-- NAME:end -->`;
`replace_block` rewrites what lies between and leaves the rest of the file alone.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from dsflexinet.atomic import atomic_path, read_json, write_text
from dsflexinet.config import read_config_file
from dsflexinet.errors import PipelineError
from dsflexinet.machine import machine_label
from dsflexinet.report import paper
from dsflexinet.report.tables import to_markdown, yes_no

RESULTS_BLOCK = "results"
PLACEHOLDER = (
    "*Not filled yet: this table is written from a finished run by "
    "`python -m dsflexinet docs-results --results results --readme README.md --page docs/results.md`.*"
)
# claims.csv columns shown when present, after the interval: (column, heading). Columns a run lacks are left out.
OPTIONAL_CLAIM_COLUMNS = (
    ("half_width_pp", "± half-width"),
    ("mde_pp", "smallest detectable"),
    ("paper_in_interval", "paper in interval"),
    ("family_verdict", "family-wise verdict"),
    ("interval_covers", "interval covers"),
)
UNSIGNED_COLUMNS = ("half_width_pp", "mde_pp")  # sizes, not differences: no sign


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_block(text: str, name: str, content: str) -> str:
    """`text` with the block `name` holding `content` (one block of that name, begin before end)."""
    begin, end = _markers(name)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.DOTALL)
    found = pattern.findall(text)
    if len(found) != 1:
        raise PipelineError(f"expected one '{begin}' ... '{end}' block, found {len(found)}")
    return pattern.sub(lambda _: f"{begin}\n{content.rstrip()}\n{end}", text)


def block(text: str, name: str) -> str:
    """What the block `name` holds now."""
    begin, end = _markers(name)
    match = re.search(re.escape(begin) + r"\n(.*?)\n?" + re.escape(end), text, re.DOTALL)
    if match is None:
        raise PipelineError(f"no '{begin}' ... '{end}' block")
    return match.group(1)


# --- results ----------------------------------------------------------------------------------------------------


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def run_line(run: Mapping) -> str:
    """Commit, machine, seeds and wall time of a run.json, as one paragraph."""
    invocations = run.get("invocations") or []
    if not invocations:
        raise PipelineError("run.json lists no finished invocation")
    commits = ", ".join(dict.fromkeys(part["commit"] for part in invocations))
    machines = "; ".join(dict.fromkeys(
        f"{machine_label(part['machine'])}, {part['machine'].get('logical_cpus', '?')} logical CPUs"
        for part in invocations
    ))  # fmt: skip
    seeds = sorted({seed for part in invocations for seed in part["student_seeds"]})
    configs = ", ".join(f"`{name}`" for name in dict.fromkeys(n for part in invocations for n in part["config_files"]))
    wall = sum(part["wall_seconds"] for part in invocations)
    parts = f" over {len(invocations)} invocations" if len(invocations) > 1 else ""
    dates = sorted({part["finished"][:10] for part in invocations})
    return (
        f"Run of commit {commits} ({configs}), finished {dates[-1]}: student seeds {', '.join(map(str, seeds))}; "
        f"wall time {_minutes(wall)}{parts} with `--cores {invocations[-1]['cores']}` on {machines}."
    )


def _percent(summary: Mapping | None) -> str:
    if not summary:
        return ""
    mean, std, n = 100 * summary["mean"], summary.get("std"), summary["n"]
    return f"{mean:.1f} ({n=})" if std is None else f"{mean:.1f} ± {100 * std:.1f} ({n=})"


def students_table(metrics: Mapping, runs: Iterable[str] | None = None) -> str:
    """Accuracy of the student runs (mean ± std over seeds), float and int8, beside the paper's Table II where the
    run is one of its systems."""
    students = metrics["students"]
    rows = []
    for name in runs or students:
        if name not in students:
            continue
        values, quoted = students[name], paper.TABLE2.get(name)
        rows.append({
            "student run": name,
            "paper float": f"{quoted[3]:.2f}" if quoted else "",
            "this run float": _percent(values.get("accuracy_float")),
            "paper int8 (QAT)": f"{quoted[4]:.2f}" if quoted else "",
            "this run int8": _percent(values.get("accuracy_int8")),
            "this run, unseen S4-S6": _percent(values.get("unseen_accuracy_float")),
        })  # fmt: skip
    if not rows:
        return "No student run of this run is one of the paper's Table II systems (sm1-sm4).\n"
    return to_markdown(pd.DataFrame(rows))


def ensemble_table(metrics: Mapping) -> str:
    """Test accuracy of every teacher and ensemble."""
    accuracies = metrics["teachers"]["test_accuracy"]
    frame = pd.DataFrame({"teacher or ensemble": list(accuracies),
                          "test accuracy %": [f"{100 * value:.1f}" for value in accuracies.values()]})  # fmt: skip
    return to_markdown(frame)


def _number(value) -> str:
    return "" if pd.isna(value) else f"{float(value):+.2f}"


def claims_table(claims: pd.DataFrame, statistic: str = "accuracy") -> str:
    """The paper's claims on one statistic: its difference, this run's with the 95 % interval, the verdict; the
    optional columns of claims.csv where present."""
    rows = claims[claims["statistic"] == statistic] if "statistic" in claims else claims
    if rows.empty:
        raise PipelineError(f"claims.csv has no row of statistic {statistic!r}")
    table = pd.DataFrame({
        "claim (A - B, points)": rows["claim"],
        "paper": [_number(value) for value in rows["paper_pp"]],
        "this run [95 % interval]": [f"{_number(d)} [{_number(lo)}, {_number(hi)}]"
                                     for d, lo, hi in zip(rows["difference_pp"], rows["low_pp"], rows["high_pp"],
                                                          strict=True)],
    })  # fmt: skip
    for column, heading in OPTIONAL_CLAIM_COLUMNS:
        if column == "paper_in_interval" and column in rows:
            table[heading] = [yes_no(value) for value in rows[column]]
        elif column in rows:
            table[heading] = [(f"{v:.2f}" if column in UNSIGNED_COLUMNS else _number(v)) if isinstance(v, float) else v
                              for v in rows[column]]  # fmt: skip
    if "n_seeds" in rows:
        table["seeds"] = rows["n_seeds"].to_numpy()
    table["verdict"] = rows["verdict"].to_numpy()
    return to_markdown(table)


def _inputs(results: Path) -> tuple[dict, dict, pd.DataFrame]:
    paths = {name: results / name for name in ("run.json", "metrics.json", "tables/claims.csv")}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise PipelineError(f"not a finished run: missing {', '.join(missing)}")
    return read_json(paths["run.json"]), read_json(paths["metrics.json"]), pd.read_csv(paths["tables/claims.csv"])


def readme_results(results: str | Path) -> str:
    """The README's block: the run line, the claims in accuracy, sm1-sm4 beside Table II."""
    run, metrics, claims = _inputs(Path(results))
    return "\n".join([
        run_line(run), "",
        claims_table(claims).rstrip("\n"), "",
        students_table(metrics, paper.TABLE2).rstrip("\n"),
    ])  # fmt: skip


def page_results(results: str | Path) -> str:
    """docs/results.md's block: the run line, every student run, every teacher and ensemble, the claims in every
    statistic claims.csv holds."""
    run, metrics, claims = _inputs(Path(results))
    lines = [
        run_line(run),
        "",
        "**Students** (accuracy % on the test split, mean ± std over seeds):",
        "",
        students_table(metrics).rstrip("\n"),
        "",
        "**Teachers and ensembles** (accuracy % on the test split):",
        "",
        ensemble_table(metrics).rstrip("\n"),
    ]
    statistics = claims["statistic"].unique() if "statistic" in claims else ["accuracy"]
    for statistic in statistics:
        heading = statistic.replace("_", " ")
        lines += ["", f"**The paper's claims, {heading}** (percentage points):", "",
                  claims_table(claims, statistic).rstrip("\n")]  # fmt: skip
    return "\n".join(lines)


def write_results_blocks(
    results: str | Path, readme: str | Path | None, page: str | Path | None, figure: str | Path | None = None
) -> None:
    """Rewrite the results block of the README and of the results page from a run's results/, and copy its claims
    figure (results/figures/claims.png) to `figure`."""
    results = Path(results)
    rendered = [(Path(path), render(results)) for path, render in ((readme, readme_results), (page, page_results))
                if path is not None]  # fmt: skip
    for path, content in rendered:
        write_text(path, replace_block(path.read_text(), RESULTS_BLOCK, content))
    if figure is not None:
        source = results / "figures" / "claims.png"
        if not source.is_file():
            raise PipelineError(f"not a finished run: missing {source}")
        with atomic_path(figure) as tmp:
            shutil.copyfile(source, tmp)


# --- the HTML report ---------------------------------------------------------------------------------------------

_HTML_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:80em}table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #bbb;padding:.25em .6em;text-align:left}th{background:#eee}"
)


def markdown_html(text: str, title: str) -> str:
    """A Markdown report (a table with its notes and the paper's numbers) as one self-contained HTML page, which
    the Snakemake report shows inline where it would only offer a Markdown or CSV file for download."""
    from html import escape

    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(text)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_HTML_STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )


def write_markdown_html(markdown: str | Path, out: str | Path, title: str) -> None:
    write_text(out, markdown_html(Path(markdown).read_text(), title))


# --- the settings reference ---------------------------------------------------------------------------------------


def _resolve(schema: Mapping, node: Mapping) -> Mapping:
    """A schema node with its `$ref` and `allOf` parts merged (properties, required, description)."""
    merged: dict = {}
    parts = [node]
    while parts:
        part = parts.pop(0)
        if "$ref" in part:
            parts.append(schema["$defs"][part["$ref"].rsplit("/", 1)[-1]])
        parts.extend(part.get("allOf", []))
        for key, value in part.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key not in ("$ref", "allOf"):
                merged.setdefault(key, value)
    return merged


def _allowed(node: Mapping) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{value}`" if value is not None else "`null`" for value in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    if "oneOf" in node:
        return " or ".join(_allowed(option) or str(option.get("type", "")) for option in node["oneOf"])
    kind = node.get("type")
    kinds = "/".join(kind) if isinstance(kind, list) else kind or ""
    symbols = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))
    bounds = [f"{symbol} {node[key]}" for key, symbol in symbols if key in node]
    return ", ".join(filter(None, [kinds, *bounds]))


def _setting_rows(schema: Mapping, node: Mapping, prefix: str, config: Mapping | None) -> list[dict]:
    resolved = _resolve(schema, node)
    children = dict(resolved.get("properties", {}))
    named = resolved.get("additionalProperties")
    if isinstance(named, Mapping) and ("properties" in named or "$ref" in named or "allOf" in named):
        children["<name>"] = named  # a mapping of names to settings (teachers.architectures, weights)
    rows = []
    for key, child in children.items():
        name = f"{prefix}.{key}" if prefix else key
        value = config.get(key) if isinstance(config, Mapping) else None
        child_resolved = _resolve(schema, child)
        description = child_resolved.get("description", "")
        nested = "properties" in child_resolved or isinstance(child_resolved.get("additionalProperties"), Mapping)
        present = isinstance(config, Mapping) and key in config and not isinstance(value, Mapping)
        shown = f"`{json.dumps(value) if isinstance(value, list | None) else value}`" if present else ""
        rows.append({"setting": f"`{name}`", "default (config.yaml)": shown, "allowed": _allowed(child_resolved),
                     "what it does": " ".join(str(description).split()).replace("|", "\\|")})  # fmt: skip
        if nested:
            rows += _setting_rows(schema, child, name, value if isinstance(value, Mapping) else None)
    return rows


def missing_descriptions(schema: Mapping) -> list[str]:
    """Settings of the schema whose node has no description (the reference would leave them unexplained)."""
    return [row["setting"] for row in _setting_rows(schema, schema, "", None) if not row["what it does"]]


def config_reference(schema: Mapping, config: Mapping, config_files: Mapping[str, str]) -> str:
    """config/README.md: what each file of config/ is for (the first comment paragraph of each), and every setting
    of the schema with its default in config.yaml, what it allows and what it does."""
    files = pd.DataFrame({"file": [f"[`{name}`]({name})" for name in config_files],
                          "what it is for": list(config_files.values())})  # fmt: skip
    settings = pd.DataFrame(_setting_rows(schema, schema, "", config))
    return "\n".join([
        "# Configuration",
        "",
        "<!-- Generated from workflow/schemas/config.schema.yaml and the files' first comments by"
        " `python -m dsflexinet config-reference`; edit those, not this file. -->",
        "",
        "`config.yaml` (the repository's root) is the default run; every file below is applied on top of it with"
        " `--configfile` (later files win). Every key is validated against"
        " [`workflow/schemas/config.schema.yaml`](../workflow/schemas/config.schema.yaml) before the DAG is built;"
        " `python -m dsflexinet check-config FILE` checks a file on its own.",
        "",
        "## Files",
        "",
        to_markdown(files).rstrip("\n"),
        "",
        "## Settings",
        "",
        "A student run (`students.runs.<name>`) names only what it changes from `students.defaults` (a partial"
        " schedule included); the settings below `students.defaults` apply to a run the same way.",
        "",
        to_markdown(settings).rstrip("\n"),
        "",
    ])  # fmt: skip


def first_comment(path: Path) -> str:
    """The first sentence of a YAML file's leading comment (command lines skipped), on one line."""
    text = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        words = line.lstrip("#").strip()
        if words.startswith(("snakemake ", "python ")):
            continue
        if words.endswith(":"):
            text.append(words[:-1])
            break
        text.append(words)
        if re.search(r"\.(\s+[A-Z(]|$)", words):
            break
    joined = " ".join(text)
    end = re.search(r"\.(\s+[A-Z(]|$)", joined)
    return joined[: end.start() + 1] if end else joined


def repository_config_reference(root: str | Path = ".") -> str:
    """config/README.md of the repository at `root`: its schema, config.yaml and the files of config/."""
    root = Path(root)
    files = {"../config.yaml": first_comment(root / "config.yaml")}
    files |= {path.name: first_comment(path) for path in sorted((root / "config").glob("*.yaml"))}
    schema = read_config_file(root / "workflow" / "schemas" / "config.schema.yaml")
    return config_reference(schema, read_config_file(root / "config.yaml"), files)
