"""End to end through the library on the tiny synthetic set: two teachers, logits, fusion, a KD student,
QAT to int8, evaluation and prediction; an interrupted training run that resumes; DDP over two processes."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

from dsflexinet.audio.energy import analyse_energy
from dsflexinet.config import qat_spec, student_spec, teacher_spec
from dsflexinet.data.cache import build_cache
from dsflexinet.data.dirs import synthesise_impulse_responses
from dsflexinet.data.splits import write_training_split
from dsflexinet.distill.fusion import fuse_teachers
from dsflexinet.distill.logits import dump_teacher_logits, load_logits
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.metrics import evaluate_model
from dsflexinet.evaluate.predict import predict_files
from dsflexinet.layout import EnsembleFiles, QatFiles, TrainingFiles
from dsflexinet.machine import describe_machine
from dsflexinet.modelfile import load_classifier, load_model_file
from dsflexinet.quant.finetune import qat_job
from dsflexinet.report.stats import read_clips, statistic
from dsflexinet.train import run as run_module
from dsflexinet.train.data import TrainingData
from dsflexinet.train.module import EpochMeans, SceneClassifier, ValidationInputs
from dsflexinet.train.run import train_job
from tests.conftest import REPO, tiny_pipeline_config

COMPUTE = {"accelerator": "cpu", "devices": 1}


@pytest.fixture(scope="module")
def config() -> dict:
    """The tiny config with teachers from scratch: these tests call the jobs directly, without the pretraining
    rule that writes their checkpoints (tests/test_pretraining.py and the Snakemake runs cover that path)."""
    config = tiny_pipeline_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    for architecture in config["teachers"]["architectures"].values():
        architecture["pretrained"] = "none"
    return config


@pytest.fixture(scope="module")
def inputs(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("pipeline-inputs")
    build_cache(tiny_dataset, "evaluation_setup/fold1_train.csv", work / "train.npy")
    build_cache(tiny_dataset, "evaluation_setup/fold1_evaluate.csv", work / "test.npy")
    synthesise_impulse_responses(work / "irs", count=4, seed=1)
    analyse_energy(work / "train.npy", None, work / "energy.json", work / "energy.png")
    splits = {name: work / f"{name}.tsv" for name in ("students", "teachers", "holdout")}
    write_training_split(work / "train.tsv", tiny_dataset / "evaluation_setup/fold1_train.csv", 0, 0, *splits.values())
    return {"train": work / "train.npy", "test": work / "test.npy", "irs": work / "irs", "energy": work / "energy.json",
            **splits}  # fmt: skip


def test_teachers_fusion_student_qat_predict(config, inputs, tmp_path: Path, tau_clips_dir_or_none) -> None:
    logit_files = {}
    for name in ("passt-dir_fms-s1", "cpresnet-dir_fms-s1"):
        model = train_job(teacher_spec(config, name), _teacher_data(inputs), _files(tmp_path / name), COMPUTE)
        logit_files[name] = tmp_path / name / "logits.npz"
        assert dump_teacher_logits(model, [inputs["train"], inputs["test"]], logit_files[name]) == 70 + 180
        history = list(csv.DictReader((tmp_path / name / "history.csv").open()))
        assert [row["epoch"] for row in history] == ["1"] and 0 <= float(history[0]["val_acc"]) <= 1

    ensemble = EnsembleFiles(*(str(tmp_path / "ensemble" / name) for name in ("fused.npz", "average.npz", "f.json")))
    report = fuse_teachers(logit_files, inputs["train"], inputs["test"], "in_sample", inputs["teachers"],
                           inputs["students"], inputs["holdout"], ensemble, steps=50)  # fmt: skip
    alpha = np.array(list(report["alpha"].values()))
    assert not np.allclose(alpha, 0.5) and np.abs(report["beta"]).max() > 1e-4  # moved away from the average
    assert report["fit_cross_entropy"]["fused"] <= report["fit_cross_entropy"]["average"] + 1e-9
    assert report["fit"] == {"on": "in_sample", "clips": 70, "clip_table": str(inputs["teachers"]),
                             "shrinkage": 0.0, "kept": True}  # the paper's literal fit: no shrinkage, no check
    assert report["holdout_cross_entropy"] == {} and report["alpha_sum"] == pytest.approx(alpha.sum())
    assert set(report["test"]) == {*logit_files, "average", "fused"}
    names, fused = load_logits(tmp_path / "ensemble" / "fused.npz")
    assert fused.shape == (250, 10) and len(set(names)) == 250

    spec = student_spec(config, "tiny-rn", 1)
    assert spec["augment"]["device_ir"]["mode"] == "adir" and spec["distillation"]["teachers"] == "fused"
    fused_logits = tmp_path / "ensemble" / "fused.npz"
    data = TrainingData(inputs["train"], inputs["test"], inputs["irs"], inputs["energy"], fused_logits)
    student = train_job(spec, data, _files(tmp_path / "student"), COMPUTE)
    recorded = load_model_file(student)["spec"]["augment"]["device_ir"]["energy_threshold"]
    assert recorded == json.loads(inputs["energy"].read_text())["threshold"]  # resolved once, stored as a number
    qat_files = QatFiles(_files(tmp_path / "qat", "model_int8.pt"), str(tmp_path / "qat" / "quantized.json"))
    no_energy = TrainingData(inputs["train"], inputs["test"], inputs["irs"], teacher_logits=fused_logits)
    int8 = qat_job(student, qat_spec(config, "tiny-rn"), no_energy, qat_files, COMPUTE)
    assert json.loads((tmp_path / "qat" / "quantized.json").read_text())["file_bytes"] == int8.stat().st_size
    # QAT goes on with eq. 5's final label weight; it does not restart the schedule.
    final_weight = spec["distillation"]["label_weight"]["end"]
    student_weights = [float(row["label_weight"]) for row in csv.DictReader((tmp_path / "student/history.csv").open())]
    qat_weights = [float(row["label_weight"]) for row in csv.DictReader((tmp_path / "qat/history.csv").open())]
    assert student_weights[0] > final_weight and qat_weights == pytest.approx([final_weight] * len(qat_weights))
    # The validation split QAT is shown only measures: validating on the training clips instead of the test
    # split gives the very same int8 model.
    other_validation = TrainingData(inputs["train"], inputs["train"], inputs["irs"], teacher_logits=fused_logits)
    other_files = QatFiles(_files(tmp_path / "qat-other", "model_int8.pt"), str(tmp_path / "qat-other" / "q.json"))
    other = qat_job(student, qat_spec(config, "tiny-rn"), other_validation, other_files, COMPUTE)
    waves = torch.from_numpy(np.load(inputs["test"], mmap_mode="r")[:32].copy())
    with torch.inference_mode():
        assert torch.equal(load_classifier(int8)(waves), load_classifier(other)(waves))

    for model, out, jobs in ((student, "eval_float.json", 1), (int8, "eval_int8.json", 2)):
        metrics = evaluate_model(model, inputs["test"], tmp_path / out, tmp_path / f"{out}.tsv")
        assert metrics["measured_on"] == describe_machine()
        # the int8 model records two trainings: the student's, then QAT
        assert [machine["cpu"] for machine in metrics["trained_on"]] == [describe_machine()["cpu"]] * jobs
        assert metrics["clips"] == 180 and sum(map(sum, metrics["confusion_matrix"])) == 180
        assert set(metrics["devices"]) == {"a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"}
        assert metrics["groups"]["unseen_simulated"]["clips"] == 60
        outcomes = read_clips(tmp_path / f"{out}.tsv")  # what intervals resample agrees with the JSON
        assert len(outcomes) == 180 and outcomes["identifier"].nunique() == 10
        assert statistic(outcomes, "accuracy") == pytest.approx(metrics["accuracy"], abs=1e-12)
        assert statistic(outcomes, "macro_accuracy") == pytest.approx(metrics["class_averaged_accuracy"], abs=1e-12)
        assert statistic(outcomes, "log_loss") == pytest.approx(metrics["log_loss"], rel=1e-5)

    if tau_clips_dir_or_none is None:
        return
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEjunk")
    rows, skipped = predict_files([tau_clips_dir_or_none, broken], int8, tmp_path / "predictions.csv")
    assert rows == 2 and skipped == [str(broken)]
    table = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    names = [Path(row["file"]).name for row in table]
    assert names == ["airport-lisbon-1000-40000-0-a.wav", "metro_station-paris-10s.wav"]
    for row in table:
        probabilities = [float(value) for key, value in row.items() if key not in ("file", "scene")]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4) and row["scene"] in row


def test_development_run_validates_on_held_out_training_clips(inputs, tmp_path: Path) -> None:
    """validation: holdout: the curve is drawn on the hold-out's rows of the training cache, never on clips the
    job learns from."""
    from dsflexinet.data.cache import WaveformCache
    from dsflexinet.data.splits import read_clip_table
    from dsflexinet.errors import PipelineError

    cached = read_clip_table(inputs["train"].with_suffix(".tsv"))  # the tiny set has one location per scene
    splits = [tmp_path / f"{name}.tsv" for name in ("students", "teachers", "holdout")]
    for table, path in zip((cached, cached.iloc[::2], cached.iloc[1::2]), splits, strict=True):
        table.to_csv(path, sep="\t", index=False)
    counts = {"train": 70, "teacher_train": 35, "fusion_holdout": 35}
    data = TrainingData(inputs["train"], inputs["test"], train_clips=splits[1], validation_clips=splits[2])
    module = data.datamodule({}, batch_size=8, compute={})
    module.setup()
    names = WaveformCache.open(inputs["train"]).clips["filename"].to_numpy()
    held = set(read_clip_table(splits[2])["filename"])
    assert len(module.validation_set) == counts["fusion_holdout"] and len(module.train_set) == counts["teacher_train"]
    assert set(names[module.validation_set.rows]) == held and not held & set(names[module.train_set.rows])
    batch = next(iter(module.val_dataloader()))
    assert batch["wave"].shape == (min(counts["fusion_holdout"], 256), 32000)
    leaking = TrainingData(inputs["train"], inputs["test"], train_clips=splits[0], validation_clips=splits[2])
    with pytest.raises(PipelineError, match=f"{splits[2]}: {counts['fusion_holdout']} validation clip.* also training"):
        leaking.datamodule({}, batch_size=8, compute={}).setup()
    test_split = TrainingData(inputs["train"], inputs["test"], train_clips=splits[0]).datamodule({}, 8, {})
    test_split.setup()
    assert len(test_split.validation_set) == 180


def test_validation_curves_read_a_fixed_subset_of_the_test_locations(inputs, tmp_path: Path) -> None:
    """validation_locations_per_scene: the curve reads all clips of the drawn test locations, rows of the test
    cache, the same ones every time; the training clips are untouched."""
    from dsflexinet.data.cache import WaveformCache
    from dsflexinet.data.splits import read_clip_table, write_validation_subset
    from dsflexinet.errors import PipelineError

    test_table = inputs["test"].with_suffix(".tsv")
    clips = read_clip_table(test_table)
    per_scene = clips.groupby("scene_label")["identifier"].nunique()
    counts = write_validation_subset(test_table, 1, 0, tmp_path / "validation.tsv")
    chosen = read_clip_table(tmp_path / "validation.tsv")
    assert counts == {"clips": len(chosen), "locations": 10, "of_clips": len(clips)}
    assert chosen.groupby("scene_label")["identifier"].nunique().eq(1).all() and per_scene.max() >= 1
    # whole locations: every clip of a chosen location, none of the others
    assert len(chosen) == int(clips["identifier"].isin(chosen["identifier"]).sum())
    write_validation_subset(test_table, 1, 0, tmp_path / "again.tsv")
    assert (tmp_path / "again.tsv").read_bytes() == (tmp_path / "validation.tsv").read_bytes()
    everything = write_validation_subset(test_table, 50, 0, tmp_path / "all.tsv")
    assert everything["clips"] == len(clips)  # a scene with fewer locations keeps all of them
    with pytest.raises(PipelineError, match="validation locations per scene 0 is not at least 1"):
        write_validation_subset(test_table, 0, 0, tmp_path / "none.tsv")
    data = TrainingData(inputs["train"], inputs["test"], validation_clips=tmp_path / "validation.tsv",
                        validation_cache=inputs["test"])  # fmt: skip
    module = data.datamodule({}, batch_size=8, compute={})
    module.setup()
    names = WaveformCache.open(inputs["test"]).clips["filename"].to_numpy()
    assert sorted(names[module.validation_set.rows]) == sorted(chosen["filename"])
    assert len(module.train_set) == len(WaveformCache.open(inputs["train"]).clips)


@pytest.fixture
def tau_clips_dir_or_none() -> Path | None:
    from tests.conftest import SHARED

    path = SHARED / "data" / "tau-clips"
    return path if path.is_dir() else None


class _KillAfterFirstEpoch(pl.Callback):
    """Stands in for a killed job (node failure, time limit): the run dies at the start of its second epoch."""

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


def _files(directory: Path, model: str = "model.pt") -> TrainingFiles:
    return TrainingFiles.under(str(directory), model)


def _teacher_data(inputs: dict) -> TrainingData:
    return TrainingData(inputs["train"], inputs["test"], impulse_responses=inputs["irs"])


def _until_killed(job, monkeypatch) -> None:
    """Run `job()` until it dies at the start of its second epoch, as a killed job would."""
    make_trainer = run_module.make_trainer

    def make(files, epochs, compute, callbacks=None):
        return make_trainer(files, epochs, compute, [_KillAfterFirstEpoch(), *(callbacks or [])])

    with monkeypatch.context() as patch:
        patch.setattr(run_module, "make_trainer", make)
        with pytest.raises(RuntimeError, match="simulated crash"):
            job()


def _train_until_killed(spec: dict, inputs: dict, out_dir: Path, monkeypatch) -> None:
    _until_killed(lambda: train_job(spec, _teacher_data(inputs), _files(out_dir), COMPUTE), monkeypatch)


def _same_weights(first: Path, second: Path) -> bool:
    weights = [load_model_file(path)["state_dict"] for path in (first, second)]
    return weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_interrupted_training_resumes_to_the_same_numbers(config, inputs, tmp_path: Path, monkeypatch, caplog) -> None:
    """Killed after its first epoch and resumed, a job ends bit for bit where an uninterrupted one does: the
    checkpoint carries every random state (data order, augmentations), so epochs 2-3 draw what they would have."""
    spec = teacher_spec(config, "cpresnet-dir_fms-s1")
    spec["schedule"]["epochs"] = 3
    resumed, uninterrupted = tmp_path / "resumed", tmp_path / "uninterrupted"
    _train_until_killed(spec, inputs, resumed, monkeypatch)
    assert (resumed / "checkpoints" / "last.ckpt").is_file() and not (resumed / "model.pt").exists()

    caplog.set_level(logging.INFO, logger="dsflexinet")
    train_job(spec, _teacher_data(inputs), _files(resumed), COMPUTE)
    assert f"resuming from {resumed / 'checkpoints' / 'last.ckpt'}" in caplog.messages
    epoch_lines = [message.split(":")[0] for message in caplog.messages if message.startswith("epoch ")]
    assert epoch_lines == ["epoch 2/3", "epoch 3/3"]  # one log line per epoch trained in this run
    history = list(csv.DictReader((resumed / "history.csv").open()))
    assert [row["epoch"] for row in history] == ["1", "2", "3"]
    assert not (resumed / "checkpoints").exists()
    assert (resumed / "tensorboard").is_dir() and list((resumed / "tensorboard").glob("events.out.tfevents.*"))

    train_job(spec, _teacher_data(inputs), _files(uninterrupted), COMPUTE)
    assert _same_weights(resumed / "model.pt", uninterrupted / "model.pt")
    assert (resumed / "history.csv").read_text() == (uninterrupted / "history.csv").read_text()


def test_damaged_checkpoint_is_set_aside(config, inputs, tmp_path: Path, monkeypatch, caplog) -> None:
    spec = teacher_spec(config, "cpresnet-dir_fms-s1")
    spec["schedule"]["epochs"] = 2
    _train_until_killed(spec, inputs, tmp_path / "job", monkeypatch)
    checkpoint = tmp_path / "job" / "checkpoints" / "last.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])  # the disk filled up
    caplog.set_level(logging.INFO, logger="dsflexinet")
    train_job(spec, _teacher_data(inputs), _files(tmp_path / "job"), COMPUTE)
    (warning,) = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.startswith(f"{checkpoint} is unreadable (") and "training starts afresh" in warning
    assert (tmp_path / "job" / "damaged-last.ckpt").is_file()  # kept for a look, out of the way
    assert not any(message.startswith("resuming") for message in caplog.messages)
    train_job(spec, _teacher_data(inputs), _files(tmp_path / "fresh"), COMPUTE)
    assert _same_weights(tmp_path / "job" / "model.pt", tmp_path / "fresh" / "model.pt")


def test_changed_spec_never_resumes_a_stale_checkpoint(config, inputs, tmp_path: Path, monkeypatch, caplog) -> None:
    spec = teacher_spec(config, "cpresnet-dir_fms-s1")
    spec["schedule"]["epochs"] = 2
    _train_until_killed(spec, inputs, tmp_path, monkeypatch)
    spec["schedule"]["lr"] *= 2  # the user changed a setting before rerunning
    caplog.set_level(logging.INFO, logger="dsflexinet")
    train_job(spec, _teacher_data(inputs), _files(tmp_path), COMPUTE)
    assert not any(message.startswith("resuming") for message in caplog.messages)
    assert [row["epoch"] for row in csv.DictReader((tmp_path / "history.csv").open())] == ["1", "2"]


def test_same_spec_trains_the_same_model(config, inputs, tmp_path: Path) -> None:
    """A rerun reproduces a job bit for bit, initial weights included (torch seeds itself from the OS at start)."""
    spec = teacher_spec(config, "cpresnet-dir_fms-s1")
    first, second = (train_job(spec, _teacher_data(inputs), _files(tmp_path / name), COMPUTE) for name in ("a", "b"))
    assert _same_weights(first, second)
    assert (tmp_path / "a" / "history.csv").read_text() == (tmp_path / "b" / "history.csv").read_text()


# The variables a one-task SLURM job step sets: Lightning's SLURM detection would take them for an srun launch.
ONE_TASK_SLURM_JOB = {
    "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0", "SLURM_JOB_NAME": "snakejob.train_teacher",
}  # fmt: skip


def test_ddp_over_two_processes_inside_a_one_task_slurm_job(config, inputs, tmp_path: Path) -> None:
    """`compute: {devices: 2, strategy: ddp}` as the train rule runs it: one command becomes two DDP processes
    (gloo on CPU; NCCL on GPUs is the same code), in a SLURM job too, and rank 0 alone writes the outputs."""
    spec = teacher_spec(config, "cpresnet-dir_fms-s1")
    compute = {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    command = [
        sys.executable, "-m", "dsflexinet", "--threads", "1", "train", "--spec", json.dumps(spec),
        "--compute", json.dumps(compute), "--train-cache", str(inputs["train"]), "--test-cache", str(inputs["test"]),
        "--impulse-responses", str(inputs["irs"]), "--out-model", str(tmp_path / "model.pt"),
        "--out-history", str(tmp_path / "history.csv"), "--work-dir", str(tmp_path),
    ]  # fmt: skip
    job = subprocess.run(command, env={**os.environ, **ONE_TASK_SLURM_JOB}, capture_output=True, text=True, timeout=600)
    output = job.stdout + job.stderr
    assert job.returncode == 0, output[-3000:]
    assert "Starting with 2 processes" in output and "distributed_backend=gloo" in output
    assert output.count(f"saved {tmp_path / 'model.pt'}") == 1  # rank 1 trained too, and wrote nothing
    assert output.count("epoch 1/1: train_loss ") == 1 and "Tip:" not in output and "LeafSpec" not in output
    assert load_model_file(tmp_path / "model.pt")["spec"] == spec
    history = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [row["epoch"] for row in history] == ["1"] and 0 <= float(history[0]["train_acc"]) <= 1
    assert not (tmp_path / "checkpoints").exists()


def test_interrupted_qat_resumes_to_the_same_int8_model(config, inputs, tmp_path: Path, monkeypatch) -> None:
    """QAT fine-tuning killed after its first epoch and resumed exports the int8 model an uninterrupted run
    does, to the last bit of its outputs (frozen observers and BatchNorm in the last epoch included)."""
    spec = student_spec(config, "tiny-rn", 1)
    spec.pop("distillation")  # labels only: this test needs no teachers
    data = TrainingData(inputs["train"], inputs["test"], inputs["irs"], inputs["energy"])
    student = train_job(spec, data, _files(tmp_path / "student"), COMPUTE)
    qat = qat_spec(config, "tiny-rn") | {"epochs": 2, "freeze_last_epochs": 1}

    def files(name: str) -> QatFiles:
        return QatFiles(_files(tmp_path / name, "model_int8.pt"), str(tmp_path / name / "quantized.json"))

    _until_killed(lambda: qat_job(student, qat, data, files("resumed"), COMPUTE), monkeypatch)
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").is_file()
    resumed = qat_job(student, qat, data, files("resumed"), COMPUTE)
    uninterrupted = qat_job(student, qat, data, files("uninterrupted"), COMPUTE)
    waves = torch.from_numpy(np.load(inputs["test"], mmap_mode="r")[:48].copy())
    with torch.inference_mode():
        assert torch.equal(load_classifier(resumed)(waves), load_classifier(uninterrupted)(waves))
    histories = [(tmp_path / name / "history.csv").read_text() for name in ("resumed", "uninterrupted")]
    assert histories[0] == histories[1]


def test_validation_curve_of_the_last_epochs_only(config, inputs, tmp_path: Path) -> None:
    """`validate_last_epochs` skips the validation pass of the earlier epochs (it only measures): their history
    rows have no validation numbers, the last ones do, and training is the same as with every epoch validated."""
    spec = teacher_spec(config, "cpresnet-dir_fms-s1")
    spec["schedule"].update(epochs=3, validate_last_epochs=1)
    sparse = train_job(spec, _teacher_data(inputs), _files(tmp_path / "sparse"), COMPUTE)
    history = list(csv.DictReader((tmp_path / "sparse" / "history.csv").open()))
    assert [row["val_acc"] == "" for row in history] == [True, True, False]
    spec["schedule"]["validate_last_epochs"] = 3
    every = train_job(spec, _teacher_data(inputs), _files(tmp_path / "every"), COMPUTE)
    assert _same_weights(sparse, every)


def test_validation_inputs_are_computed_once_and_reused_bit_for_bit() -> None:
    """Every validated epoch after the first reuses the kept log-mels: the frontend runs once per batch, and the
    curve's numbers are the bits a pass that recomputes them gives; a batch whose clips changed is recomputed,
    and nothing is kept beyond the budget."""
    from torch.utils.data import DataLoader

    from dsflexinet.audio.frontend import build_frontend
    from dsflexinet.audio.pipeline import TrainingInput
    from dsflexinet.models.registry import build_model

    generator = torch.Generator().manual_seed(11)
    batches = [{"wave": torch.randn(clips, 32000, generator=generator), "label": torch.arange(clips) % 10,
                "device": torch.zeros(clips, dtype=torch.int64)} for clips in (70, 8, 5)]  # fmt: skip
    schedule = {"lr": 1e-3, "weight_decay": 0.0, "warmup_epochs": 0, "rampdown_start": 0, "rampdown_epochs": 1,
                "min_lr_factor": 1.0}  # fmt: skip
    torch.manual_seed(0)
    model = build_model("dsflexinet_sm1")
    kept, recomputed = (SceneClassifier(model, TrainingInput(build_frontend("student")), schedule) for _ in "ab")
    recomputed._validation_inputs = ValidationInputs(budget_bytes=0)
    frontend_calls = {kept: 0, recomputed: 0}
    for module in frontend_calls:
        module.inputs.frontend.register_forward_hook(lambda m, i, o, module=module: frontend_calls.__setitem__(
            module, frontend_calls[module] + 1))  # fmt: skip
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip

    def validate(module: SceneClassifier) -> dict[str, float]:
        return trainer.validate(module, dataloaders=DataLoader(batches, batch_size=None), verbose=False)[0]

    first = validate(kept)
    assert frontend_calls[kept] == 4  # 70 clips in two 64-clip chunks, then one chunk each
    assert validate(kept) == first == validate(recomputed) and frontend_calls[kept] == 4
    assert kept._validation_inputs.kept_bytes == 83 * 256 * 64 * 4 and recomputed._validation_inputs.kept == {}
    batches[1] = {**batches[1], "wave": torch.randn(8, 32000, generator=generator)}
    assert validate(kept) == validate(recomputed) != first
    assert frontend_calls[kept] == 5 and frontend_calls[recomputed] == 2 * 4


def test_kept_validation_inputs_are_refused_for_any_changed_sample() -> None:
    """A kept batch is reused only for the same clips: one sample one float32 step away, anywhere in the clip, a
    rolled clip, or another row count, recomputes (and frees what was kept); the same clips, copied, are reused."""
    generator = torch.Generator().manual_seed(3)
    waves = torch.randn(6, 32000, generator=generator)
    cache = ValidationInputs()
    inputs = [torch.ones(6, 1, 256, 64)]
    cache.keep(0, waves, inputs)
    assert cache.kept_bytes == 6 * 256 * 64 * 4 and cache.get(0, waves.clone()) is inputs
    for row, sample in ((3, 1), (0, 31999), (5, 12345)):  # none of them on a regular subsampling grid
        changed = waves.clone()
        changed[row, sample] = torch.nextafter(changed[row, sample], torch.tensor(float("inf")))
        assert not torch.equal(cache.signature(changed), cache.signature(waves))
    rolled = torch.roll(waves, 4000, dims=1)  # the same samples reordered, as the time roll does
    assert not torch.equal(cache.signature(rolled), cache.signature(waves))
    assert cache.get(0, changed) is None and cache.kept == {} and cache.kept_bytes == 0
    cache.keep(0, waves, inputs)
    assert cache.get(0, waves[:5]) is None and cache.kept_bytes == 0  # another row count


def test_epoch_means_are_lightnings_epoch_means_bit_for_bit() -> None:
    """The step logs its epoch means once (Lightning's `log` is slow per call): they must be the bits Lightning's
    own per-step accumulation gives, for a tensor weighted by uneven batch sizes and a Python float (the lr)."""
    from pytorch_lightning.trainer.connectors.logger_connector.result import _ResultCollection

    generator = torch.Generator().manual_seed(0)
    lightning, ours = _ResultCollection(training=True), EpochMeans()
    for step, clips in enumerate([32] * 43 + [25]):
        loss, lr = torch.rand((), generator=generator) * 3, 1e-3 * (step + 1) / 7
        for name, value, batch in (("train_loss", loss, clips), ("lr", lr, 1)):
            logged = value if isinstance(value, torch.Tensor) else torch.tensor(value)  # as LightningModule.log
            lightning.log("training_step", name, logged, on_step=False, on_epoch=True, batch_size=batch)
            ours.add(name, value, batch, torch.device("cpu"))
    means = ours.pop()
    for name in ("train_loss", "lr"):
        expected = lightning[f"training_step.{name}"].compute()
        assert means[name].dtype == expected.dtype == torch.float32 and torch.equal(means[name], expected)
    assert 1.3 < means["train_loss"].item() < 1.7 and ours.pop() == {}  # means of U[0, 3); a fresh start


def test_a_diverging_training_fails_without_a_model(config, inputs, tmp_path: Path) -> None:
    """A learning rate far too large turns the weights to NaN within the first epoch: the job stops there in one
    line and writes no model.pt (it used to save one with thousands of NaN weights, on which QAT failed)."""
    spec = teacher_spec(config, "cpresnet-dir_fms-s1")
    spec["schedule"]["lr"] = 1.0e9
    with pytest.raises(PipelineError, match=r"^training diverged in epoch 1: train_loss .*non-finite weights; no "
                                            r"model written \(lower schedule\.lr\)$"):  # fmt: skip
        train_job(spec, _teacher_data(inputs), _files(tmp_path), COMPUTE)
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "checkpoints" / "last.ckpt").exists()
