"""Waveform caches: each split decoded once to 32 kHz float32, one memory-mapped array per split.

Training reads thousands of clips per epoch; decoding and resampling 24-bit WAVs each time would dominate the
CPU budget. A cache is two files:

    <name>.npy   float32 [clips, samples], opened with mmap so workers share pages
    <name>.tsv   the clip table (tau22.CLIP_COLUMNS), row i describes array row i

Building is resumable: rows land in `<name>.npy.partial` in chunks, and `<name>.npy.progress` records how
many are done (with a fingerprint of the inputs, so a changed split never resumes onto stale rows).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dsflexinet.atomic import atomic_path, write_json
from dsflexinet.data.tau22 import CLIP_COLUMNS, read_split
from dsflexinet.data.wav import fit_length, read_wav, resample
from dsflexinet.errors import PipelineError

CHUNK_CLIPS = 512
# Clips may differ from the nominal length by this fraction (rounding in other tools); more is an error.
LENGTH_TOLERANCE = 0.01


@dataclass
class WaveformCache:
    """A split's waveforms (memory-mapped, read-only) and the table that describes each row."""

    waves: np.ndarray
    clips: pd.DataFrame

    @classmethod
    def open(cls, path: str | Path) -> WaveformCache:
        path = Path(path)
        table_path = path.with_suffix(".tsv")
        for required in (path, table_path):
            if not required.is_file():
                raise PipelineError(f"{required}: waveform cache file not found (run the cache_waveforms rule)")
        try:
            waves = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as error:
            raise PipelineError(f"{path}: not a readable waveform cache ({error})") from None
        clips = pd.read_csv(table_path, sep="\t", dtype={"label": "int64"}, keep_default_na=False)
        if waves.ndim != 2 or len(clips) != waves.shape[0] or list(clips.columns) != list(CLIP_COLUMNS):
            raise PipelineError(
                f"{path}: array of shape {waves.shape} does not match its table {table_path} ({len(clips)} rows)"
            )
        return cls(waves, clips)

    def __len__(self) -> int:
        return self.waves.shape[0]

    def rows_of(self, clips: pd.DataFrame, source: str | Path) -> np.ndarray:
        """The sorted rows holding the clips of a clip table (data.splits); `source` names it in errors."""
        position = pd.Series(np.arange(len(self)), index=self.clips["filename"])
        missing = ~clips["filename"].isin(position.index)
        if missing.any():
            raise PipelineError(
                f"{source}: {int(missing.sum())} clip(s) are not in this waveform cache, e.g. "
                f"{clips['filename'][missing].iloc[0]}"
            )
        return np.sort(position[clips["filename"]].to_numpy())


def _fingerprint(clips: pd.DataFrame, sample_rate: int, length: int) -> str:
    digest = hashlib.sha256(f"{sample_rate}:{length}\n".encode())
    digest.update("\n".join(clips["filename"]).encode())
    return digest.hexdigest()


def _decode(path: Path, expected_rate: int | None, clip_seconds: float) -> tuple[np.ndarray, int]:
    wave, rate = read_wav(path)
    if expected_rate is not None and rate != expected_rate:
        raise PipelineError(f"{path}: sample rate {rate} Hz, expected {expected_rate} Hz")
    nominal = clip_seconds * rate
    if abs(wave.shape[0] - nominal) > LENGTH_TOLERANCE * nominal:
        raise PipelineError(f"{path}: {wave.shape[0] / rate:.3f} s long, expected {clip_seconds:.3f} s")
    return fit_length(wave, round(nominal)), rate


def build_cache(
    root: str | Path,
    split_file: str,
    out: str | Path,
    sample_rate: int = 32000,
    clip_seconds: float = 1.0,
    expected_rate: int | None = None,
    workers: int = 1,
) -> WaveformCache:
    """Decode, mix down, resample and store every clip of one split; resume an interrupted build."""
    root, out = Path(root), Path(out)
    clips = read_split(root, split_file)
    length = round(sample_rate * clip_seconds)
    partial = out.with_name(out.name + ".partial")
    progress = out.with_name(out.name + ".progress")
    fingerprint = _fingerprint(clips, sample_rate, length)

    done = 0
    if partial.is_file() and progress.is_file():
        state = json.loads(progress.read_text())
        if state.get("fingerprint") == fingerprint:
            done = int(state["done"])
    if done:
        waves = np.lib.format.open_memmap(partial, mode="r+")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        waves = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(clips), length))

    paths = [root / name for name in clips["filename"]]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(done, len(clips), CHUNK_CLIPS):
            stop = min(start + CHUNK_CLIPS, len(clips))
            decoded = list(pool.map(lambda p: _decode(p, expected_rate, clip_seconds), paths[start:stop]))
            # Resample all clips of one rate together: one batched call instead of one per clip.
            for rate in sorted({rate for _, rate in decoded}):
                rows = [i for i, (_, r) in enumerate(decoded) if r == rate]
                batch = np.stack([decoded[i][0] for i in rows])
                waves[[start + i for i in rows]] = fit_length(resample(batch, rate, sample_rate), length)
            waves.flush()
            write_json(progress, {"fingerprint": fingerprint, "done": stop})
    del waves

    with atomic_path(out.with_suffix(".tsv")) as tmp:
        clips.to_csv(tmp, sep="\t", index=False)
    os.replace(partial, out)
    progress.unlink(missing_ok=True)
    return WaveformCache.open(out)
