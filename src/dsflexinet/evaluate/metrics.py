"""Scene-classification metrics in the paper's breakdown: per device, per device group, overall, per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dsflexinet.data.tau22 import DEVICE_GROUPS, DEVICES, SCENES


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
    log_loss = F.cross_entropy(torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(labels))
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


def evaluate_model(model_path: str | Path, cache_path: str | Path, out_json: str | Path) -> dict:
    """Score a float or int8 model on a labelled split; the JSON is what tables, figures and DVC read."""
    from dsflexinet.atomic import write_json
    from dsflexinet.evaluate.inference import cache_logits
    from dsflexinet.modelfile import load_classifier

    cache, logits = cache_logits(load_classifier(model_path), cache_path)
    metrics = {"model": str(model_path), "split": str(cache_path)}
    metrics |= scene_metrics(logits, cache.clips["label"].to_numpy(), cache.clips["device"].to_numpy())
    write_json(out_json, metrics)
    return metrics
