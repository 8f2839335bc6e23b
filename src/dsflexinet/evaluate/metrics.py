"""Scene-classification metrics in the paper's breakdown: per device, per device group, overall, per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import log_softmax

from dsflexinet.data.tau22 import DEVICE_GROUPS, DEVICES, SCENES

# The per-clip table an evaluation writes beside its JSON: what intervals resample (report.stats). `identifier`
# is the recording location; label and prediction are indices into SCENES; nll = -log p(true class).
OUTCOME_COLUMNS = ("filename", "identifier", "device", "label", "prediction", "nll")


def clip_outcomes(logits: np.ndarray, clips: pd.DataFrame) -> pd.DataFrame:
    """One row per clip of a labelled split (a cache's clip table): OUTCOME_COLUMNS."""
    log_probabilities = log_softmax(np.asarray(logits, dtype=np.float64), axis=1)
    labels = clips["label"].to_numpy()
    return pd.DataFrame({
        "filename": clips["filename"].to_numpy(), "identifier": clips["identifier"].to_numpy(),
        "device": clips["device"].to_numpy(), "label": labels, "prediction": logits.argmax(axis=1),
        "nll": -log_probabilities[np.arange(labels.size), labels],
    })  # fmt: skip


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int = len(SCENES)) -> np.ndarray:
    """Counts [true class, predicted class]."""
    return np.bincount(labels * n_classes + predictions, minlength=n_classes**2).reshape(n_classes, n_classes)


def scene_metrics(logits: np.ndarray, labels: np.ndarray, devices: np.ndarray) -> dict:
    """Accuracy overall, class-averaged, per device (a, b, c, s1-s6), per group and per scene; the confusion
    matrix; the log loss. Devices absent from the split are left out rather than reported as zero."""
    labels = np.asarray(labels, dtype=np.int64)
    devices = np.asarray(devices)
    predictions = np.asarray(logits).argmax(axis=1)
    correct = predictions == labels
    matrix = confusion_matrix(labels, predictions)
    per_scene = {scene: float(matrix[i, i] / matrix[i].sum()) for i, scene in enumerate(SCENES) if matrix[i].sum()}
    per_device = {
        device: {"accuracy": float(correct[devices == device].mean()), "clips": int((devices == device).sum())}
        for device in DEVICES
        if (devices == device).any()
    }
    per_group = {}
    for group, members in DEVICE_GROUPS.items():
        mask = np.isin(devices, members)
        if mask.any():
            per_group[group] = {"accuracy": float(correct[mask].mean()), "clips": int(mask.sum())}
    log_loss = -log_softmax(np.asarray(logits, dtype=np.float64), axis=1)[np.arange(labels.size), labels].mean()
    return {
        "clips": int(labels.size),
        "accuracy": float(correct.mean()),
        "class_averaged_accuracy": float(np.mean(list(per_scene.values()))),
        "log_loss": float(log_loss),
        "devices": per_device,
        "groups": per_group,
        "scenes": per_scene,
        "labels": list(SCENES),
        "confusion_matrix": matrix.tolist(),
    }


def evaluate_model(
    model_path: str | Path, cache_path: str | Path, out_json: str | Path, out_clips: str | Path,
    clip_table: str | Path | None = None,
) -> dict:  # fmt: skip
    """Score a float or int8 model on a labelled split, or on the clips of `clip_table` in it (a development
    run's hold-out); the JSON is what tables, figures and DVC read (with the machines that trained and measured
    the model), the clip table what their intervals resample."""
    from dsflexinet.atomic import atomic_path, write_json
    from dsflexinet.data.cache import WaveformCache
    from dsflexinet.data.splits import read_clip_table
    from dsflexinet.evaluate.inference import predict_logits
    from dsflexinet.machine import describe_machine
    from dsflexinet.modelfile import load_classifier

    classifier = load_classifier(model_path)
    cache = WaveformCache.open(cache_path)
    clips, waves = cache.clips, cache.waves
    if clip_table is not None:
        rows = cache.rows_of(read_clip_table(clip_table), clip_table)
        clips, waves = clips.iloc[rows].reset_index(drop=True), waves[rows]
    logits = predict_logits(classifier, waves)
    metrics = {"model": str(model_path), "split": str(cache_path)}
    metrics |= {"clips_of": str(clip_table)} if clip_table else {}
    metrics |= {"trained_on": list(classifier.trained_on), "measured_on": describe_machine()}
    metrics |= scene_metrics(logits, clips["label"].to_numpy(), clips["device"].to_numpy())
    with atomic_path(out_clips) as tmp:
        clip_outcomes(logits, clips).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    write_json(out_json, metrics)
    return metrics
