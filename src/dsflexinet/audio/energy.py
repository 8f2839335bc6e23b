"""Clip energy E(x) and the energy analysis behind ADIR's threshold (paper eq. 3 and Fig. 2).

E(x) is the sum of squared samples of the 32 kHz float waveform in [-1, 1]: about 320 for a 1 s clip of RMS 0.1.
The paper sets E_threshold to the average energy of the training set (323 on TAU22); with no threshold given,
the analysis does the same on whatever cache it is given. Its JSON is where a student's ADIR threshold
`energy_analysis` comes from (`read_energy_threshold`); the training job records the number it read. The real
training cache is 139,620 x 32,000 float32 (18 GB), so it is streamed in chunks from its memory map, never
loaded whole.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dsflexinet.atomic import atomic_path, write_json
from dsflexinet.audio.chunks import row_chunks
from dsflexinet.data.cache import WaveformCache
from dsflexinet.data.splits import read_clip_table
from dsflexinet.errors import PipelineError

CHUNK_CLIPS = 1024  # rows read from the memory map at a time
ENERGY_CHUNK_CLIPS = 16  # rows converted to float64 at a time (see chunks.py)
PERCENTILES = (5, 25, 75, 95)
HISTOGRAM_BINS = 80


def clip_energy(waves: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Sum of squared samples of each clip (N, samples), accumulated in float64."""
    waves = torch.as_tensor(waves)
    energy = torch.empty(waves.shape[0], dtype=torch.float64, device=waves.device)
    for rows in row_chunks(waves.shape[0], waves.device, ENERGY_CHUNK_CLIPS):
        energy[rows] = waves[rows].to(torch.float64).square().sum(dim=-1)
    return energy


def cache_energies(waves: np.ndarray, chunk_clips: int = CHUNK_CLIPS, rows: np.ndarray | None = None) -> np.ndarray:
    """E(x) of every row (or of `rows`) of a (memory-mapped) [clips, samples] array, read chunk by chunk."""
    rows = np.arange(waves.shape[0]) if rows is None else np.asarray(rows)
    energies = np.empty(rows.size, dtype=np.float64)
    for start in range(0, rows.size, chunk_clips):
        chunk = np.array(waves[rows[start : start + chunk_clips]], dtype=np.float32)  # one copy off the memory map
        energies[start : start + chunk.shape[0]] = clip_energy(torch.from_numpy(chunk)).numpy()
    return energies


def _summary(values: np.ndarray) -> dict:
    return {"count": int(values.size), "mean": float(values.mean()), "median": float(np.median(values))}


def energy_statistics(energies: np.ndarray, clips: pd.DataFrame, threshold: float | None = None) -> dict:
    """Distribution of E(x) overall, per device and per scene; the threshold (None: the mean) and how many
    clips lie above it."""
    if energies.size == 0:
        raise PipelineError("energy statistics: no clips")
    value = float(energies.mean()) if threshold is None else float(threshold)
    above = energies > value
    groups = {}
    for column, key in (("device", "per_device"), ("scene_label", "per_scene")):
        labels = clips[column].to_numpy()
        groups[key] = {str(label): _summary(energies[labels == label]) for label in sorted(set(labels))}
    return {
        "clips": int(energies.size),
        "energy": {
            **_summary(energies),
            "std": float(energies.std()),
            "min": float(energies.min()),
            "max": float(energies.max()),
            **{f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(energies, PERCENTILES), strict=True)},
            "silent_clips": int((energies == 0).sum()),  # E = 0: left out of the log-scale histogram
        },
        "threshold": value,
        "threshold_source": "mean energy of these clips" if threshold is None else "given",
        "clips_above_threshold": int(above.sum()),
        "fraction_above_threshold": float(above.mean()),
        **groups,
    }


def plot_energy_histogram(energies: np.ndarray, threshold: float, out_png: str | os.PathLike, title: str) -> None:
    """Fig. 2: histogram of E(x) on log-spaced bins, the threshold as a labelled vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positive = energies[energies > 0]
    if positive.size == 0:
        raise PipelineError("energy histogram: every clip is silent (E = 0)")
    low, high = positive.min(), positive.max()
    if high <= low:  # one distinct value: give the bins some width
        low, high = low / 2, high * 2
    bins = np.geomspace(low, high, HISTOGRAM_BINS + 1)
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.hist(positive, bins=bins, color="tab:blue", alpha=0.8)
    axes.set_xscale("log")
    if threshold > 0:  # a log axis has no place for 0
        above = (energies > threshold).mean()
        label = f"E_threshold = {threshold:.4g} ({above:.1%} of clips above)"
        axes.axvline(threshold, color="tab:red", linestyle="--", linewidth=1.5, label=label)
        axes.legend(loc="upper left")
    axes.set_xlabel("clip energy E(x) = sum of squared samples (32 kHz)")
    axes.set_ylabel("clips")
    axes.set_title(title)
    figure.tight_layout()
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, dpi=150)
    plt.close(figure)


def analyse_energy(
    cache_path: str | os.PathLike, threshold: float | None, out_json: str | os.PathLike, out_png: str | os.PathLike,
    clips: str | os.PathLike | None = None,
) -> dict:  # fmt: skip
    """Energy statistics of a waveform cache (all of it, or the clips of a clip table) as JSON, and the
    histogram figure."""
    cache = WaveformCache.open(cache_path)
    rows = None if clips is None else cache.rows_of(read_clip_table(clips), clips)
    energies = cache_energies(cache.waves, rows=rows)
    table = cache.clips if rows is None else cache.clips.iloc[rows]
    stats = {"cache": str(cache_path), "clip_table": None if clips is None else str(clips)}
    stats |= {"samples_per_clip": int(cache.waves.shape[1])} | energy_statistics(energies, table, threshold)
    plot_energy_histogram(energies, stats["threshold"], out_png, f"Energy distribution of {len(table)} clips")
    write_json(out_json, stats)
    return stats


def read_energy_threshold(path: str | os.PathLike) -> float:
    """The `threshold` of an energy-analysis JSON file: ADIR's E_threshold for students set to `energy_analysis`."""
    path = Path(path)
    try:
        threshold = float(json.loads(path.read_text())["threshold"])
    except FileNotFoundError:
        raise PipelineError(f"{path}: energy analysis not found (run the energy rule)") from None
    except (ValueError, KeyError, TypeError) as error:
        raise PipelineError(f"{path}: no numeric 'threshold' in this energy analysis ({error})") from None
    if not math.isfinite(threshold) or threshold < 0:
        raise PipelineError(f"{path}: ADIR energy threshold {threshold} is not a finite non-negative number")
    return threshold
