"""Every model of the pipeline, built from config by name.

A spec also names the frontend preset (audio.frontend) that feeds the model; the input shape of one clip is
what that frontend computes. The table itself imports no torch (the model families are imported when a model
is built), so the workflow checks a config's model names and options against it when the DAG is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dsflexinet.errors import PipelineError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # module of dsflexinet.models holding the builder `build_<family>`
    size: str
    frontend: str  # the audio.frontend preset that feeds it
    options: tuple[str, ...]  # the keyword options build_model accepts for this model
    paper_pretrained: bool = False  # the paper starts it from pretrained (AudioSet) weights

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, mels, frames) of one 1 s clip through this model's frontend (DCASE counts per 1 s)."""
        from dsflexinet.audio.frontend import FRONTEND_PRESETS, output_shape

        return (1, *output_shape(FRONTEND_PRESETS[self.frontend]))

    def build(self, **options) -> nn.Module:
        family = importlib.import_module(f"dsflexinet.models.{self.family}")
        return getattr(family, f"build_{self.family}")(self, **options)


_STUDENT_OPTIONS = ("norm", "n_classes")
_PASST_OPTIONS = ("n_classes", "pretrained_path", "freq_patchout", "time_patchout")
_SPECS = {
    spec.name: spec
    for spec in (
        *(ModelSpec(f"dsflexinet_{size}", "flexinet", size, "student", _STUDENT_OPTIONS)
          for size in ("sm1", "sm2", "sm3", "sm4")),
        ModelSpec("cp_resnet", "cp_resnet", "full", "cp_resnet", ("n_classes", "pretrained_path")),
        ModelSpec("cp_resnet_tiny", "cp_resnet", "tiny", "cp_resnet", ("n_classes", "pretrained_path")),
        ModelSpec("passt_s", "passt", "s", "passt", _PASST_OPTIONS, paper_pretrained=True),
        ModelSpec("passt_tiny", "passt", "tiny", "passt", _PASST_OPTIONS),
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
