"""Classify WAV files with a trained float or int8 model: any rate, any channel count, any length.

Audio is mixed to mono and resampled to the rate the model file records; a recording longer than one clip is
cut into whole windows of the recorded clip length, whose class probabilities are averaged (a remainder shorter
than a window is dropped, a recording shorter than one window is zero-padded). Files are decoded window by
window, so a long recording costs time, not memory. File names that a spreadsheet would read as a formula
(starting with =, +, -, @) are written with a leading apostrophe. A file that cannot be classified
(unreadable, NaN or infinite samples, or non-finite model outputs) is reported by name and skipped; a truncated
one is classified from what it holds, with a warning. `file_probabilities` is shared with the DCASE submission writer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dsflexinet.atomic import atomic_path
from dsflexinet.data.tau22 import SCENES
from dsflexinet.data.wav import read_windows
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.inference import EVAL_BATCH, predict_logits
from dsflexinet.modelfile import LoadedClassifier, load_classifier

log = logging.getLogger("dsflexinet")


# Cells a spreadsheet reads as a formula (OWASP, CSV Injection: https://owasp.org/www-community/attacks/CSV_Injection).
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def collect_wavs(inputs: list[str | Path]) -> list[Path]:
    """Files as given, directories searched recursively for *.wav (case-insensitive), in a stable order. Broken
    and looping links are listed too: they are reported as unreadable, never silently left out."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(sorted(p for p in item.rglob("*") if p.suffix.lower() == ".wav" and not p.is_dir()))
        else:
            files.append(item)  # a missing file is reported (and skipped) like an unreadable one
    return files


def neutralised(cell: str) -> str:
    """`cell` as a spreadsheet shows it, as text: a leading apostrophe before a formula's first character."""
    return f"'{cell}" if cell.startswith(FORMULA_LEADS) else cell


@dataclass
class _File:
    """A file whose windows are being classified: the sum of their class probabilities so far."""

    path: Path
    total: np.ndarray
    windows: int = 0
    readable: bool = True

    def result(self) -> tuple[Path, np.ndarray | None]:
        mean = self.total / self.windows if self.readable else None
        if mean is not None and not np.isfinite(mean).all():
            log.error("skipped %s: the model gives non-finite class probabilities (NaN or infinite) for it", self.path)
            mean = None
        return self.path, mean


def file_probabilities(
    classifier: LoadedClassifier, paths: Iterable[Path]
) -> Iterator[tuple[Path, np.ndarray | None]]:  # fmt: skip
    """(path, class probabilities averaged over its windows) for each file, in order; None for a file that
    cannot be classified, after logging why. Files are read window by window (`read_windows`), so memory stays
    bounded whatever their length; windows of several files share one model call (a batch of one clip costs
    about twice as much per clip)."""
    sample_rate, length = classifier.input.sample_rate, classifier.input.clip_samples
    files: list[_File] = []
    chunks: list[tuple[_File, np.ndarray]] = []

    def classify_chunks() -> None:
        if chunks:
            logits = torch.from_numpy(predict_logits(classifier, np.concatenate([chunk for _, chunk in chunks])))
            probabilities = torch.softmax(logits, dim=1).split([len(chunk) for _, chunk in chunks])
            for (file, _), rows in zip(chunks, probabilities, strict=True):
                file.total += rows.sum(dim=0).numpy()
                file.windows += len(rows)
        chunks.clear()

    def finished(keep: int) -> Iterator[tuple[Path, np.ndarray | None]]:
        while len(files) > keep:
            yield files.pop(0).result()

    for path in paths:
        file = _File(path, np.zeros(len(classifier.input.classes)))
        files.append(file)
        try:
            for chunk in read_windows(path, sample_rate, length, EVAL_BATCH):
                chunks.append((file, chunk))
                if sum(len(chunk) for _, chunk in chunks) >= EVAL_BATCH:
                    classify_chunks()
                    yield from finished(keep=1)
        except PipelineError as error:
            log.error("skipped %s", error)
            file.readable = False
            chunks[:] = [(owner, chunk) for owner, chunk in chunks if owner is not file]
    classify_chunks()
    yield from finished(keep=0)


def predict_files(inputs: list[str | Path], model_path: str | Path, out_csv: str | Path) -> tuple[int, list[str]]:
    """Write one row per classified file (file, scene, one probability per scene); return (rows, skipped). A
    file name a spreadsheet would read as a formula is written with a leading apostrophe (`neutralised`)."""
    out_csv = Path(out_csv)
    if out_csv.is_dir():
        raise PipelineError(f"{out_csv}: is a folder; --out names the CSV file to write")
    paths = collect_wavs(inputs)
    if any(os.path.realpath(path) == os.path.realpath(out_csv) for path in paths):
        raise PipelineError(f"{out_csv}: is one of the inputs; --out names a new CSV file")
    classifier = load_classifier(model_path)
    rows, skipped = [], []
    for path, probabilities in file_probabilities(classifier, paths):
        if probabilities is None:
            skipped.append(str(path))
            continue
        scene = SCENES[int(np.argmax(probabilities))]
        rows.append({"file": neutralised(str(path)), "scene": scene} | dict(zip(SCENES, probabilities, strict=True)))
    table = pd.DataFrame(rows, columns=["file", "scene", *SCENES])
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.5f")
    return len(rows), skipped
