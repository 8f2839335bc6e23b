"""Pretraining a teacher architecture on the synthetic corpus (data.pretraining): the default run's AudioSet step.

The job trains the architecture with a multi-label head (binary cross-entropy over CORPUS_LABELS), keeps a tenth
of the corpus's recording locations to report how well it learnt (mean average precision there, never used to
choose anything in the scene task), and writes the backbone's weights, without the classifier head, as a plain
state dict of tensors with its SHA-256 beside it: the format and the check `models.pretrained` loads, the same
that the real run's downloaded PaSST-S AudioSet checkpoint goes through. Float training is bit-reproducible on
one machine, so the checksum is the file's, written by the job, not pinned in the config.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torchmetrics.functional.classification import multilabel_average_precision

from dsflexinet.atomic import write_json, write_text
from dsflexinet.audio.frontend import build_frontend
from dsflexinet.audio.pipeline import TrainingInput
from dsflexinet.data.download import file_digest
from dsflexinet.data.pretraining import CORPUS_LABELS, read_corpus
from dsflexinet.errors import PipelineError
from dsflexinet.modelfile import save_checkpoint
from dsflexinet.models.pretrained import CLASSIFIER_PREFIX
from dsflexinet.models.registry import build_model
from dsflexinet.train.run import seed_job
from dsflexinet.train.schedules import LearningRateShape

HELD_OUT_EVERY = 10  # every tenth corpus location is held out for the report


def _held_out(locations: np.ndarray) -> np.ndarray:
    names = sorted(set(locations))
    return np.isin(locations, names[::HELD_OUT_EVERY])


def pretrain_job(
    architecture: dict, schedule: dict, corpus_waves: str | Path, corpus_table: str | Path, out_weights: str | Path,
    out_checksum: str | Path, out_report: str | Path, seed: int = 0,
) -> dict:  # fmt: skip
    """Train `architecture` (a teacher architecture's model, frontend and time_roll) on the corpus; write the
    backbone checkpoint, its SHA-256 (sha256sum format) and a report with the training curve."""
    corpus = read_corpus(corpus_waves, corpus_table)
    held = _held_out(corpus.table["location"].to_numpy())
    if held.all() or not held.any():
        raise PipelineError(f"{corpus_table}: too few recording locations to hold some out (need at least 2)")
    seed_job(seed)
    model = build_model(architecture["model"]["name"], **architecture["model"]["options"], n_classes=len(CORPUS_LABELS))
    frontend = build_frontend(architecture["frontend"]["preset"], **architecture["frontend"].get("options", {}))
    inputs = TrainingInput(frontend, None, architecture["time_roll"], mixstyle_p=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule["lr"], weight_decay=schedule["weight_decay"])
    shape = LearningRateShape(schedule["warmup_epochs"], schedule["rampdown_start"], schedule["rampdown_epochs"],
                              schedule["min_lr_factor"])  # fmt: skip
    targets = torch.from_numpy(corpus.targets)
    train_rows, held_rows = np.flatnonzero(~held), np.flatnonzero(held)
    generator = torch.Generator().manual_seed(seed)
    batch_size, history = schedule["batch_size"], []

    def waves(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(corpus.waves[np.sort(rows)].astype(np.float32) / 32768.0)

    for epoch in range(schedule["epochs"]):
        started = time.monotonic()
        model.train()
        inputs.train()
        order = train_rows[torch.randperm(train_rows.size, generator=generator).numpy()]
        steps = max(1, order.size // batch_size)
        total = 0.0
        for step in range(steps):
            rows = np.sort(order[step * batch_size : (step + 1) * batch_size])
            for group in optimizer.param_groups:
                group["lr"] = schedule["lr"] * shape.factor(epoch + step / steps)
            logits = model(inputs(waves(rows), [""] * rows.size, generator))
            loss = F.binary_cross_entropy_with_logits(logits, targets[rows])
            if not torch.isfinite(loss):
                raise PipelineError(f"{corpus_table}: pretraining loss became {loss.item()} at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        model.eval()
        inputs.eval()
        with torch.inference_mode():
            held_logits = torch.cat([
                model(inputs(waves(held_rows[k : k + 256]), [])) for k in range(0, held_rows.size, 256)
            ])  # fmt: skip
        held_targets = targets[np.sort(held_rows)].int()
        history.append({
            "epoch": epoch + 1, "train_loss": total / steps,
            "held_out_loss": float(F.binary_cross_entropy_with_logits(held_logits, held_targets.float())),
            "held_out_map": float(multilabel_average_precision(held_logits, held_targets, len(CORPUS_LABELS))),
            "seconds": round(time.monotonic() - started, 1),
        })  # fmt: skip

    backbone = {key: value for key, value in model.state_dict().items() if not key.startswith(CLASSIFIER_PREFIX)}
    save_checkpoint(out_weights, backbone)
    write_text(out_checksum, f"{file_digest(Path(out_weights), 'sha256')}  {Path(out_weights).name}\n")
    report = {
        "architecture": architecture["model"], "labels": list(CORPUS_LABELS), "clips": int(train_rows.size),
        "held_out_clips": int(held_rows.size), "schedule": schedule, "seed": seed, "history": history,
    }  # fmt: skip
    write_json(out_report, report)
    return report
