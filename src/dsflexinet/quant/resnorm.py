"""Residual Normalization inside an int8 model: the quantization-aware and the int8 forms of models.resnorm.

IN over (frequency, time) per channel is PyTorch's instance norm, which has an int8 kernel. `lam * x` on an
int8 tensor only changes its scale, exactly. So the int8 form is three kernels on int8 data (a norm,
mul_scalar, add) instead of a dequantize, nine float kernels and a quantize.

Layouts matter more than arithmetic at these sizes. Quantized convolutions return channels-last tensors; the
int8 instance norm is about ten times slower on those (103-153 us against 8-14 us per block of sm2 at batch
1, copy included), while the int8 add and average pooling after the norm are three times slower on anything
else. So the norm per channel copies its input to the contiguous layout and its output back to channels-last.
The norm per frequency bin needs no copy: channels-last (N, C, F, T) is (N, F, T, C) in memory, so each bin's
(time, channel) block is contiguous and its instance norm is PyTorch's int8 layer norm over the last two axes
of that view (the same normalisation kernel the instance norm runs, on blocks of the same values).

The QAT form fake-quantizes exactly where the int8 form rounds: IN's output and the sum (the output observer
that eager `prepare_qat` attaches to every module of its mapping), so fine-tuning sees the int8 arithmetic.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.ao.quantization import QConfig

from dsflexinet.models.resnorm import ResNorm, instance_normalise

QParams = tuple[float, int]  # (scale, zero point) of a quint8 tensor


def _qparams(fake_quant: nn.Module) -> QParams:
    scale, zero_point = fake_quant.calculate_qparams()
    return float(scale), int(zero_point)


class QATResNorm(ResNorm):
    """ResNorm with IN's output fake-quantized; the sum's fake quantization is the attached output observer."""

    def __init__(self, over: str, eps: float, qconfig: QConfig):
        super().__init__(over, eps=eps)
        self.qconfig = qconfig
        self.normed_fake_quant = qconfig.activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lam * x + self.normed_fake_quant(instance_normalise(x, self.axes, self.eps))

    @classmethod
    def from_float(cls, module: ResNorm) -> QATResNorm:
        qat = cls(module.over, module.eps, module.qconfig)
        qat.lam = module.lam  # the same Parameter, as PyTorch's QAT modules share their weights
        return qat


class QuantizedResNorm(nn.Module):
    """quint8 (N, C, F, T) in, quint8 out at the scale the QAT output observer learnt."""

    def __init__(self, over: str, lam: float, eps: float, output: QParams, normed: QParams):
        super().__init__()
        self.over, self.lam, self.eps = over, lam, eps
        self.scale, self.zero_point = output
        self.normed_scale, self.normed_zero_point = normed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.over == "freq":
            x = x.contiguous(memory_format=torch.channels_last)  # as the quantized convolutions return it
            bins = x.permute(0, 2, 3, 1)  # (N, F, T, C): a contiguous view
            normed = torch.ops.quantized.layer_norm(
                bins, bins.shape[2:], None, None, self.eps, self.normed_scale, self.normed_zero_point
            ).permute(0, 3, 1, 2)  # back to (N, C, F, T), channels-last
        else:
            x = x.contiguous()
            normed = torch.ops.quantized.instance_norm(
                x, None, None, self.eps, self.normed_scale, self.normed_zero_point
            )
        out = torch.ops.quantized.add(torch.ops.quantized.mul_scalar(x, self.lam), normed, self.scale, self.zero_point)
        return out.contiguous(memory_format=torch.channels_last)

    @classmethod
    def from_float(cls, module: QATResNorm) -> QuantizedResNorm:
        output, normed = _qparams(module.activation_post_process), _qparams(module.normed_fake_quant)
        return cls(module.over, module.lam.item(), module.eps, output, normed)

    def extra_repr(self) -> str:
        return f"over={self.over}, lam={self.lam:.4f}, scale={self.scale:.4g}, zero_point={self.zero_point}"
