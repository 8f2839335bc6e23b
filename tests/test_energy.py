"""Clip energy E(x), the energy statistics behind ADIR's threshold and the `energy` command (paper Fig. 2)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from dsflexinet.audio.energy import cache_energies, clip_energy, energy_statistics, read_energy_threshold
from dsflexinet.cli import main
from dsflexinet.data.cache import WaveformCache, build_cache
from dsflexinet.errors import PipelineError


def test_energy_of_a_sine_is_exact() -> None:
    t = torch.arange(32000, dtype=torch.float64) / 32000
    for amplitude in (0.05, 0.5, 1.0):
        sine = (amplitude * torch.sin(2 * torch.pi * 1000 * t)).float()  # whole periods in 1 s
        energy = clip_energy(sine.unsqueeze(0))
        assert energy.dtype == torch.float64 and energy.shape == (1,)
        assert energy.item() == pytest.approx(amplitude**2 * 16000, rel=1e-6)


def test_energy_accumulates_in_float64() -> None:
    value = np.float32(0.1)
    waves = np.full((40, 32000), value, dtype=np.float32)  # 40 rows: more than one chunk
    # Squared and summed in float64: 32000 * float32(0.1)^2 to 1e-12; squaring in float32 is 4e-8 off.
    expected = 32000 * float(value) ** 2
    energies = clip_energy(waves)
    assert torch.all(energies == energies[0])
    assert energies[0].item() == pytest.approx(expected, rel=1e-12)


def test_cache_energies_streams_in_chunks() -> None:
    waves = np.random.default_rng(0).standard_normal((23, 500)).astype(np.float32)
    np.testing.assert_allclose(cache_energies(waves, chunk_clips=4), (waves.astype(np.float64) ** 2).sum(1), rtol=1e-12)


def test_statistics_of_known_energies() -> None:
    energies = np.array([100.0, 200.0, 300.0, 400.0, 1000.0, 0.0])
    clips = pd.DataFrame({"device": ["a", "a", "b", "b", "a", "c"],
                          "scene_label": ["park", "bus", "park", "bus", "park", "bus"]})  # fmt: skip
    stats = energy_statistics(energies, clips)
    assert stats["clips"] == 6 and stats["threshold"] == pytest.approx(2000 / 6)
    assert stats["threshold_source"] == "mean energy of these clips"
    assert stats["clips_above_threshold"] == 2 and stats["fraction_above_threshold"] == pytest.approx(2 / 6)
    energy = stats["energy"]
    assert (energy["min"], energy["max"], energy["median"], energy["silent_clips"]) == (0.0, 1000.0, 250.0, 1)
    assert energy["std"] == pytest.approx(np.std(energies)) and energy["p25"] == pytest.approx(125.0)
    assert stats["per_device"]["a"] == {"count": 3, "mean": pytest.approx(1300 / 3), "median": 200.0}
    assert stats["per_scene"]["bus"] == {"count": 3, "mean": pytest.approx(200.0), "median": 200.0}
    given = energy_statistics(energies, clips, 323.0)
    assert (given["threshold"], given["threshold_source"], given["clips_above_threshold"]) == (323.0, "given", 2)


def test_threshold_from_analysis(tmp_path: Path) -> None:
    analysis = tmp_path / "energy.json"
    analysis.write_text(json.dumps({"threshold": 412.25}))
    assert read_energy_threshold(analysis) == 412.25 and read_energy_threshold(str(analysis)) == 412.25
    with pytest.raises(PipelineError, match="missing.json: energy analysis not found"):
        read_energy_threshold(tmp_path / "missing.json")
    analysis.write_text("{}")
    with pytest.raises(PipelineError, match="no numeric 'threshold'"):
        read_energy_threshold(analysis)
    analysis.write_text(json.dumps({"threshold": -1.0}))
    with pytest.raises(PipelineError, match="energy.json: ADIR energy threshold -1.0 is not a finite non-negative"):
        read_energy_threshold(analysis)


@pytest.fixture(scope="module")
def train_cache(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("energy-cache") / "train.npy"
    build_cache(tiny_dataset, "evaluation_setup/fold1_train.csv", out)
    return out


def test_energy_command_writes_statistics_and_figure(train_cache: Path, tmp_path: Path) -> None:
    cache = WaveformCache.open(train_cache)
    energies = (np.asarray(cache.waves, dtype=np.float64) ** 2).sum(axis=1)
    out_json, out_png = tmp_path / "stats" / "energy.json", tmp_path / "figures" / "energy.png"
    assert main(["energy", "--cache", str(train_cache),
                 "--out-json", str(out_json), "--out-png", str(out_png)]) == 0  # fmt: skip
    stats = json.loads(out_json.read_text())
    assert stats["clips"] == stats["energy"]["count"] == len(cache) > 0
    assert stats["per_device"].keys() == set(cache.clips["device"])
    for device, count in cache.clips["device"].value_counts().items():
        assert stats["per_device"][device]["count"] == count
    assert sum(group["count"] for group in stats["per_scene"].values()) == len(cache)
    assert stats["threshold"] == pytest.approx(energies.mean(), rel=1e-9)
    assert stats["clips_above_threshold"] == int((energies > energies.mean()).sum())
    assert stats["energy"]["median"] == pytest.approx(np.median(energies), rel=1e-9)
    image = matplotlib.image.imread(out_png)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.shape[0] > 300 and image.shape[1] > 600
    assert not list(out_png.parent.glob(".*tmp*"))  # written atomically

    assert main(["energy", "--cache", str(train_cache), "--threshold", "323",
                 "--out-json", str(out_json), "--out-png", str(out_png)]) == 0  # fmt: skip
    fixed = json.loads(out_json.read_text())
    assert (fixed["threshold"], fixed["threshold_source"]) == (323.0, "given")
    assert fixed["clips_above_threshold"] == int((energies > 323).sum())


def test_energy_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    outputs = ["--out-json", str(tmp_path / "e.json"), "--out-png", str(tmp_path / "e.png")]
    assert main(["energy", "--cache", str(tmp_path / "none.npy"), *outputs]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "none.npy" in error and len(error.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["energy", "--cache", str(tmp_path / "none.npy"), "--threshold", "high", *outputs])
    assert exit_info.value.code == 2 and "expected a number" in capsys.readouterr().err
