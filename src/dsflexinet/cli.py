"""`dsflexinet`: the one entry point the workflow rules call.

Each subcommand parses its arguments and calls one library function. Structured settings arrive as a JSON
object (`--spec`), which the Snakefile builds from the validated config, so a rule's params are exactly what
the job runs with and Snakemake reruns the job when they change. Imports happen inside the handlers: `--help`
and light commands stay fast. A `PipelineError` is printed as one line and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dsflexinet.errors import PipelineError

if TYPE_CHECKING:
    from dsflexinet.layout import TrainingFiles
    from dsflexinet.train.data import TrainingData

log = logging.getLogger("dsflexinet")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


# --- data -----------------------------------------------------------------------------------------------------


def _generate_synthetic(args: argparse.Namespace) -> None:
    from dsflexinet.data.synth import SyntheticSpec, generate

    spec = SyntheticSpec.from_dict({**args.spec, "workers": args.workers})
    root = generate(spec, args.out)
    log.info("wrote synthetic TAU22 layout under %s", root)


def _pretraining_corpus(args: argparse.Namespace) -> None:
    from dsflexinet.data.pretraining import CorpusSpec, generate_corpus

    table = generate_corpus(CorpusSpec.from_dict(args.spec), args.out_waves, args.out_table)
    log.info("wrote a pretraining corpus of %d clips (%d recordings) to %s", len(table), table["recording"].nunique(),
             args.out_waves)  # fmt: skip


def _synthesise_dirs(args: argparse.Namespace) -> None:
    from dsflexinet.data.dirs import synthesise_impulse_responses

    paths = synthesise_impulse_responses(args.out, args.count, args.seed)
    log.info("wrote %d synthetic impulse responses to %s", len(paths), args.out)


def _fetch_micirp(args: argparse.Namespace) -> None:
    from dsflexinet.data.dirs import fetch_micirp

    fetch_micirp(args.out, args.base_url, args.downloads)
    log.info("MicIRP responses verified in %s", args.out)


def _fetch(args: argparse.Namespace) -> None:
    from dsflexinet.atomic import write_text
    from dsflexinet.data.download import fetch

    fetch(args.url, args.out, args.checksum, algorithm=args.algorithm)
    if args.out_checksum:  # what loading checks the file against later (models.pretrained)
        write_text(args.out_checksum, f"{args.checksum.lower()}  {args.out.name}\n")
    log.info("verified %s", args.out)


def _extract(args: argparse.Namespace) -> None:
    from dsflexinet.data.download import extract_zip

    for archive in args.archives:
        extract_zip(archive, args.out)  # logs its own progress and count


def _validate_dataset(args: argparse.Namespace) -> None:
    from dsflexinet.atomic import write_json
    from dsflexinet.data.tau22 import dataset_summary

    summary = dataset_summary(args.root)
    if args.out:
        write_json(args.out, summary)
    print(json.dumps(summary, indent=2))


def _cache_waveforms(args: argparse.Namespace) -> None:
    from dsflexinet.data.cache import build_cache

    cache = build_cache(
        args.root, args.split_file, args.out, sample_rate=args.sample_rate, clip_seconds=args.clip_seconds,
        expected_rate=args.expected_rate, workers=args.workers,
    )  # fmt: skip
    log.info("cached %d clips of %s in %s", len(cache), args.split_file, args.out)


def _fetch_subset(args: argparse.Namespace) -> None:
    from dsflexinet.data.subsets import fetch_subset

    fetch_subset(args.fraction, args.base_url, args.out)
    log.info("verified %s", args.out)


def _split_training(args: argparse.Namespace) -> None:
    from dsflexinet.data.splits import write_training_split
    from dsflexinet.data.subsets import TAU22_SUBSETS, verify_subset
    from dsflexinet.data.synth import SyntheticSpec, subset_facts

    if args.fraction < 100:
        expected = TAU22_SUBSETS if args.synthetic_spec is None else subset_facts(SyntheticSpec(**args.synthetic_spec))
        verify_subset(args.subset_table, args.fraction, expected)
    counts = write_training_split(
        args.cache_table, args.subset_table, args.holdout_fraction, args.seed, args.out_train,
        args.out_teacher_train, args.out_holdout,
    )  # fmt: skip
    log.info("training clips: %s", counts)


def _validation_subset(args: argparse.Namespace) -> None:
    from dsflexinet.data.splits import write_validation_subset

    log.info("validation subset: %s", write_validation_subset(args.cache_table, args.locations_per_scene, args.seed,
                                                               args.out))  # fmt: skip


def _check_config(args: argparse.Namespace) -> None:
    from dsflexinet.config import load_config

    load_config([args.base, *args.configs], args.schema)
    log.info("valid: %s", " + ".join(map(str, [args.base, *args.configs])))


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("check-config", help="validate config files as the workflow will (on config.yaml)")
    command.add_argument("configs", nargs="*", type=Path, help="--configfile files, in order")
    command.add_argument("--base", type=Path, default=Path("config.yaml"))
    command.add_argument("--schema", type=Path, default=Path("workflow/schemas/config.schema.yaml"))
    command.set_defaults(handler=_check_config)

    command = commands.add_parser("generate-synthetic", help="write the synthetic default data set (TAU22 layout)")
    command.add_argument("--spec", type=_json_object, default={}, help="SyntheticSpec fields as JSON")
    command.add_argument("--workers", type=int, default=1)
    command.add_argument("--out", type=Path, required=True, help="directory that receives the data set root")
    command.set_defaults(handler=_generate_synthetic)

    command = commands.add_parser("pretraining-corpus", help="write the synthetic multi-label pretraining corpus")
    command.add_argument("--spec", type=_json_object, default={}, help="CorpusSpec fields as JSON")
    command.add_argument("--out-waves", type=Path, required=True, help="corpus.npy: int16 [clips, samples]")
    command.add_argument("--out-table", type=Path, required=True, help="corpus.tsv: one row and 0/1 labels per clip")
    command.set_defaults(handler=_pretraining_corpus)

    command = commands.add_parser("synthesise-dirs", help="write a synthetic device impulse-response set")
    command.add_argument("--count", type=int, default=66)
    command.add_argument("--seed", type=int, default=66)
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_synthesise_dirs)

    command = commands.add_parser("fetch-micirp", help="download and verify the 66 MicIRP impulse responses")
    command.add_argument("--base-url", default=None, help="where the files live (default: pinned public copy)")
    command.add_argument("--downloads", type=Path, default=None, help="resumable download cache")
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_fetch_micirp)

    command = commands.add_parser("fetch", help="download one file and verify its checksum (resumable)")
    command.add_argument("--url", required=True)
    command.add_argument("--checksum", required=True)
    command.add_argument("--algorithm", default="md5", choices=("md5", "sha256"))
    command.add_argument("--out", type=Path, required=True)
    command.add_argument("--out-checksum", type=Path, help="write the verified checksum here (sha256sum format)")
    command.set_defaults(handler=_fetch)

    command = commands.add_parser("extract", help="unpack zip archives once (resumes an interrupted extraction)")
    command.add_argument("archives", nargs="+", type=Path)
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_extract)

    command = commands.add_parser("validate-dataset", help="check a TAU22 layout and count clips per device")
    command.add_argument("root", type=Path)
    command.add_argument("--out", type=Path, default=None, help="also write the summary as JSON")
    command.set_defaults(handler=_validate_dataset)

    command = commands.add_parser("fetch-subset", help="download a DCASE'24 training subset table and verify it")
    command.add_argument("--fraction", type=int, required=True, choices=(5, 10, 25, 50))
    command.add_argument("--base-url", required=True)
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_fetch_subset)

    command = commands.add_parser("split-training", help="the clip tables of a training subset (students,"
                                  " teachers, fusion hold-out)")  # fmt: skip
    command.add_argument("--cache-table", type=Path, required=True, help="the training cache's .tsv")
    command.add_argument("--subset-table", type=Path, required=True, help="fold1_train.csv or split<N>.csv")
    command.add_argument("--fraction", type=int, required=True, help="the subset in percent (100: fold1_train)")
    command.add_argument("--synthetic-spec", type=_json_object, default=None,
                         help="the synthetic data set's spec: expect its own subsets (default: TAU22's)")  # fmt: skip
    command.add_argument("--holdout-fraction", type=float, required=True, help="share of locations per scene")
    command.add_argument("--seed", type=int, default=0, help="which locations are held out")
    command.add_argument("--out-train", required=True)
    command.add_argument("--out-teacher-train", required=True)
    command.add_argument("--out-holdout", required=True)
    command.set_defaults(handler=_split_training)

    command = commands.add_parser("validation-subset", help="the test locations the per-epoch validation curves"
                                  " read")  # fmt: skip
    command.add_argument("--cache-table", type=Path, required=True, help="the test cache's .tsv")
    command.add_argument("--locations-per-scene", type=int, required=True)
    command.add_argument("--seed", type=int, default=0, help="which locations")
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_validation_subset)

    command = commands.add_parser("cache-waveforms", help="decode one split to a 32 kHz memory-mapped array")
    command.add_argument("--root", type=Path, required=True, help="data set root (holds meta.csv)")
    command.add_argument("--split-file", required=True, help="split table relative to the root")
    command.add_argument("--sample-rate", type=int, default=32000)
    command.add_argument("--clip-seconds", type=float, default=1.0)
    command.add_argument("--expected-rate", type=int, default=None, help="fail on WAVs at any other rate")
    command.add_argument("--workers", type=int, default=1)
    command.add_argument("--out", type=Path, required=True, help="<name>.npy; the table goes to <name>.tsv")
    command.set_defaults(handler=_cache_waveforms)


# --- models ---------------------------------------------------------------------------------------------------


def _complexity(args: argparse.Namespace) -> None:
    from dsflexinet.atomic import write_json
    from dsflexinet.models.complexity import MAX_MACS, MAX_PARAM_BYTES, check_limits, complexity_table

    if args.run and len(args.models) > 1:
        raise PipelineError(f"complexity --run {args.run}: a student run has one model, not {len(args.models)}")
    rows = complexity_table(args.models, args.options)
    if args.run:  # checked before anything is written: a student over a limit leaves no record
        max_macs = MAX_MACS if args.max_macs is None else args.max_macs
        max_param_bytes = MAX_PARAM_BYTES if args.max_param_bytes is None else args.max_param_bytes
        for row in rows:
            row["limits"] = check_limits(args.run, row, max_macs, max_param_bytes, args.precision)
            row["within"] = True
    if args.out:
        write_json(args.out, rows)
    print(f"{'model':<16} {'input':<12} {'params':>9} {'MMACs':>8} {'KB fp32':>9} {'KB int8':>8}")
    for row in rows:
        shape = "x".join(str(size) for size in row["input_shape"])
        print(
            f"{row['model']:<16} {shape:<12} {row['params']:>9,} {row['macs'] / 1e6:>8.2f} "
            f"{row['size_kb_float32']:>9.2f} {row['size_kb_int8']:>8.2f}"
        )


def _add_model_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("complexity", help="parameters, MACs and size of registered models (DCASE count)")
    command.add_argument("models", nargs="+", metavar="MODEL", help="registry names, e.g. dsflexinet_sm4")
    command.add_argument("--options", type=_json_object, default={},
                         help='model options as JSON (a job spec\'s model.options): {"norm": "none"}')  # fmt: skip
    command.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    command.add_argument("--run", default=None,
                         help="the student run of MODEL: fail, naming it, when it is over a DCASE limit")  # fmt: skip
    command.add_argument("--max-macs", type=int, default=None, help="MACs per 1 s clip (default: DCASE's 30 M)")
    command.add_argument("--max-param-bytes", type=int, default=None,
                         help="parameter memory in bytes at --precision (default: DCASE's 128,000)")  # fmt: skip
    command.add_argument("--precision", default="int8", help="what parameters are stored in: int8 | float16 | float32")
    command.set_defaults(handler=_complexity)


# --- audio ----------------------------------------------------------------------------------------------------


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("expected a finite non-negative number")
    return value


def _energy(args: argparse.Namespace) -> None:
    from dsflexinet.audio.energy import analyse_energy

    stats = analyse_energy(args.cache, args.threshold, args.out_json, args.out_png, args.clips)
    log.info(
        "%d clips: mean energy %.4g, threshold %.4g (%s), %.1f%% above",
        stats["clips"], stats["energy"]["mean"], stats["threshold"], stats["threshold_source"],
        100 * stats["fraction_above_threshold"],
    )  # fmt: skip


def _add_audio_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("energy", help="clip-energy statistics and histogram (ADIR threshold, Fig. 2)")
    command.add_argument("--cache", type=Path, required=True, help="waveform cache (<name>.npy beside <name>.tsv)")
    command.add_argument("--clips", type=Path, default=None, help="clip table of the clips to analyse (default: all)")
    command.add_argument("--threshold", type=_threshold, default=None,
                         help="a number such as 323 (default: the clips' mean energy, as in the paper)")  # fmt: skip
    command.add_argument("--out-json", type=Path, required=True)
    command.add_argument("--out-png", type=Path, required=True)
    command.set_defaults(handler=_energy)


# --- training, distillation, evaluation ----------------------------------------------------------------------


def _add_training_inputs(command: argparse.ArgumentParser) -> None:
    command.add_argument("--train-cache", type=Path, required=True, help="results/cache/train.npy")
    command.add_argument("--train-clips", type=Path, default=None,
                         help="clip table of the training clips to learn from (default: all of the cache)")  # fmt: skip
    command.add_argument("--test-cache", type=Path, required=True, help="results/cache/test.npy (validation curve)")
    command.add_argument("--validation-clips", type=Path, default=None,
                         help="clip table of the clips to validate on, rows of --validation-cache (default: all"
                              " of the test split)")  # fmt: skip
    command.add_argument("--validation-cache", type=Path, default=None,
                         help="the cache --validation-clips are rows of (default: the training cache: held-out"
                              " training clips)")  # fmt: skip
    command.add_argument("--impulse-responses", type=Path, default=None, help="DIR set directory (DIR/ADIR)")
    command.add_argument("--energy", type=Path, default=None,
                         help="energy analysis JSON (ADIR threshold 'energy_analysis')")  # fmt: skip
    command.add_argument("--teacher-logits", type=Path, default=None, help="ensemble logits (.npz) for KD")
    command.add_argument("--compute", type=_json_object, default={}, help="accelerator, devices, strategy as JSON")
    command.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    command.add_argument("--out-model", required=True)
    command.add_argument("--out-history", required=True, help="one row per epoch")
    command.add_argument("--work-dir", required=True, help="holds checkpoints/ (resume) and tensorboard/")


def _training_data(args: argparse.Namespace) -> TrainingData:
    from dsflexinet.train.data import TrainingData

    return TrainingData(
        args.train_cache, args.test_cache, args.impulse_responses, args.energy, args.teacher_logits, args.train_clips,
        args.validation_clips, args.validation_cache,
    )  # fmt: skip


def _log_saved(path: Path | None) -> None:
    if path is not None:  # None: a DDP rank other than 0, which writes nothing
        log.info("saved %s", path)


def _training_files(args: argparse.Namespace) -> TrainingFiles:
    from dsflexinet.layout import TrainingFiles

    return TrainingFiles(args.out_model, args.out_history, args.work_dir)


def _train(args: argparse.Namespace) -> None:
    from dsflexinet.train.run import train_job

    compute = args.compute | {"num_workers": args.num_workers}
    _log_saved(train_job(args.spec, _training_data(args), _training_files(args), compute))


def _qat(args: argparse.Namespace) -> None:
    from dsflexinet.layout import QatFiles
    from dsflexinet.quant.finetune import qat_job

    files = QatFiles(_training_files(args), args.out_info)
    compute = args.compute | {"num_workers": args.num_workers}
    _log_saved(qat_job(args.float_model, args.spec, _training_data(args), files, compute))


def _dump_logits(args: argparse.Namespace) -> None:
    from dsflexinet.distill.logits import dump_teacher_logits

    count = dump_teacher_logits(args.model, args.cache, args.out)
    log.info("wrote logits of %d clips to %s", count, args.out)


def _fuse(args: argparse.Namespace) -> None:
    from dsflexinet.distill.fusion import fuse_teachers
    from dsflexinet.layout import EnsembleFiles

    teachers = {Path(path).parent.name: path for path in args.logits}
    out = EnsembleFiles(args.out_fused, args.out_average, args.out_report)
    report = fuse_teachers(
        teachers, args.train_cache, args.test_cache, args.fit, args.fit_clips, args.student_clips, args.holdout_clips,
        out, steps=args.steps, targets_cross_fitted=args.cross_fitted,
    )  # fmt: skip
    accuracy = {name: round(result["accuracy"], 4) for name, result in report["test"].items()}
    log.info("test accuracy: %s", accuracy)


def _fold_numbers(pairs: list[str]) -> dict[int, Path]:
    """`FOLD=PATH` arguments of the cross-fit commands as {fold: path}, folds 1 and 2 each once."""
    from dsflexinet.layout import CROSS_FIT_FOLDS

    named = _named_paths(pairs)
    if sorted(named) != [str(fold) for fold in CROSS_FIT_FOLDS] or len(named) != len(pairs):
        raise PipelineError(f"expected one FOLD=PATH for each fold {CROSS_FIT_FOLDS}, got {', '.join(pairs)}")
    return {int(fold): path for fold, path in named.items()}


def _cross_fit_folds(args: argparse.Namespace) -> None:
    from dsflexinet.distill.crossfit import write_fold_tables

    counts = write_fold_tables(args.student_clips, _fold_numbers(args.out))
    log.info("cross-fit folds of %s: %s", args.student_clips, counts)


def _cross_fit_logits(args: argparse.Namespace) -> None:
    from dsflexinet.distill.crossfit import assemble_cross_fit_logits

    counts = assemble_cross_fit_logits(args.full, _fold_numbers(args.fold_logits), _fold_numbers(args.fold_clips),
                                       args.student_clips, args.out)  # fmt: skip
    log.info("cross-fitted logits in %s, rows by source: %s", args.out, counts)


def _ensemble_holdout(args: argparse.Namespace) -> None:
    from dsflexinet.distill.fusion import write_holdout_outcomes

    teachers = {Path(path).parent.name: path for path in args.logits}
    accuracy = write_holdout_outcomes(teachers, args.train_cache, args.holdout_clips, args.fusion, args.out_average,
                                      args.out_fused, steps=args.steps)  # fmt: skip
    log.info("hold-out accuracy, out of sample: %s", {name: round(value, 4) for name, value in accuracy.items()})


def _evaluate(args: argparse.Namespace) -> None:
    from dsflexinet.evaluate.metrics import evaluate_model

    metrics = evaluate_model(args.model, args.cache, args.out, args.out_clips, args.clips)
    log.info("%s: accuracy %.4f on %d clips", args.model, metrics["accuracy"], metrics["clips"])


def _predict(args: argparse.Namespace) -> int:
    from dsflexinet.evaluate.predict import predict_files

    classified, skipped = predict_files(args.inputs, args.model, args.out)
    log.info("classified %d file(s) into %s; skipped %d unreadable", classified, args.out, len(skipped))
    return 0 if classified else 1


def _pretrain(args: argparse.Namespace) -> None:
    from dsflexinet.train.pretrain import pretrain_job

    report = pretrain_job(args.architecture, args.schedule, args.corpus_waves, args.corpus_table, args.out_weights,
                          args.out_checksum, args.out_report, args.seed)  # fmt: skip
    log.info("pretrained %s: held-out mAP %.3f", args.out_weights, report["history"][-1]["held_out_map"])


def _add_training_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("pretrain", help="pretrain a teacher architecture on the corpus (multi-label)")
    command.add_argument("--architecture", type=_json_object, required=True, help="model, frontend and time_roll")
    command.add_argument("--schedule", type=_json_object, required=True)
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--corpus-waves", type=Path, required=True)
    command.add_argument("--corpus-table", type=Path, required=True)
    command.add_argument("--out-weights", type=Path, required=True, help="the backbone's state dict (no head)")
    command.add_argument("--out-checksum", type=Path, required=True, help="its SHA-256, sha256sum format")
    command.add_argument("--out-report", type=Path, required=True, help="the curve and held-out mAP, as JSON")
    command.set_defaults(handler=_pretrain)

    command = commands.add_parser("train", help="train a teacher or a student (resumes an interrupted run)")
    command.add_argument("--spec", type=_json_object, required=True, help="the job spec (see train/module.py)")
    _add_training_inputs(command)
    command.set_defaults(handler=_train)

    command = commands.add_parser("qat", help="QAT fine-tuning of a trained student, int8 conversion and export")
    command.add_argument("--float-model", type=Path, required=True, help="the float student's model.pt")
    command.add_argument("--spec", type=_json_object, required=True, help="epochs, lr, freeze_last_epochs, backend")
    _add_training_inputs(command)
    command.add_argument("--out-info", required=True, help="quantized.json: engine and file size")
    command.set_defaults(handler=_qat)

    command = commands.add_parser("dump-logits", help="a teacher's logits for every clip of the given caches")
    command.add_argument("--model", type=Path, required=True)
    command.add_argument("--cache", type=Path, action="append", required=True, help="repeat for each split")
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_dump_logits)

    command = commands.add_parser("fuse", help="fit the teacher fusion (eq. 4); write fused and averaged logits")
    command.add_argument("logits", nargs="+", type=Path, help="<teacher>/logits.npz files")
    command.add_argument("--train-cache", type=Path, required=True)
    command.add_argument("--test-cache", type=Path, required=True)
    command.add_argument("--fit", choices=("holdout", "in_sample"), required=True, help="what --fit-clips are")
    command.add_argument("--fit-clips", type=Path, required=True, help="clip table the fusion is fitted on")
    command.add_argument("--student-clips", type=Path, required=True, help="clip table the students learn from")
    command.add_argument("--holdout-clips", type=Path, required=True, help="clip table no teacher trained on")
    command.add_argument("--steps", type=int, default=300, help="L-BFGS iterations")
    command.add_argument("--out-fused", required=True)
    command.add_argument("--out-average", required=True)
    command.add_argument("--out-report", required=True, help="fusion.json")
    command.add_argument("--cross-fitted", action="store_true",
                         help="the logits are cross-fitted (cross-fit-logits): no student clip's was seen")
    command.set_defaults(handler=_fuse)

    command = commands.add_parser("cross-fit-folds", help="the clip tables of the teachers trained without fold 1, 2")
    command.add_argument("--student-clips", type=Path, required=True, help="clip table the students learn from")
    command.add_argument("--out", action="append", required=True, metavar="FOLD=PATH",
                         help="the student clips outside fold FOLD (1, 2): what its teachers learn from")
    command.set_defaults(handler=_cross_fit_folds)

    command = commands.add_parser("cross-fit-logits", help="a teacher's logits, each student clip's out of fold")
    command.add_argument("--full", type=Path, required=True, help="the teacher's logits.npz (trained on all)")
    command.add_argument("--fold-logits", action="append", required=True, metavar="FOLD=PATH",
                         help="logits.npz of the teacher trained without fold FOLD")
    command.add_argument("--fold-clips", action="append", required=True, metavar="FOLD=PATH",
                         help="the clip table that teacher trained on (cross-fit-folds)")
    command.add_argument("--student-clips", type=Path, required=True, help="clip table the students learn from")
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_cross_fit_logits)

    command = commands.add_parser("ensemble-holdout", help="the ensembles' per-clip outcomes on the fusion hold-out")
    command.add_argument("logits", nargs="+", type=Path, help="<teacher>/logits.npz files, as given to fuse")
    command.add_argument("--train-cache", type=Path, required=True)
    command.add_argument("--holdout-clips", type=Path, required=True)
    command.add_argument("--fusion", type=Path, required=True, help="the fuse command's fusion.json")
    command.add_argument("--steps", type=int, default=300, help="L-BFGS iterations, as given to fuse")
    command.add_argument("--out-average", type=Path, required=True)
    command.add_argument("--out-fused", type=Path, required=True)
    command.set_defaults(handler=_ensemble_holdout)

    command = commands.add_parser("evaluate", help="accuracy per device and group, confusion matrix, as JSON")
    command.add_argument("--model", type=Path, required=True, help="model.pt or an exported (int8) model")
    command.add_argument("--cache", type=Path, required=True)
    command.add_argument("--out", type=Path, required=True, help="the metrics (JSON)")
    command.add_argument("--out-clips", type=Path, required=True, help="one row per clip (tab-separated)")
    command.add_argument("--clips", type=Path, help="score only the clips of this table (a development hold-out)")
    command.set_defaults(handler=_evaluate)

    command = commands.add_parser("predict", help="classify WAV files or directories into a CSV")
    command.add_argument("inputs", nargs="+", type=Path, help="WAV files or directories")
    command.add_argument("--model", type=Path, required=True, help="model.pt or an exported (int8) model")
    command.add_argument("--out", type=Path, default=Path("predictions.csv"))
    command.set_defaults(handler=_predict)


# --- reports ------------------------------------------------------------------------------------------------


def _report_inputs(text: str) -> dict[str, dict[str, dict[str, Path]]]:
    """`{label: {seed: {role: path}}}`, the files of each seed of each row's student run."""
    value = _json_object(text)
    try:
        return {
            str(label): {
                str(seed): {str(role): Path(path) for role, path in files.items()} for seed, files in seeds.items()
            }
            for label, seeds in value.items()
        }
    except (AttributeError, TypeError):
        raise argparse.ArgumentTypeError("expected {label: {seed: {role: path}}}") from None


def _report_table(args: argparse.Namespace) -> None:
    from dsflexinet.report.tables import write_table

    frame = write_table(args.table, args.inputs, args.out_csv, args.out_md)
    log.info("%s:\n%s", args.table, frame.to_string(index=False))


def _report_confusion(args: argparse.Namespace) -> None:
    from dsflexinet.report.figures import plot_confusion

    plot_confusion(args.eval, args.title, args.out)


def _report_metrics(args: argparse.Namespace) -> None:
    from dsflexinet.report.summary import write_metrics

    write_metrics(args.inputs, args.fusion, args.energy, args.out, args.out_curves, args.out_devices)


def _report_development(args: argparse.Namespace) -> None:
    from dsflexinet.report.summary import write_development_metrics

    comparison = None
    if args.ensemble_clips:
        comparison = {"fused ensemble": args.ensemble_clips, args.labels_only_run: args.labels_only_clips}
    write_development_metrics(args.histories, args.fusion, args.holdout_clips, args.out, comparison, args.defaults)


def _report_claims(args: argparse.Namespace) -> None:
    from dsflexinet.report.claims import write_claims
    from dsflexinet.report.figures import plot_claims

    options = {name: getattr(args, name) for name in ("resamples", "rng_seed") if getattr(args, name) is not None}
    frame = write_claims(args.plan, args.out_csv, args.out_md, **options)
    plot_claims(frame, args.out_png)
    log.info("verdicts: %s; family-wise: %s", frame["verdict"].value_counts().to_dict(),
             frame["family_verdict"].value_counts().to_dict())  # fmt: skip


def _power(args: argparse.Namespace) -> None:
    from dsflexinet.report.power import write_power

    frame = write_power(args.comparisons, args.out_csv, args.out_md, target_pp=args.target, confidence=args.confidence)
    log.info("locations per scene for a half-width of ±%g points: %s", args.target,
             dict(zip(frame["comparison"], frame["per_scene_needed"], strict=True)))  # fmt: skip


def _docs_results(args: argparse.Namespace) -> None:
    from dsflexinet.report.docs import write_results_blocks

    write_results_blocks(args.results, args.readme, args.page, args.figure)
    written = ", ".join(map(str, filter(None, (args.readme, args.page, args.figure))))
    log.info("%s rewritten from %s", written, args.results)


def _report_html(args: argparse.Namespace) -> None:
    from dsflexinet.report.docs import write_markdown_html

    write_markdown_html(args.markdown, args.out, args.title)


def _config_reference(args: argparse.Namespace) -> None:
    from dsflexinet.atomic import write_text
    from dsflexinet.report.docs import repository_config_reference

    text = repository_config_reference(args.root)
    if args.check:
        current = (args.root / "config" / "README.md").read_text()
        if current != text:
            raise PipelineError("config/README.md is not current: run `python -m dsflexinet config-reference`")
        return
    write_text(args.root / "config" / "README.md", text)


def _add_report_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("report-table", help="one of the paper's tables II-V as CSV and Markdown")
    command.add_argument("table", choices=("table2", "table3", "table4", "table5"))
    command.add_argument("--inputs", type=_report_inputs, required=True,
                         help="JSON {label: {seed: {role: path}}}, rows in table order")  # fmt: skip
    command.add_argument("--out-csv", type=Path, required=True)
    command.add_argument("--out-md", type=Path, required=True)
    command.set_defaults(handler=_report_table)

    command = commands.add_parser("report-confusion", help="a confusion-matrix figure (paper Fig. 3)")
    command.add_argument("--eval", type=Path, action="append", required=True,
                         help="eval_float.json of a student; repeated for its seeds, whose counts add up")  # fmt: skip
    command.add_argument("--title", required=True)
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_report_confusion)

    command = commands.add_parser("report-claims", help="the paper's claims: paired differences, intervals, verdicts")
    command.add_argument("--plan", type=_json_object, required=True, help="claims and their systems' clip tables")
    command.add_argument("--resamples", type=int, help="location bootstrap resamples (default: report.stats')")
    command.add_argument("--rng-seed", type=int, help="the bootstrap's seed (default: report.stats')")
    command.add_argument("--out-csv", type=Path, required=True)
    command.add_argument("--out-md", type=Path, required=True)
    command.add_argument("--out-png", type=Path, required=True)
    command.set_defaults(handler=_report_claims)

    command = commands.add_parser("power", help="test locations a paired interval needs, from per-clip tables")
    command.add_argument("--comparisons", type=_json_object, required=True,
                         help='JSON {label: {"a": {seed: clips.tsv}, "b": {seed: clips.tsv}}}: the development '
                              "run's hold-out tables (sizing the test split must not read it)")  # fmt: skip
    command.add_argument("--target", type=float, default=3.0, help="half-width wanted, percentage points")
    command.add_argument("--confidence", type=float, default=0.95, help="the interval's (a family's per-claim level)")
    command.add_argument("--out-csv", type=Path, required=True)
    command.add_argument("--out-md", type=Path, required=True)
    command.set_defaults(handler=_power)

    command = commands.add_parser("report-metrics", help="results/metrics.json, the numbers DVC compares")
    command.add_argument("--inputs", type=_report_inputs, required=True, help="JSON {run: {seed: {role: path}}}")
    command.add_argument("--fusion", type=Path, required=True)
    command.add_argument("--energy", type=Path, required=True)
    command.add_argument("--out", type=Path, required=True, help="metrics.json")
    command.add_argument("--out-curves", type=Path, required=True, help="validation accuracy per epoch (CSV)")
    command.add_argument("--out-devices", type=Path, required=True, help="accuracy per device (CSV)")
    command.set_defaults(handler=_report_metrics)

    command = commands.add_parser("docs-results", help="rewrite the results blocks of the README and docs/results.md")
    command.add_argument("--results", type=Path, default=Path("results"),
                         help="a finished run's results/ (run.json, metrics.json, tables/claims.csv)")  # fmt: skip
    command.add_argument("--readme", type=Path, help="README.md")
    command.add_argument("--page", type=Path, help="docs/results.md")
    command.add_argument("--figure", type=Path, help="where the run's claims figure is copied (docs/claims.png)")
    command.set_defaults(handler=_docs_results)

    command = commands.add_parser("report-html", help="a Markdown table as an HTML page for the Snakemake report")
    command.add_argument("markdown", type=Path)
    command.add_argument("--title", required=True)
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_report_html)

    command = commands.add_parser("config-reference", help="write config/README.md from the config schema")
    command.add_argument("--root", type=Path, default=Path(), help="the repository's root")
    command.add_argument("--check", action="store_true", help="only check that config/README.md is current")
    command.set_defaults(handler=_config_reference)

    command = commands.add_parser("report-development", help="development.json: a development run's hold-out scores")
    command.add_argument("--histories", type=_json_object, required=True, help="JSON {name: history.csv}")
    command.add_argument("--fusion", type=Path, required=True, help="the ensemble's fusion.json")
    command.add_argument("--holdout-clips", type=Path, required=True, help="the fusion hold-out's clip table")
    command.add_argument("--ensemble-clips", type=Path, help="the fused ensemble's hold-out outcomes")
    command.add_argument("--labels-only-clips", type=Path, help="a student's hold-out outcomes: the one trained on"
                                                                  " labels alone (Table IV's Teacher(w/o))")
    command.add_argument("--labels-only-run", default="labels only", help="that student run's name")
    command.add_argument("--defaults", type=_json_object,
                         help="JSON config.development_plan: the candidate settings' and the baseline's hold-out"
                              " outcomes")  # fmt: skip
    command.add_argument("--out", type=Path, required=True, help="development.json")
    command.set_defaults(handler=_report_development)


# --- DCASE ----------------------------------------------------------------------------------------------------


def _submission(args: argparse.Namespace) -> None:
    from dsflexinet.evaluate.submission import submit_student
    from dsflexinet.layout import SubmissionFiles

    summary = submit_student(
        args.model, args.evaluation_root, args.complexity, args.quantized, args.evaluation, args.run,
        SubmissionFiles(args.out_csv, args.out_info), SubmissionFiles(args.incomplete_csv, args.incomplete_info),
    )  # fmt: skip
    log.info("%s: %d clips classified by %s", args.out_csv, summary["classified"], args.model)


def _evaluation_manifest(args: argparse.Namespace) -> None:
    from dsflexinet.evaluate.submission import write_manifest

    table = write_manifest(args.evaluation_root, args.out)
    log.info("%s: %d clips of %s", args.out, len(table), args.evaluation_root)


def _report_data_efficiency(args: argparse.Namespace) -> None:
    from dsflexinet.report.efficiency import write_data_efficiency

    frame = write_data_efficiency(args.plan, args.out_csv, args.out_md, args.out_png)
    log.info("data efficiency:\n%s", frame.to_string(index=False))


def _device_clips(args: argparse.Namespace) -> None:
    from dsflexinet.data.splits import write_device_clips

    log.info("%s: %d training clips of device %s", args.out, write_device_clips(args.clips, args.device, args.out),
             args.device)  # fmt: skip


def _device_finetune(args: argparse.Namespace) -> None:
    from dsflexinet.quant.device import device_finetune_job

    compute = args.compute | {"num_workers": args.num_workers}
    _log_saved(device_finetune_job(args.float_model, args.spec, _training_data(args), _training_files(args), compute))


def _named_paths(pairs: list[str]) -> dict[str, Path]:
    """`name=path` arguments as {name: path}."""
    named = {}
    for pair in pairs:
        name, separator, path = pair.partition("=")
        if not separator or not name or not path:
            raise PipelineError(f"expected NAME=PATH, got {pair!r}")
        named[name] = Path(path)
    return named


def _device_system(args: argparse.Namespace) -> None:
    from dsflexinet.report.dcase25 import device_specific_outcomes

    clips = device_specific_outcomes(args.general, _named_paths(args.device), args.out)
    log.info("%s: %d clips, accuracy %.4f", args.out, len(clips), (clips["label"] == clips["prediction"]).mean())


def _dcase25_finetune_choice(args: argparse.Namespace) -> None:
    from dsflexinet.report.dcase25 import write_finetune_choice

    result = write_finetune_choice(args.plan, args.out)
    log.info("%s: chosen %s (%s); the highest on the hold-out %s", args.out, result["chosen"], result["rule"],
             result["highest_on_holdout"])  # fmt: skip


def _dcase25_evaluation(args: argparse.Namespace) -> None:
    from dsflexinet.report.dcase25 import write_evaluation

    plan = args.plan
    summary = write_evaluation(plan, plan["submitted_seed"], plan["run"], plan["devices"], args.out_accuracy,
                               args.out_claims_csv, args.out_claims_md)  # fmt: skip
    log.info("general %.4f, device-specific %.4f; seen devices: %+.2f points (%s)", summary["general"]["accuracy"],
             summary["device_specific"]["accuracy"], summary["difference_pp"], summary["verdict"])  # fmt: skip


def _dcase25_package(args: argparse.Namespace) -> None:
    from dsflexinet.atomic import write_json
    from dsflexinet.evaluate.dcase25 import build_package, clip_devices, package_complexity, write_device_output
    from dsflexinet.evaluate.submission import evaluation_clips
    from dsflexinet.report.dcase25 import write_metadata

    models, complexity = _named_paths(args.model), _named_paths(args.complexity)
    record = package_complexity(complexity, models, _named_paths(args.quantized))
    clips = evaluation_clips(args.evaluation_root)
    classified = write_device_output(models, clips, clip_devices(args.evaluation_root, clips), args.out_csv)
    write_json(args.out_complexity, record)
    write_metadata(args.out_metadata, args.module, args.run, args.accuracy, record)
    build_package(args.out_package, args.module, models, record)
    log.info("%s: %d clips classified; package %s with models %s", args.out_csv, classified, args.out_package,
             ", ".join(models))  # fmt: skip


def _add_dcase25_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("device-clips", help="one device's clips of a training clip table (DCASE'25)")
    command.add_argument("--clips", type=Path, required=True, help="the subset's train.tsv")
    command.add_argument("--device", required=True)
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_device_clips)

    command = commands.add_parser("device-finetune", help="fine-tune a float student on one device's clips")
    command.add_argument("--float-model", type=Path, required=True, help="the general student's model.pt")
    command.add_argument("--spec", type=_json_object, required=True, help="epochs, lr, device")
    _add_training_inputs(command)
    command.set_defaults(handler=_device_finetune)

    command = commands.add_parser("device-system", help="per-clip outcomes of the device-specific system")
    command.add_argument("--general", type=Path, required=True, help="the general model's eval_int8_clips.tsv")
    command.add_argument("--device", action="append", default=[], help="DEVICE=eval_int8_clips.tsv, repeated")
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_device_system)

    command = commands.add_parser("dcase25-finetune-choice",
                                  help="a development run's choice of the device fine-tuning schedule (hold-out)")
    command.add_argument("--plan", type=_json_object, required=True,
                         help="JSON {precision, general, baseline, candidates} (config.finetune_development_plan)")
    command.add_argument("--out", type=Path, required=True, help="dcase25_finetune.json")
    command.set_defaults(handler=_dcase25_finetune_choice)

    command = commands.add_parser("dcase25-evaluation", help="test accuracy of both systems and the per-device claim")
    command.add_argument("--plan", type=_json_object, required=True,
                         help="JSON {run, devices, submitted_seed, claims} (report.dcase25.claims_plan)")  # fmt: skip
    command.add_argument("--out-accuracy", type=Path, required=True, help="test_accuracy.json")
    command.add_argument("--out-claims-csv", type=Path, required=True)
    command.add_argument("--out-claims-md", type=Path, required=True)
    command.set_defaults(handler=_dcase25_evaluation)

    command = commands.add_parser("dcase25-package", help="the installable DCASE'25 package and its files")
    for name, text in (("model", "exported int8 model"), ("complexity", "complexity.json"),
                       ("quantized", "qat/quantized.json")):  # fmt: skip
        command.add_argument(f"--{name}", action="append", required=True, help=f"general|DEVICE={text}, repeated")
    command.add_argument("--evaluation-root", type=Path, required=True, help="as for the submission command")
    command.add_argument("--accuracy", type=Path, required=True, help="test_accuracy.json (dcase25-evaluation)")
    command.add_argument("--module", required=True, help="<label>_task1_<n>")
    command.add_argument("--run", required=True, help="the student run's name")
    command.add_argument("--out-package", type=Path, required=True, help="the package folder")
    command.add_argument("--out-csv", type=Path, required=True, help="output.csv")
    command.add_argument("--out-complexity", type=Path, required=True, help="every model's complexity, as JSON")
    command.add_argument("--out-metadata", type=Path, required=True, help="the metadata YAML")
    command.set_defaults(handler=_dcase25_package)


def _add_dcase_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("submission", help="the DCASE output.csv and info.json of an exported student")
    command.add_argument("--model", type=Path, required=True, help="the exported int8 model (qat/model_int8.pt)")
    command.add_argument("--evaluation-root", type=Path, required=True,
                         help="a TAU22-layout folder (its clip table lists the clips) or a folder of WAVs")  # fmt: skip
    command.add_argument("--complexity", type=Path, required=True, help="the student's complexity.json (with limits)")
    command.add_argument("--quantized", type=Path, required=True, help="the student's qat/quantized.json")
    command.add_argument("--evaluation", type=Path, required=True, help="the student's eval_int8.json (dev test)")
    command.add_argument("--run", required=True, help="the student run's name")
    command.add_argument("--out-csv", required=True, help="output.csv")
    command.add_argument("--out-info", required=True, help="info.json")
    command.add_argument("--incomplete-csv", required=True, help="where output.csv goes if a clip is unreadable")
    command.add_argument("--incomplete-info", required=True, help="where info.json goes if a clip is unreadable")
    command.set_defaults(handler=_submission)

    command = commands.add_parser("evaluation-manifest", help="the evaluation clips' names, sizes and checksums")
    command.add_argument("--evaluation-root", type=Path, required=True, help="as for the submission command")
    command.add_argument("--out", type=Path, required=True, help="the manifest (tab-separated)")
    command.set_defaults(handler=_evaluation_manifest)

    command = commands.add_parser("report-data-efficiency", help="accuracy against the DCASE'24 training subset")
    command.add_argument("--plan", type=_json_object, required=True,
                         help="JSON {training_clips: {fraction: train.tsv}, systems: [{run, fraction, precision, "
                              "clips: {seed: clips.tsv}}]}")  # fmt: skip
    command.add_argument("--out-csv", type=Path, required=True)
    command.add_argument("--out-md", type=Path, required=True)
    command.add_argument("--out-png", type=Path, required=True)
    command.set_defaults(handler=_report_data_efficiency)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsflexinet", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(commands)
    _add_model_commands(commands)
    _add_audio_commands(commands)
    _add_training_commands(commands)
    _add_report_commands(commands)
    _add_dcase_commands(commands)
    _add_dcase25_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    # Lightning advertises its cloud logger at the top of every training job's log.
    lightning_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    lightning_log.addFilter(lambda record: "Tip:" not in record.getMessage())
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        status = args.handler(args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
