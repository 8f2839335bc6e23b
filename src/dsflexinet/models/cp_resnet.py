"""CP-ResNet (Koutini et al., receptive-field-regularised ResNet), the CNN teacher.

A 5x5 stride-2 stem, three stages of two-conv residual blocks and a 1x1 conv head with BN and global average
pooling. Its regulariser is the receptive field: later kernels are mostly 1x1 and down-sampling happens only in
the stem and in stage 1's max pools, so the network sees a bounded time-frequency patch. The full
configuration is the public 128 K teacher of the CP-JKU DCASE recipe (rho 8, base width 32, stage widths
32/64/92, stage 2 convs in 2 groups, pools 2x2 before and 2x1 (frequency only) after each stage-1 block):
127,684 parameters and 28.8 M MACs at 256 x 43 (hop 750 at 32 kHz). The tiny one keeps the layout at
about 40 % of the widths (12/24/40: 20 K parameters, 4.9 M MACs) so that it trains on a CPU. Weights and
activations are channels-last, the layout the CPU's convolution, BatchNorm and max-pool kernels are fastest in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn

from dsflexinet.data.tau22 import SCENES
from dsflexinet.models.initialise import kaiming_conv_bn
from dsflexinet.models.pretrained import load_backbone

if TYPE_CHECKING:
    from dsflexinet.models.registry import ModelSpec


@dataclass(frozen=True)
class Stage:
    channels: int
    kernels: tuple[tuple[int, int], ...]  # per block: the kernel sizes of its two convs
    groups: int = 1
    # max pools as (position, kernel): position 0 is before the first block, n after block n
    pools: tuple[tuple[int, tuple[int, int]], ...] = ()


@dataclass(frozen=True)
class CPResNetConfig:
    stem: int
    stages: tuple[Stage, ...]


_STAGE1_POOLS = ((0, (2, 2)), (1, (2, 1)), (2, (2, 1)))
CONFIGS: dict[str, CPResNetConfig] = {
    "full": CPResNetConfig(32, (
        Stage(32, ((3, 1), (3, 3)), pools=_STAGE1_POOLS),
        Stage(64, ((3, 3),), groups=2),
        Stage(92, ((3, 1),)),
    )),
    "tiny": CPResNetConfig(12, (
        Stage(12, ((3, 1), (3, 3)), pools=_STAGE1_POOLS),
        Stage(24, ((3, 3),), groups=2),
        Stage(40, ((3, 1),)),
    )),
}  # fmt: skip


class BasicBlock(nn.Module):
    """conv-BN-ReLU, conv-BN, plus a shortcut (1x1 conv + BN when the width changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, int], groups: int):
        super().__init__()
        # Padding k // 3 (1 for 3x3, 0 for 1x1) as in the original: no conv shrinks the map.
        self.conv1 = nn.Conv2d(c_in, c_out, kernels[0], padding=kernels[0] // 3, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernels[1], padding=kernels[1] // 3, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, groups=groups, bias=False), nn.BatchNorm2d(c_out))
            if c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu_(self.bn1(self.conv1(x)))
        return torch.relu_(self.bn2(self.conv2(y)) + self.shortcut(x))


class CPResNet(nn.Module):
    """Input (N, 1, mels, frames) -> logits (N, n_classes)."""

    def __init__(self, config: CPResNetConfig, n_classes: int = len(SCENES)):
        super().__init__()
        width = config.stem
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 5, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages = []
        for stage in config.stages:
            pools = dict(stage.pools)
            layers: list[nn.Module] = [nn.MaxPool2d(pools[0])] if 0 in pools else []
            for position, kernels in enumerate(stage.kernels, start=1):
                layers.append(BasicBlock(width, stage.channels, kernels, stage.groups))
                width = stage.channels
                if position in pools:
                    layers.append(nn.MaxPool2d(pools[position]))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.Conv2d(width, n_classes, 1, bias=False), nn.BatchNorm2d(n_classes))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.apply(partial(kaiming_conv_bn, mode="fan_in"))
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.head(self.stages(self.stem(x)))), 1)


def cp_resnet(size: str = "full", n_classes: int = len(SCENES)) -> CPResNet:
    return CPResNet(CONFIGS[size], n_classes)


def build_cp_resnet(spec: ModelSpec, n_classes: int = len(SCENES), pretrained_path: str | None = None) -> CPResNet:
    """The registry's builder (models.registry); pretrained weights (all but the head) where `pretrained_path`
    names a verified checkpoint."""
    model = cp_resnet(spec.size, n_classes)
    return load_backbone(model, pretrained_path) if pretrained_path else model
