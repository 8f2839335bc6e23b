"""Teacher fusion (paper eq. 4): h(i, t) = sum_k alpha_k * logits_k(i, t) + beta_i, fitted by cross-entropy.

The averaged ensemble (alpha_k = 1/K, beta = 0) is both the baseline of Table IV and the starting point of the
fit, so a fitted fusion can only lower the cross-entropy where it is fitted.

Where it is fitted matters. On the teachers' own training clips (`in_sample`, the paper's literal reading) the
fit rewards memorisation: teachers that learnt those clips by heart get the weight, and since the scale of
alpha acts as an inverse temperature, the KD targets come out sharper than the teachers are right. The default
fits on recording locations no teacher saw (`holdout`, data.splits), and keeps the fit only where it beats the
average out of sample (cross-fitted over two folds of the hold-out that share its scenes, by location where a
scene has several, else by recording), and only where the hold-out holds every scene: a small subset's hold-out
of a few clips would fit 22 numbers to noise.
The report measures what either choice does without the test split: the held-out cross-entropy of average and
fusion, the sum of alpha and the mean top probability of the targets on the students' training clips, apart on
the clips the teachers trained on and the hold-out clips they did not (with cross-fitted logits,
distill.crossfit, the teachers trained on none of them: `targets` says which).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dsflexinet.errors import PipelineError

if TYPE_CHECKING:
    from dsflexinet.layout import EnsembleFiles


@dataclass
class Fusion:
    """Weights of eq. 4: one alpha per teacher, one beta per class."""

    alpha: np.ndarray  # [K]
    beta: np.ndarray  # [C]

    @classmethod
    def average(cls, n_teachers: int, n_classes: int) -> Fusion:
        return cls(np.full(n_teachers, 1.0 / n_teachers), np.zeros(n_classes))

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Fuse logits stacked as [K, N, C] into [N, C]."""
        return np.tensordot(self.alpha, logits, axes=1) + self.beta

    def to_dict(self) -> dict:
        return {"alpha": self.alpha.tolist(), "beta": self.beta.tolist()}


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(F.cross_entropy(torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(labels)))


def fit_fusion(logits: np.ndarray, labels: np.ndarray, steps: int = 300, shrinkage: float = 0.0) -> Fusion:
    """Minimise the cross-entropy of the fused logits [K, N, C] w.r.t. alpha and beta with L-BFGS, plus
    `shrinkage` times the squared distance of (alpha, beta) from the average (12 correlated teachers make alpha
    ill-determined: unshrunk, a few hundred clips give weights of +-2 that do not carry over)."""
    stacked = torch.as_tensor(logits, dtype=torch.float64)
    targets = torch.as_tensor(labels, dtype=torch.int64)
    start = Fusion.average(stacked.shape[0], stacked.shape[2])
    alpha = torch.tensor(start.alpha, requires_grad=True)
    beta = torch.tensor(start.beta, requires_grad=True)
    optimizer = torch.optim.LBFGS([alpha, beta], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        fused = torch.einsum("k,knc->nc", alpha, stacked) + beta
        distance = (alpha - 1.0 / len(alpha)).square().sum() + beta.square().sum()
        loss = F.cross_entropy(fused, targets) + shrinkage * distance
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = Fusion(alpha.detach().numpy(), beta.detach().numpy())
    # L-BFGS may stop on a worse point after a failed line search; never return worse than the start.
    if cross_entropy(fitted.apply(logits), labels) > cross_entropy(start.apply(logits), labels):
        return start
    return fitted


def two_folds(clips: pd.DataFrame) -> np.ndarray:
    """True for the first of two folds of a clip table, every scene in both where it can be: per scene, its
    recording locations alternate between the folds; a scene held out at one location alternates its recordings
    (10 s segments), and a single recording its clips."""
    first = np.zeros(len(clips), dtype=bool)
    segment = clips["filename"].str.rsplit("-", n=2).str[0]  # audio/<scene>-<city>-<location>-<segment>
    for _, scene in clips.groupby("label", sort=True):
        for groups in (scene["identifier"], segment[scene.index], pd.Series(scene["filename"], index=scene.index)):
            names = sorted(set(groups))
            if len(names) > 1:
                first[clips.index.get_indexer(scene.index)] = groups.isin(names[::2]).to_numpy()
                break
    return first


SHRINKAGE = (0.0, 0.001, 0.01, 0.1, 1.0)  # the candidates of `fit_fusion`'s shrinkage, chosen by cross-fitting


def cross_fitted_logits(
    logits: np.ndarray, labels: np.ndarray, clips: pd.DataFrame, steps: int, shrinkage: float
) -> np.ndarray | None:  # fmt: skip
    """The fused logits of clips that the fusion is also fitted on, out of sample: each of two folds
    (`two_folds`) scored by the fusion fitted on the other. None where a fold would be empty."""
    first = two_folds(clips.reset_index(drop=True))
    if first.all() or not first.any():
        return None
    scored = np.empty((labels.size, logits.shape[2]))
    for fit_on in (first, ~first):
        fusion = fit_fusion(logits[:, fit_on], labels[fit_on], steps=steps, shrinkage=shrinkage)
        scored[~fit_on] = fusion.apply(logits[:, ~fit_on])
    return scored


def cross_fitted_cross_entropy(
    logits: np.ndarray, labels: np.ndarray, clips: pd.DataFrame, steps: int, shrinkage: float
) -> float | None:  # fmt: skip
    """Cross-entropy of a fusion fitted on the very clips it is scored on, estimated out of sample."""
    scored = cross_fitted_logits(logits, labels, clips, steps, shrinkage)
    return None if scored is None else cross_entropy(scored, labels)


def _target_summary(logits: np.ndarray, labels: np.ndarray) -> dict:
    """How many soft targets, how often their top class is right, and how sharp they are (mean top probability)."""
    if not labels.size:
        return {"clips": 0}
    probabilities = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1)
    return {
        "clips": int(labels.size),
        "accuracy": float((logits.argmax(axis=1) == labels).mean()),
        "mean_top_probability": float(probabilities.max(dim=1).values.mean()),
    }


def fuse_teachers(
    teacher_logits: dict[str, str | Path], train_cache: str | Path, test_cache: str | Path, fit: str,
    fit_clips: str | Path, student_clips: str | Path, holdout_clips: str | Path, out: EnsembleFiles,
    steps: int = 300, targets_cross_fitted: bool = False,
) -> dict:  # fmt: skip
    """Fit eq. 4 on the clips of `fit_clips` (`fit` says which they are: `holdout` or `in_sample`); write the
    fused and averaged ensembles and a report. `targets_cross_fitted`: the logits are cross-fitted (distill.crossfit),
    every student clip's from teachers that did not train on it.

    Outputs (layout.EnsembleFiles): the fused and averaged logits of all train and test clips (the format of
    distill.logits), and the report: alpha and its sum, beta, cross-entropies where fitted and on the hold-out,
    accuracy and target sharpness on the students' training clips (all of them, those the teachers trained on,
    those they did not; cross-fitted, none of them was seen), test metrics per device of every teacher and
    ensemble (measured, never used), and hold-out metrics of every teacher and of the average: the hold-out's
    locations are ones no teacher trained on, so their accuracy there is the development score on which teacher
    settings (epochs, augmentation) are chosen without the test split. The fused ensemble is left out there when
    it was fitted on those clips.
    """
    from dsflexinet.atomic import write_json
    from dsflexinet.data.cache import WaveformCache
    from dsflexinet.data.splits import read_clip_table
    from dsflexinet.distill.logits import load_logits, save_logits
    from dsflexinet.evaluate.metrics import scene_metrics

    caches = {"train": WaveformCache.open(train_cache), "test": WaveformCache.open(test_cache)}
    stacked = {
        split: np.stack([load_logits(path, cache.clips["filename"].tolist())[1] for path in teacher_logits.values()])
        for split, cache in caches.items()
    }
    labels = {split: cache.clips["label"].to_numpy() for split, cache in caches.items()}
    tables = {"fit": fit_clips, "students": student_clips, "holdout": holdout_clips}
    rows = {name: caches["train"].rows_of(read_clip_table(path), path) for name, path in tables.items()}
    if rows["fit"].size == 0:
        raise PipelineError(f"{fit_clips}: no clips to fit the fusion on")
    n_teachers, _, n_classes = stacked["train"].shape
    ensembles = {"average": Fusion.average(n_teachers, n_classes)}
    holdout = rows["holdout"]
    fit_report = {"on": fit, "clips": int(rows["fit"].size), "clip_table": str(fit_clips), "shrinkage": 0.0,
                  "kept": True}  # fmt: skip
    cross_fitted = None
    held_scenes = np.unique(labels["train"][holdout]).size
    if fit == "holdout" and held_scenes < n_classes:
        # beta has a number per scene: fitted without clips of some scenes, it pushes every clip towards the others
        fit_report |= {"kept": False, "why": f"the hold-out's {holdout.size} clips hold {held_scenes} of the"
                                             f" {n_classes} scenes: the fused targets are the average"}  # fmt: skip
    elif fit == "holdout":  # choose the shrinkage out of sample, keep the fit only if it beats the average there
        on_holdout = stacked["train"][:, holdout], labels["train"][holdout]
        scores = {shrinkage: cross_fitted_cross_entropy(*on_holdout, caches["train"].clips.iloc[holdout], steps,
                                                        shrinkage) for shrinkage in SHRINKAGE}  # fmt: skip
        fit_report["cross_fitted_cross_entropy"] = scores
        if all(score is not None for score in scores.values()):
            fit_report["shrinkage"], cross_fitted = min(scores.items(), key=lambda item: item[1])
        average = cross_entropy(ensembles["average"].apply(on_holdout[0]), on_holdout[1])
        if cross_fitted is None or cross_fitted >= average:
            # A hold-out of a few clips (a small subset) fits 22 numbers to noise: the average is the safer target.
            fit_report |= {"kept": False, "why": f"fitted fusion's held-out cross-entropy {cross_fitted} is not below"
                                                 f" the average's {average:.4f}: the fused targets are the average"}
    ensembles["fused"] = ensembles["average"]
    if fit_report["kept"]:
        ensembles["fused"] = fit_fusion(stacked["train"][:, rows["fit"]], labels["train"][rows["fit"]], steps=steps,
                                        shrinkage=fit_report["shrinkage"])  # fmt: skip

    test_devices = caches["test"].clips["device"].to_numpy()
    report: dict = {
        "teachers": list(teacher_logits),
        "targets": "cross_fitted" if targets_cross_fitted else "full_teachers",
        "fit": fit_report,
        "alpha": dict(zip(teacher_logits, ensembles["fused"].alpha.tolist(), strict=True)),
        "alpha_sum": float(ensembles["fused"].alpha.sum()),
        "beta": ensembles["fused"].beta.tolist(),
        "fit_cross_entropy": {},
        "holdout_cross_entropy": {},
        "student_train": {},
        "test": {},
        "holdout": {},
    }
    holdout_devices = caches["train"].clips["device"].to_numpy()[holdout]
    fitted_on_holdout = fit == "holdout" and fit_report["kept"]
    for index, name in enumerate(teacher_logits):
        report["test"][name] = scene_metrics(stacked["test"][index], labels["test"], test_devices)
        if holdout.size:
            report["holdout"][name] = scene_metrics(stacked["train"][index, holdout], labels["train"][holdout],
                                                    holdout_devices)  # fmt: skip
    for name, ensemble in ensembles.items():
        fused = {split: ensemble.apply(stacked[split]) for split in caches}
        report["fit_cross_entropy"][name] = cross_entropy(fused["train"][rows["fit"]], labels["train"][rows["fit"]])
        if holdout.size:
            report["holdout_cross_entropy"][name] = cross_entropy(fused["train"][holdout], labels["train"][holdout])
            if not (name == "fused" and fitted_on_holdout):
                report["holdout"][name] = scene_metrics(fused["train"][holdout], labels["train"][holdout],
                                                        holdout_devices)  # fmt: skip
        students = rows["students"]
        # Cross-fitted, the teachers whose logits a student clip's target holds never trained on it.
        held = np.ones(students.size, dtype=bool) if targets_cross_fitted else np.isin(students, holdout)
        report["student_train"][name] = _target_summary(fused["train"][students], labels["train"][students]) | {
            # Targets are sharper where the teachers learnt the clips than where the fit was scored.
            "teachers_saw": _target_summary(fused["train"][students[~held]], labels["train"][students[~held]]),
            "teachers_did_not_see": _target_summary(fused["train"][students[held]], labels["train"][students[held]]),
        }
        report["test"][name] = scene_metrics(fused["test"], labels["test"], test_devices)
        filenames = np.concatenate([cache.clips["filename"].to_numpy() for cache in caches.values()])
        save_logits(out.logits(name), filenames, np.concatenate([fused[split] for split in caches]))
    if cross_fitted is not None:
        report["holdout_cross_entropy"]["fused"] = cross_fitted
    write_json(out.report, report)
    return report


def write_holdout_outcomes(
    teacher_logits: dict[str, str | Path], train_cache: str | Path, holdout_clips: str | Path,
    fusion_report: str | Path, out_average: str | Path, out_fused: str | Path, steps: int = 300,
) -> dict[str, float]:  # fmt: skip
    """Per-clip outcomes (evaluate.metrics.clip_outcomes) of the averaged and the fused ensemble on the fusion
    hold-out, out of sample: a fusion fitted on those very clips scores each of two folds by the fit on the
    other, with the shrinkage fusion.json chose; any other fusion is applied as fitted. A development run
    compares the teachers with a student there, paired clip by clip. Returns each ensemble's accuracy."""
    from dsflexinet.atomic import atomic_path, read_json
    from dsflexinet.data.cache import WaveformCache
    from dsflexinet.data.splits import read_clip_table
    from dsflexinet.distill.logits import load_logits
    from dsflexinet.evaluate.metrics import clip_outcomes

    cache = WaveformCache.open(train_cache)
    rows = cache.rows_of(read_clip_table(holdout_clips), holdout_clips)
    clips = cache.clips.iloc[rows].reset_index(drop=True)
    names = clips["filename"].tolist()
    stacked = np.stack([load_logits(path, names)[1] for path in teacher_logits.values()])
    labels = clips["label"].to_numpy()
    report = read_json(fusion_report)
    if report["fit"]["on"] == "holdout" and report["fit"]["kept"]:
        fused = cross_fitted_logits(stacked, labels, clips, steps, report["fit"]["shrinkage"])
    else:
        fused = Fusion(np.array(list(report["alpha"].values())), np.array(report["beta"])).apply(stacked)
    ensembles = {"average": Fusion.average(*stacked.shape[::2]).apply(stacked), "fused": fused}
    accuracy = {}
    for (name, logits), path in zip(ensembles.items(), (out_average, out_fused), strict=True):
        with atomic_path(path) as tmp:
            clip_outcomes(logits, clips).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        accuracy[name] = float((logits.argmax(axis=1) == labels).mean())
    return accuracy
