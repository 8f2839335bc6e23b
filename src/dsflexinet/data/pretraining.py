"""The pretraining corpus: the synthetic default run's stand-in for AudioSet.

The paper's PaSST teachers start from AudioSet weights: a large, multi-label corpus of everyday sounds recorded
by other people's devices in other places, labelled by what sounds a clip holds, not by acoustic scene. This
corpus is that, in miniature, from the synthetic data set's own sound generator (`synth.render`):

- recordings whose sound parameters mix the ten scene prototypes with random Dirichlet weights, so the corpus
  spans the scenes' sounds without belonging to any scene, and whose labels say nothing of a scene;
- multi-label targets per 1 s clip (CORPUS_LABELS): which of the seven event kinds sound in it, whether an
  engine hum runs through it, and in which frequency bands its two ambience resonances lie;
- recording locations and devices of its own: location names `corpus-<k>`, devices `p1`-`p<n>` drawn from the
  reference and phone families (never from the simulated family of S1-S6, so no draw resembles a test device),
  every random draw under purposes 101-106 of the corpus seed, disjoint from the data set's 1-7.

It is written at the pipeline rate (no cache step) as one int16 array [clips, samples] and a clip table with a
0/1 column per label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dsflexinet.atomic import atomic_path
from dsflexinet.data.synth import (
    DEVICE_FAMILIES,
    EVENT_KINDS,
    PEAK_DB,
    SCENE_PROTOTYPES,
    apply_device,
    deviate,
    draw_device,
    render,
)
from dsflexinet.errors import PipelineError

AMBIENCE_BANDS_HZ = (150.0, 400.0, 1000.0, 2500.0, 5000.0)  # edges: six bands from 0 Hz up
CORPUS_LABELS = (
    *EVENT_KINDS,
    "hum",
    *(f"ambience_{low:g}-{high:g}hz"
      for low, high in zip((0.0, *AMBIENCE_BANDS_HZ), (*AMBIENCE_BANDS_HZ, 16000.0), strict=True)),
)
# An event counts for a clip where this much of it sounds inside the clip's second, or half of it if shorter.
MIN_EVENT_OVERLAP_SECONDS = 0.05
CORPUS_DEVICE_FAMILIES = ("reference", "phone")
TABLE_COLUMNS = ("clip", "recording", "location", "device")


@dataclass(frozen=True)
class CorpusSpec:
    seed: int = 527
    recordings: int = 200
    clips_per_recording: int = 10
    locations: int = 60
    devices: int = 4
    location_spread: float = 0.6
    sample_rate: int = 32000

    def __post_init__(self) -> None:
        for name in ("recordings", "clips_per_recording", "locations", "devices"):
            if getattr(self, name) < 1:
                raise PipelineError(f"pretraining.corpus.{name} must be at least 1, not {getattr(self, name)}")

    @classmethod
    def from_dict(cls, values: dict) -> CorpusSpec:
        return cls(**values)


def _mixed_parameters(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sound parameters between the scenes: a Dirichlet mixture of the prototypes, resonances of two of them."""
    prototypes = list(SCENE_PROTOTYPES.values())
    weights = rng.dirichlet(np.full(len(prototypes), 0.5))
    params = {
        key: sum(w * np.array(p[key]) for w, p in zip(weights, prototypes, strict=True))
        for key in ("envelope", "loudness", "modulation", "hum", "events")
    }
    donors = rng.choice(len(prototypes), size=2, p=weights)
    params["peaks"] = np.array([prototypes[donor]["peaks"][k] for k, donor in enumerate(donors)])
    params["peak_db"] = np.array(PEAK_DB * rng.uniform(0.3, 1.0))
    return params


def _band(frequency: float) -> int:
    return int(np.searchsorted(AMBIENCE_BANDS_HZ, frequency))


def generate_corpus(spec: CorpusSpec, out_waves: str | Path, out_table: str | Path) -> pd.DataFrame:
    """Write the corpus: int16 waveforms [clips, samples] and the clip table with one 0/1 column per label."""
    rate, seconds = spec.sample_rate, spec.clips_per_recording
    families = [DEVICE_FAMILIES[CORPUS_DEVICE_FAMILIES[k % len(CORPUS_DEVICE_FAMILIES)]] for k in range(spec.devices)]
    devices = [
        draw_device(family, np.random.default_rng([spec.seed, 104, k]), seconds * rate, rate)
        for k, family in enumerate(families)
    ]
    locations = [
        deviate(_mixed_parameters(np.random.default_rng([spec.seed, 101, k])),
                np.random.default_rng([spec.seed, 102, k]), spec.location_spread)
        for k in range(spec.locations)
    ]  # fmt: skip
    waves = np.zeros((spec.recordings * seconds, rate), dtype=np.int16)
    rows = []
    for recording in range(spec.recordings):
        rng = np.random.default_rng([spec.seed, 103, recording])
        location, device = recording % spec.locations, int(rng.integers(spec.devices))
        clean = render(locations[location], rng, seconds, rate)
        noise = np.random.default_rng([spec.seed, 105, recording])
        recorded = apply_device(clean.wave, devices[device], noise)
        bands = {_band(peak) for peak in locations[location]["peaks"]}
        for second in range(seconds):
            clip = recording * seconds + second
            waves[clip] = np.round(recorded[second * rate : (second + 1) * rate] * 32767)
            start, stop = second * rate, (second + 1) * rate
            sounding = {
                kind for kind, first, end in clean.events
                if min(end, stop) - max(first, start) >= min(MIN_EVENT_OVERLAP_SECONDS * rate, (end - first) / 2)
            }  # fmt: skip
            labels = [kind in sounding for kind in EVENT_KINDS] + [clean.hum]
            labels += [band in bands for band in range(len(AMBIENCE_BANDS_HZ) + 1)]
            rows.append((f"corpus-{recording}-{second}", recording, f"corpus-{location}", f"p{device + 1}",
                         *(int(value) for value in labels)))  # fmt: skip
    table = pd.DataFrame(rows, columns=[*TABLE_COLUMNS, *CORPUS_LABELS])
    with atomic_path(out_waves) as tmp, tmp.open("wb") as handle:
        np.save(handle, waves)
    with atomic_path(out_table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table


@dataclass
class Corpus:
    waves: np.ndarray  # int16 [clips, samples], memory-mapped
    table: pd.DataFrame

    @property
    def targets(self) -> np.ndarray:
        return self.table[list(CORPUS_LABELS)].to_numpy(dtype=np.float32)


def read_corpus(waves: str | Path, table: str | Path) -> Corpus:
    """The corpus as written by `generate_corpus`, checked: one table row per clip, every label column present."""
    try:
        array = np.load(waves, mmap_mode="r")
        frame = pd.read_csv(table, sep="\t")
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise PipelineError(f"{waves}: unreadable pretraining corpus ({error})") from None
    missing = [column for column in (*TABLE_COLUMNS, *CORPUS_LABELS) if column not in frame]
    if missing:
        raise PipelineError(f"{table}: not a pretraining corpus table (missing {', '.join(missing)})")
    if array.ndim != 2 or array.dtype != np.int16 or len(array) != len(frame):
        raise PipelineError(f"{waves}: expected int16 [clips, samples] with {len(frame)} clips, not"
                            f" {array.dtype} {list(array.shape)}")  # fmt: skip
    return Corpus(array, frame)
