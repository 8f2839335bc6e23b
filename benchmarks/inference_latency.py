"""Latency of one 1 s clip at batch 1 on the CPU: float vs int8 (fbgemm and x86 engines), with and without
the log-mel frontend.

The int8 models are what the QAT step exports: fused, fake-quantized, calibrated and converted (untrained
weights: latency does not depend on their values). Each model is timed in the form that is deployed, traced
to TorchScript as the QAT step exports it (and frozen, which helps the float model most), and also eagerly,
as the training code runs it; the speed-up is against the float model in the same form. One thread, as an
embedded target would run it, after warm-up. The variants take turns, `--repeats` rounds of 10 calls each,
and the median call counts: a burst of noise from a shared host then slows every variant alike instead of
deciding one variant's figure.

    .venv/bin/python benchmarks/inference_latency.py [--models dsflexinet_sm2 ...] [--out latency.json]

`--norm resnorm_freq` (or any block norm) times the students with that norm instead of their default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable

import torch

from dsflexinet.audio.frontend import build_frontend
from dsflexinet.machine import describe_machine, machine_label
from dsflexinet.modelfile import WaveformClassifier
from dsflexinet.models.registry import available_models, build_model, model_spec
from dsflexinet.models.resnorm import NORMS
from dsflexinet.quant.qat import convert_int8, prepare_qat

CALLS_PER_TURN = 10


def interleaved_median_ms(candidates: dict[str, tuple[Callable, torch.Tensor, str]], rounds: int) -> dict:
    """Median milliseconds per call of each `name: (function, example, quantized engine)`, taking turns."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.inference_mode():
        for function, example, engine in candidates.values():
            torch.backends.quantized.engine = engine
            for _ in range(10):
                function(example)
        for _ in range(rounds):
            for name, (function, example, engine) in candidates.items():
                torch.backends.quantized.engine = engine
                for _ in range(CALLS_PER_TURN):
                    start = time.perf_counter()
                    function(example)
                    times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def int8_model(name: str, backend: str, options: dict) -> torch.nn.Module:
    model = prepare_qat(build_model(name, **options), backend)
    with torch.no_grad():
        for _ in range(4):  # calibrate the observers on log-mel-like inputs
            model(torch.randn(8, *model_spec(name).input_shape))
    return convert_int8(model)


def torchscript(model: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    with torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(model.eval(), example))


def measure(name: str, rounds: int, options: dict) -> dict:
    frontend = build_frontend(model_spec(name).frontend).eval()
    wave = torch.randn(1, 32000) * 0.1
    mel = frontend(wave)
    models = [("float", "x86", build_model(name, **options).eval())]
    models += [(f"int8 {backend}", backend, int8_model(name, backend, options)) for backend in ("fbgemm", "x86")]
    candidates = {"frontend": (frontend, wave, "x86")}
    for label, engine, model in models:
        torch.backends.quantized.engine = engine
        classifier = WaveformClassifier(frontend, model).eval()
        candidates[f"{label} eager model"] = (model, mel, engine)
        candidates[f"{label} eager with_frontend"] = (classifier, wave, engine)
        candidates[f"{label} script model"] = (torchscript(model, mel), mel, engine)
        candidates[f"{label} script with_frontend"] = (torchscript(classifier, wave), wave, engine)
    medians = interleaved_median_ms(candidates, rounds)
    rows = {}
    for label, _, _ in models:
        for form in ("eager", "script"):
            rows[f"{label} {form}"] = {
                "model_ms": medians[f"{label} {form} model"],
                "with_frontend_ms": medians[f"{label} {form} with_frontend"],
            }
    return {"frontend_ms": medians["frontend"], "variants": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    students = [name for name in available_models() if model_spec(name).family == "flexinet"]  # QAT's models
    parser.add_argument("--models", nargs="+", default=students, choices=students)
    parser.add_argument("--repeats", type=int, default=30, help="rounds; every variant runs 10 calls a round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--norm", choices=NORMS, default=None, help="the students' block norm (default: theirs)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
    results = {}
    machine = describe_machine()
    print(f"machine: {machine_label(machine)}")
    print(f"{'model':<16} {'variant':<19} {'model ms':>9} {'+frontend ms':>13} {'speed-up':>9} {'+frontend':>10}")
    for name in args.models:
        results[name] = measure(name, args.repeats, {"norm": args.norm} if args.norm else {})
        variants = results[name]["variants"]
        for label, row in variants.items():
            baseline = variants[f"float {label.split()[-1]}"]  # float in the same form (eager or script)
            print(f"{name:<16} {label:<19} {row['model_ms']:>9.3f} {row['with_frontend_ms']:>13.3f}"
                  f" {baseline['model_ms'] / row['model_ms']:>8.2f}x"
                  f" {baseline['with_frontend_ms'] / row['with_frontend_ms']:>9.2f}x")  # fmt: skip
        print(f"{name:<16} {'frontend':<19} {results[name]['frontend_ms']:>9.3f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"machine": machine, "norm": args.norm or "default", "models": results}, handle, indent=2)


if __name__ == "__main__":
    main()
