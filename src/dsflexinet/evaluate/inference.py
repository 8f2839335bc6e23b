"""Inference: a trained model as one waveform -> logits callable, run over caches in batches.

Two kinds of model file load here: a float `model.pt` of the training step (rebuilt from its spec with this
package) and an exported TorchScript classifier (the int8 model of the QAT step, loadable without this code).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dsflexinet.audio.frontend import build_frontend
from dsflexinet.data.cache import WaveformCache
from dsflexinet.errors import PipelineError
from dsflexinet.models.registry import build_model
from dsflexinet.quant.qat import ENGINE_RECORD, use_engine

EVAL_BATCH = 128


class WaveformClassifier(nn.Module):
    """Frontend (eval mode: no augmentation) and model: 32 kHz waveforms (N, samples) -> logits (N, classes)."""

    def __init__(self, frontend: nn.Module, model: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.model = model

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.model(self.frontend(waves))


def rebuild(spec: dict, state_dict: dict | None = None) -> WaveformClassifier:
    """The float classifier a training spec describes, with trained weights if given."""
    model = build_model(spec["model"]["name"], **spec["model"].get("options", {}))
    if state_dict is not None:
        model.load_state_dict(state_dict)
    frontend = build_frontend(spec["frontend"]["preset"], **spec["frontend"].get("options", {}))
    return WaveformClassifier(frontend, model).eval()


def _torchscript_extra_files(path: Path) -> dict[str, bytes] | None:
    """The extra files of a TorchScript archive; None for any other file. TorchScript archives hold compiled
    code and constants.pkl, torch.save archives only data.pkl."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(name.endswith("/constants.pkl") for name in names):
                return None
            damaged = archive.testzip()  # torch.jit.load does not check CRCs: a flipped weight would load silently
            if damaged is not None:
                raise PipelineError(f"{path}: damaged model archive ({damaged} fails its CRC check)")
            return {name.split("/extra/", 1)[1]: archive.read(name) for name in names if "/extra/" in name}
    except (zipfile.BadZipFile, OSError) as error:
        raise PipelineError(f"{path}: damaged model archive ({error})") from None


def load_classifier(path: str | Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """A float model.pt or an exported TorchScript classifier, ready for inference; an int8 classifier switches
    this process to the quantized engine it was converted for."""
    from dsflexinet.train.run import load_model_file

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: model file not found")
    extra_files = _torchscript_extra_files(path)
    if extra_files is not None:
        if ENGINE_RECORD in extra_files:  # select it before loading: the engine repacks the weights
            use_engine(extra_files[ENGINE_RECORD].decode(errors="replace"), str(path))
        try:
            return torch.jit.load(path, map_location="cpu").eval()
        except RuntimeError as error:
            raise PipelineError(f"{path}: not a loadable TorchScript model ({str(error).splitlines()[0]})") from None
    payload = load_model_file(path)
    return rebuild(payload["spec"], payload["state_dict"])


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
