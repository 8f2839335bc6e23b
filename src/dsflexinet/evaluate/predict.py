"""Classify WAV files with a trained float or int8 model: any rate, any channel count, any length.

Audio is mixed to mono and resampled to the model's rate; a recording longer than one clip is cut into whole
1 s windows whose class probabilities are averaged (a remainder shorter than a window is dropped, a recording
shorter than one window is zero-padded). Unreadable files are reported by name and skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dsflexinet.atomic import atomic_path
from dsflexinet.data.tau22 import SCENES
from dsflexinet.data.wav import fit_length, read_wav, resample
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.inference import predict_logits
from dsflexinet.modelfile import load_classifier

log = logging.getLogger("dsflexinet")


def collect_wavs(inputs: list[str | Path]) -> list[Path]:
    """Files as given, directories searched recursively for *.wav (case-insensitive), in a stable order."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() == ".wav"))
        else:
            files.append(item)  # a missing file is reported (and skipped) like an unreadable one
    return files


def windows(wave: np.ndarray, length: int) -> np.ndarray:
    """Whole windows of `length` samples, shape (n, length); at least one (zero-padded) window."""
    count = max(1, wave.shape[0] // length)
    return fit_length(wave, count * length).reshape(count, length)


def predict_files(
    inputs: list[str | Path], model_path: str | Path, out_csv: str | Path, sample_rate: int = 32000,
    window_seconds: float = 1.0,
) -> tuple[int, list[str]]:  # fmt: skip
    """Write one row per readable file (file, scene, one probability per scene); return (rows, skipped)."""
    classifier = load_classifier(model_path)
    length = round(sample_rate * window_seconds)
    rows, skipped = [], []
    for path in collect_wavs(inputs):
        try:
            wave, rate = read_wav(path)
        except PipelineError as error:
            log.error("skipped %s", error)
            skipped.append(str(path))
            continue
        logits = predict_logits(classifier, windows(resample(wave, rate, sample_rate), length))
        probabilities = torch.softmax(torch.from_numpy(logits), dim=1).mean(dim=0).numpy()
        scene = SCENES[int(np.argmax(probabilities))]
        rows.append({"file": str(path), "scene": scene} | dict(zip(SCENES, probabilities, strict=True)))
    table = pd.DataFrame(rows, columns=["file", "scene", *SCENES])
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.5f")
    return len(rows), skipped
