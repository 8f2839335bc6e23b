"""The run directory: where every file of a run lives, named once for the workflow rules and the package.

    results/
      data/dataset.json                     validation summary of the data set
      cache/{split}.npy, {split}.tsv        32 kHz waveforms of a labelled split and their clip table
      splits/test_validation.tsv            the test locations every per-epoch validation curve reads
      {subset}/                             everything trained on one training subset: split100 = all of
                                            fold1_train, split5 ... split50 the DCASE'24 subsets
        splits/train.tsv, teacher_train.tsv, fusion_holdout.tsv   the subset's clips (students), the teachers'
                                            share, the locations held out for the fusion (data.splits)
        energy/energy.json, fig2_energy_histogram.png  E(x) statistics of the training clips, ADIR's threshold
        teachers/{teacher}/                 model.pt, history.csv, logits.npz (+ checkpoints/ while training)
        ensemble/                           fused.npz, average.npz, fusion.json
        cross_fit/                          cross-fitted targets (students with `teachers: *_cross_fit` only):
                                            splits/teacher_train_fold{fold}.tsv, fold{fold}/teachers/{teacher}/
                                            (the teachers trained without fold 1 or 2), teachers/{teacher}/logits.npz
                                            (each student clip's row out of fold), ensemble/ (their fusion)
        students/{run}/s{seed}/             model.pt, history.csv, complexity.json, eval_{precision}.json,
                                            eval_{precision}_clips.tsv, qat/{model_int8.pt, quantized.json, history.csv}
        submission/{run}/s{seed}/           output.csv and info.json for the DCASE challenge (DCASE'24: one per
                                            subset); incomplete/ holds those of a try with unreadable clips;
                                            clips.tsv lists the evaluation clips' sizes and checksums
        splits/devices/train_{device}.tsv   one device's training clips (DCASE'25 device fine-tuning)
        device_students/{run}/s{seed}/{schedule}/{device}/   a student fine-tuned on one device's clips with one
                                            schedule (e2_lr0.0001: epochs and lr): the files of students/
                                            (model.pt, complexity.json, eval_int8*, qat/); in a development run
                                            also holdout_float*, and beside them the schedule's device-specific
                                            system on the hold-out
        dcase25/{run}/s{seed}/              the DCASE'25 submission: package/ (installable), output.csv,
                                            complexity.json, test_accuracy.json, <module>.meta.yaml, and the
                                            device-specific system's per-clip outcomes
        dcase25/{run}/claims.{csv,md}       device-specific > general on the seen devices, over the seeds
      tables/, figures/, plots/, metrics.json   the reports of the configured subset; data_efficiency.* spans subsets
      development/{subset}/, development/development.json, development/power.{md,csv}   a development run
                                            (config/development.yaml): the same tree for its subset, apart from
                                            the default run's, its hold-out scores instead of tables, and the
                                            test locations its paired differences would need;
                                            development/dcase25_finetune.json its choice of dcase25.finetune
      run.json                              commit, machine, student seeds and wall time of every invocation
      benchmarks/                           Snakemake's time and memory of every job

Patterns keep Snakemake's `{wildcard}` fields; call the functions with values for concrete paths. A job is
handed every path it writes by its rule: nothing in the package derives a file name from a directory.
"""

from __future__ import annotations

from dataclasses import dataclass

RESULTS = "results"
DATASET_SUMMARY = f"{RESULTS}/data/dataset.json"
BENCHMARKS = f"{RESULTS}/benchmarks"
PRECISIONS = ("float", "int8")


def weights(data_root: str, name: str = "{name}") -> str:
    """A pretrained checkpoint of the config's `weights` section: fetched and verified once, or pretrained on
    the corpus (a default run); versioned with the data set."""
    return f"{data_root}/weights/{name}.pt"


def checksum_beside(path: str) -> str:
    """Where a checkpoint's SHA-256 lies (sha256sum's format), written by the job that fetched or made it."""
    return f"{path}.sha256"


def weights_checksum(data_root: str, name: str = "{name}") -> str:
    return checksum_beside(weights(data_root, name))


def pretraining_report(data_root: str, name: str = "{name}") -> str:
    """What pretraining a checkpoint on the corpus measured: its curve and held-out mean average precision."""
    return f"{data_root}/weights/{name}.json"


@dataclass(frozen=True)
class CorpusFiles:
    waves: str
    table: str


def pretraining_corpus(data_root: str) -> CorpusFiles:
    """The pretraining corpus (data.pretraining), versioned with the data set."""
    return CorpusFiles(f"{data_root}/pretraining/corpus.npy", f"{data_root}/pretraining/corpus.tsv")


def cache(split: str = "{split}") -> str:
    """The waveform cache of a labelled split; its clip table is the same path with .tsv."""
    return f"{RESULTS}/cache/{split}.npy"


DEVELOPMENT_ROOT = "development"
SUBSET_PATTERN = rf"({DEVELOPMENT_ROOT}/)?split\d+"  # the `{subset}` wildcard


def subset_name(percent: int | str, development: bool = False) -> str:
    """`split25` for the DCASE'24 25 % subset; `split100` is all of fold1_train. A development run's subsets
    live under `development/`, so choosing settings never overwrites (or forces a rerun of) the default run."""
    name = f"split{percent}"
    return f"{DEVELOPMENT_ROOT}/{name}" if development else name


def subset_percent(subset: str) -> int:
    """The training subset's size in % of fold1_train, from its name (`development/split25` -> 25)."""
    return int(subset.rpartition("/")[2].removeprefix("split"))


# The fixed test locations of the per-epoch validation curves (`validation_locations_per_scene`): rows of the test
# cache; evaluations, tables and claims read the whole test split.
VALIDATION_SUBSET = f"{RESULTS}/splits/test_validation.tsv"


def _subset_root(subset: str) -> str:
    return f"{RESULTS}/{subset}"


@dataclass(frozen=True)
class SplitFiles:
    train: str
    teacher_train: str
    fusion_holdout: str


def splits(subset: str = "{subset}") -> SplitFiles:
    root = f"{_subset_root(subset)}/splits"
    return SplitFiles(f"{root}/train.tsv", f"{root}/teacher_train.tsv", f"{root}/fusion_holdout.tsv")


@dataclass(frozen=True)
class EnergyFiles:
    stats: str
    figure: str


def energy(subset: str = "{subset}") -> EnergyFiles:
    root = f"{_subset_root(subset)}/energy"
    return EnergyFiles(f"{root}/energy.json", f"{root}/fig2_energy_histogram.png")


@dataclass(frozen=True)
class TrainingFiles:
    """What a training job writes (model, history) and its working directory, which holds what is not an
    output: `checkpoints/` (a job that dies resumes from them; they go once the outputs are written) and
    `tensorboard/` (the job's experiment log)."""

    model: str
    history: str
    directory: str

    @classmethod
    def under(cls, directory: str, model: str = "model.pt") -> TrainingFiles:
        return cls(f"{directory}/{model}", f"{directory}/history.csv", directory)

    @property
    def checkpoints(self) -> str:
        return f"{self.directory}/checkpoints"

    @property
    def tensorboard(self) -> str:
        return f"{self.directory}/tensorboard"


@dataclass(frozen=True)
class TeacherFiles:
    training: TrainingFiles
    logits: str


def teacher(subset: str = "{subset}", name: str = "{teacher}") -> TeacherFiles:
    directory = f"{_subset_root(subset)}/teachers/{name}"
    return TeacherFiles(TrainingFiles.under(directory), f"{directory}/logits.npz")


@dataclass(frozen=True)
class EnsembleFiles:
    fused: str
    average: str
    report: str

    def logits(self, kind: str) -> str:
        """The soft targets a student distils from: `fused` or `average`."""
        return {"fused": self.fused, "average": self.average}[kind]


def ensemble(subset: str = "{subset}") -> EnsembleFiles:
    root = f"{_subset_root(subset)}/ensemble"
    return EnsembleFiles(f"{root}/fused.npz", f"{root}/average.npz", f"{root}/fusion.json")


# A student run's `teachers` that names cross-fitted targets (`fused_cross_fit`, `average_cross_fit`).
CROSS_FIT_SUFFIX = "_cross_fit"
CROSS_FIT_FOLDS = (1, 2)  # the `{fold}` wildcard


@dataclass(frozen=True)
class CrossFitFiles:
    """Cross-fitted teacher targets (distill.crossfit): every student clip's logits from teachers that did not
    train on it. The student clips are split into two folds by recording location; for each fold the 12
    teachers are trained again without it."""

    directory: str

    def teacher_train(self, fold: int | str = "{fold}") -> str:
        """The clips fold `fold`'s teachers learn from: the student clips outside that fold."""
        return f"{self.directory}/splits/teacher_train_fold{fold}.tsv"

    def fold_teacher(self, fold: int | str = "{fold}", name: str = "{teacher}") -> TeacherFiles:
        """A teacher trained without fold `fold`'s clips: the layout of `teacher`."""
        directory = f"{self.directory}/fold{fold}/teachers/{name}"
        return TeacherFiles(TrainingFiles.under(directory), f"{directory}/logits.npz")

    def logits(self, name: str = "{teacher}") -> str:
        """A teacher's cross-fitted logits, in the format of `teacher().logits` (the fusion names a teacher by
        its file's folder)."""
        return f"{self.directory}/teachers/{name}/logits.npz"

    @property
    def ensemble(self) -> EnsembleFiles:
        """The fusion of the cross-fitted logits: fused.npz, average.npz, fusion.json."""
        root = f"{self.directory}/ensemble"
        return EnsembleFiles(f"{root}/fused.npz", f"{root}/average.npz", f"{root}/fusion.json")


def cross_fit(subset: str = "{subset}") -> CrossFitFiles:
    return CrossFitFiles(f"{_subset_root(subset)}/cross_fit")


def distillation_targets(subset: str, teachers: str) -> str:
    """The soft targets of a student run's `teachers`: the ensemble's `fused` or `average`, or, with the
    `_cross_fit` suffix, those of the cross-fitted logits."""
    if teachers.endswith(CROSS_FIT_SUFFIX):
        return cross_fit(subset).ensemble.logits(teachers.removesuffix(CROSS_FIT_SUFFIX))
    return ensemble(subset).logits(teachers)


def ensemble_holdout_clips(subset: str = "{subset}", kind: str = "{kind}") -> str:
    """A development run's per-clip outcomes of an ensemble (`fused`, `average`) on the fusion hold-out."""
    return f"{_subset_root(subset)}/ensemble/holdout_{kind}_clips.tsv"


@dataclass(frozen=True)
class QatFiles:
    training: TrainingFiles  # model = the exported int8 TorchScript classifier
    info: str


@dataclass(frozen=True)
class StudentFiles:
    training: TrainingFiles
    complexity: str
    qat: QatFiles
    directory: str

    def model(self, precision: str = "{precision}") -> str:
        """The float model.pt or the exported int8 model."""
        if precision == "int8":
            return self.qat.training.model
        if precision == "float":
            return self.training.model
        raise ValueError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")

    def evaluation(self, precision: str = "{precision}") -> str:
        return f"{self.directory}/eval_{precision}.json"

    def clips(self, precision: str = "{precision}") -> str:
        """Per-clip outcomes of an evaluation (what intervals resample)."""
        return f"{self.directory}/eval_{precision}_clips.tsv"

    def holdout(self, precision: str = "float") -> tuple[str, str]:
        """A development run's evaluation on the fusion hold-out: metrics and per-clip outcomes."""
        return f"{self.directory}/holdout_{precision}.json", f"{self.directory}/holdout_{precision}_clips.tsv"


def _student_files(directory: str) -> StudentFiles:
    qat_directory = f"{directory}/qat"
    return StudentFiles(
        TrainingFiles.under(directory),
        f"{directory}/complexity.json",
        QatFiles(TrainingFiles.under(qat_directory, "model_int8.pt"), f"{qat_directory}/quantized.json"),
        directory,
    )


def student(subset: str = "{subset}", run: str = "{run}", seed: int | str = "{seed}") -> StudentFiles:
    return _student_files(f"{_subset_root(subset)}/students/{run}/s{seed}")


def device_training_clips(subset: str = "{subset}", device: str = "{device}") -> str:
    """The training clips of one device (DCASE'25): what its fine-tuned copy of a student learns from."""
    return f"{_subset_root(subset)}/splits/devices/train_{device}.tsv"


def device_student(
    subset: str = "{subset}", run: str = "{run}", seed: int | str = "{seed}", device: str = "{device}",
    schedule: str = "{schedule}",
) -> StudentFiles:  # fmt: skip
    """A student fine-tuned on one device's clips (DCASE'25) with one schedule (config.finetune_schedule_name),
    laid out as a student; outside students/ so that no `{run}` of a student can match it."""
    return _student_files(f"{_subset_root(subset)}/device_students/{run}/s{seed}/{schedule}/{device}")


def device_specific_holdout_clips(
    subset: str = "{subset}", run: str = "{run}", seed: int | str = "{seed}", schedule: str = "{schedule}"
) -> str:  # fmt: skip
    """A development run's device-specific system (float) on the fusion hold-out, with one fine-tuning schedule."""
    return f"{_subset_root(subset)}/device_students/{run}/s{seed}/{schedule}/holdout_device_specific_float_clips.tsv"


def table(name: str = "{table}", extension: str = "md") -> str:
    return f"{RESULTS}/tables/{name}.{extension}"


def figure(name: str) -> str:
    return f"{RESULTS}/figures/{name}.png"


METRICS = f"{RESULTS}/metrics.json"
RUN_RECORD = f"{RESULTS}/run.json"  # commit, machine, seeds and wall time of each invocation (report.runrecord)
# a development run's scores on the hold-out (validation: holdout)
DEVELOPMENT = f"{RESULTS}/{DEVELOPMENT_ROOT}/development.json"
# its power analysis: how many test locations the default run's paired intervals need (report.power)
DEVELOPMENT_POWER = f"{RESULTS}/{DEVELOPMENT_ROOT}/power.md"
DEVELOPMENT_POWER_TABLE = f"{RESULTS}/{DEVELOPMENT_ROOT}/power.csv"
# its choice of the DCASE'25 fine-tuning schedule (`snakemake dcase25_development`, report.dcase25)
DCASE25_DEVELOPMENT = f"{RESULTS}/{DEVELOPMENT_ROOT}/dcase25_finetune.json"
VALIDATION_CURVES = f"{RESULTS}/plots/val_accuracy.csv"
DEVICE_ACCURACY = f"{RESULTS}/plots/device_accuracy.csv"


@dataclass(frozen=True)
class SubmissionFiles:
    output: str
    info: str


def _submission_root(subset: str, run: str, seed: int | str) -> str:
    return f"{_subset_root(subset)}/submission/{run}/s{seed}"


def submission(subset: str = "{subset}", run: str = "{run}", seed: int | str = "{seed}") -> SubmissionFiles:
    """The DCASE files of one student trained on `subset`: DCASE'24 ranks a system by one per subset."""
    root = _submission_root(subset, run, seed)
    return SubmissionFiles(f"{root}/output.csv", f"{root}/info.json")


def evaluation_manifest(subset: str = "{subset}", run: str = "{run}", seed: int | str = "{seed}") -> str:
    """The evaluation clips a submission classified (names, sizes, checksums): its input, so that a clip
    changed in place reruns it."""
    return f"{_submission_root(subset, run, seed)}/clips.tsv"


def incomplete_submission(subset: str = "{subset}", run: str = "{run}", seed: int | str = "{seed}") -> SubmissionFiles:
    """Where a submission with unreadable clips is kept, for inspection: never at the paths `submission` names,
    which a failed job leaves absent (so nothing looks complete and the next run tries again)."""
    root = f"{_submission_root(subset, run, seed)}/incomplete"
    return SubmissionFiles(f"{root}/output.csv", f"{root}/info.json")


@dataclass(frozen=True)
class Dcase25Files:
    """The DCASE'25 submission of one seed of a student run: the installable package (a folder), the files the
    task asks for beside it, and the device-specific system's per-clip outcomes on the test split."""

    package: str
    output: str
    complexity: str
    accuracy: str
    metadata: str
    device_specific_clips: str


def dcase25(subset: str = "{subset}", run: str = "{run}", seed: int | str = "{seed}", module: str = "{module}"
            ) -> Dcase25Files:  # fmt: skip
    root = f"{_subset_root(subset)}/dcase25/{run}/s{seed}"
    return Dcase25Files(f"{root}/package", f"{root}/output.csv", f"{root}/complexity.json",
                        f"{root}/test_accuracy.json", f"{root}/{module}.meta.yaml",
                        f"{root}/device_specific_int8_clips.tsv")  # fmt: skip


def dcase25_claims(subset: str = "{subset}", run: str = "{run}", extension: str = "md") -> str:
    """Device-specific > general on the seen devices, paired over every seed's test clips."""
    return f"{_subset_root(subset)}/dcase25/{run}/claims.{extension}"
