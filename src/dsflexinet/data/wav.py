"""WAV decoding and resampling shared by the cache, the impulse-response sets and `predict`.

soundfile (libsndfile) decodes; torchaudio's windowed-sinc resampler converts to the pipeline rate. Decoding
errors become one-line `PipelineError`s naming the file. Two faults libsndfile lets through are caught here: NaN
or Inf samples (a float WAV can hold them; one would turn every statistic and loss it touches into NaN) and a
truncated file (libsndfile quietly returns the frames that are there, whatever the header promises).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

from dsflexinet.errors import PipelineError

log = logging.getLogger("dsflexinet")

_SIZE_PLACEHOLDERS = (0, 0xFFFFFFFF)  # data sizes that streaming writers leave in the header: unknown length


def promised_frames(path: str | Path) -> int | None:
    """The frame count the RIFF/WAVE header declares for its data chunk; None where it declares none."""
    block_align = None
    with Path(path).open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        while len(chunk := handle.read(8)) == 8:
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"data":
                return size // block_align if block_align and size not in _SIZE_PLACEHOLDERS else None
            body = handle.read(size + (size & 1))  # chunks are padded to an even size
            if name == b"fmt " and len(body) >= 14:
                block_align = int.from_bytes(body[12:14], "little")
    return None


def read_wav(path: str | Path, allow_truncated: bool = False) -> tuple[np.ndarray, int]:
    """Decode a WAV file to mono float32 (channels averaged); only finite samples pass.

    A file shorter than its header promises is refused, or with `allow_truncated` read as far as it goes with a
    warning naming the file and the missing samples.
    """
    path = Path(path)
    if not path.is_file():  # libsndfile reports a missing file as "System error"
        raise PipelineError(f"{path}: {'is a directory, not a WAV file' if path.is_dir() else 'file not found'}")
    try:
        samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        raise PipelineError(f"{path}: not a readable WAV file ({error})") from None
    if samples.shape[0] == 0:
        raise PipelineError(f"{path}: WAV file holds no samples")
    finite = np.isfinite(samples).all(axis=1)
    if not finite.all():
        bad = int((~finite).sum())
        raise PipelineError(
            f"{path}: {bad} of {len(finite)} samples are NaN or infinite (the first at sample {int(np.argmin(finite))})"
        )
    promised = promised_frames(path)
    if promised is not None and promised > samples.shape[0]:
        missing = promised - samples.shape[0]
        message = f"{path}: truncated WAV file: its header promises {promised} samples, it holds {samples.shape[0]}"
        if not allow_truncated:
            raise PipelineError(message)
        log.warning("%s (%d missing); using what it holds", message, missing)
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
