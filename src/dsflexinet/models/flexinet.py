"""DS-FlexiNet (paper section II-A): a MobileNetV2-style student with adaptive residual connections.

    input (N, 1, 256, 64) log-mel, 1 s
    stem      3x3 conv stride 2 + BN + ReLU, twice                          -> 64 x 16
    stage 1   blocks at 64 x 16
    stage 2   first block stride (2, 2)                                     -> 32 x 8
    stage 3   first block stride (2, 1) (frequency only)                    -> 16 x 8
    head      1x1 conv to 10 classes + BN, global average pooling

A block is [norm] -> 1x1 expand + BN + ReLU, 3x3 depthwise (stride) + BN + ReLU, 1x1 project + BN, added to a
shortcut that adapts to the block: identity when shapes match, 3x3 average pooling when the stride changes
(no parameters), 1x1 conv + BN when the width changes (both in sequence when both change), then ReLU after
the addition, ResNet style. The expansion factor multiplies the block's input width.

Where the normalisation (`norm`, see resnorm.py) sits: at the block input, on the residual stream, so that
both the branch and the shortcut see device-normalised features and every block re-normalises what the
previous one added (eq. 2 as a layer on the features, its lambda * x keeping a residual of the original). Not
after the addition: a channel-wise instance norm on the last block's output would remove exactly the
per-channel means that global average pooling feeds the classifier (we measured near-constant logits there).
The convs keep their own, fusable BN in every variant, so norm="none" is the plain DS-FlexiNet of Table V.

Memory layout: weights, and with them the activations, are channels-last (the channel axis innermost in memory),
the layout the CPU's convolution, BatchNorm and pooling kernels are fastest in; parameters and function are those
of the contiguous layout (float rounding differs, see tests/test_models.py). One exception in speed, not kept:
at batch 1 the first stem convolution (one input channel) runs about 3.4x faster with its weight contiguous
(benchmarks/inference_latency.py times both); training keeps the layout its recorded runs were trained in.

Fig. 1 of the paper is not available; the sizes below are ours, chosen to land on Table II. sm2-sm4 share the
first two stage widths and grow in depth; sm1 is half as wide. A block's expanded width is its input width
times the expansion, rounded to a multiple of 8 as MobileNetV2 rounds (`expanded_width`): fbgemm's int8
depthwise convolution takes 0.4-2 ms at 20, 50 or 100 channels and 10-30 us at multiples of 8, which made
int8 sm1 and sm3 slower than float. sm3's last stage is 88 wide so that its 104-channel blocks stay on
Table II. Counted as the DCASE rules do (torchinfo-style, before fusion, one 1 x 256 x 64 input) with
norm="resnorm_channel" (one lambda per block); "batchnorm" adds 2 x input width per block (at most +1.3 %),
"none" removes the lambdas:

    size  stem   stage widths  blocks   expansion  expanded     params    MACs       paper params / MACs
    sm1   4, 8   8, 20, 48     2, 3, 1  2.5        24, 48       13,710    4.073 M    13.76 K / 3.88 M
    sm2   8, 16  16, 40, 96    1, 2, 1  2          32, 80       30,400    8.241 M    30.69 K / 8.27 M
    sm3   8, 16  16, 40, 88    1, 4, 1  2.5        40, 104      55,362   14.506 M    54.98 K / 14.34 M
    sm4   8, 16  16, 40, 96    2, 4, 3  2          32, 80, 192  126,021  23.112 M   126.12 K / 23.03 M

tests/test_models.py recounts these numbers, so the table cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules_qat

from dsflexinet.data.tau22 import SCENES
from dsflexinet.errors import PipelineError
from dsflexinet.models.initialise import kaiming_conv_bn
from dsflexinet.models.resnorm import build_norm

if TYPE_CHECKING:
    from dsflexinet.models.registry import ModelSpec


@dataclass(frozen=True)
class Stage:
    channels: int
    blocks: int
    stride: tuple[int, int]  # of the stage's first block; the others keep the resolution
    expansion: float


@dataclass(frozen=True)
class FlexiNetConfig:
    stem: tuple[int, int]  # output widths of the two stride-2 stem convs
    stages: tuple[Stage, ...]


STRIDES = ((1, 1), (2, 2), (2, 1))  # of each stage's first block: 64 x 16 -> 32 x 8 -> 16 x 8


def _stages(widths: tuple[int, ...], blocks: tuple[int, ...], expansion: float) -> tuple[Stage, ...]:
    return tuple(Stage(*spec, expansion) for spec in zip(widths, blocks, STRIDES, strict=True))


_WIDE = (16, 40, 96)
SIZES: dict[str, FlexiNetConfig] = {
    "sm1": FlexiNetConfig((4, 8), _stages((8, 20, 48), (2, 3, 1), 2.5)),
    "sm2": FlexiNetConfig((8, 16), _stages(_WIDE, (1, 2, 1), 2)),
    "sm3": FlexiNetConfig((8, 16), _stages((16, 40, 88), (1, 4, 1), 2.5)),
    "sm4": FlexiNetConfig((8, 16), _stages(_WIDE, (2, 4, 3), 2)),
}


def expanded_width(c_in: int, expansion: float, multiple: int = 8) -> int:
    """`c_in * expansion` rounded to the nearest multiple of `multiple` (halves up), never below 90 % of it
    (MobileNetV2's make_divisible): int8 depthwise kernels run their fast path only on such widths."""
    exact = c_in * expansion
    width = max(multiple, int(exact + multiple / 2) // multiple * multiple)
    return width + multiple if width < 0.9 * exact else width


def conv_bn(
    c_in: int, c_out: int, kernel: int, stride: tuple[int, int] | int = 1, groups: int = 1, relu: bool = True
) -> nn.Sequential:
    """conv (no bias) + BN (+ ReLU) as a Sequential whose children fuse_conv_bn can fuse by index."""
    layers = [
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def fuse_conv_bn(sequence: nn.Sequential) -> None:
    """Fuse a Sequential of conv, BN and optionally ReLU in place, for QAT (the model must be training)."""
    fuse_modules_qat(sequence, [str(index) for index in range(len(sequence))], inplace=True)


class FlexiBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int], expansion: float, norm: str):
        super().__init__()
        hidden = expanded_width(c_in, expansion)
        self.expand = conv_bn(c_in, hidden, 1)
        self.depthwise = conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.project = conv_bn(hidden, c_out, 1, relu=False)
        shortcut: list[nn.Module] = []
        if tuple(stride) != (1, 1):
            shortcut.append(nn.AvgPool2d(3, stride, padding=1))
        if c_in != c_out:
            shortcut.append(conv_bn(c_in, c_out, 1, relu=False))
        self.shortcut = nn.Sequential(*shortcut)  # empty: identity
        self.add = FloatFunctional()
        block_norm = build_norm(norm, c_in)
        self.norm = block_norm if block_norm is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        y = self.project(self.depthwise(self.expand(x)))
        return self.add.add_relu(y, self.shortcut(x))  # one int8 kernel; its observer sees only the ReLU's range

    def fuse_model(self) -> None:
        for sequence in (self.expand, self.depthwise, self.project):
            fuse_conv_bn(sequence)
        for part in self.shortcut:
            if isinstance(part, nn.Sequential):
                fuse_conv_bn(part)


class DSFlexiNet(nn.Module):
    """Input (N, 1, mels, frames) -> logits (N, n_classes)."""

    def __init__(self, config: FlexiNetConfig, norm: str = "resnorm_channel", n_classes: int = len(SCENES)):
        super().__init__()
        self.quant = QuantStub()
        self.stem = nn.Sequential(conv_bn(1, config.stem[0], 3, 2), conv_bn(config.stem[0], config.stem[1], 3, 2))
        blocks = []
        width = config.stem[1]
        for stage in config.stages:
            for index in range(stage.blocks):
                stride = stage.stride if index == 0 else (1, 1)
                blocks.append(FlexiBlock(width, stage.channels, stride, stage.expansion, norm))
                width = stage.channels
        self.blocks = nn.Sequential(*blocks)
        self.classifier = conv_bn(width, n_classes, 1, relu=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dequant = DeQuantStub()
        self.apply(partial(kaiming_conv_bn, mode="fan_out"))
        self.to(memory_format=torch.channels_last)  # see the module docstring

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(self.quant(x)))
        return self.dequant(torch.flatten(self.pool(self.classifier(x)), 1))

    def fuse_model(self) -> None:
        """Fuse every conv+BN(+ReLU) for QAT (see quant.qat.prepare_qat)."""
        for sequence in (*self.stem, self.classifier):
            fuse_conv_bn(sequence)
        for block in self.blocks:
            block.fuse_model()


def dsflexinet(size: str, norm: str = "resnorm_channel", n_classes: int = len(SCENES)) -> DSFlexiNet:
    if size not in SIZES:
        raise PipelineError(f"unknown DS-FlexiNet size {size!r} (choose from {', '.join(SIZES)})")
    return DSFlexiNet(SIZES[size], norm, n_classes)


def build_flexinet(spec: ModelSpec, norm: str = "resnorm_channel", n_classes: int = len(SCENES)) -> DSFlexiNet:
    """The registry's builder (models.registry)."""
    return dsflexinet(spec.size, norm, n_classes)
