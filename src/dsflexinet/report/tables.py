"""The paper's tables II-V from a run's evaluation JSONs, as CSV (for tools) and Markdown (for people).

A table is given, per row label, the files of each seed of its student run (`RunFiles`: `eval_float`,
`eval_int8`, `complexity`, `quantized`, `history`, as the workflow names them from layout.student); each table
reads only what it shows. Accuracies are means over the seeds. The Markdown adds the paper's own numbers in a
separate block for comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dsflexinet.atomic import atomic_path
from dsflexinet.data.tau22 import DEVICES
from dsflexinet.errors import PipelineError
from dsflexinet.report import paper

DEVICE_HEADERS = [device.upper() for device in DEVICES]
RunFiles = dict[str, Path]  # one seed of a student run: file role -> path
SeedFiles = dict[str, RunFiles]  # seed -> its files


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found (the rule that writes it has not run)") from None
    except json.JSONDecodeError as error:
        raise PipelineError(f"{path}: not valid JSON ({error})") from None


def read_complexity(files: RunFiles) -> dict:
    """The one row `dsflexinet complexity` wrote for a run's model."""
    return read_json(files["complexity"])[0]


def first_seed(seeds: SeedFiles) -> RunFiles:
    """The files of the lowest seed: for what does not depend on the seed (the model's size)."""
    return seeds[min(seeds, key=int)]


def seed_mean(seeds: SeedFiles, role: str, value) -> float:
    """Mean over seeds of `value(json)` of the file `role`."""
    return sum(value(read_json(files[role])) for files in seeds.values()) / len(seeds)


def percent(value: float) -> float:
    return round(100.0 * value, 2)


def device_accuracies(seeds: SeedFiles, role: str = "eval_float") -> list[float]:
    """Accuracy % per device A..S6 (NaN for a device the split lacks) and overall, means over seeds."""
    rows = []
    for files in seeds.values():
        metrics = read_json(files[role])
        per_device = metrics["devices"]
        rows.append([per_device[d]["accuracy"] if d in per_device else float("nan") for d in DEVICES]
                    + [metrics["accuracy"]])  # fmt: skip
    return [percent(sum(column) / len(column)) for column in zip(*rows, strict=True)]


def table2(runs: dict[str, SeedFiles]) -> pd.DataFrame:
    """Table II: size and accuracy of sm1-sm4, float and after QAT."""
    rows = []
    for label, seeds in runs.items():
        complexity = read_complexity(first_seed(seeds))
        rows.append({
            "System": label,
            "Param/K": round(complexity["params"] / 1000, 2),
            "MACs/M": round(complexity["macs"] / 1e6, 2),
            "Size/KB": round(complexity["size_kb_float32"], 2),
            "ACC/%": percent(seed_mean(seeds, "eval_float", lambda m: m["accuracy"])),
            "Size(QAT)/KB": round(complexity["size_kb_int8"], 2),
            "int8 file/KB": round(seed_mean(seeds, "quantized", lambda q: q["file_bytes"]) / 1000, 2),
            "ACC(QAT)/%": percent(seed_mean(seeds, "eval_int8", lambda m: m["accuracy"])),
        })  # fmt: skip
    return pd.DataFrame(rows)


def table3(runs: dict[str, SeedFiles]) -> pd.DataFrame:
    """Table III: the proposed model (measured here, after QAT as in the paper) beside published systems."""
    rows = [
        {"Model": name, "Param/K": params, "MACs/M": macs, "ACC": acc, "Source": "quoted from the paper"}
        for name, (params, macs, acc) in paper.TABLE3_OTHER_SYSTEMS.items()
    ]
    for label, seeds in runs.items():
        complexity = read_complexity(first_seed(seeds))
        rows.append({
            "Model": f"Proposed Model ({label})",
            "Param/K": round(complexity["params"] / 1000, 2),
            "MACs/M": round(complexity["macs"] / 1e6, 2),
            "ACC": percent(seed_mean(seeds, "eval_int8", lambda m: m["accuracy"])),
            "Source": "this run",
        })  # fmt: skip
    return pd.DataFrame(rows)


def device_table(runs: dict[str, SeedFiles], first_column: str) -> pd.DataFrame:
    """Tables IV and V: accuracy per device and overall for each labelled student run (float models)."""
    rows = [[label, *device_accuracies(seeds)] for label, seeds in runs.items()]
    return pd.DataFrame(rows, columns=[first_column, *DEVICE_HEADERS, "ACC"])


def paper_reference(table: str) -> pd.DataFrame:
    """The paper's numbers for the same table, for the comparison block."""
    if table == "table2":
        columns = ["System", "Param/K", "MACs/M", "Size/KB", "ACC/%", "ACC(QAT)/%"]
        return pd.DataFrame([[name, *values] for name, values in paper.TABLE2.items()], columns=columns)
    if table == "table3":
        rows = [[name, *values] for name, values in paper.TABLE3_OTHER_SYSTEMS.items()]
        rows.append(["Proposed Model (sm2)", *paper.TABLE2["sm2"][:2], paper.TABLE2["sm2"][4]])
        return pd.DataFrame(rows, columns=["Model", "Param/K", "MACs/M", "ACC"])
    values = paper.TABLE4 if table == "table4" else paper.TABLE5
    return pd.DataFrame([[name, *row] for name, row in values.items()], columns=["", *DEVICE_HEADERS, "ACC"])


def to_markdown(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        return "" if isinstance(value, float) and value != value else str(value)  # NaN -> blank

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


TITLES = {
    "table2": "Table II. Performance under various parameter configurations",
    "table3": "Table III. Comparing model performance",
    "table4": "Table IV. Fused and averaged teacher models (sm4), accuracy % per device",
    "table5": "Table V. Normalization and augmentation ablation (sm4), accuracy % per device",
}


def build_table(table: str, runs: dict[str, SeedFiles]) -> pd.DataFrame:
    if table == "table2":
        return table2(runs)
    if table == "table3":
        return table3(runs)
    if table in ("table4", "table5"):
        return device_table(runs, "Methods" if table == "table4" else "Model")
    raise PipelineError(f"unknown table {table!r} (choose from {', '.join(TITLES)})")


def write_table(table: str, runs: dict[str, SeedFiles], out_csv: Path, out_md: Path) -> pd.DataFrame:
    frame = build_table(table, runs)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    text = (
        f"# {TITLES[table]}\n\nThis run:\n\n{to_markdown(frame)}\n"
        f"The paper (TAU22), for comparison:\n\n{to_markdown(paper_reference(table))}"
    )
    with atomic_path(out_md) as tmp:
        tmp.write_text(text)
    return frame
