"""Classify an evaluation folder into the task's output.csv, and score it where labels are given:

    python -m <package>.evaluate_submission ROOT --out-csv output.csv [--out-accuracy test_accuracy.json]

ROOT is a folder in the TAU22 layout (the first of `evaluation_setup/fold1_evaluate.csv`, `evaluation_setup/
fold1_test.csv`, `meta.csv` lists its clips) or any folder of WAVs. Device IDs come from the table's
`source_label` or `device` column where it has one, otherwise from the file names. With a `scene_label` column
(the development set's fold1_evaluate.csv) the accuracy overall, per device and per class is written too.

output.csv: tab-separated, `filename` (without `audio/`), `scene_label`, one softmax probability per class.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from . import predict

TABLES = ("evaluation_setup/fold1_evaluate.csv", "evaluation_setup/fold1_test.csv", "meta.csv")
DEVICE_COLUMNS = ("source_label", "device")


def evaluation_rows(root: Path) -> list[dict]:
    """{filename, path, device (or None), scene_label (or None)} of every clip of `root`."""
    for name in TABLES:
        if (root / name).is_file():
            with (root / name).open(newline="") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
            device_column = next((column for column in DEVICE_COLUMNS if rows and column in rows[0]), None)
            return [{"filename": row["filename"], "path": root / row["filename"],
                     "device": row[device_column] if device_column else None,
                     "scene_label": row.get("scene_label")} for row in rows]  # fmt: skip
    return [{"filename": path.name, "path": path, "device": None, "scene_label": None}
            for path in sorted(root.rglob("*.wav"))]  # fmt: skip


def accuracy(rows: list[dict], predicted: list[str], devices: list[str]) -> dict:
    """Accuracy overall, per device and per class."""
    correct = [row["scene_label"] == label for row, label in zip(rows, predicted, strict=True)]

    def share(keys: list[str]) -> dict:
        return {key: sum(c for c, k in zip(correct, keys, strict=True) if k == key) / keys.count(key)
                for key in sorted(set(keys))}  # fmt: skip

    return {"clips": len(rows), "accuracy": sum(correct) / len(rows), "devices": share(devices),
            "classes": share([row["scene_label"] for row in rows])}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--out-csv", type=Path, required=True)
    parser.add_argument("--out-accuracy", type=Path, help="written where the clips are labelled")
    parser.add_argument("--models", type=Path, help="a folder of model files (default: this package's)")
    args = parser.parse_args(argv)
    rows = evaluation_rows(args.root)
    logits, classes = predict([row["path"] for row in rows], [row["device"] for row in rows], args.models)
    probabilities = torch.softmax(logits, dim=1).numpy()
    predicted = [classes[index] for index in probabilities.argmax(axis=1)]
    with args.out_csv.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["filename", "scene_label", *classes])
        for row, label, values in zip(rows, predicted, probabilities, strict=True):
            writer.writerow([row["filename"].removeprefix("audio/"), label, *(f"{value:.8g}" for value in values)])
    if args.out_accuracy and all(row["scene_label"] for row in rows):
        from . import device_from_file_name

        devices = [row["device"] or device_from_file_name(row["path"]) for row in rows]
        args.out_accuracy.write_text(json.dumps(accuracy(rows, predicted, devices), indent=2) + "\n")


if __name__ == "__main__":
    main()
