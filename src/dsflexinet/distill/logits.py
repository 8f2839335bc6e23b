"""Teacher logit files: one `.npz` per teacher (or ensemble) with every train and test clip, keyed by file name.

Format: `filenames` (str [N]) and `logits` (float32 [N, 10], class order `tau22.SCENES`). Students look up
their soft targets by file name, so the order of a cache and of a logit file never has to agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsflexinet.atomic import atomic_path
from dsflexinet.data.tau22 import SCENES
from dsflexinet.errors import PipelineError


def save_logits(path: str | Path, filenames: list[str] | np.ndarray, logits: np.ndarray) -> None:
    logits = np.asarray(logits, dtype=np.float32)
    if logits.shape != (len(filenames), len(SCENES)):
        raise ValueError(f"logits of shape {logits.shape} for {len(filenames)} clips")
    with atomic_path(path) as tmp:
        np.savez(tmp, filenames=np.asarray(filenames, dtype=str), logits=logits)


def load_logits(path: str | Path, filenames: list[str] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(filenames, logits); with `filenames`, the rows for exactly those clips in that order."""
    path = Path(path)
    try:
        with np.load(path) as archive:
            stored_names, logits = archive["filenames"], archive["logits"]
    except FileNotFoundError:
        raise PipelineError(f"{path}: teacher logits not found") from None
    except (OSError, KeyError, ValueError) as error:
        raise PipelineError(f"{path}: not a teacher logit file ({error})") from None
    if filenames is None:
        return stored_names, logits
    row_of = {name: row for row, name in enumerate(stored_names)}
    missing = [name for name in filenames if name not in row_of]
    if missing:
        raise PipelineError(f"{path}: no logits for {missing[0]} ({len(missing)} clips missing)")
    rows = np.fromiter((row_of[name] for name in filenames), dtype=np.int64, count=len(filenames))
    return np.asarray(filenames), logits[rows]


def dump_teacher_logits(model_path: str | Path, cache_paths: list[str | Path], out: str | Path) -> int:
    """Run a trained teacher over every clip of the given caches; one file, keyed by file name."""
    from dsflexinet.evaluate.inference import cache_logits
    from dsflexinet.modelfile import load_classifier

    classifier = load_classifier(model_path)
    names, rows = [], []
    for cache_path in cache_paths:
        cache, logits = cache_logits(classifier, cache_path)
        names.extend(cache.clips["filename"])
        rows.append(logits)
    save_logits(out, names, np.concatenate(rows))
    return len(names)
