"""The paper's claims as rows: its difference, this run's paired difference with a 95 % interval, a verdict.

A claim says that A - B (percentage points of accuracy) lies on one side of a threshold: above 0 for "A beats
B", below 0 for "A loses against B", above -3.2 for "QAT costs at most about 3 points". The verdict reads the
interval against that threshold: `supported` where the whole interval lies on the claimed side, `contradicted`
where it lies wholly on the other, `not distinguishable` where it contains the threshold, whatever the sign of
the estimate. With fewer than `MIN_SEEDS` seeds a verdict that is not `not distinguishable` is only
`provisional: supported` / `provisional: contradicted`: one training run can land a point or more either way,
and with one or two seeds the interval cannot show it.

Two readings of every claim: the per-claim interval holds each claim's error rate at 5 % alone; across the
family of claims (13 on the default config) the chance of at least one wrong verdict is then far above 5 %, so
the family-wise interval (`stats.family_intervals`: simultaneous over the claims' shared location resamples)
holds that chance at 5 %. Verdicts are read from accuracy only; macro accuracy (equal to accuracy on a test
split with as many clips of every scene) is a column beside it, not a second family.

Beside each interval: its half-width, the minimum detectable difference at 80 % power
(`stats.Difference.minimum_detectable`: the interval's critical half-width plus z(0.8) standard errors) and
whether the paper's difference lies in it (`paper_in_interval`; `interval_covers` says which sources of
uncertainty the interval covers).

The plan (`claims_plan`) names for each claim its two systems (run, precision, optional device group, a clips
table and an evaluation per seed: claims.md ends with the machines the evaluations name) and the paper's
number; it is built from the config's `reports` section, and a claim whose systems the section lacks (a small
config) is left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dsflexinet.atomic import atomic_path, write_text
from dsflexinet.data.tau22 import DEVICE_GROUPS
from dsflexinet.errors import PipelineError
from dsflexinet.report import paper
from dsflexinet.report.stats import (
    RESAMPLES,
    RNG_SEED,
    Difference,
    System,
    family_intervals,
    format_mean_std,
    paired_difference,
)
from dsflexinet.report.tables import machines_note, percent, to_markdown, yes_no

# pp: "QAT costs at most about 3 points". The paper's own costs are -2.74 to -3.17, so "about 3" is read as at
# most its worst, rounded down to a tenth (-3.2): with -3.0 the paper would contradict itself for three of its
# four sizes.
QAT_COST_BOUND = math.floor(10 * min(qat - acc for *_, acc, qat in paper.TABLE2.values())) / 10
SUPPORTED, NOT_DISTINGUISHABLE, CONTRADICTED = "supported", "not distinguishable", "contradicted"
PROVISIONAL = "provisional: "
VERDICTS = (SUPPORTED, NOT_DISTINGUISHABLE, CONTRADICTED, PROVISIONAL + SUPPORTED, PROVISIONAL + CONTRADICTED)
MIN_SEEDS = 3  # seeds a verdict needs; fewer give a provisional one
POWER = 0.8  # of the minimum detectable difference
SEEN, UNSEEN = DEVICE_GROUPS["seen_simulated"], DEVICE_GROUPS["unseen_simulated"]
_TABLE5_REFERENCE = "DS-FlexiNet+RN+FMS+ADIR"
CLAIM_COLUMNS = (
    "claim", "source", "statistic", "a", "b", "paper_pp", "difference_pp", "low_pp", "high_pp", "threshold_pp",
    "direction", "verdict", "interval_covers", "n_seeds", "seeds", "locations", "clips", "a_pp", "b_pp",
    "test_low_pp", "test_high_pp", "confidence", "resamples", "rng_seed",
    "half_width_pp", "mde_pp", "paper_in_interval", "family_low_pp", "family_high_pp", "family_verdict",
    "family_confidence", "family_mde_pp", "family_size", "macro_difference_pp", "macro_low_pp", "macro_high_pp",
)  # fmt: skip


def verdict(low: float, high: float, direction: int, threshold: float = 0.0, *, n_seeds: int) -> str:
    """The claim is direction * (difference - threshold) > 0; read the interval [low, high] against it, as
    provisional with fewer than MIN_SEEDS seeds."""
    if direction not in (1, -1):
        raise PipelineError(f"claim direction must be 1 or -1, not {direction!r}")
    if low > threshold:
        reading = SUPPORTED if direction == 1 else CONTRADICTED
    elif high < threshold:
        reading = SUPPORTED if direction == -1 else CONTRADICTED
    else:
        return NOT_DISTINGUISHABLE
    return reading if n_seeds >= MIN_SEEDS else PROVISIONAL + reading


def _paper_accuracy_difference(a: float, b: float) -> float:
    return round(a - b, 2)


def paper_claims(reports: Mapping) -> list[dict]:
    """The paper's claims over the runs that `reports` (the config section) names; systems as run, precision
    and optional device group, without clips tables yet."""

    def system(run: str, precision: str = "float", devices: tuple[str, ...] | None = None) -> dict:
        return {"run": run, "precision": precision, "devices": list(devices) if devices else None}

    def claim(text: str, source: str, a: dict, b: dict, paper_difference: float | None, direction: int,
              threshold: float = 0.0) -> dict:  # fmt: skip
        return {"claim": text, "source": source, "a": a, "b": b, "paper_difference": paper_difference,
                "direction": direction, "threshold": threshold}  # fmt: skip

    claims = []
    table4 = reports.get("table4", {})
    for high, low in (("Fused", "Averaged"), ("Averaged", "Teacher(w/o)"), ("Fused", "Teacher(w/o)")):
        if high in table4 and low in table4:
            difference = _paper_accuracy_difference(paper.TABLE4[high][-1], paper.TABLE4[low][-1])
            claims.append(claim(f"KD: {high} > {low}", "Table IV", system(table4[high]), system(table4[low]),
                                difference, 1))  # fmt: skip
    table5 = reports.get("table5", {})
    for other, row in paper.TABLE5.items():
        if other != _TABLE5_REFERENCE and other in table5 and _TABLE5_REFERENCE in table5:
            short = other.removeprefix("DS-FlexiNet+")
            difference = _paper_accuracy_difference(paper.TABLE5[_TABLE5_REFERENCE][-1], row[-1])
            claims.append(claim(f"RN+FMS+ADIR > {short}", "Table V", system(table5[_TABLE5_REFERENCE]),
                                system(table5[other]), difference, 1))  # fmt: skip
    fig3 = reports.get("fig3", {})
    if "channel" in fig3 and "frequency" in fig3:
        claims.append(claim("ResNorm over channels > over frequency", "Fig. 3", system(fig3["channel"]),
                            system(fig3["frequency"]), None, 1))  # fmt: skip
    for run in reports.get("table2", []):
        quoted = paper.TABLE2.get(run)  # (params, MACs, size, acc, acc QAT)
        difference = _paper_accuracy_difference(quoted[4], quoted[3]) if quoted else None
        claims.append(claim(f"QAT {run}: int8 - float > {QAT_COST_BOUND:g}", "Table II", system(run, "int8"),
                            system(run), difference, 1, QAT_COST_BOUND))  # fmt: skip
    if "Fused" in table4:
        fused = dict(zip(paper.DEVICE_COLUMNS, paper.TABLE4["Fused"], strict=False))  # A..S6, then overall
        unseen, seen = ([fused[device.upper()] for device in group] for group in (UNSEEN, SEEN))
        difference = _paper_accuracy_difference(float(np.mean(unseen)), float(np.mean(seen)))
        claims.append(claim("Fused: unseen S4-S6 < seen S1-S3", "Table IV", system(table4["Fused"], devices=UNSEEN),
                            system(table4["Fused"], devices=SEEN), difference, -1))  # fmt: skip
    return claims


SeedPaths = Callable[[str, str], Mapping[int, str]]  # (run, precision) -> {seed: path}


def claims_plan(reports: Mapping, clips: SeedPaths, evaluations: SeedPaths) -> dict:
    """The plan `write_claims` reads: `paper_claims(reports)` with each system's clips tables and evaluations,
    `clips(run, precision) -> {seed: path of clips.tsv}` and the same of eval.json (the workflow knows where
    evaluation writes them; the evaluations name the machines behind each system)."""
    claims = paper_claims(reports)
    for claim in claims:
        for side in ("a", "b"):
            system = claim[side]
            for key, paths in (("clips", clips), ("evaluations", evaluations)):
                system[key] = {str(seed): str(path) for seed, path in paths(system["run"], system["precision"]).items()}
    return {"claims": claims}


def plan_inputs(plan: Mapping) -> list[str]:
    """Every clips table and evaluation the plan reads, once each (a rule's input)."""
    paths = [path for claim in plan["claims"] for side in ("a", "b") for key in ("clips", "evaluations")
             for path in claim[side][key].values()]  # fmt: skip
    return list(dict.fromkeys(paths))


def _checked(plan: Mapping) -> list[dict]:
    """The plan's claims, each with the keys evaluation needs (one line naming the first missing one)."""
    if not isinstance(plan, Mapping) or not isinstance(plan.get("claims"), list):
        raise PipelineError("claims plan: needs a list under 'claims'")
    for number, claim in enumerate(plan["claims"]):
        where = f"claims plan, claim {claim.get('claim', number)!r}" if isinstance(claim, Mapping) else "claims plan"
        if not isinstance(claim, Mapping):
            raise PipelineError(f"{where}: claim {number} is not a mapping")
        for key in ("claim", "source", "a", "b", "paper_difference", "direction", "threshold"):
            if key not in claim:
                raise PipelineError(f"{where}: key {key!r} missing")
        for side in ("a", "b"):
            for key in ("run", "precision", "clips", "evaluations"):
                if not isinstance(claim[side], Mapping) or key not in claim[side]:
                    raise PipelineError(f"{where}: key '{side}.{key}' missing")
    return list(plan["claims"])


def system_label(system: Mapping) -> str:
    devices = system.get("devices")
    group = f" {devices[0].upper()}-{devices[-1].upper()}" if devices else ""
    return f"{system['run']} {system['precision']}{group}"


def _joined(values) -> str:
    """Per-seed values in one CSV cell."""
    return ";".join(map(str, values))


def _inside(value: float | None, low: float, high: float) -> bool | None:
    return None if value is None or pd.isna(value) else bool(low <= value <= high)


def _row(claim: Mapping, difference: Difference, macro: Difference, family: tuple[float, float],
         family_confidence: float, family_size: int) -> dict:  # fmt: skip
    """One CSV row: differences and values in percentage points."""
    low, high = 100 * difference.low, 100 * difference.high
    family_low, family_high = 100 * family[0], 100 * family[1]
    n_seeds = len(difference.seeds)
    return {
        "claim": claim["claim"], "source": claim["source"], "statistic": difference.statistic,
        "a": system_label(claim["a"]), "b": system_label(claim["b"]),
        "paper_pp": claim["paper_difference"], "difference_pp": percent(difference.estimate),
        "low_pp": percent(difference.low), "high_pp": percent(difference.high),
        "threshold_pp": claim["threshold"], "direction": claim["direction"],
        "verdict": verdict(low, high, claim["direction"], claim["threshold"], n_seeds=n_seeds),
        "interval_covers": difference.interval_covers, "n_seeds": n_seeds,
        "seeds": _joined(difference.seeds), "locations": difference.locations, "clips": difference.clips,
        "a_pp": _joined(map(percent, difference.values_a)), "b_pp": _joined(map(percent, difference.values_b)),
        "test_low_pp": percent(difference.test_low), "test_high_pp": percent(difference.test_high),
        "confidence": difference.confidence, "resamples": difference.resamples, "rng_seed": difference.rng_seed,
        "half_width_pp": round((high - low) / 2, 2),
        "mde_pp": percent(difference.minimum_detectable(difference.confidence, POWER)),
        "paper_in_interval": _inside(claim["paper_difference"], low, high),
        "family_low_pp": percent(family[0]), "family_high_pp": percent(family[1]),
        "family_verdict": verdict(family_low, family_high, claim["direction"], claim["threshold"], n_seeds=n_seeds),
        "family_confidence": round(family_confidence, 5),
        "family_mde_pp": percent(difference.minimum_detectable(family_confidence, POWER)),
        "family_size": family_size, "macro_difference_pp": percent(macro.estimate),
        "macro_low_pp": percent(macro.low), "macro_high_pp": percent(macro.high),
    }  # fmt: skip


def claims_frame(plan: Mapping, *, resamples: int = RESAMPLES, confidence: float = 0.95,
                 rng_seed: int = RNG_SEED) -> pd.DataFrame:  # fmt: skip
    """One row per claim, in plan order: accuracy's per-claim and family-wise readings, macro accuracy's
    difference and interval beside them."""
    claims, systems = _checked(plan), {}

    def load(system: Mapping) -> System:
        key = (system["run"], system["precision"])
        if key not in systems:
            systems[key] = System.read(f"{system['run']} {system['precision']}", system["clips"])
        return systems[key]

    def difference(claim: Mapping, name: str) -> Difference:
        return paired_difference(
            load(claim["a"]), load(claim["b"]), name, devices_a=claim["a"].get("devices"),
            devices_b=claim["b"].get("devices"), resamples=resamples, confidence=confidence, rng_seed=rng_seed,
        )  # fmt: skip

    accuracy = [difference(claim, "accuracy") for claim in claims]
    macro = [difference(claim, "macro_accuracy") for claim in claims]
    level, family = family_intervals(accuracy, confidence)
    rows = [_row(*parts, level, len(claims)) for parts in zip(claims, accuracy, macro, family, strict=True)]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def _interval_cell(estimate: float, low: float, high: float) -> str:
    return f"{estimate:+.2f} [{low:+.2f}, {high:+.2f}]"


def _markdown(frame: pd.DataFrame, machines: str) -> str:
    if frame.empty:
        return "# Claims of the paper\n\nNo claim of the paper has its systems in this run's `reports` section.\n"
    first = frame.iloc[0]

    def counts(column: str) -> str:
        return "/".join(map(str, frame[column].unique()))

    confidence, family = 100 * first["confidence"], 100 * first["family_confidence"]
    lines = [
        "# Claims of the paper, tested on this run",
        "",
        (
            f"Each row: A - B in percentage points of accuracy, paired over the {counts('clips')} test clips each "
            "comparison reads (both sides the same clips, or a device group's recordings at the same locations) and "
            f"the seeds both share; {confidence:g} % interval from a bootstrap over the {counts('locations')} test "
            f"recording locations ({first['resamples']} resamples, RNG seed {first['rng_seed']}), widened by the "
            "seeds' t-interval where n > 1. Verdict: *supported* where the interval lies wholly on the claimed side "
            "of the threshold (0, or the bound of a bound claim), *contradicted* where it lies wholly on the other "
            "side, *not distinguishable* where it contains the threshold. With fewer than "
            f"{MIN_SEEDS} seeds (here {counts('n_seeds')}) a verdict on either side is *provisional*: one training "
            "run is one draw of the training variation, which the interval cannot show."
        ),
        "",
        (
            f"Two readings. The per-claim {confidence:g} % interval controls each claim's own error rate at "
            f"{100 - confidence:g} %; over the {first['family_size']} claims read together the chance of at least "
            f"one wrong verdict is larger. The family-wise interval controls that chance at {100 - confidence:g} %: "
            f"each claim's interval at {family:.2f} %, the level at which the claims' intervals hold together in "
            f"{confidence:g} % of the location resamples every claim shares (Westfall & Young's min-p). "
            "± is the per-claim interval's half-width; MDE is the smallest true difference from the threshold that "
            f"the interval detects with {100 * POWER:g} % power: the interval's critical half-width (the "
            "bootstrap's z, and the seeds' Student t with n - 1 degrees of freedom where n > 1) plus "
            f"z({POWER:g}) x SE, at the claim's alpha "
            f"({100 - confidence:g} %) and the family's ({100 - family:.2f} % per claim). *paper in interval*: "
            "whether the paper's difference lies in the per-claim interval (for the QAT rows: the paper's own "
            "cost). A paper difference well below the MDE is one this run would most likely miss."
        ),
        "",
        "## Accuracy (%): verdicts, per claim and family-wise",
        "",
    ]
    claimed = zip(frame["direction"], frame["threshold_pp"], strict=True)
    table = pd.DataFrame({
        "claim": frame["claim"], "source": frame["source"],
        "paper": [f"{value:+.2f}" if pd.notna(value) else "" for value in frame["paper_pp"]],
        "claimed": [f"{'>' if d == 1 else '<'} {t:g}" for d, t in claimed],
        f"this run [{confidence:g} % interval]": [_interval_cell(*values) for values in zip(
            frame["difference_pp"], frame["low_pp"], frame["high_pp"], strict=True)],
        "±": [f"{value:.2f}" for value in frame["half_width_pp"]],
        "MDE": [f"{value:.2f}" for value in frame["mde_pp"]],
        "paper in interval": [yes_no(value) for value in frame["paper_in_interval"]],
        "verdict": frame["verdict"],
        "family-wise interval": [f"[{low:+.2f}, {high:+.2f}]" for low, high in
                                 zip(frame["family_low_pp"], frame["family_high_pp"], strict=True)],
        "family MDE": [f"{value:.2f}" for value in frame["family_mde_pp"]],
        "family-wise verdict": frame["family_verdict"],
    })  # fmt: skip

    def per_seed(systems: pd.Series, values: pd.Series) -> list[str]:
        return [f"{s}: {format_mean_std(map(float, v.split(';')))}" for s, v in zip(systems, values, strict=True)]

    systems = pd.DataFrame({
        "claim": frame["claim"], "A": per_seed(frame["a"], frame["a_pp"]), "B": per_seed(frame["b"], frame["b_pp"]),
        f"macro accuracy A - B [{confidence:g} %]": [_interval_cell(*values) for values in zip(
            frame["macro_difference_pp"], frame["macro_low_pp"], frame["macro_high_pp"], strict=True)],
        "uncertainty the interval covers": frame["interval_covers"],
    })  # fmt: skip
    lines += [
        to_markdown(table).rstrip("\n"), "",
        "## The systems (accuracy, %: mean ± std over seeds) and macro accuracy (a column, not a second family)", "",
        to_markdown(systems).rstrip("\n"),
    ]
    return "\n".join([*lines, "", machines]) + "\n"


def write_claims(plan: Mapping, out_csv: str | Path, out_md: str | Path, **options) -> pd.DataFrame:
    """claims.csv (every number, per-seed values too) and claims.md (the table people read); options go to
    `claims_frame` (resamples, confidence, rng_seed)."""
    frame = claims_frame(plan, **options)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    evaluations = [path for claim in _checked(plan) for side in ("a", "b")
                   for path in claim[side]["evaluations"].values()]  # fmt: skip
    write_text(out_md, _markdown(frame, machines_note(evaluations)))
    return frame
