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

from dsflexinet.errors import PipelineError

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


def _synthesise_dirs(args: argparse.Namespace) -> None:
    from dsflexinet.data.dirs import synthesise_impulse_responses

    paths = synthesise_impulse_responses(args.out, args.count, args.seed)
    log.info("wrote %d synthetic impulse responses to %s", len(paths), args.out)


def _fetch_micirp(args: argparse.Namespace) -> None:
    from dsflexinet.data.dirs import fetch_micirp

    fetch_micirp(args.out, args.base_url, args.downloads)
    log.info("MicIRP responses verified in %s", args.out)


def _fetch(args: argparse.Namespace) -> None:
    from dsflexinet.data.download import fetch

    fetch(args.url, args.out, args.checksum, algorithm=args.algorithm)
    log.info("verified %s", args.out)


def _extract(args: argparse.Namespace) -> None:
    from dsflexinet.data.download import extract_zip

    for archive in args.archives:
        written = extract_zip(archive, args.out)
        log.info("%s: %d files extracted", archive, written)


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


def _add_data_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("generate-synthetic", help="write the synthetic default data set (TAU22 layout)")
    command.add_argument("--spec", type=_json_object, default={}, help="SyntheticSpec fields as JSON")
    command.add_argument("--workers", type=int, default=1)
    command.add_argument("--out", type=Path, required=True, help="directory that receives the data set root")
    command.set_defaults(handler=_generate_synthetic)

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
    command.set_defaults(handler=_fetch)

    command = commands.add_parser("extract", help="unpack zip archives once (resumes an interrupted extraction)")
    command.add_argument("archives", nargs="+", type=Path)
    command.add_argument("--out", type=Path, required=True)
    command.set_defaults(handler=_extract)

    command = commands.add_parser("validate-dataset", help="check a TAU22 layout and count clips per device")
    command.add_argument("root", type=Path)
    command.add_argument("--out", type=Path, default=None, help="also write the summary as JSON")
    command.set_defaults(handler=_validate_dataset)

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
    from dsflexinet.models.complexity import complexity_table

    rows = complexity_table(args.models, norm=args.norm)
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
    command.add_argument("--norm", default=None, help="block normalisation for the DS-FlexiNet models")
    command.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    command.set_defaults(handler=_complexity)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsflexinet", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(commands)
    _add_model_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    try:
        args.handler(args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
