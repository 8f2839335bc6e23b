"""The paper's tables II-V from a run's evaluations, as CSV (for tools) and Markdown (for people).

A table is given, per row label, the files of each seed of its student run (`RunFiles`, by role:
`eval_float`, `eval_int8`, `complexity`, `quantized`, `history`, as the workflow names them from layout.student);
each table reads only what it shows. The CSV keeps one row per label and seed; the Markdown shows the mean over
seeds with its spread, `mean ± std (n=seeds)`, and adds the paper's own numbers in a separate block.

Beside the final model's accuracy every table shows the paper's and DCASE's statistics: the class-averaged
(macro) accuracy and log loss that DCASE ranks by, and, as Table V's caption defines its ACC, the mean
validation accuracy of the last ten epochs (from history.csv: on the test split, or on its fixed subset of
locations, config `validation_locations_per_scene`; it only measures: no choice is made on it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dsflexinet.atomic import atomic_path, read_json
from dsflexinet.data.tau22 import DEVICES
from dsflexinet.errors import PipelineError
from dsflexinet.machine import distinct_machines
from dsflexinet.report import paper
from dsflexinet.report.stats import format_mean_std

DEVICE_HEADERS = [device.upper() for device in DEVICES]
LAST_EPOCHS = 10  # Table V: "the average validation set accuracy over the last ten rounds"
RunFiles = dict[str, Path]  # one seed of a student run: file role -> path
SeedFiles = dict[str, RunFiles]  # seed -> its files


def read_complexity(files: RunFiles) -> dict:
    """The one row `dsflexinet complexity` wrote for a run's model."""
    return read_json(files["complexity"])[0]


def first_seed(seeds: SeedFiles) -> RunFiles:
    """The files of the lowest seed: for what does not depend on the seed (the model's size)."""
    return seeds[min(seeds, key=int)]


def yes_no(value) -> str:
    """A yes/no column's cell: empty where the question has no answer (no paper value to place)."""
    return "" if value is None or pd.isna(value) else ("yes" if value else "no")


def percent(value: float) -> float:
    return round(100.0 * value, 2)


def validation_accuracies(history: Path) -> pd.Series:
    """The validation accuracy of every validated epoch of a history.csv, in epoch order."""
    try:
        accuracy = pd.read_csv(history)["val_acc"].dropna()
    except (FileNotFoundError, KeyError, pd.errors.ParserError) as error:
        raise PipelineError(f"{history}: no validation accuracy per epoch ({error})") from None
    if accuracy.empty:
        raise PipelineError(f"{history}: no validation accuracy per epoch")
    return accuracy


def last_epochs_accuracy(history: Path, epochs: int = LAST_EPOCHS) -> float:
    """Mean validation accuracy of the last `epochs` epochs (all of them in a shorter run)."""
    return float(validation_accuracies(history).tail(epochs).mean())


def short_curve_notes(table: str, runs: dict[str, SeedFiles]) -> list[str]:
    """Where a run validated fewer than the last ten epochs (a shorter schedule or `validate_last_epochs`), the
    column headed "last 10 epochs" averages fewer: say which runs and how many, rather than let the header claim
    ten."""
    if table not in ("table4", "table5"):
        return []
    short = [f"{label} seed {seed}: {validated}" for label, seeds in runs.items() for seed, files in seeds.items()
             if (validated := len(validation_accuracies(files["history"]))) < LAST_EPOCHS]  # fmt: skip
    if not short:
        return []
    return [f"ACC (last {LAST_EPOCHS} epochs) averages fewer epochs where fewer were validated ({'; '.join(short)})."]


def _scores(metrics: dict) -> dict[str, float]:
    return {
        "acc": percent(metrics["accuracy"]),
        "macro": percent(metrics["class_averaged_accuracy"]),
        "log_loss": round(metrics["log_loss"], 4),
    }


def table2(runs: dict[str, SeedFiles]) -> pd.DataFrame:
    """Table II: size and accuracy of sm1-sm4, float and after QAT."""
    rows = []
    for label, seeds in runs.items():
        complexity = read_complexity(first_seed(seeds))
        for seed, files in seeds.items():
            floats, int8 = _scores(read_json(files["eval_float"])), _scores(read_json(files["eval_int8"]))
            rows.append({
                "System": label, "seed": int(seed),
                "Param/K": round(complexity["params"] / 1000, 2),
                "MACs/M": round(complexity["macs"] / 1e6, 2),
                "Size/KB": round(complexity["size_kb_float32"], 2),
                "Size(QAT)/KB": round(complexity["size_kb_int8"], 2),
                "int8 file/KB": round(read_json(files["quantized"])["file_bytes"] / 1000, 2),
                "within limits": "yes" if complexity["within"] else "no",
                "ACC/%": floats["acc"], "ACC(QAT)/%": int8["acc"],
                "macro ACC/%": floats["macro"], "macro ACC(QAT)/%": int8["macro"],
                "log loss": floats["log_loss"], "log loss(QAT)": int8["log_loss"],
            })  # fmt: skip
    return pd.DataFrame(rows)


def table3(runs: dict[str, SeedFiles]) -> pd.DataFrame:
    """Table III: the proposed model (measured here, after QAT as in the paper) beside published systems."""
    rows = [
        {"Model": name, "seed": None, "Param/K": params, "MACs/M": macs, "ACC": acc, "Source": "quoted from the paper"}
        for name, (params, macs, acc) in paper.TABLE3_OTHER_SYSTEMS.items()
    ]
    for label, seeds in runs.items():
        complexity = read_complexity(first_seed(seeds))
        for seed, files in seeds.items():
            rows.append({
                "Model": f"Proposed Model ({label})", "seed": int(seed),
                "Param/K": round(complexity["params"] / 1000, 2),
                "MACs/M": round(complexity["macs"] / 1e6, 2),
                "ACC": percent(read_json(files["eval_int8"])["accuracy"]),
                "Source": "this run",
            })  # fmt: skip
    return pd.DataFrame(rows)


def device_table(runs: dict[str, SeedFiles], first_column: str) -> pd.DataFrame:
    """Tables IV and V: accuracy per device and overall for each labelled student run (float models), with the
    macro accuracy, log loss and the mean validation accuracy of the last ten epochs."""
    rows = []
    for label, seeds in runs.items():
        for seed, files in seeds.items():
            metrics = read_json(files["eval_float"])
            per_device = metrics["devices"]
            devices = {header: percent(per_device[d]["accuracy"]) if d in per_device else math.nan
                       for header, d in zip(DEVICE_HEADERS, DEVICES, strict=True)}  # fmt: skip
            scores = _scores(metrics)
            rows.append({
                first_column: label, "seed": int(seed), **devices, "ACC": scores["acc"],
                f"ACC (last {LAST_EPOCHS} epochs)": percent(last_epochs_accuracy(files["history"])),
                "macro ACC": scores["macro"], "log loss": scores["log_loss"],
            })  # fmt: skip
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame, label: str, spread: tuple[str, ...]) -> pd.DataFrame:
    """One row per label: `mean ± std (n=...)` in the `spread` columns, the mean elsewhere (sizes, per device)."""
    rows = []
    for name, group in frame.groupby(label, sort=False):
        if group["seed"].isna().all():  # quoted from the paper, not measured here
            rows.append(group.drop(columns="seed").iloc[0].to_dict())
            continue
        row = {label: name}
        for column in frame.columns.drop([label, "seed"]):
            values = group[column]
            if column in spread:
                row[column] = format_mean_std(values, digits=4 if column.startswith("log loss") else 2)
            elif pd.api.types.is_numeric_dtype(values):
                row[column] = round(float(values.mean()), 2) if values.notna().any() else math.nan
            else:
                row[column] = values.iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


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


def paper_inconsistencies(table: str) -> list[str]:
    """Where the paper contradicts itself in a table: sizes that are not its own parameter counts x 4 bytes."""
    if table != "table2":
        return []
    notes = []
    for system, (params, _, size, _, _) in paper.TABLE2.items():
        if abs(size - 4 * params) > 0.01 * 4 * params:
            notes.append(
                f"The paper's {system} Size/KB ({size}) contradicts its own parameter count: {params} K parameters x"
                f" 4 bytes (float32) = {4 * params:.2f} KB, as its other rows are; this run's size is the count x 4."
            )
    return notes


def to_markdown(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        return "" if value is None or (isinstance(value, float) and value != value) else str(value)  # NaN: blank

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


TITLES = {
    "table2": "Table II. Performance under various parameter configurations",
    "table3": "Table III. Comparing model performance",
    "table4": "Table IV. Fused and averaged teacher models (sm4), accuracy % per device",
    "table5": "Table V. Normalization and augmentation ablation (sm4), accuracy % per device",
}
# Per table: the row-label column and the columns shown as mean ± std over seeds.
LAYOUT = {
    "table2": ("System", ("ACC/%", "ACC(QAT)/%", "macro ACC/%", "macro ACC(QAT)/%", "log loss", "log loss(QAT)")),
    "table3": ("Model", ("ACC",)),
    "table4": ("Methods", ("ACC", f"ACC (last {LAST_EPOCHS} epochs)", "macro ACC", "log loss")),
    "table5": ("Model", ("ACC", f"ACC (last {LAST_EPOCHS} epochs)", "macro ACC", "log loss")),
}
READING = (
    "Accuracy in % of the test split: mean ± std over the seeds (n). Per-device columns are means. macro ACC is "
    "DCASE's class-averaged accuracy. Differences between rows and their 95 % intervals, and whether they "
    "support the paper, are in claims.md; a difference smaller than its interval is not distinguishable."
)


def machines_note(evaluation_files: Iterable[str | Path]) -> str:
    """Which machines trained and evaluated the models of some eval_*.json: float training is bit-reproducible
    on one CPU, not across CPUs, so rows from different machines differ by more than their code."""
    evaluations = [read_json(path) for path in dict.fromkeys(map(str, evaluation_files))]
    trained = distinct_machines(machine for run in evaluations for machine in run.get("trained_on") or [None])
    measured = distinct_machines(run.get("measured_on") for run in evaluations)
    return f"Trained on: {'; '.join(trained)}. Evaluated on: {'; '.join(measured)}."


def build_table(table: str, runs: dict[str, SeedFiles]) -> pd.DataFrame:
    if table == "table2":
        return table2(runs)
    if table == "table3":
        return table3(runs)
    if table in ("table4", "table5"):
        return device_table(runs, LAYOUT[table][0])
    raise PipelineError(f"unknown table {table!r} (choose from {', '.join(TITLES)})")


def _notes(notes: list[str]) -> str:
    return "".join(f"\nNote: {note}\n" for note in notes)


def write_table(table: str, runs: dict[str, SeedFiles], out_csv: Path, out_md: Path) -> pd.DataFrame:
    frame = build_table(table, runs)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    label, spread = LAYOUT[table]
    summary = summarise(frame, label, spread)
    run_notes, paper_notes = (_notes(found) for found in (short_curve_notes(table, runs), paper_inconsistencies(table)))
    evaluations = [path for seeds in runs.values() for files in seeds.values()
                   for role, path in files.items() if role.startswith("eval_")]  # fmt: skip
    text = (
        f"# {TITLES[table]}\n\n{READING}\n\nThis run:\n\n{to_markdown(summary)}\n{machines_note(evaluations)}\n"
        f"{run_notes}\nThe paper (TAU22, one run), for comparison:\n\n{to_markdown(paper_reference(table))}"
        f"{paper_notes}"
    )
    with atomic_path(out_md) as tmp:
        tmp.write_text(text)
    return frame
