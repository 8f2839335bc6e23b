"""GPU training throughput of the real run's full-size models, and the real run's GPU-hours projected from it.

Prepared for one short call on a GPU machine, where the real data is not: each model of `config/tau22.yaml`
(over config.yaml) trains for `--steps` steps after `--warmup` at its real batch size, under the training job's
own Lightning Trainer (`train.run.make_trainer`) and module (`train.module.build_classifier` from the job's
spec), on TAU22-shaped random waveforms (1 s at 32 kHz, fold1_train's device shares, log-normal levels, random
teacher logits for the students) served by a DataLoader with the config's workers. Rows:

    passt_s, cp_resnet   the first teacher of each architecture with its recipe's augmentation chain (PaSST-S
                         from random weights: throughput does not depend on them)
    sm4                  the student with fused KD and the whole chain (time roll, ADIR, log-mel with masking,
                         Freq-MixStyle), which the training module runs on the GPU
    sm4_qat              sm4 prepared as the QAT job prepares it (fused conv+BN, fake quantization on the GPU)

each at the config's precision (`compute.precision`) and at every `--precisions` given (mixed precision where
the config would allow it). Per row: clips per second (wall clock, CUDA synchronised at every batch edge),
peak GPU memory, the share of the time spent waiting for the next batch (DataLoader and Lightning between
steps) and one validation pass. The projection multiplies these rates by the config's epochs and TAU22's
split sizes (fold1: 139,620 training clips, 29,680 test; teachers train on the share the fusion hold-out
leaves): 12 teachers, their logit dumps, 11 students and their QAT, in GPU-hours on this GPU; evaluations and
the CPU-side int8 conversion are minutes and are left out.

    .venv/bin/python benchmarks/gpu_throughput.py [--steps 30] [--precisions bf16-mixed] [--out gpu.json]
    .venv/bin/python benchmarks/gpu_throughput.py --device cpu --steps 2 --warmup 1 --batch-scale 0.05  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from dsflexinet.audio.energy import clip_energy
from dsflexinet.config import (
    load_config,
    qat_spec,
    resolve_job_spec,
    student_seeds,
    student_spec,
    teacher_names,
    teacher_spec,
)  # fmt: skip
from dsflexinet.data.dirs import synthesise_impulse_responses
from dsflexinet.data.tau22 import DEVICES
from dsflexinet.layout import TrainingFiles
from dsflexinet.machine import describe_machine, machine_label
from dsflexinet.quant.qat import prepare_qat
from dsflexinet.train.module import build_classifier
from dsflexinet.train.run import make_trainer

REPO = Path(__file__).resolve().parents[1]
TRAIN_CLIPS, TEST_CLIPS = 139_620, 29_680  # TAU22 fold1_train and fold1_evaluate (Zenodo record 6337421)
TRAIN_DEVICE_SHARES = {"a": 102_150, "b": 7_500, "c": 7_500, "s1": 7_500, "s2": 7_500, "s3": 7_500}
SAMPLES = 32_000  # 1 s at the caches' 32 kHz
EVAL_BATCH = 256  # CacheDataModule's eval_batch_size
MODELS = ("passt_s", "cp_resnet", "sm4", "sm4_qat")


class RandomClips(Dataset):
    """`batches` batches of TAU22-shaped clips: rows gathered from a pool of random waveforms drawn once (a copy
    per batch, as a memory-mapped cache's reads are), fresh labels, devices and teacher logits per batch."""

    POOL = 2048

    def __init__(self, batches: int, batch: int, distils: bool, seed: int) -> None:
        self.batches, self.batch, self.distils, self.seed = batches, batch, distils, seed
        rng = np.random.default_rng(seed)
        pool = min(self.POOL, batches * batch)
        level = 0.1 * np.exp(0.5 * rng.standard_normal((pool, 1)))
        self.waves = (level * rng.standard_normal((pool, SAMPLES))).astype(np.float32)
        names = list(TRAIN_DEVICE_SHARES)
        self.device_p = np.array([TRAIN_DEVICE_SHARES[name] for name in names], dtype=float)
        self.device_p /= self.device_p.sum()
        self.device_index = np.array([DEVICES.index(name) for name in names])

    def __len__(self) -> int:
        return self.batches * self.batch

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, indices[0]])
        n = len(indices)
        rows = np.sort(rng.integers(0, len(self.waves), n))
        batch = {
            "wave": torch.from_numpy(self.waves[rows]),
            "label": torch.from_numpy(rng.integers(0, 10, n)),
            "device": torch.from_numpy(self.device_index[rng.choice(len(self.device_p), n, p=self.device_p)]),
        }
        if self.distils:
            batch["teacher"] = torch.from_numpy(rng.standard_normal((n, 10)).astype(np.float32))
        return batch


def _whole_batch(batch: dict) -> dict:
    return batch  # __getitems__ built it


class StepTimer(pl.Callback):
    """Wall-clock compute of each batch and the wait before it, CUDA synchronised at both edges."""

    def __init__(self) -> None:
        self.compute: list[float] = []
        self.wait: list[float] = []
        self._end: float | None = None
        self._start = 0.0

    @staticmethod
    def _now(module: pl.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_index) -> None:
        self._start = self._now(module)
        if self._end is not None:
            self.wait.append(self._start - self._end)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        self._end = self._now(module)
        self.compute.append(self._end - self._start)


def job_of(config: dict, label: str) -> tuple[dict, dict | None]:
    """The resolved-to-be spec of the row's job, and the QAT settings for the QAT row."""
    if label in ("passt_s", "cp_resnet"):
        architecture = {"passt_s": "passt", "cp_resnet": "cpresnet"}[label]
        name = next(name for name in teacher_names(config) if name.startswith(f"{architecture}-"))
        spec = teacher_spec(config, name)
        spec["model"].get("options", {}).pop("pretrained_path", None)  # random weights: no download needed
        return spec, None
    seed = student_seeds(config)[0]
    return student_spec(config, "sm4", seed), (qat_spec(config, "sm4") if label == "sm4_qat" else None)


def measure(label: str, config: dict, args: argparse.Namespace, precision: str, work: Path) -> dict:
    spec, qat = job_of(config, label)
    batch = max(1, round(spec["schedule"]["batch_size"] * args.batch_scale))
    distils = "distillation" in spec
    clips = RandomClips(args.warmup + args.steps, batch, distils, args.seed)
    # ADIR's threshold: the mean energy of the training clips, as the energy analysis gives it
    spec = resolve_job_spec(spec, float(clip_energy(torch.from_numpy(clips.waves)).mean()))
    torch.manual_seed(args.seed)
    module = build_classifier(spec, work / "impulse_responses")
    if qat is not None:
        module.model = prepare_qat(module.model, qat["backend"])
    workers = config["compute"]["num_workers"]
    loader = DataLoader(clips, batch_size=batch,
                        collate_fn=_whole_batch, num_workers=workers, persistent_workers=False)  # fmt: skip
    validation = DataLoader(RandomClips(2, EVAL_BATCH, False, args.seed + 1), batch_size=EVAL_BATCH,
                            collate_fn=_whole_batch, num_workers=workers)  # fmt: skip
    timer = StepTimer()
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    compute = {"accelerator": accelerator, "devices": 1, "strategy": "auto", "precision": precision}
    trainer = make_trainer(TrainingFiles.under(str(work / f"{label}-{precision}")), 1, compute, [timer])
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    row: dict = {"model": label, "precision": precision, "batch": batch, "steps": args.steps}
    try:
        trainer.fit(module, loader)
        start = time.perf_counter()
        trainer.validate(module, validation, verbose=False)
        if args.device == "cuda":
            torch.cuda.synchronize()
        row["validation_clips_per_s"] = 2 * EVAL_BATCH / (time.perf_counter() - start)
    except Exception as error:  # a benchmark reports what fails on the device and goes on with the next row
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return row
    compute_s, wait_s = timer.compute[args.warmup :], timer.wait[args.warmup - 1 :]
    step_s = statistics.median(c + w for c, w in zip(compute_s, wait_s, strict=False))
    row.update({
        "clips_per_s": batch / step_s,
        "step_ms": 1000 * step_s,
        "data_wait_share": sum(wait_s) / (sum(wait_s) + sum(compute_s)),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None,
    })  # fmt: skip
    return row


def project(config: dict, rows: dict[str, dict]) -> dict:
    """GPU-hours of the real run at the measured rates: epochs x clips / rate, validation passes included."""
    teacher_clips = TRAIN_CLIPS * (1 - config["teachers"]["fusion"]["holdout_fraction"])

    def hours(row: dict, epochs: int, clips: float, validated: int) -> float:
        train = epochs * clips / row["clips_per_s"]
        return (train + validated * TEST_CLIPS / row["validation_clips_per_s"]) / 3600

    def validated(schedule: dict) -> int:
        return min(schedule["epochs"], schedule.get("validate_last_epochs") or schedule["epochs"])

    total: dict[str, float] = {}
    for name in teacher_names(config):
        label = "passt_s" if name.startswith("passt-") else "cp_resnet"
        schedule = teacher_spec(config, name)["schedule"]
        dump = (TRAIN_CLIPS + TEST_CLIPS) / rows[label]["validation_clips_per_s"] / 3600
        total[label] = total.get(label, 0.0) + hours(rows[label], schedule["epochs"], teacher_clips,
                                                      validated(schedule)) + dump  # fmt: skip
    runs = config["students"]["runs"]
    seeds = len(student_seeds(config))
    schedule = student_spec(config, "sm4", student_seeds(config)[0])["schedule"]
    qat = qat_spec(config, "sm4")
    total["students (11 runs at sm4's rate)"] = seeds * len(runs) * hours(rows["sm4"], schedule["epochs"],
                                                                         TRAIN_CLIPS, validated(schedule))
    qat_schedule = dict(schedule, epochs=qat["epochs"])  # the QAT job keeps the student's validated epochs
    total["QAT (at sm4_qat's rate)"] = seeds * len(runs) * hours(rows["sm4_qat"], qat["epochs"], TRAIN_CLIPS,
                                                                 validated(qat_schedule))  # fmt: skip
    return {"gpu_hours": {key: round(value, 1) for key, value in total.items()},
            "total_gpu_hours": round(sum(total.values()), 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=5, help="steps before the timed ones")
    parser.add_argument("--precisions", nargs="*", default=None,
                        help="precisions to measure besides the config's (default: bf16-mixed on a GPU, none on"
                             " the CPU)")  # fmt: skip
    parser.add_argument("--batch-scale", type=float, default=1.0, help="scale the real batch sizes (smoke tests)")
    parser.add_argument("--config", type=Path, default=REPO / "config" / "tau22.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the rows and projection as JSON")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first step pays for the optimizer's state)")

    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    config = load_config([REPO / "config.yaml", args.config], schema)
    extra = args.precisions if args.precisions is not None else (["bf16-mixed"] if args.device == "cuda" else [])
    precisions = list(dict.fromkeys([config["compute"]["precision"], *extra]))
    if args.device == "cpu":
        config["compute"]["num_workers"] = 0
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synthetic = config["data"]["impulse_responses"]["synthetic"]
        synthesise_impulse_responses(work / "impulse_responses", synthetic["count"], synthetic["seed"])
        for precision in precisions:
            for label in args.models:
                rows.append(measure(label, config, args, precision, work))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    machine = describe_machine()
    print(f"\nmachine: {machine_label(machine)}")
    print(f"{device}; batch sizes of {args.config.name} x {args.batch_scale}; {args.steps} timed steps\n")
    print("| model | precision | batch | clips/s | step ms | data wait | peak GiB | validation clips/s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['model']} | {row['precision']} | {row['batch']} | failed: {row['error']} ||||")
            continue
        memory = "-" if row["peak_memory_gib"] is None else f"{row['peak_memory_gib']:.1f}"
        print(f"| {row['model']} | {row['precision']} | {row['batch']} | {row['clips_per_s']:.0f} |"
              f" {row['step_ms']:.1f} | {100 * row['data_wait_share']:.0f} % | {memory} |"
              f" {row['validation_clips_per_s']:.0f} |")  # fmt: skip
    report = {"device": device, "machine": machine, "rows": rows}
    at_config = {row["model"]: row for row in rows if row["precision"] == precisions[0] and "error" not in row}
    if set(MODELS) <= set(at_config) and args.batch_scale == 1.0:
        report["projection"] = project(config, at_config)
        print(f"\nprojected at {precisions[0]}: {json.dumps(report['projection'])}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
