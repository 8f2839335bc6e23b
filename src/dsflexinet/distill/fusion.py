"""Teacher fusion (paper eq. 4): h(i, t) = sum_k alpha_k * logits_k(i, t) + beta_i, fitted on training logits.

The averaged ensemble (alpha_k = 1/K, beta = 0) is both the baseline of Table IV and the starting point of the
fit, so a fitted fusion can only lower the training cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

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


def fit_fusion(logits: np.ndarray, labels: np.ndarray, steps: int = 300, weight_decay: float = 0.0) -> Fusion:
    """Minimise the cross-entropy of the fused logits [K, N, C] w.r.t. alpha and beta with L-BFGS."""
    stacked = torch.as_tensor(logits, dtype=torch.float64)
    targets = torch.as_tensor(labels, dtype=torch.int64)
    start = Fusion.average(stacked.shape[0], stacked.shape[2])
    alpha = torch.tensor(start.alpha, requires_grad=True)
    beta = torch.tensor(start.beta, requires_grad=True)
    optimizer = torch.optim.LBFGS([alpha, beta], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        fused = torch.einsum("k,knc->nc", alpha, stacked) + beta
        loss = F.cross_entropy(fused, targets) + weight_decay * (alpha.square().sum() + beta.square().sum())
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = Fusion(alpha.detach().numpy(), beta.detach().numpy())
    # L-BFGS may stop on a worse point after a failed line search; never return worse than the start.
    if cross_entropy(fitted.apply(logits), labels) > cross_entropy(start.apply(logits), labels):
        return start
    return fitted


def fuse_teachers(
    teacher_logits: dict[str, str | Path], train_cache: str | Path, test_cache: str | Path, out: EnsembleFiles,
    steps: int = 300,
) -> dict:  # fmt: skip
    """Fit eq. 4 on the training clips; write the fused and averaged ensembles and how every teacher scores.

    Outputs (layout.EnsembleFiles): the fused and averaged logits of all train and test clips (the format of
    distill.logits), and the report (alpha, beta, training cross-entropies, test metrics per device of each
    teacher, the average and the fusion).
    """
    from dsflexinet.atomic import write_json
    from dsflexinet.data.cache import WaveformCache
    from dsflexinet.distill.logits import load_logits, save_logits
    from dsflexinet.evaluate.metrics import scene_metrics

    splits = {"train": WaveformCache.open(train_cache).clips, "test": WaveformCache.open(test_cache).clips}
    stacked = {
        split: np.stack([load_logits(path, clips["filename"].tolist())[1] for path in teacher_logits.values()])
        for split, clips in splits.items()
    }
    labels = {split: clips["label"].to_numpy() for split, clips in splits.items()}
    n_teachers, _, n_classes = stacked["train"].shape
    ensembles = {"average": Fusion.average(n_teachers, n_classes)}
    ensembles["fused"] = fit_fusion(stacked["train"], labels["train"], steps=steps)

    test_devices = splits["test"]["device"].to_numpy()
    report: dict = {
        "teachers": list(teacher_logits),
        "alpha": dict(zip(teacher_logits, ensembles["fused"].alpha.tolist(), strict=True)),
        "beta": ensembles["fused"].beta.tolist(),
        "train_cross_entropy": {},
        "test": {},
    }
    for index, name in enumerate(teacher_logits):
        report["test"][name] = scene_metrics(stacked["test"][index], labels["test"], test_devices)
    for name, ensemble in ensembles.items():
        fused = {split: ensemble.apply(stacked[split]) for split in splits}
        report["train_cross_entropy"][name] = cross_entropy(fused["train"], labels["train"])
        report["test"][name] = scene_metrics(fused["test"], labels["test"], test_devices)
        filenames = np.concatenate([splits[split]["filename"].to_numpy() for split in splits])
        save_logits(out.logits(name), filenames, np.concatenate([fused[split] for split in splits]))
    write_json(out.report, report)
    return report
