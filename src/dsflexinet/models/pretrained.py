"""Pretrained checkpoints: read only after their SHA-256 is verified, and loaded into everything but the head.

Every checkpoint a model starts from, the real run's downloaded PaSST-S AudioSet weights and the default run's
corpus-pretrained teachers alike, lies beside a `<file>.sha256` in sha256sum's format, written by the job that
fetched (and verified) or made it. Loading checks the file against it first, so a checkpoint replaced, damaged
or half-written since is refused with one line instead of training a teacher from the wrong start. The file is
read with `weights_only=True`: a plain state dict of tensors, no code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dsflexinet.data.download import file_digest
from dsflexinet.errors import PipelineError
from dsflexinet.layout import checksum_beside

CLASSIFIER_PREFIX = "head."  # the classifier of every teacher architecture: replaced, never loaded


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a pretrained checkpoint whose bytes match the SHA-256 beside it."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: pretrained checkpoint not found")
    recorded = Path(checksum_beside(str(path)))
    try:
        expected = recorded.read_text().split()[0].lower()
    except (OSError, IndexError):
        raise PipelineError(f"{path}: no SHA-256 in {recorded} (write it with: sha256sum FILE > FILE.sha256)") from None
    actual = file_digest(path, "sha256")
    if actual != expected:
        raise PipelineError(f"{path}: SHA-256 {actual} does not match {expected} in {recorded.name}; refusing to load")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        raise PipelineError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise PipelineError(f"{path}: expected a plain state dict of tensors")
    return checkpoint


def load_backbone(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint of the same architecture into `model`, every tensor but the classifier's."""
    checkpoint = read_checkpoint(path)
    own = {key: value for key, value in model.state_dict().items() if not key.startswith(CLASSIFIER_PREFIX)}
    unexpected = sorted(set(checkpoint) - set(own))
    missing = sorted(set(own) - set(checkpoint))
    if unexpected or missing:
        kind, first = ("unexpected", unexpected[0]) if unexpected else ("missing", missing[0])
        raise PipelineError(f"{path}: does not match this {type(model).__name__} ({kind} key {first!r})")
    for key, value in checkpoint.items():
        if value.shape != own[key].shape:
            raise PipelineError(f"{path}: does not match this {type(model).__name__} ({key} is {tuple(value.shape)},"
                                f" the model needs {tuple(own[key].shape)})")  # fmt: skip
    model.load_state_dict(checkpoint, strict=False)
    return model
