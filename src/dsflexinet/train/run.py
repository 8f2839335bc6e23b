"""Running a training job: the Trainer, resumable checkpoints, the saved model and its training history.

Layout of a job's directory (the rule's outputs are model.pt and history.csv; checkpoints/ is not an output,
so Snakemake leaves it in place when a job dies and the rerun resumes from it):

    model.pt              {"spec": ..., "state_dict": ...}: everything needed to rebuild the trained model
    history.csv           one row per epoch: train/val loss and accuracy, learning rate, KD label weight
    checkpoints/last.ckpt the state after the last finished epoch
    checkpoints/spec.json the spec the checkpoint belongs to: a changed spec starts afresh, never resumes
    checkpoints/history.csv  the history so far, one row written as each epoch finishes

checkpoints/ goes once the job has succeeded and its outputs are written.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.environments import LightningEnvironment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from dsflexinet.atomic import atomic_path, write_text
from dsflexinet.errors import PipelineError

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


def make_trainer(out_dir: Path, epochs: int, compute: dict, callbacks: list[Callback] | None = None) -> pl.Trainer:
    """A Trainer for CPU, one GPU or several (DDP) from the config's `compute` section."""
    accelerator = compute.get("accelerator", "cpu")
    if accelerator not in ACCELERATORS:
        raise PipelineError(f"unknown accelerator {accelerator!r} (choose from {', '.join(ACCELERATORS)})")
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise PipelineError("compute.accelerator is 'gpu' but no CUDA device is visible to this job")
    # Without a monitored metric, top-1 is simply the newest epoch: one file, replaced after every epoch.
    checkpoint = ModelCheckpoint(
        dirpath=out_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False
    )
    return pl.Trainer(
        default_root_dir=out_dir,
        max_epochs=epochs,
        accelerator=accelerator,
        devices=compute.get("devices", 1),
        strategy=compute.get("strategy", "auto"),
        precision=compute.get("precision", "32-true"),
        # A training job is one process on one node, which Lightning turns into `devices` DDP processes itself,
        # also as the single task of a SLURM job (Lightning would otherwise wait for srun to start the ranks).
        plugins=[LightningEnvironment()],
        logger=False,
        callbacks=[EpochHistory(out_dir / "checkpoints" / "history.csv"), checkpoint, *(callbacks or [])],
        enable_progress_bar=sys.stderr.isatty(),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )


def _resume_checkpoint(out_dir: Path, spec: dict) -> Path | None:
    """The checkpoint to resume from, if an earlier run of the same spec left one; otherwise rank 0 clears the
    directory for this spec. Under DDP the other ranks rerun this program and only read: they take the same
    decision before they join rank 0, which waits for them."""
    directory = out_dir / "checkpoints"
    last, spec_file = directory / "last.ckpt", directory / "spec.json"
    text = json.dumps(spec, sort_keys=True)
    if last.is_file() and spec_file.is_file() and spec_file.read_text() == text:
        return last
    if rank_zero_only.rank != 0:
        return None
    shutil.rmtree(directory, ignore_errors=True)
    write_text(spec_file, text)
    return None


def save_model(path: Path, model: torch.nn.Module, spec: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"spec": spec, "state_dict": model.state_dict()}, tmp)


def load_model_file(path: str | Path) -> dict:
    """A model.pt written by `save_model`, checked before anything is rebuilt from it."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise PipelineError(f"{path}: model file not found") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise PipelineError(f"{path}: not a readable model file ({str(error).splitlines()[0]})") from None
    if not isinstance(payload, dict) or not {"spec", "state_dict"} <= set(payload):
        raise PipelineError(f"{path}: not a model file of this pipeline (no spec/state_dict)")
    return payload


def seed_job(seed: int) -> None:
    """Seed Python, NumPy and torch before a job draws anything, its model's initial weights included: torch
    2.14 seeds its default generator from the OS at start-up, so a draw before this differs from run to run."""
    pl.seed_everything(seed, workers=True, verbose=False)


def fit(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    spec: dict,
    out_dir: str | Path,
    compute: dict,
    epochs: int,
    callbacks: list[Callback] | None = None,
) -> bool:
    """Train (resuming an interrupted run of the same spec) and write history.csv; the caller has seeded the
    job (`seed_job`) before building `module`, and saves its outputs and then calls `finish`.

    Returns whether this process is the one (rank 0 under DDP) that writes results.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resume = _resume_checkpoint(out_dir, spec)
    if resume is not None:
        log.info("resuming from %s", resume)
    trainer = make_trainer(out_dir, epochs, compute, callbacks)
    with warnings.catch_warnings():
        # Small default-run data sets trigger Lightning's "few batches / few workers" hints on every job,
        # checkpoints/ always holds spec.json before the first checkpoint, and Lightning 2.6 itself calls an API
        # that torch 2.14 deprecates.
        warnings.filterwarnings("ignore", message=".*(does not have many workers|number of training batches).*")
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    if trainer.global_rank != 0:
        return False
    with atomic_path(out_dir / "history.csv") as tmp:
        shutil.copyfile(out_dir / "checkpoints" / "history.csv", tmp)
    return True


def finish(out_dir: str | Path) -> None:
    """Drop the checkpoints of a job whose outputs are all written."""
    shutil.rmtree(Path(out_dir) / "checkpoints", ignore_errors=True)


def train_job(spec: dict, data: TrainingData, out_dir: str | Path, compute: dict) -> Path | None:
    """Train a teacher or a student as `spec` says; returns the path of the saved model (None on DDP ranks
    other than 0, which save nothing)."""
    from dsflexinet.train.module import build_classifier

    if spec.get("distillation") and data.teacher_logits is None:
        raise PipelineError("the spec asks for knowledge distillation but no teacher logits were given")
    schedule = spec["schedule"]
    seed_job(spec["seed"])
    module = build_classifier(spec, data.impulse_responses, data.energy)
    datamodule = data.datamodule(spec, schedule["batch_size"], compute)
    if not fit(module, datamodule, spec, out_dir, compute, schedule["epochs"]):
        return None
    model_path = Path(out_dir) / "model.pt"
    save_model(model_path, module.model, spec)
    finish(out_dir)
    return model_path
