"""One LightningModule for every training job: teachers, students (with or without KD) and QAT fine-tuning.

A job is described by a JSON spec that the Snakefile builds from the validated config:

    model:        {name, options}                        -> models.registry.build_model
    frontend:     {preset, options}                      -> audio.frontend.build_frontend
    augment:      {time_roll, freq_mixstyle: {p, alpha} | null,
                   device_ir: {mode: dir | adir, p, devices, energy_threshold (ADIR: a number once resolved)} | null}
    distillation: {temperature, label_weight: schedule}  (students with teacher logits only)
    schedule:     {epochs, batch_size, lr, weight_decay, warmup_epochs, rampdown_start, rampdown_epochs,
                   min_lr_factor, validate_last_epochs (optional: validation curve of the last epochs only)}
    seed

The module holds only step logic: augmentation runs on whole batches on the training device
(audio.pipeline.TrainingInput), the loss is eq. 5 when teacher logits come with the batch.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.ao.quantization import FakeQuantizeBase

from dsflexinet.audio.augment import DeviceImpulseAugmentation
from dsflexinet.audio.chunks import row_chunks
from dsflexinet.audio.frontend import MelFrontend, build_frontend
from dsflexinet.audio.pipeline import TrainingInput
from dsflexinet.data.dirs import load_impulse_responses
from dsflexinet.data.tau22 import DEVICES
from dsflexinet.distill.loss import distillation_loss
from dsflexinet.errors import PipelineError
from dsflexinet.models.registry import build_model
from dsflexinet.train.schedules import LearningRateShape, scheduled_value

EVAL_CHUNK_CLIPS = 64  # CPU clips per evaluation forward (see chunks.py)
# Validation inputs kept between epochs, at most (the default run's 1,800 test clips take 118 MB of students'
# log-mels; the real TAU22 test split, 29,680 clips, about 1.9 GB): batches beyond it are recomputed each time.
VALIDATION_INPUT_CACHE_BYTES = 4 << 30
# Samples per exact sum of ValidationInputs.signature: 2^14 samples x 2^31 x 128 = 2^52.
SIGNATURE_BLOCK = 1 << 14


class EpochMeans:
    """Per-epoch means of per-step values, as `LightningModule.log(..., on_epoch=True)` computes them (the sum of
    value x batch size, in float32 or the value's wider type, over the summed batch sizes), so the figures are
    the same bits. Each `log` call cost Lightning 0.75-1.1 ms on a CPU (it moves the metric's state to the value's
    device every time), about 4 % of a teacher's step at three calls; the step adds here and logs once."""

    def __init__(self) -> None:
        self.sums: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, name: str, value: torch.Tensor | float, batch_size: int, device: torch.device) -> None:
        value = torch.as_tensor(value, device=device).detach()
        if value.dtype not in (torch.float32, torch.float64):
            value = value.float()
        if name not in self.sums:
            self.sums[name] = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device)
        total, count = self.sums[name]
        self.sums[name] = total + value * batch_size, count + batch_size

    def pop(self) -> dict[str, torch.Tensor]:
        """The means so far, and a fresh start."""
        means = {name: total / count for name, (total, count) in self.sums.items()}
        self.sums = {}
        return means


def build_inputs(
    spec: dict, impulse_responses: str | Path | None, frontend: MelFrontend | None = None
) -> TrainingInput:
    """The augmentation chain a resolved spec asks for, around its frontend (built from the spec if not given)."""
    augment = spec["augment"]
    if frontend is None:
        frontend = build_frontend(spec["frontend"]["preset"], **spec["frontend"].get("options", {}))
    impulse = None
    device_ir = augment.get("device_ir")
    if device_ir:
        if impulse_responses is None:
            raise PipelineError("the spec asks for DIR/ADIR augmentation but no impulse-response set was given")
        threshold = device_ir["energy_threshold"] if device_ir["mode"] == "adir" else None
        if isinstance(threshold, str):
            raise PipelineError(f"ADIR threshold {threshold!r} was not resolved to a number (config.resolve_job_spec)")
        responses = load_impulse_responses(impulse_responses, frontend.config.sample_rate)
        impulse = DeviceImpulseAugmentation(responses, device_ir["p"], tuple(device_ir["devices"]), threshold)
    mixstyle = augment.get("freq_mixstyle") or {"p": 0.0, "alpha": 1.0}
    return TrainingInput(frontend, impulse, augment["time_roll"], mixstyle["p"], mixstyle["alpha"])


class ValidationInputs:
    """The validation clips' model inputs, computed in the first validated epoch and reused by the later ones.
    In eval mode the input chain is the plain frontend, a fixed function of the waveform, so a kept input is the
    same bits as a recomputed one; the frontend was 35-60 % of a validation pass on the CPU (a student's 256 x 64
    log-mel, PaSST's and CP-ResNet's). A batch is reused only when it is the same clips as the batch kept at its
    index (`signature`), so a loader that changes between fits recomputes."""

    def __init__(self, budget_bytes: int = VALIDATION_INPUT_CACHE_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self.kept: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self.kept_bytes = 0
        self._weights: dict[torch.device, torch.Tensor] = {}  # the signature's, per device

    def signature(self, waves: torch.Tensor) -> torch.Tensor:
        """Per clip and block of SIGNATURE_BLOCK samples, the samples' float32 bit patterns (what the frontend
        reads) as integers, weighted by fixed random integers in [1, 128] and summed in float64. Every product
        and partial sum is an integer under 2^52, so the sums are exact in any order: a change of any one sample
        moves its block's sum by at least 1, and reordered samples (a rolled clip) almost surely do. It costs 1.4-1.7
        ms per 64 clips on the Zen 4 VM, against 42 / 24 / 15 ms for the student / CP-ResNet / PaSST frontend it
        saves (about 8 CPU s of the default run); sampling every 997th sample, as before, cost nothing and
        missed a change anywhere else."""
        rows, samples = waves.shape
        blocks = -(-samples // SIGNATURE_BLOCK)
        if waves.device not in self._weights:
            generator = torch.Generator().manual_seed(SIGNATURE_BLOCK)
            weights = torch.randint(1, 129, (SIGNATURE_BLOCK,), generator=generator, dtype=torch.float64)
            self._weights[waves.device] = weights.to(waves.device)
        bits = waves.new_empty(rows, blocks * SIGNATURE_BLOCK, dtype=torch.float64)
        bits[:, :samples] = waves.detach().float().contiguous().view(torch.int32)
        bits[:, samples:] = 0
        return bits.view(rows, blocks, SIGNATURE_BLOCK) @ self._weights[waves.device]

    @staticmethod
    def _bytes(inputs: list[torch.Tensor]) -> int:
        return sum(chunk.numel() * chunk.element_size() for chunk in inputs)

    def get(self, batch_index: int, waves: torch.Tensor) -> list[torch.Tensor] | None:
        signature, inputs = self.kept.get(batch_index, (None, None))
        if inputs is None or torch.equal(signature, self.signature(waves)):
            return inputs
        self.kept_bytes -= self._bytes(self.kept.pop(batch_index)[1])
        return None

    def keep(self, batch_index: int, waves: torch.Tensor, inputs: list[torch.Tensor]) -> None:
        if self.kept_bytes + self._bytes(inputs) <= self.budget_bytes:
            self.kept[batch_index] = (self.signature(waves), inputs)
            self.kept_bytes += self._bytes(inputs)


class SceneClassifier(pl.LightningModule):
    """Augmented log-mel in, scene logits out; cross-entropy, or eq. 5 with teacher logits."""

    def __init__(self, model: nn.Module, inputs: TrainingInput, schedule: dict, distillation: dict | None = None):
        super().__init__()
        self.model = model
        self.inputs = inputs
        self.schedule = schedule
        self.distillation = distillation
        self._observers: list[tuple[nn.Module, torch.Tensor]] = []
        self._epoch_means = EpochMeans()
        self._validation_inputs = ValidationInputs()

    def forward(self, waves: torch.Tensor, devices: list[str]) -> torch.Tensor:
        if self.training:  # BatchNorm's batch statistics couple the clips of a training batch
            return self.model(self.inputs(waves, devices))
        return torch.cat([self.model(inputs) for inputs in self._evaluation_inputs(waves, devices)])

    def _evaluation_inputs(self, waves: torch.Tensor, devices: list[str]) -> list[torch.Tensor]:
        # Evaluation is per clip: on the CPU a student runs a 256-clip validation batch 1.7x faster in chunks
        chunks = row_chunks(waves.shape[0], waves.device, EVAL_CHUNK_CLIPS)
        return [self.inputs(waves[rows], devices[rows]) for rows in chunks]

    def _device_names(self, batch: dict) -> list[str]:
        return [DEVICES[index] for index in batch["device"].tolist()]

    def label_weight(self) -> float:
        """lambda of eq. 5 at the current step (the paper updates it during training)."""
        progress = self.global_step / max(1, self.trainer.estimated_stepping_batches - 1)
        return scheduled_value(self.distillation["label_weight"], progress)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        logits = self(batch["wave"], self._device_names(batch))
        teacher = batch.get("teacher")
        if teacher is not None and self.distillation:
            weight = self.label_weight()
            loss = distillation_loss(logits, batch["label"], teacher, weight, self.distillation["temperature"])
            self._epoch_means.add("label_weight", weight, len(logits), logits.device)
        else:
            loss = nn.functional.cross_entropy(logits, batch["label"])
        accuracy = (logits.argmax(dim=1) == batch["label"]).float().mean()
        self._epoch_means.add("train_loss", loss, len(logits), logits.device)
        self._epoch_means.add("train_acc", accuracy, len(logits), logits.device)
        self._epoch_means.add("lr", self.optimizers().param_groups[0]["lr"], 1, logits.device)
        if self.trainer.is_last_batch:  # Lightning knows it for unsized loaders and batch limits too
            # One value per rank, averaged over the DDP ranks (one all-reduce per epoch; nothing on one device):
            # the mean over all batches, as their shards are of equal size.
            for name, mean in self._epoch_means.pop().items():
                self.log(name, mean, prog_bar=name in ("train_loss", "train_acc"), on_step=False, on_epoch=True,
                         sync_dist=True, batch_size=1)  # fmt: skip
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_means.pop()  # an epoch stopped short (or resumed mid-way) leaves no partial sums behind

    def validating(self) -> bool:
        """Whether this epoch draws a point of the validation curve: only the last `validate_last_epochs` do
        (every epoch when unset). Validation only measures (nothing is chosen on it), so what is skipped is a
        point of history.csv's curve, not a change of training; Table V's statistic is the mean of the last ten."""
        last = self.schedule.get("validate_last_epochs")
        return last is None or self.current_epoch >= self.trainer.max_epochs - last

    def validation_step(self, batch: dict, batch_index: int) -> None:
        if not self.validating():
            return
        inputs = self._validation_inputs.get(batch_index, batch["wave"])
        if inputs is None:
            inputs = self._evaluation_inputs(batch["wave"], self._device_names(batch))
            if not any(parameter.requires_grad for parameter in self.inputs.parameters()):
                self._validation_inputs.keep(batch_index, batch["wave"], inputs)
        logits = torch.cat([self.model(chunk) for chunk in inputs])
        loss = nn.functional.cross_entropy(logits, batch["label"])
        accuracy = (logits.argmax(dim=1) == batch["label"]).float().mean()
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=len(logits), sync_dist=True)
        self.log("val_acc", accuracy, on_epoch=True, prog_bar=True, batch_size=len(logits), sync_dist=True)

    def on_validation_start(self) -> None:
        """Validation measures, it never calibrates: PyTorch's fake-quantization observers keep updating in eval
        mode and under inference_mode, so they are paused for the pass (BatchNorm is in eval mode already)."""
        self._observers = [(module, module.observer_enabled.clone()) for module in self.modules()
                           if isinstance(module, FakeQuantizeBase)]  # fmt: skip
        for module, _ in self._observers:
            module.disable_observer()

    def on_validation_end(self) -> None:
        for module, enabled in self._observers:
            module.observer_enabled.copy_(enabled)
        self._observers = []

    def configure_optimizers(self):
        schedule = self.schedule
        # The fused kernel: Adam's step of sm4 takes 0.4 instead of 2.1 ms on the CPU (results within a rounding).
        optimizer = torch.optim.Adam(
            self.parameters(), lr=schedule["lr"], weight_decay=schedule["weight_decay"], fused=True
        )
        shape = LearningRateShape(
            schedule["warmup_epochs"], schedule["rampdown_start"], schedule["rampdown_epochs"],
            schedule["min_lr_factor"],
        )  # fmt: skip
        steps_per_epoch = max(1, self.trainer.estimated_stepping_batches // self.trainer.max_epochs)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: shape.factor(step / steps_per_epoch))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def build_classifier(spec: dict, impulse_responses: str | Path | None = None) -> SceneClassifier:
    """A freshly initialised model for a resolved spec, with its augmentation chain."""
    model = build_model(spec["model"]["name"], **spec["model"].get("options", {}))
    inputs = build_inputs(spec, impulse_responses)
    return SceneClassifier(model, inputs, spec["schedule"], spec.get("distillation"))
