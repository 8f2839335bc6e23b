"""The embedded default data set: a deterministic synthetic TAU22 written in the real on-disk format.

Why synthetic: the real development set is 30 GB behind a manual licence; a fresh clone must still run the
whole DAG offline. Everything after this module (validation, caching, training, reports) is the same code for
real and synthetic data, because the output is byte-for-byte a TAU22 layout: 1 s mono 44.1 kHz 24-bit WAVs
named `<scene>-<city>-<location>-<segment>-<subsegment>-<device>.wav`, `meta.csv` and the fold1 tables.

How scenes are made. Each segment (10 s in TAU22, `clips_per_segment` here) is a mixture of
  - coloured background noise (a spectral envelope: tilt, low, mid and high emphasis),
  - a slow amplitude modulation,
  - an optional engine hum (harmonic stack, drifting f0),
  - Poisson-distributed events of seven kinds (bird chirps, beeps/chimes, clicks/steps, voice babble,
    vehicle whooshes, rail squeals, train rumbles),
scaled to a scene-typical loudness. Scenes differ by prototype parameters (SCENE_PROTOTYPES) that overlap on
purpose (metro vs metro_station, bus vs tram, street_pedestrian vs public_square, ...). `difficulty` pulls
every prototype towards the mean of all scenes, and each recording location draws its own offsets, so test
locations (never seen in training) are truly new: a small CNN learns the task but does not solve it.

How devices are made. Each device (a, b, c, s1-s6) is drawn from a family (DEVICE_FAMILIES): a random colouring
from `responses.py`, a gain, a noise floor and soft compression (tanh), each within the family's ranges, under
the device's own seed. A is the near-flat reference, B and C are phones, S1-S6 one family of simulated devices:
the unseen S4-S6 are new draws of the seen S1-S3's kind, as TAU22's are (its S1-S6 were all simulated from
device-A audio by one procedure), so the shift to them is set by the construction, not tuned on a result. As
in TAU22, the other devices record the same segments as device A (parallel recordings), device A dominates
training, and S4-S6 appear only in the test split.

Training subsets. `evaluation_setup/split{5,10,25,50}.csv` mirror the DCASE 2024 subsets of TAU22 (see
`subsets.py`): nested, every device keeping its share of fold1_train, no S4-S6, chosen by recording as TAU22's
are: a device's clips of one segment are in a subset together or not at all. Whole locations would be too
coarse here: a location holds about 28 of the 1,400 training clips, so the 5 % subset (70 clips) would be two
or three locations, as many of the ten scenes. With segments, 5 % is 5 device-A recordings and 20 clips of the minor
devices, which fill the scenes device A leaves out; from 10 % on device A covers every scene.

Determinism: every random draw comes from a generator seeded by (seed, purpose, index), so the bytes depend
only on the spec (and the pinned numpy), not on the order or parallelism of rendering.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile

from dsflexinet.atomic import atomic_path
from dsflexinet.data.responses import ResponseShape, apply_response, random_response_db
from dsflexinet.data.subsets import SUBSET_FRACTIONS, SubsetFacts, subset_file
from dsflexinet.data.tau22 import DATASET_DIRNAME, DEVICES, SCENES, SPLIT_FILES, ClipName
from dsflexinet.errors import PipelineError

CITIES = (
    "amsterdam", "barcelona", "helsinki", "lisbon", "london", "lyon",
    "madrid", "milan", "paris", "prague", "stockholm", "vienna",
)  # fmt: skip
EVENT_KINDS = ("chirp", "beep", "click", "babble", "whoosh", "squeal", "rumble")

# Per scene: background envelope [tilt dB/octave, low dB, mid dB, high dB], loudness [mean dBFS RMS],
# modulation [depth, rate Hz], hum [probability, f0 low, f0 high], two stationary ambience resonances [Hz]
# (ventilation, engines, rails; shared between confusable scenes), event rates per second in EVENT_KINDS order.
SCENE_PROTOTYPES: dict[str, dict[str, list[float]]] = {
    "airport":           {"envelope": [-4.0, 4.0, 5.0, -3.0], "loudness": [-23.1], "modulation": [0.10, 0.2],
                          "hum": [0.5, 90.0, 130.0], "peaks": [180.0, 2200.0],
                          "events": [0.00, 0.50, 0.80, 1.00, 0.10, 0.00, 0.20]},
    "bus":               {"envelope": [-6.0, 12.0, 2.0, -6.0], "loudness": [-19.1], "modulation": [0.25, 0.5],
                          "hum": [0.95, 35.0, 70.0], "peaks": [90.0, 700.0],
                          "events": [0.00, 0.20, 0.40, 0.60, 0.20, 0.16, 0.60]},
    "metro":             {"envelope": [-5.0, 14.0, 3.0, -2.0], "loudness": [-17.1], "modulation": [0.35, 0.8],
                          "hum": [0.60, 80.0, 150.0], "peaks": [120.0, 1500.0],
                          "events": [0.00, 0.10, 0.20, 0.40, 0.10, 0.60, 1.20]},
    "metro_station":     {"envelope": [-4.5, 9.0, 4.0, -2.0], "loudness": [-20.1], "modulation": [0.20, 0.3],
                          "hum": [0.30, 80.0, 150.0], "peaks": [120.0, 2800.0],
                          "events": [0.00, 0.40, 1.00, 0.80, 0.10, 0.30, 0.60]},
    "park":              {"envelope": [-3.0, 2.0, 0.0, 3.0], "loudness": [-29.1], "modulation": [0.10, 0.1],
                          "hum": [0.05, 50.0, 100.0], "peaks": [4500.0, 6500.0],
                          "events": [1.60, 0.00, 0.30, 0.40, 0.10, 0.00, 0.10]},
    "public_square":     {"envelope": [-3.5, 4.0, 4.0, 0.0], "loudness": [-23.1], "modulation": [0.15, 0.2],
                          "hum": [0.10, 50.0, 100.0], "peaks": [400.0, 5000.0],
                          "events": [0.20, 0.04, 1.00, 1.40, 0.30, 0.00, 0.10]},
    "shopping_mall":     {"envelope": [-4.0, 5.0, 6.0, -1.0], "loudness": [-21.1], "modulation": [0.05, 0.1],
                          "hum": [0.50, 100.0, 140.0], "peaks": [300.0, 2200.0],
                          "events": [0.00, 0.20, 1.00, 1.80, 0.00, 0.00, 0.10]},
    "street_pedestrian": {"envelope": [-4.0, 6.0, 3.0, -1.0], "loudness": [-21.1], "modulation": [0.20, 0.2],
                          "hum": [0.10, 40.0, 90.0], "peaks": [400.0, 3500.0],
                          "events": [0.20, 0.04, 1.60, 1.00, 0.60, 0.00, 0.20]},
    "street_traffic":    {"envelope": [-5.5, 10.0, 2.0, -3.0], "loudness": [-17.1], "modulation": [0.40, 0.15],
                          "hum": [0.30, 40.0, 90.0], "peaks": [90.0, 1100.0],
                          "events": [0.04, 0.10, 0.20, 0.20, 1.60, 0.10, 0.60]},
    "tram":              {"envelope": [-5.0, 10.0, 3.0, -4.0], "loudness": [-19.1], "modulation": [0.25, 0.4],
                          "hum": [0.80, 60.0, 100.0], "peaks": [200.0, 1500.0],
                          "events": [0.00, 0.30, 0.30, 0.60, 0.20, 0.80, 0.60]},
}  # fmt: skip

@dataclass(frozen=True)
class DeviceFamily:
    """A kind of recording device: how far its colouring departs from flat, and the ranges each device of the
    kind draws its gain, self-noise and compression from."""

    shape: ResponseShape
    gain_db: tuple[float, float]
    noise_dbfs: tuple[float, float]
    drive: tuple[float, float]  # soft-compression drive; 0 is linear


# As in TAU22: A is the reference recorder, B and C are real phones, S1-S6 are simulated from A's recordings by
# one procedure; S4-S6 are new devices of that same kind, present only in the test split. The unseen devices
# therefore shift the input as much as one seen simulated device differs from another, not more.
DEVICE_FAMILIES: dict[str, DeviceFamily] = {
    "reference": DeviceFamily(ResponseShape(2, 1.0, (15.0, 25.0), (18000.0, 20000.0)), (0.0, 0.0), (-85.0, -85.0),
                              (0.0, 0.0)),
    "phone": DeviceFamily(ResponseShape(4, 3.0, (80.0, 200.0), (10000.0, 15000.0)), (-2.0, 1.0), (-68.0, -62.0),
                          (0.5, 1.5)),
    "simulated": DeviceFamily(ResponseShape(5, 4.0, (100.0, 300.0), (7000.0, 12000.0)), (-2.0, 2.0),
                              (-66.0, -58.0), (0.0, 2.0)),
}  # fmt: skip
DEVICE_FAMILY = {"a": "reference", "b": "phone", "c": "phone", **{f"s{i}": "simulated" for i in range(1, 7)}}


@dataclass(frozen=True)
class DeviceParameters:
    """One device as drawn from its family: a colouring (dB on the clip's rfft bins), gain, noise floor, drive."""

    response_db: np.ndarray
    gain_db: float
    noise_dbfs: float
    drive: float


def draw_device(family: DeviceFamily, rng: np.random.Generator, n_samples: int, rate: int) -> DeviceParameters:
    """One device of `family`: its colouring on the rfft bins of `n_samples` at `rate`, then its chain."""
    response = random_response_db(np.fft.rfftfreq(n_samples, 1 / rate), family.shape, rng)
    gain_db, noise_dbfs, drive = (rng.uniform(*bounds) for bounds in (family.gain_db, family.noise_dbfs, family.drive))
    return DeviceParameters(response, float(gain_db), float(noise_dbfs), float(drive))


def device_parameters(spec: SyntheticSpec, device: str, n_samples: int) -> DeviceParameters:
    """Draw `device` from its family under the data set's seed: the same device every time, whatever the order."""
    rng = np.random.default_rng([spec.seed, 4, DEVICES.index(device)])
    return draw_device(DEVICE_FAMILIES[DEVICE_FAMILY[device]], rng, n_samples, spec.sample_rate)


def apply_device(clean: np.ndarray, device: DeviceParameters, noise_rng: np.random.Generator) -> np.ndarray:
    """What a device records of a clean recording: colouring, gain, soft compression, self-noise."""
    recorded = apply_response(clean, device.response_db) * 10 ** (device.gain_db / 20)
    if device.drive > 0:
        recorded = np.tanh(device.drive * recorded) / device.drive
    recorded = recorded + noise_rng.standard_normal(clean.size) * 10 ** (device.noise_dbfs / 20)
    return np.clip(recorded, -1.0, 1.0 - 2**-23)


PEAK_DB = 12.0  # height of the ambience resonances at difficulty 0
PEAK_WIDTH_OCTAVES = 0.12
MINOR_TRAIN_DEVICES = ("b", "c", "s1", "s2", "s3")


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and difficulty of the synthetic set. The defaults are the embedded default run's data set."""

    seed: int = 2022
    sample_rate: int = 44100
    train_locations_per_scene: int = 5
    test_locations_per_scene: int = 8
    clips_per_segment: int = 10  # 1 s clips cut from each recording (TAU22: 10 s segments)
    train_segments_per_scene: int = 10  # device-A recordings
    minor_device_clips_per_scene: int = 8  # training clips per scene of each of B, C, S1-S3
    test_segments_per_scene: int = 8  # recorded by all nine devices, one location each
    difficulty: float = 0.2  # 0: prototypes as written; 1: every scene is the average scene
    location_spread: float = 0.6  # scale of per-location deviations from the prototype
    workers: int = 1

    def __post_init__(self) -> None:
        # Segments are dealt to a split's locations in turn: with fewer segments than locations some location
        # holds no recording, and the split has fewer locations than it says (which intervals resample).
        for split in ("train", "test"):
            segments = getattr(self, f"{split}_segments_per_scene")
            locations = getattr(self, f"{split}_locations_per_scene")
            if segments < locations:
                raise PipelineError(
                    f"data.synthetic: {split}_segments_per_scene ({segments}) is below {split}_locations_per_scene"
                    f" ({locations}): {locations - segments} location(s) per scene would hold no recording"
                )

    @classmethod
    def from_dict(cls, values: dict) -> SyntheticSpec:
        return cls(**values)


@dataclass(frozen=True)
class Segment:
    """One recording: where it was made and which (subsegment, device) clips are cut from it."""

    index: int
    scene: str
    city: str
    location: str
    segment: str
    split: str
    location_index: int
    clips: dict[str, tuple[int, ...]] = field(default_factory=dict)  # device -> subsegments


def plan_segments(spec: SyntheticSpec) -> list[Segment]:
    """Decide every segment, its location and the clips each device records from it: the training split first,
    then the test split from a stream of its own (purpose 7), numbered after every training location and
    segment, so that resizing the test split never changes a training clip."""
    streams = {"train": np.random.default_rng([spec.seed, 1]), "test": np.random.default_rng([spec.seed, 7])}
    sizes = {"train": (spec.train_locations_per_scene, spec.train_segments_per_scene),
             "test": (spec.test_locations_per_scene, spec.test_segments_per_scene)}  # fmt: skip
    segments: list[Segment] = []
    location_counter = 0
    for split, rng in streams.items():
        n_locations, n_segments = sizes[split]
        for scene in SCENES:
            locations = []
            for _ in range(n_locations):
                locations.append((CITIES[int(rng.integers(len(CITIES)))], location_counter))
                location_counter += 1
            first = len(segments)
            for k in range(n_segments):
                city, location_index = locations[k % n_locations]
                segments.append(
                    Segment(
                        index=len(segments), scene=scene, city=city, location=str(1000 + location_index),
                        segment=str(40000 + 10 * len(segments)), split=split, location_index=location_index,
                        clips={"a": tuple(range(spec.clips_per_segment))} if split == "train" else
                        {device: tuple(range(spec.clips_per_segment)) for device in DEVICES},
                    )
                )  # fmt: skip
            if split == "train":
                # Parallel recordings: the minor devices record a random subset of device A's clips.
                pool = [(s, sub) for s in range(first, len(segments)) for sub in range(spec.clips_per_segment)]
                for device in MINOR_TRAIN_DEVICES:
                    picks = rng.choice(len(pool), size=min(spec.minor_device_clips_per_scene, len(pool)),
                                       replace=False)  # fmt: skip
                    for pick in sorted(picks.tolist()):
                        s, sub = pool[pick]
                        segments[s].clips[device] = segments[s].clips.get(device, ()) + (sub,)
    return segments


class _Recording(NamedTuple):
    """One device's clips of one training segment: the unit a subset takes whole."""

    scene: str
    device: str
    clips: tuple[ClipName, ...]


def plan_subsets(spec: SyntheticSpec, segments: list[Segment] | None = None) -> dict[int, list[ClipName]]:
    """The clips of each training subset (percent in SUBSET_FRACTIONS), nested, chosen by whole recordings.

    Subsets grow from the smallest: each device adds recordings while that brings its clip count closer to the
    fraction of its fold1_train clips (at least one, so no device is missing), device A first since its
    recordings are the big ones; each pick goes to the scene with the fewest clips so far, so scenes stay as
    balanced as whole recordings allow.
    """
    segments = plan_segments(spec) if segments is None else segments
    recordings = [
        _Recording(segment.scene, device, tuple(
            ClipName(segment.scene, segment.city, segment.location, segment.segment, sub, device) for sub in subs
        ))
        for segment in segments if segment.split == "train"
        for device, subs in segment.clips.items()
    ]  # fmt: skip
    rank = np.random.default_rng([spec.seed, 6]).permutation(len(recordings))  # tie-breaks between equal scenes
    totals = Counter()
    for recording in recordings:
        totals[recording.device] += len(recording.clips)
    chosen: set[int] = set()
    per_scene, per_device, per_device_scene = Counter(), Counter(), Counter()

    def next_recording(device: str, fraction: int) -> int | None:
        # In hundredths of a clip: what is missing to fraction % of the device's clips. A recording that fits
        # is preferred; one that overshoots only if it still ends closer (100 * size < 2 * missing).
        missing = fraction * totals[device] - 100 * per_device[device]
        unused = [i for i, recording in enumerate(recordings) if recording.device == device and i not in chosen]
        sizes = {i: 100 * len(recordings[i].clips) for i in unused}
        options = [i for i in unused if sizes[i] <= missing] or [
            i for i in unused if not per_device[device] or sizes[i] < 2 * missing
        ]
        return min(
            options,
            key=lambda i: (per_scene[recordings[i].scene], per_device_scene[device, recordings[i].scene], rank[i]),
            default=None,
        )

    subsets = {}
    for fraction in SUBSET_FRACTIONS:
        for devices in (("a",), MINOR_TRAIN_DEVICES):  # the minor devices take turns, one recording each
            growing = True
            while growing:
                growing = False
                for device in devices:
                    index = next_recording(device, fraction)
                    if index is not None:
                        recording = recordings[index]
                        chosen.add(index)
                        per_scene[recording.scene] += len(recording.clips)
                        per_device[device] += len(recording.clips)
                        per_device_scene[device, recording.scene] += len(recording.clips)
                        growing = True
        clips = (clip for index in chosen for clip in recordings[index].clips)
        subsets[fraction] = sorted(clips, key=lambda clip: clip.filename)
    return subsets


def subset_facts(spec: SyntheticSpec) -> dict[int, SubsetFacts]:
    """Row counts, devices and digests of the synthetic subsets: what `subsets.verify_subset` expects of them."""
    return {
        fraction: SubsetFacts.of(clip.filename for clip in clips) for fraction, clips in plan_subsets(spec).items()
    }


def _scene_parameters(spec: SyntheticSpec, scene: str) -> dict[str, np.ndarray]:
    """The scene prototype pulled towards the mean of all scenes by `difficulty`; resonances fade instead."""
    params = {}
    for key, value in SCENE_PROTOTYPES[scene].items():
        if key == "peaks":
            params[key] = np.array(value)
            continue
        mean = np.mean([np.array(p[key]) for p in SCENE_PROTOTYPES.values()], axis=0)
        params[key] = (1 - spec.difficulty) * np.array(value) + spec.difficulty * mean
    params["peak_db"] = np.array(PEAK_DB * (1 - spec.difficulty))
    return params


def deviate(params: dict[str, np.ndarray], rng: np.random.Generator, spread: float) -> dict[str, np.ndarray]:
    """A recording location's own deviation from its parameters: every segment recorded there shares it."""
    params = dict(params)
    params["envelope"] = params["envelope"] + rng.normal(0, spread * np.array([1.0, 3.0, 2.0, 2.0]))
    params["loudness"] = params["loudness"] + rng.normal(0, 3.0 * spread)
    params["events"] = params["events"] * np.exp(rng.normal(0, 0.5 * spread, len(EVENT_KINDS)))
    params["hum"] = params["hum"] + np.array([rng.normal(0, 0.15 * spread), 0.0, 0.0])
    params["peaks"] = params["peaks"] * np.exp(rng.normal(0, 0.08 * spread, 2))
    return params


def _location_parameters(spec: SyntheticSpec, segment: Segment) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([spec.seed, 2, segment.location_index])
    return deviate(_scene_parameters(spec, segment.scene), rng, spec.location_spread)


def _envelope_db(frequencies: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    tilt, low, mid, high = params["envelope"]
    octaves = np.log2(np.maximum(frequencies, 20.0) / 1000.0)

    def bump(centre: float, width: float) -> np.ndarray:
        return np.exp(-0.5 * ((octaves - centre) / width) ** 2)

    envelope = tilt * octaves + low * bump(np.log2(0.1), 1.0) + mid * bump(0.0, 1.0) + high * bump(3.0, 0.8)
    for peak in params["peaks"]:
        envelope += params["peak_db"] * bump(np.log2(peak / 1000.0), PEAK_WIDTH_OCTAVES)
    return envelope


def _band_noise(rng: np.random.Generator, n: int, rate: int, low: float, high: float) -> np.ndarray:
    """White noise restricted to [low, high] Hz, unit RMS."""
    frequencies = np.fft.rfftfreq(n, 1 / rate)
    spectrum = np.fft.rfft(rng.standard_normal(n)) * ((frequencies >= low) & (frequencies <= high))
    noise = np.fft.irfft(spectrum, n=n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def _event(kind: str, rng: np.random.Generator, rate: int) -> np.ndarray:
    """One sound event of the given kind, unit RMS."""
    if kind == "chirp":  # bird: fast upward or downward sweep, 2-7 kHz
        n = int(rng.uniform(0.06, 0.2) * rate)
        f = np.linspace(rng.uniform(2000, 7000), rng.uniform(2000, 7000), n)
        wave = np.sin(2 * np.pi * np.cumsum(f) / rate) * np.hanning(n)
    elif kind == "beep":  # chime or door signal: 2-3 pulses of one tone
        tone = rng.uniform(500, 2500)
        pulse = int(rng.uniform(0.1, 0.3) * rate)
        t = np.arange(pulse) / rate
        single = np.sin(2 * np.pi * tone * t) * np.hanning(pulse)
        wave = np.concatenate([np.concatenate([single, np.zeros(pulse // 2)])] * int(rng.integers(2, 4)))
    elif kind == "click":  # steps, doors, cutlery: decaying broadband burst
        n = int(rng.uniform(0.01, 0.05) * rate)
        wave = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.2 * n))
    elif kind == "babble":  # voices: speech band noise at a syllable rate
        n = int(rng.uniform(0.5, 2.5) * rate)
        syllables = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 6) * np.arange(n) / rate + rng.uniform(0, 6))
        wave = _band_noise(rng, n, rate, 300, 3400) * syllables * np.hanning(n)
    elif kind == "whoosh":  # passing vehicle: low-passed noise swelling and fading
        n = int(rng.uniform(1.0, 4.0) * rate)
        wave = _band_noise(rng, n, rate, 40, rng.uniform(1500, 4000)) * np.hanning(n) ** 2
    elif kind == "squeal":  # rail or brake squeal: high tone with vibrato
        n = int(rng.uniform(0.3, 1.5) * rate)
        t = np.arange(n) / rate
        f = rng.uniform(1500, 5000) * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 8) * t))
        wave = np.sin(2 * np.pi * np.cumsum(f) / rate) * np.hanning(n)
    else:  # rumble: arriving train, low-frequency noise
        n = int(rng.uniform(2.0, 6.0) * rate)
        wave = _band_noise(rng, n, rate, 20, 250) * np.hanning(n)
    return wave / (np.sqrt(np.mean(wave**2)) + 1e-12)


class Rendering(NamedTuple):
    """A clean recording and what it holds: each event as (kind, first sample, end sample), and whether an engine
    hum runs through it."""

    wave: np.ndarray
    events: list[tuple[str, int, int]]
    hum: bool


def render(params: dict[str, np.ndarray], rng: np.random.Generator, seconds: int, rate: int) -> Rendering:
    """A clean (device-free) recording of `seconds` from scene parameters, float64 at `rate`."""
    n = seconds * rate
    t = np.arange(n) / rate
    frequencies = np.fft.rfftfreq(n, 1 / rate)

    jittered = dict(params, envelope=params["envelope"] + rng.normal(0, [0.5, 1.5, 1.0, 1.0]))
    background = apply_response(rng.standard_normal(n), _envelope_db(frequencies, jittered))
    background /= np.sqrt(np.mean(background**2))
    depth, mod_rate = params["modulation"]
    background *= 1 + depth * np.sin(2 * np.pi * mod_rate * rng.uniform(0.5, 1.5) * t + rng.uniform(0, 2 * np.pi))

    mixture = background
    probability, f0_low, f0_high = params["hum"]
    hummed = bool(rng.uniform() < probability)
    if hummed:
        f0 = rng.uniform(f0_low, f0_high) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        hum = sum(np.sin(k * phase) / k**1.2 for k in range(1, 9))
        mixture = mixture + hum / np.sqrt(np.mean(hum**2)) * 10 ** (rng.uniform(-10, 2) / 20)
    events = []
    for kind, events_per_second in zip(EVENT_KINDS, params["events"], strict=True):
        for _ in range(rng.poisson(max(events_per_second, 0.0) * seconds)):
            event = _event(kind, rng, rate)[:n]
            start = int(rng.integers(0, n - event.size + 1))
            mixture[start : start + event.size] += event * 10 ** (rng.uniform(-8, 6) / 20)
            events.append((kind, start, start + event.size))

    loudness_db = params["loudness"][0] + rng.normal(0, 2.0)
    return Rendering(mixture * 10 ** (loudness_db / 20) / np.sqrt(np.mean(mixture**2)), events, hummed)


def render_segment(spec: SyntheticSpec, segment: Segment) -> np.ndarray:
    """The clean (device-free) scene recording of a segment, float64 at `spec.sample_rate`."""
    rng = np.random.default_rng([spec.seed, 3, segment.index])
    return render(_location_parameters(spec, segment), rng, spec.clips_per_segment, spec.sample_rate).wave


def record(spec: SyntheticSpec, clean: np.ndarray, device: str, segment_index: int) -> np.ndarray:
    """What `device` records of a clean segment."""
    noise_rng = np.random.default_rng([spec.seed, 5, segment_index, DEVICES.index(device)])
    return apply_device(clean, device_parameters(spec, device, clean.size), noise_rng)


def _write_segment(spec: SyntheticSpec, segment: Segment, audio_dir: Path) -> None:
    clean = render_segment(spec, segment)
    rate = spec.sample_rate
    for device, subsegments in segment.clips.items():
        recorded = record(spec, clean, device, segment.index)
        for sub in subsegments:
            name = ClipName(segment.scene, segment.city, segment.location, segment.segment, sub, device)
            path = audio_dir / Path(name.filename).name
            with atomic_path(path) as tmp:
                soundfile.write(tmp, recorded[sub * rate : (sub + 1) * rate], rate, subtype="PCM_24", format="WAV")


def _write_table(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("\t".join(header) + "\n" + "".join("\t".join(row) + "\n" for row in rows))


def generate(spec: SyntheticSpec, out_dir: str | Path) -> Path:
    """Write the synthetic data set under `out_dir/TAU-urban-acoustic-scenes-2022-mobile-development`."""
    root = Path(out_dir) / DATASET_DIRNAME
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    segments = plan_segments(spec)
    if spec.workers > 1:
        with ProcessPoolExecutor(spec.workers) as pool:
            list(pool.map(_write_segment, [spec] * len(segments), segments, [audio_dir] * len(segments)))
    else:
        for segment in segments:
            _write_segment(spec, segment, audio_dir)

    meta, train, evaluate = [], [], []
    for segment in segments:
        for device, subsegments in segment.clips.items():
            for sub in subsegments:
                name = ClipName(segment.scene, segment.city, segment.location, segment.segment, sub, device)
                meta.append((name.filename, name.scene, name.identifier, device))
                (train if segment.split == "train" else evaluate).append((name.filename, name.scene))
    _write_table(root / "meta.csv", ("filename", "scene_label", "identifier", "source_label"), sorted(meta))
    _write_table(root / SPLIT_FILES["fold1_train"], ("filename", "scene_label"), sorted(train))
    _write_table(root / SPLIT_FILES["fold1_evaluate"], ("filename", "scene_label"), sorted(evaluate))
    _write_table(root / SPLIT_FILES["fold1_test"], ("filename",), sorted((f,) for f, _ in evaluate))
    for fraction, clips in plan_subsets(spec, segments).items():
        _write_table(root / subset_file(fraction), ("filename", "scene_label"), [(c.filename, c.scene) for c in clips])
    return root


def tree_digest(root: str | Path) -> str:
    """SHA-256 over every file's relative path and bytes, in sorted order: one number for a whole data set."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def spec_summary(spec: SyntheticSpec) -> dict:
    """The spec and the clip counts it implies, for the data set's own description."""
    segments = plan_segments(spec)
    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    for segment in segments:
        for device, subsegments in segment.clips.items():
            counts[segment.split][device] = counts[segment.split].get(device, 0) + len(subsegments)
    subsets = {}
    for fraction, clips in plan_subsets(spec, segments).items():
        devices = Counter(clip.device for clip in clips)
        subsets[f"split{fraction}"] = {device: devices[device] for device in DEVICES if devices[device]}
    return {"spec": asdict(spec), "clips": counts, "subsets": subsets}
