"""WAV decoding and resampling shared by the cache, the impulse-response sets and `predict`.

soundfile (libsndfile) decodes; torchaudio's windowed-sinc resampler converts to the pipeline rate. Decoding
errors become one-line `PipelineError`s naming the file. Two faults libsndfile lets through are caught here: NaN
or Inf samples (a float WAV can hold them; one would turn every statistic and loss it touches into NaN) and a
truncated file (libsndfile quietly returns the frames that are there, whatever the header promises). A sample
rate outside `SAMPLE_RATES` is refused before anything is decoded.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

from dsflexinet.errors import PipelineError

log = logging.getLogger("dsflexinet")

_SIZE_PLACEHOLDERS = (0, 0xFFFFFFFF)  # data sizes that streaming writers leave in the header: unknown length
# Rates a recording can plausibly have: 8 kHz (telephone speech) to 384 kHz (the highest rate common audio
# interfaces record). Anything outside is a damaged or hostile header, not audio to classify.
SAMPLE_RATES = (8_000, 384_000)


def promised_frames(path: str | Path) -> int | None:
    """The frame count the RIFF/WAVE header declares for its data chunk; None where it declares none. Chunks
    other than `fmt ` are skipped by seeking, so a huge padding chunk costs nothing."""
    block_align = None
    with Path(path).open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        while len(chunk := handle.read(8)) == 8:
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"data":
                return size // block_align if block_align and size not in _SIZE_PLACEHOLDERS else None
            padded = size + (size & 1)  # chunks are padded to an even size
            if name == b"fmt " and size >= 14:
                block_align = int.from_bytes(handle.read(padded)[12:14], "little")
            else:
                handle.seek(padded, 1)
    return None


def _open(path: Path) -> soundfile.SoundFile:
    """The file opened for reading, or one line saying why it cannot be: missing, a broken or looping link, not
    a WAV file, or a sample rate no recording has."""
    if not path.is_file():  # libsndfile reports a missing file as "System error"
        if path.is_symlink():
            raise PipelineError(f"{path}: broken link (to {os.readlink(path)})")
        raise PipelineError(f"{path}: {'is a directory, not a WAV file' if path.is_dir() else 'file not found'}")
    try:
        sound = soundfile.SoundFile(path)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        raise PipelineError(f"{path}: not a readable WAV file ({error})") from None
    if not SAMPLE_RATES[0] <= sound.samplerate <= SAMPLE_RATES[1]:
        sound.close()
        raise PipelineError(f"{path}: sample rate {sound.samplerate} Hz is not a plausible recording's "
                            f"({SAMPLE_RATES[0]:,} to {SAMPLE_RATES[1]:,} Hz)")  # fmt: skip
    if sound.frames == 0:
        sound.close()
        raise PipelineError(f"{path}: WAV file holds no samples")
    return sound


def _check_length(path: Path, frames: int, allow_truncated: bool) -> None:
    """Refuse (or with `allow_truncated` warn about) a file shorter than its header promises."""
    promised = promised_frames(path)
    if promised is not None and promised > frames:
        message = f"{path}: truncated WAV file: its header promises {promised} samples, it holds {frames}"
        if not allow_truncated:
            raise PipelineError(message)
        log.warning("%s (%d missing); using what it holds", message, promised - frames)


def _mono(path: Path, samples: np.ndarray, offset: int = 0) -> np.ndarray:
    """Channels averaged; only finite samples pass (`offset`: where `samples` starts in the file)."""
    finite = np.isfinite(samples).all(axis=1)
    if not finite.all():
        bad = int((~finite).sum())
        window = f" from sample {offset}" if offset else ""
        raise PipelineError(f"{path}: {bad} of {len(finite)} samples{window} are NaN or infinite (the first at "
                            f"sample {offset + int(np.argmin(finite))})")  # fmt: skip
    return samples.mean(axis=1)


def read_wav(path: str | Path, allow_truncated: bool = False) -> tuple[np.ndarray, int]:
    """Decode a WAV file to mono float32 (channels averaged); only finite samples pass.

    A file shorter than its header promises is refused, or with `allow_truncated` read as far as it goes with a
    warning naming the file and the missing samples.
    """
    path = Path(path)
    with _open(path) as sound:
        samples, sample_rate = sound.read(dtype="float32", always_2d=True), sound.samplerate
    _check_length(path, samples.shape[0], allow_truncated)
    return _mono(path, samples), sample_rate


def read_windows(path: str | Path, sample_rate: int, length: int, batch: int) -> Iterator[np.ndarray]:
    """A recording as whole windows of `length` samples at `sample_rate`, at most `batch` windows at a time
    (arrays of shape (n, length)), decoded and resampled window by window: memory stays bounded by the window
    length, whatever the file's size. A remainder shorter than a window is dropped; a recording shorter than one
    window is zero-padded. A truncated file is read as far as it goes, with a warning."""
    path = Path(path)
    with _open(path) as sound:
        rate, frames = sound.samplerate, sound.frames
        _check_length(path, frames, allow_truncated=True)
        count = max(1, frames * sample_rate // (rate * length))
        bounds = [round(k * length * rate / sample_rate) for k in range(count + 1)]
        pending = []
        for start, stop in itertools.pairwise(bounds):
            samples = sound.read(frames=stop - start, dtype="float32", always_2d=True)
            if not len(samples):  # a truncated file ends early
                break
            pending.append(fit_length(resample(_mono(path, samples, start), rate, sample_rate), length))
            if len(pending) == batch:
                yield np.stack(pending)
                pending.clear()
        if pending:
            yield np.stack(pending)


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
