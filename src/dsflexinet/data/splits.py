"""Which training clips each job learns from: a training subset, the teachers' share of it and the fusion hold-out.

The waveform cache holds all of fold1_train once; a job selects rows of it by file name from a clip table
(the cache's own columns, tau22.CLIP_COLUMNS):

    train.tsv            the subset's clips (split5 ... split100): what students learn from, the energy analysis
    teacher_train.tsv    train minus the hold-out: what the teachers learn from
    fusion_holdout.tsv   whole recording locations of train that no teacher sees: where eq. 4 is fitted

and, of the test split, the fixed locations that every per-epoch validation curve reads (the evaluations read
all of it).

Why whole locations: clips of one location (and its device copies) are strongly correlated, so a clip hold-out
would still reward teachers that memorised their location. Per scene, `fraction` of its locations is held out,
but never all of them (the teachers must see every scene), so a scene with a single location keeps it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dsflexinet.atomic import atomic_path
from dsflexinet.data.tau22 import CLIP_COLUMNS, read_table
from dsflexinet.errors import PipelineError


def _draw_locations(clips: pd.DataFrame, count, rng: np.random.Generator) -> list[str]:
    """Per scene, `count(its number of locations)` of its recording locations (identifiers), drawn by `rng`;
    sorted."""
    drawn = []
    for _, scene in clips.groupby("scene_label", sort=True):
        locations = sorted(set(scene["identifier"]))
        drawn += [locations[i] for i in sorted(rng.choice(len(locations), size=count(len(locations)), replace=False))]
    return sorted(drawn)


def holdout_locations(clips: pd.DataFrame, fraction: float, seed: int) -> list[str]:
    """Recording locations (identifiers) to hold out: per scene, round(fraction x its locations), at most all
    but one, drawn with a generator seeded by `seed`; sorted."""
    if not 0 <= fraction < 1:
        raise PipelineError(f"fusion hold-out fraction {fraction} is not in [0, 1)")
    rng = np.random.default_rng([seed, 0x501D])
    return _draw_locations(clips, lambda n: min(round(fraction * n), n - 1), rng)


def write_validation_subset(cache_table: str | Path, locations_per_scene: int, seed: int, out: str | Path) -> dict:
    """The test clips every per-epoch validation curve reads: all clips of `locations_per_scene` recording
    locations per scene (all of a scene's where it has fewer), drawn with a generator seeded by `seed`; rows in
    cache order. A fixed subset keeps the curves' cost apart from the test split's size."""
    if locations_per_scene < 1:
        raise PipelineError(f"validation locations per scene {locations_per_scene} is not at least 1")
    clips = read_clip_table(cache_table)
    rng = np.random.default_rng([seed, 0x7A11])
    chosen = clips[clips["identifier"].isin(_draw_locations(clips, lambda n: min(locations_per_scene, n), rng))]
    write_clip_table(chosen, out)
    return {"clips": len(chosen), "locations": int(chosen["identifier"].nunique()), "of_clips": len(clips)}


def read_clip_table(path: str | Path) -> pd.DataFrame:
    """A clip table written by `write_training_split` (or a cache's .tsv)."""
    return read_table(Path(path), CLIP_COLUMNS).astype({"label": "int64"})


def write_clip_table(table: pd.DataFrame, path: str | Path) -> None:
    """A clip table (the cache's columns), tab-separated, written atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def write_training_split(
    cache_table: str | Path, subset_table: str | Path, holdout_fraction: float, seed: int,
    train: str | Path, teacher_train: str | Path, fusion_holdout: str | Path,
) -> dict:  # fmt: skip
    """Write the three clip tables of a training subset (rows in cache order); return their counts."""
    cached = read_clip_table(cache_table)
    wanted = set(read_table(Path(subset_table), ("filename",))["filename"])
    missing = sorted(wanted - set(cached["filename"]))
    if missing:
        raise PipelineError(
            f"{subset_table}: {len(missing)} clip(s) are not in the training cache {cache_table}, e.g. {missing[0]}"
        )
    subset = cached[cached["filename"].isin(wanted)]
    held = subset["identifier"].isin(holdout_locations(subset, holdout_fraction, seed))
    if holdout_fraction > 0 and not held.any():
        raise PipelineError(
            f"{subset_table}: no recording location to hold out for the fusion (every scene has a single one);"
            " use teachers.fusion.fit: in_sample with holdout_fraction: 0"
        )
    for table, path in ((subset, train), (subset[~held], teacher_train), (subset[held], fusion_holdout)):
        write_clip_table(table, path)
    return {"train": len(subset), "teacher_train": int((~held).sum()), "fusion_holdout": int(held.sum())}


def write_device_clips(train: str | Path, device: str, out: str | Path) -> int:
    """The rows of a training clip table recorded by `device` (DCASE'25 device fine-tuning); a device with no
    clips there fails naming the table, rather than fine-tuning on nothing."""
    clips = read_clip_table(train)
    chosen = clips[clips["device"] == device]
    if chosen.empty:
        present = ", ".join(sorted(set(clips["device"])))
        raise PipelineError(f"{train}: no training clip of device {device!r} (devices present: {present})")
    write_clip_table(chosen, out)
    return len(chosen)
