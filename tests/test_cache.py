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
from dsflexinet.data.dirs import load_impulse_responses, synthesise_impulse_responses
from dsflexinet.data.wav import promised_frames, read_wav, resample
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


# --- what libsndfile lets through: NaN or infinite samples, a file shorter than its header says ---------------


def _clip_copy(tiny_dataset: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the tiny data set and one of its training clips to spoil."""
    root = tmp_path / "copy"
    shutil.copytree(tiny_dataset, root)
    return root, root / (root / TRAIN).read_text().splitlines()[5].split("\t")[0]


def _write_non_finite(path: Path, index: int, value: float) -> None:
    wave, rate = read_wav(path)
    wave[index] = value
    soundfile.write(path, wave, rate, subtype="FLOAT")  # a float WAV can hold NaN and Inf


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(value: float, tiny_dataset: Path, tmp_path: Path) -> None:
    _, victim = _clip_copy(tiny_dataset, tmp_path)
    _write_non_finite(victim, 123, value)
    with pytest.raises(PipelineError) as failure:
        read_wav(victim)
    assert str(failure.value) == f"{victim}: 1 of 44100 samples are NaN or infinite (the first at sample 123)"


def test_cache_refuses_non_finite_audio_and_keeps_the_cache_it_had(tiny_dataset: Path, tmp_path: Path) -> None:
    root, victim = _clip_copy(tiny_dataset, tmp_path)
    before = build_cache(root, TRAIN, tmp_path / "train.npy").waves.copy()
    _write_non_finite(victim, 0, np.nan)
    with pytest.raises(PipelineError, match=rf"^{victim}: 1 of 44100 samples are NaN or infinite"):
        build_cache(root, TRAIN, tmp_path / "train.npy")
    np.testing.assert_array_equal(WaveformCache.open(tmp_path / "train.npy").waves, before)


def test_impulse_response_set_refuses_non_finite_audio(tmp_path: Path) -> None:
    synthesise_impulse_responses(tmp_path / "dirs", 3, seed=1)
    victim = tmp_path / "dirs" / "synthetic_mic_01.wav"
    _write_non_finite(victim, 7, np.inf)
    with pytest.raises(PipelineError, match=rf"^{victim}: 1 of 16456 samples are NaN or infinite"):
        load_impulse_responses(tmp_path / "dirs", 32000)


def test_synthetic_impulse_responses_are_causal_microphones_independent_of_the_devices(tmp_path: Path) -> None:
    paths = synthesise_impulse_responses(tmp_path / "dirs", 4, seed=1)
    responses = load_impulse_responses(tmp_path / "dirs", 44100)
    assert responses.responses.shape == (4, 16456) and [p.name for p in paths][-1] == "synthetic_mic_03.wav"
    for response in responses.responses:
        assert np.abs(response).max() == pytest.approx(1.0, abs=1e-6)
        assert not response[:70].any()  # silent until the pre-delay ends: causal, as MicIRP's files are
        spectrum_db = 20 * np.log10(np.abs(np.fft.rfft(response)) + 1e-9)
        frequencies = np.fft.rfftfreq(response.size, 1 / 44100)
        mid_band = spectrum_db[(frequencies > 1000) & (frequencies < 3000)].mean()
        assert spectrum_db[frequencies < 20].mean() < mid_band - 10  # the mounting high-pass
    assert np.abs(responses.responses[0] - responses.responses[1]).max() > 0.1
    # Not drawn from the devices' colourings: the IR generator never imports them.
    source = (Path(__file__).parents[1] / "src/dsflexinet/data/dirs.py").read_text()
    assert "data.responses" not in source and "data.synth" not in source


def test_truncated_wav_is_refused_or_read_with_a_warning(tiny_dataset: Path, tmp_path: Path, caplog) -> None:
    root, victim = _clip_copy(tiny_dataset, tmp_path)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 3 * 100])  # 100 samples of 24 bits short: within the length tolerance
    message = f"{victim}: truncated WAV file: its header promises 44100 samples, it holds 44000"
    with pytest.raises(PipelineError) as failure:
        read_wav(victim)
    assert str(failure.value) == message
    with caplog.at_level("WARNING", logger="dsflexinet"):
        wave, _ = read_wav(victim, allow_truncated=True)
    assert wave.shape == (44000,) and f"{message} (100 missing)" in caplog.text
    with pytest.raises(PipelineError) as failure:
        build_cache(root, TRAIN, tmp_path / "train.npy")
    assert str(failure.value) == message
    assert not (tmp_path / "train.npy").exists()


def test_missing_wav_is_named_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as failure:
        read_wav(tmp_path / "absent.wav")
    assert str(failure.value) == f"{tmp_path / 'absent.wav'}: file not found"


def test_promised_frames_of_real_recordings(tau_clips_dir: Path, micirp_dir: Path) -> None:
    """The header parser agrees with libsndfile on every real file at hand (WAVE_FORMAT_PCM and EXTENSIBLE)."""
    paths = sorted(tau_clips_dir.glob("*.wav")) + sorted(micirp_dir.glob("*.wav"))
    assert len(paths) > 66
    assert [promised_frames(path) for path in paths] == [soundfile.info(path).frames for path in paths]
