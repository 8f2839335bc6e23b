"""Model files: the one module that writes and reads them, for training, evaluation, quantization and prediction.

Two kinds of file:

    model.pt        a training job's result: torch.save of {"spec", "state_dict", "input", "trained_on"}. The
                    spec is the resolved job spec (derived settings recorded as numbers, see
                    config.resolve_job_spec), so `rebuild` recreates the model with this package and nothing
                    else is needed to use it. Read back with PyTorch's weights-only unpickler: a file that
                    would build anything but tensors and plain data (a pickle can run code) is refused.
    model_int8.pt   the QAT step's export: TorchScript of frontend + int8 model, runnable without this package.
                    Its extra files record the quantized engine it was converted for (the engine repacks the
                    weights at load time and its kernels round differently: 9 of 900 test decisions of the
                    default run's int8 sm1 differ between fbgemm and x86) and the input it expects.

Both record the input a model expects ("input": sample rate, clip length in samples, class names), so `predict`
and the submission need no rate argument: they resample whatever they read to the model's rate; and the machines
that trained it ("trained_on", machine.describe_machine records: the float training's, then QAT's), which
evaluations copy beside the machine that measured (files written before it was recorded read as none).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from dsflexinet.atomic import atomic_path
from dsflexinet.audio.frontend import build_frontend
from dsflexinet.data.tau22 import SCENES
from dsflexinet.errors import PipelineError
from dsflexinet.models.registry import build_model

QUANTIZED_ENGINES = ("fbgemm", "x86")
ENGINE_RECORD = "quantized_engine"  # TorchScript extra file: the engine an int8 model was converted for
INPUT_RECORD = "input.json"  # TorchScript extra file: ModelInput as JSON
TRAINED_ON_RECORD = "trained_on.json"  # TorchScript extra file: the training machines, as JSON
EXPORT_CHECK_BATCHES = (1, 3)  # batch sizes the exported model must agree on with the eager one


@dataclass(frozen=True)
class ModelInput:
    """What a classifier expects: mono waveforms at `sample_rate`, clips of `clip_samples`, and the class order
    of its logits."""

    sample_rate: int
    clip_samples: int
    classes: tuple[str, ...] = SCENES

    def to_dict(self) -> dict:
        return asdict(self) | {"classes": list(self.classes)}

    @classmethod
    def from_dict(cls, values: dict, source: Path) -> ModelInput:
        try:
            record = cls(int(values["sample_rate"]), int(values["clip_samples"]), tuple(values["classes"]))
        except (KeyError, TypeError, ValueError) as error:
            raise PipelineError(f"{source}: unreadable input record ({error!r})") from None
        if record.sample_rate <= 0 or record.clip_samples <= 0 or not record.classes:
            raise PipelineError(f"{source}: input record {values} is not usable")
        return record


class WaveformClassifier(nn.Module):
    """Frontend (eval mode: no augmentation) and model: waveforms (N, samples) -> logits (N, classes)."""

    def __init__(self, frontend: nn.Module, model: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.model = model

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.model(self.frontend(waves))


@dataclass(frozen=True)
class LoadedClassifier:
    """A model file ready for inference: call it on waveforms at `input.sample_rate`."""

    classify: Callable[[torch.Tensor], torch.Tensor]
    input: ModelInput
    trained_on: tuple[dict, ...] = ()

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        return self.classify(waves)


def _write_archive(path: str | Path, save: Callable[[BinaryIO], None]) -> None:
    """Atomically write a torch archive through a file object: given a path, torch names the archive's records
    after it (here a random temporary name), so the same weights gave other bytes on every save and a file's
    checksum could not show that a rerun reproduced it."""
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        save(file)


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor]) -> None:
    """A plain state dict of tensors (a pretrained backbone, read by models.pretrained): the same weights give
    the same bytes, so its checksum shows whether a rerun reproduced it."""
    _write_archive(path, lambda file: torch.save(state_dict, file))


# --- model.pt -------------------------------------------------------------------------------------------------


def non_finite_weights(state: dict[str, torch.Tensor]) -> int:
    """How many NaN or infinite values a state dict holds (parameters and buffers such as running statistics)."""
    return sum(int((~torch.isfinite(value)).sum()) for value in state.values() if value.is_floating_point())


def save_model(
    path: str | Path, model: nn.Module, spec: dict, model_input: ModelInput, trained_on: tuple[dict, ...] = ()
) -> None:
    state = model.state_dict()
    bad = non_finite_weights(state)
    if bad:
        raise PipelineError(f"{path}: refusing to save a model with {bad:,} non-finite weights (NaN or infinite)")
    payload = {"spec": spec, "state_dict": state, "input": model_input.to_dict()}
    _write_archive(path, lambda file: torch.save(payload | {"trained_on": list(trained_on)}, file))


def load_torch_data(path: Path) -> object:
    """A torch.save archive read with PyTorch's weights-only unpickler, which builds only tensors and plain
    containers and runs no code the file names (a pickle can otherwise call any function while it loads); a
    file that needs anything else is refused in one line. PyTorch made this the default in 2.6:
    https://pytorch.org/docs/stable/notes/serialization.html#weights-only"""
    try:
        # Machine records hold torch.__version__, a str subclass that runs no code.
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsupported = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line), None)
        if unsupported is None:  # damaged bytes, not a forbidden object
            raise
        raise PipelineError(f"{path}: refused: it holds objects other than tensors and plain data, which could run "
                            f"code when loaded ({unsupported})") from None  # fmt: skip


def load_model_file(path: str | Path) -> dict:
    """A model.pt written by `save_model`, checked before anything is rebuilt from it."""
    path = Path(path)
    try:
        payload = load_torch_data(path)
    except FileNotFoundError:
        raise PipelineError(f"{path}: model file not found") from None
    # Damaged bytes can also make the unpickler claim an absurd length (OverflowError, MemoryError) or hand a
    # wrong type to a reader (TypeError): 6 of 6,000 random 4 KB files did.
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError, AttributeError, ImportError,
            IndexError, KeyError, TypeError, UnicodeDecodeError, OverflowError, MemoryError) as error:  # fmt: skip
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PipelineError(f"{path}: not a readable model file ({reason})") from None
    if not isinstance(payload, dict) or not {"spec", "state_dict", "input"} <= set(payload):
        raise PipelineError(f"{path}: not a model file of this pipeline version (no spec/state_dict/input)")
    payload["input"] = ModelInput.from_dict(payload["input"], path)
    payload["trained_on"] = machine_records(payload.get("trained_on", []), path)
    return payload


def machine_records(value: object, source: Path) -> tuple[dict, ...]:
    """A file's list of machine records (see machine.describe_machine), checked."""
    if not isinstance(value, list) or not all(isinstance(machine, dict) for machine in value):
        raise PipelineError(f"{source}: unreadable machine record (not a list of machines)")
    return tuple(value)


def rebuild(spec: dict, state_dict: dict | None = None) -> WaveformClassifier:
    """The float classifier a training spec describes, with trained weights if given. Trained weights replace
    the checkpoint the training started from, so that checkpoint is neither read nor needed again."""
    options = dict(spec["model"].get("options", {}))
    if state_dict is not None:
        options.pop("pretrained_path", None)
    model = build_model(spec["model"]["name"], **options)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    frontend = build_frontend(spec["frontend"]["preset"], **spec["frontend"].get("options", {}))
    return WaveformClassifier(frontend, model).eval()


# --- exported TorchScript classifiers ---------------------------------------------------------------------------


def use_engine(backend: str, source: str = "") -> None:
    """Run this process's int8 kernels on `backend` (PyTorch's quantized engine is one global setting);
    `source` names the file that asked for it in errors."""
    where = f"{source}: " if source else ""
    if backend not in QUANTIZED_ENGINES:
        raise PipelineError(
            f"{where}unknown quantization backend {backend!r} (choose from {', '.join(QUANTIZED_ENGINES)})"
        )
    if backend not in torch.backends.quantized.supported_engines:
        supported = ", ".join(torch.backends.quantized.supported_engines)
        raise PipelineError(f"{where}this PyTorch build has no {backend!r} quantized engine (it has: {supported})")
    torch.backends.quantized.engine = backend


def export_classifier(
    classifier: nn.Module,
    path: str | Path,
    model_input: ModelInput,
    engine: str | None = None,
    trained_on: tuple[dict, ...] = (),
) -> None:
    """Trace a waveform classifier (frontend + int8 model) to TorchScript, check it on other batch sizes than
    the traced one and record the expected input, the training machines and, for an int8 model, its quantized
    engine, which `load_classifier` reads back."""
    path = Path(path)
    classifier = classifier.eval()
    example = torch.randn(2, model_input.clip_samples) * 0.1
    with torch.inference_mode():
        traced = torch.jit.trace(classifier, example, check_trace=False)
        for batch in EXPORT_CHECK_BATCHES:
            waves = torch.randn(batch, model_input.clip_samples) * 0.1
            if not torch.allclose(traced(waves), classifier(waves), atol=1e-4):
                raise PipelineError(f"{path}: the exported model disagrees with the eager model at batch {batch}")
    records = {INPUT_RECORD: json.dumps(model_input.to_dict()), TRAINED_ON_RECORD: json.dumps(list(trained_on))}
    if engine is not None:
        records[ENGINE_RECORD] = engine
    _write_archive(path, lambda file: torch.jit.save(traced, file, _extra_files=records))


def _torchscript_extra_files(path: Path) -> dict[str, bytes] | None:
    """The extra files of a TorchScript archive; None for any other file. TorchScript archives hold compiled
    code and constants.pkl, torch.save archives only data.pkl."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(name.endswith("/constants.pkl") for name in names):
                return None
            damaged = archive.testzip()  # torch.jit.load does not check CRCs: a flipped weight would load silently
            if damaged is not None:
                raise PipelineError(f"{path}: damaged model archive ({damaged} fails its CRC check)")
            return {name.split("/extra/", 1)[1]: archive.read(name) for name in names if "/extra/" in name}
    except (zipfile.BadZipFile, OSError) as error:
        raise PipelineError(f"{path}: damaged model archive ({error})") from None


def _load_torchscript(path: Path, extra_files: dict[str, bytes]) -> LoadedClassifier:
    if INPUT_RECORD not in extra_files:
        raise PipelineError(f"{path}: exported without an input record (re-export it with this pipeline version)")
    try:
        model_input = ModelInput.from_dict(json.loads(extra_files[INPUT_RECORD]), path)
        trained_on = machine_records(json.loads(extra_files.get(TRAINED_ON_RECORD, b"[]")), path)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: unreadable input or machine record ({error})") from None
    if ENGINE_RECORD in extra_files:  # select it before loading: the engine repacks the weights
        use_engine(extra_files[ENGINE_RECORD].decode(errors="replace"), str(path))
    try:
        module = torch.jit.load(path, map_location="cpu").eval()
    except RuntimeError as error:
        raise PipelineError(f"{path}: not a loadable TorchScript model ({str(error).splitlines()[0]})") from None
    return LoadedClassifier(module, model_input, trained_on)


def load_classifier(path: str | Path) -> LoadedClassifier:
    """A float model.pt or an exported TorchScript classifier, ready for inference; an int8 classifier switches
    this process to the quantized engine it was converted for."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: model file not found")
    extra_files = _torchscript_extra_files(path)
    if extra_files is not None:
        return _load_torchscript(path, extra_files)
    payload = load_model_file(path)
    return LoadedClassifier(rebuild(payload["spec"], payload["state_dict"]), payload["input"], payload["trained_on"])
