"""PaSST (Koutini et al. 2022, patchout spectrogram transformer), the transformer teacher.

Overlapping 16x16 patches (stride 10 in PaSST-S) become tokens; a token gets a frequency and a time
positional embedding (separate, so clips of another length reuse the time axis); structured patchout drops
whole frequency rows and time columns of the patch grid in training only, which regularises and saves
compute; a class and a distillation token (DeiT) are prepended, and their mean after the encoder feeds the
head. PaSST-S is 768 wide, 12 layers, 12 heads; `load_pretrained` loads the public AudioSet checkpoint
(passt-s-f128-p16-s10-ap.476-swa.pt, a plain state dict of the kkoutini/PaSST code) into it. Parameter names
follow that code's layout where they can, so the mapping (`_RENAMED`) is short.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from dsflexinet.data.tau22 import SCENES
from dsflexinet.errors import PipelineError
from dsflexinet.models.pretrained import read_checkpoint

if TYPE_CHECKING:
    from dsflexinet.models.registry import ModelSpec


@dataclass(frozen=True)
class PaSSTConfig:
    width: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    patch: int = 16
    stride: int = 10
    freq_patchout: int = 0  # patch-grid rows dropped in training
    time_patchout: int = 0  # patch-grid columns dropped in training


CONFIGS: dict[str, PaSSTConfig] = {
    # PaSST-S; frequency patchout 6 of 12 rows as the public DCASE 2023 teacher recipe.
    "s": PaSSTConfig(width=768, depth=12, heads=12, freq_patchout=6),
    # Non-overlapping patches (PaSST's s16 variant; an 8 x 6 grid at 128 x 100), narrow and shallow: about
    # 4 M MACs per clip, so it trains on a CPU.
    "tiny": PaSSTConfig(width=48, depth=3, heads=4, mlp_ratio=2.0, stride=16, freq_patchout=2, time_patchout=1),
}


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(batch, tokens, width))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer layer."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, round(width * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PaSST(nn.Module):
    """Input (N, 1, mels, frames) -> logits (N, n_classes); `input_size` = (mels, frames) fixes the grid."""

    def __init__(self, config: PaSSTConfig, input_size: tuple[int, int], n_classes: int = len(SCENES)):
        super().__init__()
        self.config = config
        width = config.width
        self.grid = tuple((size - config.patch) // config.stride + 1 for size in input_size)
        self.patch_embed = nn.Conv2d(1, width, config.patch, stride=config.stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, width))
        self.token_pos = nn.Parameter(torch.zeros(1, 2, width))
        self.freq_pos = nn.Parameter(torch.zeros(1, width, self.grid[0], 1))
        self.time_pos = nn.Parameter(torch.zeros(1, width, 1, self.grid[1]))
        self.blocks = nn.Sequential(*(Block(width, config.heads, config.mlp_ratio) for _ in range(config.depth)))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.head_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_classes)
        self._initialise()

    def _initialise(self) -> None:
        for parameter in (self.cls_token, self.dist_token, self.token_pos, self.freq_pos, self.time_pos):
            nn.init.trunc_normal_(parameter, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with positions, after patchout in training: (N, tokens, width)."""
        x = self.patch_embed(x)
        if tuple(x.shape[2:]) != self.grid:
            raise PipelineError(f"PaSST built for a {self.grid} patch grid got {tuple(x.shape[2:])}")
        x = x + self.freq_pos + self.time_pos
        if self.training:
            x = _drop_rows(x, 2, self.config.freq_patchout)
            x = _drop_rows(x, 3, self.config.time_patchout)
        return x.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.tokens(x)
        batch = patches.shape[0]
        special = torch.cat((self.cls_token, self.dist_token), dim=1) + self.token_pos
        x = self.norm(self.blocks(torch.cat((special.expand(batch, -1, -1), patches), dim=1)))
        return self.head(self.head_norm(x[:, :2].mean(dim=1)))


def _drop_rows(x: torch.Tensor, axis: int, count: int) -> torch.Tensor:
    """Keep a random, order-preserving subset of `x`'s rows along `axis`, dropping `count` (same for the batch)."""
    if count <= 0:
        return x
    size = x.shape[axis]
    if count >= size:
        raise PipelineError(f"patchout of {count} leaves nothing of a grid of {size}")
    keep = torch.randperm(size, device=x.device)[: size - count].sort().values
    return x.index_select(axis, keep)


def passt(
    size: str = "s", input_size: tuple[int, int] = (128, 100), n_classes: int = len(SCENES), **overrides
) -> PaSST:
    """A named PaSST; `overrides` replace config fields (e.g. freq_patchout=4)."""
    known = set(PaSSTConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise PipelineError(f"PaSST has no setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return PaSST(replace(CONFIGS[size], **overrides), input_size, n_classes)


def build_passt(
    spec: ModelSpec, n_classes: int = len(SCENES), pretrained_path: str | None = None, **patchout
) -> PaSST:
    """The registry's builder (models.registry): the patch grid of its frontend's 1 s clip, AudioSet weights
    where `pretrained_path` names them."""
    model = passt(spec.size, spec.input_shape[1:], n_classes, **patchout)
    return load_pretrained(model, pretrained_path) if pretrained_path else model


# --- the public AudioSet checkpoint ---------------------------------------------------------------------------

# Checkpoint keys under another name here; keys not listed are identical (blocks.*, norm.*, cls/dist tokens).
_RENAMED = {
    "patch_embed.proj.weight": "patch_embed.weight",
    "patch_embed.proj.bias": "patch_embed.bias",
    "new_pos_embed": "token_pos",
    "freq_new_pos_embed": "freq_pos",
    "time_new_pos_embed": "time_pos",
    "head.0.weight": "head_norm.weight",
    "head.0.bias": "head_norm.bias",
}
# The 527-class AudioSet classifiers, replaced by a fresh head for the 10 scenes.
_SKIPPED = ("head.1.weight", "head.1.bias", "head_dist.weight", "head_dist.bias")


def _fit_positions(position: torch.Tensor, size: int, axis: int) -> torch.Tensor:
    """Crop (time: the clip's first frames, as PaSST does at inference) or interpolate to `size` along `axis`."""
    if position.shape[axis] == size:
        return position
    if axis == 3 and position.shape[axis] > size:
        return position[..., :size]
    target = list(position.shape[2:])
    target[axis - 2] = size
    return F.interpolate(position, size=tuple(target), mode="bilinear", align_corners=False)


def load_pretrained(model: PaSST, path: str | Path) -> PaSST:
    """Load a PaSST checkpoint (the AudioSet release's key names or this module's, as pretraining writes them)
    into `model`, all but its classifier; the file is verified first (models.pretrained)."""
    checkpoint = read_checkpoint(path)

    own = model.state_dict()
    loaded = {}
    for key, value in checkpoint.items():
        if key in _SKIPPED:
            continue
        name = _RENAMED.get(key, key)
        if name not in own:
            raise PipelineError(f"{path}: does not match this PaSST (unexpected key {key!r})")
        if name == "freq_pos":
            value = _fit_positions(value, own[name].shape[2], axis=2)
        elif name == "time_pos":
            value = _fit_positions(value, own[name].shape[3], axis=3)
        if value.shape != own[name].shape:
            raise PipelineError(
                f"{path}: does not match this PaSST ({key} is {tuple(value.shape)}, "
                f"the model needs {tuple(own[name].shape)})"
            )
        loaded[name] = value
    missing = sorted(set(own) - set(loaded) - {"head.weight", "head.bias"})
    if missing:
        raise PipelineError(f"{path}: does not match this PaSST (missing {', '.join(missing[:3])}"
                            f"{' ...' if len(missing) > 3 else ''})")  # fmt: skip
    model.load_state_dict(loaded, strict=False)
    return model
