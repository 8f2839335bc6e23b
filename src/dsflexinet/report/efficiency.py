"""The data-efficiency curve: the accuracy of each student size against the DCASE'24 training subset it learnt
from (split5 ... split100, each with its own teachers and fusion, as DCASE'24 allows only the subset's data).

The plan (the workflow builds it from dsflexinet.layout) names each subset's clip table (`train.tsv`: how many
clips the students learnt from) and, for each run, fraction and precision, the per-clip table of each seed's
development-test evaluation. A point is the mean over seeds of accuracy, or of macro (class-averaged, DCASE's)
accuracy, with the interval of `report.stats.statistic_interval`: a bootstrap over test recording locations,
widened by the seeds' t-interval where there are several; with one seed it covers test-set sampling only, and
the table says which. With few seeds that t-part is wide (t = 12.7 for two) and may reach past what an accuracy
can be: intervals are clipped to 0-100 %. Every point is measured on the same test clips, so the test-set part
of the intervals is shared between points: compare points by their seed values, not by overlapping intervals.

The DCASE'24 baseline's published macro accuracies (`paper.DCASE24_BASELINE`) stand beside this run's as a
labelled reference, in their own table and line style, never in this run's rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dsflexinet.atomic import atomic_path, write_text  # noqa: E402
from dsflexinet.data.splits import read_clip_table  # noqa: E402
from dsflexinet.errors import PipelineError  # noqa: E402
from dsflexinet.report.paper import DCASE24_BASELINE  # noqa: E402
from dsflexinet.report.stats import RESAMPLES, RNG_SEED, System, mean_std, statistic_interval  # noqa: E402
from dsflexinet.report.tables import to_markdown  # noqa: E402

STATISTICS = ("accuracy", "macro_accuracy")
EFFICIENCY_COLUMNS = (
    "run", "fraction", "training_clips", "precision", "n_seeds", "seeds",
    *(f"{name}_{part}" for name in STATISTICS for part in ("pct", "std_pct", "low_pct", "high_pct")),
    "interval_covers", "locations", "clips", "confidence", "resamples", "rng_seed",
)  # fmt: skip


def _checked(plan: Mapping) -> tuple[dict[int, str], list[Mapping]]:
    """{fraction: train.tsv} and the systems of a plan, or one line naming what is missing."""
    if not isinstance(plan, Mapping) or not isinstance(plan.get("training_clips"), Mapping):
        raise PipelineError("data-efficiency plan: needs a mapping 'training_clips' {fraction: train.tsv}")
    if not isinstance(plan.get("systems"), list) or not plan["systems"]:
        raise PipelineError("data-efficiency plan: needs a non-empty list 'systems'")
    training = {int(fraction): path for fraction, path in plan["training_clips"].items()}
    for number, system in enumerate(plan["systems"]):
        missing = [key for key in ("run", "fraction", "precision", "clips") if key not in system]
        if missing:
            raise PipelineError(f"data-efficiency plan: system {number} has no {', '.join(missing)}")
        if int(system["fraction"]) not in training:
            raise PipelineError(f"data-efficiency plan: fraction {system['fraction']} has no training_clips entry")
    return training, list(plan["systems"])


def _percent(value: float) -> float:
    return round(100 * value, 2)


def efficiency_frame(plan: Mapping, *, resamples: int = RESAMPLES, confidence: float = 0.95,
                     rng_seed: int = RNG_SEED) -> pd.DataFrame:  # fmt: skip
    """One row per system of the plan (run, fraction, precision), in plan order; accuracies in %."""
    training, systems = _checked(plan)
    counts = {fraction: len(read_clip_table(path)) for fraction, path in training.items()}
    rows = []
    for system in systems:
        fraction = int(system["fraction"])
        clips = System.read(f"{system['run']} split{fraction} {system['precision']}", system["clips"])
        row = {"run": system["run"], "fraction": fraction, "training_clips": counts[fraction],
               "precision": system["precision"]}  # fmt: skip
        for name in STATISTICS:
            estimate = statistic_interval(clips, name, resamples=resamples, confidence=confidence, rng_seed=rng_seed)
            low, high = max(estimate.low, 0.0), min(estimate.high, 1.0)  # an accuracy lies in [0, 1]
            row |= {
                f"{name}_pct": _percent(estimate.estimate), f"{name}_std_pct": _percent(mean_std(estimate.values)[1]),
                f"{name}_low_pct": _percent(low), f"{name}_high_pct": _percent(high),
            }  # fmt: skip
        row |= {
            "n_seeds": len(estimate.seeds), "seeds": ";".join(map(str, estimate.seeds)),
            "interval_covers": estimate.interval_covers, "locations": estimate.locations, "clips": estimate.clips,
            "confidence": confidence, "resamples": resamples, "rng_seed": rng_seed,
        }  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows, columns=EFFICIENCY_COLUMNS)


def _cell(row: pd.Series, name: str) -> str:
    return f"{row[f'{name}_pct']:.1f} [{row[f'{name}_low_pct']:.1f}, {row[f'{name}_high_pct']:.1f}]"


def _counts(frame: pd.DataFrame, column: str) -> str:
    return "/".join(map(str, frame[column].unique()))


def _markdown(frame: pd.DataFrame) -> str:
    first = frame.iloc[0]
    rows = []
    for (run, fraction), systems in frame.groupby(["run", "fraction"], sort=False):
        row = {"run": run, "subset": f"split{fraction}", "training clips": systems["training_clips"].iloc[0]}
        for name in STATISTICS:
            for _, system in systems.iterrows():
                row[f"{name.replace('_', ' ')} {system['precision']}"] = _cell(system, name)
        rows.append(row | {"seeds": systems["seeds"].iloc[0]})
    table = pd.DataFrame(rows)
    baseline = DCASE24_BASELINE
    reference = pd.DataFrame({
        "subset": [f"split{fraction}" for fraction in baseline["macro_accuracy"]],
        "macro accuracy %": [f"{mean:.2f} ± {std:.2f}" for mean, std in baseline["macro_accuracy"].values()],
    })  # fmt: skip
    lines = [
        "# Data efficiency: accuracy against the DCASE'24 training subset",
        "",
        (
            "Each student run trained on each subset of fold1_train (its own teachers and fusion too), evaluated on "
            f"the {_counts(frame, 'clips')} development-test clips. Accuracy and macro (class-averaged, DCASE's) "
            f"accuracy in %: mean over seeds [{100 * first['confidence']:g} % interval]; the interval covers "
            f"{'; '.join(frame['interval_covers'].unique())}: a bootstrap over the {_counts(frame, 'locations')} test "
            f"recording locations ({first['resamples']} resamples, RNG seed {first['rng_seed']}), widened by the "
            "seeds' t-interval where n > 1, clipped to 0-100 %. All points share the test clips, so their intervals "
            "are not independent."
        ),
        "",
        "## This run",
        "",
        to_markdown(table).rstrip("\n"),
        "",
        f"## Reference, not this run: {baseline['system']} (published)",
        "",
        (
            f"Macro accuracy on TAU22's development test split, mean ± std over its {baseline['runs']} runs; "
            f"{baseline['params']:,} parameters, {baseline['macs_m']} M MACs. Another system and, unless this run "
            "trained on TAU22, another data set: a reference for the shape of the curve, not a comparison."
        ),
        "",
        to_markdown(reference).rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"


def plot_data_efficiency(frame: pd.DataFrame, out_png: str | Path) -> None:
    """Accuracy and macro accuracy against the training fraction (log axis), a colour per run, float solid and
    int8 dashed, with the intervals; the DCASE'24 baseline in black on the macro panel, labelled as published."""
    figure, panels = plt.subplots(1, 2, figsize=(11.0, 4.4), sharey=True)
    colours = dict(zip(dict.fromkeys(frame["run"]), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10,
                       strict=False))  # fmt: skip
    styles = {"float": ("-", "o", 0.97), "int8": ("--", "s", 1.03)}  # line, marker, x offset (log axis)
    for axes, name in zip(panels, STATISTICS, strict=True):
        for (run, precision), rows in frame.groupby(["run", "precision"], sort=False):
            rows = rows.sort_values("fraction")
            line, marker, offset = styles.get(precision, (":", "^", 1.0))
            centre = rows[f"{name}_pct"].to_numpy()
            error = [centre - rows[f"{name}_low_pct"].to_numpy(), rows[f"{name}_high_pct"].to_numpy() - centre]
            axes.errorbar(rows["fraction"] * offset, centre, yerr=error, color=colours[run], linestyle=line,
                          marker=marker, markersize=4, capsize=2, label=f"{run} {precision}")  # fmt: skip
        if name == "macro_accuracy":
            fractions = np.array(list(DCASE24_BASELINE["macro_accuracy"]))
            mean, std = np.array(list(DCASE24_BASELINE["macro_accuracy"].values())).T
            axes.errorbar(fractions, mean, yerr=std, color="black", linestyle=":", marker="D", markersize=4,
                          markerfacecolor="none", capsize=2,
                          label=f"{DCASE24_BASELINE['system']} (published: TAU22, {DCASE24_BASELINE['runs']} runs, "
                                "mean ± std)")  # fmt: skip
        axes.set_ylim(0, 100)
        axes.set_xscale("log")
        ticks = sorted(set(frame["fraction"]) | set(DCASE24_BASELINE["macro_accuracy"]))
        axes.set_xticks(ticks, [f"{tick} %" for tick in ticks])
        axes.minorticks_off()
        axes.set_xlabel("training subset (% of fold1_train)")
        axes.set_title(name.replace("_", " ") + " %")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    panels[0].set_ylabel("development test, %")
    first = frame.iloc[0]
    figure.suptitle(f"Data efficiency: mean over seeds, {100 * first['confidence']:g} % intervals over "
                    f"{'; '.join(frame['interval_covers'].unique())}", fontsize=9)  # fmt: skip
    figure.tight_layout()
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=150)
    plt.close(figure)


def write_data_efficiency(plan: Mapping, out_csv: str | Path, out_md: str | Path, out_png: str | Path,
                          **options) -> pd.DataFrame:  # fmt: skip
    """data_efficiency.csv (every number), .md (the table people read, with the reference) and .png; options go
    to `efficiency_frame` (resamples, confidence, rng_seed)."""
    frame = efficiency_frame(plan, **options)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    write_text(out_md, _markdown(frame))
    plot_data_efficiency(frame, out_png)
    return frame
