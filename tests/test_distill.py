"""Fusion (eq. 4), the KD loss (eq. 5), schedules, logit files and the metrics breakdown."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dsflexinet.distill.fusion import Fusion, cross_entropy, fit_fusion
from dsflexinet.distill.logits import load_logits, save_logits
from dsflexinet.distill.loss import distillation_loss
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.metrics import scene_metrics
from dsflexinet.train.schedules import LearningRateShape, scheduled_value


def teacher_logits(seed: int = 0, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Three teachers of different quality and calibration on the same clips."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    onehot = np.eye(10)[labels]
    good = 4.0 * onehot + rng.normal(0, 1.0, (n, 10))
    overconfident = 12.0 * onehot + rng.normal(0, 6.0, (n, 10))
    noise = rng.normal(0, 1.0, (n, 10)) + np.linspace(0, 2, 10)  # useless and biased towards class 9
    return np.stack([good, overconfident, noise]), labels


def test_average_is_eq4_with_equal_weights() -> None:
    logits, _ = teacher_logits()
    np.testing.assert_allclose(Fusion.average(3, 10).apply(logits), logits.mean(axis=0))


def test_fusion_beats_average_on_training_cross_entropy() -> None:
    logits, labels = teacher_logits()
    fitted = fit_fusion(logits, labels, steps=200)
    average = Fusion.average(3, 10)
    assert cross_entropy(fitted.apply(logits), labels) < 0.9 * cross_entropy(average.apply(logits), labels)
    assert not np.allclose(fitted.alpha, average.alpha)
    assert np.abs(fitted.beta).max() > 1e-3
    # The useless teacher gets the smallest weight; the bias undoes its lean towards class 9.
    assert abs(fitted.alpha[2]) < min(abs(fitted.alpha[0]), abs(fitted.alpha[1]))


def test_fusion_matches_hand_computed_eq4() -> None:
    logits, _ = teacher_logits(n=4)
    fusion = Fusion(np.array([0.5, 0.25, -1.0]), np.arange(10.0))
    expected = 0.5 * logits[0] + 0.25 * logits[1] - 1.0 * logits[2] + np.arange(10.0)
    np.testing.assert_allclose(fusion.apply(logits), expected)


def test_kd_loss_is_eq5() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 10), torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    temperature, weight = 2.0, 0.3
    p_teacher = torch.softmax(teacher / temperature, dim=1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / temperature, dim=1))).sum(1).mean()
    expected = weight * torch.nn.functional.cross_entropy(student, labels) + (1 - weight) * kl * temperature**2
    assert distillation_loss(student, labels, teacher, weight, temperature).item() == pytest.approx(expected.item())
    label_only = distillation_loss(student, labels, None, weight, temperature)
    assert label_only.item() == pytest.approx(torch.nn.functional.cross_entropy(student, labels).item())


def test_kd_term_vanishes_when_student_equals_teacher() -> None:
    logits = torch.randn(4, 10)
    labels = logits.argmax(dim=1)
    loss = distillation_loss(logits, labels, logits.clone(), label_weight=0.0, temperature=2.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_learning_rate_shape() -> None:
    shape = LearningRateShape(warmup_epochs=14, rampdown_start=50, rampdown_epochs=84, min_factor=0.005)
    assert shape.factor(0) == pytest.approx(math.exp(-5))
    assert shape.factor(14) == 1.0 and shape.factor(49.9) == 1.0
    assert shape.factor(50 + 42) == pytest.approx(1 - 0.995 / 2)
    assert shape.factor(134) == pytest.approx(0.005) and shape.factor(150) == pytest.approx(0.005)


def test_label_weight_schedules() -> None:
    assert scheduled_value({"schedule": "constant", "value": 0.02}, 0.7) == 0.02
    linear = {"schedule": "linear", "start": 0.5, "end": 0.1}
    assert [scheduled_value(linear, p) for p in (0, 0.5, 1, 2)] == pytest.approx([0.5, 0.3, 0.1, 0.1])
    cosine = {"schedule": "cosine", "start": 1.0, "end": 0.0}
    assert scheduled_value(cosine, 0.5) == pytest.approx(0.5) and scheduled_value(cosine, 1) == pytest.approx(0)


def test_logit_file_round_trip_by_name(tmp_path: Path) -> None:
    names = [f"audio/clip-{i}.wav" for i in range(5)]
    logits = np.arange(50, dtype=np.float32).reshape(5, 10)
    save_logits(tmp_path / "t.npz", names, logits)
    _, picked = load_logits(tmp_path / "t.npz", [names[3], names[0]])
    np.testing.assert_array_equal(picked, logits[[3, 0]])
    with pytest.raises(PipelineError, match=r"t\.npz: no logits for audio/absent\.wav \(1 clips missing\)"):
        load_logits(tmp_path / "t.npz", ["audio/absent.wav"])


def test_metrics_breakdown() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    devices = np.array(["a", "a", "s4", "s4", "b", "s1"])
    logits = np.eye(10)[[0, 1, 1, 1, 0, 2]]  # wrong on clip 1 (a) and clip 4 (b)
    metrics = scene_metrics(logits, labels, devices)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["devices"]["a"] == {"accuracy": 0.5, "clips": 2}
    assert metrics["devices"]["s4"]["accuracy"] == 1.0 and "s5" not in metrics["devices"]
    assert metrics["groups"]["real"]["accuracy"] == pytest.approx(1 / 3)
    assert metrics["groups"]["unseen_simulated"]["accuracy"] == 1.0
    assert metrics["class_averaged_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert metrics["confusion_matrix"][0][:3] == [1, 1, 0] and metrics["confusion_matrix"][2][:3] == [1, 0, 1]
