"""WAV decoding, resampling to 32 kHz and the per-split waveform caches (including resume)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from dsflexinet.data import cache as cache_module
from dsflexinet.data.cache import WaveformCache, build_cache
from dsflexinet.data.wav import read_wav, resample
from dsflexinet.errors import PipelineError

TRAIN = "evaluation_setup/fold1_train.csv"


def test_real_clips_resample_to_32k(tau_clips_dir: Path) -> None:
    for name, seconds in (("airport-lisbon-1000-40000-0-a.wav", 1), ("metro_station-paris-10s.wav", 10)):
        info = soundfile.info(tau_clips_dir / name)
        assert (info.samplerate, info.subtype) == (44100, "PCM_24")
        wave, rate = read_wav(tau_clips_dir / name)
        resampled = resample(wave, rate, 32000)
        assert resampled.shape == (32000 * seconds,) and resampled.dtype == np.float32
        # Scene audio has little energy above 16 kHz: resampling keeps its RMS within 2 %.
        assert np.sqrt(np.mean(resampled**2)) == pytest.approx(np.sqrt(np.mean(wave**2)), rel=0.02)


def test_resampling_keeps_frequency() -> None:
    t = np.arange(44100) / 44100
    resampled = resample(0.5 * np.sin(2 * np.pi * 1000 * t), 44100, 32000)
    spectrum = np.abs(np.fft.rfft(resampled))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins for a 1 s signal
    assert np.max(np.abs(resampled[1000:-1000])) == pytest.approx(0.5, abs=0.01)


def test_stereo_is_mixed_down(tmp_path: Path) -> None:
    left = np.linspace(-0.5, 0.5, 4410)
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, 0.5 * left], axis=1), 44100, subtype="PCM_24")
    wave, rate = read_wav(tmp_path / "stereo.wav")
    assert rate == 44100 and wave.shape == (4410,)
    np.testing.assert_allclose(wave, 0.75 * left, atol=1e-6)


def test_corrupt_wav_names_file(tmp_path: Path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(PipelineError, match=r"broken\.wav: not a readable WAV file"):
        read_wav(tmp_path / "broken.wav")


def test_cache_matches_direct_decoding(tiny_dataset: Path, tmp_path: Path) -> None:
    cache = build_cache(tiny_dataset, TRAIN, tmp_path / "train.npy", expected_rate=44100, workers=2)
    assert cache.waves.shape == (70, 32000) and cache.waves.dtype == np.float32
    assert isinstance(WaveformCache.open(tmp_path / "train.npy").waves, np.memmap)
    assert list(cache.clips["device"].value_counts().sort_index()) == [20, 10, 10, 10, 10, 10]
    row = 37
    wave, rate = read_wav(tiny_dataset / cache.clips["filename"][row])
    np.testing.assert_array_equal(cache.waves[row], resample(wave, rate, 32000))
    assert not (tmp_path / "train.npy.partial").exists() and not (tmp_path / "train.npy.progress").exists()


def test_interrupted_cache_build_resumes(tiny_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache_module, "CHUNK_CLIPS", 16)
    decode = cache_module._decode
    calls: list[Path] = []

    def failing_decode(path: Path, *args):
        calls.append(path)
        if len(calls) == 40:
            raise KeyboardInterrupt  # the user pressed Ctrl-C in the third chunk
        return decode(path, *args)

    monkeypatch.setattr(cache_module, "_decode", failing_decode)
    with pytest.raises(KeyboardInterrupt):
        build_cache(tiny_dataset, TRAIN, tmp_path / "train.npy")
    assert not (tmp_path / "train.npy").exists()
    assert json.loads((tmp_path / "train.npy.progress").read_text())["done"] == 32

    calls.clear()
    monkeypatch.setattr(cache_module, "_decode", lambda path, *args: (calls.append(path), decode(path, *args))[1])
    resumed = build_cache(tiny_dataset, TRAIN, tmp_path / "train.npy")
    assert len(calls) == 70 - 32  # only the missing rows were decoded
    fresh = build_cache(tiny_dataset, TRAIN, tmp_path / "fresh.npy")
    np.testing.assert_array_equal(resumed.waves, fresh.waves)


def test_wrong_sample_rate_is_reported(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"\.wav: sample rate 44100 Hz, expected 48000 Hz"):
        build_cache(tiny_dataset, TRAIN, tmp_path / "train.npy", expected_rate=48000)


def test_short_clip_is_reported(tiny_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tiny_dataset, root)
    victim = root / (root / TRAIN).read_text().splitlines()[5].split("\t")[0]
    soundfile.write(victim, np.zeros(22050), 44100, subtype="PCM_24")
    with pytest.raises(PipelineError, match=rf"{victim.name}: 0\.500 s long, expected 1\.000 s"):
        build_cache(root, TRAIN, tmp_path / "train.npy")


def test_missing_cache_is_reported(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"train\.npy: waveform cache file not found"):
        WaveformCache.open(tmp_path / "train.npy")
