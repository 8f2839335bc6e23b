"""Batches from the memory-mapped waveform caches, with device indices and (for students) teacher logits.

Augmentation does not happen here: it runs on whole batches on the training device (see train/module.py), so
a loader only slices arrays. `__getitems__` lets the DataLoader fetch a batch with one fancy-indexed read of the
memory map instead of one Python call per clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from dsflexinet.audio.energy import read_energy_threshold
from dsflexinet.audio.frontend import MelFrontend
from dsflexinet.data.cache import WaveformCache
from dsflexinet.data.splits import read_clip_table
from dsflexinet.data.tau22 import DEVICES
from dsflexinet.distill.logits import load_logits
from dsflexinet.errors import PipelineError
from dsflexinet.modelfile import ModelInput

DEVICE_INDEX = {device: index for index, device in enumerate(DEVICES)}


class ClipBatches(Dataset):
    """Rows of a cache (all, or `rows`) as (wave, label, device index, teacher logits) batches; no teacher
    logits without KD."""

    def __init__(self, cache: WaveformCache, teacher_logits: np.ndarray | None = None, rows: np.ndarray | None = None):
        self.rows = np.arange(len(cache)) if rows is None else np.asarray(rows)
        clips = cache.clips.iloc[self.rows]
        self.waves = cache.waves
        self.labels = torch.tensor(clips["label"].to_numpy(), dtype=torch.int64)
        self.devices = torch.tensor(clips["device"].map(DEVICE_INDEX).to_numpy(), dtype=torch.int64)
        self.teacher = None if teacher_logits is None else torch.as_tensor(teacher_logits, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        order = np.sort(np.asarray(indices))  # sorted rows read the memory map sequentially
        batch = {
            "wave": torch.from_numpy(np.ascontiguousarray(self.waves[self.rows[order]])),
            "label": self.labels[order],
            "device": self.devices[order],
        }
        if self.teacher is not None:
            batch["teacher"] = self.teacher[order]
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}


def _keep_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch  # __getitems__ already built the batch


class CacheDataModule(pl.LightningDataModule):
    """Training clips (shuffled; all of the training cache, or those a clip table lists) and the clips of the
    per-epoch validation curve, from waveform caches: the test split; or with `validation_clips` the rows that
    table lists of `validation_cache`: by default held-out rows of the training cache (the development run,
    config `validation: holdout`), which must not be trained on, or a fixed subset of the test cache."""

    def __init__(
        self,
        train_cache: str | Path,
        test_cache: str | Path,
        batch_size: int,
        teacher_logits: str | Path | None = None,
        num_workers: int = 0,
        eval_batch_size: int = 256,
        train_clips: str | Path | None = None,
        validation_clips: str | Path | None = None,
        validation_cache: str | Path | None = None,
    ):
        super().__init__()
        self.train_cache, self.test_cache = Path(train_cache), Path(test_cache)
        self.teacher_logits, self.train_clips, self.validation_clips = teacher_logits, train_clips, validation_clips
        self.validation_cache = self.train_cache if validation_cache is None else Path(validation_cache)
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers

    def setup(self, stage: str | None = None) -> None:
        train = WaveformCache.open(self.train_cache)
        rows = None
        if self.train_clips is not None:
            rows = train.rows_of(read_clip_table(self.train_clips), self.train_clips)
        teacher = None
        if self.teacher_logits is not None:
            names = train.clips["filename"].to_numpy() if rows is None else train.clips["filename"].to_numpy()[rows]
            _, teacher = load_logits(self.teacher_logits, names.tolist())
        self.train_set = ClipBatches(train, teacher, rows)
        if self.validation_clips is None:
            self.validation_set = ClipBatches(WaveformCache.open(self.test_cache))
            return
        if self.validation_cache != self.train_cache:
            cache = WaveformCache.open(self.validation_cache)
            self.validation_set = ClipBatches(cache, None, cache.rows_of(read_clip_table(self.validation_clips),
                                                                         self.validation_clips))  # fmt: skip
            return
        held = train.rows_of(read_clip_table(self.validation_clips), self.validation_clips)
        trained = np.intersect1d(held, self.train_set.rows)
        if trained.size:
            raise PipelineError(
                f"{self.validation_clips}: {trained.size} validation clip(s) are also training clips"
                f" ({self.train_clips or self.train_cache}), e.g. {train.clips['filename'].iloc[trained[0]]}"
            )
        self.validation_set = ClipBatches(train, None, held)

    def _loader(self, dataset: ClipBatches, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=_keep_batch,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
        )  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.validation_set, self.eval_batch_size, shuffle=False)


@dataclass(frozen=True)
class TrainingData:
    """The files a training or QAT job reads: the waveform caches (and which training clips to learn from: all
    of the cache, or a clip table of data.splits), the impulse responses and energy analysis that DIR/ADIR need,
    and the ensemble logits that distillation needs."""

    train_cache: Path
    test_cache: Path
    impulse_responses: Path | None = None
    energy: Path | None = None
    teacher_logits: Path | None = None
    train_clips: Path | None = None
    validation_clips: Path | None = None  # the clips to validate on instead of the whole test split
    validation_cache: Path | None = None  # the cache they are rows of (None: the training cache's held-out rows)

    def energy_threshold(self) -> float | None:
        """The threshold of the energy analysis, if the job was given one."""
        return None if self.energy is None else read_energy_threshold(self.energy)

    def model_input(self, frontend: MelFrontend) -> ModelInput:
        """What a model trained on these caches expects: clips of the cached length at the frontend's rate."""
        samples = WaveformCache.open(self.train_cache).waves.shape[1]
        return ModelInput(frontend.config.sample_rate, samples)

    def datamodule(self, spec: dict, batch_size: int, compute: dict) -> CacheDataModule:
        """Batches for `spec`: with teacher logits where it distils, without them where it does not."""
        logits = self.teacher_logits if spec.get("distillation") else None
        return CacheDataModule(
            self.train_cache, self.test_cache, batch_size, logits, compute.get("num_workers", 0),
            train_clips=self.train_clips, validation_clips=self.validation_clips,
            validation_cache=self.validation_cache,
        )  # fmt: skip
