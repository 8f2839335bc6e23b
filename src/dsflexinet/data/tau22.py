"""The TAU Urban Acoustic Scenes 2022 Mobile development set on disk: names, labels, tables and their checks.

Layout (Zenodo record 6337421, unzipped)::

    TAU-urban-acoustic-scenes-2022-mobile-development/
        audio/<scene>-<city>-<location>-<segment>-<subsegment>-<device>.wav   1 s, 44.1 kHz, 24-bit, mono
        meta.csv                                    filename  scene_label  identifier  source_label
        evaluation_setup/fold1_train.csv            filename  scene_label
        evaluation_setup/fold1_evaluate.csv         filename  scene_label
        evaluation_setup/fold1_test.csv             filename

All tables are tab-separated with a header line. The synthetic default data set is written in exactly this
layout, so everything after this module is the same code for real and synthetic data.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dsflexinet.errors import PipelineError

DATASET_DIRNAME = "TAU-urban-acoustic-scenes-2022-mobile-development"

# Fixed label order: class index i is SCENES[i] everywhere (models, logits, confusion matrices).
SCENES: tuple[str, ...] = (
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
)
SCENE_INDEX = {scene: index for index, scene in enumerate(SCENES)}

DEVICES: tuple[str, ...] = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
DEVICE_GROUPS: dict[str, tuple[str, ...]] = {
    "real": ("a", "b", "c"),
    "seen_simulated": ("s1", "s2", "s3"),
    "unseen_simulated": ("s4", "s5", "s6"),
}

META_FILE = "meta.csv"
META_COLUMNS = ("filename", "scene_label", "identifier", "source_label")
# The development set's split tables by their own names (the pipeline's labelled `test` split is fold1_evaluate,
# config data.splits; fold1_test lists the same clips without labels).
SPLIT_FILES = {
    "fold1_train": "evaluation_setup/fold1_train.csv",
    "fold1_evaluate": "evaluation_setup/fold1_evaluate.csv",
    "fold1_test": "evaluation_setup/fold1_test.csv",
}
# Columns of the clip table that the waveform cache and every later step read.
CLIP_COLUMNS = ("filename", "scene_label", "label", "device", "city", "identifier")


@dataclass(frozen=True)
class ClipName:
    """The fields encoded in a TAU22 file name."""

    scene: str
    city: str
    location: str
    segment: str
    subsegment: int
    device: str

    @property
    def identifier(self) -> str:
        """The recording location, as meta.csv's `identifier` column names it."""
        return f"{self.city}-{self.location}"

    @property
    def filename(self) -> str:
        """The path relative to the data set root, as the tables list it."""
        return (
            f"audio/{self.scene}-{self.city}-{self.location}-{self.segment}-{self.subsegment}-{self.device}.wav"
        )


def parse_clip_name(filename: str) -> ClipName:
    """Split `audio/<scene>-<city>-<location>-<segment>-<subsegment>-<device>.wav` into its fields.

    Raises ValueError with the reason; callers add the file and row.
    """
    name = Path(filename).name
    if not name.endswith(".wav"):
        raise ValueError(f"file name {filename!r} does not end in .wav")
    fields = name[: -len(".wav")].split("-")
    if len(fields) != 6:
        raise ValueError(
            f"file name {filename!r} does not follow <scene>-<city>-<location>-<segment>-<subsegment>-<device>.wav"
        )
    scene, city, location, segment, subsegment, device = fields
    if scene not in SCENE_INDEX:
        raise ValueError(f"unknown scene {scene!r} in {filename!r}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r} in {filename!r}")
    if not subsegment.isdigit():
        raise ValueError(f"subsegment {subsegment!r} in {filename!r} is not a number")
    return ClipName(scene, city, location, segment, int(subsegment), device)


def read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a tab-separated table and insist on its header; every value stays a string."""
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    with path.open(newline="") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
    missing = [column for column in columns if column not in header]
    if missing:
        raise PipelineError(
            f"{path}: missing column(s) {', '.join(missing)} in header {header!r} (expected tab-separated "
            f"{', '.join(columns)})"
        )
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: not a readable tab-separated table ({error})") from None
    return table[list(columns)]


def _row_error(path: Path, row: int, message: str) -> PipelineError:
    # Line numbers as an editor shows them: the header is line 1.
    return PipelineError(f"{path}:{row + 2}: {message}")


def _labelled_clip(path: Path, row: int, filename: str, scene: str) -> ClipName:
    """The clip a table row names, checked against the scene label the row gives it."""
    try:
        clip = parse_clip_name(filename)
    except ValueError as error:
        raise _row_error(path, row, str(error)) from None
    if scene != clip.scene:
        raise _row_error(path, row, f"scene_label {scene!r} does not match file name {filename!r}")
    return clip


def read_meta(root: Path) -> pd.DataFrame:
    """Read meta.csv and check that every row's fields agree with its file name."""
    path = Path(root) / META_FILE
    meta = read_table(path, META_COLUMNS)
    for row, (filename, scene, identifier, source) in enumerate(meta.itertuples(index=False)):
        clip = _labelled_clip(path, row, filename, scene)
        if source != clip.device:
            raise _row_error(path, row, f"source_label {source!r} does not match file name {filename!r}")
        if identifier != clip.identifier:
            raise _row_error(path, row, f"identifier {identifier!r} does not match file name {filename!r}")
    return meta


def read_split(root: Path, split_file: str, check_audio: bool = True) -> pd.DataFrame:
    """The clip table of a labelled split: filename, scene_label, label, device, city, identifier.

    `split_file` is relative to the data set root: `evaluation_setup/fold1_train.csv`, `.../fold1_evaluate.csv`
    (the labelled test split) or a DCASE 2024 subset such as `split25.csv` in the same format. Each row is
    checked against its file name and, with `check_audio`, against the audio directory.
    """
    root = Path(root)
    path = root / split_file
    table = read_table(path, ("filename", "scene_label"))
    if table.empty:
        raise PipelineError(f"{path}: the split lists no clips")
    duplicated = table["filename"].duplicated()
    if duplicated.any():
        row = int(duplicated.to_numpy().nonzero()[0][0])
        raise _row_error(path, row, f"{table['filename'].iloc[row]!r} is listed twice")
    records = []
    for row, (filename, scene) in enumerate(table.itertuples(index=False)):
        clip = _labelled_clip(path, row, filename, scene)
        if check_audio and not (root / filename).is_file():
            raise _row_error(path, row, f"audio file {root / filename} is missing")
        records.append((filename, scene, SCENE_INDEX[scene], clip.device, clip.city, clip.identifier))
    clips = pd.DataFrame.from_records(records, columns=list(CLIP_COLUMNS))
    clips["label"] = clips["label"].astype("int64")
    return clips


def dataset_summary(root: Path) -> dict:
    """Validate meta.csv and the three fold1 tables; count clips per split and device."""
    root = Path(root)
    meta = read_meta(root)
    known = set(meta["filename"])
    summary: dict = {"root": str(root), "meta_clips": len(meta), "splits": {}}
    for split, split_file in SPLIT_FILES.items():
        if split == "fold1_test":  # unlabelled: the same clips as fold1_evaluate, file names only
            table = read_table(root / split_file, ("filename",))
            for row, filename in enumerate(table["filename"]):
                try:
                    parse_clip_name(filename)
                except ValueError as error:
                    raise _row_error(root / split_file, row, str(error)) from None
            devices = table["filename"].map(lambda name: parse_clip_name(name).device)
        else:
            table = read_split(root, split_file)
            devices = table["device"]
        unknown = sorted(set(table["filename"]) - known)
        if unknown:
            raise PipelineError(f"{root / split_file}: {unknown[0]!r} is not listed in {root / META_FILE}")
        counts = devices.value_counts()
        summary["splits"][split] = {
            "clips": len(table),
            "devices": {device: int(counts.get(device, 0)) for device in DEVICES},
        }
    return summary
