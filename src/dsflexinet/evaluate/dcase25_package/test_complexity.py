"""The DCASE 2025 complexity limits, checked on every model file this package ships (each device's model on its
own): `python -m <package>.test_complexity`, or pytest on this file.

complexity.json, written by the pipeline that trained the models, records each model's parameters (DCASE's
count, before BatchNorm is folded into the convolutions) and MACs per 1 s clip, and the limits. Here the int8
weights actually stored in each file are counted and must not exceed the recorded count, and the recorded
counts must lie within the limits: 128 kB of parameters at one byte per int8 parameter, 30 M MACs.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch

from . import MODELS, load_model

COMPLEXITY = Path(__file__).resolve().parent / "complexity.json"
BYTES_PER_PARAMETER = {"int8": 1, "float16": 2, "float32": 4}


def stored_parameters(model: torch.jit.ScriptModule) -> int:
    """Weights and biases of the int8 convolutions and linear layers (unpacked), and every float parameter (the
    frontend holds none: its window and filterbank are constants)."""
    count = sum(parameter.numel() for parameter in model.parameters())
    for module in model.modules():
        if hasattr(module, "_packed_params"):
            packed = module._packed_params
            try:
                weight, bias = torch.ops.quantized.conv2d_unpack(packed)
            except RuntimeError:
                weight, bias = torch.ops.quantized.linear_unpack(packed)
            count += weight.numel() + (0 if bias is None else bias.numel())
    return count


def check_complexity() -> list[str]:
    """One line per model: its counts against the limits; raises AssertionError on the first model over one."""
    record = json.loads(COMPLEXITY.read_text())
    limits = record["limits"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        models = load_model(MODELS)
    assert sorted(models) == sorted(record["models"]), f"model files {sorted(models)} != {sorted(record['models'])}"
    lines = []
    for device, row in record["models"].items():
        stored = stored_parameters(models[device])
        memory = row["params"] * BYTES_PER_PARAMETER[limits["precision"]]
        recorded, most = row["params"], limits["max_param_bytes"]
        assert stored <= recorded, f"{device}: {stored:,} stored parameters, more than the recorded {recorded:,}"
        assert memory <= most, f"{device}: {memory:,} bytes of parameters > {most:,}"
        assert row["macs"] <= limits["max_macs"], f"{device}: {row['macs']:,} MACs > {limits['max_macs']:,}"
        lines.append(f"{device}: {row['params']:,} parameters ({stored:,} stored in int8), {memory:,} bytes, "
                     f"{row['macs'] / 1e6:.2f} M MACs: within the limits")  # fmt: skip
    return lines


def test_every_model_is_within_the_limits() -> None:
    assert len(check_complexity()) >= 1


if __name__ == "__main__":
    print("\n".join(check_complexity()))
    sys.exit(0)
