"""How many test recording locations a paired interval needs: the half-width of the location bootstrap's
interval as a function of the number of locations, from a run's per-clip tables.

Model: the location bootstrap's standard error of a paired difference at L locations is s / sqrt(L), s the
between-location standard deviation of the difference (`stats.location_spread`), so the interval's half-width
is z(1 - alpha/2) * s / sqrt(L) and a half-width of at most h needs L >= (z s / h)^2 locations, spread evenly
over the scenes. Only the test-set part: the seeds' t-part (several seeds) does not shrink with locations.

The intended input is the development run's hold-out tables (`config/development.yaml`: recording locations no
model of that run trained on), so that sizing the default run's test split reads nothing of the test split. The
functions read whatever tables they are given. The hold-out has fewer clips per location than the test split
(devices A to S3 only, no S4-S6), so its s also carries more within-location clip noise and, where the unseen
devices add spread between locations, none of theirs: a first estimate, to be checked on the run it sizes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from scipy.special import ndtri

from dsflexinet.atomic import atomic_path, write_text
from dsflexinet.data.tau22 import SCENES
from dsflexinet.errors import PipelineError
from dsflexinet.report.stats import System, location_spread
from dsflexinet.report.tables import to_markdown

PER_SCENE = (2, 5, 10, 20, 40)  # locations per scene shown in the table (the default run has 2)


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise PipelineError(f"confidence must lie between 0 and 1, not {confidence}")
    return float(ndtri(1 - (1 - confidence) / 2))


def half_width(spread: float, locations: int, confidence: float = 0.95) -> float:
    """The interval's half-width at `locations` locations, for a between-location standard deviation."""
    return _z(confidence) * spread / math.sqrt(locations)


def locations_needed(spread: float, target: float, confidence: float = 0.95) -> int:
    """The fewest locations whose half-width is at most `target` (same units as `spread`)."""
    if target <= 0:
        raise PipelineError(f"target half-width must be above 0, not {target}")
    return max(2, math.ceil((_z(confidence) * spread / target) ** 2 - 1e-9))


def power_frame(comparisons: Mapping[str, tuple[System, System]], target_pp: float = 3.0, confidence: float = 0.95,
                scenes: int = len(SCENES), per_scene: Sequence[int] = PER_SCENE) -> pd.DataFrame:  # fmt: skip
    """One row per comparison (accuracy, A - B): locations and spread in the given tables, the half-width
    there and at `per_scene` locations per scene, and the locations (and per scene) a half-width of
    `target_pp` points needs."""
    rows = []
    for label, (a, b) in comparisons.items():
        spread, locations = location_spread(a, b, "accuracy")
        needed = locations_needed(100 * spread, target_pp, confidence)
        row = {
            "comparison": label, "a": a.name, "b": b.name, "seeds": len(set(a.clips) & set(b.clips)),
            "locations": locations, "spread_pp": round(100 * spread, 2),
            "half_width_pp": round(100 * half_width(spread, locations, confidence), 2),
            "target_pp": target_pp, "confidence": confidence, "locations_needed": needed,
            "per_scene_needed": math.ceil(needed / scenes),
        }  # fmt: skip
        row |= {f"half_width_pp_{k}_per_scene": round(100 * half_width(spread, k * scenes, confidence), 2)
                for k in per_scene}  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame, scenes: int) -> str:
    first = frame.iloc[0]
    confidence, target = 100 * first["confidence"], first["target_pp"]
    grid = [column for column in frame.columns if column.startswith("half_width_pp_")]
    table = frame[["comparison", "seeds", "locations", "spread_pp", "half_width_pp", *grid, "per_scene_needed"]]
    table = table.rename(columns={
        "locations": "locations read", "spread_pp": "s (pp)", "half_width_pp": "± there",
        "per_scene_needed": f"per scene for ±{target:g}",
        **{column: f"± at {column.split('_')[3]}/scene" for column in grid},
    })  # fmt: skip
    worst = frame.loc[frame["per_scene_needed"].idxmax()]
    return "\n".join([
        "# Test locations a paired interval needs",
        "",
        f"Accuracy, A - B. s: the between-location standard deviation of the paired difference in the tables read "
        f"(delta method); ± the {confidence:g} % location-bootstrap half-width z s / sqrt(L) at L locations "
        f"({scenes} scenes). The seeds' part of an interval comes on top and does not shrink with locations.",
        "",
        to_markdown(table).rstrip("\n"),
        "",
        f"A half-width of at most ±{target:g} points for every comparison needs {worst['per_scene_needed']} test "
        f"locations per scene ({worst['locations_needed']} in all; the largest need: {worst['comparison']}).",
    ]) + "\n"  # fmt: skip


def write_power(comparisons: Mapping[str, Mapping], out_csv: str | Path, out_md: str | Path, **options) -> pd.DataFrame:
    """`comparisons`: {label: {"a": {seed: clips.tsv}, "b": {seed: clips.tsv}}}, e.g. the development run's
    hold-out tables of the sm4 runs; options go to `power_frame`."""
    if not comparisons:
        raise PipelineError("power: no comparison given")
    systems = {}
    for label, sides in comparisons.items():
        if not isinstance(sides, Mapping) or not {"a", "b"} <= set(sides):
            raise PipelineError(f"power: comparison {label!r} needs 'a' and 'b', each {{seed: clips table}}")
        systems[label] = tuple(System.read(f"{label} {side}", sides[side]) for side in ("a", "b"))
    frame = power_frame(systems, **options)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    write_text(out_md, _markdown(frame, options.get("scenes", len(SCENES))))
    return frame
