"""Shared fixtures: the real recordings beside the checkout (optional) and small synthetic data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The real MicIRP responses and TAU clips live beside the checkout (../shared); tests that need them skip
# cleanly elsewhere. DSFLEXINET_SHARED points to another copy.
SHARED = Path(os.environ.get("DSFLEXINET_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def micirp_dir() -> Path:
    path = SHARED / "data" / "micirp"
    if not path.is_dir():
        pytest.skip(f"real MicIRP responses not found at {path}")
    return path


@pytest.fixture(scope="session")
def tau_clips_dir() -> Path:
    path = SHARED / "data" / "tau-clips"
    if not path.is_dir():
        pytest.skip(f"real TAU clips not found at {path}")
    return path


# A tiny synthetic data set (250 clips) in the TAU22 layout, shared by the data, audio and training tests.
TINY_SPEC = dict(
    clips_per_segment=2, train_segments_per_scene=1, minor_device_clips_per_scene=1, test_segments_per_scene=1,
    train_locations_per_scene=1, test_locations_per_scene=1,
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dsflexinet.data.synth import SyntheticSpec, generate

    return generate(SyntheticSpec(**TINY_SPEC), tmp_path_factory.mktemp("tiny-dataset"))
