"""Atomic outputs: JSON is standard JSON (no NaN, no Infinity), and a refused write leaves the old file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsflexinet.atomic import atomic_path, write_json
from dsflexinet.errors import PipelineError


def test_write_json_round_trip(tmp_path: Path) -> None:
    payload = {"threshold": 327.5, "devices": {"a": {"accuracy": 0.5, "clips": 100}}, "rows": [1, 2.5, None]}
    write_json(tmp_path / "out.json", payload)
    assert json.loads((tmp_path / "out.json").read_text()) == payload


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"threshold": float("nan"), "mean": float("inf")}, "threshold"),
        ({"devices": {"a": {"accuracy": 0.5}, "s4": {"accuracy": float("-inf")}}}, "devices.s4.accuracy"),
        ({"history": [{"loss": 1.0}, {"loss": float("nan")}]}, "history[1].loss"),
        ([0.0, [1.0, float("nan")]], "[1][1]"),
        (float("inf"), "<top level>"),
    ],
)
def test_write_json_refuses_non_finite_numbers_and_keeps_the_old_file(payload, where: str, tmp_path: Path) -> None:
    out = tmp_path / "energy.json"
    out.write_text('{"threshold": 300.0}\n')
    with pytest.raises(PipelineError) as failure:
        write_json(out, payload)
    assert str(failure.value) == f"{out}: refusing to write a non-finite number (NaN or Infinity) at {where}"
    assert out.read_text() == '{"threshold": 300.0}\n'
    assert [path.name for path in tmp_path.iterdir()] == ["energy.json"]  # no temporary file left behind


def test_an_error_inside_the_block_keeps_the_old_file_and_removes_the_temporary_one(tmp_path: Path) -> None:
    """A job that fails half-way through writing (here after 5 bytes) leaves the previous file as it was."""
    out = tmp_path / "table.csv"
    out.write_text("old,complete\n")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(out) as tmp:
        tmp.write_text("half,")
        assert len(list(tmp_path.iterdir())) == 2  # the temporary file beside the old one
        raise RuntimeError("disk full")
    assert out.read_text() == "old,complete\n"
    assert [path.name for path in tmp_path.iterdir()] == ["table.csv"]
