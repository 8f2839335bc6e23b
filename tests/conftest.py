"""Shared fixtures: the real recordings beside the checkout (optional) and small synthetic data sets."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The real MicIRP responses and TAU clips live beside the checkout (../shared); tests that need them skip
# cleanly elsewhere. DSFLEXINET_SHARED points to another copy.
SHARED = Path(os.environ.get("DSFLEXINET_SHARED", REPO.parent / "shared"))


def _shared_data(name: str, what: str) -> Path:
    path = SHARED / "data" / name
    if not path.is_dir():
        pytest.skip(f"{what} not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """The CLI, run in-process, sets torch's thread count for good; a float result that a later test pins
    would then depend on which tests ran before it (reductions split differently)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def micirp_dir() -> Path:
    return _shared_data("micirp", "real MicIRP responses")


@pytest.fixture(scope="session")
def tau_clips_dir() -> Path:
    return _shared_data("tau-clips", "real TAU clips")


# A tiny synthetic data set (250 clips) in the TAU22 layout, shared by the data, audio and training tests.
TINY_SPEC = dict(
    clips_per_segment=2, train_segments_per_scene=1, minor_device_clips_per_scene=1, test_segments_per_scene=1,
    train_locations_per_scene=1, test_locations_per_scene=1,
)  # fmt: skip


TINY_CORPUS = dict(recordings=4, clips_per_recording=2, locations=2, devices=2)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dsflexinet.data.synth import SyntheticSpec, generate

    return generate(SyntheticSpec(**TINY_SPEC), tmp_path_factory.mktemp("tiny-dataset"))


def tiny_pipeline_config(config: dict) -> dict:
    """The default config shrunk to a smoke run of every rule: the tiny data set and pretraining corpus, one seed
    and recipe of each teacher architecture (2 teachers), two sm1 students (one of each RN dimension), one epoch
    everywhere."""
    config = copy.deepcopy(config)
    config["data"]["synthetic"].update(TINY_SPEC)
    config["data"]["impulse_responses"]["synthetic"]["count"] = 4
    config["pretraining"]["corpus"].update(TINY_CORPUS)
    for entry in config["weights"].values():
        if "pretrain" in entry:
            entry["schedule"].update(epochs=1, batch_size=8, warmup_epochs=0, rampdown_start=0, rampdown_epochs=1)
    config["compute"]["threads"] = 1
    teachers = config["teachers"]
    # One training location per scene: nothing to hold out, so the fusion is fitted in-sample.
    teachers.update(seeds=[1], recipes=["dir_fms"], fusion={"fit": "in_sample", "holdout_fraction": 0, "seed": 0,
                                                             "steps": 20})
    teachers["architectures"]["cpresnet"]["model"]["name"] = "cp_resnet_tiny"  # a smoke run checks rules, not teachers
    for architecture in teachers["architectures"].values():
        architecture["schedule"].update(epochs=1, batch_size=32, warmup_epochs=0, rampdown_start=0, rampdown_epochs=1)
    defaults = config["students"]["defaults"]
    defaults["model"]["name"] = "dsflexinet_sm1"
    defaults["schedule"].update(epochs=1, batch_size=32, warmup_epochs=0, rampdown_start=0, rampdown_epochs=1)
    defaults["qat"].update(epochs=1, freeze_last_epochs=0)
    config["students"]["runs"] = {"tiny-rn": {}, "tiny-rnfreq": {"model": {"options": {"norm": "resnorm_freq"}}}}
    config["reports"] = {
        "table2": ["tiny-rn"], "table3": ["tiny-rn"], "table4": {"Fused": "tiny-rn"},
        "table5": {"DS-FlexiNet+RN+FMS+ADIR": "tiny-rn"}, "fig3": {"channel": "tiny-rn", "frequency": "tiny-rnfreq"},
    }  # fmt: skip
    config["submission"]["run"] = "tiny-rn"
    config["data_efficiency"]["runs"] = ["tiny-rn", "tiny-rnfreq"]
    return config


def copy_project(destination: Path, config: dict | None = None) -> Path:
    """The files git sees in this checkout (tracked or not ignored), copied to `destination`, optionally with
    another config.yaml: pipeline tests run there and never touch the working tree."""
    import subprocess

    import yaml

    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listing, cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source, target = REPO / name, destination / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    if config is not None:
        (destination / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return destination
