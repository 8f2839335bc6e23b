"""The pretraining corpus and the teachers' pretraining: disjoint from the miniature, multi-label, verified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

from dsflexinet.data.pretraining import CORPUS_LABELS, CorpusSpec, generate_corpus, read_corpus
from dsflexinet.data.synth import DEVICE_FAMILIES, SyntheticSpec, device_parameters, draw_device
from dsflexinet.data.tau22 import DEVICES
from dsflexinet.errors import PipelineError
from dsflexinet.layout import checksum_beside
from dsflexinet.modelfile import rebuild
from dsflexinet.models.registry import build_model
from dsflexinet.train.pretrain import pretrain_job
from tests.conftest import TINY_CORPUS, TINY_SPEC

ARCHITECTURE = {"model": {"name": "cp_resnet_tiny", "options": {}}, "frontend": {"preset": "cp_resnet"},
                "time_roll": 4000}  # fmt: skip
SCHEDULE = {"epochs": 2, "batch_size": 4, "lr": 2e-3, "weight_decay": 1e-4, "warmup_epochs": 0, "rampdown_start": 0,
            "rampdown_epochs": 2, "min_lr_factor": 0.1}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("corpus")
    generate_corpus(CorpusSpec(**{**TINY_CORPUS, "recordings": 6}), work / "corpus.npy", work / "corpus.tsv")
    return work / "corpus.npy", work / "corpus.tsv"


def test_corpus_is_multi_label_and_reproducible(corpus, tmp_path: Path) -> None:
    loaded = read_corpus(*corpus)
    assert loaded.waves.shape == (12, 32000) and loaded.waves.dtype == np.int16
    assert loaded.targets.shape == (12, len(CORPUS_LABELS)) == (12, 14)
    assert (loaded.targets.sum(axis=1) >= 2).all()  # every clip has its two ambience bands at least (or one shared)
    assert loaded.targets.sum(axis=1).max() > 2  # and events on top
    assert set(loaded.table["device"]) <= {"p1", "p2"} and loaded.table["location"].nunique() == 2
    again = tmp_path / "again.npy"
    generate_corpus(CorpusSpec(**{**TINY_CORPUS, "recordings": 6}), again, tmp_path / "again.tsv")
    assert np.array_equal(np.load(again), np.load(corpus[0]))
    assert (tmp_path / "again.tsv").read_text() == corpus[1].read_text()


def test_corpus_shares_no_recording_location_or_device_with_the_miniature(tiny_dataset: Path, tmp_path: Path) -> None:
    spec = SyntheticSpec(**TINY_SPEC)
    # Under the data set's own seed and rate, so any shared draw would show as an equal or correlated clip.
    table = generate_corpus(CorpusSpec(**TINY_CORPUS, seed=spec.seed, sample_rate=spec.sample_rate),
                            tmp_path / "c.npy", tmp_path / "c.tsv")  # fmt: skip
    meta = pd.read_csv(tiny_dataset / "meta.csv", sep="\t")
    assert not set(table["device"]) & set(DEVICES)
    assert not set(table["location"]) & set(meta["identifier"])
    corpus = np.load(tmp_path / "c.npy").astype(np.float64)
    clips = np.stack([soundfile.read(tiny_dataset / name)[0] for name in meta["filename"]])
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    clips /= np.linalg.norm(clips, axis=1, keepdims=True)
    assert np.abs(corpus @ clips.T).max() < 0.5  # no recording of the miniature is in the corpus
    # Its devices are new draws of the reference and phone families, none of them the test devices' family.
    rate, n = spec.sample_rate, 2 * spec.sample_rate
    for k, family in enumerate(("reference", "phone")):
        corpus_device = draw_device(DEVICE_FAMILIES[family], np.random.default_rng([spec.seed, 104, k]), n, rate)
        for device in DEVICES[1:]:
            theirs = device_parameters(spec, device, n).response_db
            assert np.abs(corpus_device.response_db - theirs).mean() > 1.0, (family, device)


def test_pretrained_checkpoint_starts_a_teacher_and_is_verified(corpus, tmp_path: Path) -> None:
    weights, checksum, report = tmp_path / "w.pt", tmp_path / "w.pt.sha256", tmp_path / "w.json"
    result = pretrain_job(ARCHITECTURE, SCHEDULE, *corpus, weights, checksum, report, seed=3)
    assert [row["epoch"] for row in result["history"]] == [1, 2]
    assert 0 < result["history"][-1]["held_out_map"] <= 1 and result["held_out_clips"] + result["clips"] == 12
    assert json.loads(report.read_text())["labels"] == list(CORPUS_LABELS)
    state = torch.load(weights, weights_only=True)
    assert state and not any(key.startswith("head.") for key in state)  # the classifier is not kept
    assert checksum_beside(str(weights)) == str(checksum)
    teacher = build_model("cp_resnet_tiny", pretrained_path=str(weights))
    assert torch.equal(teacher.state_dict()["stages.2.0.conv2.weight"], state["stages.2.0.conv2.weight"])
    # The same job on the same machine writes the same bytes (and so the same checksum).
    again = pretrain_job(ARCHITECTURE, SCHEDULE, *corpus, tmp_path / "a.pt", tmp_path / "a.sha256", tmp_path / "a.json",
                         seed=3)  # fmt: skip
    assert again["history"] == [dict(row, seconds=again["history"][i]["seconds"]) for i, row in
                                enumerate(result["history"])]  # fmt: skip
    assert (tmp_path / "a.sha256").read_text().split()[0] == checksum.read_text().split()[0]
    # A trained teacher is rebuilt from its own weights: its starting checkpoint is not read again (nor needed).
    spec = {"model": {"name": "cp_resnet_tiny", "options": {"pretrained_path": str(tmp_path / "gone.pt")}},
            "frontend": {"preset": "cp_resnet"}}  # fmt: skip
    rebuilt = rebuild(spec, teacher.state_dict())
    assert torch.equal(rebuilt.model.state_dict()["stem.0.weight"], teacher.state_dict()["stem.0.weight"])
    # A checkpoint changed after its checksum was written is refused in one line, naming the file.
    damaged = bytearray(weights.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    with pytest.raises(PipelineError, match=rf"^{weights}: SHA-256 [0-9a-f]{{64}} does not match"):
        build_model("cp_resnet_tiny", pretrained_path=str(weights))


def test_unreadable_corpus_is_refused_in_one_line(corpus, tmp_path: Path) -> None:
    table = tmp_path / "t.tsv"
    table.write_text(corpus[1].read_text().replace("\thum\t", "\tdrone\t"))
    with pytest.raises(PipelineError, match=rf"^{table}: not a pretraining corpus table \(missing hum\)$"):
        read_corpus(corpus[0], table)
