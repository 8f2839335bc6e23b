"""Weight initialisation shared by the convolutional models."""

from __future__ import annotations

from torch import nn


def kaiming_conv_bn(module: nn.Module, mode: str) -> None:
    """He-normal convolution weights for ReLU networks and unit BatchNorm; `mode` (fan_in or fan_out) follows
    each model's reference implementation. Use as `model.apply(partial(kaiming_conv_bn, mode=...))`."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
