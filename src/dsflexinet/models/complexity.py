"""Model complexity as the DCASE low-complexity rules count it: parameters, MACs, size.

MACs follow torchinfo's convention (what the challenge's `nessi` helper reports), counted on the float model
before conv+BN fusion, for one clip of the model's 1 s input shape:
  - a layer is counted when it has no children, once per call, from its own `weight` and `bias`;
  - convolutions: (weight + bias elements) x output positions;
  - other layers (BatchNorm, LayerNorm): (weight + bias elements) once per sample.
Two additions where torchinfo undercounts transformers (PaSST), so the teachers' numbers mean real work:
  - Linear layers cost their weight + bias elements once per output row (per token), where torchinfo counts
    them once per sample;
  - attention's two matrix products (QK^T and AV) cost 2 x tokens^2 x width per sample; torchinfo sees no
    layer there.
For convolutional models (the students, CP-ResNet) the count is torchinfo's exactly.

Size in KB is parameters x bytes per parameter / 1000 (the paper's Size column: float32, and int8 after QAT).

The DCASE limits (`check_limits`) are those of Task 1 in 2022-2024: 30 million MACs per 1 s clip and 128 kB
of parameter memory at the precision the parameters are stored in. In 2022: "the maximum number of allowed
parameters, including the zero-valued ones, was 128 K, with parameters being represented using INT8
numerical format; and the maximum number of multiply-accumulate operations at inference time was 30
million" (Martin-Morato et al., "Low-complexity acoustic scene classification in DCASE 2022 Challenge",
arXiv:2206.03835). In 2024 the baseline restricts "the model size to 128 kB and the number of
multiply-accumulate operations for a one-second audio clip to 30 million" (CPJKU/dcase2024_task1_baseline,
README) and checks MAX_PARAMS_MEMORY = 128_000 (bytes) and MAX_MACS = 30_000_000 (helpers/nessi.py): a kB is
1000 bytes, and an int8 parameter is one byte, so 128 K int8 parameters and 128 kB are the same limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from dsflexinet.errors import PipelineError
from dsflexinet.models.passt import Attention
from dsflexinet.models.registry import build_model, model_spec

MAX_MACS = 30_000_000  # DCASE 2022-2024 Task 1, per 1 s clip
MAX_PARAM_BYTES = 128_000  # DCASE 2022-2024 Task 1: 128 kB of parameters at their stored precision
BYTES_PER_PARAMETER = {"int8": 1, "float16": 2, "float32": 4}


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    elements = sum(p.numel() for name, p in module.named_parameters(recurse=False) if name in ("weight", "bias"))
    if isinstance(module, nn.modules.conv._ConvNd):
        return elements * output.shape[0] * math.prod(output.shape[2:])
    if isinstance(module, nn.Linear):
        return elements * math.prod(output.shape[:-1])
    return elements * output.shape[0]


def _attention_macs(module: Attention, output: torch.Tensor) -> int:
    batch, tokens, width = output.shape
    return 2 * batch * tokens * tokens * width


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass in eval mode on one input of `input_shape` (no batch axis)."""
    total = 0

    def hook(rule):
        def count(module, inputs, output):
            nonlocal total
            total += rule(module, output)

        return count

    handles = []
    for module in model.modules():
        if isinstance(module, Attention):
            handles.append(module.register_forward_hook(hook(_attention_macs)))
        elif not any(module.children()):
            handles.append(module.register_forward_hook(hook(_layer_macs)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def complexity(model: nn.Module, input_shape: Sequence[int]) -> dict:
    """Parameters, MACs per clip and size in KB (float32 and int8) of `model`."""
    params = sum(p.numel() for p in model.parameters())
    return {
        "params": params,
        "macs": count_macs(model, input_shape),
        "size_kb_float32": params * 4 / 1000,
        "size_kb_int8": params / 1000,
    }


def complexity_table(names: Sequence[str], options: dict | None = None) -> list[dict]:
    """One row per registered model, each built with `options` (as a job spec's `model.options`)."""
    rows = []
    for name in names:
        spec = model_spec(name)
        model = build_model(name, **(options or {}))
        shape = spec.input_shape
        rows.append({"model": name, "options": options or {}, "input_shape": list(shape), **complexity(model, shape)})
    return rows


def param_bytes(params: int, precision: str) -> int:
    """Parameter memory in bytes at the precision the parameters are stored in (int8 after QAT)."""
    if precision not in BYTES_PER_PARAMETER:
        raise PipelineError(f"precision {precision!r} is not one of {', '.join(BYTES_PER_PARAMETER)}")
    return params * BYTES_PER_PARAMETER[precision]


def check_limits(
    run: str,
    row: Mapping,
    max_macs: float = MAX_MACS,
    max_param_bytes: float = MAX_PARAM_BYTES,
    precision: str = "int8",
) -> dict:
    """Fail with one line naming the run and the number over a limit; otherwise the figures the limits judge.

    `row` is a `complexity` row (params, macs); the limits are config keys complexity.max_macs and
    complexity.max_param_bytes, and the messages name them.
    """
    memory = param_bytes(row["params"], precision)
    if row["macs"] > max_macs:
        raise PipelineError(
            f"run {run}: {row['macs']:,} MACs ({row['macs'] / 1e6:.2f} M) exceed complexity.max_macs "
            f"({max_macs:,.0f})"
        )
    if memory > max_param_bytes:
        raise PipelineError(
            f"run {run}: {memory:,} bytes of parameters ({row['params']:,} at {precision}) exceed "
            f"complexity.max_param_bytes ({max_param_bytes:,.0f})"
        )
    return {"precision": precision, "param_bytes": memory, "max_macs": max_macs, "max_param_bytes": max_param_bytes}
