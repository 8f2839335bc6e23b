"""Figures of the paper that come from evaluations: the confusion matrices of Fig. 3."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dsflexinet.atomic import atomic_path  # noqa: E402
from dsflexinet.report.tables import read_json  # noqa: E402

# The paper's abbreviations (Fig. 3 caption).
SHORT_LABELS = {
    "metro_station": "MS", "public_square": "PS", "shopping_mall": "SM", "street_pedestrian": "SP",
    "street_traffic": "ST",
}  # fmt: skip


def plot_confusion(eval_jsons: list[Path], title: str, out_png: Path) -> np.ndarray:
    """Row-normalised confusion matrix (% of each true scene) with the percentages written in; the counts of
    several evaluations (the seeds of a run) add up."""
    evaluations = [read_json(path) for path in eval_jsons]
    metrics = evaluations[0]
    counts = np.sum([np.asarray(e["confusion_matrix"], dtype=float) for e in evaluations], axis=0)
    rates = 100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    labels = [SHORT_LABELS.get(label, label) for label in metrics["labels"]]
    figure, axes = plt.subplots(figsize=(6.4, 5.6))
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=100)
    for (row, column), value in np.ndenumerate(rates):
        axes.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=7,
                  color="white" if value > 60 else "black")  # fmt: skip
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    accuracy = np.trace(counts) / counts.sum()
    seeds = f", {len(evaluations)} seeds pooled" if len(evaluations) > 1 else ""
    axes.set_title(f"{title}\naccuracy {100 * accuracy:.1f} %{seeds}")
    figure.colorbar(image, ax=axes, label="% of true class")
    figure.tight_layout()
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=150)
    plt.close(figure)
    return rates
