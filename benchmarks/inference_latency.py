"""Latency of one 1 s clip at batch 1 on the CPU: float vs int8 (fbgemm and x86 engines), with and without
the log-mel frontend.

The int8 models are what the QAT step exports: fused, fake-quantized, calibrated and converted (untrained
weights: latency does not depend on their values). Each model is timed in the form that is deployed, traced
to TorchScript as the QAT step exports it (and frozen, which helps the float model most), and also eagerly,
as the training code runs it; the speed-up is against the float model in the same form. The float baseline
is the model with its first convolution's weight in the contiguous layout, the faster of the two at batch 1
(`contiguous_single_channel_convs`); the model as built and trained, channels-last throughout, is timed beside
it (`float as-built`). One thread, as an embedded target would run it, after warm-up. The variants take turns,
`--repeats` rounds of 10 calls each, and the median call counts: a burst of noise from a shared host then slows
every variant alike instead of deciding one variant's figure.

    .venv/bin/python benchmarks/inference_latency.py [--models dsflexinet_sm2 ...] [--out latency.json]

`--norm resnorm_freq` (or any block norm) times the students with that norm instead of their default.
`--layers` also times each layer alone (a conv with its BN and ReLU, a norm, a pooling; traced and frozen as the
model is, on the input it sees in a forward pass), float against int8, to show where int8 gains and where a
kernel's fixed cost eats the gain. The residual adds are not modules and fall in the difference between the
layers' sum and the whole model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial

import torch
from torch.ao.nn.quantized import DeQuantize, FloatFunctional, QFunctional, Quantize
from torch.ao.quantization import DeQuantStub, QuantStub

from dsflexinet.audio.frontend import build_frontend
from dsflexinet.machine import describe_machine, machine_label
from dsflexinet.modelfile import WaveformClassifier
from dsflexinet.models.registry import available_models, build_model, model_spec
from dsflexinet.models.resnorm import NORMS
from dsflexinet.quant.qat import convert_int8, prepare_qat

CALLS_PER_TURN = 10
# The int8 targets: the deployed sm2 this much faster in int8 than in float on its faster engine, and no
# student slower in int8 than in float on fbgemm.
SM2_INT8_GOAL = 2.5
# Modules that are no layer of their own: identities, the quantization borders, and the residual adds' holders,
# which the blocks call by method (add_relu), not as modules.
NOT_LAYERS = (torch.nn.Identity, QuantStub, DeQuantStub, Quantize, DeQuantize, FloatFunctional, QFunctional)


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


def layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The model's layers by name: each outermost module whose children are all leaves (conv + BN + ReLU, or
    their fused int8 form), or a leaf that sits in no such module; identities and the quant stubs aside."""
    found = {}
    for name, child in model.named_children():
        grandchildren = list(child.children())
        if all(next(part.children(), None) is None for part in grandchildren):
            empty = isinstance(child, torch.nn.Sequential) and not grandchildren  # an identity shortcut
            if not empty and not isinstance(child, NOT_LAYERS):
                found[name] = child
        else:
            found.update({f"{name}.{inner}": layer for inner, layer in layers(child).items()})
    return found


def layer_inputs(model: torch.nn.Module, example: torch.Tensor) -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    """Each layer of `model` with the input it receives in a forward pass of `example`."""
    seen: dict[str, tuple[torch.nn.Module, torch.Tensor]] = {}

    def record(name: str, module: torch.nn.Module, args: tuple) -> None:
        seen.setdefault(name, (module, args[0]))

    hooks = [layer.register_forward_pre_hook(partial(record, name)) for name, layer in layers(model).items()]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    return seen


def contiguous_single_channel_convs(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with the weights of its convolutions from one input channel in the contiguous layout, in place.

    A (C_out, 1, kH, kW) weight is channels-last and contiguous at once, and `Module.to(channels_last)` gives it
    the strides (kH*kW, 1, kW, 1); PyTorch then runs the convolution channels-last, and at batch 1 with its own
    kernel (`_slow_conv2d_forward`, not oneDNN), which for the students' first stem convolution takes about 3.4x
    as long as with the strides (kH*kW, kH*kW, kW, 1), whose output is contiguous (227 against 65 us for sm2's on
    the Zen 4 VM). The next convolution's channels-last weight takes the model back to channels-last. Values and
    outputs are the same up to float rounding. Only the benchmark's float baseline uses it: the pipeline deploys
    int8 models, and training keeps the built layout (a change there would change the bits of every trained
    model the documented runs record).
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 1 and module.groups == 1:
            module.weight.data = module.weight.data.new_empty(module.weight.shape).copy_(module.weight.data)
    return model


def precisions(name: str, options: dict) -> list[tuple[str, str, torch.nn.Module]]:
    """(label, quantized engine, model): the float model in its faster batch-1 layout (the baseline), the float
    model as built (channels-last throughout, as trained) and the int8 models of both engines."""
    models = [
        ("float", "x86", contiguous_single_channel_convs(build_model(name, **options).eval())),
        ("float as-built", "x86", build_model(name, **options).eval()),
    ]
    return models + [(f"int8 {backend}", backend, int8_model(name, backend, options)) for backend in ("fbgemm", "x86")]


def example_clip(name: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """(frontend, a 1 s waveform at batch 1, its log-mel): the inputs every variant is timed on."""
    frontend = build_frontend(model_spec(name).frontend).eval()
    wave = torch.randn(1, 32000) * 0.1
    return frontend, wave, frontend(wave)


def measure_layers(models: list[tuple[str, str, torch.nn.Module]], mel: torch.Tensor, rounds: int) -> dict:
    """Milliseconds of each layer alone, float and int8 on both engines, taking turns."""
    candidates, keys = {}, {}
    for label, engine, model in models:
        torch.backends.quantized.engine = engine
        inputs = layer_inputs(model, mel)
        keys[label] = [*inputs, "whole"]
        for layer, (module, example) in inputs.items():
            candidates[f"{label} {layer}"] = (torchscript(module, example), example, engine)
        candidates[f"{label} whole"] = (torchscript(model, mel), mel, engine)
    medians = interleaved_median_ms(candidates, rounds)
    return {label: {layer: medians[f"{label} {layer}"] for layer in layers} for label, layers in keys.items()}


def print_layers(name: str, timings: dict[str, dict[str, float]]) -> None:
    labels = list(timings)
    names = [layer for layer in timings["float"] if layer != "whole"]
    rows = {layer: {label: timings[label][layer] for label in labels} for layer in names}
    rows["sum of the layers"] = {label: sum(timings[label][layer] for layer in names) for label in labels}
    rows["whole model"] = {label: timings[label]["whole"] for label in labels}
    print(f"{name} layer by layer (us, TorchScript, each layer alone; speed-up against float):")
    print(f"  {'layer':<28}" + "".join(f" {label:>14}" for label in labels) + f" {'x86 speed-up':>13}")
    for layer, values in rows.items():
        print(f"  {layer:<28}" + "".join(f" {1000 * values[label]:>14.1f}" for label in labels)
              + f" {values['float'] / values['int8 x86']:>12.2f}x")  # fmt: skip


def measure(models: list[tuple[str, str, torch.nn.Module]], clip: tuple, rounds: int) -> dict:
    frontend, wave, mel = clip
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


def int8_targets(results: dict) -> dict:
    """The int8 targets from the deployed (TorchScript) rows: each student's int8 speed-up over float per engine,
    its faster engine, sm2's verdict against SM2_INT8_GOAL where sm2 was measured, and whether every measured
    student is at least as fast in int8 as in float on fbgemm."""
    speed_ups = {}
    for name, result in results.items():
        variants = result["variants"]
        float_ms = variants["float script"]["model_ms"]
        speed_ups[name] = {
            label.split()[1]: float_ms / row["model_ms"]
            for label, row in variants.items()
            if label.startswith("int8 ") and label.endswith(" script")
        }
    targets: dict = {
        "speed_ups": speed_ups,
        "faster_engine": {name: max(engines, key=engines.get) for name, engines in speed_ups.items()},
        "fbgemm_never_slower": all(engines["fbgemm"] >= 1.0 for engines in speed_ups.values()),
    }
    if "dsflexinet_sm2" in speed_ups:
        best = max(speed_ups["dsflexinet_sm2"].values())
        targets["sm2"] = {"goal": SM2_INT8_GOAL, "speed_up": best, "met": best >= SM2_INT8_GOAL}
    return targets


def print_targets(targets: dict) -> None:
    print("int8 speed-up targets (TorchScript, model alone, batch 1; int8 speed-up over float):")
    if "sm2" in targets:
        sm2, engine = targets["sm2"], targets["faster_engine"]["dsflexinet_sm2"]
        verdict = "met" if sm2["met"] else "missed"
        print(f"  sm2 on its faster engine ({engine}): {sm2['speed_up']:.2f}x (goal {sm2['goal']}x: {verdict})")
    fbgemm = ", ".join(
        f"{name.removeprefix('dsflexinet_')} {engines['fbgemm']:.2f}x" for name, engines in targets["speed_ups"].items()
    )
    verdict = "met" if targets["fbgemm_never_slower"] else "missed"
    print(f"  fbgemm: {fbgemm} (goal: none under 1x: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    students = [name for name in available_models() if model_spec(name).family == "flexinet"]  # QAT's models
    parser.add_argument("--models", nargs="+", default=students, choices=students)
    parser.add_argument("--repeats", type=int, default=30, help="rounds; every variant runs 10 calls a round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--norm", choices=NORMS, default=None, help="the students' block norm (default: theirs)")
    parser.add_argument("--layers", action="store_true", help="also time each layer alone, float against int8")
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
    results = {}
    machine = describe_machine()
    print(f"machine: {machine_label(machine)}")
    options = {"norm": args.norm} if args.norm else {}
    print(f"{'model':<16} {'variant':<22} {'model ms':>9} {'+frontend ms':>13} {'speed-up':>9} {'+frontend':>10}")
    models = {name: precisions(name, options) for name in args.models}
    clips = {name: example_clip(name) for name in args.models}  # the whole models and their layers see one clip
    for name in args.models:
        results[name] = measure(models[name], clips[name], args.repeats)
        variants = results[name]["variants"]
        for label, row in variants.items():
            baseline = variants[f"float {label.split()[-1]}"]  # float in the same form (eager or script)
            print(f"{name:<16} {label:<22} {row['model_ms']:>9.3f} {row['with_frontend_ms']:>13.3f}"
                  f" {baseline['model_ms'] / row['model_ms']:>8.2f}x"
                  f" {baseline['with_frontend_ms'] / row['with_frontend_ms']:>9.2f}x")  # fmt: skip
        print(f"{name:<16} {'frontend':<22} {results[name]['frontend_ms']:>9.3f}")
    targets = int8_targets(results)
    print_targets(targets)
    for name in args.models if args.layers else ():
        results[name]["layers_ms"] = measure_layers(models[name], clips[name][2], args.repeats)
        print_layers(name, results[name]["layers_ms"])
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"machine": machine, "norm": args.norm or "default", "models": results, "targets": targets},
                      handle, indent=2)


if __name__ == "__main__":
    main()
