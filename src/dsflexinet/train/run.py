"""Running a training job: the Trainer, resumable checkpoints, the saved model and its training history.

A job writes the files its rule names (layout.TrainingFiles: model.pt, history.csv) and keeps in its working
directory what is not an output, so Snakemake leaves it in place when a job dies and the rerun resumes from it:

    checkpoints/last.ckpt    the state after the last finished epoch, random-number states included, so a
                             resumed job draws exactly what an uninterrupted one would have drawn
    checkpoints/spec.json    the spec the checkpoint belongs to: a changed spec starts afresh, never resumes
    checkpoints/history.csv  the history so far, one row written as each epoch finishes
    tensorboard/             the experiment log (Lightning's TensorBoard logger; CSV where TensorBoard is absent)

checkpoints/ goes once the job has succeeded and its outputs are written. An unreadable checkpoint is set aside
with a warning and the job starts afresh.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger
from pytorch_lightning.plugins.environments import LightningEnvironment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from dsflexinet.atomic import atomic_path, write_text
from dsflexinet.config import resolve_job_spec
from dsflexinet.errors import PipelineError
from dsflexinet.layout import TrainingFiles
from dsflexinet.machine import describe_machine
from dsflexinet.modelfile import load_torch_data, non_finite_weights, save_model

if TYPE_CHECKING:
    from dsflexinet.train.data import TrainingData

log = logging.getLogger("dsflexinet")
ACCELERATORS = ("cpu", "gpu", "auto")
HISTORY_COLUMNS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "label_weight")


class EpochHistory(Callback):
    """Appends each finished epoch's metrics to history.csv at once, so a resumed run keeps the earlier rows,
    and logs them as one line where no progress bar shows them (a job's log file, a batch job's output).

    A row whose epoch is rerun after a resume (it finished but its checkpoint was not yet written) is replaced.
    """

    def __init__(self, path: Path):
        self.path = path
        self.epoch_started = time.monotonic()

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.epoch_started = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.global_rank != 0 or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1}
        row |= {name: float(metrics[name]) for name in HISTORY_COLUMNS if name in metrics}
        history = pd.read_csv(self.path) if self.path.is_file() else pd.DataFrame(columns=["epoch"])
        history = pd.concat([history[history["epoch"] < row["epoch"]], pd.DataFrame([row])], ignore_index=True)
        with atomic_path(self.path) as tmp:
            history.to_csv(tmp, index=False, float_format="%.6g")
        if trainer.progress_bar_callback is None:
            values = " ".join(f"{name} {value:.4g}" for name, value in row.items() if name != "epoch")
            seconds = time.monotonic() - self.epoch_started
            log.info("epoch %d/%d: %s (%.1f s)", row["epoch"], trainer.max_epochs, values, seconds)


class FiniteTraining(Callback):
    """Stops a job whose loss or weights have become NaN or infinite (a learning rate far too large diverges
    within an epoch), checked at each epoch's end, before its checkpoint is written: such a model classifies
    nothing and QAT would fail on it deep inside PyTorch."""

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        loss = float(trainer.callback_metrics.get("train_loss", 0.0))
        bad = non_finite_weights(module.state_dict())
        if bad or not math.isfinite(loss):
            raise PipelineError(f"training diverged in epoch {trainer.current_epoch + 1}: train_loss {loss:.4g}, "
                                f"{bad:,} non-finite weights; no model written (lower schedule.lr)")  # fmt: skip


class RandomState(Callback):
    """Saves every random-number state a job draws from (Python, NumPy, torch on the CPU and on each GPU: the
    augmentations, dropout and the data order all draw from these) with each checkpoint and restores it on
    resume. Without it a resumed job would replay the start of the stream and end with other numbers."""

    def state_dict(self) -> dict[str, Any]:
        # NumPy's key as a list of ints: the checkpoint is read back with the weights-only unpickler, which
        # builds tensors and plain data but no ndarray.
        kind, key, position, has_gauss, gauss = np.random.get_state()
        numpy_state = (kind, key.tolist(), position, has_gauss, gauss)
        state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        random.setstate(state["python"])
        kind, key, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, np.asarray(key, dtype=np.uint32), position, has_gauss, gauss))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _experiment_logger(files: TrainingFiles) -> Logger:
    """Lightning's own experiment log under the job's directory: `tensorboard --logdir results/` shows every
    job. CSV (metrics.csv in the same place) where the tensorboard package is not installed."""
    try:
        return TensorBoardLogger(save_dir=files.directory, name="", version="tensorboard", default_hp_metric=False)
    except ModuleNotFoundError:
        return CSVLogger(save_dir=files.directory, name="", version="tensorboard")


def make_trainer(
    files: TrainingFiles, epochs: int, compute: dict, callbacks: list[Callback] | None = None
) -> pl.Trainer:
    """A Trainer for CPU, one GPU or several (DDP) from the config's `compute` section."""
    accelerator = compute.get("accelerator", "cpu")
    if accelerator not in ACCELERATORS:
        raise PipelineError(f"unknown accelerator {accelerator!r} (choose from {', '.join(ACCELERATORS)})")
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise PipelineError("compute.accelerator is 'gpu' but no CUDA device is visible to this job")
    checkpoints = Path(files.checkpoints)
    # Without a monitored metric, top-1 is simply the newest epoch: one file, replaced after every epoch.
    checkpoint = ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=1, enable_version_counter=False)
    return pl.Trainer(
        default_root_dir=files.directory,
        max_epochs=epochs,
        accelerator=accelerator,
        devices=compute.get("devices", 1),
        strategy=compute.get("strategy", "auto"),
        precision=compute.get("precision", "32-true"),
        # A training job is one process on one node, which Lightning turns into `devices` DDP processes itself,
        # also as the single task of a SLURM job (Lightning would otherwise wait for srun to start the ranks).
        plugins=[LightningEnvironment()],
        logger=_experiment_logger(files),
        callbacks=[FiniteTraining(), EpochHistory(checkpoints / "history.csv"), RandomState(), checkpoint,
                   *(callbacks or [])],  # fmt: skip
        enable_progress_bar=sys.stderr.isatty(),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )


def _readable_checkpoint(path: Path) -> str | None:
    """None if Lightning can resume from `path`, otherwise why not."""
    try:
        state = load_torch_data(path)
    except Exception as error:  # torch raises many types for a truncated or foreign file
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    if not isinstance(state, dict) or not {"state_dict", "loops", "callbacks"} <= set(state):
        return "not a Lightning checkpoint"
    return None


def _resume_checkpoint(files: TrainingFiles, spec: dict) -> Path | None:
    """The checkpoint to resume from, if an earlier run of the same spec left a readable one; otherwise rank 0
    starts the directory afresh for this spec (an unreadable checkpoint is set aside, not deleted). Under DDP the
    other ranks rerun this program and only read: they take the same decision before they join rank 0."""
    directory = Path(files.checkpoints)
    last, spec_file = directory / "last.ckpt", directory / "spec.json"
    text = json.dumps(spec, sort_keys=True)
    if last.is_file() and spec_file.is_file() and spec_file.read_text() == text:
        problem = _readable_checkpoint(last)
        if problem is None:
            return last
        if rank_zero_only.rank == 0:
            aside = Path(files.directory) / "damaged-last.ckpt"
            last.replace(aside)
            log.warning("%s is unreadable (%s): set aside as %s; training starts afresh", last, problem, aside)
    if rank_zero_only.rank != 0:
        return None
    shutil.rmtree(directory, ignore_errors=True)
    shutil.rmtree(files.tensorboard, ignore_errors=True)  # the curves of another spec, or of the lost run
    write_text(spec_file, text)
    return None


def seed_job(seed: int) -> None:
    """Seed Python, NumPy and torch before a job draws anything, its model's initial weights included: torch
    2.14 seeds its default generator from the OS at start-up, so a draw before this differs from run to run."""
    pl.seed_everything(seed, workers=True, verbose=False)


def fit(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    spec: dict,
    files: TrainingFiles,
    compute: dict,
    epochs: int,
    callbacks: list[Callback] | None = None,
) -> bool:
    """Train (resuming an interrupted run of the same spec) and write the history; the caller has seeded the
    job (`seed_job`) before building `module`, and saves its model and then calls `finish`.

    Returns whether this process is the one (rank 0 under DDP) that writes results.
    """
    Path(files.directory).mkdir(parents=True, exist_ok=True)
    resume = _resume_checkpoint(files, spec)
    if resume is not None:
        log.info("resuming from %s", resume)
    trainer = make_trainer(files, epochs, compute, callbacks)
    # Lightning keeps each module's mode as it finds it: a frontend taken from an eval-mode model file must
    # augment here, as the one of a fresh model does.
    module.train()
    if resume is None:
        trainer.logger.log_hyperparams(spec)
    with warnings.catch_warnings():
        # Small default-run data sets trigger Lightning's "few batches / few workers" hints on every job,
        # checkpoints/ always holds spec.json before the first checkpoint, and Lightning 2.6 itself calls an API
        # that torch 2.14 deprecates.
        warnings.filterwarnings("ignore", message=".*(does not have many workers|number of training batches).*")
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        # The job's own checkpoint, matched to its spec, read as plain data like every model file.
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    if trainer.global_rank != 0:
        return False
    with atomic_path(files.history) as tmp:
        shutil.copyfile(Path(files.checkpoints) / "history.csv", tmp)
    return True


def finish(files: TrainingFiles) -> None:
    """Drop the checkpoints of a job whose outputs are all written."""
    shutil.rmtree(files.checkpoints, ignore_errors=True)


def train_job(spec: dict, data: TrainingData, files: TrainingFiles, compute: dict) -> Path | None:
    """Train a teacher or a student as `spec` says; returns the path of the saved model (None on DDP ranks
    other than 0, which save nothing). The model file records the spec with its derived settings resolved."""
    from dsflexinet.train.module import build_classifier

    if spec.get("distillation") and data.teacher_logits is None:
        raise PipelineError("the spec asks for knowledge distillation but no teacher logits were given")
    spec = resolve_job_spec(spec, data.energy_threshold())
    schedule = spec["schedule"]
    seed_job(spec["seed"])
    module = build_classifier(spec, data.impulse_responses)
    datamodule = data.datamodule(spec, schedule["batch_size"], compute)
    if not fit(module, datamodule, spec, files, compute, schedule["epochs"]):
        return None
    model_input = data.model_input(module.inputs.frontend)
    save_model(files.model, module.model, spec, model_input, trained_on=(describe_machine(),))
    finish(files)
    return Path(files.model)
