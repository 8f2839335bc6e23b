"""The synthetic default data set: exact TAU22 format, TAU22-like proportions, determinism, device effects."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile

from dsflexinet.data.subsets import SUBSET_FRACTIONS, TAU22_SUBSETS
from dsflexinet.data.synth import (
    DEVICE_FAMILIES,
    DEVICE_FAMILY,
    SyntheticSpec,
    device_parameters,
    generate,
    plan_segments,
    plan_subsets,
    spec_summary,
    tree_digest,
)
from dsflexinet.data.tau22 import DEVICES, SCENES, dataset_summary, read_split
from dsflexinet.errors import PipelineError
from tests.conftest import TINY_SPEC

TINY = SyntheticSpec(**TINY_SPEC)
# SHA-256 over every file of the TINY set (paths and bytes). It changes only when the generator or the pinned
# numpy/libsndfile change the output; update it deliberately, together with data.dvc. (Last changed when S4-S6
# became new draws of S1-S3's device family, from 9510d18e...)
TINY_DIGEST = "bf2abcb5a71f03e060e6ed5232444b4d62d94c11f02de2bfb257922ce28558d0"


def test_same_seed_same_bytes(tiny_dataset: Path, tmp_path: Path) -> None:
    assert tree_digest(tiny_dataset) == TINY_DIGEST
    parallel = generate(replace(TINY, workers=2), tmp_path)
    assert tree_digest(parallel) == TINY_DIGEST


def test_other_seed_other_bytes(tmp_path: Path) -> None:
    assert tree_digest(generate(replace(TINY, seed=TINY.seed + 1), tmp_path)) != TINY_DIGEST


def test_default_set_has_tau22_proportions() -> None:
    clips = spec_summary(SyntheticSpec())["clips"]
    assert clips["train"] == {"a": 1000, "b": 80, "c": 80, "s1": 80, "s2": 80, "s3": 80}
    assert clips["test"] == {device: 800 for device in DEVICES}  # 8 locations x 10 scenes x 10 clips
    share_a = clips["train"]["a"] / sum(clips["train"].values())
    assert share_a == pytest.approx(102150 / 139620, abs=0.03)  # TAU22 fold1: device A is 73 % of training


def test_every_location_holds_a_recording() -> None:
    from dsflexinet.data.synth import plan_segments

    test = [segment for segment in plan_segments(SyntheticSpec()) if segment.split == "test"]
    assert len({segment.location for segment in test}) == 80  # the locations intervals resample
    with pytest.raises(PipelineError, match=r"test_segments_per_scene \(1\) is below test_locations_per_scene \(2\)"):
        SyntheticSpec(test_segments_per_scene=1, test_locations_per_scene=2)


def test_resizing_the_test_split_changes_no_training_clip() -> None:
    """The test split is planned from its own stream after the training split: its size leaves every training
    segment (location, name, the devices' clips, and so the audio, seeded by segment and location) as it was."""
    from dsflexinet.data.synth import plan_segments

    small, large = (plan_segments(replace(SyntheticSpec(), test_locations_per_scene=n, test_segments_per_scene=n))
                    for n in (2, 8))  # fmt: skip
    train = [segment for segment in small if segment.split == "train"]
    assert train == [segment for segment in large if segment.split == "train"] and len(train) == 100
    assert len(small) - len(train) == 20 and len(large) - len(train) == 80
    test_locations = {segment.location_index for segment in large if segment.split == "test"}
    assert min(test_locations) > max(segment.location_index for segment in train)


def test_default_subsets_are_nested_with_tau22_proportions() -> None:
    """Each device keeps its share of fold1_train (5/10/25/50 % of 1,000 A and of 80 per minor device), as in
    TAU22's subsets, where device A is 72.8-73.2 %; the clips are whole recordings and no S4-S6."""
    spec = SyntheticSpec()
    minor = ("b", "c", "s1", "s2", "s3")
    assert spec_summary(spec)["subsets"] == {
        f"split{fraction}": {"a": 10 * fraction, **{device: 4 * fraction // 5 for device in minor}}
        for fraction in SUBSET_FRACTIONS
    }
    segments = plan_segments(spec)
    train = {
        (segment.segment, device): set(subs)
        for segment in segments if segment.split == "train" for device, subs in segment.clips.items()
    }  # fmt: skip
    subsets = plan_subsets(spec, segments)
    previous: set[str] = set()
    for fraction, clips in subsets.items():
        names = {clip.filename for clip in clips}
        assert previous <= names and len(names) == len(clips) == 14 * fraction  # nested, 70 ... 700 clips
        previous = names
        device_a = sum(clip.device == "a" for clip in clips) / len(clips)
        assert device_a == pytest.approx(TAU22_SUBSETS[fraction].devices["a"] / TAU22_SUBSETS[fraction].rows, abs=0.02)
        recordings: dict[tuple[str, str], set[int]] = {}
        for clip in clips:
            recordings.setdefault((clip.segment, clip.device), set()).add(clip.subsegment)
        assert all(subs == train[recording] for recording, subs in recordings.items())  # whole recordings only
        per_scene = [sum(clip.scene == scene for clip in clips) for scene in SCENES]
        assert min(per_scene) > 0  # every scene, at 5 % from the minor devices where device A has none
        if fraction >= 10:  # device A recordings of 10 clips: from 10 % on they reach every scene
            # within the largest minor-device recording (the scenes' last picks are whole recordings)
            largest = max(len(subs) for (_, device), subs in train.items() if device != "a")
            assert max(per_scene) - min(per_scene) <= largest, (fraction, per_scene, largest)
    assert {clip.device for clip in subsets[50]} == {"a", *minor}  # and so in every smaller subset: no S4-S6

def test_layout_and_counts(tiny_dataset: Path) -> None:
    summary = dataset_summary(tiny_dataset)
    assert summary["splits"]["fold1_train"]["devices"] == {
        "a": 20, "b": 10, "c": 10, "s1": 10, "s2": 10, "s3": 10, "s4": 0, "s5": 0, "s6": 0,
    }  # fmt: skip
    assert summary["splits"]["fold1_evaluate"]["devices"] == {device: 20 for device in DEVICES}
    assert summary["meta_clips"] == 70 + 180


def test_wav_format_is_tau22(tiny_dataset: Path) -> None:
    for path in sorted((tiny_dataset / "audio").glob("*.wav"))[:5]:
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (44100, 1, "PCM_24", 44100)


def test_test_locations_are_unseen(tiny_dataset: Path) -> None:
    train = read_split(tiny_dataset, "evaluation_setup/fold1_train.csv")
    test = read_split(tiny_dataset, "evaluation_setup/fold1_evaluate.csv")
    assert not set(train["identifier"]) & set(test["identifier"])
    assert sorted(train["scene_label"].unique()) == sorted(test["scene_label"].unique())


SEEN_SIMULATED, UNSEEN_SIMULATED = ("s1", "s2", "s3"), ("s4", "s5", "s6")
BANDS_HZ = 125 * 2.0 ** np.arange(0, 6.5, 0.5)  # half-octave bands, 125 Hz to 8 kHz


def _band_levels_db(wave: np.ndarray) -> np.ndarray:
    power = np.abs(np.fft.rfft(wave)) ** 2
    frequencies = np.fft.rfftfreq(wave.size, 1 / 44100)
    return np.array([
        10 * np.log10(power[(frequencies >= low) & (frequencies < low * 2**0.5)].mean() + 1e-20) for low in BANDS_HZ
    ])  # fmt: skip


def _device_profile(root: Path, table, device: str) -> np.ndarray:
    """Median band-level difference between `device` and A over parallel recordings of the same seconds."""
    differences = []
    for name in table[table["device"] == device]["filename"]:
        twin = name.removesuffix(f"-{device}.wav") + "-a.wav"
        recorded, reference = soundfile.read(root / name)[0], soundfile.read(root / twin)[0]
        differences.append(_band_levels_db(recorded) - _band_levels_db(reference))
    return np.median(differences, axis=0)


def test_each_device_has_its_own_response(tiny_dataset: Path) -> None:
    test = read_split(tiny_dataset, "evaluation_setup/fold1_evaluate.csv")
    profiles = {device: _device_profile(tiny_dataset, test, device) for device in DEVICES[1:]}
    for device, profile in profiles.items():
        assert np.ptp(profile) > 4.0, device  # a coloured response, not just a gain
    for first, second in itertools.combinations(profiles, 2):
        assert np.abs(profiles[first] - profiles[second]).mean() > 0.5, (first, second)
    # The unseen devices depart from A about as far as the seen simulated ones do: one family, not a harsher one.
    seen = [np.ptp(profiles[device]) for device in SEEN_SIMULATED]
    assert all(min(seen) <= np.ptp(profiles[device]) <= max(seen) for device in UNSEEN_SIMULATED)


def test_unseen_devices_are_new_draws_of_the_seen_simulated_family() -> None:
    assert {DEVICE_FAMILY[device] for device in SEEN_SIMULATED + UNSEEN_SIMULATED} == {"simulated"}
    family = DEVICE_FAMILIES["simulated"]
    drawn = {device: device_parameters(SyntheticSpec(), device, 44100) for device in SEEN_SIMULATED + UNSEEN_SIMULATED}
    for device, parameters in drawn.items():
        assert family.gain_db[0] <= parameters.gain_db <= family.gain_db[1], device
        assert family.noise_dbfs[0] <= parameters.noise_dbfs <= family.noise_dbfs[1], device
        assert family.drive[0] <= parameters.drive <= family.drive[1], device
    for unseen in UNSEEN_SIMULATED:  # new parameters: no unseen device repeats a seen one
        for seen in SEEN_SIMULATED:
            assert np.abs(drawn[unseen].response_db - drawn[seen].response_db).mean() > 1.0, (unseen, seen)
    # The same device whatever else is drawn first, and another seed draws another device.
    assert np.array_equal(device_parameters(SyntheticSpec(), "s4", 44100).response_db, drawn["s4"].response_db)
    assert device_parameters(SyntheticSpec(seed=1), "s4", 44100).gain_db != drawn["s4"].gain_db
