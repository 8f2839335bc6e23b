"""WAV decoding and resampling shared by the cache, the impulse-response sets and `predict`.

soundfile (libsndfile) decodes; torchaudio's windowed-sinc resampler converts to the pipeline rate. Decoding
errors become one-line `PipelineError`s naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

from dsflexinet.errors import PipelineError


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a WAV file to mono float32 in [-1, 1]; channels are averaged."""
    path = Path(path)
    try:
        samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        raise PipelineError(f"{path}: not a readable WAV file ({error})") from None
    if samples.shape[0] == 0:
        raise PipelineError(f"{path}: WAV file holds no samples")
    return samples.mean(axis=1), sample_rate


def resample(waves: np.ndarray | torch.Tensor, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample the last axis from `source_rate` to `target_rate` (windowed sinc, torchaudio's default)."""
    tensor = torch.as_tensor(np.asarray(waves, dtype=np.float32))
    if source_rate != target_rate:
        tensor = torchaudio.functional.resample(tensor, source_rate, target_rate)
    return tensor.numpy()


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad or truncate the last axis to `length` samples."""
    if wave.shape[-1] >= length:
        return wave[..., :length]
    padding = [(0, 0)] * (wave.ndim - 1) + [(0, length - wave.shape[-1])]
    return np.pad(wave, padding)
