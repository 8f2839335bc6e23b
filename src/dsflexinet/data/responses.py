"""Random smooth frequency responses: the colourings of the synthetic data set's recording devices.

A response is a log-magnitude curve over frequency: a few Gaussian bumps on a log-frequency axis (microphone
resonances and dips) plus second-order-like low and high roll-offs. The synthetic impulse-response set for DIR
comes from another model (`dirs.microphone_impulse`), as MicIRP is independent of TAU22's devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ResponseShape:
    """How far a random response departs from flat."""

    bumps: int  # resonances and dips
    bump_db: float  # standard deviation of each bump's height
    lowcut_hz: tuple[float, float]  # range of the low roll-off corner
    highcut_hz: tuple[float, float]  # range of the high roll-off corner


def random_response_db(frequencies: np.ndarray, shape: ResponseShape, rng: np.random.Generator) -> np.ndarray:
    """A random log-magnitude response (dB) sampled at `frequencies` (Hz)."""
    octaves = np.log2(np.maximum(frequencies, 1.0) / 1000.0)
    response = np.zeros_like(octaves)
    for _ in range(shape.bumps):
        centre = rng.uniform(np.log2(60 / 1000), np.log2(14000 / 1000))
        width = rng.uniform(0.3, 1.5)  # octaves
        response += rng.normal(0.0, shape.bump_db) * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
    lowcut = rng.uniform(*shape.lowcut_hz)
    highcut = rng.uniform(*shape.highcut_hz)
    ratio_low = np.maximum(frequencies, 1e-3) / lowcut
    ratio_high = frequencies / highcut
    response -= 10 * np.log10(1 + ratio_low**-4)  # 12 dB/octave below the low corner
    response -= 10 * np.log10(1 + ratio_high**4)  # 12 dB/octave above the high corner
    return response


def apply_response(signal: np.ndarray, response_db: np.ndarray) -> np.ndarray:
    """Filter the last axis by a zero-phase magnitude response given on `np.fft.rfftfreq(n)` bins."""
    n = signal.shape[-1]
    spectrum = np.fft.rfft(signal, n=n, axis=-1)
    return np.fft.irfft(spectrum * 10 ** (response_db / 20), n=n, axis=-1)
