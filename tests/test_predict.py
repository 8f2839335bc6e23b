"""`predict` and the DCASE submission: every readable clip classified once, every other one named, never a row
with missing probabilities; output.csv in the DCASE'24 baseline's format."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch
from torch import nn

from dsflexinet.data.tau22 import SCENES, SPLIT_FILES
from dsflexinet.data.wav import read_wav, resample
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.predict import file_probabilities, predict_files
from dsflexinet.evaluate.submission import evaluation_clips, write_submission
from dsflexinet.layout import SubmissionFiles
from dsflexinet.modelfile import LoadedClassifier, ModelInput, export_classifier

RATE = 32000


class BandEnergy(nn.Module):
    """A fixed classifier: logit k is the log energy of the k-th tenth of the window (no weights to train, the
    same answer on any machine); a sample beyond float32's square root overflows it to a non-finite logit."""

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return torch.log(waves.reshape(waves.shape[0], len(SCENES), -1).pow(2).mean(dim=2) + 1e-12)


def expected_probabilities(path: Path) -> np.ndarray:
    wave, rate = read_wav(path)
    window = torch.from_numpy(resample(wave, rate, RATE)[:RATE].copy()).unsqueeze(0)
    return torch.softmax(BandEnergy()(window), dim=1)[0].numpy()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Resampling 1 s clips one by one: more threads only add overhead (10x slower on a busy 2-core VM)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


BAND_ENERGY = LoadedClassifier(BandEnergy(), ModelInput(RATE, RATE))


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated in favour of torch.export
        export_classifier(BandEnergy(), path, ModelInput(RATE, RATE))
    return path


@pytest.fixture
def test_clips(tiny_dataset: Path) -> list[Path]:
    names = pd.read_csv(tiny_dataset / SPLIT_FILES["fold1_test"], sep="\t")["filename"]
    return [tiny_dataset / name for name in names]


def _submission(tmp_path: Path) -> SubmissionFiles:
    return SubmissionFiles(str(tmp_path / "submission" / "output.csv"), str(tmp_path / "submission" / "info.json"))


def _write_truncated(source: Path, target: Path) -> int:
    """A copy of `source` cut off at half its audio; returns how many samples its header still promises."""
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return soundfile.info(source).frames


# --- predict ----------------------------------------------------------------------------------------------------


def test_predict_skips_what_it_cannot_classify_and_keeps_the_rest(
    model_file: Path, test_clips: list[Path], tmp_path: Path, caplog
) -> None:
    good = test_clips[:3]
    folder = tmp_path / "inputs"
    folder.mkdir()
    nan = folder / "nan.wav"
    wave, rate = read_wav(good[0])
    wave[1000] = np.nan
    soundfile.write(nan, wave, rate, subtype="FLOAT")
    loud = folder / "loud.wav"
    soundfile.write(loud, np.full(rate, 1e30, dtype=np.float32), rate, subtype="FLOAT")  # finite, overflows the model
    missing = folder / "missing.wav"
    with caplog.at_level("INFO", logger="dsflexinet"):
        classified, skipped = predict_files([*good, nan, loud, missing], model_file, tmp_path / "out.csv")
    assert (classified, skipped) == (3, [str(nan), str(loud), str(missing)])
    table = pd.read_csv(tmp_path / "out.csv")
    assert list(table["file"]) == [str(path) for path in good]
    assert not table.isna().any().any()  # no row with a scene and empty probabilities
    np.testing.assert_allclose(table[list(SCENES)].iloc[1], expected_probabilities(good[1]), atol=1e-5)
    assert f"skipped {nan}: 1 of 44100 samples are NaN or infinite (the first at sample 1000)" in caplog.text
    assert f"skipped {loud}: the model gives non-finite class probabilities (NaN or infinite) for it" in caplog.text
    assert f"skipped {missing}: file not found" in caplog.text
    assert "System error" not in caplog.text


def test_predict_classifies_a_truncated_file_with_a_warning(
    model_file: Path, test_clips: list[Path], tmp_path: Path, caplog
) -> None:
    truncated = tmp_path / "truncated.wav"
    promised = _write_truncated(test_clips[0], truncated)
    held = soundfile.info(truncated).frames
    assert (promised, held) == (44100, 22042)
    with caplog.at_level("WARNING", logger="dsflexinet"):
        assert predict_files([truncated], model_file, tmp_path / "out.csv") == (1, [])
    assert (
        f"{truncated}: truncated WAV file: its header promises 44100 samples, it holds 22042 (22058 missing)"
        in caplog.text
    )


def test_file_probabilities_keep_input_order_across_batches(test_clips: list[Path], monkeypatch) -> None:
    """Windows of several files share a model call; results still come one per file, in order."""
    monkeypatch.setattr("dsflexinet.evaluate.predict.EVAL_BATCH", 4)
    paths = [*test_clips[:5], Path("absent.wav"), *test_clips[5:11]]
    results = list(file_probabilities(BAND_ENERGY, paths))
    assert [path for path, _ in results] == paths
    assert results[5][1] is None
    np.testing.assert_allclose(results[9][1], expected_probabilities(paths[9]), atol=1e-5)


# --- the DCASE submission -------------------------------------------------------------------------------------------


def _read_output(out_dir: Path) -> tuple[list[str], pd.DataFrame]:
    text = (out_dir / "output.csv").read_text()
    return text.splitlines()[0].split("\t"), pd.read_csv(out_dir / "output.csv", sep="\t")


def test_submission_of_a_tau22_folder_matches_the_dcase_format(tiny_dataset: Path, tmp_path: Path) -> None:
    clips = evaluation_clips(tiny_dataset)  # the layout's test split: evaluation_setup/fold1_test.csv
    listed = list(pd.read_csv(tiny_dataset / SPLIT_FILES["fold1_test"], sep="\t")["filename"])
    assert len(clips) == len(listed) == 180
    info = {"model": "bandenergy", "parameters": 0, "macs": 320000, "parameter_bytes": 0, "model_file_bytes": 1234,
            "dev_test_accuracy": {"a": 0.1}}  # fmt: skip
    summary = write_submission(BAND_ENERGY, clips, _submission(tmp_path), info)

    header, table = _read_output(tmp_path / "submission")
    assert header == ["filename", "scene_label", *sorted(SCENES)] == ["filename", "scene_label", *SCENES]
    assert list(table["filename"]) == [name.removeprefix("audio/") for name in listed]
    assert not table["filename"].str.contains("/").any()
    probabilities = table[list(SCENES)].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert list(table["scene_label"]) == [SCENES[i] for i in probabilities.argmax(axis=1)]
    np.testing.assert_allclose(probabilities[7], expected_probabilities(tiny_dataset / listed[7]), atol=1e-6)

    stored = json.loads((tmp_path / "submission" / "info.json").read_text())
    assert stored == summary == info | {"clips": 180, "classified": 180, "complete": True, "unreadable": []}


def test_submission_of_a_plain_folder(test_clips: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "eval"
    (folder / "more").mkdir(parents=True)
    for path in test_clips[:4]:
        shutil.copy(path, folder / path.name)
    shutil.copy(test_clips[4], folder / "more" / "extra.Wav")  # found below the folder, whatever the case
    (folder / "notes.txt").write_text("not audio")
    summary = write_submission(BAND_ENERGY, evaluation_clips(folder), _submission(tmp_path), {})
    header, table = _read_output(tmp_path / "submission")
    assert header == ["filename", "scene_label", *SCENES]
    assert list(table["filename"]) == sorted(p.name for p in test_clips[:4]) + ["extra.Wav"]
    np.testing.assert_allclose(table[list(SCENES)].iloc[4], expected_probabilities(test_clips[4]), atol=1e-6)
    assert summary == {"clips": 5, "classified": 5, "complete": True, "unreadable": []}


def test_unreadable_clips_mark_the_submission_incomplete(tiny_dataset: Path, tmp_path: Path, caplog) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tiny_dataset, root)
    listed = list(pd.read_csv(root / SPLIT_FILES["fold1_test"], sep="\t")["filename"])
    (root / listed[3]).write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    (root / listed[10]).unlink()
    wave, rate = read_wav(root / listed[20])
    wave[5] = np.inf
    soundfile.write(root / listed[20], wave, rate, subtype="FLOAT")
    _write_truncated(tiny_dataset / listed[30], root / listed[30])  # classified, with a warning

    with caplog.at_level("INFO", logger="dsflexinet"):
        summary = write_submission(BAND_ENERGY, evaluation_clips(root), _submission(tmp_path), {})
    unreadable = [listed[i].removeprefix("audio/") for i in (3, 10, 20)]
    assert summary == {"clips": 180, "classified": 177, "complete": False, "unreadable": unreadable}
    _, table = _read_output(tmp_path / "submission")
    assert len(table) == 177 and not set(unreadable) & set(table["filename"])
    assert listed[30].removeprefix("audio/") in set(table["filename"])
    for index in (3, 10, 20):
        assert f"skipped {root / listed[index]}: " in caplog.text
    assert "incomplete submission, 3 of 180 clips could not be classified" in caplog.text


def test_evaluation_folder_problems_are_one_line(test_clips: list[Path], tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"absent: evaluation folder not found$"):
        evaluation_clips(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match=r"empty: no clips to classify"):
        evaluation_clips(tmp_path / "empty")
    for sub in ("x", "y"):
        (tmp_path / "twice" / sub).mkdir(parents=True)
        shutil.copy(test_clips[0], tmp_path / "twice" / sub / "clip.wav")
    with pytest.raises(PipelineError, match=r"twice: two clips are named 'clip\.wav'"):
        evaluation_clips(tmp_path / "twice")
