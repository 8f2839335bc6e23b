"""DCASE'24 training subsets: content digests, verification, nesting and the verified download (file:// only)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dsflexinet.data.subsets import (
    TAU22_SUBSETS,
    SubsetFacts,
    check_nested,
    content_digest,
    fetch_subset,
    read_subset,
    subset_file,
    verify_subset,
    verify_subsets,
)
from dsflexinet.data.synth import SyntheticSpec, subset_facts
from dsflexinet.errors import PipelineError
from tests.conftest import TINY_SPEC

HEADER = "filename\tscene_label\n"


def _clips(scene: str, segment: int, device: str, subsegments: range = range(10)) -> list[tuple[str, str]]:
    return [(f"audio/{scene}-lisbon-1000-{segment}-{sub}-{device}.wav", scene) for sub in subsegments]


# A fold1_train of 40 clips and a "5 %" subset of it: two whole recordings, one of device A, one of B.
TRAIN = (_clips("park", 40000, "a") + _clips("park", 40010, "a") + _clips("park", 40000, "b")
         + _clips("bus", 40020, "c"))  # fmt: skip
SUBSET = _clips("park", 40000, "a") + _clips("bus", 40020, "c")
EXPECTED = {5: SubsetFacts.of(name for name, _ in SUBSET)}


def _write(path: Path, rows: list[tuple[str, str]], newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((HEADER + "".join(f"{name}\t{scene}\n" for name, scene in rows)).replace("\n", newline).encode())
    return path


def test_content_digest_ignores_row_order_and_line_endings(tmp_path: Path) -> None:
    lf = read_subset(_write(tmp_path / "lf.csv", SUBSET))
    crlf = read_subset(_write(tmp_path / "crlf.csv", SUBSET[::-1], newline="\r\n"))
    assert content_digest(lf["filename"]) == content_digest(crlf["filename"]) == EXPECTED[5].digest
    assert content_digest(["b", "a"]) == content_digest(["a", "b"]) != content_digest(["a", "b", "c"])
    assert EXPECTED[5].rows == 20
    assert EXPECTED[5].devices == {"a": 10, "b": 0, "c": 10, "s1": 0, "s2": 0, "s3": 0, "s4": 0, "s5": 0, "s6": 0}


def test_tau22_facts_are_consistent() -> None:
    for fraction, facts in TAU22_SUBSETS.items():
        assert sum(facts.devices.values()) == facts.rows
        assert facts.rows == pytest.approx(139_620 * fraction / 100, rel=0.001)  # 6,980 ... 69,800
        assert facts.devices["a"] / facts.rows == pytest.approx(102_150 / 139_620, abs=0.005)  # A: 73 %
    assert subset_file(25) == "evaluation_setup/split25.csv"
    assert subset_file(100) == "evaluation_setup/fold1_train.csv"
    with pytest.raises(PipelineError, match=r"training subset 20 is not one of 5, 10, 25, 50, 100"):
        subset_file(20)


def test_good_subset(tmp_path: Path) -> None:
    train = read_subset(_write(tmp_path / "fold1_train.csv", TRAIN))
    clips = verify_subset(_write(tmp_path / "split5.csv", SUBSET), 5, EXPECTED, train)
    assert len(clips) == 20 and set(clips["device"]) == {"a", "c"}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (SUBSET[:-1], r"19 clips, expected 20 for the 5 % subset"),
        (SUBSET[:-1] + _clips("bus", 40020, "b", range(1)), r"wrong clips per device .*: b 1 \(expected 0\), c 9"),
        (SUBSET[:-1] + _clips("bus", 40030, "c", range(1)),
         r"content digest [0-9a-f]{64} \(SHA-256 of the sorted file names\), expected " + EXPECTED[5].digest),
        (SUBSET[:-1] + _clips("bus", 40020, "s4", range(1)),
         r"lists 1 clip\(s\), e\.g\. 'audio/bus-lisbon-1000-40020-0-s4\.wav' of the test-only devices S4-S6"),
    ],
    ids=["wrong-rows", "wrong-devices", "wrong-digest", "unseen-device"],
)  # fmt: skip
def test_wrong_subset_fails_naming_the_file(tmp_path: Path, rows, message: str) -> None:
    path = _write(tmp_path / "split5.csv", rows)
    with pytest.raises(PipelineError, match=rf"^{tmp_path}/split5\.csv: {message}"):
        verify_subset(path, 5, EXPECTED)


def test_subset_outside_fold1_train(tmp_path: Path) -> None:
    train = read_subset(_write(tmp_path / "fold1_train.csv", TRAIN[:30]))  # without the recording 40020-c
    with pytest.raises(PipelineError, match=r"split5\.csv: 10 clip\(s\), e\.g\. 'audio/bus-lisbon-1000-40020-0-c\.wav'"
                                            r" not in evaluation_setup/fold1_train\.csv"):  # fmt: skip
        verify_subset(_write(tmp_path / "split5.csv", SUBSET), 5, EXPECTED, train)


def test_the_real_subset_facts_reject_a_synthetic_table(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"split5\.csv: 20 clips, expected 6,980 for the 5 % subset"):
        verify_subset(_write(tmp_path / "split5.csv", SUBSET), 5)


def test_check_nested(tmp_path: Path) -> None:
    tables = {name: read_subset(_write(tmp_path / name, rows)) for name, rows in (
        ("split5.csv", SUBSET), ("split10.csv", SUBSET + TRAIN[10:20]), ("fold1_train.csv", TRAIN),
    )}  # fmt: skip
    check_nested(tables)
    tables["split10.csv"] = read_subset(_write(tmp_path / "split10.csv", SUBSET[1:] + TRAIN[10:21]))
    with pytest.raises(PipelineError, match=r"^split5\.csv: 1 clip\(s\), e\.g\. 'audio/park-lisbon-1000-40000-0-a\.wav'"
                                            r" not in split10\.csv; the subsets must be nested$"):  # fmt: skip
        check_nested(tables)


def test_synthetic_subsets_pass_the_same_checks(tiny_dataset: Path) -> None:
    tiny = SyntheticSpec(**TINY_SPEC)
    facts = verify_subsets(tiny_dataset, subset_facts(tiny))
    assert [facts[subset_file(fraction)]["rows"] for fraction in (5, 10, 25, 50, 100)] == [7, 7, 14, 35, 70]
    with pytest.raises(PipelineError, match=r"split5\.csv: 7 clips, expected 6,980"):
        verify_subsets(tiny_dataset)  # the TAU22 facts
    other_seed = subset_facts(replace(tiny, seed=tiny.seed + 1))
    with pytest.raises(PipelineError, match=r"split\d+\.csv: content digest"):
        verify_subsets(tiny_dataset, other_seed)


# --- fetch ------------------------------------------------------------------------------------------------------


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """A local stand-in for the release page, served as file:// URLs."""
    return tmp_path / "release"


def test_fetch_good_subset_and_keep_it(mirror: Path, tmp_path: Path) -> None:
    _write(mirror / "split5.csv", SUBSET[::-1], newline="\r\n")  # another row order and line ending: same content
    out = tmp_path / "data" / "split5.csv"
    assert fetch_subset(5, mirror.as_uri(), out, EXPECTED) == out
    assert len(read_subset(out)) == 20
    assert sorted(p.name for p in out.parent.iterdir()) == ["split5.csv"]  # no staging file left
    (mirror / "split5.csv").unlink()
    assert fetch_subset(5, mirror.as_uri(), out, EXPECTED) == out  # verified already: no download


@pytest.mark.parametrize(
    ("rows", "message"),
    [(SUBSET[:-1], "19 clips, expected 20"), (SUBSET[:-1] + _clips("bus", 40030, "c", range(1)), "content digest")],
    ids=["wrong-rows", "wrong-digest"],
)
def test_fetch_rejects_a_wrong_subset(mirror: Path, tmp_path: Path, rows, message: str) -> None:
    _write(mirror / "split5.csv", rows)
    out = tmp_path / "data" / "split5.csv"
    with pytest.raises(PipelineError, match=rf"^{mirror.as_uri()}/split5\.csv: {message}.*; deleted the download$"):
        fetch_subset(5, mirror.as_uri(), out, EXPECTED)
    assert list(out.parent.iterdir()) == []


def test_fetch_rejects_a_page_that_is_no_table(mirror: Path, tmp_path: Path) -> None:
    mirror.mkdir()
    (mirror / "split5.csv").write_text("<html>Not Found</html>\n")
    out = tmp_path / "split5.csv"
    with pytest.raises(PipelineError, match=rf"^{mirror.as_uri()}/split5\.csv: missing column\(s\) filename"):
        fetch_subset(5, mirror.as_uri(), out, EXPECTED)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]


def test_fetch_replaces_a_wrong_local_table(mirror: Path, tmp_path: Path) -> None:
    _write(mirror / "split5.csv", SUBSET)
    out = _write(tmp_path / "split5.csv", SUBSET[:3])  # an older or edited copy
    fetch_subset(5, mirror.as_uri(), out, EXPECTED)
    assert len(read_subset(out)) == 20
