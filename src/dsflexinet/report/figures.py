"""Figures of the paper that come from evaluations (the confusion matrices of Fig. 3) and the claims' forest plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dsflexinet.atomic import (
    atomic_path,  # noqa: E402
    read_json,  # noqa: E402
)

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


VERDICT_COLOURS = {"supported": "tab:green", "not distinguishable": "tab:gray", "contradicted": "tab:red",
                   "provisional: supported": "yellowgreen", "provisional: contradicted": "salmon"}  # fmt: skip


def plot_claims(frame: pd.DataFrame, out_png: Path, statistic: str = "accuracy") -> None:
    """Forest plot of claims.csv's rows for one statistic: this run's difference and interval (coloured by
    verdict) over its family-wise interval (thin), the paper's difference, 0 and each bound claim's threshold;
    the first claim on top."""
    rows = frame[frame["statistic"] == statistic].reset_index(drop=True)
    figure, axes = plt.subplots(figsize=(9.0, 1.2 + 0.42 * max(len(rows), 1)))
    y = np.arange(len(rows))[::-1]
    for position, row in zip(y, rows.itertuples(index=False), strict=True):
        colour = VERDICT_COLOURS[row.verdict]
        axes.plot([row.family_low_pp, row.family_high_pp], [position] * 2, color=colour, linewidth=0.8, alpha=0.6)
        error = [[row.difference_pp - row.low_pp], [row.high_pp - row.difference_pp]]
        axes.errorbar(row.difference_pp, position, xerr=error, fmt="o", color=colour, capsize=3, markersize=5)
        if pd.notna(row.paper_pp):
            axes.plot(row.paper_pp, position, marker="D", markerfacecolor="none", markeredgecolor="black", markersize=6)
        if row.threshold_pp != 0:
            axes.plot([row.threshold_pp] * 2, [position - 0.4, position + 0.4], color="tab:orange", linestyle="--")
        axes.annotate(row.verdict, (1.01, position), xycoords=("axes fraction", "data"), va="center", color=colour,
                      fontsize=8)  # fmt: skip
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_yticks(y, [f"{row.claim} ({row.source})" for row in rows.itertuples(index=False)], fontsize=8)
    axes.set_ylim(-0.7, len(rows) - 0.3)
    axes.set_xlabel(f"A - B, {statistic.replace('_', ' ')} (percentage points)")
    title = "Claims of the paper: none in this run"
    if len(rows):
        covers = "; ".join(rows["interval_covers"].unique())
        title = f"Claims of the paper: this run, {100 * rows['confidence'].iloc[0]:g} % intervals, {covers}"
    axes.set_title(title, fontsize=9)
    handles = [
        plt.Line2D([], [], marker="o", color="tab:gray", linestyle="none", label="this run, interval"),
        plt.Line2D([], [], color="tab:gray", linewidth=0.8, alpha=0.6, label="family-wise interval"),
        plt.Line2D([], [], marker="D", markerfacecolor="none", markeredgecolor="black", linestyle="none",
                   label="paper"),
        plt.Line2D([], [], color="tab:orange", linestyle="--", label="bound of a bound claim"),
    ]  # fmt: skip
    axes.legend(handles=handles, fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.06), ncol=4, frameon=False)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=150)
    plt.close(figure)
