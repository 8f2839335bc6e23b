"""QAT: every student size with every block normalisation converts to a real int8 model that computes what
the fake-quantized model computes.

Why two tolerances. Fake quantization and the int8 kernels round the same values, but an accumulator that
lands on a rounding boundary can go either way; one flipped step early on changes everything downstream, so
int8 and fake-quant outputs drift apart by quantization noise, not by a fixed error. We therefore check
  - exactness where nothing has drifted yet: the first conv's int8 output is within 2 quantization steps of
    the fake-quant output;
  - on untrained models and random inputs, max |logit difference| <= 0.3 and mean <= 0.08 (measured: at most
    0.25 and 0.062, logits of unit scale);
  - on models trained for 40 steps on a toy task, where the logits mean something: the int8 model takes the
    fake-quant model's decision on >= 80 % of held-out inputs (measured 85-100 %) and its accuracy is within
    5 points.
The observers are calibrated on the evaluation batch itself with BatchNorm frozen: PyTorch's fake
quantization clips activations at the 7-bit range the observers saw (reduce_range), the int8 kernels do not,
so values outside the calibrated range would differ for a reason that has nothing to do with conversion.
"""

from __future__ import annotations

import copy
import math
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.ao.nn.intrinsic import qat as fused_qat
from torch.ao.nn.quantized import BatchNorm2d as QBatchNorm2d
from torch.ao.quantization import DeQuantStub, FakeQuantizeBase, QuantStub, get_default_qat_qconfig
from torch.ao.quantization import prepare_qat as torch_prepare_qat

from dsflexinet.audio.frontend import build_frontend
from dsflexinet.errors import PipelineError
from dsflexinet.modelfile import ENGINE_RECORD, ModelInput, WaveformClassifier, export_classifier, load_classifier
from dsflexinet.models.registry import build_model
from dsflexinet.models.resnorm import NORMS, ResNorm
from dsflexinet.quant.qat import (
    QAT_MAPPINGS,
    FastFakeQuantize,
    convert_int8,
    freeze_batchnorm,
    freeze_observers,
    freeze_quantization,
    prepare_qat,
    qat_qconfig,
)  # fmt: skip
from dsflexinet.quant.resnorm import QuantizedResNorm

torch.set_num_threads(2)


def _settle_batchnorm(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Running statistics = the exact average over `batches`, so frozen BN behaves as in training."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)


def _fake_quant_and_int8(model: nn.Module, x: torch.Tensor, backend: str = "fbgemm") -> tuple[nn.Module, nn.Module]:
    model = prepare_qat(model, backend)
    freeze_batchnorm(model)
    with torch.no_grad():
        model(x)  # calibration pass in training mode
    freeze_observers(model)
    model.eval()
    return model, convert_int8(copy.deepcopy(model))


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("size", ["sm1", "sm2", "sm3", "sm4"])
def test_int8_conversion(size: str, norm: str) -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model = build_model(f"dsflexinet_{size}", norm=norm)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    _settle_batchnorm(model, [torch.randn(8, 1, 256, 64, generator=generator) for _ in range(2)])
    x = torch.randn(16, 1, 256, 64, generator=generator)
    fake, int8 = _fake_quant_and_int8(model, x)

    stem = {}
    handle = fake.stem[0].register_forward_hook(lambda m, i, o: stem.__setitem__("fake", o))
    with torch.no_grad():
        fake_logits = fake(x)
    handle.remove()
    int8.stem[0].register_forward_hook(lambda m, i, o: stem.__setitem__("int8", o))
    with torch.no_grad():
        int8_logits = int8(x)

    step = int8.stem[0][0].scale
    assert (stem["fake"] - stem["int8"].dequantize()).abs().max().item() <= 2 * step + 1e-6
    difference = (fake_logits - int8_logits).abs()
    agreement = (fake_logits.argmax(1) == int8_logits.argmax(1)).float().mean().item()
    print(f"\n{size} {norm:<16} max |dlogit| {difference.max():.3f} mean {difference.mean():.3f} "
          f"logit std {fake_logits.std():.3f} argmax agreement {agreement:.2f} (untrained)")  # fmt: skip
    assert difference.max().item() <= 0.3
    assert difference.mean().item() <= 0.08

    weights = [v for v in int8.state_dict().values() if isinstance(v, torch.Tensor) and v.dtype == torch.qint8]
    assert len(weights) == convs  # every conv (stem, blocks, shortcuts, head) holds int8 weights
    assert not any(isinstance(m, nn.Conv2d) for m in int8.modules())  # no float conv left
    assert not any(isinstance(m, (ResNorm, nn.BatchNorm2d)) for m in int8.modules())  # no float norm left
    int8_norm = {"resnorm_channel": QuantizedResNorm, "resnorm_freq": QuantizedResNorm, "batchnorm": QBatchNorm2d}
    norms = [block.norm for block in int8.blocks if not isinstance(block.norm, nn.Identity)]
    assert len(norms) == (0 if norm == "none" else len(int8.blocks))
    assert all(type(m) is int8_norm[norm] for m in norms)


class _NormOnly(nn.Module):
    """A QAT-ready wrapper around one ResNorm, as a block of DS-FlexiNet holds it."""

    def __init__(self, over: str):
        super().__init__()
        self.quant, self.norm, self.dequant = QuantStub(), ResNorm(over, lam=0.3), DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.norm(self.quant(x)))

    def fuse_model(self) -> None:
        pass


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("over", ["channel", "freq"])
def test_int8_resnorm_computes_its_qat_form(over: str, layout: torch.memory_format) -> None:
    """The int8 ResNorm rounds where its QAT form fake-quantizes, and hands on the quantized convs' layout."""
    generator = torch.Generator().manual_seed(3)
    scales = torch.rand(1, 16, 32, 1, generator=generator) * 3  # channels and bins of different loudness
    x = (torch.randn(4, 16, 32, 8, generator=generator) * scales).relu().contiguous(memory_format=layout)
    fake = prepare_qat(_NormOnly(over), "x86")
    with torch.no_grad():
        fake(x)
    freeze_observers(fake)
    int8 = convert_int8(copy.deepcopy(fake))
    assert type(int8.norm) is QuantizedResNorm
    outputs = {}
    int8.norm.register_forward_hook(lambda m, i, o: outputs.__setitem__("int8", o))
    with torch.no_grad():
        fake_out, int8_out, exact = fake(x), int8(x), ResNorm(over, lam=0.3)(x)
    step = int8.norm.scale
    assert (fake_out - int8_out).abs().max().item() <= 2 * step + 1e-6
    assert (exact - int8_out).abs().max().item() <= 2 * step + int8.norm.normed_scale
    assert outputs["int8"].is_contiguous(memory_format=torch.channels_last)


def test_int8_norm_per_bin_is_the_instance_norm_of_bins_as_channels_bit_for_bit() -> None:
    """The per-bin norm runs as a layer norm on the channels-last view, without layout copies: every value as
    the instance norm of the tensor with bins as channels (the form before, two copies per block) gives it."""
    generator = torch.Generator().manual_seed(5)
    for n, c, f, t in ((1, 16, 64, 16), (1, 40, 32, 8), (8, 96, 16, 8), (2, 20, 128, 32)):
        x = (torch.randn(n, c, f, t, generator=generator) * torch.rand(1, c, f, 1, generator=generator) * 3).relu()
        q = torch.quantize_per_tensor(x.contiguous(memory_format=torch.channels_last), x.max().item() / 255, 0,
                                      torch.quint8)  # fmt: skip
        norm = QuantizedResNorm("freq", lam=0.3, eps=1e-5, output=(0.02, 60), normed=(0.03, 128))
        mul = torch.ops.quantized.mul_scalar(q, 0.3)
        normed = torch.ops.quantized.instance_norm(q.transpose(1, 2).contiguous(), None, None, 1e-5, 0.03, 128)
        before = torch.ops.quantized.add(mul, normed.transpose(1, 2), 0.02, 60)
        after = norm(q)
        assert after.is_contiguous(memory_format=torch.channels_last) and after.q_scale() == 0.02
        assert torch.equal(after.int_repr(), before.int_repr())
        assert int(after.int_repr().unique().numel()) > 50  # a spread of values, not a saturated tensor


def _toy(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes of noisy gratings told apart by their period along frequency (128 x 32: the models are
    fully convolutional, and small inputs keep the test fast)."""
    labels = torch.randint(0, 10, (n,), generator=generator)
    freq = torch.arange(128.0).view(1, 1, 128, 1) / (3 + 1.5 * labels.float()).view(n, 1, 1, 1)
    time = torch.arange(32.0).view(1, 1, 1, 32) / (4 + 12 * torch.rand(n, 1, 1, 1, generator=generator))
    phase = 2 * math.pi * torch.rand(n, 1, 1, 1, generator=generator)
    waves = torch.sin(2 * math.pi * (freq + time) + phase)
    return waves + 0.5 * torch.randn(n, 1, 128, 32, generator=generator), labels


@pytest.mark.parametrize("norm", NORMS)
def test_int8_decisions_match_after_training(norm: str) -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model = build_model("dsflexinet_sm2", norm=norm).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(100):  # long enough for every norm to learn: near-tie decisions would flip on rounding
        x, y = _toy(32, generator)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _settle_batchnorm(model, [_toy(32, generator)[0] for _ in range(3)])
    x, y = _toy(128, generator)
    fake, int8 = _fake_quant_and_int8(model, x)
    with torch.no_grad():
        fake_logits, int8_logits = fake(x), int8(x)
    agreement = (fake_logits.argmax(1) == int8_logits.argmax(1)).float().mean().item()
    fake_accuracy = (fake_logits.argmax(1) == y).float().mean().item()
    int8_accuracy = (int8_logits.argmax(1) == y).float().mean().item()
    print(f"\nsm2 {norm:<16} accuracy fake-quant {fake_accuracy:.2f} int8 {int8_accuracy:.2f} "
          f"agreement {agreement:.2f} max |dlogit| {(fake_logits - int8_logits).abs().max():.3f}")  # fmt: skip
    assert fake_accuracy > 0.8  # it learnt the toy task (chance: 0.1)
    assert agreement >= 0.95
    assert abs(fake_accuracy - int8_accuracy) <= 0.05


def test_x86_backend_converts_too() -> None:
    model = build_model("dsflexinet_sm1")
    _settle_batchnorm(model, [torch.randn(4, 1, 256, 64)])
    x = torch.randn(4, 1, 256, 64)
    try:
        model = prepare_qat(model, "x86")
        assert torch.backends.quantized.engine == "x86"
        with torch.no_grad():
            model(x)
        int8 = convert_int8(model)
        assert int8(x).shape == (4, 10)
        assert int8.stem[0][0].weight().dtype == torch.qint8
    finally:
        torch.backends.quantized.engine = "fbgemm"


def test_freezing_stops_observers_and_batchnorm_statistics() -> None:
    model = prepare_qat(build_model("dsflexinet_sm1"), "fbgemm")
    x = torch.randn(4, 1, 256, 64)
    with torch.no_grad():
        model(x)
    freeze_quantization(model)
    fake_quants = [m for m in model.modules() if isinstance(m, FakeQuantizeBase)]
    assert fake_quants and all(m.observer_enabled.item() == 0 for m in fake_quants)
    scales = [m.scale.clone() for m in fake_quants]
    running = model.stem[0][0].bn.running_mean.clone()
    with torch.no_grad():
        model.train()(x * 5 + 3)
    assert all(torch.equal(m.scale, s) for m, s in zip(fake_quants, scales, strict=True))
    assert torch.equal(model.stem[0][0].bn.running_mean, running)


def test_freezing_stops_standalone_batchnorm_too() -> None:
    """The `batchnorm` block norm has no conv to fold into: freezing puts it in eval mode (running statistics,
    no updates), where Lightning's training loop leaves it, validation passes included."""
    model = prepare_qat(build_model("dsflexinet_sm1", norm="batchnorm"), "fbgemm")
    standalone = [m for name, m in model.named_modules() if name.endswith(".norm")]
    assert standalone and all(isinstance(m, nn.BatchNorm2d) for m in standalone)
    with torch.no_grad():
        model(torch.randn(4, 1, 256, 64))
    freeze_quantization(model)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        model(torch.randn(4, 1, 256, 64) * 5 + 3)  # the model stays in training mode, its BatchNorms do not
    assert model.training and not any(m.training for m in standalone)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_prepare_qat_refuses_unknown_backends_and_unready_models() -> None:
    with pytest.raises(PipelineError, match="unknown quantization backend 'tflite'"):
        prepare_qat(build_model("dsflexinet_sm1"), "tflite")
    with pytest.raises(PipelineError, match="CPResNet is not QAT-ready"):
        prepare_qat(build_model("cp_resnet_tiny"))


def test_exported_int8_classifier_runs_on_the_engine_it_was_converted_for(tmp_path: Path) -> None:
    """x86 and fbgemm round differently; an evaluation must use the engine the model was fine-tuned for."""
    waves = torch.randn(3, 32000) * 0.1
    try:
        for engine in ("x86", "fbgemm"):
            model = build_model("dsflexinet_sm1")
            _settle_batchnorm(model, [torch.randn(4, 1, 256, 64)])
            model, int8 = _fake_quant_and_int8(model, torch.randn(4, 1, 256, 64), engine)
            path = tmp_path / f"{engine}.pt"
            classifier = WaveformClassifier(build_frontend("student"), int8)
            export_classifier(classifier, path, ModelInput(32000, 32000), engine)
            with torch.inference_mode():
                in_memory = classifier.eval()(waves)
            torch.backends.quantized.engine = "qnnpack"  # a process that has not chosen yet
            with torch.inference_mode():
                logits = load_classifier(path)(waves)
            assert torch.backends.quantized.engine == engine
            assert logits.shape == (3, 10) and torch.isfinite(logits).all()
            torch.testing.assert_close(logits, in_memory, rtol=0, atol=1e-5)  # the reloaded file computes the same

        with zipfile.ZipFile(tmp_path / "x86.pt") as source, zipfile.ZipFile(tmp_path / "odd.pt", "w") as odd:
            for item in source.infolist():
                data = source.read(item)
                odd.writestr(item, b"tflite" if item.filename.endswith(f"/extra/{ENGINE_RECORD}") else data)
        with pytest.raises(PipelineError, match=r"odd\.pt: unknown quantization backend 'tflite'"):
            load_classifier(tmp_path / "odd.pt")

        # Flipped weight bytes: torch.jit.load alone would load them without a word.
        archive = bytearray((tmp_path / "x86.pt").read_bytes())
        with zipfile.ZipFile(tmp_path / "x86.pt") as source:
            weights = next(item for item in source.infolist() if "/data/" in item.filename)
        header = weights.header_offset  # a local header: 30 bytes, then the name and extra field it gives lengths of
        start = header + 30 + int.from_bytes(archive[header + 26 : header + 28], "little") + int.from_bytes(
            archive[header + 28 : header + 30], "little"
        )
        archive[start : start + 16] = bytes(byte ^ 0xFF for byte in archive[start : start + 16])
        (tmp_path / "damaged.pt").write_bytes(archive)
        with pytest.raises(PipelineError, match=r"damaged\.pt: damaged model archive \(.*/data/\d+ fails its CRC"):
            load_classifier(tmp_path / "damaged.pt")
    finally:
        torch.backends.quantized.engine = "fbgemm"


@pytest.mark.parametrize("norm", ["resnorm_channel", "batchnorm"])
def test_validation_never_moves_observers_or_batchnorm(norm: str) -> None:
    """FakeQuantize observers update in eval mode; a validation pass must leave every quantization range and
    BatchNorm statistic where training left it, bit for bit (before and after observers are frozen)."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from dsflexinet.audio.pipeline import TrainingInput
    from dsflexinet.train.module import SceneClassifier

    generator = torch.Generator().manual_seed(3)
    model = prepare_qat(build_model("dsflexinet_sm1", norm=norm), "fbgemm")
    with torch.no_grad():
        model(torch.randn(4, 1, 256, 64, generator=generator))  # calibrated on training-like inputs
    schedule = {"lr": 1e-3, "weight_decay": 0.0, "warmup_epochs": 0, "rampdown_start": 0, "rampdown_epochs": 1,
                "min_lr_factor": 1.0}  # fmt: skip
    module = SceneClassifier(model, TrainingInput(build_frontend("student")), schedule)
    loud = [{"wave": torch.randn(8, 32000, generator=generator) * 30, "label": torch.zeros(8, dtype=torch.int64),
             "device": torch.zeros(8, dtype=torch.int64)} for _ in range(3)]  # fmt: skip
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    for frozen in (False, True):
        if frozen:
            freeze_quantization(model)
        enabled = [m.observer_enabled.item() for m in model.modules() if isinstance(m, FakeQuantizeBase)]
        before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
        trainer.validate(module, dataloaders=DataLoader(loud, batch_size=None), verbose=False)
        changed = [name for name, tensor in model.state_dict().items() if not torch.equal(before[name], tensor)]
        assert not changed
        assert [m.observer_enabled.item() for m in model.modules() if isinstance(m, FakeQuantizeBase)] == enabled
    # The check can fail: the same pass with the observers left running moves the input's range.
    scale = model.quant.activation_post_process.scale.clone()
    model.apply(torch.ao.quantization.enable_observer)
    with torch.no_grad():
        model.eval()(module.inputs(loud[0]["wave"], ["a"] * 8))
    assert not torch.equal(model.quant.activation_post_process.scale, scale)


@pytest.mark.parametrize("backend", ["fbgemm", "x86"])
def test_fast_fake_quantize_is_pytorchs_bit_for_bit(backend: str) -> None:
    """Outputs, gradients, running ranges, scales and zero points of FastFakeQuantize equal those of PyTorch's
    fused fake quantizer over a sequence of inputs: the first observation, moving averages, values outside the
    range (clipped, zero gradient), values on rounding ties, channels-last, and the observer switched off."""
    default = get_default_qat_qconfig(backend).activation()
    fast = qat_qconfig(backend).activation()
    assert type(fast) is FastFakeQuantize and type(default) is not FastFakeQuantize
    generator = torch.Generator().manual_seed(5)
    inputs = [torch.randn(4, 8, 16, 8, generator=generator) * level for level in (1.0, 3.0, 0.5, 10.0)]
    ties = inputs[0].clone()
    inputs.append(ties)
    inputs.append(torch.randn(4, 8, 16, 8, generator=generator).to(memory_format=torch.channels_last) * 4)
    clipped = []
    for step, x in enumerate(inputs):
        if step == 4:  # exact halves of the current scale: the kernel rounds them half to even
            scale = default.scale.item()
            ties.copy_((torch.arange(ties.numel()).reshape(ties.shape) % 61 - 30 + 0.5) * scale)
        if step == 5:
            default.disable_observer(), fast.disable_observer()
        grads = []
        outputs = []
        for quantizer in (default, fast):
            leaf = x.clone().requires_grad_(True)
            out = quantizer(leaf)
            out.backward(torch.linspace(-1, 1, out.numel()).reshape(out.shape))
            outputs.append(out.detach())
            grads.append(leaf.grad)
        assert torch.equal(outputs[0], outputs[1]), step
        assert torch.equal(outputs[0].signbit(), outputs[1].signbit()), step  # torch.equal takes -0.0 for 0.0
        assert torch.equal(grads[0], grads[1]), step
        assert torch.equal(grads[0].signbit(), grads[1].signbit()), step
        clipped.append(bool((grads[1] == 0).any()))
        for name, tensor in default.state_dict().items():
            assert torch.equal(tensor, fast.state_dict()[name]), (step, name)
    assert clipped[0] is False and clipped[3] is True  # the range starts at the first input; a wider one clips
    assert (outputs[1] != inputs[-1]).any()  # it did quantize


def test_qat_with_fast_fake_quantize_trains_bit_for_bit_as_pytorchs() -> None:
    """Three QAT steps of sm2 (ResNorm over frequency: fused conv+BN, FloatFunctional adds, QATResNorm) with
    FastFakeQuantize and the fused conv+BN's faster division, and with PyTorch's default qconfig and modules,
    leave every weight, BN statistic and quantization parameter identical (the last step with both frozen),
    and the converted int8 models compute identical logits."""
    torch.manual_seed(0)
    float_model = build_model("dsflexinet_sm2", norm="resnorm_freq").to(memory_format=torch.channels_last)
    reference = copy.deepcopy(float_model).train()
    reference.fuse_model()
    reference.qconfig = get_default_qat_qconfig("fbgemm")
    reference = torch_prepare_qat(reference, mapping=QAT_MAPPINGS, inplace=True)
    fast = prepare_qat(float_model, "fbgemm")
    assert any(isinstance(m, FastFakeQuantize) for m in fast.modules())
    assert not any(isinstance(m, FastFakeQuantize) for m in reference.modules())
    fused_types = (fused_qat.ConvBn2d, fused_qat.ConvBnReLU2d)
    fused = [[m for m in model.modules() if isinstance(m, fused_types)] for model in (fast, reference)]
    assert len(fused[0]) == len(fused[1]) > 10
    assert all("_forward_approximate" in vars(m) for m in fused[0])  # the division by the BN scale, faster
    assert not any("_forward_approximate" in vars(m) for m in fused[1])
    generator = torch.Generator().manual_seed(2)
    batches = [torch.randn(6, 1, 256, 64, generator=generator).to(memory_format=torch.channels_last)
               for _ in range(3)]  # fmt: skip
    labels = torch.arange(6) % 10
    for model in (reference, fast):
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step, x in enumerate(batches):
            if step == 2:  # the recipe's last QAT epochs: observers and BN statistics frozen
                freeze_quantization(model)
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x), labels).backward()
            optimiser.step()
    fast_state, reference_state = fast.state_dict(), reference.state_dict()
    assert fast_state.keys() == reference_state.keys()
    assert [name for name in fast_state if not torch.equal(fast_state[name], reference_state[name])] == []
    logits = [convert_int8(model)(batches[0]) for model in (reference, fast)]
    assert torch.equal(logits[0], logits[1])
