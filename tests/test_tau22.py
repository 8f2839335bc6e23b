"""The TAU22 layout reader on a real-format fixture and on broken inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from dsflexinet.data.tau22 import (
    SCENES,
    dataset_summary,
    parse_clip_name,
    read_meta,
    read_split,
)
from dsflexinet.errors import PipelineError

# Names as they appear in the real meta.csv (one is the real clip in ../shared/data/tau-clips).
TRAIN = [
    ("audio/airport-lisbon-1000-40000-0-a.wav", "airport"),
    ("audio/airport-lisbon-1000-40000-1-b.wav", "airport"),
    ("audio/street_traffic-london-271-8251-3-s2.wav", "street_traffic"),
]
EVALUATE = [
    ("audio/metro_station-paris-5-140-9-s4.wav", "metro_station"),
    ("audio/tram-vienna-285-8639-0-c.wav", "tram"),
]


def write_table(path: Path, header: list[str], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(row) + "\n" for row in rows))


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    root = tmp_path / "TAU-urban-acoustic-scenes-2022-mobile-development"
    (root / "audio").mkdir(parents=True)
    for filename, _ in TRAIN + EVALUATE:
        soundfile.write(root / filename, np.zeros(44100), 44100, subtype="PCM_24")
    meta_rows = []
    for filename, scene in TRAIN + EVALUATE:
        clip = parse_clip_name(filename)
        meta_rows.append((filename, scene, clip.identifier, clip.device))
    write_table(root / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], meta_rows)
    write_table(root / "evaluation_setup/fold1_train.csv", ["filename", "scene_label"], TRAIN)
    write_table(root / "evaluation_setup/fold1_evaluate.csv", ["filename", "scene_label"], EVALUATE)
    write_table(root / "evaluation_setup/fold1_test.csv", ["filename"], [(f,) for f, _ in EVALUATE])
    return root


def test_clip_name_fields() -> None:
    clip = parse_clip_name("audio/street_pedestrian-barcelona-163-4983-7-s3.wav")
    assert (clip.scene, clip.city, clip.location, clip.segment, clip.subsegment, clip.device) == (
        "street_pedestrian", "barcelona", "163", "4983", 7, "s3",
    )  # fmt: skip
    assert clip.identifier == "barcelona-163"
    assert clip.filename == "audio/street_pedestrian-barcelona-163-4983-7-s3.wav"


def test_scene_order_is_fixed() -> None:
    assert SCENES[0] == "airport" and SCENES[9] == "tram" and len(set(SCENES)) == 10


def test_reads_real_format_layout(layout: Path) -> None:
    train = read_split(layout, "evaluation_setup/fold1_train.csv")
    assert list(train["device"]) == ["a", "b", "s2"]
    assert list(train["label"]) == [0, 0, 8]
    assert list(train["identifier"]) == ["lisbon-1000", "lisbon-1000", "london-271"]
    summary = dataset_summary(layout)
    assert summary["meta_clips"] == 5
    assert summary["splits"]["fold1_train"]["devices"]["a"] == 1
    assert summary["splits"]["fold1_evaluate"]["devices"]["s4"] == 1
    assert summary["splits"]["fold1_test"]["clips"] == 2


def test_missing_split_file(layout: Path) -> None:
    (layout / "evaluation_setup/fold1_train.csv").unlink()
    with pytest.raises(PipelineError, match=r"fold1_train\.csv: file not found"):
        read_split(layout, "evaluation_setup/fold1_train.csv")


def test_missing_column_names_file_and_column(layout: Path) -> None:
    write_table(layout / "meta.csv", ["filename", "scene_label", "identifier"], [])
    with pytest.raises(PipelineError, match=r"meta\.csv: missing column\(s\) source_label"):
        read_meta(layout)


def test_comma_separated_table_is_rejected(layout: Path) -> None:
    (layout / "evaluation_setup/fold1_train.csv").write_text("filename,scene_label\naudio/x.wav,airport\n")
    with pytest.raises(PipelineError, match="missing column"):
        read_split(layout, "evaluation_setup/fold1_train.csv")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("audio/airport-lisbon-1000-40000-0-z9.wav", "airport"), "unknown device 'z9'"),
        (("audio/beach-lisbon-1000-40000-0-a.wav", "beach"), "unknown scene 'beach'"),
        (("audio/airport-lisbon-1000-0-a.wav", "airport"), "does not follow"),
        (("audio/airport-lisbon-1000-40000-5-a.wav", "park"), "scene_label 'park' does not match"),
    ],
)
def test_bad_rows_name_file_and_line(layout: Path, row: tuple[str, str], message: str) -> None:
    write_table(layout / "evaluation_setup/fold1_train.csv", ["filename", "scene_label"], [TRAIN[0], row])
    with pytest.raises(PipelineError, match=rf"fold1_train\.csv:3: .*{message}"):
        read_split(layout, "evaluation_setup/fold1_train.csv", check_audio=False)


def test_split_row_without_audio(layout: Path) -> None:
    (layout / TRAIN[2][0]).unlink()
    with pytest.raises(PipelineError, match=r"fold1_train\.csv:4: audio file .*street_traffic.* is missing"):
        read_split(layout, "evaluation_setup/fold1_train.csv")


def test_duplicate_row(layout: Path) -> None:
    write_table(layout / "evaluation_setup/fold1_train.csv", ["filename", "scene_label"], [TRAIN[0], TRAIN[0]])
    with pytest.raises(PipelineError, match=r"fold1_train\.csv:3: .* is listed twice"):
        read_split(layout, "evaluation_setup/fold1_train.csv")


def test_meta_field_mismatch(layout: Path) -> None:
    rows = [("audio/airport-lisbon-1000-40000-0-a.wav", "airport", "lisbon-1000", "b")]
    write_table(layout / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], rows)
    with pytest.raises(PipelineError, match=r"meta\.csv:2: source_label 'b' does not match"):
        read_meta(layout)


def test_split_clip_missing_from_meta(layout: Path) -> None:
    rows = [(f, s, parse_clip_name(f).identifier, parse_clip_name(f).device) for f, s in TRAIN]
    write_table(layout / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], rows)
    with pytest.raises(PipelineError, match=r"fold1_evaluate\.csv: .* is not listed in .*meta\.csv"):
        dataset_summary(layout)
