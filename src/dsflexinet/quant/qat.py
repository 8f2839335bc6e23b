"""Eager-mode quantization-aware training: fuse, fake-quantize, freeze, convert to int8.

A model is QAT-ready when it has QuantStub/DeQuantStub at its borders, adds residuals through
`FloatFunctional` and offers `fuse_model()`, which fuses its conv+BN(+ReLU) runs. Normalisations with no
conv to fold into run in int8 too: a standalone BatchNorm through PyTorch's own mapping, ResNorm through the
QAT and int8 forms of quant/resnorm.py, which the mappings below add to PyTorch's.

PyTorch 2.14 marks eager quantization deprecated; it still runs, and the notices are silenced here. Run int8
models with deterministic-algorithms mode off (`Trainer(deterministic=True)` leaves it on; reported to break
int8 inference, though these models ran under it in our checks).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from types import MethodType

import torch
from torch import nn
from torch.ao.nn.intrinsic.qat import freeze_bn_stats as _freeze_bn
from torch.ao.nn.intrinsic.qat.modules.conv_fused import _ConvBnNd
from torch.ao.quantization import (
    FusedMovingAvgObsFakeQuantize,
    QConfig,
    convert,
    disable_observer,
    get_default_qat_module_mappings,
    get_default_qat_qconfig,
    get_default_static_quant_module_mappings,
)  # fmt: skip
from torch.ao.quantization import prepare_qat as _prepare_qat

from dsflexinet.errors import PipelineError
from dsflexinet.modelfile import use_engine
from dsflexinet.models.resnorm import ResNorm
from dsflexinet.quant.resnorm import QATResNorm, QuantizedResNorm

# float -> QAT and QAT -> int8 module swaps: PyTorch's, and ResNorm's.
QAT_MAPPINGS = {**get_default_qat_module_mappings(), ResNorm: QATResNorm}
INT8_MAPPINGS = {**get_default_static_quant_module_mappings(), QATResNorm: QuantizedResNorm}


@contextlib.contextmanager
def _eager_quantization() -> Iterator[None]:
    """Silence the deprecation notices of eager quantization: known, pinned, nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*reduce_range will be deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
        yield


class _FakeQuantizePerTensor(torch.autograd.Function):
    """PyTorch's per-tensor fake quantization kernel, `(clamp(round(x / scale) + zp) - zp) * scale` with the
    straight-through gradient inside the range, as vectorised element-wise passes: on CPU PyTorch's own kernel
    runs at about 5 ns per element, these at about 1. The arithmetic is the kernel's (x times the float
    reciprocal of the scale, round half to even), so outputs and masks agree bit for bit (tests/test_qat.py).
    A pass is saved by clamping the rounded value to the range shifted by the zero point, which is the same:
    adding and subtracting an integer is exact in float32 wherever the value is not clamped anyway, and adding
    0.0 makes the -0.0 of small negative values +0.0 as adding the zero point does. The mask is where clamping
    left the value unchanged: one comparison instead of two (NaN and infinities fall outside either way)."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, quant_min: int, quant_max: int):
        rounded = (x * (1.0 / scale)).round_().add_(0.0)
        low, high = quant_min - int(zero_point), quant_max - int(zero_point)
        if not ctx.needs_input_grad[0]:  # validation and inference need no mask
            return rounded.clamp_(low, high).mul_(scale)
        clamped = rounded.clamp(low, high)
        ctx.save_for_backward(clamped == rounded)
        return clamped.mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


class FastFakeQuantize(FusedMovingAvgObsFakeQuantize):
    """The default QAT activation fake quantizer with the same observer, state and scales, faster on CPU: the
    fused op of PyTorch observes a two-element tensor holding x's minimum and maximum (the same running
    min/max update and the same scale and zero point, by the same code), and the fake quantization of x
    itself runs as _FakeQuantizePerTensor. Per-channel, disabled and GPU fake quantization keep PyTorch's path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_per_channel or x.device.type != "cpu" or not self.fake_quant_enabled[0]:
            return super().forward(x)
        observer = self.activation_post_process
        # aminmax runs 6x slower over a channels-last tensor than over the same memory read in order
        in_memory_order = x.detach().permute(sorted(range(x.dim()), key=x.stride, reverse=True))
        torch.fused_moving_avg_obs_fake_quant(
            torch.stack(torch.aminmax(in_memory_order.reshape(-1))), self.observer_enabled, self.fake_quant_enabled,
            observer.min_val, observer.max_val, self.scale, self.zero_point, observer.averaging_constant,
            observer.quant_min, observer.quant_max, self.ch_axis, False, self.is_symmetric_quant,
        )  # fmt: skip
        return _FakeQuantizePerTensor.apply(x, self.scale, self.zero_point, observer.quant_min, observer.quant_max)


class _DivideByScale(torch.autograd.Function):
    """`conv / scale` with autograd's gradient, two full-size passes cheaper. Autograd's division saves its
    input and computes the scale's gradient as `sum(-grad * ((conv / scale) / scale))`, recomputing the
    quotient and negating the whole gradient; here the quotient is the saved output (the same bits) and the
    sign is taken after the sum (exact: rounding is symmetric in sign). It also keeps no tensor alive that
    the BatchNorm after it does not keep anyway."""

    @staticmethod
    def forward(ctx, conv: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        quotient = conv / scale
        ctx.save_for_backward(quotient, scale)
        return quotient

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        quotient, scale = ctx.saved_tensors
        grad_conv = grad / scale if ctx.needs_input_grad[0] else None
        grad_scale = None
        if ctx.needs_input_grad[1]:
            grad_scale = (grad * (quotient / scale)).sum_to_size(scale.shape).neg_()
        return grad_conv, grad_scale


def _conv_bn_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """PyTorch's fused conv+BN QAT forward (`_ConvBnNd._forward_approximate`, torch 2.14), the same operations
    in the same order, its division by the BN scale through _DivideByScale."""
    bn = module.bn
    scale_factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight_shape = [1] * module.weight.dim()
    weight_shape[0] = -1
    bias_shape = [1] * module.weight.dim()
    bias_shape[1] = -1
    scaled_weight = module.weight_fake_quant(module.weight * scale_factor.reshape(weight_shape))
    zero_bias = torch.zeros(module.out_channels, device=scaled_weight.device, dtype=x.dtype)
    conv = _DivideByScale.apply(module._conv_forward(x, scaled_weight, zero_bias), scale_factor.reshape(bias_shape))
    if module.bias is not None:
        conv = conv + module.bias.reshape(bias_shape)
    return bn(conv)


def _use_fast_conv_bn(model: nn.Module) -> None:
    """Route every fused conv+BN QAT module's forward through _conv_bn_forward. Replaced on each instance, not
    in a subclass: PyTorch's BN freezing and int8 conversion test these modules' exact types."""
    for module in model.modules():
        if isinstance(module, _ConvBnNd):
            module._forward_approximate = MethodType(_conv_bn_forward, module)


def qat_qconfig(backend: str) -> QConfig:
    """PyTorch's default QAT qconfig of `backend`, its activations fake-quantized by FastFakeQuantize."""
    default = get_default_qat_qconfig(backend)
    activation = default.activation.p
    if activation.func is not FusedMovingAvgObsFakeQuantize:
        raise PipelineError(f"the {backend} QAT qconfig fake-quantizes activations with {activation.func.__name__}")
    return QConfig(activation=FastFakeQuantize.with_args(**activation.keywords), weight=default.weight)


def prepare_qat(model: nn.Module, backend: str = "fbgemm") -> nn.Module:
    """Fuse `model` and insert fake quantization, in place; returns the same module, in training mode."""
    use_engine(backend)
    if not callable(getattr(model, "fuse_model", None)):
        raise PipelineError(f"{type(model).__name__} is not QAT-ready (it has no fuse_model())")
    model.train()
    model.fuse_model()
    with _eager_quantization():
        model.qconfig = qat_qconfig(backend)
        _prepare_qat(model, mapping=QAT_MAPPINGS, inplace=True)
    _use_fast_conv_bn(model)
    return model


def freeze_observers(model: nn.Module) -> None:
    """Stop the observers: the quantization scales stay where they are."""
    model.apply(disable_observer)


def freeze_batchnorm(model: nn.Module) -> None:
    """Stop the running statistics of every BatchNorm: the fused conv+BN layers (BN stays folded with the frozen
    stats) and the standalone ones (the `batchnorm` block norm), which then normalise with their running
    statistics as they will in int8. Lightning keeps a module's mode across validation passes."""
    model.apply(_freeze_bn)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def freeze_quantization(model: nn.Module) -> None:
    """Both freezes, as the public recipe applies them in the last QAT epochs."""
    freeze_observers(model)
    freeze_batchnorm(model)


def convert_int8(model: nn.Module) -> nn.Module:
    """The fake-quantized `model` as a real int8 model (in place; eval mode)."""
    model.eval()
    with _eager_quantization():
        return convert(model, mapping=INT8_MAPPINGS, inplace=True)
