"""DCASE'25 device-specific fine-tuning: a copy of a trained float student fine-tuned on one device's training
clips, before its own QAT (`finetune.qat_job`, which reads the spec this job records in the copy's model.pt).

Everything of the student's resolved spec is kept (augmentation, KD targets with eq. 5's final label weight) but
the schedule: `dcase25.finetune` epochs from its lr, ramped down over them as QAT's, starting from the student's
trained weights rather than from scratch: every device but A holds a small share of the subset, too little to
train a student alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dsflexinet.data.splits import read_clip_table
from dsflexinet.errors import PipelineError
from dsflexinet.machine import describe_machine
from dsflexinet.modelfile import load_model_file, rebuild, save_model
from dsflexinet.quant.finetune import continued_distillation
from dsflexinet.train.module import SceneClassifier, build_inputs
from dsflexinet.train.run import finish, fit, seed_job

if TYPE_CHECKING:
    from dsflexinet.layout import TrainingFiles
    from dsflexinet.train.data import TrainingData


def device_finetune_job(
    model_path: str | Path, finetune: dict, data: TrainingData, files: TrainingFiles, compute: dict
) -> Path | None:  # fmt: skip
    """Fine-tune the float student `model_path` on `data.train_clips`, all of device `finetune["device"]`, for
    `finetune["epochs"]` at `finetune["lr"]`; returns the saved model (None on DDP ranks other than 0)."""
    device = finetune["device"]
    if data.train_clips is None:
        raise PipelineError(f"device {device}: fine-tuning needs the device's training clips (--train-clips)")
    others = sorted(set(read_clip_table(data.train_clips)["device"]) - {device})
    if others:
        raise PipelineError(f"{data.train_clips}: holds clips of device(s) {', '.join(others)}, not only {device}")
    payload = load_model_file(model_path)
    general = payload["spec"]
    epochs = finetune["epochs"]
    schedule = dict(general["schedule"], epochs=epochs, lr=finetune["lr"], warmup_epochs=0, rampdown_start=0,
                    rampdown_epochs=epochs)  # fmt: skip
    spec = dict(general, schedule=schedule, finetuned_from={"model": str(model_path), "device": device})
    distillation = continued_distillation(general.get("distillation"))
    if distillation:
        spec["distillation"] = distillation
    seed_job(general["seed"])
    classifier = rebuild(general, payload["state_dict"])
    inputs = build_inputs(spec, data.impulse_responses, classifier.frontend)
    module = SceneClassifier(classifier.model, inputs, schedule, distillation)
    datamodule = data.datamodule(spec, schedule["batch_size"], compute)
    if not fit(module, datamodule, spec, files, compute, epochs):
        return None
    save_model(files.model, module.model, spec, payload["input"], (*payload["trained_on"], describe_machine()))
    finish(files)
    return Path(files.model)
