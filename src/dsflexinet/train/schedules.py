"""Schedules: the public recipe's learning-rate shape and the KD label weight that moves during training."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LearningRateShape:
    """Epoch boundaries of the schedule (CP-JKU: warm-up 14, ramp-down from 50 over 84 to 0.005 x lr)."""

    warmup_epochs: float
    rampdown_start: float
    rampdown_epochs: float
    min_factor: float

    def factor(self, epoch: float) -> float:
        """The multiplier of the base learning rate at a (fractional) epoch."""
        if epoch < self.warmup_epochs:
            # exp(-5 (1 - t)^2): starts near zero, reaches 1 at the end of the warm-up.
            return math.exp(-5.0 * (1.0 - epoch / self.warmup_epochs) ** 2)
        if epoch < self.rampdown_start:
            return 1.0
        if self.rampdown_epochs <= 0:
            return self.min_factor
        done = min((epoch - self.rampdown_start) / self.rampdown_epochs, 1.0)
        return 1.0 - (1.0 - self.min_factor) * done


def scheduled_value(schedule: dict, progress: float) -> float:
    """A hyper-parameter that moves during training; `progress` runs from 0 (start) to 1 (last step).

    `{"schedule": "constant", "value": v}`, `{"schedule": "linear", "start": a, "end": b}` or
    `{"schedule": "cosine", "start": a, "end": b}`.
    """
    progress = min(max(progress, 0.0), 1.0)
    kind = schedule["schedule"]
    if kind == "constant":
        return float(schedule["value"])
    start, end = float(schedule["start"]), float(schedule["end"])
    if kind == "linear":
        return start + (end - start) * progress
    if kind == "cosine":
        return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {kind!r}")
