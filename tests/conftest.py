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
