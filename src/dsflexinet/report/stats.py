"""Statistics on per-clip results (`clips.tsv`) and their uncertainty: mean ± std over seeds, and paired
intervals of differences that resample test recording locations.

A system is one student run at one precision with one clips table per seed. Every statistic is a mean over
cells of a ratio of sums (accuracy and log loss: one cell; macro accuracy: one cell per scene), so the point
estimate and every bootstrap replicate come from the same per-location sums and a resample is one matrix
product.

How the interval is built (`paired_difference`), and why:
- The unit of resampling is the recording location (`identifier`). The 1 s clips of one location, and its
  device copies, share the scene's acoustics, so they are strongly correlated; resampling clips treats them as
  independent and understates the interval (tests/test_claims.py simulates 30 locations with location-dependent
  effects: a clip interval held the true difference in 58-65 % of test sets, the location interval in 93 %,
  for a 95 % interval; with 30 clusters the percentile bootstrap runs a little short). Locations are not
  stratified by scene: the default synthetic run has two test locations per scene (20 in all), where a
  stratified resample would draw each scene's from two; on TAU22 the unstratified resample only adds class-mix
  variation (wider, never narrower). Both systems and every seed see the same resample (paired), and the
  replicate is the difference of the mean-over-seeds statistics; its percentile interval is the test-set part of
  the uncertainty.
- With n > 1 seeds the training run itself varies (one model moved by up to 8 points between two machines,
  README). On one fixed test set the spread of the per-seed differences measures that training variation
  (the test-set variation is common to all seeds), independent of which locations were recorded. Its part is
  a t-interval half-width t(n-1) * s / sqrt(n), with few seeds the honest width (t(2) = 4.30); the two parts
  are added in quadrature on each side of the estimate (Zou & Donner's MOVER for a sum of independent
  components), which keeps the bootstrap's asymmetry. In the simulation with training noise (3 seeds, each
  model shifted by sd 4 points) the test-set part alone held the true difference in 80 % of runs, the
  combined interval in 95-96 %. Resampling seeds instead would treat 3 seeds as their population and give
  intervals too narrow, which is why it is not done.
- With one seed only the test-set part exists; `interval_covers` says so.
- `statistic_interval` gives one system's statistic (not a difference) the same interval: the data-efficiency
  curve's points.
- A family of differences read together (the claims) gets simultaneous intervals from the same resamples
  (`family_intervals`), and each difference its minimum detectable difference (`Difference.minimum_detectable`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri, stdtrit  # normal and Student's t quantiles; scipy.stats takes seconds to import

from dsflexinet.data.tau22 import DEVICES, SCENES
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.metrics import OUTCOME_COLUMNS

STATISTICS = ("accuracy", "macro_accuracy", "log_loss")
RESAMPLES = 10_000
RNG_SEED = 2022  # fixed: the same plan gives the same interval on every run


def read_clips(path: str | Path) -> pd.DataFrame:
    """One model's per-clip results, sorted by file name (so tables of the same clips align row by row)."""
    try:
        clips = pd.read_csv(path, sep="\t", dtype={"filename": str, "identifier": str, "device": str})
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found (the evaluation that writes it has not run)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: not a tab-separated clips table ({error})") from None
    missing = [column for column in OUTCOME_COLUMNS if column not in clips.columns]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(OUTCOME_COLUMNS)})")
    if clips.empty:
        raise PipelineError(f"{path}: no clips")
    if clips["filename"].duplicated().any():
        raise PipelineError(f"{path}: file name {clips['filename'][clips['filename'].duplicated()].iloc[0]!r} twice")
    unknown = sorted(set(clips["device"]) - set(DEVICES))
    if unknown:
        raise PipelineError(f"{path}: unknown device(s) {', '.join(map(str, unknown))}")
    for column in ("label", "prediction"):
        values = pd.to_numeric(clips[column], errors="coerce")
        if values.isna().any() or (values % 1 != 0).any() or values.min() < 0 or values.max() >= len(SCENES):
            raise PipelineError(f"{path}: column {column} must hold class indices 0-{len(SCENES) - 1}")
        clips[column] = values.astype(np.int64)
    nll = pd.to_numeric(clips["nll"], errors="coerce")
    if nll.isna().any() or not np.isfinite(nll).all() or (nll < 0).any():
        raise PipelineError(f"{path}: column nll must hold finite values >= 0")
    clips["nll"] = nll.astype(np.float64)
    clips = clips.sort_values("filename", ignore_index=True)
    clips.attrs["path"] = str(path)
    return clips


@dataclass(frozen=True)
class System:
    """One student run at one precision: its clips table for each seed."""

    name: str
    clips: Mapping[int, pd.DataFrame]

    @classmethod
    def read(cls, name: str, paths: Mapping[int | str, str | Path]) -> System:
        """`paths`: seed -> clips.tsv; seeds may be strings of integers (JSON keys)."""
        if not paths:
            raise PipelineError(f"system {name}: no clips table for any seed")
        bad = [seed for seed in paths if not str(seed).lstrip("-").isdigit()]
        if bad:
            raise PipelineError(f"system {name}: seed {bad[0]!r} is not an integer")
        return cls(name, {int(seed): read_clips(paths[seed]) for seed in sorted(paths, key=int)})


def _cell_sums(clips: pd.DataFrame, name: str, locations: np.ndarray, n_locations: int,
               devices: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Numerator and denominator of the statistic per (location, cell), for clips of `devices` (all if None)."""
    if name not in STATISTICS:
        raise PipelineError(f"unknown statistic {name!r} (choose from {', '.join(STATISTICS)})")
    keep = np.ones(len(clips), bool) if devices is None else clips["device"].isin(list(devices)).to_numpy()
    if not keep.any():
        raise PipelineError(f"{clips.attrs.get('path', 'clips table')}: no clips of device(s) {', '.join(devices)}")
    labels = clips["label"].to_numpy()[keep]
    if name == "log_loss":
        values = clips["nll"].to_numpy()[keep]
    else:
        values = (clips["prediction"].to_numpy()[keep] == labels).astype(np.float64)
    n_cells = len(SCENES) if name == "macro_accuracy" else 1
    index = locations[keep] * n_cells + (labels if n_cells > 1 else 0)
    size = n_locations * n_cells
    numerator = np.bincount(index, weights=values, minlength=size).reshape(n_locations, n_cells)
    denominator = np.bincount(index, minlength=size).reshape(n_locations, n_cells).astype(np.float64)
    return numerator, denominator


def _mean_of_ratios(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Mean over the last axis (cells) of numerator / denominator, over the cells that have clips; a class the
    clips lack is left out, as in evaluate.metrics. NaN where no cell has any."""
    present = denominator > 0
    ratios = np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=present)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ratios.sum(-1) / present.sum(-1)


def statistic(clips: pd.DataFrame, name: str = "accuracy", devices: Sequence[str] | None = None) -> float:
    """Accuracy, macro (class-averaged, DCASE's) accuracy or log loss of one table, on `devices` if given."""
    numerator, denominator = _cell_sums(clips, name, np.zeros(len(clips), np.int64), 1, devices)
    return float(_mean_of_ratios(numerator[0], denominator[0]))


def seed_values(system: System, name: str = "accuracy", devices: Sequence[str] | None = None) -> dict[int, float]:
    """The statistic of each seed's table: what `format_mean_std` summarises in the tables."""
    return {seed: statistic(clips, name, devices) for seed, clips in system.clips.items()}


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; NaN for one value: one seed has no spread to show) and n."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        raise PipelineError("mean over seeds of no values")
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else math.nan, int(array.size)


def format_mean_std(values: Iterable[float], digits: int = 1) -> str:
    """'63.0 ± 1.2 (n=3)', or '63.0 (n=1)' where one value has no spread."""
    mean, std, n = mean_std(values)
    return f"{mean:.{digits}f} ({n=})" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f} ({n=})"


def _check_same_clips(reference: pd.DataFrame, other: pd.DataFrame) -> None:
    """Paired statistics need the same clips, with the same location, device and label, in both tables."""
    where = f"{other.attrs.get('path', 'clips table')} vs {reference.attrs.get('path', 'clips table')}"
    if len(other) != len(reference) or not np.array_equal(other["filename"], reference["filename"]):
        only = sorted(set(other["filename"]).symmetric_difference(reference["filename"]))
        raise PipelineError(f"{where}: not the same clips ({len(only)} file names in one only, e.g. {only[0]!r})")
    for column in ("identifier", "device", "label"):
        differs = other[column].to_numpy() != reference[column].to_numpy()
        if differs.any():
            raise PipelineError(f"{where}: {column} of {reference['filename'][differs.argmax()]!r} differs")


def resample_weights(n_locations: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each location is drawn in each bootstrap resample: [resamples, locations], rows sum to n."""
    draws = rng.integers(0, n_locations, size=(resamples, n_locations))
    offsets = np.arange(resamples)[:, None] * n_locations
    return np.bincount((draws + offsets).ravel(), minlength=resamples * n_locations).reshape(resamples, n_locations)


@dataclass(frozen=True)
class Interval:
    """A statistic's estimate over some seeds with its interval (same units as the statistic)."""

    statistic: str
    seeds: tuple[int, ...]
    low: float
    high: float
    test_low: float  # the location bootstrap's percentile interval alone (test-set sampling)
    test_high: float
    confidence: float
    locations: int
    clips: int  # test clips read: all, or those of a device-group comparison's two groups
    resamples: int
    rng_seed: int

    @property
    def interval_covers(self) -> str:
        n = len(self.seeds)
        return "test locations only (1 seed)" if n == 1 else f"test locations and seeds (n={n})"


@dataclass(frozen=True)
class Difference(Interval):
    """A - B of one statistic, paired over the same clips and seeds."""

    values_a: tuple[float, ...]  # per seed
    values_b: tuple[float, ...]
    replicates: np.ndarray = field(compare=False, repr=False)  # the bootstrap's differences, one per resample
    location_names: tuple[str, ...] = field(compare=False, repr=False)  # in the order the resamples weight them

    @property
    def per_seed(self) -> tuple[float, ...]:
        return tuple(a - b for a, b in zip(self.values_a, self.values_b, strict=True))

    @property
    def estimate(self) -> float:
        return float(np.mean(self.per_seed))

    @property
    def standard_error(self) -> float:
        """The bootstrap's standard deviation, with the seeds' s / sqrt(n) in quadrature for n > 1 seeds."""
        return math.hypot(float(np.std(self.replicates, ddof=1)), _seed_standard_error(self.per_seed))

    def minimum_detectable(self, confidence: float, power: float = 0.8) -> float:
        """The smallest true difference from the threshold that this interval, at `confidence`, excludes the
        threshold for with probability `power`: its critical half-width (the bootstrap's z and, for n > 1 seeds,
        the seeds' Student t with n - 1 degrees of freedom, joined in quadrature as the interval joins them) plus
        z(power) standard errors. With one seed, (z(1 - alpha/2) + z(power)) x SE; with three, the t quantile
        makes it larger than a normal reading would."""
        upper = 1 - (1 - confidence) / 2
        critical = math.hypot(ndtri(upper) * float(np.std(self.replicates, ddof=1)),
                              _seed_half_width(self.per_seed, confidence))  # fmt: skip
        return float(critical + ndtri(power) * self.standard_error)

    def interval_at(self, confidence: float) -> tuple[float, float]:
        """The interval at another confidence, from the same resamples (a family-wise level)."""
        return percentile_interval(np.asarray(self.per_seed), self.replicates, confidence)[:2]


@dataclass(frozen=True)
class Estimate(Interval):
    """One statistic of one system: the mean over its seeds."""

    values: tuple[float, ...]  # per seed

    @property
    def estimate(self) -> float:
        return float(np.mean(self.values))


class _Bootstrap:
    """The location bootstrap of one statistic over the clips of some seeds: per-location sums of each system
    and the resample weights, shared by every system it is given (so two systems are paired)."""

    def __init__(self, reference: pd.DataFrame, seeds: tuple[int, ...], name: str, resamples: int, confidence: float,
                 rng_seed: int):  # fmt: skip
        if not 0 < confidence < 1:
            raise PipelineError(f"confidence must lie between 0 and 1, not {confidence}")
        if resamples < 1:
            raise PipelineError(f"resamples must be at least 1, not {resamples}")
        self.seeds, self.name = seeds, name
        self.names, self.locations = np.unique(reference["identifier"].to_numpy(), return_inverse=True)
        self.weights = resample_weights(len(self.names), resamples, np.random.default_rng(rng_seed)).astype(np.float64)

    def sums(self, system: System, devices: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
        """[seeds, locations, cells] numerators and denominators."""
        pairs = [_cell_sums(system.clips[seed], self.name, self.locations, len(self.names), devices)
                 for seed in self.seeds]  # fmt: skip
        return np.stack([numerator for numerator, _ in pairs]), np.stack([denominator for _, denominator in pairs])

    def replicates(self, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        """The statistic, averaged over seeds, in each resample: [resamples]."""
        resampled = [_mean_of_ratios(self.weights @ numerator[s], self.weights @ denominator[s])
                     for s in range(len(self.seeds))]  # fmt: skip
        return np.mean(resampled, axis=0)


def _seed_standard_error(per_seed) -> float:
    """s / sqrt(n) of the per-seed values; 0 for one seed, whose training variation nothing here can show."""
    return mean_std(per_seed)[1] / math.sqrt(len(per_seed)) if len(per_seed) > 1 else 0.0


def _seed_half_width(per_seed, confidence: float) -> float:
    """The seeds' t-interval half-width t(n - 1) * s / sqrt(n): with few seeds the honest width (t(2) = 4.30)."""
    if len(per_seed) < 2:
        return 0.0
    return float(stdtrit(len(per_seed) - 1, 1 - (1 - confidence) / 2)) * _seed_standard_error(per_seed)


def percentile_interval(per_seed: np.ndarray, replicates: np.ndarray, confidence: float
                        ) -> tuple[float, float, float, float]:  # fmt: skip
    """low, high, test_low, test_high around the mean of `per_seed` (module docstring)."""
    tail = 100 * (1 - confidence) / 2
    test_low, test_high = np.percentile(replicates, [tail, 100 - tail])
    estimate = float(np.mean(per_seed))
    low, high = float(test_low), float(test_high)
    if len(per_seed) > 1:
        seed_half_width = _seed_half_width(per_seed, confidence)
        low = estimate - math.hypot(max(estimate - test_low, 0.0), seed_half_width)
        high = estimate + math.hypot(max(test_high - estimate, 0.0), seed_half_width)
    return low, high, float(test_low), float(test_high)


def _paired_tables(a: System, b: System) -> tuple[tuple[int, ...], pd.DataFrame]:
    """The seeds both systems have, and the clips table every one of their tables must match."""
    seeds = tuple(sorted(set(a.clips) & set(b.clips)))
    if not seeds:
        raise PipelineError(f"{a.name} (seeds {sorted(a.clips)}) and {b.name} (seeds {sorted(b.clips)}) share no seed")
    reference = a.clips[seeds[0]]
    for table in [a.clips[seed] for seed in seeds[1:]] + [b.clips[seed] for seed in seeds]:
        _check_same_clips(reference, table)
    return seeds, reference


def paired_difference(a: System, b: System, name: str = "accuracy", *, devices_a: Sequence[str] | None = None,
                      devices_b: Sequence[str] | None = None, resamples: int = RESAMPLES, confidence: float = 0.95,
                      rng_seed: int = RNG_SEED) -> Difference:  # fmt: skip
    """Mean over shared seeds of statistic(A) - statistic(B), with a `confidence` interval from a paired
    bootstrap over recording locations and, for n > 1 seeds, the seeds' t-interval (module docstring).

    `devices_a`/`devices_b` restrict each side to a device group: with a == b this is a within-system
    comparison (unseen S4-S6 minus seen S1-S3), paired through the locations every device recorded.
    """
    seeds, reference = _paired_tables(a, b)
    bootstrap = _Bootstrap(reference, seeds, name, resamples, confidence, rng_seed)
    (num_a, den_a), (num_b, den_b) = bootstrap.sums(a, devices_a), bootstrap.sums(b, devices_b)
    values_a = _mean_of_ratios(num_a.sum(1), den_a.sum(1))  # [seeds]
    values_b = _mean_of_ratios(num_b.sum(1), den_b.sum(1))
    differences = bootstrap.replicates(num_a, den_a) - bootstrap.replicates(num_b, den_b)
    undefined = int(np.isnan(differences).sum())
    if undefined:
        locations = len(bootstrap.names)
        raise PipelineError(f"{a.name} vs {b.name}: {name} undefined in {undefined} of {resamples} resamples "
                            f"(a device group recorded at too few of the {locations} locations)")  # fmt: skip
    low, high, test_low, test_high = percentile_interval(values_a - values_b, differences, confidence)
    return Difference(
        statistic=name, seeds=seeds, values_a=tuple(map(float, values_a)), values_b=tuple(map(float, values_b)),
        low=low, high=high, test_low=test_low, test_high=test_high, confidence=confidence,
        locations=len(bootstrap.names), clips=_clips_read(reference, devices_a, devices_b), resamples=resamples,
        rng_seed=rng_seed, replicates=differences, location_names=tuple(map(str, bootstrap.names)),
    )  # fmt: skip


def _clips_read(clips: pd.DataFrame, devices_a: Sequence[str] | None, devices_b: Sequence[str] | None) -> int:
    """How many test clips a comparison reads: all of them, or those of the two sides' device groups."""
    if devices_a is None or devices_b is None:
        return len(clips)
    return int(clips["device"].isin([*devices_a, *devices_b]).sum())


def statistic_interval(system: System, name: str = "accuracy", *, resamples: int = RESAMPLES,
                       confidence: float = 0.95, rng_seed: int = RNG_SEED) -> Estimate:  # fmt: skip
    """Mean over seeds of one system's statistic, with the interval `paired_difference` gives a difference: the
    location bootstrap (the same resamples for every seed) widened by the seeds' t-interval for n > 1."""
    seeds = tuple(system.clips)
    reference = system.clips[seeds[0]]
    for seed in seeds[1:]:
        _check_same_clips(reference, system.clips[seed])
    bootstrap = _Bootstrap(reference, seeds, name, resamples, confidence, rng_seed)
    numerator, denominator = bootstrap.sums(system, None)
    values = _mean_of_ratios(numerator.sum(1), denominator.sum(1))
    replicates = bootstrap.replicates(numerator, denominator)
    low, high, test_low, test_high = percentile_interval(values, replicates, confidence)
    return Estimate(
        statistic=name, seeds=seeds, values=tuple(map(float, values)), low=low, high=high, test_low=test_low,
        test_high=test_high, confidence=confidence, locations=len(bootstrap.names), clips=len(reference),
        resamples=resamples, rng_seed=rng_seed,
    )  # fmt: skip


def device_group_difference(system: System, devices_a: Sequence[str], devices_b: Sequence[str],
                            name: str = "accuracy", **options) -> Difference:  # fmt: skip
    """statistic(devices_a) - statistic(devices_b) of one system, e.g. unseen S4-S6 minus seen S1-S3."""
    return paired_difference(system, system, name, devices_a=devices_a, devices_b=devices_b, **options)


def family_confidence(replicates: Sequence[np.ndarray], confidence: float = 0.95) -> float:
    """The per-comparison confidence at which the percentile intervals of a family hold every one of its
    replicates at once in `confidence` of the shared resamples (Westfall & Young's min-p calibration).

    Simultaneous intervals from the same location resamples keep the correlation between comparisons (the
    comparisons share systems and locations), so they are narrower than Bonferroni's and need no independence,
    as Holm's step-down on bootstrap p-values does not give intervals. Never above `confidence`."""
    matrix = np.column_stack([np.asarray(values, dtype=np.float64) for values in replicates])  # [resamples, claims]

    def simultaneous(level: float) -> float:
        tail = 100 * (1 - level) / 2
        low, high = np.percentile(matrix, [tail, 100 - tail], axis=0)
        return float(np.mean(((matrix >= low) & (matrix <= high)).all(axis=1)))

    low, high = confidence, 1.0 - 1e-9  # simultaneous(level) grows with level; find the least that reaches it
    if simultaneous(low) >= confidence:
        return confidence
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (low, middle) if simultaneous(middle) >= confidence else (middle, high)
    return high


def family_intervals(differences: Sequence[Difference], confidence: float = 0.95
                     ) -> tuple[float, list[tuple[float, float]]]:  # fmt: skip
    """Simultaneous `confidence` intervals of a family of differences: each one's interval at the level
    `family_confidence` gives (the seeds' t-part at that level too). Every difference must come from the same
    location resamples (same locations, resamples and RNG seed), or the calibration would be meaningless."""
    if not differences:
        return confidence, []
    first = differences[0]
    for other in differences[1:]:
        if (other.location_names, other.resamples, other.rng_seed) != (first.location_names, first.resamples,
                                                                        first.rng_seed):  # fmt: skip
            raise PipelineError("family-wise intervals need the same location resamples for every comparison "
                                f"({other.locations} vs {first.locations} locations, {other.resamples} vs "
                                f"{first.resamples} resamples, RNG seed {other.rng_seed} vs {first.rng_seed})")
    level = family_confidence([difference.replicates for difference in differences], confidence)
    return level, [difference.interval_at(level) for difference in differences]


def location_spread(a: System, b: System, name: str = "accuracy", *, devices_a: Sequence[str] | None = None,
                    devices_b: Sequence[str] | None = None) -> tuple[float, int]:  # fmt: skip
    """The between-location standard deviation s of the paired difference A - B (mean over shared seeds), and
    the number of locations: the location bootstrap's standard error at L locations is s / sqrt(L).

    Each location's influence u_l on a mean of ratios of sums (the delta method): L times the mean over cells
    of (n_lc - R_c d_lc) / D_c, R_c = N_c / D_c the cell's statistic over all locations; s is the standard
    deviation (ddof 1) of u_A - u_B. With equal clips per location, u_l is the location's own accuracy
    difference minus the overall one."""
    seeds, reference = _paired_tables(a, b)
    names, locations = np.unique(reference["identifier"].to_numpy(), return_inverse=True)
    if len(names) < 2:
        raise PipelineError(f"{a.name} vs {b.name}: a spread between locations needs at least 2 locations")

    def influence(system: System, devices: Sequence[str] | None) -> np.ndarray:
        per_seed = []
        for seed in seeds:
            numerator, denominator = _cell_sums(system.clips[seed], name, locations, len(names), devices)
            totals, counts = numerator.sum(0), denominator.sum(0)
            present = counts > 0
            ratio = totals[present] / counts[present]
            cells = (numerator[:, present] - ratio * denominator[:, present]) / counts[present]
            per_seed.append(len(names) * cells.mean(axis=1))
        return np.mean(per_seed, axis=0)

    spread = np.std(influence(a, devices_a) - influence(b, devices_b), ddof=1)
    return float(spread), len(names)
