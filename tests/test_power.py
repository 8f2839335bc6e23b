"""The power analysis: the between-location spread of a paired difference, the half-width it gives at L
locations and the locations a target half-width needs, on constructed tables whose answers are known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsflexinet.cli import main
from dsflexinet.errors import PipelineError
from dsflexinet.report.power import half_width, locations_needed, power_frame, write_power
from dsflexinet.report.stats import System, location_spread, paired_difference
from tests.test_claims import clips_table, locations_of, simulated_pair

Z_975 = 1.959963984540054


def alternating_pair(locations: int = 20, clips: int = 10) -> tuple[System, System]:
    """A right on every clip; B wrong on 4 of the 10 clips of every odd location: the per-location differences
    are 0 and 0.4 in turn, mean 0.2, standard deviation 0.2 * sqrt(20 / 19) (ddof 1) for 20 locations."""
    identifiers = locations_of([clips] * locations)
    b_right = np.concatenate([np.arange(clips) >= (4 if i % 2 else 0) for i in range(locations)])
    return (System("A", {1: clips_table(np.ones(locations * clips, bool), identifiers)}),
            System("B", {1: clips_table(b_right, identifiers)}))  # fmt: skip


def test_spread_half_width_and_locations_needed_of_a_known_case() -> None:
    a, b = alternating_pair()
    spread, locations = location_spread(a, b)
    assert locations == 20 and spread == pytest.approx(0.2 * math.sqrt(20 / 19))
    assert half_width(spread, 20) == pytest.approx(Z_975 * spread / math.sqrt(20))  # 8.99 points
    # +-3 points: L >= (1.96 * 20.52 / 3)^2 = 179.7 -> 180 locations, 18 per scene of 10.
    assert locations_needed(100 * spread, 3.0) == 180
    frame = power_frame({"A - B": (a, b)})
    row = frame.iloc[0]
    assert (row["locations"], row["spread_pp"], row["half_width_pp"]) == (20, 20.52, 8.99)
    assert (row["locations_needed"], row["per_scene_needed"], row["seeds"]) == (180, 18, 1)
    assert row["half_width_pp_2_per_scene"] == 8.99 and row["half_width_pp_40_per_scene"] == pytest.approx(
        100 * Z_975 * spread / math.sqrt(400), abs=0.01)  # fmt: skip
    assert locations_needed(100 * spread, 3.0, confidence=0.99) == math.ceil((2.5758293035489 * 20.52 / 3) ** 2)
    # The location bootstrap's own standard error: the plug-in (ddof 0) version of spread / sqrt(L).
    bootstrap = paired_difference(a, b, resamples=20_000)
    assert np.std(bootstrap.replicates) == pytest.approx(spread * math.sqrt(19 / 20) / math.sqrt(20), rel=0.02)
    with pytest.raises(PipelineError, match="target half-width must be above 0"):
        locations_needed(spread, 0.0)


def test_spread_matches_the_bootstrap_with_uneven_locations_and_seeds() -> None:
    # Delta method against the bootstrap, on clips of unequal counts per location and three seeds each.
    rng = np.random.default_rng(5)
    a, b = simulated_pair(rng, seeds=(1, 2, 3), training_noise=0.04, locations=40)
    keep = rng.random(len(a.clips[1])) < np.repeat(rng.uniform(0.3, 1.0, 40), 45)  # 30-100 % of each location's
    a, b = (System(side.name, {seed: table[keep].reset_index(drop=True) for seed, table in side.clips.items()})
            for side in (a, b))  # fmt: skip
    spread, locations = location_spread(a, b)
    bootstrap = paired_difference(a, b, resamples=20_000)
    assert locations == 40
    assert np.std(bootstrap.replicates) == pytest.approx(spread * math.sqrt(39 / 40) / math.sqrt(40), rel=0.05)


def test_power_command_writes_its_tables(tmp_path: Path) -> None:
    a, b = alternating_pair()
    paths = {}
    for system in (a, b):
        paths[system.name] = tmp_path / f"{system.name}.tsv"
        system.clips[1].to_csv(paths[system.name], sep="\t", index=False)
    comparisons = {"sm4 - sm4-avg": {"a": {"1": str(paths["A"])}, "b": {"1": str(paths["B"])}}}
    out_csv, out_md = tmp_path / "power.csv", tmp_path / "power.md"
    assert main(["power", "--comparisons", json.dumps(comparisons), "--target", "3", "--out-csv", str(out_csv),
                 "--out-md", str(out_md)]) == 0  # fmt: skip
    frame = pd.read_csv(out_csv)
    assert frame.loc[0, "per_scene_needed"] == 18 and frame.loc[0, "spread_pp"] == 20.52
    markdown = out_md.read_text()
    assert "needs 18 test locations per scene (180 in all; the largest need: sm4 - sm4-avg)" in markdown
    assert "| sm4 - sm4-avg | 1 | 20 | 20.52 | 8.99 | 8.99 |" in markdown
    with pytest.raises(PipelineError, match="comparison 'x' needs 'a' and 'b'"):
        write_power({"x": {"a": {}}}, out_csv, out_md)
