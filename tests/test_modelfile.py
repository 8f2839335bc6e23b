"""Model files: what is not one (text, YAML, random bytes, a truncated model.pt, another pipeline's archive) is
refused in one line naming the file, by every command that reads models."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

from dsflexinet.audio.frontend import build_frontend
from dsflexinet.cli import main
from dsflexinet.errors import PipelineError
from dsflexinet.machine import describe_machine
from dsflexinet.modelfile import (
    ModelInput,
    WaveformClassifier,
    export_classifier,
    load_classifier,
    load_model_file,
    save_model,
)
from dsflexinet.models.registry import build_model

SPEC = {"model": {"name": "dsflexinet_sm1", "options": {}}, "frontend": {"preset": "student", "options": {}}}


@pytest.fixture
def model_pt(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    save_model(path, build_model("dsflexinet_sm1"), SPEC, ModelInput(32000, 32000), (describe_machine(),))
    return path


def test_a_saved_model_round_trips(model_pt: Path) -> None:
    payload = load_model_file(model_pt)
    assert payload["spec"] == SPEC and payload["input"] == ModelInput(32000, 32000)
    assert payload["trained_on"] == (describe_machine(),)
    classifier = load_classifier(model_pt)
    assert classifier.trained_on == (describe_machine(),)
    with torch.inference_mode():
        assert classifier(torch.zeros(2, 32000)).shape == (2, 10)
    assert classifier.input.sample_rate == 32000 and len(classifier.input.classes) == 10


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"just some notes\n", "not a readable model file"),
        (b"model: {name: dsflexinet_sm1}\n", "not a readable model file"),
        (os.urandom(4096), "not a readable model file"),
        (b"PK\x03\x04" + os.urandom(200), "not a readable model file"),
    ],
)
def test_what_is_not_a_model_is_refused_in_one_line(tmp_path: Path, content: bytes, reason: str, capsys) -> None:
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(PipelineError) as error:
        load_classifier(path)
    assert str(error.value).startswith(f"{path}: {reason}") and "\n" not in str(error.value)
    cache = tmp_path / "none.npy"
    for command in (["evaluate", "--model", str(path), "--cache", str(cache), "--out", str(tmp_path / "e.json"),
                     "--out-clips", str(tmp_path / "e.tsv")],
                    ["predict", str(tmp_path), "--model", str(path), "--out", str(tmp_path / "p.csv")]):  # fmt: skip
        assert main(command) == 1
        printed = capsys.readouterr().err.strip()
        assert printed.startswith(f"error: {path}: {reason}") and "\n" not in printed


def test_a_truncated_or_foreign_model_file_is_refused(model_pt: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(model_pt.read_bytes()[:5000])
    with pytest.raises(PipelineError, match=r"truncated\.pt: not a readable model file"):
        load_model_file(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)  # someone else's checkpoint
    with pytest.raises(PipelineError, match=r"foreign\.pt: not a model file of this pipeline version"):
        load_model_file(foreign)
    with pytest.raises(PipelineError, match=r"absent\.pt: model file not found"):
        load_classifier(tmp_path / "absent.pt")


def test_machine_records_old_and_damaged(model_pt: Path, tmp_path: Path) -> None:
    payload = torch.load(model_pt, weights_only=False)
    del payload["trained_on"]
    old = tmp_path / "old.pt"
    torch.save(payload, old)  # written before machines were recorded
    assert load_classifier(old).trained_on == ()
    damaged = tmp_path / "damaged.pt"
    torch.save(payload | {"trained_on": "a laptop"}, damaged)
    with pytest.raises(PipelineError) as error:
        load_classifier(damaged)
    assert str(error.value) == f"{damaged}: unreadable machine record (not a list of machines)"


@pytest.mark.parametrize(
    ("record", "reason"),
    [(b"\x80abc", "unreadable input or machine record"), (b'{"cpu": "x"}', "unreadable machine record")],
)
def test_an_exported_model_with_a_damaged_machine_record_is_refused(tmp_path: Path, record: bytes, reason: str) -> None:
    path = tmp_path / "model_int8.pt"
    records = {"input.json": json.dumps(ModelInput(32000, 32000).to_dict()), "trained_on.json": record}
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(path), _extra_files=records)
    with pytest.raises(PipelineError) as error:
        load_classifier(path)
    assert str(error.value).startswith(f"{path}: {reason}") and "\n" not in str(error.value)


def test_the_same_model_saves_to_the_same_bytes_under_any_name(tmp_path: Path) -> None:
    """A rerun that trains the same weights must leave the same model file, so that its checksum shows it.
    (An exported TorchScript model numbers its classes per trace, so only one export per process, as the
    pipeline's jobs do, gives the same bytes; its records must still not be named after the temporary file.)"""
    model = build_model("dsflexinet_sm1")
    for name in ("model.pt", "other.pt"):
        save_model(tmp_path / name, model, SPEC, ModelInput(32000, 32000), (describe_machine(),))
    first, second = ((tmp_path / name).read_bytes() for name in ("model.pt", "other.pt"))
    assert first == second and b".tmp-" not in first
    # batchnorm: a float ResNorm does not trace (the exported students are int8, whose ResNorm does)
    classifier = WaveformClassifier(build_frontend("student"), build_model("dsflexinet_sm1", norm="batchnorm"))
    export_classifier(classifier, tmp_path / "model_int8.pt", ModelInput(32000, 32000), "fbgemm")
    with zipfile.ZipFile(tmp_path / "model_int8.pt") as archive:
        assert {name.split("/")[0] for name in archive.namelist()} == {"archive"}
    with torch.inference_mode():
        assert load_classifier(tmp_path / "model_int8.pt")(torch.zeros(1, 32000)).shape == (1, 10)


class _ShellCommand:
    """What a hostile model file holds: unpickling it runs a shell command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


def test_a_model_file_that_would_run_code_is_refused_by_every_loader(model_pt: Path, tmp_path: Path, capsys) -> None:
    """A crafted model.pt, checkpoint or TorchScript-looking archive writes no marker through any entry point
    that loads models: predict, evaluate, dump-logits, load_model_file (QAT) and the training job's resume."""
    from dsflexinet.train.run import _readable_checkpoint

    marker = tmp_path / "marker"
    payload = torch.load(model_pt, weights_only=False) | {"spec": _ShellCommand(f"touch {marker}")}
    crafted = tmp_path / "crafted.pt"
    torch.save(payload, crafted)
    disguised = tmp_path / "disguised.pt"  # a zip holding constants.pkl, which load_classifier takes for TorchScript
    with zipfile.ZipFile(disguised, "w") as archive:
        for name in ("constants.pkl", "data.pkl"):
            archive.writestr(f"archive/{name}", crafted.read_bytes())
        archive.writestr("archive/extra/input.json", json.dumps(ModelInput(32000, 32000).to_dict()))
    cache, out = tmp_path / "none.npy", tmp_path / "out"
    for model in (crafted, disguised):
        for command in (["predict", str(tmp_path), "--model", str(model), "--out", f"{out}.csv"],
                        ["evaluate", "--model", str(model), "--cache", str(cache), "--out", f"{out}.json",
                         "--out-clips", f"{out}.tsv"],
                        ["dump-logits", "--model", str(model), "--cache", str(cache),
                         "--out", f"{out}.npz"]):  # fmt: skip
            assert main(command) == 1
            printed = capsys.readouterr().err.strip()
            assert printed.startswith(f"error: {model}: ") and "\n" not in printed
    with pytest.raises(PipelineError) as error:
        load_model_file(crafted)
    assert str(error.value).startswith(f"{crafted}: refused: it holds objects other than tensors and plain data")
    assert "posix.system" in str(error.value) and "\n" not in str(error.value)
    assert "refused" in _readable_checkpoint(crafted)
    assert not marker.exists()
    os.system(f"touch {marker}")  # the marker command itself works: its absence above is the loaders' doing
    assert marker.exists()


def test_a_model_with_non_finite_weights_is_not_saved(tmp_path: Path) -> None:
    model = build_model("dsflexinet_sm1")
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    path = tmp_path / "model.pt"
    with pytest.raises(PipelineError) as error:
        save_model(path, model, SPEC, ModelInput(32000, 32000))
    assert str(error.value) == f"{path}: refusing to save a model with 1 non-finite weights (NaN or infinite)"
    assert not path.exists() and not list(tmp_path.iterdir())
