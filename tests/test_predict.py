"""`predict` and the DCASE submission: every readable clip classified once, every other one named, never a row
with missing probabilities; output.csv in the DCASE'24 baseline's format."""

from __future__ import annotations

import json
import re
import shutil
import struct
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
from dsflexinet.data.wav import promised_frames, read_wav, resample
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


# --- untrusted inputs -------------------------------------------------------------------------------------------


def test_broken_and_looping_links_make_the_submission_incomplete_and_named(
    model_file: Path, test_clips: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "eval"
    folder.mkdir()
    shutil.copy(test_clips[0], folder / "good.wav")
    (folder / "gone.wav").symlink_to(folder / "nowhere.wav")
    (folder / "loop.wav").symlink_to(folder / "loop.wav")
    summary = write_submission(BAND_ENERGY, evaluation_clips(folder), _submission(tmp_path), {})
    assert summary == {"clips": 3, "classified": 1, "complete": False, "unreadable": ["gone.wav", "loop.wav"]}
    classified, skipped = predict_files([folder], model_file, tmp_path / "out.csv")
    assert (classified, skipped) == (1, [str(folder / "gone.wav"), str(folder / "loop.wav")])


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["audio/ok.wav", "../outside.wav"], r"meta\.csv: clip '\.\./outside\.wav' lies outside the evaluation folder"),
        (["/etc/outside.wav"], r"meta\.csv: clip '/etc/outside\.wav' lies outside the evaluation folder"),
        (["audio/ok.wav", "audio/../audio/ok.wav"],
         r"meta\.csv: clips 'ok\.wav' and '\.\./audio/ok\.wav' are the same file; a submission names each clip once"),
        (["audio/ok.wav", "=1+1"], r"meta\.csv: clip name '=1\+1' starts with a formula character"),
        (["audio/ok.wav", "audio/@SUM(A1).wav"], r"meta\.csv: clip name '@SUM\(A1\)\.wav' starts with a formula"),
    ],
)
def test_a_clip_table_cannot_leave_its_folder_or_name_a_formula(
    test_clips: list[Path], tmp_path: Path, entries: list[str], message: str
) -> None:
    root = tmp_path / "evaluation"
    (root / "audio").mkdir(parents=True)
    shutil.copy(test_clips[0], root / "audio" / "ok.wav")
    shutil.copy(test_clips[1], tmp_path / "outside.wav")
    pd.DataFrame({"filename": entries}).to_csv(root / "meta.csv", sep="\t", index=False)
    with pytest.raises(PipelineError, match=f"^{re.escape(str(root))}/{message}"):
        evaluation_clips(root)


def test_predict_writes_formula_leading_names_as_text(model_file: Path, test_clips: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    names = ["=1+1.wav", "+cmd.wav", "-2.wav", "@SUM(A1).wav", "plain.wav"]
    for name, clip in zip(names, test_clips, strict=False):
        shutil.copy(clip, folder / name)
    out = tmp_path / "out.csv"
    relative = [Path(name) for name in names]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        assert predict_files(relative, model_file, out) == (5, [])
    cells = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert cells == ["'=1+1.wav", "'+cmd.wav", "'-2.wav", "'@SUM(A1).wav", "plain.wav"]


def test_predict_refuses_an_output_that_is_a_folder_or_an_input(
    model_file: Path, test_clips: list[Path], tmp_path: Path
) -> None:
    clip = tmp_path / "clip.wav"
    shutil.copy(test_clips[0], clip)
    before = clip.read_bytes()
    with pytest.raises(PipelineError, match=f"^{re.escape(str(tmp_path))}: is a folder; --out names the CSV file"):
        predict_files([clip], model_file, tmp_path)
    with pytest.raises(PipelineError, match=f"^{re.escape(str(clip))}: is one of the inputs; --out names a new CSV"):
        predict_files([tmp_path], model_file, clip)
    assert clip.read_bytes() == before


def test_an_implausible_sample_rate_is_refused_in_one_line(model_file: Path, tmp_path: Path) -> None:
    slow = tmp_path / "slow.wav"
    soundfile.write(slow, np.zeros(4), 1)
    with pytest.raises(PipelineError) as error:
        read_wav(slow)
    assert str(error.value) == f"{slow}: sample rate 1 Hz is not a plausible recording's (8,000 to 384,000 Hz)"
    assert predict_files([slow], model_file, tmp_path / "out.csv") == (0, [str(slow)])


def _sparse_wav(path: Path, rate: int, frames: int, padding: int = 0, tone: bool = False) -> None:
    """A 16-bit mono WAV of `frames` frames behind a `padding`-byte `junk` chunk: a tone, or silence left as a
    hole (a sparse file: it takes no disk space, whatever its size)."""
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, rate * 2, 2, 16)
    junk = struct.pack("<4sI", b"junk", padding) if padding else b""
    data = struct.pack("<4sI", b"data", 2 * frames)
    riff_size = 4 + len(fmt) + len(junk) + padding + len(data) + 2 * frames
    with path.open("wb") as handle:
        handle.write(struct.pack("<4sI4s", b"RIFF", min(riff_size, 0xFFFFFFFF), b"WAVE") + fmt + junk)
        handle.seek(padding, 1)
        handle.write(data)
        if tone:
            handle.write((np.sin(np.arange(frames) * 0.05) * 8000).astype("<i2").tobytes())
        else:
            handle.truncate(handle.tell() + 2 * frames)


# Resident memory after each batch of windows, against that before the first: the largest growth.
MEMORY_GROWTH = """
import os, sys
import torch
from dsflexinet.data.wav import read_windows
torch.set_num_threads(1)
page = os.sysconf("SC_PAGE_SIZE")
resident = lambda: int(open("/proc/self/statm").read().split()[1]) * page
start, grown, windows = resident(), 0, 0
for chunk in read_windows(sys.argv[1], 32000, 32000, 128):
    windows += len(chunk)
    grown = max(grown, resident() - start)
print(windows, grown)
"""


def test_a_long_recording_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """128 MiB of 48 kHz audio (1,398 s) is read window by window: resident memory grows by a few batches of
    windows (16 MiB each) and the resampler's first use (about 70 MiB in all), not by the file's decoded size
    (256 MiB as float32, before resampling copies it)."""
    import subprocess
    import sys

    long = tmp_path / "long.wav"
    frames = 64 * 1024 * 1024  # 128 MiB of 16-bit samples
    _sparse_wav(long, 48000, frames)
    assert long.stat().st_size > 128 * 1024 * 1024 and long.stat().st_blocks * 512 < 1024 * 1024  # sparse
    result = subprocess.run([sys.executable, "-c", MEMORY_GROWTH, str(long)], capture_output=True, text=True,
                            check=True)  # fmt: skip
    windows, grown = map(int, result.stdout.split())
    size = long.stat().st_size / 2**20
    print(f"\n{size:.0f} MiB WAV: {windows} windows, resident memory grew {grown / 2**20:.0f} MiB")
    assert windows == frames // 48000
    assert grown < 128 * 2**20  # half of what decoding the whole file takes


def test_a_huge_padding_chunk_is_skipped_not_read(model_file: Path, tmp_path: Path) -> None:
    """A 1 s clip behind a 2 GiB padding chunk: the header check and the decoder seek past it (reading it took
    2.7 GB)."""
    import resource

    padded = tmp_path / "padded.wav"
    _sparse_wav(padded, RATE, RATE, padding=2**31 - 2, tone=True)  # the largest chunk libsndfile reads past
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert promised_frames(padded) == RATE
    classified, skipped = predict_files([padded], model_file, tmp_path / "out.csv")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert (classified, skipped) == (1, []) and grown_mib < 128
