"""The QAT step of a student: fake-quantized fine-tuning, frozen observers at the end, int8 conversion, export.

The fine-tuning reuses the student's own training setup (augmentation, KD targets) from the resolved spec stored
in its model.pt; only the schedule changes (`qat` settings: epochs, lr, frozen epochs, backend). The result is a
TorchScript file holding frontend and int8 model together (modelfile.export_classifier), so it runs without
this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytorch_lightning as pl

from dsflexinet.atomic import write_json
from dsflexinet.errors import PipelineError
from dsflexinet.machine import describe_machine
from dsflexinet.modelfile import WaveformClassifier, export_classifier, load_model_file, rebuild
from dsflexinet.quant.qat import convert_int8, freeze_quantization, prepare_qat
from dsflexinet.train.module import SceneClassifier, build_inputs
from dsflexinet.train.run import finish, fit, seed_job
from dsflexinet.train.schedules import scheduled_value

if TYPE_CHECKING:
    from dsflexinet.layout import QatFiles
    from dsflexinet.train.data import TrainingData


class FreezeQuantization(pl.Callback):
    """From `last_epochs` before the end: observers stop moving the scales and BatchNorm stops updating."""

    def __init__(self, last_epochs: int):
        self.last_epochs = last_epochs

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch >= trainer.max_epochs - self.last_epochs:
            freeze_quantization(module.model)


def continued_distillation(distillation: dict | None) -> dict | None:
    """QAT goes on from where float training ended: eq. 5's label weight stays at its final value instead of
    starting its schedule again (which would hand the labels back the weight of the first epochs)."""
    if not distillation:
        return distillation
    final = scheduled_value(distillation["label_weight"], 1.0)
    return dict(distillation, label_weight={"schedule": "constant", "value": final})


def qat_job(model_path: str | Path, qat: dict, data: TrainingData, files: QatFiles, compute: dict) -> Path | None:
    """Fine-tune a trained float student with fake quantization, convert it to int8 and export it; returns the
    exported file (None on DDP ranks other than 0, which export nothing). Everything but the schedule comes from
    the resolved spec in the student's model.pt."""
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
    inputs = build_inputs(spec, data.impulse_responses, float_classifier.frontend)
    module = SceneClassifier(model, inputs, schedule, continued_distillation(spec.get("distillation")))
    datamodule = data.datamodule(spec, schedule["batch_size"], compute)
    job = {"float_spec": spec, "qat": qat, "seed": spec["seed"]}
    freeze = FreezeQuantization(qat["freeze_last_epochs"])
    if not fit(module, datamodule, job, files.training, compute, qat["epochs"], [freeze]):
        return None

    int8 = convert_int8(module.model.cpu())
    path = Path(files.training.model)
    trained_on = (*payload["trained_on"], describe_machine())
    classifier = WaveformClassifier(float_classifier.frontend, int8)
    export_classifier(classifier, path, payload["input"], qat["backend"], trained_on)
    write_json(files.info, {
        "backend": qat["backend"],
        "file_bytes": path.stat().st_size,
        "float_model": str(model_path),
    })  # fmt: skip
    finish(files.training)
    return path
