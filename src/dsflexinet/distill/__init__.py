"""Distillation: teacher logit dumps, fusion (paper eq. 4) and the KD loss (eq. 5)."""
