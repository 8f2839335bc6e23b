"""Every model of the pipeline, built from config by name.

A spec also says which frontend preset (audio.frontend) feeds the model and the input shape of one 1 s clip
there, so the workflow picks the frontend and the complexity count its input from the model name alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from dsflexinet.errors import PipelineError
from dsflexinet.models.cp_resnet import cp_resnet
from dsflexinet.models.flexinet import dsflexinet
from dsflexinet.models.passt import load_pretrained, passt

# (channels, mels, frames) of one 1 s clip at 32 kHz, per frontend preset
FRONTEND_SHAPES = {"student": (1, 256, 64), "cp_resnet": (1, 256, 43), "passt": (1, 128, 100)}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]
    frontend: str
    options: tuple[str, ...]  # the keyword options build_model accepts for this model

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return FRONTEND_SHAPES[self.frontend]


def _student(size: str) -> Callable[..., nn.Module]:
    def build(norm: str = "resnorm_channel", n_classes: int = 10) -> nn.Module:
        return dsflexinet(size, norm, n_classes)

    return build


def _cp_resnet(size: str) -> Callable[..., nn.Module]:
    def build(n_classes: int = 10) -> nn.Module:
        return cp_resnet(size, n_classes)

    return build


def _passt(size: str) -> Callable[..., nn.Module]:
    def build(n_classes: int = 10, pretrained_path: str | None = None, **patchout) -> nn.Module:
        model = passt(size, FRONTEND_SHAPES["passt"][1:], n_classes, **patchout)
        return load_pretrained(model, pretrained_path) if pretrained_path else model

    return build


_STUDENT_OPTIONS = ("norm", "n_classes")
_PASST_OPTIONS = ("n_classes", "pretrained_path", "freq_patchout", "time_patchout")
_SPECS = {
    spec.name: spec
    for spec in (
        *(ModelSpec(f"dsflexinet_{size}", _student(size), "student", _STUDENT_OPTIONS)
          for size in ("sm1", "sm2", "sm3", "sm4")),
        ModelSpec("cp_resnet", _cp_resnet("full"), "cp_resnet", ("n_classes",)),
        ModelSpec("cp_resnet_tiny", _cp_resnet("tiny"), "cp_resnet", ("n_classes",)),
        ModelSpec("passt_s", _passt("s"), "passt", _PASST_OPTIONS),
        ModelSpec("passt_tiny", _passt("tiny"), "passt", _PASST_OPTIONS),
    )
}  # fmt: skip


def available_models() -> list[str]:
    return list(_SPECS)


def model_spec(name: str) -> ModelSpec:
    if name not in _SPECS:
        raise PipelineError(f"unknown model {name!r} (choose from {', '.join(_SPECS)})")
    return _SPECS[name]


def build_model(name: str, **options) -> nn.Module:
    """The model called `name`, freshly initialised (or pretrained where `pretrained_path` says so)."""
    spec = model_spec(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise PipelineError(
            f"model {name!r} takes no option(s) {', '.join(unknown)} (it takes {', '.join(spec.options)})"
        )
    return spec.build(**options)
