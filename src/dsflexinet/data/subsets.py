"""The DCASE 2024 data-efficient training subsets of TAU22: split5, split10, split25 and split50 of fold1_train.

The subsets are tables in the fold1_train format (tab-separated, header `filename	scene_label`) published
with the DCASE 2024 Task 1 baseline; split100 is fold1_train itself. They are nested (split5 ⊂ split10 ⊂
split25 ⊂ split50 ⊂ fold1_train), keep device A at 73 % as fold1_train does and hold no S4-S6 clip. Every
device's recording of a 10 s segment is in a subset with all its ten 1 s clips or not at all (measured on
the public copy: 508 device-A recordings in split5, each complete), while the recording locations are spread
(332 of them appear in split5 already).

The release files' own bytes were never seen here (only a public copy's), so a downloaded table is verified by
its content: the SHA-256 of the sorted file names joined by "\\n" (no trailing newline), which line endings and
row order do not change, plus its row and device counts for a readable message when it is wrong. The synthetic
default writes subsets with the same properties (`dsflexinet.data.synth`), checked by the same functions
against its own counts and digests.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dsflexinet.data.download import fetch, join_url
from dsflexinet.data.tau22 import DEVICE_GROUPS, DEVICES, SPLIT_FILES, parse_clip_name, read_split
from dsflexinet.errors import PipelineError

SUBSET_FRACTIONS = (5, 10, 25, 50)  # percent of fold1_train
TRAIN_FRACTIONS = (*SUBSET_FRACTIONS, 100)  # what `data.train_subset` may say; 100 is fold1_train
UNSEEN_DEVICES = DEVICE_GROUPS["unseen_simulated"]


@dataclass(frozen=True)
class SubsetFacts:
    """What identifies a subset table: its row count, clips per device and content digest."""

    rows: int
    devices: Mapping[str, int]  # every device in tau22.DEVICES, zeros included
    digest: str

    @classmethod
    def of(cls, filenames: Iterable[str]) -> SubsetFacts:
        names = list(filenames)
        counts = Counter(parse_clip_name(name).device for name in names)
        return cls(len(names), {device: counts.get(device, 0) for device in DEVICES}, content_digest(names))

    def as_dict(self) -> dict:
        return {"rows": self.rows, "devices": dict(self.devices), "digest": self.digest}


def content_digest(filenames: Iterable[str]) -> str:
    """SHA-256 of the sorted file names joined by newlines: one number for a table's clips."""
    return hashlib.sha256("\n".join(sorted(filenames)).encode()).hexdigest()


def _tau22(rows: int, a: int, b: int, c: int, s1: int, s2: int, s3: int, digest: str) -> SubsetFacts:
    counts = dict(a=a, b=b, c=c, s1=s1, s2=s2, s3=s3)
    return SubsetFacts(rows, {device: counts.get(device, 0) for device in DEVICES}, digest)


# Counted on the DCASE'24 split tables of the DCASE 2024 Task 1 baseline (CPJKU/dcase2024_task1_baseline), in the
# public copy yqcai888/easy_dcase_task1, data/meta_dcase_2024/.
TAU22_SUBSETS: dict[int, SubsetFacts] = {
    5: _tau22(6_980, 5_080, 380, 380, 380, 380, 380,
              "a0713391abe43333d6c9b6ac27fe0ea08e06ab3eaf10057513d4b75bb49e9299"),
    10: _tau22(13_960, 10_190, 730, 790, 740, 750, 760,
               "3e32316db2a23548f40c383684fab2e37bd06f189250229b449143d9a179b1ef"),
    25: _tau22(34_900, 25_520, 1_900, 1_920, 1_840, 1_850, 1_870,
               "f5092b04965d1920756a69df3c7920e3c6e1e7177f15bb027a04462d20bf7b5f"),
    50: _tau22(69_800, 51_100, 3_780, 3_780, 3_720, 3_700, 3_720,
               "d0a340ff51f55d8296f9c7195351b38dfed97845e272d0f22b741ccd986092cf"),
}  # fmt: skip


def _check_fraction(fraction: int, allowed: tuple[int, ...]) -> None:
    if fraction not in allowed:
        raise PipelineError(
            f"training subset {fraction!r} is not one of {', '.join(map(str, allowed))} (percent of fold1_train)"
        )


def subset_file(fraction: int) -> str:
    """The split table of a training fraction, relative to the data set root (100: fold1_train itself)."""
    _check_fraction(fraction, TRAIN_FRACTIONS)
    return SPLIT_FILES["fold1_train"] if fraction == 100 else f"evaluation_setup/split{fraction}.csv"


def read_subset(path: str | Path) -> pd.DataFrame:
    """The clip table of a split file, every row checked against its file name; the audio need not exist yet."""
    path = Path(path)
    return read_split(path.parent, path.name, check_audio=False)


def _example(names: Iterable[str]) -> str:
    names = sorted(names)
    return f"{len(names)} clip(s), e.g. {names[0]!r}"


def subset_problem(
    clips: pd.DataFrame, fraction: int, expected: SubsetFacts, train: pd.DataFrame | None = None
) -> str | None:
    """What is wrong with a subset's clip table, or None; the cheap, readable checks come before the digest."""
    unseen = clips[clips["device"].isin(UNSEEN_DEVICES)]
    if len(unseen):
        return f"lists {_example(unseen['filename'])} of the test-only devices S4-S6; a training subset has none"
    if len(clips) != expected.rows:
        return f"{len(clips):,} clips, expected {expected.rows:,} for the {fraction} % subset"
    counts = clips["device"].value_counts()
    wrong = [
        f"{device} {int(counts.get(device, 0)):,} (expected {wanted:,})"
        for device, wanted in expected.devices.items()
        if int(counts.get(device, 0)) != wanted
    ]
    if wrong:
        return f"wrong clips per device for the {fraction} % subset: {', '.join(wrong)}"
    digest = content_digest(clips["filename"])
    if digest != expected.digest:
        return (
            f"content digest {digest} (SHA-256 of the sorted file names), expected {expected.digest}: "
            f"not the {fraction} % subset, though its row and device counts match"
        )
    if train is not None:
        outside = set(clips["filename"]) - set(train["filename"])
        if outside:
            return f"{_example(outside)} not in {SPLIT_FILES['fold1_train']}"
    return None


def verify_subset(
    path: str | Path,
    fraction: int,
    expected: Mapping[int, SubsetFacts] = TAU22_SUBSETS,
    train: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Read the subset table at `path` and insist it is the `fraction` % subset; one line naming the file if not.

    `expected` holds the facts of each fraction: TAU22's by default, the synthetic set's own for the default run
    (`dsflexinet.data.synth.subset_facts`). With `train` (the fold1_train clip table) the subset must lie in it.
    """
    _check_fraction(fraction, SUBSET_FRACTIONS)
    clips = read_subset(path)
    problem = subset_problem(clips, fraction, expected[fraction], train)
    if problem:
        raise PipelineError(f"{path}: {problem}")
    return clips


def check_nested(tables: Mapping[str | Path, pd.DataFrame]) -> None:
    """Insist that each table's clips all lie in every larger one (split5 ⊂ split10 ⊂ ... ⊂ fold1_train).

    `tables` maps a name for messages (the file) to its clip table, in any order.
    """
    ordered = sorted(tables.items(), key=lambda item: len(item[1]))
    for (small_name, small), (large_name, large) in itertools.pairwise(ordered):
        outside = set(small["filename"]) - set(large["filename"])
        if outside:
            raise PipelineError(f"{small_name}: {_example(outside)} not in {large_name}; the subsets must be nested")


def verify_subsets(
    root: str | Path, expected: Mapping[int, SubsetFacts] = TAU22_SUBSETS, fractions: Iterable[int] = SUBSET_FRACTIONS
) -> dict:
    """Verify the subset tables under a data set root and their nesting in fold1_train; their facts as a dict."""
    root = Path(root)
    train_file = root / SPLIT_FILES["fold1_train"]
    train = read_subset(train_file)
    tables: dict[str | Path, pd.DataFrame] = {train_file: train}
    for fraction in fractions:
        path = root / subset_file(fraction)
        tables[path] = verify_subset(path, fraction, expected, train)
    check_nested(tables)
    return {
        str(path.relative_to(root)): SubsetFacts.of(table["filename"]).as_dict() for path, table in tables.items()
    }


def _verified(path: Path, fraction: int, expected: Mapping[int, SubsetFacts]) -> bool:
    try:
        return path.is_file() and subset_problem(read_subset(path), fraction, expected[fraction]) is None
    except PipelineError:
        return False


def fetch_subset(
    fraction: int, base_url: str, out: str | Path, expected: Mapping[int, SubsetFacts] = TAU22_SUBSETS
) -> Path:
    """Download split<fraction>.csv from `base_url` (config `data.subsets_url`: the DCASE 2024 baseline's
    release) to `out`, kept only if it verifies.

    The file arrives under a staging name and is renamed onto `out` only after its content matched, so `out` is
    never a wrong or partial table; a verified `out` is not downloaded again.
    """
    _check_fraction(fraction, SUBSET_FRACTIONS)
    out = Path(out)
    if _verified(out, fraction, expected):
        return out
    url = join_url(base_url, f"split{fraction}.csv")
    staging = out.with_name(out.name + ".unverified")
    fetch(url, staging, checksum=None)
    try:
        problem = subset_problem(read_subset(staging), fraction, expected[fraction])
        message = problem and f"{url}: {problem}"
    except PipelineError as error:  # not a readable split table: say where, in the downloaded file's terms
        message = str(error).replace(str(staging), url)
    if message:
        staging.unlink()
        raise PipelineError(f"{message}; deleted the download")
    os.replace(staging, out)
    return out
