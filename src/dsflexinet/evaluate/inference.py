"""Inference: a loaded classifier (see modelfile.load_classifier) run over waveform arrays and caches in batches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dsflexinet.data.cache import WaveformCache

EVAL_BATCH = 128


@torch.inference_mode()
def predict_logits(classifier: Callable[[torch.Tensor], torch.Tensor], waves: np.ndarray) -> np.ndarray:
    """Logits for every row of a (memory-mapped) waveform array, in batches."""
    outputs = []
    for start in range(0, len(waves), EVAL_BATCH):
        batch = torch.from_numpy(np.ascontiguousarray(waves[start : start + EVAL_BATCH], dtype=np.float32))
        outputs.append(classifier(batch).float().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


def cache_logits(classifier: Callable, cache_path: str | Path) -> tuple[WaveformCache, np.ndarray]:
    cache = WaveformCache.open(cache_path)
    return cache, predict_logits(classifier, cache.waves)
