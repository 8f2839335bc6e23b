"""Classify WAV files with a trained float or int8 model: any rate, any channel count, any length.

Audio is mixed to mono and resampled to the rate the model file records; a recording longer than one clip is
cut into whole windows of the recorded clip length, whose class probabilities are averaged (a remainder shorter
than a window is dropped, a recording shorter than one window is zero-padded). A file that cannot be classified
(unreadable, NaN or infinite samples, or non-finite model outputs) is reported by name and skipped; a truncated
one is classified from what it holds, with a warning. `file_probabilities` is shared with the DCASE submission writer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dsflexinet.atomic import atomic_path
from dsflexinet.data.tau22 import SCENES
from dsflexinet.data.wav import fit_length, read_wav, resample
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.inference import EVAL_BATCH, predict_logits
from dsflexinet.modelfile import LoadedClassifier, load_classifier

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


def file_probabilities(
    classifier: LoadedClassifier, paths: Iterable[Path]
) -> Iterator[tuple[Path, np.ndarray | None]]:  # fmt: skip
    """(path, class probabilities averaged over its windows) for each file, in order; None for a file that
    cannot be classified, after logging why. Windows of several files share one model call (a batch of one
    clip costs about twice as much per clip)."""
    sample_rate, length = classifier.input.sample_rate, classifier.input.clip_samples
    pending: list[tuple[Path, np.ndarray | None]] = []

    def classify_pending() -> Iterator[tuple[Path, np.ndarray | None]]:
        readable = [batch for _, batch in pending if batch is not None]
        logits = predict_logits(classifier, np.concatenate(readable)) if readable else np.zeros((0, len(SCENES)))
        probabilities = iter(torch.softmax(torch.from_numpy(logits), dim=1).split([len(b) for b in readable]))
        for path, batch in pending:
            mean = None if batch is None else next(probabilities).mean(dim=0).numpy()
            if mean is not None and not np.isfinite(mean).all():
                log.error("skipped %s: the model gives non-finite class probabilities (NaN or infinite) for it", path)
                mean = None
            yield path, mean
        pending.clear()

    for path in paths:
        try:
            wave, rate = read_wav(path, allow_truncated=True)
            pending.append((path, windows(resample(wave, rate, sample_rate), length)))
        except PipelineError as error:
            log.error("skipped %s", error)
            pending.append((path, None))
        if sum(len(batch) for _, batch in pending if batch is not None) >= EVAL_BATCH:
            yield from classify_pending()
    yield from classify_pending()


def predict_files(inputs: list[str | Path], model_path: str | Path, out_csv: str | Path) -> tuple[int, list[str]]:
    """Write one row per classified file (file, scene, one probability per scene); return (rows, skipped)."""
    classifier = load_classifier(model_path)
    rows, skipped = [], []
    for path, probabilities in file_probabilities(classifier, collect_wavs(inputs)):
        if probabilities is None:
            skipped.append(str(path))
            continue
        scene = SCENES[int(np.argmax(probabilities))]
        rows.append({"file": str(path), "scene": scene} | dict(zip(SCENES, probabilities, strict=True)))
    table = pd.DataFrame(rows, columns=["file", "scene", *SCENES])
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.5f")
    return len(rows), skipped
