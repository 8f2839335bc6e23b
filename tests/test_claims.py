"""Statistics over seeds, paired location-bootstrap intervals and the claims table, on constructed cases whose
answers are known (by hand, by binomial counts, by enumeration of every resample, or by simulation)."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import yaml

from dsflexinet.data.tau22 import DEVICES
from dsflexinet.errors import PipelineError
from dsflexinet.report.claims import (
    CLAIM_COLUMNS,
    MIN_SEEDS,
    VERDICTS,
    _row,
    claims_frame,
    claims_plan,
    paper_claims,
    plan_inputs,
    verdict,
    write_claims,
)
from dsflexinet.report.figures import VERDICT_COLOURS, plot_claims
from dsflexinet.report.stats import (
    System,
    device_group_difference,
    family_confidence,
    family_intervals,
    format_mean_std,
    mean_std,
    paired_difference,
    read_clips,
    resample_weights,
    seed_values,
    statistic,
)
from dsflexinet.report.tables import read_json

REPO = Path(__file__).resolve().parents[1]
T_975_2DF = 4.302652729749462  # Student's t, 97.5 % quantile, 2 degrees of freedom (tables: 4.303)


def clips_table(correct, identifiers, devices=None, labels=None, nll=None, path: str = "") -> pd.DataFrame:
    """A clips table as evaluation writes it; a wrong clip predicts the next class."""
    correct = np.asarray(correct, bool)
    n = correct.size
    labels = np.zeros(n, np.int64) if labels is None else np.asarray(labels)
    table = pd.DataFrame({
        "filename": [f"clip-{i:05d}.wav" for i in range(n)], "identifier": list(identifiers),
        "device": [DEVICES[i % 9] for i in range(n)] if devices is None else list(devices), "label": labels,
        "prediction": np.where(correct, labels, (labels + 1) % 10), "nll": np.ones(n) if nll is None else nll,
    })  # fmt: skip
    table.attrs["path"] = path
    return table


def locations_of(clips_per_location: list[int]) -> list[str]:
    return [f"city-{i}" for i, size in enumerate(clips_per_location) for _ in range(size)]


def test_statistics_of_a_known_table() -> None:
    # class 0: 8 clips, all right; class 1: 2 clips, both wrong -> accuracy 0.8, class-averaged 0.5
    table = clips_table([True] * 8 + [False] * 2, ["city-0"] * 10, labels=[0] * 8 + [1] * 2,
                        nll=np.arange(10, dtype=float), devices=["a"] * 5 + ["s4"] * 5)  # fmt: skip
    assert statistic(table) == pytest.approx(0.8)
    assert statistic(table, "macro_accuracy") == pytest.approx(0.5)
    assert statistic(table, "log_loss") == pytest.approx(4.5)
    assert statistic(table, "accuracy", devices=["s4"]) == pytest.approx(0.6)  # 3 right of 5
    assert statistic(table, "macro_accuracy", devices=["s4"]) == pytest.approx(0.5)  # (3/3 + 0/2) / 2
    with pytest.raises(PipelineError, match="unknown statistic 'f1'"):
        statistic(table, "f1")


def test_mean_std_over_seeds(tmp_path: Path) -> None:
    identifiers = ["city-0"] * 4
    paths = {}
    for seed, right in (("3", 1), ("1", 3)):  # JSON keys: seeds as strings
        paths[seed] = tmp_path / f"s{seed}.tsv"
        clips_table(np.arange(4) < right, identifiers).to_csv(paths[seed], sep="\t", index=False)
    system = System.read("sm1 float", paths)
    assert seed_values(system) == {1: 0.75, 3: 0.25} and list(system.clips) == [1, 3]
    assert format_mean_std(100 * value for value in seed_values(system).values()) == "50.0 ± 35.4 (n=2)"
    with pytest.raises(PipelineError, match="system sm1 float: seed 'last' is not an integer"):
        System.read("sm1 float", {"last": paths["1"]})
    assert mean_std([62.0, 63.0, 64.0]) == (63.0, 1.0, 3)  # ddof=1
    mean, std, n = mean_std([63.04])
    assert (mean, n) == (63.04, 1) and math.isnan(std)
    assert format_mean_std([61.8, 63.0, 64.2]) == "63.0 ± 1.2 (n=3)"
    assert format_mean_std([63.04]) == "63.0 (n=1)"
    assert format_mean_std([0.5, 0.75], digits=2) == "0.62 ± 0.18 (n=2)"


def test_read_clips_sorts_and_rejects_bad_tables(tmp_path: Path) -> None:
    table = clips_table([True, False, True], ["city-0"] * 3).iloc[::-1]
    table.to_csv(tmp_path / "clips.tsv", sep="\t", index=False)
    read = read_clips(tmp_path / "clips.tsv")
    assert list(read["filename"]) == ["clip-00000.wav", "clip-00001.wav", "clip-00002.wav"]
    assert read["label"].dtype == np.int64 and statistic(read) == pytest.approx(2 / 3)
    broken = {
        "missing column(s) nll": table.drop(columns="nll"),
        "column label must hold class indices 0-9": table.assign(label=[0, 10, 1]),
        "column nll must hold finite values >= 0": table.assign(nll=[1.0, -0.5, 1.0]),
        "file name 'clip-00001.wav' twice": table.assign(filename=["clip-00001.wav"] * 2 + ["clip-00000.wav"]),
        "unknown device(s) z": table.assign(device=["a", "z", "b"]),
    }
    for message, frame in broken.items():
        frame.to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
        with pytest.raises(PipelineError, match=re.escape(f"bad.tsv: {message}")) as error:
            read_clips(tmp_path / "bad.tsv")
        assert "\n" not in str(error.value)
    with pytest.raises(PipelineError, match="absent.tsv: not found"):
        read_clips(tmp_path / "absent.tsv")


def all_right_vs_half() -> tuple[System, System]:
    """10 locations of 9 clips (one per device): A right on every clip, B right on locations 0-4 only."""
    identifiers = locations_of([9] * 10)
    b_right = [int(name.split("-")[1]) < 5 for name in identifiers]
    return System("A", {1: clips_table([True] * 90, identifiers)}), System("B", {1: clips_table(b_right, identifiers)})


def test_interval_of_a_known_difference() -> None:
    a, b = all_right_vs_half()
    difference = paired_difference(a, b)
    assert difference.estimate == pytest.approx(0.5) and difference.per_seed == (0.5,)
    assert difference.values_a == (1.0,) and difference.values_b == (0.5,)
    # A resample's difference is the share of draws from B's wrong locations: Binomial(10, 1/2) / 10, whose
    # 2.5 % and 97.5 % quantiles are 2 and 8 (P(X <= 1) = 0.011, P(X <= 2) = 0.055, P(X <= 7) = 0.945,
    # P(X <= 8) = 0.989), far from the jumps: the percentile interval is exactly [0.2, 0.8].
    assert (difference.low, difference.high) == (pytest.approx(0.2), pytest.approx(0.8))
    assert (difference.test_low, difference.test_high) == (difference.low, difference.high)
    assert (difference.locations, difference.clips, difference.seeds) == (10, 90, (1,))
    assert difference.interval_covers == "test locations only (1 seed)"
    narrower = paired_difference(a, b, confidence=0.8)  # 10 % / 90 %: P(X <= 2) = 0.055, P(X <= 3) = 0.17
    assert (narrower.low, narrower.high) == (pytest.approx(0.3), pytest.approx(0.7))


def test_interval_matches_every_resample_enumerated() -> None:
    sizes, wrong = [2, 3, 4, 6], [0, 1, 3, 2]  # clips per location; B's wrong clips there (A: all right)
    values = []
    for draw in itertools.product(range(4), repeat=4):  # all 256 equally likely resamples
        weights = np.bincount(draw, minlength=4)
        values.append(weights @ wrong / (weights @ sizes))
    distinct, counts = np.unique(values, return_counts=True)
    cdf = np.cumsum(counts) / 256
    expected = []
    for quantile in (0.025, 0.975):
        i = int(np.searchsorted(cdf, quantile))
        assert cdf[i] - quantile > 0.004 and quantile - cdf[i - 1] > 0.004  # not at a jump: the answer is sharp
        expected.append(distinct[i])
    identifiers = locations_of(sizes)
    b_right = np.concatenate([np.arange(size) >= miss for size, miss in zip(sizes, wrong, strict=True)])
    a = System("A", {1: clips_table(np.ones(15, bool), identifiers)})
    difference = paired_difference(a, System("B", {1: clips_table(b_right, identifiers)}), resamples=20_000)
    assert difference.estimate == pytest.approx(6 / 15)
    assert (difference.low, difference.high) == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    assert expected == [pytest.approx(1 / 6), pytest.approx(9 / 14)]


def test_resample_weights_draw_n_locations_uniformly() -> None:
    weights = resample_weights(7, 20_000, np.random.default_rng(0))
    assert weights.shape == (20_000, 7) and (weights.sum(axis=1) == 7).all()
    assert weights.mean(axis=0) == pytest.approx(np.ones(7), abs=0.03)
    assert weights.var(axis=0) == pytest.approx(np.full(7, 6 / 7), abs=0.05)  # multinomial: n p (1 - p)


def test_seeds_add_a_t_interval_in_quadrature() -> None:
    identifiers = locations_of([9] * 10)
    location = np.array([int(name.split("-")[1]) for name in identifiers])
    a = System("A", {seed: clips_table(np.ones(90, bool), identifiers) for seed in (1, 2, 3)})
    b_right_below = {1: 5, 2: 6, 3: 4}  # per-seed differences 0.5, 0.4, 0.6: mean 0.5, std 0.1
    b = System("B", {seed: clips_table(location < k, identifiers) for seed, k in b_right_below.items()})
    difference = paired_difference(a, b)
    assert difference.per_seed == pytest.approx((0.5, 0.4, 0.6)) and difference.estimate == pytest.approx(0.5)
    seed_part = T_975_2DF * 0.1 / math.sqrt(3)
    assert difference.low == pytest.approx(0.5 - math.hypot(0.5 - difference.test_low, seed_part))
    assert difference.high == pytest.approx(0.5 + math.hypot(difference.test_high - 0.5, seed_part))
    assert difference.low < difference.test_low < 0.5 < difference.test_high < difference.high
    assert difference.interval_covers == "test locations and seeds (n=3)"
    # Three identical seeds: no training spread, the interval is the one-seed interval, as is its estimate.
    one_seed_a, one_seed_b = all_right_vs_half()
    same = paired_difference(System("A", dict.fromkeys((1, 2, 3), one_seed_a.clips[1])),
                             System("B", dict.fromkeys((1, 2, 3), one_seed_b.clips[1])))  # fmt: skip
    alone = paired_difference(one_seed_a, one_seed_b)
    assert (same.estimate, same.low, same.high) == pytest.approx((alone.estimate, alone.low, alone.high), abs=1e-12)
    assert same.interval_covers == "test locations and seeds (n=3)" != alone.interval_covers
    # Only the seeds both systems have are paired.
    partial = paired_difference(a, System("B", {2: b.clips[2], 7: b.clips[3]}))
    assert partial.seeds == (2,) and partial.estimate == pytest.approx(0.4)


def simulated_pair(rng: np.random.Generator, seeds=(1,), training_noise: float = 0.0, clip_units: bool = False,
                   locations: int = 30, clips: int = 45) -> tuple[System, System]:  # fmt: skip
    """Population: location difficulty p ~ U(0.35, 0.65) and effect d ~ U(-0.2, 0.4), mean 0.1 (the true
    difference); A right with probability p + d/2, B with p - d/2, each (system, seed) shifted by a training
    offset (symmetric, mean 0). `clip_units` names every clip its own location: a clip bootstrap."""
    p, d = rng.uniform(0.35, 0.65, locations), rng.uniform(-0.2, 0.4, locations)
    location = np.repeat(np.arange(locations), clips)
    identifiers = [f"city-{i}" for i in (np.arange(location.size) if clip_units else location)]
    systems = []
    for sign in (1, -1):
        tables = {}
        for seed in seeds:
            offset = np.clip(rng.normal(0, training_noise), -0.1, 0.1) if training_noise else 0.0
            tables[seed] = clips_table(rng.random(location.size) < (p + sign * d / 2)[location] + offset, identifiers)
        systems.append(System("AB"[sign < 0], tables))
    return systems[0], systems[1]


def coverage(repeats: int, **population) -> tuple[float, float, float]:
    """How often the interval (and its test-set part) holds the true difference 0.1; mean width."""
    rng = np.random.default_rng(7)
    hits = test_hits = width = 0.0
    for repeat in range(repeats):
        difference = paired_difference(*simulated_pair(rng, **population), resamples=500, rng_seed=repeat)
        hits += difference.low < 0.1 < difference.high
        test_hits += difference.test_low < 0.1 < difference.test_high
        width += difference.high - difference.low
    return hits / repeats, test_hits / repeats, width / repeats


def test_location_bootstrap_covers_where_a_clip_bootstrap_does_not() -> None:
    # Measured here 0.925 and 0.65, widths 13.7 and 7.4 points (300 repeats of 90 clips a location: 0.93, 0.58).
    location_coverage, _, location_width = coverage(120)
    clip_coverage, _, clip_width = coverage(40, clip_units=True)
    assert location_coverage >= 0.85 and clip_coverage <= 0.8
    assert location_width > 1.5 * clip_width  # same populations: only the resampling unit differs


def test_seed_part_covers_training_noise() -> None:
    # 3 seeds, each model shifted by up to +-10 points (sd 4): the test-set part alone misses the true
    # difference too often (measured here 0.81; 0.80 in 300 repeats), the combined interval does not (0.95; 0.96).
    combined, test_only, _ = coverage(120, seeds=(1, 2, 3), training_noise=0.04)
    assert combined >= 0.9 and test_only <= 0.87 and combined > test_only + 0.05


def test_paired_difference_checks_the_pairing() -> None:
    a, b = all_right_vs_half()
    other_clips = b.clips[1].assign(filename=[f"other-{i}.wav" for i in range(90)])
    other_clips.attrs["path"] = "b/clips.tsv"
    a.clips[1].attrs["path"] = "a/clips.tsv"
    with pytest.raises(PipelineError) as error:
        paired_difference(a, System("B", {1: other_clips}))
    assert str(error.value).startswith("b/clips.tsv vs a/clips.tsv: not the same clips (180 file names in one only")
    assert "\n" not in str(error.value)
    relabelled = b.clips[1].assign(label=[1] + [0] * 89)
    relabelled.attrs["path"] = "b/clips.tsv"
    with pytest.raises(PipelineError, match="b/clips.tsv vs a/clips.tsv: label of 'clip-00000.wav' differs"):
        paired_difference(a, System("B", {1: relabelled}))
    with pytest.raises(PipelineError, match=r"A \(seeds \[1\]\) and B \(seeds \[2\]\) share no seed"):
        paired_difference(a, System("B", {2: b.clips[1]}))


def test_interval_is_reproducible_for_a_fixed_seed() -> None:
    a, b = simulated_pair(np.random.default_rng(3))
    first, again = paired_difference(a, b, rng_seed=11), paired_difference(a, b, rng_seed=11)
    assert first == again
    other = paired_difference(a, b, rng_seed=12)
    assert other.estimate == first.estimate and (other.low, other.high) != (first.low, first.high)
    assert other.low == pytest.approx(first.low, abs=0.01) and other.high == pytest.approx(first.high, abs=0.01)


def test_device_group_difference_pairs_through_locations() -> None:
    identifiers = locations_of([9] * 10)  # every location recorded by all nine devices
    devices = [DEVICES[i % 9] for i in range(90)]
    location = np.array([int(name.split("-")[1]) for name in identifiers])
    unseen = np.isin(devices, ["s4", "s5", "s6"])
    correct = ~unseen | (location < 5)  # S4-S6 right on half of the locations, every other device always right
    system = System("sm4", {1: clips_table(correct, identifiers, devices)})
    difference = device_group_difference(system, ["s4", "s5", "s6"], ["s1", "s2", "s3"])
    assert difference.values_a == (0.5,) and difference.values_b == (1.0,)
    assert (difference.clips, difference.locations) == (60, 10)  # S1-S6's clips, not the table's 90
    assert (difference.estimate, difference.low, difference.high) == (-0.5, pytest.approx(-0.8), pytest.approx(-0.2))
    with pytest.raises(PipelineError, match="no clips of device"):
        device_group_difference(System("a-only", {1: clips_table(correct, identifiers, ["a"] * 90)}), ["s4"], ["a"])


def test_verdicts() -> None:
    assert verdict(0.2, 3.1, direction=1, n_seeds=3) == "supported"
    assert verdict(-0.2, 3.1, direction=1, n_seeds=3) == "not distinguishable"
    assert verdict(-3.1, -0.2, direction=1, n_seeds=3) == "contradicted"
    assert verdict(-3.1, -0.2, direction=-1, n_seeds=5) == "supported"
    assert verdict(0.2, 3.1, direction=-1, n_seeds=3) == "contradicted"
    assert verdict(-1.0, 0.5, direction=-1, n_seeds=3) == "not distinguishable"
    # Bound claim int8 - float > -3: the whole interval above -3, below it, or across it.
    assert verdict(-2.5, 1.0, 1, threshold=-3, n_seeds=3) == "supported"
    assert verdict(-5.0, -3.5, 1, threshold=-3, n_seeds=3) == "contradicted"
    assert verdict(-4.0, -2.0, 1, threshold=-3, n_seeds=3) == "not distinguishable"
    with pytest.raises(PipelineError, match="direction must be 1 or -1"):
        verdict(0.0, 1.0, 0, n_seeds=3)


def test_fewer_than_three_seeds_give_provisional_verdicts() -> None:
    for n_seeds in (1, 2):
        assert verdict(0.2, 3.1, direction=1, n_seeds=n_seeds) == "provisional: supported"
        assert verdict(-3.1, -0.2, direction=1, n_seeds=n_seeds) == "provisional: contradicted"
        assert verdict(-3.1, -0.2, direction=-1, n_seeds=n_seeds) == "provisional: supported"
        assert verdict(-5.0, -3.5, 1, threshold=-3, n_seeds=n_seeds) == "provisional: contradicted"
        assert verdict(-0.2, 3.1, direction=1, n_seeds=n_seeds) == "not distinguishable"  # no direction to hold
    assert MIN_SEEDS == 3 and set(VERDICT_COLOURS) == set(VERDICTS)


def test_family_confidence_of_known_families() -> None:
    rng = np.random.default_rng(0)
    one = rng.normal(size=20_000)
    # One comparison repeated is a family of one: its own level. Independent comparisons: Sidak's 0.95^(1/k).
    assert family_confidence([one] * 6) == 0.95
    for k in (2, 4, 13):
        level = family_confidence([rng.normal(size=20_000) for _ in range(k)])
        assert level == pytest.approx(0.95 ** (1 / k), abs=0.0015)
    # Correlated (shared location resamples): between the two, and never narrower than one comparison alone.
    shared = rng.normal(size=20_000)
    correlated = [shared + 0.5 * rng.normal(size=20_000) for _ in range(4)]
    assert 0.95 < family_confidence(correlated) < 0.95 ** (1 / 4)
    assert family_confidence([one, rng.normal(size=20_000)], confidence=0.8) == pytest.approx(0.8 ** 0.5, abs=0.003)


def shared_family(rng: np.random.Generator, k: int, seeds=(1,), locations: int = 30, clips: int = 45) -> list:
    """k comparisons A_i - B_i on the same test locations: each pair a `simulated_pair` population (true
    difference 0.1), all read with the same location resamples."""
    pairs = [simulated_pair(rng, seeds, locations=locations, clips=clips) for _ in range(k)]
    return [paired_difference(a, b, resamples=1000, rng_seed=5) for a, b in pairs]


def test_family_intervals_hold_the_family_where_per_claim_ones_do_not() -> None:
    # Five independent pairs on the same 30 locations. Measured here: every per-claim interval held 0.1 in 0.68
    # of the repeats, every family-wise one in 0.92 (with 30 locations the percentile bootstrap runs a little
    # short, as above); the per-claim level found is Sidak's 0.95^(1/5) = 0.9898 for independent comparisons.
    rng = np.random.default_rng(11)
    per_claim = family_wise = 0
    repeats = 100
    for _ in range(repeats):
        differences = shared_family(rng, 5)
        level, family = family_intervals(differences)
        assert level == pytest.approx(0.95 ** (1 / 5), abs=0.003)
        for difference, (low, high) in zip(differences, family, strict=True):
            assert low < difference.low and difference.high < high
        per_claim += all(d.low < 0.1 < d.high for d in differences)
        family_wise += all(low < 0.1 < high for low, high in family)
    assert family_wise / repeats >= 0.87 and per_claim / repeats <= 0.8


def test_family_intervals_need_shared_resamples() -> None:
    rng = np.random.default_rng(2)
    first, second = shared_family(rng, 2)
    # the same locations, resamples and RNG seed: the same location weights, so the same replicates of the same pair
    a, b = simulated_pair(np.random.default_rng(4))
    again = paired_difference(a, b, resamples=1000, rng_seed=5)
    assert np.array_equal(again.replicates, paired_difference(a, b, resamples=1000, rng_seed=5).replicates)
    assert first.location_names == second.location_names == again.location_names
    other_seed = paired_difference(a, b, resamples=1000, rng_seed=6)
    with pytest.raises(PipelineError, match="same location resamples for every comparison"):
        family_intervals([first, other_seed])
    fewer = paired_difference(*simulated_pair(rng, locations=20), resamples=1000, rng_seed=5)
    with pytest.raises(PipelineError, match=r"\(20 vs 30 locations"):
        family_intervals([first, fewer])


def test_half_width_mde_and_paper_in_interval() -> None:
    # all_right_vs_half: the replicates are Binomial(10, 1/2) / 10, standard error sqrt(0.25 / 10) = 0.158.
    a, b = all_right_vs_half()
    difference = paired_difference(a, b, resamples=20_000)
    assert difference.standard_error == pytest.approx(math.sqrt(0.025), rel=0.02)
    z_975, z_80 = 1.959963984540054, 0.8416212335729143
    se = difference.standard_error  # one seed: (z(1 - alpha/2) + z(power)) standard errors, 2.80 SE at 95 %
    assert difference.minimum_detectable(0.95) == pytest.approx((z_975 + z_80) * se)
    assert difference.minimum_detectable(0.99) == pytest.approx((2.5758293035489 + z_80) * se)
    # Three seeds: the seeds' standard error s / sqrt(3) = 0.1 / sqrt(3) joins the bootstrap's in quadrature.
    identifiers = locations_of([9] * 10)
    location = np.array([int(name.split("-")[1]) for name in identifiers])
    three = paired_difference(System("A", {s: clips_table(np.ones(90, bool), identifiers) for s in (1, 2, 3)}),
                              System("B", {s: clips_table(location < k, identifiers)
                                           for s, k in {1: 5, 2: 6, 3: 4}.items()}), resamples=20_000)  # fmt: skip
    boot = float(np.std(three.replicates, ddof=1))
    assert three.standard_error == pytest.approx(math.hypot(boot, 0.1 / math.sqrt(3)))
    # ... and the seeds' part of the critical half-width takes Student's t with 2 degrees of freedom (4.30), so
    # the smallest detectable difference exceeds what the normal reading gives, as the interval does.
    t_975_2 = 4.302652729749464
    assert three.minimum_detectable(0.95) == pytest.approx(
        math.hypot(z_975 * boot, t_975_2 * 0.1 / math.sqrt(3)) + z_80 * three.standard_error
    )
    assert three.minimum_detectable(0.95) > (z_975 + z_80) * three.standard_error
    assert three.high - three.estimate < three.minimum_detectable(0.95)
    claim = {"claim": "A > B", "source": "Table V", "a": {"run": "A", "precision": "float"},
             "b": {"run": "B", "precision": "float"}, "paper_difference": 25.0, "direction": 1, "threshold": 0.0}

    def row_with(paper_difference: float | None) -> dict:  # family interval [0.1, 0.9] at 99 % per claim, 2 claims
        return _row(claim | {"paper_difference": paper_difference}, difference, difference, (0.1, 0.9), 0.99, 2)

    row = row_with(25.0)
    assert (row["low_pp"], row["high_pp"], row["half_width_pp"]) == (20.0, 80.0, 30.0)
    assert row["mde_pp"] == pytest.approx(100 * (z_975 + z_80) * difference.standard_error, abs=0.01)
    assert row["family_mde_pp"] == pytest.approx(100 * (2.5758293035489 + z_80) * difference.standard_error, abs=0.01)
    assert row["paper_in_interval"] is True and row["verdict"] == "provisional: supported"
    assert (row["family_low_pp"], row["family_high_pp"]) == (10.0, 90.0) and row["family_size"] == 2
    assert row["family_verdict"] == "provisional: supported"  # one seed
    assert row_with(1.4)["paper_in_interval"] is False and row_with(None)["paper_in_interval"] is None


def test_paper_claims_follow_the_reports_section() -> None:
    reports = yaml.safe_load((REPO / "config.yaml").read_text())["reports"]
    claims = paper_claims(reports)
    paper = [claim["paper_difference"] for claim in claims]
    assert paper == [1.78, 4.12, 5.9, 1.4, 1.88, 0.58, 0.68, None, -3.1, -3.17, -2.74, -3.15, -3.37]
    assert [claim["direction"] for claim in claims] == [1] * 12 + [-1]
    assert [claim["threshold"] for claim in claims] == [0.0] * 8 + [-3.2] * 4 + [0.0]
    qat = claims[8]
    assert (qat["a"], qat["b"]) == ({"run": "sm1", "precision": "int8", "devices": None},
                                    {"run": "sm1", "precision": "float", "devices": None})  # fmt: skip
    assert claims[-1]["a"]["devices"] == ["s4", "s5", "s6"] and claims[-1]["b"]["devices"] == ["s1", "s2", "s3"]
    # A small config: claims whose systems it lacks are left out.
    small_config = {"table2": ["sm1"], "table4": {"Fused": "sm1", "Averaged": "sm1-avg"}, "fig3": {"channel": "x"}}
    small = paper_claims(small_config)
    assert [claim["claim"] for claim in small] == [
        "KD: Fused > Averaged", "QAT sm1: int8 - float > -3.2", "Fused: unseen S4-S6 < seen S1-S3"]  # fmt: skip
    assert paper_claims({}) == []


def write_system(root: Path, run: str, precision: str, seeds: dict[int, np.ndarray], identifiers, devices) -> dict:
    paths = {}
    for seed, correct in seeds.items():
        path = root / run / f"seed{seed}" / f"clips_{precision}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        clips_table(correct, identifiers, devices).sample(frac=1, random_state=seed).to_csv(path, sep="\t", index=False)
        paths[seed] = path
    return paths


def test_write_claims_and_plot(tmp_path: Path) -> None:
    identifiers = locations_of([9] * 10)
    devices = [DEVICES[i % 9] for i in range(90)]
    location = np.array([int(name.split("-")[1]) for name in identifiers])
    unseen = np.isin(devices, ["s4", "s5", "s6"])
    everything, half = np.ones(90, bool), location < 5
    outcomes = {  # (run, precision): correct clips per seed
        ("fused", "float"): dict.fromkeys((1, 2, 3), everything & ~(unseen & half)),
        ("fused", "int8"): {1: ~half, 2: ~half},  # QAT loses 33 points, two seeds: contradicts the bound, provisionally
        ("avg", "float"): dict.fromkeys((1, 2, 3), ~half),  # fused right on all the clips avg is right on, and 30 more
    }
    tables = {key: write_system(tmp_path, *key, seeds, identifiers, devices) for key, seeds in outcomes.items()}
    machines = {"fused": {"cpu": "AMD EPYC 7B13", "torch": "2.14.1"}, "avg": {"cpu": "Intel Xeon", "torch": "2.14.1"}}
    evaluations = {}
    for (run, precision), paths in tables.items():  # what evaluation writes beside each clips table
        evaluations[(run, precision)] = {seed: path.with_suffix(".json") for seed, path in paths.items()}
        for path in evaluations[(run, precision)].values():
            path.write_text(json.dumps({"trained_on": [machines[run]], "measured_on": machines["fused"]}))
    plan = claims_plan({"table2": ["fused"], "table4": {"Fused": "fused", "Averaged": "avg"}},
                       lambda run, precision: tables[(run, precision)],
                       lambda run, precision: evaluations[(run, precision)])  # fmt: skip
    assert len(plan_inputs(plan)) == 16  # (3 + 2 + 3 seeds) x (clips table, evaluation)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    frame = write_claims(read_json(tmp_path / "plan.json"), tmp_path / "claims.csv", tmp_path / "claims.md",
                         resamples=2000)  # fmt: skip
    assert tuple(frame.columns) == CLAIM_COLUMNS and len(frame) == 3 and set(frame["statistic"]) == {"accuracy"}
    accuracy = frame.set_index("claim")
    fused_vs_avg = accuracy.loc["KD: Fused > Averaged"]
    # fused: 90 - 15 wrong (S4-S6 clips of locations 0-4) = 83.33 %, avg 50 %; seeds identical
    assert (fused_vs_avg["difference_pp"], fused_vs_avg["paper_pp"]) == (33.33, 1.78)
    assert (fused_vs_avg["a_pp"], fused_vs_avg["b_pp"]) == ("83.33;83.33;83.33", "50.0;50.0;50.0")
    assert fused_vs_avg["verdict"] == "supported" and fused_vs_avg["n_seeds"] == 3 and fused_vs_avg["seeds"] == "1;2;3"
    assert fused_vs_avg["interval_covers"] == "test locations and seeds (n=3)"
    assert fused_vs_avg["paper_in_interval"] == False  # noqa: E712 (numpy's bool)
    assert fused_vs_avg["half_width_pp"] == pytest.approx((fused_vs_avg["high_pp"] - fused_vs_avg["low_pp"]) / 2,
                                                          abs=0.01)  # fmt: skip
    qat = accuracy.loc["QAT fused: int8 - float > -3.2"]
    assert (qat["verdict"], qat["family_verdict"], qat["n_seeds"]) == ("provisional: contradicted",) * 2 + (2,)
    assert qat["difference_pp"] == -33.33 and pd.isna(qat["paper_pp"]) and pd.isna(qat["paper_in_interval"])
    unseen_row = accuracy.loc["Fused: unseen S4-S6 < seen S1-S3"]
    assert (unseen_row["difference_pp"], unseen_row["low_pp"], unseen_row["high_pp"]) == (-50.0, -80.0, -20.0)
    assert unseen_row["verdict"] == "supported" and unseen_row["a"] == "fused float S4-S6"
    assert (unseen_row["clips"], fused_vs_avg["clips"]) == (60, 90)
    # One class only: macro accuracy is accuracy, a column beside it. The family: three claims, one level.
    assert (frame["macro_difference_pp"] == frame["difference_pp"]).all()
    assert set(frame["family_size"]) == {3} and frame["family_confidence"].nunique() == 1
    assert 0.95 <= frame["family_confidence"].iloc[0] <= 0.95 ** (1 / 3) + 0.002
    assert (frame["family_low_pp"] <= frame["low_pp"]).all() and (frame["family_high_pp"] >= frame["high_pp"]).all()
    assert (frame["family_mde_pp"] >= frame["mde_pp"]).all() and (frame["mde_pp"] > 0).all()
    assert pd.read_csv(tmp_path / "claims.csv").shape == (3, len(CLAIM_COLUMNS))
    markdown = (tmp_path / "claims.md").read_text()
    assert "## Accuracy (%): verdicts, per claim and family-wise" in markdown and "## macro" not in markdown
    assert "| KD: Fused > Averaged | Table IV | +1.78 | > 0 | +33.33 [" in markdown
    assert "fused float: 83.3 ± 0.0 (n=3)" in markdown and "over the 10 test recording locations" in markdown
    assert "paired over the 90/60 test clips each comparison reads" in markdown
    assert "over the 3 claims read together" in markdown and "With fewer than 3 seeds (here 3/2)" in markdown
    assert markdown.endswith("\nTrained on: AMD EPYC 7B13 [no AVX2], torch 2.14.1; Intel Xeon [no AVX2], torch 2.14.1. "
                             "Evaluated on: AMD EPYC 7B13 [no AVX2], torch 2.14.1.\n")
    plot_claims(frame, tmp_path / "claims.png")
    image = matplotlib.image.imread(tmp_path / "claims.png")
    assert image.shape[:2] == (round(150 * (1.2 + 0.42 * 3)), 1350)  # 3 accuracy rows at 150 dpi


def test_plan_checks_name_the_missing_key(tmp_path: Path) -> None:
    claim = paper_claims({"fig3": {"channel": "x", "frequency": "y"}})[0]  # no clips tables yet
    with pytest.raises(PipelineError, match=r"claim 'ResNorm over channels > over frequency': key 'a.clips' missing"):
        claims_frame({"claims": [claim]})
    with pytest.raises(PipelineError, match="needs a list under 'claims'"):
        claims_frame({})
    empty = write_claims({"claims": []}, tmp_path / "claims.csv", tmp_path / "claims.md")
    assert empty.empty and list(pd.read_csv(tmp_path / "claims.csv").columns) == list(CLAIM_COLUMNS)
    assert "No claim of the paper" in (tmp_path / "claims.md").read_text()
