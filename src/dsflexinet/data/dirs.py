"""Device impulse-response (DIR) sets: the real MicIRP collection, or a synthetic stand-in for offline runs.

A set is a directory of mono WAV files. DIR/ADIR augmentation loads it once, resampled to the pipeline rate,
as one zero-padded array, so a batch convolution needs no per-clip Python work.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from scipy import signal

from dsflexinet.atomic import atomic_path, write_text
from dsflexinet.data.download import fetch, join_url, read_manifest
from dsflexinet.data.wav import read_wav, resample
from dsflexinet.errors import PipelineError

MICIRP_MANIFEST = "micirp.sha256"
# A fixed commit of the public copy, so the files behind the checksums never change.
MICIRP_BASE_URL = (
    "https://raw.githubusercontent.com/fschmid56/cpjku_dcase23/48d405f8f185e47a5aeb5d8dea45c051f33320aa/datasets/dirs"
)

# Synthetic responses mimic MicIRP's format: 24-bit mono, 44.1 kHz, about 0.37 s, peak normalised to 1 a few
# samples after the start. They come from a small physical microphone model (biquad sections and housing
# reflections, below), not from the random spectral curves the synthetic data set's devices are drawn from: DIR
# must not cover the test devices by construction, as MicIRP's vintage microphones do not cover TAU22's phones.
SYNTHETIC_IR_RATE = 44100
SYNTHETIC_IR_SAMPLES = 16456
SYNTHETIC_IR_PREDELAY = 70


@dataclass
class ImpulseResponses:
    """A DIR set at one sample rate: `responses[i, :lengths[i]]` is the response of `names[i]`."""

    names: list[str]
    responses: np.ndarray  # float32 [count, max_length], zero-padded
    lengths: np.ndarray  # int64 [count]
    sample_rate: int


def load_impulse_responses(directory: str | Path, sample_rate: int) -> ImpulseResponses:
    """Load every WAV in `directory` (sorted by name), resampled to `sample_rate`."""
    directory = Path(directory)
    paths = sorted(directory.glob("*.wav"))
    if not paths:
        raise PipelineError(f"{directory}: no impulse responses (*.wav) found")
    waves = []
    for path in paths:
        wave, rate = read_wav(path)
        waves.append(resample(wave, rate, sample_rate))
    lengths = np.array([len(wave) for wave in waves], dtype=np.int64)
    responses = np.zeros((len(waves), int(lengths.max())), dtype=np.float32)
    for row, wave in enumerate(waves):
        responses[row, : len(wave)] = wave
    return ImpulseResponses([path.stem for path in paths], responses, lengths, sample_rate)


def _biquad(kind: str, frequency: float, q: float, gain_db: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """One second-order section (the Audio EQ Cookbook's high-pass, low-pass and peaking filters)."""
    w0 = 2 * np.pi * frequency / rate
    alpha = np.sin(w0) / (2 * q)
    cos = np.cos(w0)
    if kind == "highpass":
        b = np.array([(1 + cos) / 2, -(1 + cos), (1 + cos) / 2])
        a = np.array([1 + alpha, -2 * cos, 1 - alpha])
    elif kind == "lowpass":
        b = np.array([(1 - cos) / 2, 1 - cos, (1 - cos) / 2])
        a = np.array([1 + alpha, -2 * cos, 1 - alpha])
    else:  # peaking
        amplitude = 10 ** (gain_db / 40)
        b = np.array([1 + alpha * amplitude, -2 * cos, 1 - alpha * amplitude])
        a = np.array([1 + alpha / amplitude, -2 * cos, 1 - alpha / amplitude])
    return b / a[0], a / a[0]


def microphone_impulse(rng: np.random.Generator, rate: int, samples: int) -> np.ndarray:
    """A microphone's impulse response: mounting high-pass, capsule cavity and diaphragm resonances, the
    diaphragm's roll-off, then one to three reflections from the housing (comb filtering), as a causal filter."""
    sections = (
        ("highpass", rng.uniform(40, 250), rng.uniform(0.5, 0.9), 0.0),
        ("peaking", rng.uniform(1500, 6000), rng.uniform(0.7, 3.0), rng.uniform(-6, 8)),
        ("peaking", rng.uniform(6000, 14000), rng.uniform(1.0, 4.0), rng.uniform(3, 12)),
        ("lowpass", rng.uniform(8000, 16000), rng.uniform(0.5, 1.2), 0.0),
    )
    response = np.zeros(samples)
    response[0] = 1.0
    for kind, frequency, q, gain_db in sections:
        response = signal.lfilter(*_biquad(kind, frequency, q, gain_db, rate), response)
    direct = response.copy()
    for _ in range(int(rng.integers(1, 4))):
        delay = int(rng.uniform(0.1e-3, 1.0e-3) * rate)
        response[delay:] += 10 ** (rng.uniform(-25, -10) / 20) * rng.choice((-1, 1)) * direct[: samples - delay]
    return response


def synthesise_impulse_responses(directory: str | Path, count: int, seed: int) -> list[Path]:
    """Write `count` deterministic synthetic microphone responses in MicIRP's format."""
    directory = Path(directory)
    rng = np.random.default_rng([seed, 0xD1])
    written = []
    for index in range(count):
        body = microphone_impulse(rng, SYNTHETIC_IR_RATE, SYNTHETIC_IR_SAMPLES - SYNTHETIC_IR_PREDELAY)
        response = np.concatenate([np.zeros(SYNTHETIC_IR_PREDELAY), body])
        response /= np.abs(response).max()
        path = directory / f"synthetic_mic_{index:02d}.wav"
        with atomic_path(path) as tmp:
            soundfile.write(tmp, response, SYNTHETIC_IR_RATE, subtype="PCM_24", format="WAV")
        written.append(path)
    return written


def fetch_micirp(directory: str | Path, base_url: str | None = None, downloads: str | Path | None = None) -> None:
    """Download the 66 MicIRP responses, each checked against its SHA-256, into `directory`.

    Files are fetched into `downloads` first (kept across failed runs, so a retry resumes) and then copied.
    """
    directory = Path(directory)
    staging = Path(downloads) if downloads else directory
    manifest = read_manifest(MICIRP_MANIFEST)
    for filename, checksum in manifest.items():
        fetch(join_url(base_url or MICIRP_BASE_URL, filename), staging / filename, checksum, algorithm="sha256")
    if staging != directory:
        directory.mkdir(parents=True, exist_ok=True)
        for filename in manifest:
            with atomic_path(directory / filename) as tmp:
                shutil.copyfile(staging / filename, tmp)
    write_text(directory / "SHA256SUMS", "".join(f"{c}  {f}\n" for f, c in manifest.items()))
