"""The benchmark scripts still run against the package (they import its internals, and the GPU one runs only
when a GPU is lent, so a refactor must not break it unseen), report consistent figures, and project the real
run's GPU-hours from the right epochs and clip counts. Smoke sizes: no figure here is a measurement."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dsflexinet.config import load_config
from dsflexinet.models.registry import build_model

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


# The lent GPU machine's image (the device tool's KINDS.md, read there on 2026-11-17): what the GPU run finds
# installed beside the wheels that benchmarks/gpu_wheels.sh carries to it.
GPU_IMAGE = frozenset(canonicalize_name(name) for name in """
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
    charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
    cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
    flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
    huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
    jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
    linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
    mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
    numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
    nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
    nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
    onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
    orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
    propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
    pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
    pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
    scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
    sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
    tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
    torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
    wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())

# Runs a benchmark, then records the distributions that the package's modules it imported, every model module
# (the registry imports a model's module only when it builds one), and the script itself import anywhere in
# their code (lazy imports included; stdlib aside).
RECORD_IMPORTS = """
import ast, atexit, json, runpy, sys
from importlib.metadata import packages_distributions
from pathlib import Path
record, script = sys.argv[1], sys.argv[2]
def write():
    files = {module.__file__ for name, module in list(sys.modules.items()) if name.split(".")[0] == "dsflexinet"}
    files.update(map(str, Path(sys.modules["dsflexinet.models"].__file__).parent.glob("*.py")))
    names = set()
    for file in [*files, script]:
        for node in ast.walk(ast.parse(open(file).read())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    names -= {*sys.stdlib_module_names, "dsflexinet", "__future__"}
    found = packages_distributions()
    open(record, "w").write(json.dumps(sorted({dist for name in names for dist in found.get(name, [name])})))
atexit.register(write)
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def run_benchmark(script: str, *args: str, record_imports: Path | None = None) -> None:
    path = str(REPO / "benchmarks" / script)
    command = [sys.executable, path] if record_imports is None else [
        sys.executable, "-c", RECORD_IMPORTS, str(record_imports), path]  # fmt: skip
    done = subprocess.run([*command, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def carried_wheels() -> list[str]:
    """The packages benchmarks/gpu_wheels.sh fetches for the GPU machine."""
    script = (REPO / "benchmarks" / "gpu_wheels.sh").read_text()
    return re.search(r"^PACKAGES=\((.*)\)$", script, re.MULTILINE).group(1).split()


def benchmark_module(script: str):
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), REPO / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_runs_its_rows_on_the_cpu_in_both_precisions(tmp_path: Path) -> None:
    """bfloat16 autocast on the CPU: the dtypes that ResNorm's hand-written backward, the fake quantizers,
    Freq-MixStyle and the KD loss meet under a GPU's mixed precision, before a GPU is lent to find out."""
    out, imports = tmp_path / "gpu.json", tmp_path / "imports.json"
    smoke = ["--steps", "1", "--warmup", "1", "--batch-scale", "0.02", "--precisions", "bf16-mixed"]
    run_benchmark("gpu_throughput.py", "--device", "cpu", "--models", "cp_resnet", "sm4", "sm4_qat", *smoke,
                  "--out", str(out), record_imports=imports)  # fmt: skip
    report = json.loads(out.read_text())
    assert report["device"] == "CPU" and report["machine"]["gpu"] is None
    assert [(row["model"], row["precision"], row["batch"]) for row in report["rows"]] == [
        (model, precision, 5) for precision in ("32-true", "bf16-mixed") for model in ("cp_resnet", "sm4", "sm4_qat")
    ]
    for row in report["rows"]:
        assert "error" not in row
        assert row["clips_per_s"] == pytest.approx(row["batch"] / (row["step_ms"] / 1000))
        assert 0 <= row["data_wait_share"] < 1 and row["validation_clips_per_s"] > 0
    assert "projection" not in report  # a smoke size projects nothing
    # What the run imports is on the GPU machine or carried to it, and so is what the carried packages need:
    # that machine reaches no package index, and a missing one would cost a lent GPU's only call.
    carried = {canonicalize_name(name) for name in carried_wheels()}
    imported = {canonicalize_name(name) for name in json.loads(imports.read_text())}
    assert {"torch", "pytorch-lightning", "jsonschema", "soundfile"} <= imported  # the record sees the imports
    assert imported - GPU_IMAGE - carried == set()
    for name in carried:
        needs = [Requirement(line) for line in importlib.metadata.requires(name) or []]
        needed = {canonicalize_name(need.name) for need in needs
                  if need.marker is None or need.marker.evaluate({"python_version": "3.12", "extra": ""})}  # fmt: skip
        assert needed - GPU_IMAGE - carried == set(), name


def test_gpu_hours_are_projected_from_the_real_runs_epochs_and_clips() -> None:
    gpu = benchmark_module("gpu_throughput.py")
    config = load_config([REPO / "config.yaml", REPO / "config" / "tau22.yaml"], SCHEMA)
    rates = {"passt_s": 100.0, "cp_resnet": 1000.0, "sm4": 2000.0, "sm4_qat": 500.0}
    rows = {model: {"clips_per_s": rate, "validation_clips_per_s": 2 * rate} for model, rate in rates.items()}
    hours = gpu.project(config, rows)["gpu_hours"]
    teacher_clips = 139_620 * 0.8  # the fusion hold-out keeps 20 % of the training clips from the teachers
    validation, dump = 10 * 29_680, 139_620 + 29_680  # last ten epochs validated; logits of train and test
    # six teachers per architecture: PaSST-S 25 epochs, CP-ResNet 150; eleven sm4-sized students, 250 epochs
    expected = {
        "passt_s": 6 * (25 * teacher_clips / 100 + (validation + dump) / 200),
        "cp_resnet": 6 * (150 * teacher_clips / 1000 + (validation + dump) / 2000),
        "students (11 runs at sm4's rate)": 11 * (250 * 139_620 / 2000 + validation / 4000),
        "QAT (at sm4_qat's rate)": 11 * (20 * 139_620 / 500 + validation / 1000),
    }
    assert hours == {key: round(seconds / 3600, 1) for key, seconds in expected.items()}


def test_training_benchmark_reports_shares_and_the_flop_bound(tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    run_benchmark("train_throughput.py", "--models", "sm1", "--steps", "1", "--repeats", "1", "--out", str(out))
    tree = json.loads(out.read_text())["trees"]["this tree"]
    sm1 = tree["models"]["sm1"]
    assert sm1["batch"] == 32 and sm1["steps"] == 1
    assert sum(sm1["shares"].values()) == pytest.approx(1.0)
    assert all(share >= 0 for share in sm1["shares"].values())
    flops_per_clip = 1e6 * sum(sm1["mflop_per_clip"].values())
    assert sm1["bound_clips_per_second"] == pytest.approx(tree["matmul_gflops"] * 1e9 / flops_per_clip)
    assert sm1["ratio_to_bound"] == pytest.approx(sm1["clips_per_cpu_second"] / sm1["bound_clips_per_second"])
    assert 0 < sm1["ratio_to_bound"] < 1


def test_latency_benchmark_times_every_deployed_variant(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    run_benchmark("inference_latency.py", "--models", "dsflexinet_sm1", "--repeats", "1", "--layers", "--out", str(out))
    sm1 = json.loads(out.read_text())["models"]["dsflexinet_sm1"]
    precisions = ("float", "float as-built", "int8 fbgemm", "int8 x86")
    assert set(sm1["variants"]) == {f"{precision} {form}" for precision in precisions for form in ("eager", "script")}
    times = [sm1["frontend_ms"]] + [t for variant in sm1["variants"].values() for t in variant.values()]
    assert all(math.isfinite(t) and 0 < t < 1000 for t in times)
    # sm1: two stem convs; six blocks, each norm, expand, depthwise, project, and the shortcuts of the two that
    # change stride and width (pooling, conv; the others are identities); the classifier and the pooling
    blocks = [f"blocks.{b}.{part}" for b in range(6) for part in ("norm", "expand", "depthwise", "project")]
    shortcuts = [f"blocks.{b}.shortcut.{i}" for b in (2, 5) for i in (0, 1)]
    expected = {"stem.0", "stem.1", *blocks, *shortcuts, "classifier", "pool", "whole"}
    assert set(sm1["layers_ms"]) == set(precisions)
    for precision in precisions:
        assert set(sm1["layers_ms"][precision]) == expected
        assert all(math.isfinite(t) and 0 < t < 100 for t in sm1["layers_ms"][precision].values())
    targets = json.loads(out.read_text())["targets"]
    float_ms = sm1["variants"]["float script"]["model_ms"]
    for engine in ("fbgemm", "x86"):
        speed_up = float_ms / sm1["variants"][f"int8 {engine} script"]["model_ms"]
        assert targets["speed_ups"]["dsflexinet_sm1"][engine] == pytest.approx(speed_up)
    assert "sm2" not in targets  # sm2's goal is judged only where sm2 was measured


def test_latency_targets_judge_sm2_on_its_faster_engine_and_every_student_on_fbgemm() -> None:
    latency = benchmark_module("inference_latency.py")

    def timed(float_ms: float, fbgemm_ms: float, x86_ms: float) -> dict:
        rows = {"float": float_ms, "int8 fbgemm": fbgemm_ms, "int8 x86": x86_ms}
        variants = {f"{label} {form}": {"model_ms": ms * (2 if form == "eager" else 1), "with_frontend_ms": 9.0}
                    for label, ms in rows.items() for form in ("eager", "script")}  # fmt: skip
        return {"frontend_ms": 0.5, "variants": variants}

    targets = latency.int8_targets({"dsflexinet_sm2": timed(1.0, 0.5, 0.4), "dsflexinet_sm1": timed(1.0, 0.8, 0.5)})
    assert targets["faster_engine"] == {"dsflexinet_sm2": "x86", "dsflexinet_sm1": "x86"}
    assert targets["sm2"] == {"goal": 2.5, "speed_up": pytest.approx(2.5), "met": True}
    assert targets["fbgemm_never_slower"] is True
    targets = latency.int8_targets({"dsflexinet_sm2": timed(1.0, 0.45, 0.5), "dsflexinet_sm3": timed(1.0, 1.1, 0.6)})
    assert targets["faster_engine"]["dsflexinet_sm2"] == "fbgemm"
    assert targets["sm2"]["speed_up"] == pytest.approx(1 / 0.45) and targets["sm2"]["met"] is False
    assert targets["fbgemm_never_slower"] is False  # sm3's int8 on fbgemm is slower than its float


def test_latency_float_baseline_differs_from_the_built_model_only_in_its_first_convolution_s_layout() -> None:
    latency = benchmark_module("inference_latency.py")
    torch.manual_seed(3)
    built = build_model("dsflexinet_sm2").eval()
    baseline = latency.contiguous_single_channel_convs(build_model("dsflexinet_sm2").eval())
    baseline.load_state_dict(built.state_dict())  # load_state_dict copies values into the kept strides
    first = baseline.stem[0][0].weight
    assert built.stem[0][0].weight.stride() == (9, 1, 3, 1)  # what Module.to(channels_last) gives one channel
    assert first.stride() == (9, 9, 3, 1)
    for (name, ours), theirs in zip(baseline.named_parameters(), built.parameters(), strict=True):
        assert torch.equal(ours, theirs)
        if name != "stem.0.0.weight":
            assert ours.stride() == theirs.stride(), name
    mel = torch.randn(1, 1, 256, 64)
    with torch.no_grad():
        stem = baseline.stem[0][0](mel)
        assert stem.is_contiguous() and built.stem[0][0](mel).is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(baseline(mel), built(mel), rtol=1e-5, atol=1e-5)


def test_latency_layers_are_the_conv_bn_runs_norms_and_poolings_of_float_and_int8_alike() -> None:
    latency = benchmark_module("inference_latency.py")
    float_model = build_model("dsflexinet_sm2")
    int8_model = latency.int8_model("dsflexinet_sm2", "x86", {})
    float_layers, int8_layers = latency.layers(float_model), latency.layers(int8_model)
    assert list(float_layers) == list(int8_layers)
    assert [type(module).__name__ for module in float_layers["stem.0"]] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert [type(module).__name__ for module in int8_layers["stem.0"]] == ["ConvReLU2d", "Identity", "Identity"]
    assert "blocks.0.shortcut" not in float_layers  # sm2's first block keeps its width: an identity shortcut
    seen = latency.layer_inputs(int8_model, torch.randn(1, 1, 256, 64))
    assert set(seen) == set(int8_layers)  # every layer runs
    assert list(seen)[:4] == ["stem.0", "stem.1", "blocks.0.norm", "blocks.0.expand"]  # in the order they run
    assert tuple(seen["blocks.1.norm"][1].shape) == (1, 16, 64, 16) and seen["blocks.1.norm"][1].is_quantized
