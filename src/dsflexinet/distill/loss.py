"""The distillation objective (paper eq. 5): lambda * CE(label) + (1 - lambda) * KD.

KD is the temperature-scaled KL divergence from the teacher distribution softmax(h / T) to the student's,
times T^2 so its gradient scale does not depend on T (Hinton et al.). KL and the cross-entropy named in the
paper differ by the teacher's entropy, a constant: the gradients are the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    label_weight: float,
    temperature: float,
) -> torch.Tensor:
    label_loss = F.cross_entropy(student_logits, labels)
    if teacher_logits is None:
        return label_loss
    kd = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return label_weight * label_loss + (1 - label_weight) * kd * temperature**2
