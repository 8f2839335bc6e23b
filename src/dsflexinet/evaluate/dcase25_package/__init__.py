"""DCASE 2025 Task 1 inference: a DS-FlexiNet student per recording device, int8 TorchScript.

Written by the dsflexinet pipeline (`snakemake dcase25_package`) into an installable package named after the
submission, with its model files beside this module; it needs torch, torchaudio, numpy and soundfile only. Each
model file holds the log-mel frontend and the int8 model together (waveforms in, logits out) and records the
input it expects (sample rate, clip length, class order) and the quantized engine it was converted for.

    models/general.pt    the general model: for a device without a model of its own, or none recognised
    models/<device>.pt   a copy fine-tuned on one training device's clips (a, b, c, s1, s2, s3)

The task's API: `load_model`, `load_inputs`, `get_model_for_device`, `predict`. A device ID comes from the
caller or, where the caller gives none, from a TAU22 file name (`<scene>-<city>-<loc>-<segment>-<device>.wav`);
an ID no model is named after (an unseen device, `unknown`, no ID) is classified by the general model.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

MODELS = Path(__file__).resolve().parent / "models"
GENERAL = "general"
UNKNOWN = "unknown"
BATCH = 64
DEVICES = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")  # TAU22's devices, as file names end


class DeviceModels(dict):
    """{device ID or "general": TorchScript model}, and the input every one of them expects."""

    def __init__(self, models: dict, sample_rate: int, clip_samples: int, classes: list[str]):
        super().__init__(models)
        self.sample_rate, self.clip_samples, self.classes = sample_rate, clip_samples, classes


def _extra_files(path: Path) -> dict[str, bytes]:
    """The records a model file carries, read before torch loads it."""
    with zipfile.ZipFile(path) as archive:
        return {name.split("/extra/", 1)[1]: archive.read(name) for name in archive.namelist() if "/extra/" in name}


def _load_file(path: Path) -> tuple[torch.jit.ScriptModule, dict]:
    records = _extra_files(path)
    if "input.json" not in records:
        raise ValueError(f"{path}: not a model file of this package (no input record)")
    engine = records.get("quantized_engine", b"").decode()
    if engine:  # int8 weights are repacked for the engine as the model loads: select it first
        torch.backends.quantized.engine = engine
    return torch.jit.load(str(path), map_location="cpu").eval(), json.loads(records["input.json"])


def load_model(model_file_path: str | Path | None = None) -> DeviceModels:
    """Every model of a folder (default: this package's), by device ID; `general` must be among them."""
    folder = Path(model_file_path) if model_file_path is not None else MODELS
    files = sorted(folder.glob("*.pt"))
    models, inputs = {}, set()
    for path in files:
        models[path.stem], model_input = _load_file(path)
        inputs.add(json.dumps(model_input, sort_keys=True))
    if GENERAL not in models:
        raise FileNotFoundError(f"{folder}: no {GENERAL}.pt (the model for unknown devices)")
    if len(inputs) != 1:
        raise ValueError(f"{folder}: the models expect different inputs ({len(inputs)} kinds)")
    model_input = json.loads(inputs.pop())
    return DeviceModels(models, model_input["sample_rate"], model_input["clip_samples"], model_input["classes"])


def device_from_file_name(path: str | Path) -> str:
    """The device a TAU22 file name ends in (`...-s2.wav` -> s2), or `unknown`."""
    last = Path(path).stem.rsplit("-", 1)[-1]
    return last if last in DEVICES and "-" in Path(path).stem else UNKNOWN


def load_inputs(
    file_paths: Sequence[str | Path], device_ids: Sequence[str | None] | None = None, sample_rate: int = 32000,
    clip_samples: int = 32000,
) -> tuple[torch.Tensor, list[str]]:  # fmt: skip
    """Waveforms (N, clip_samples): each file mixed to mono, resampled to `sample_rate` (torchaudio's
    windowed sinc), cut or zero-padded to one clip; and each clip's device ID (given, else from its name)."""
    if device_ids is not None and len(device_ids) != len(file_paths):
        raise ValueError(f"{len(device_ids)} device IDs for {len(file_paths)} files")
    waves = []
    for path in file_paths:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        wave = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1)))
        if rate != sample_rate:
            wave = torchaudio.functional.resample(wave, rate, sample_rate)
        wave = wave[:clip_samples]
        waves.append(torch.nn.functional.pad(wave, (0, clip_samples - wave.shape[0])))
    given = device_ids if device_ids is not None else [None] * len(file_paths)
    devices = [device or device_from_file_name(path) for path, device in zip(file_paths, given, strict=True)]
    stacked = torch.stack(waves) if waves else torch.zeros((0, clip_samples))
    return stacked, devices


def get_model_for_device(models: DeviceModels, device_id: str | None) -> torch.jit.ScriptModule:
    """The device's own model, or the general one for any device without one."""
    return models.get(device_id or GENERAL, models[GENERAL])


@torch.inference_mode()
def predict(
    file_paths: Sequence[str | Path], device_ids: Sequence[str | None] | None = None,
    model_file_path: str | Path | None = None,
) -> tuple[torch.Tensor, list[str]]:  # fmt: skip
    """Logits (N, classes) of each file by its device's model, and the class names in the logits' order."""
    models = load_model(model_file_path)
    waves, devices = load_inputs(file_paths, device_ids, models.sample_rate, models.clip_samples)
    logits = torch.zeros((len(devices), len(models.classes)))
    for device in sorted(set(devices)):
        rows = [index for index, other in enumerate(devices) if other == device]
        model = get_model_for_device(models, device)
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            logits[batch] = model(waves[batch]).float()
    return logits, list(models.classes)
