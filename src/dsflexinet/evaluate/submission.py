"""The DCASE Task 1 submission of one model: `output.csv` for every clip of an evaluation folder, and `info.json`.

`output.csv` is what the DCASE'24 baseline writes: tab-separated, `filename` (without the `audio/` prefix),
`scene_label`, then one class probability (softmax) per scene, named by the scene, in alphabetical order. A clip
that cannot be classified is logged and named in `info.json`, which then says `"complete": false`: a submission
is never silently short.

`submit_student` is the workflow's submission of one exported int8 student. It writes nothing unless the
student's complexity job found it within the DCASE limits, and an incomplete submission never lands where a
complete one would: its files go to a separate `incomplete` pair and the job fails naming the unreadable
clips. Snakemake deletes a failed job's outputs; the pair is not an output, so the partial files stay for
inspection, the submission's own paths stay empty, and the next run tries again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dsflexinet.atomic import atomic_path, read_json, write_json
from dsflexinet.data.download import file_digest
from dsflexinet.data.tau22 import SCENES, SPLIT_FILES, read_table
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.predict import FORMULA_LEADS, collect_wavs, file_probabilities
from dsflexinet.modelfile import load_classifier

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from dsflexinet.layout import SubmissionFiles
    from dsflexinet.modelfile import LoadedClassifier

log = logging.getLogger("dsflexinet")

# Where a folder in the TAU22 layout lists its clips, first found wins: the development set's test split, or
# the table of an evaluation set.
CLIP_TABLES = (SPLIT_FILES["fold1_test"], "meta.csv")
AUDIO_PREFIX = "audio/"


def _inside(root: Path, name: str, table: Path) -> Path:
    """`root / name` for a clip table's entry, refused where the entry leads out of the folder (an absolute
    path, or `..` past its top). Links inside the folder are followed: where they lead is the folder's owner's
    choice."""
    if Path(name).is_absolute() or os.path.normpath(name).split(os.sep)[0] == os.pardir:
        raise PipelineError(f"{table}: clip {name!r} lies outside the evaluation folder {root}")
    return root / name


def _check_names(clips: list[tuple[str, Path]], where: Path) -> None:
    """Each clip named once, by a name a TSV cell holds as plain text, and each file listed once (compared as
    resolved paths: `audio/../audio/a.wav` is `audio/a.wav`)."""
    for name, _ in clips:
        if name.startswith(FORMULA_LEADS) or any(char in name for char in "\t\n\r"):
            raise PipelineError(f"{where}: clip name {name!r} starts with a formula character or holds a tab or "
                                "line break; no TAU22 clip name does")  # fmt: skip
    names, files = pd.Series([name for name, _ in clips]), pd.Series([os.path.realpath(path) for _, path in clips])
    if names.duplicated().any():
        name = names[names.duplicated()].iloc[0]
        raise PipelineError(f"{where}: two clips are named {name!r}; a submission names each clip once")
    if files.duplicated().any():
        first, second = names[files == files[files.duplicated()].iloc[0]].iloc[:2]
        raise PipelineError(f"{where}: clips {first!r} and {second!r} are the same file; a submission names each "
                            "clip once")  # fmt: skip


def evaluation_clips(root: str | Path) -> list[tuple[str, Path]]:
    """(submission file name, path) of every clip of an evaluation folder: the clips its table lists (TAU22
    layout, paths inside the folder), or every WAV below it (a plain folder, named by file name)."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"{root}: evaluation folder not found")
    for table_file in CLIP_TABLES:
        if (root / table_file).is_file():
            where = root / table_file
            listed = list(read_table(where, ("filename",))["filename"])
            clips = [(name.removeprefix(AUDIO_PREFIX), _inside(root, name, where)) for name in listed]
            break
    else:
        clips = [(path.name, path) for path in collect_wavs([root])]
        where = root
    if not clips:
        raise PipelineError(f"{where}: no clips to classify (no WAV files, and none of {', '.join(CLIP_TABLES)})")
    _check_names(clips, where)
    return clips


def folder_state(root: str | Path) -> str:
    """A digest of every file's path, size and modification time below `root` (links followed; broken ones
    recorded as such), cheap enough to compute whenever the workflow is planned: it changes when a clip is
    replaced, added or removed, which tells Snakemake to rebuild the manifest (`write_manifest`)."""
    digest = hashlib.sha256()
    for folder, subfolders, names in sorted(os.walk(root)):
        subfolders.sort()
        for name in sorted(names):
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
                digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode(errors="surrogateescape"))
            except OSError:
                digest.update(f"{path}\tbroken\n".encode(errors="surrogateescape"))
    return digest.hexdigest()


def write_manifest(root: str | Path, out: str | Path) -> pd.DataFrame:
    """The evaluation folder's clips as a table (name, bytes, sha256; a clip that cannot be opened has no size and
    the checksum `unreadable`), written atomically: the submission's input, which changes when any clip does."""
    rows = []
    for name, path in evaluation_clips(root):
        try:
            rows.append((name, path.stat().st_size, file_digest(path, "sha256")))
        except OSError:
            rows.append((name, None, "unreadable"))
    table = pd.DataFrame(rows, columns=["filename", "bytes", "sha256"]).astype({"bytes": "Int64"})
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table


def write_output_csv(clips: list[tuple[str, Path]], results: list[np.ndarray | None], out: str | Path
                     ) -> tuple[list[str], list[str]]:  # fmt: skip
    """Write output.csv atomically from each clip's class probabilities (None: it could not be classified);
    return the names of the clips classified and of those left out."""
    names, rows, unreadable = [], [], []
    for (name, _), probabilities in zip(clips, results, strict=True):
        if probabilities is None:
            unreadable.append(name)
        else:
            names.append(name)
            rows.append(probabilities)
    probabilities = np.stack(rows) if rows else np.zeros((0, len(SCENES)), dtype=np.float32)
    table = pd.DataFrame({"filename": names, "scene_label": [SCENES[i] for i in probabilities.argmax(axis=1)]})
    table[list(SCENES)] = probabilities
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.8g")
    return names, unreadable


def write_submission(
    classifier: LoadedClassifier, clips: list[tuple[str, Path]], out: SubmissionFiles, info: dict
) -> dict:
    """Write `output.csv` and `info.json` (the caller's `info` plus the counts) atomically; return the latter.

    `classifier` maps waveforms at the rate it records to logits (N, len(SCENES)); `clips` comes from
    `evaluation_clips`.
    """
    results = [probabilities for _, probabilities in file_probabilities(classifier, [path for _, path in clips])]
    names, unreadable = write_output_csv(clips, results, out.output)
    summary = info | {"clips": len(clips), "classified": len(names), "complete": not unreadable,
                      "unreadable": unreadable}  # fmt: skip
    write_json(out.info, summary)
    if unreadable:
        log.error("%s: incomplete submission, %d of %d clips could not be classified (listed in %s)",
                  out.output, len(unreadable), len(clips), out.info)  # fmt: skip
    return summary


def _fields(record: Mapping, keys: Iterable[str], path: str | Path, hint: str) -> Mapping:
    missing = [key for key in keys if key not in record]
    if missing:
        raise PipelineError(f"{path}: no {', '.join(map(repr, missing))} ({hint})")
    return record


def complexity_row(path: str | Path) -> Mapping:
    """The one row the student's complexity job wrote, with the limits it checked."""
    rows = read_json(path)
    if not isinstance(rows, list) or len(rows) != 1 or not isinstance(rows[0], dict):
        raise PipelineError(f"{path}: expected the one row of a student's complexity job")
    row = _fields(rows[0], ("params", "macs", "limits", "within"), path,
                  "the student's complexity job checks the DCASE limits with --run: rerun it")  # fmt: skip
    if row["within"] is not True:
        raise PipelineError(f"{path}: the model is not recorded as within the complexity limits")
    return row


def exported_model_record(model: str | Path, quantized: str | Path) -> Mapping:
    """QAT's record of an exported int8 model (engine, file size), refused unless `model` is the file it
    describes (the same size)."""
    engine = _fields(read_json(quantized), ("backend", "file_bytes"), quantized, "QAT writes it")
    if not Path(model).is_file():
        raise PipelineError(f"{model}: model file not found")
    size = Path(model).stat().st_size
    if size != engine["file_bytes"]:
        raise PipelineError(f"{model}: {size:,} bytes, but {quantized} records {engine['file_bytes']:,}: not the model "
                            "that QAT exported")  # fmt: skip
    return engine


def submit_student(
    model: str | Path, evaluation_root: str | Path, complexity: str | Path, quantized: str | Path,
    evaluation: str | Path, run: str, out: SubmissionFiles, incomplete: SubmissionFiles,
) -> dict:  # fmt: skip
    """Classify every clip of `evaluation_root` with the exported `model` of student `run`; write `out` and return
    info.json's content. `complexity`, `quantized` and `evaluation` are the student's complexity.json,
    quantized.json and eval_int8.json: info.json reports them beside the counts of `write_submission`."""
    row = complexity_row(complexity)
    engine = exported_model_record(model, quantized)
    metrics = _fields(read_json(evaluation), ("accuracy", "class_averaged_accuracy", "clips", "devices"), evaluation,
                      "evaluate writes it")  # fmt: skip
    clips = evaluation_clips(evaluation_root)
    classifier = load_classifier(model)
    size = engine["file_bytes"]
    limits = row["limits"]
    info = {
        "run": run,
        "model_file": str(model),
        "model_file_bytes": size,
        "quantized_engine": engine["backend"],
        "input": classifier.input.to_dict(),
        "trained_on": list(classifier.trained_on),
        "parameters": row["params"],
        "macs": row["macs"],
        "parameter_bytes": limits["param_bytes"],
        "parameter_precision": limits["precision"],
        "complexity_limits": {"max_macs": limits["max_macs"], "max_param_bytes": limits["max_param_bytes"],
                              "within": True},  # fmt: skip
        "development_test": {
            "evaluation": str(evaluation), "clips": metrics["clips"], "accuracy": metrics["accuracy"],
            "macro_accuracy": metrics["class_averaged_accuracy"],
            "devices": {device: result["accuracy"] for device, result in metrics["devices"].items()},
            "measured_on": metrics.get("measured_on"),
        },  # fmt: skip
        "evaluation_root": str(evaluation_root),
    }
    summary = write_submission(classifier, clips, incomplete, info)
    if not summary["complete"]:
        for stale in (out.output, out.info):  # an earlier run's complete pair must not sit beside this one
            Path(stale).unlink(missing_ok=True)
        unreadable = summary["unreadable"]
        raise PipelineError(
            f"{out.output}: not written, {len(unreadable)} of {summary['clips']} clips could not be classified "
            f"(first: {unreadable[0]}); the incomplete submission is in {Path(incomplete.output).parent}"
        )
    for written, final in ((incomplete.output, out.output), (incomplete.info, out.info)):
        Path(final).parent.mkdir(parents=True, exist_ok=True)
        Path(written).replace(final)
    with contextlib.suppress(OSError):  # leave no empty incomplete/ behind; one with other files stays
        Path(incomplete.output).parent.rmdir()
    return summary
