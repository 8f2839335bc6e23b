"""The QAT step of a student: fake-quantized fine-tuning, frozen observers at the end, int8 conversion, export.

The fine-tuning reuses the student's own training setup (augmentation, KD targets) from the spec stored in
its model.pt; only the schedule changes (`qat` settings: epochs, lr, frozen epochs, backend). The result is a
TorchScript file holding frontend and int8 model together, so it runs without this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch

from dsflexinet.atomic import atomic_path, write_json
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.inference import WaveformClassifier, rebuild
from dsflexinet.quant.qat import ENGINE_RECORD, convert_int8, freeze_quantization, prepare_qat

if TYPE_CHECKING:
    from dsflexinet.train.data import TrainingData

EXPORT_CHECK_BATCHES = (1, 3)  # batch sizes the exported model must agree on with the eager one


class FreezeQuantization(pl.Callback):
    """From `last_epochs` before the end: observers stop moving the scales and BatchNorm stops updating."""

    def __init__(self, last_epochs: int):
        self.last_epochs = last_epochs

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch >= trainer.max_epochs - self.last_epochs:
            freeze_quantization(module.model)


def export_classifier(classifier: WaveformClassifier, path: Path, clip_samples: int, engine: str) -> None:
    """Trace frontend + int8 model to TorchScript, check it on other batch sizes than the traced one and record
    the quantized engine it was converted for, which `load_classifier` selects again."""
    classifier = classifier.eval()
    example = torch.randn(2, clip_samples) * 0.1
    with torch.inference_mode():
        traced = torch.jit.trace(classifier, example, check_trace=False)
        for batch in EXPORT_CHECK_BATCHES:
            waves = torch.randn(batch, clip_samples) * 0.1
            if not torch.allclose(traced(waves), classifier(waves), atol=1e-4):
                raise PipelineError(f"{path}: the exported model disagrees with the eager model at batch {batch}")
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={ENGINE_RECORD: engine})


def qat_job(model_path: str | Path, qat: dict, data: TrainingData, out_dir: str | Path, compute: dict) -> Path | None:
    """Fine-tune a trained float student with fake quantization, convert it to int8 and export it; returns the
    exported file (None on DDP ranks other than 0, which export nothing)."""
    from dsflexinet.train.module import SceneClassifier, build_inputs
    from dsflexinet.train.run import finish, fit, load_model_file, seed_job

    out_dir = Path(out_dir)
    if qat["freeze_last_epochs"] >= qat["epochs"]:
        raise PipelineError(
            f"qat.freeze_last_epochs ({qat['freeze_last_epochs']}) must be smaller than qat.epochs ({qat['epochs']}):"
            " the observers need at least one epoch to calibrate"
        )
    payload = load_model_file(model_path)
    spec = payload["spec"]
    seed_job(spec["seed"])
    float_classifier = rebuild(spec, payload["state_dict"])
    model = prepare_qat(float_classifier.model.train(), qat["backend"])
    schedule = dict(
        spec["schedule"], epochs=qat["epochs"], lr=qat["lr"], warmup_epochs=0, rampdown_start=0,
        rampdown_epochs=qat["epochs"],
    )  # fmt: skip
    inputs = build_inputs(spec, data.impulse_responses, data.energy)
    module = SceneClassifier(model, inputs, schedule, spec.get("distillation"))
    datamodule = data.datamodule(spec, schedule["batch_size"], compute)
    job = {"float_spec": spec, "qat": qat, "seed": spec["seed"]}
    freeze = FreezeQuantization(qat["freeze_last_epochs"])
    if not fit(module, datamodule, job, out_dir, compute, qat["epochs"], [freeze]):
        return None

    int8 = convert_int8(module.model.cpu())
    path = out_dir / "model_int8.pt"
    clip_samples = round(float_classifier.frontend.config.sample_rate)
    export_classifier(WaveformClassifier(float_classifier.frontend, int8), path, clip_samples, qat["backend"])
    write_json(out_dir / "quantized.json", {
        "backend": qat["backend"],
        "file_bytes": path.stat().st_size,
        "float_model": str(model_path),
    })  # fmt: skip
    finish(out_dir)
    return path
