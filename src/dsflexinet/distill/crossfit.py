"""Cross-fitted teacher targets: every student clip's logits from teachers that did not train on it.

The fusion (eq. 4) is fitted on clips no teacher saw, the fusion hold-out; applied to clips the teachers trained
on, it meets logits much sharper than those it was fitted on. Cross-fitting makes fit and use agree: the student
clips are split into two folds by recording location (`fusion.two_folds`: per scene its locations alternate, so
each fold holds every scene where it can), the teachers are trained again once per fold on the student clips
outside it, and a teacher's cross-fitted logits take each student clip's row from the teacher that did not see
its fold. Every other row (the test split, training clips that are not student clips) is the full teacher's,
which saw none of them either where the students learn from the teachers' share (a development run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsflexinet.errors import PipelineError


def write_fold_tables(student_clips: str | Path, out: dict[int, str | Path]) -> dict:
    """Write, for folds 1 and 2 (`out`: {fold: path}), the clip table the fold's teachers learn from: the student
    clips outside the fold (rows in the student table's order). Returns the clips per fold and the recording
    locations both folds hold (a scene with a single location is split by recording, see `two_folds`)."""
    from dsflexinet.data.splits import read_clip_table, write_clip_table
    from dsflexinet.distill.fusion import two_folds

    clips = read_clip_table(student_clips)
    first = two_folds(clips)
    if first.all() or not first.any():
        raise PipelineError(f"{student_clips}: {len(clips)} clip(s) cannot be split into two folds to cross-fit")
    folds = {1: first, 2: ~first}
    for fold, path in out.items():
        write_clip_table(clips[~folds[fold]], path)
    shared = set(clips["identifier"][first]) & set(clips["identifier"][~first])
    return {f"fold{fold}": int(members.sum()) for fold, members in folds.items()} | {"shared_locations": len(shared)}


def assemble_cross_fit_logits(
    full_logits: str | Path, fold_logits: dict[int, str | Path], fold_teacher_clips: dict[int, str | Path],
    student_clips: str | Path, out: str | Path,
) -> dict:  # fmt: skip
    """One teacher's cross-fitted logits, in the format of its full logits file (every clip it holds, in its
    order): the row of a student clip in fold k comes from `fold_logits[k]`, the teacher trained on
    `fold_teacher_clips[k]` (the student clips outside fold k); every other row from `full_logits`. Returns how
    many rows came from each."""
    from dsflexinet.data.splits import read_clip_table
    from dsflexinet.distill.logits import load_logits, save_logits

    names, logits = load_logits(full_logits)
    students = read_clip_table(student_clips)["filename"]
    missing = students[~students.isin(names)]
    if len(missing):
        raise PipelineError(f"{student_clips}: {len(missing)} clip(s) not in the teacher logits {full_logits}"
                            f" (the train cache), e.g. {missing.iloc[0]}")  # fmt: skip
    trained_on = {fold: set(read_clip_table(path)["filename"]) for fold, path in fold_teacher_clips.items()}
    logits = logits.copy()
    row_of = {name: row for row, name in enumerate(names)}
    counts = {"full": len(names)}
    assigned = np.zeros(len(students), dtype=int)
    for fold, path in fold_logits.items():
        outside = set(students) - trained_on[fold]  # fold k: the student clips its teachers did not learn from
        members = students[students.isin(outside)].tolist()
        if trained_on[fold] - set(students):
            raise PipelineError(f"{fold_teacher_clips[fold]}: clips that are not student clips ({student_clips})")
        assigned += students.isin(outside).to_numpy()
        rows = np.fromiter((row_of[name] for name in members), dtype=np.int64, count=len(members))
        logits[rows] = load_logits(path, members)[1]
        counts[f"fold{fold}"] = len(members)
        counts["full"] -= len(members)
    if (assigned != 1).any():
        name = students[assigned != 1].iloc[0]
        raise PipelineError(f"{student_clips}: clip {name} is in {assigned[assigned != 1][0]} folds, not exactly one"
                            f" (fold tables {', '.join(map(str, fold_teacher_clips.values()))})")  # fmt: skip
    save_logits(out, names, logits)
    return counts
