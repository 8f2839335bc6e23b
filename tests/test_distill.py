"""Fusion (eq. 4), the KD loss (eq. 5), schedules, logit files and the metrics breakdown."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dsflexinet.data.splits import read_clip_table
from dsflexinet.distill.fusion import Fusion, cross_entropy, fit_fusion
from dsflexinet.distill.logits import load_logits, save_logits
from dsflexinet.distill.loss import distillation_loss
from dsflexinet.errors import PipelineError
from dsflexinet.evaluate.metrics import scene_metrics
from dsflexinet.train.schedules import LearningRateShape, scheduled_value


def teacher_logits(seed: int = 0, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Three teachers of different quality and calibration on the same clips."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    onehot = np.eye(10)[labels]
    good = 4.0 * onehot + rng.normal(0, 1.0, (n, 10))
    overconfident = 12.0 * onehot + rng.normal(0, 6.0, (n, 10))
    noise = rng.normal(0, 1.0, (n, 10)) + np.linspace(0, 2, 10)  # useless and biased towards class 9
    return np.stack([good, overconfident, noise]), labels


def test_average_is_eq4_with_equal_weights() -> None:
    logits, _ = teacher_logits()
    np.testing.assert_allclose(Fusion.average(3, 10).apply(logits), logits.mean(axis=0))


def test_fusion_beats_average_on_training_cross_entropy() -> None:
    logits, labels = teacher_logits()
    fitted = fit_fusion(logits, labels, steps=200)
    average = Fusion.average(3, 10)
    assert cross_entropy(fitted.apply(logits), labels) < 0.9 * cross_entropy(average.apply(logits), labels)
    assert not np.allclose(fitted.alpha, average.alpha)
    assert np.abs(fitted.beta).max() > 1e-3
    # The useless teacher gets the smallest weight; the bias undoes its lean towards class 9.
    assert abs(fitted.alpha[2]) < min(abs(fitted.alpha[0]), abs(fitted.alpha[1]))


def test_fusion_matches_hand_computed_eq4() -> None:
    logits, _ = teacher_logits(n=4)
    fusion = Fusion(np.array([0.5, 0.25, -1.0]), np.arange(10.0))
    expected = 0.5 * logits[0] + 0.25 * logits[1] - 1.0 * logits[2] + np.arange(10.0)
    np.testing.assert_allclose(fusion.apply(logits), expected)


def test_kd_loss_is_eq5() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 10), torch.randn(8, 10)
    labels = torch.randint(0, 10, (8,))
    temperature, weight = 2.0, 0.3
    p_teacher = torch.softmax(teacher / temperature, dim=1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / temperature, dim=1))).sum(1).mean()
    expected = weight * torch.nn.functional.cross_entropy(student, labels) + (1 - weight) * kl * temperature**2
    assert distillation_loss(student, labels, teacher, weight, temperature).item() == pytest.approx(expected.item())
    label_only = distillation_loss(student, labels, None, weight, temperature)
    assert label_only.item() == pytest.approx(torch.nn.functional.cross_entropy(student, labels).item())


def test_kd_term_vanishes_when_student_equals_teacher() -> None:
    logits = torch.randn(4, 10)
    labels = logits.argmax(dim=1)
    loss = distillation_loss(logits, labels, logits.clone(), label_weight=0.0, temperature=2.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_learning_rate_shape() -> None:
    shape = LearningRateShape(warmup_epochs=14, rampdown_start=50, rampdown_epochs=84, min_factor=0.005)
    assert shape.factor(0) == pytest.approx(math.exp(-5))
    assert shape.factor(14) == 1.0 and shape.factor(49.9) == 1.0
    assert shape.factor(50 + 42) == pytest.approx(1 - 0.995 / 2)
    assert shape.factor(134) == pytest.approx(0.005) and shape.factor(150) == pytest.approx(0.005)


def test_label_weight_schedules() -> None:
    assert scheduled_value({"schedule": "constant", "value": 0.02}, 0.7) == 0.02
    linear = {"schedule": "linear", "start": 0.5, "end": 0.1}
    assert [scheduled_value(linear, p) for p in (0, 0.5, 1, 2)] == pytest.approx([0.5, 0.3, 0.1, 0.1])
    cosine = {"schedule": "cosine", "start": 1.0, "end": 0.0}
    assert scheduled_value(cosine, 0.5) == pytest.approx(0.5) and scheduled_value(cosine, 1) == pytest.approx(0)


def test_logit_file_round_trip_by_name(tmp_path: Path) -> None:
    names = [f"audio/clip-{i}.wav" for i in range(5)]
    logits = np.arange(50, dtype=np.float32).reshape(5, 10)
    save_logits(tmp_path / "t.npz", names, logits)
    _, picked = load_logits(tmp_path / "t.npz", [names[3], names[0]])
    np.testing.assert_array_equal(picked, logits[[3, 0]])
    with pytest.raises(PipelineError, match=r"t\.npz: no logits for audio/absent\.wav \(1 clips missing\)"):
        load_logits(tmp_path / "t.npz", ["audio/absent.wav"])


def test_metrics_breakdown() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    devices = np.array(["a", "a", "s4", "s4", "b", "s1"])
    logits = np.eye(10)[[0, 1, 1, 1, 0, 2]]  # wrong on clip 1 (a) and clip 4 (b)
    metrics = scene_metrics(logits, labels, devices)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["devices"]["a"] == {"accuracy": 0.5, "clips": 2}
    assert metrics["devices"]["s4"]["accuracy"] == 1.0 and "s5" not in metrics["devices"]
    assert metrics["groups"]["real"]["accuracy"] == pytest.approx(1 / 3)
    assert metrics["groups"]["unseen_simulated"]["accuracy"] == 1.0
    assert metrics["class_averaged_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert metrics["confusion_matrix"][0][:3] == [1, 1, 0] and metrics["confusion_matrix"][2][:3] == [1, 0, 1]


def _clip_table(tmp_path: Path, name: str, rows: list[tuple[str, str, int, str]]) -> Path:
    """A cache-format clip table of (filename, scene, label, identifier) rows."""
    import pandas as pd

    from dsflexinet.data.tau22 import CLIP_COLUMNS

    records = [(f, s, label, "a", i.split("-")[0], i) for f, s, label, i in rows]
    frame = pd.DataFrame(records, columns=list(CLIP_COLUMNS))
    path = tmp_path / name
    frame.to_csv(path, sep="\t", index=False)
    return path


def test_holdout_is_whole_locations_never_a_scene_s_last(tmp_path: Path) -> None:
    from dsflexinet.data.splits import holdout_locations, read_clip_table, write_training_split

    scenes = {"park": 5, "bus": 5, "tram": 1}  # locations per scene; tram has a single one
    rows = [(f"audio/{scene}-lyon-{scene}{k}-0-{clip}-a.wav", scene, label, f"lyon-{scene}{k}")
            for label, (scene, locations) in enumerate(scenes.items())
            for k in range(locations) for clip in range(3)]  # fmt: skip
    cache = _clip_table(tmp_path, "cache.tsv", rows)
    subset = tmp_path / "subset.csv"
    subset.write_text("filename\tscene_label\n" + "".join(f"{f}\t{s}\n" for f, s, _, _ in rows))
    held = holdout_locations(read_clip_table(cache), 0.2, seed=0)
    assert len(held) == 2 and {name.split("-")[1][:-1] for name in held} == {"park", "bus"}  # one per scene, not tram
    assert held == holdout_locations(read_clip_table(cache), 0.2, seed=0) != holdout_locations(
        read_clip_table(cache), 0.2, seed=1
    )  # reproducible, and the seed decides
    out = [tmp_path / f"{name}.tsv" for name in ("train", "teachers", "holdout")]
    counts = write_training_split(cache, subset, 0.2, 0, *out)
    assert counts == {"train": 33, "teacher_train": 27, "fusion_holdout": 6}
    train, teachers, holdout = (read_clip_table(path) for path in out)
    assert set(teachers["identifier"]).isdisjoint(holdout["identifier"])  # no teacher sees a held-out location
    assert sorted(teachers["filename"].tolist() + holdout["filename"].tolist()) == sorted(train["filename"])
    with pytest.raises(PipelineError, match="no recording location to hold out"):
        write_training_split(cache, _subset_of(tmp_path, rows[-3:]), 0.2, 0, *out)


def _subset_of(tmp_path: Path, rows: list) -> Path:
    path = tmp_path / "small.csv"
    path.write_text("filename\tscene_label\n" + "".join(f"{f}\t{s}\n" for f, s, _, _ in rows))
    return path


def _memoriser_case(tmp_path: Path, n_seen: int = 200, n_held: int = 100, n_test: int = 100) -> dict:
    """Teacher 0 memorised its training clips (perfect there, useless elsewhere), teacher 1 generalises; clips
    come 10 to a location. Returns the files fuse_teachers reads."""
    from dsflexinet.data.cache import WaveformCache

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n_seen + n_held + n_test)
    onehot = np.eye(10)[labels]
    memoriser = np.where(np.arange(labels.size)[:, None] < n_seen, 9.0 * onehot, rng.normal(0, 3, onehot.shape))
    generaliser = 2.0 * onehot + rng.normal(0, 1.0, onehot.shape)
    names = [f"audio/park-lyon-{i // 10}-0-{i % 10}-a.wav" for i in range(labels.size)]
    locations = [f"lyon-{i // 10}" for i in range(labels.size)]
    rows = list(zip(names, ["park"] * labels.size, labels.tolist(), locations, strict=True))
    train_rows, test_rows = rows[: n_seen + n_held], rows[n_seen + n_held :]
    for split, split_rows in (("train", train_rows), ("test", test_rows)):
        _clip_table(tmp_path, f"{split}.tsv", split_rows)
        np.save(tmp_path / f"{split}.npy", np.zeros((len(split_rows), 4), dtype=np.float32))
    assert len(WaveformCache.open(tmp_path / "train.npy")) == n_seen + n_held
    teachers = {}
    for index, logits in enumerate((memoriser, generaliser)):
        teachers[f"t{index}"] = tmp_path / f"t{index}.npz"
        save_logits(teachers[f"t{index}"], names, logits)
    return {"teachers": teachers, "train": tmp_path / "train.npy", "test": tmp_path / "test.npy",
            "seen": _clip_table(tmp_path, "seen.tsv", train_rows[:n_seen]),
            "held": _clip_table(tmp_path, "held.tsv", train_rows[n_seen:]), "students": tmp_path / "train.tsv"}


def _fuse(case: dict, fit: str, clips: Path, tmp_path: Path) -> dict:
    from dsflexinet.distill.fusion import fuse_teachers
    from dsflexinet.layout import EnsembleFiles

    out = EnsembleFiles(*(str(tmp_path / f"{fit}-{name}") for name in ("fused.npz", "average.npz", "f.json")))
    return fuse_teachers(case["teachers"], case["train"], case["test"], fit, clips, case["students"], case["held"],
                         out, steps=100)  # fmt: skip


def test_holdout_outcomes_of_a_fusion_fitted_there_are_out_of_sample(tmp_path: Path) -> None:
    """A development run scores the ensembles on the hold-out: the average as it is, a fusion fitted on those
    very clips cross-fitted (each fold scored by the fit on the other), never by the fit that saw the clip."""
    from dsflexinet.distill.fusion import cross_fitted_logits, write_holdout_outcomes
    from dsflexinet.report.stats import read_clips

    case = _memoriser_case(tmp_path)
    report = _fuse(case, "holdout", case["held"], tmp_path)
    assert report["fit"]["kept"]
    out = tmp_path / "average.tsv", tmp_path / "fused.tsv"
    accuracy = write_holdout_outcomes(case["teachers"], case["train"], case["held"], tmp_path / "holdout-f.json", *out,
                                      steps=100)  # fmt: skip
    average, fused = (read_clips(path) for path in out)
    assert len(average) == len(fused) == 100 and set(fused["identifier"]) == {f"lyon-{i}" for i in range(20, 30)}
    assert accuracy["average"] == pytest.approx((average["prediction"] == average["label"]).mean())
    # Exactly the cross-fitted predictions with the shrinkage the fit chose, not the in-sample fit's.
    held = read_clip_table(case["held"])
    teacher_logits = [load_logits(path, held["filename"].tolist())[1] for path in case["teachers"].values()]
    crossed = cross_fitted_logits(np.stack(teacher_logits), held["label"].to_numpy(), held, 100,
                                  report["fit"]["shrinkage"])  # fmt: skip
    order = np.argsort(held["filename"].to_numpy())
    assert np.array_equal(fused["prediction"].to_numpy(), crossed.argmax(axis=1)[order])
    assert accuracy["fused"] > 0.6  # the generaliser carries the fusion out of sample


def test_fusion_fitted_on_the_holdout_ignores_memorised_clips(tmp_path: Path) -> None:
    """Fitted in-sample the fusion trusts the memoriser; fitted on held-out locations it trusts the generaliser,
    and the report says so without the test split."""
    case = _memoriser_case(tmp_path)
    in_sample = _fuse(case, "in_sample", case["seen"], tmp_path)
    holdout = _fuse(case, "holdout", case["held"], tmp_path)
    assert in_sample["alpha"]["t0"] > in_sample["alpha"]["t1"] and holdout["alpha"]["t1"] > holdout["alpha"]["t0"]
    assert holdout["fit"]["clips"] == 100 and in_sample["fit"]["clips"] == 200 and holdout["fit"]["kept"]
    # Held-out cross-entropy (cross-fitted for the hold-out fit) tells the designs apart without the test split.
    assert holdout["holdout_cross_entropy"]["fused"] < in_sample["holdout_cross_entropy"]["fused"]
    assert holdout["test"]["fused"]["accuracy"] > in_sample["test"]["fused"]["accuracy"]
    assert (in_sample["student_train"]["fused"]["mean_top_probability"]
            > holdout["student_train"]["fused"]["mean_top_probability"])  # fmt: skip
    # Apart by whether the teachers trained on the clips: the memoriser makes the seen clips' targets sharper.
    for report in (in_sample, holdout):
        parts = report["student_train"]["fused"]
        assert parts["teachers_saw"]["clips"] + parts["teachers_did_not_see"]["clips"] == parts["clips"]
        assert parts["teachers_did_not_see"]["clips"] == 100
    parts = in_sample["student_train"]["fused"]
    assert parts["teachers_saw"]["mean_top_probability"] > parts["teachers_did_not_see"]["mean_top_probability"]
    # Every teacher's development score on the hold-out: the memoriser's is chance there, as on the test split.
    scores = {name: result["accuracy"] for name, result in holdout["holdout"].items()}
    assert holdout["holdout"]["t0"]["clips"] == 100 and scores["t1"] > 0.6 > 0.3 > scores["t0"]
    # The fused ensemble fitted on the hold-out has no development score there; fitted elsewhere it has.
    assert set(holdout["holdout"]) == {"t0", "t1", "average"}
    assert set(in_sample["holdout"]) == {"t0", "t1", "average", "fused"}
    assert in_sample["holdout"]["average"] == holdout["holdout"]["average"]


def test_the_holdout_chooses_the_shrinkage_and_whether_to_fit_at_all(tmp_path: Path) -> None:
    """The shrinkage towards the average is the one that scores best out of sample; a hold-out too small to
    cross-fit (one clip per scene) or missing scenes cannot tell a fit from noise: the fused targets are then the
    average."""
    import pandas as pd

    from dsflexinet.distill.fusion import SHRINKAGE

    case = _memoriser_case(tmp_path)
    report = _fuse(case, "holdout", case["held"], tmp_path)
    scores = report["fit"]["cross_fitted_cross_entropy"]
    assert list(map(float, scores)) == list(SHRINKAGE) and report["fit"]["shrinkage"] == min(scores, key=scores.get)
    assert report["holdout_cross_entropy"]["fused"] == min(scores.values())
    held = pd.read_csv(case["held"], sep="\t")
    small = {"one clip per scene": (held.drop_duplicates("label"), "is not below the average's"),
             "five scenes": (held[held["label"] < 5], "hold 5 of the 10 scenes")}  # fmt: skip
    for name, (rows, why) in small.items():
        case["held"] = tmp_path / f"{name}.tsv"
        rows.to_csv(case["held"], sep="\t", index=False)
        report = _fuse(case, "holdout", case["held"], tmp_path)
        assert report["fit"]["clips"] == len(rows) and not report["fit"]["kept"], name
        assert why in report["fit"]["why"] and "the fused targets are the average" in report["fit"]["why"], name
        assert report["alpha"] == {"t0": 0.5, "t1": 0.5} and report["beta"] == [0.0] * 10, name
        assert report["test"]["fused"] == report["test"]["average"], name


def test_two_folds_keep_every_scene_on_both_sides() -> None:
    """By location where a scene has several, by recording where it has one, by clip within one recording."""
    import pandas as pd

    from dsflexinet.distill.fusion import two_folds

    clips = pd.DataFrame({
        "filename": ["audio/park-a-1-10-0-a.wav", "audio/park-a-1-10-1-a.wav", "audio/park-a-2-20-0-a.wav",
                     "audio/bus-a-3-30-0-a.wav", "audio/bus-a-3-31-0-a.wav", "audio/tram-a-4-40-0-a.wav",
                     "audio/tram-a-4-40-1-a.wav"],
        "identifier": ["a-1", "a-1", "a-2", "a-3", "a-3", "a-4", "a-4"],
        "label": [4, 4, 4, 1, 1, 9, 9],
    })  # fmt: skip
    assert two_folds(clips).tolist() == [True, True, False, True, False, True, False]


def _cross_fit_case(tmp_path: Path) -> dict:
    """Student clips of three scenes (4, 3 and 2 recording locations, 3 clips each), two training clips that are
    not student clips (a hold-out location) and four test clips; the fold tables of the student clips."""
    from dsflexinet.distill.crossfit import write_fold_tables

    scenes = {"park": 4, "bus": 3, "tram": 2}
    students = [(f"audio/{scene}-lyon-{scene}{k}-{k}-{clip}-a.wav", scene, label, f"lyon-{scene}{k}")
                for label, (scene, locations) in enumerate(scenes.items())
                for k in range(locations) for clip in range(3)]  # fmt: skip
    table = _clip_table(tmp_path, "students.tsv", students)
    folds = {fold: tmp_path / f"teacher_train_fold{fold}.tsv" for fold in (1, 2)}
    counts = write_fold_tables(table, folds)
    others = ["audio/park-lyon-held-0-0-a.wav", "audio/park-lyon-held-0-1-a.wav"]
    tests = [f"audio/bus-paris-t{i}-0-0-a.wav" for i in range(4)]
    return {"students": table, "folds": folds, "counts": counts,
            "names": [row[0] for row in students] + others + tests}  # fmt: skip


def test_cross_fit_folds_split_the_student_clips_by_location_with_every_scene(tmp_path: Path) -> None:
    """Each fold's teachers learn from the student clips outside it: the two tables are disjoint by recording
    location, together exactly the student clips, and each holds every scene."""
    case = _cross_fit_case(tmp_path)
    students = read_clip_table(case["students"])
    first, second = (read_clip_table(case["folds"][fold]) for fold in (1, 2))
    assert set(first["identifier"]).isdisjoint(second["identifier"])
    assert sorted(first["filename"].tolist() + second["filename"].tolist()) == sorted(students["filename"])
    assert set(first["scene_label"]) == set(second["scene_label"]) == {"park", "bus", "tram"}
    # Fold 1 is what fold 1's teachers do not see: the clips of the other table.
    assert case["counts"] == {"fold1": len(second), "fold2": len(first), "shared_locations": 0}
    assert len(first) + len(second) == 27 and abs(len(first) - len(second)) <= 6
    # The command line writes the same tables; a fold named twice or not at all is a one-line error.
    from dsflexinet.cli import main

    out = [f"--out={fold}={tmp_path / f'cli{fold}.tsv'}" for fold in (1, 2)]
    assert main(["cross-fit-folds", "--student-clips", str(case["students"]), *out]) == 0
    assert all(read_clip_table(tmp_path / f"cli{fold}.tsv").equals(read_clip_table(case["folds"][fold]))
               for fold in (1, 2))  # fmt: skip
    assert main(["cross-fit-folds", "--student-clips", str(case["students"]), out[0], out[0]]) == 1


def test_cross_fit_logits_take_each_student_clip_from_the_teacher_that_did_not_see_it(tmp_path: Path) -> None:
    from dsflexinet.cli import main
    from dsflexinet.distill.crossfit import assemble_cross_fit_logits

    case = _cross_fit_case(tmp_path)
    names = case["names"]
    rng = np.random.default_rng(0)
    sources = {"full": tmp_path / "full.npz", 1: tmp_path / "fold1.npz", 2: tmp_path / "fold2.npz"}
    values = {}
    for key, path in sources.items():  # as dump-logits writes them: every train and test clip, in its own order
        order = rng.permutation(len(names)) if key != "full" else np.arange(len(names))
        values[key] = rng.normal(0, 1, (len(names), 10)).astype(np.float32)
        save_logits(path, np.asarray(names)[order], values[key][order])
    out = tmp_path / "cross_fit.npz"
    counts = assemble_cross_fit_logits(sources["full"], {1: sources[1], 2: sources[2]}, case["folds"],
                                       case["students"], out)  # fmt: skip
    written_names, written = load_logits(out)
    assert written_names.tolist() == names and written.dtype == np.float32 and written.shape == (len(names), 10)
    trained_on = {fold: set(read_clip_table(path)["filename"]) for fold, path in case["folds"].items()}
    students = set(read_clip_table(case["students"])["filename"])
    for row, name in enumerate(names):
        if name in students:
            (fold,) = [fold for fold in (1, 2) if name not in trained_on[fold]]
            assert np.array_equal(written[row], values[fold][row]), name
        else:  # the test split and training clips that are not student clips: the full teacher's
            assert np.array_equal(written[row], values["full"][row]), name
    assert counts == {"full": 6, "fold1": case["counts"]["fold1"], "fold2": case["counts"]["fold2"]}
    # A student clip the teacher logits (the train cache) do not hold: one line naming the table.
    unknown = _clip_table(tmp_path, "unknown.tsv", [("audio/park-lyon-x-0-0-a.wav", "park", 0, "lyon-x")])
    with pytest.raises(PipelineError, match=rf"^{unknown}: 1 clip\(s\) not in the teacher logits .*full.npz") as error:
        assemble_cross_fit_logits(sources["full"], {1: sources[1], 2: sources[2]}, case["folds"], unknown, out)
    assert "\n" not in str(error.value)
    # The command line: one FOLD=PATH per fold, or a one-line error.
    folds = [f"--fold-logits={fold}={sources[fold]}" for fold in (1, 2)]
    clips = [f"--fold-clips={fold}={case['folds'][fold]}" for fold in (1, 2)]
    command = ["cross-fit-logits", "--full", str(sources["full"]), "--student-clips", str(case["students"]),
               "--out", str(tmp_path / "cli.npz")]  # fmt: skip
    assert main([*command, *folds, *clips]) == 0
    assert np.array_equal(load_logits(tmp_path / "cli.npz")[1], written)
    assert main([*command, folds[0], folds[0], *clips]) == 1


def test_cross_fitted_fusion_report_claims_no_clip_was_seen(tmp_path: Path) -> None:
    """With cross-fitted logits no student clip's target comes from a teacher that trained on it: the report says
    so, and its sharpness is over every student clip."""
    from dsflexinet.distill.fusion import fuse_teachers
    from dsflexinet.layout import EnsembleFiles

    case = _memoriser_case(tmp_path, n_seen=100, n_held=50, n_test=20)
    reports = {}
    for cross_fitted in (False, True):
        out = EnsembleFiles(*(str(tmp_path / f"{cross_fitted}-{name}") for name in ("f.npz", "a.npz", "f.json")))
        reports[cross_fitted] = fuse_teachers(case["teachers"], case["train"], case["test"], "in_sample", case["seen"],
                                              case["students"], case["held"], out, steps=20,
                                              targets_cross_fitted=cross_fitted)  # fmt: skip
    assert reports[False]["targets"] == "full_teachers" and reports[True]["targets"] == "cross_fitted"
    for name in ("fused", "average"):
        plain, crossed = reports[False]["student_train"][name], reports[True]["student_train"][name]
        assert plain["teachers_saw"]["clips"] == 100 and plain["teachers_did_not_see"]["clips"] == 50
        assert crossed["teachers_saw"] == {"clips": 0}
        overall = {key: value for key, value in crossed.items() if not key.startswith("teachers_")}
        assert crossed["teachers_did_not_see"] == overall and overall["clips"] == 150
