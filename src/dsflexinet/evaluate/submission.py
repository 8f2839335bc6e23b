"""The DCASE Task 1 submission of one model: `output.csv` for every clip of an evaluation folder, and `info.json`.

`output.csv` is what the DCASE'24 baseline writes: tab-separated, `filename` (without the `audio/` prefix),
`scene_label`, then one class probability (softmax) per scene, named by the scene, in alphabetical order. A clip
that cannot be classified is logged and named in `info.json`, which then says `"complete": false`: a submission
is never silently short.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dsflexinet.atomic import atomic_path, write_json
from dsflexinet.data.tau22 import SCENES, SPLIT_FILES, read_table
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.predict import collect_wavs, file_probabilities

if TYPE_CHECKING:
    from dsflexinet.layout import SubmissionFiles
    from dsflexinet.modelfile import LoadedClassifier

log = logging.getLogger("dsflexinet")

# Where a folder in the TAU22 layout lists its clips, first found wins: the development set's test split, or
# the table of an evaluation set.
CLIP_TABLES = (SPLIT_FILES["test"], "meta.csv")
AUDIO_PREFIX = "audio/"


def evaluation_clips(root: str | Path) -> list[tuple[str, Path]]:
    """(submission file name, path) of every clip of an evaluation folder: the clips its table lists (TAU22
    layout), or every WAV below it (a plain folder, named by file name)."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"{root}: evaluation folder not found")
    for table_file in CLIP_TABLES:
        if (root / table_file).is_file():
            listed = list(read_table(root / table_file, ("filename",))["filename"])
            clips = [(name.removeprefix(AUDIO_PREFIX), root / name) for name in listed]
            where = root / table_file
            break
    else:
        clips = [(path.name, path) for path in collect_wavs([root])]
        where = root
    if not clips:
        raise PipelineError(f"{where}: no clips to classify (no WAV files, and none of {', '.join(CLIP_TABLES)})")
    names = pd.Series([name for name, _ in clips])
    if names.duplicated().any():
        name = names[names.duplicated()].iloc[0]
        raise PipelineError(f"{where}: two clips are named {name!r}; a submission names each clip once")
    return clips


def write_submission(
    classifier: LoadedClassifier, clips: list[tuple[str, Path]], out: SubmissionFiles, info: dict
) -> dict:
    """Write `output.csv` and `info.json` (the caller's `info` plus the counts) atomically; return the latter.

    `classifier` maps waveforms at the rate it records to logits (N, len(SCENES)); `clips` comes from
    `evaluation_clips`.
    """
    names, rows, unreadable = [], [], []
    results = file_probabilities(classifier, [path for _, path in clips])
    for (name, _), (_, probabilities) in zip(clips, results, strict=True):
        if probabilities is None:
            unreadable.append(name)
        else:
            names.append(name)
            rows.append(probabilities)
    probabilities = np.stack(rows) if rows else np.zeros((0, len(SCENES)), dtype=np.float32)
    table = pd.DataFrame({"filename": names, "scene_label": [SCENES[i] for i in probabilities.argmax(axis=1)]})
    table[list(SCENES)] = probabilities
    with atomic_path(out.output) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.8g")
    summary = info | {"clips": len(clips), "classified": len(names), "complete": not unreadable,
                      "unreadable": unreadable}  # fmt: skip
    write_json(out.info, summary)
    if unreadable:
        log.error("%s: incomplete submission, %d of %d clips could not be classified (listed in %s)",
                  out.output, len(unreadable), len(clips), out.info)  # fmt: skip
    return summary
