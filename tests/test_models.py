"""Model layer: sizes against the paper and the public teachers, the DCASE complexity count, normalisations,
PaSST patchout and checkpoint loading, the registry and the `complexity` command."""

from __future__ import annotations

import json
import math
from copy import deepcopy
from pathlib import Path

import pytest
import torch
from torch import nn
from torchinfo import summary

from dsflexinet.audio.frontend import build_frontend
from dsflexinet.audio.pipeline import TrainingInput
from dsflexinet.cli import main
from dsflexinet.data.download import file_digest
from dsflexinet.errors import PipelineError
from dsflexinet.layout import checksum_beside
from dsflexinet.models.complexity import MAX_MACS, MAX_PARAM_BYTES, check_limits, complexity, count_macs
from dsflexinet.models.flexinet import expanded_width
from dsflexinet.models.passt import CONFIGS as PASST_CONFIGS
from dsflexinet.models.passt import PaSST, PaSSTConfig, load_pretrained, passt
from dsflexinet.models.registry import available_models, build_model, model_spec
from dsflexinet.models.resnorm import NORMS, ResidualInstanceNorm, ResNorm, instance_normalise
from dsflexinet.train.module import EVAL_CHUNK_CLIPS, SceneClassifier

torch.set_num_threads(2)

# Paper Table II: (params, MACs); the measured counts are those in flexinet.py's docstring table.
TABLE_II = {"sm1": (13_760, 3.88e6), "sm2": (30_690, 8.27e6), "sm3": (54_980, 14.34e6), "sm4": (126_120, 23.03e6)}
MEASURED = {"sm1": (13_710, 4_072_716), "sm2": (30_400, 8_240_724), "sm3": (55_362, 14_505_748),
            "sm4": (126_021, 23_112_084)}  # fmt: skip


def _size(name: str, **options) -> dict:
    return complexity(build_model(name, **options), model_spec(name).input_shape)


def test_student_sizes_land_on_table_ii() -> None:
    print(f"\n{'model':<16}{'norm':<17}{'params':>9}{'paper':>9}{'MACs':>12}{'paper':>12}")
    for size, (paper_params, paper_macs) in TABLE_II.items():
        for norm in NORMS:
            counted = _size(f"dsflexinet_{size}", norm=norm)
            print(f"dsflexinet_{size:<5}{norm:<17}{counted['params']:>9,}{paper_params:>9,}"
                  f"{counted['macs']:>12,}{paper_macs:>12,.0f}")  # fmt: skip
            assert abs(counted["params"] / paper_params - 1) <= 0.02, (size, norm)
            assert abs(counted["macs"] / paper_macs - 1) <= 0.10, (size, norm)
        counted = _size(f"dsflexinet_{size}")  # the default, ResNorm per channel
        assert (counted["params"], counted["macs"]) == MEASURED[size]


def test_expanded_widths_are_multiples_of_8() -> None:
    """fbgemm's int8 depthwise kernel is 20-100x slower off multiples of 8; the rounding never loses 10 %."""
    widths = [expanded_width(c_in, expansion) for c_in, expansion in ((8, 2.5), (20, 2.5), (40, 2.5), (16, 2), (3, 3))]
    assert widths == [24, 48, 104, 32, 16]  # 20, 50, 100, 32 rounded; 9 -> 8 would lose 11 %
    for size in ("sm1", "sm2", "sm3", "sm4"):
        modules = build_model(f"dsflexinet_{size}").modules()
        depthwise = [m for m in modules if isinstance(m, nn.Conv2d) and m.groups > 1]
        assert depthwise and all(m.groups == m.in_channels and m.groups % 8 == 0 for m in depthwise), size


def test_cp_resnet_is_the_public_128k_teacher() -> None:
    counted = _size("cp_resnet")
    # The CP-JKU recipe's 128 K teacher: 127,684 parameters, 28.8 M MACs at 256 x 43 (torchinfo, unfused).
    assert counted["params"] == 127_684
    assert round(counted["macs"] / 1e6, 1) == 28.8


def test_tiny_teachers_stay_under_five_million_macs() -> None:
    for name in ("cp_resnet_tiny", "passt_tiny"):
        counted = _size(name)
        print(f"\n{name}: {counted['params']:,} params, {counted['macs'] / 1e6:.2f} M MACs")
        assert 1e6 < counted["macs"] <= 5e6
        assert 10_000 < counted["params"] < 200_000


def _checkpoint_layout(config: PaSSTConfig, grid: tuple[int, int], classes: int = 527) -> dict[str, torch.Tensor]:
    """Random tensors named and shaped as in a kkoutini/PaSST state dict (the public AudioSet checkpoint)."""
    width, hidden = config.width, round(config.width * config.mlp_ratio)
    shapes = {
        "cls_token": (1, 1, width), "dist_token": (1, 1, width), "new_pos_embed": (1, 2, width),
        "freq_new_pos_embed": (1, width, grid[0], 1), "time_new_pos_embed": (1, width, 1, grid[1]),
        "patch_embed.proj.weight": (width, 1, config.patch, config.patch), "patch_embed.proj.bias": (width,),
        "norm.weight": (width,), "norm.bias": (width,), "head.0.weight": (width,), "head.0.bias": (width,),
        "head.1.weight": (classes, width), "head.1.bias": (classes,),
        "head_dist.weight": (classes, width), "head_dist.bias": (classes,),
    }  # fmt: skip
    for block in range(config.depth):
        shapes |= {
            f"blocks.{block}.norm1.weight": (width,), f"blocks.{block}.norm1.bias": (width,),
            f"blocks.{block}.attn.qkv.weight": (3 * width, width), f"blocks.{block}.attn.qkv.bias": (3 * width,),
            f"blocks.{block}.attn.proj.weight": (width, width), f"blocks.{block}.attn.proj.bias": (width,),
            f"blocks.{block}.norm2.weight": (width,), f"blocks.{block}.norm2.bias": (width,),
            f"blocks.{block}.mlp.fc1.weight": (hidden, width), f"blocks.{block}.mlp.fc1.bias": (hidden,),
            f"blocks.{block}.mlp.fc2.weight": (width, hidden), f"blocks.{block}.mlp.fc2.bias": (width,),
        }  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    return {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}


def test_passt_s_matches_the_published_size() -> None:
    # The AudioSet model: 128 x 998 input (10 s), patch grid 12 x 99, 527 classes, plus a distillation head
    # that our forward has no use for. Its tensors are exactly those of the public checkpoint's layout, and the
    # total is the ~86 M of the DeiT-B backbone PaSST-S is built on (DeiT paper, Table 1).
    config = PASST_CONFIGS["s"]
    model = passt("s", input_size=(128, 998), n_classes=527)
    assert model.grid == (12, 99)
    ours = sum(p.numel() for p in model.parameters()) + 527 * 768 + 527
    layout = sum(t.numel() for t in _checkpoint_layout(config, (12, 99)).values())
    print(f"\nPaSST-S at 128 x 998: {ours:,} parameters (checkpoint layout {layout:,}; reference 86 M)")
    assert ours == layout
    assert abs(ours / 86e6 - 1) < 0.01
    one_second = _size("passt_s")
    assert abs(one_second["params"] / 85.3e6 - 1) < 0.01  # 1 s input, 10 classes, no distillation head


def _torchinfo(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    stats = summary(model, input_size=(1, *shape), verbose=0)
    return stats.total_params, stats.total_mult_adds


@pytest.mark.parametrize("name", ["dsflexinet_sm1", "dsflexinet_sm2", "dsflexinet_sm3", "dsflexinet_sm4",
                                  "cp_resnet", "cp_resnet_tiny"])  # fmt: skip
@pytest.mark.parametrize("norm", ["resnorm_freq", "batchnorm"])
def test_cnn_macs_equal_torchinfo(name: str, norm: str) -> None:
    options = {"norm": norm} if "norm" in model_spec(name).options else {}
    model, shape = build_model(name, **options), model_spec(name).input_shape
    counted = complexity(model, shape)
    assert (counted["params"], counted["macs"]) == _torchinfo(model, shape)


def test_transformer_macs_are_torchinfo_plus_tokens_and_attention() -> None:
    # torchinfo charges a Linear once per clip and sees no attention products; we charge every token and the
    # QK^T and AV products. The difference is exactly that, per layer.
    model, shape = build_model("passt_tiny"), model_spec("passt_tiny").input_shape
    config = PASST_CONFIGS["tiny"]
    tokens = 2 + math.prod(model.grid)
    width, hidden = config.width, round(config.width * config.mlp_ratio)
    qkv, proj, fc1, fc2 = 3 * width * (width + 1), width * (width + 1), hidden * (width + 1), width * (hidden + 1)
    linear = qkv + proj + fc1 + fc2
    extra = config.depth * ((tokens - 1) * linear + 2 * tokens * tokens * width)
    params, torchinfo_macs = _torchinfo(model, shape)
    assert params == sum(p.numel() for p in model.parameters())
    assert count_macs(model, shape) == torchinfo_macs + extra


def test_size_in_kilobytes() -> None:
    counted = _size("dsflexinet_sm1")
    assert counted["size_kb_float32"] == pytest.approx(counted["params"] * 4 / 1000)
    assert counted["size_kb_int8"] == pytest.approx(counted["params"] / 1000)
    assert round(counted["size_kb_float32"], 2) == 54.84  # the paper's 13.76 K -> 55.03 KB, same rule


# A 3x3 convolution without bias on a 256 x 64 spectrogram costs 9 x channels x 16,384 MACs: 200 channels are
# 29,491,200 (within 30 M), 204 are 30,081,024 (over). A 1000 -> 128 linear layer holds 128,000 weights, the
# DCASE limit at int8 exactly; its bias adds 128 more.
def _conv_row(channels: int) -> dict:
    return complexity(nn.Conv2d(1, channels, 3, padding=1, bias=False), (1, 256, 64))


def test_complexity_within_limits() -> None:
    assert (MAX_MACS, MAX_PARAM_BYTES) == (30_000_000, 128_000)
    assert _conv_row(200)["macs"] == 29_491_200
    assert check_limits("narrow", _conv_row(200))["param_bytes"] == 1_800
    exact = complexity(nn.Linear(1000, 128, bias=False), (1000,))
    assert check_limits("exact", exact) == {
        "precision": "int8", "param_bytes": 128_000, "max_macs": 30_000_000, "max_param_bytes": 128_000,
    }  # fmt: skip
    assert check_limits("sm4", _size("dsflexinet_sm4"))["param_bytes"] == MEASURED["sm4"][0]  # 126,021 at int8


def test_complexity_over_the_mac_limit_names_run_and_number() -> None:
    with pytest.raises(PipelineError, match=r"^run wide: 30,081,024 MACs \(30\.08 M\) exceed complexity\.max_macs "
                                            r"\(30,000,000\)$"):  # fmt: skip
        check_limits("wide", _conv_row(204))
    with pytest.raises(PipelineError, match=r"^run sm4: 23,112,084 MACs .* \(20,000,000\)$"):
        check_limits("sm4", _size("dsflexinet_sm4"), max_macs=20e6)


def test_complexity_over_the_memory_limit_names_run_and_number() -> None:
    biased = complexity(nn.Linear(1000, 128), (1000,))
    with pytest.raises(PipelineError, match=r"^run biased: 128,128 bytes of parameters \(128,128 at int8\) exceed "
                                            r"complexity\.max_param_bytes \(128,000\)$"):  # fmt: skip
        check_limits("biased", biased)
    # The same sm4 that fits at int8 is 504,084 bytes at float32: four bytes a parameter.
    with pytest.raises(PipelineError, match=r"^run sm4: 504,084 bytes of parameters \(126,021 at float32\)"):
        check_limits("sm4", _size("dsflexinet_sm4"), precision="float32")
    with pytest.raises(PipelineError, match=r"precision 'int4' is not one of int8, float16, float32"):
        check_limits("sm4", _size("dsflexinet_sm4"), precision="int4")

# --- normalisation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
def test_each_norm_trains_one_step(norm: str) -> None:
    torch.manual_seed(0)
    model = build_model("dsflexinet_sm1", norm=norm).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    logits = model(torch.randn(4, 1, 256, 64))
    assert logits.shape == (4, 10)
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    lambdas = [p for name, p in model.named_parameters() if name.endswith(".lam")]
    assert len(lambdas) == (6 if norm.startswith("resnorm") else 0)  # one per block
    assert all(p.grad is not None and p.grad.abs().item() > 0 for p in lambdas)
    optimizer.step()
    changed = sum(not torch.equal(before[name], p) for name, p in model.named_parameters())
    assert changed == len(before)
    assert model.eval()(torch.randn(2, 1, 256, 64)).shape == (2, 10)


def _instance_norm_by_hand(x: torch.Tensor, axes: tuple[int, int], eps: float) -> torch.Tensor:
    """Mean and biased variance over `axes` for every index of the other two axes, element by element."""
    out = torch.empty_like(x)
    kept = [axis for axis in range(4) if axis not in axes]
    for i in range(x.shape[kept[0]]):
        for j in range(x.shape[kept[1]]):
            index = [slice(None)] * 4
            index[kept[0]], index[kept[1]] = i, j
            values = x[tuple(index)].double()
            mean = values.sum() / values.numel()
            var = ((values - mean) ** 2).sum() / values.numel()
            out[tuple(index)] = ((values - mean) / math.sqrt(var + eps)).float()
    return out


@pytest.mark.parametrize(("over", "axes"), [("channel", (2, 3)), ("freq", (1, 3))])
def test_resnorm_matches_hand_computation(over: str, axes: tuple[int, int]) -> None:
    x = torch.randn(2, 3, 5, 7) * torch.arange(1.0, 6.0).view(1, 1, 5, 1) + torch.arange(3.0).view(1, 3, 1, 1)
    norm = ResNorm(over, lam=0.3)
    expected = 0.3 * x + _instance_norm_by_hand(x, axes, norm.eps)
    assert torch.allclose(norm(x), expected, atol=1e-5)
    other = (1, 3) if axes == (2, 3) else (2, 3)
    assert not torch.allclose(norm(x), 0.3 * x + _instance_norm_by_hand(x, other, norm.eps), atol=1e-2)


@pytest.mark.parametrize("axes", [(2, 3), (1, 3)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_resnorm_backward_is_autograds_gradient_of_eq_2(axes: tuple[int, int], layout: torch.memory_format) -> None:
    # float64, so that the comparison sees the formula, not rounding: the hand-written backward against autograd
    # through lam * x + IN(x), and against finite differences.
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(3, 5, 7, 6, generator=g, dtype=torch.float64) + 1).contiguous(memory_format=layout)
    x.requires_grad_()
    lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 5, 7, 6, generator=g, dtype=torch.float64)
    fused = ResidualInstanceNorm.apply(x, lam, axes, 1e-5)
    composed = lam * x + instance_normalise(x, axes, 1e-5)
    torch.testing.assert_close(fused, composed, rtol=1e-12, atol=1e-12)
    assert fused.is_contiguous(memory_format=layout)
    for ours, autograds in zip(torch.autograd.grad(fused, (x, lam), upstream),
                               torch.autograd.grad(composed, (x, lam), upstream), strict=True):  # fmt: skip
        torch.testing.assert_close(ours, autograds, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, lam: ResidualInstanceNorm.apply(x, lam, axes, 1e-5), (x, lam))


@pytest.mark.parametrize(("name", "norm"), [("dsflexinet_sm1", "resnorm_channel"), ("dsflexinet_sm1", "resnorm_freq"),
                                            ("dsflexinet_sm1", "batchnorm"), ("cp_resnet_tiny", None)])  # fmt: skip
def test_channels_last_layout_keeps_the_function(name: str, norm: str | None) -> None:
    # The CNNs keep weights and activations channels-last (the faster layout for the CPU kernels). The same weights
    # in the contiguous layout are the same function: in float64 logits, gradients and BN statistics agree to
    # rounding. In float32 the logits agree to 1e-5 and a student's gradients to about 1 % (relative norm): the
    # channels-last BatchNorm kernel sums each channel's statistics in one long float32 chain.
    torch.manual_seed(0)
    model = build_model(name, **({"norm": norm} if norm else {})).train()
    weights = [p for p in model.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert any(not p.is_contiguous() for p in weights)  # (1x1 kernels are contiguous in both layouts)
    x = torch.randn(8, *model_spec(name).input_shape)
    labels = torch.arange(8) % 10
    for dtype, tolerance in ((torch.float64, 1e-10), (torch.float32, None)):
        ours = deepcopy(model).to(dtype)
        reference = deepcopy(ours).to(memory_format=torch.contiguous_format)
        assert all(p.is_contiguous() for p in reference.parameters())
        logits = {}
        for label, net in (("channels_last", ours), ("contiguous", reference)):
            logits[label] = net(x.to(dtype))
            nn.functional.cross_entropy(logits[label], labels).backward()
        torch.testing.assert_close(logits["channels_last"], logits["contiguous"], rtol=1e-4, atol=tolerance or 1e-4)
        if tolerance is None:
            continue
        for (key, a), b in zip(ours.named_parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=tolerance, atol=tolerance, msg=key)
        for (key, a), b in zip(ours.named_buffers(), reference.buffers(), strict=True):
            torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance, msg=key)


def test_unknown_norm_is_refused() -> None:
    with pytest.raises(PipelineError, match="unknown normalisation 'layernorm'"):
        build_model("dsflexinet_sm1", norm="layernorm")


# --- PaSST ------------------------------------------------------------------------------------------------------


def test_patchout_drops_tokens_in_training_only() -> None:
    model = build_model("passt_tiny", freq_patchout=3, time_patchout=2)
    x = torch.randn(2, 1, 128, 100)
    rows, columns = model.grid
    assert model.train().tokens(x).shape == (2, (rows - 3) * (columns - 2), 48)
    assert model.eval().tokens(x).shape == (2, rows * columns, 48)
    assert model.train()(x).shape == model.eval()(x).shape == (2, 10)
    no_patchout = build_model("passt_tiny", freq_patchout=0, time_patchout=0).train()
    assert no_patchout.tokens(x).shape[1] == rows * columns


SMALL = PaSSTConfig(width=32, depth=2, heads=2)


def _save_verified(state: dict, path) -> None:
    """A checkpoint as the pipeline keeps one: the file and its SHA-256 beside it."""
    torch.save(state, path)
    Path(checksum_beside(str(path))).write_text(f"{file_digest(path, 'sha256')}  {path.name}\n")


def test_load_pretrained_maps_crops_and_skips_the_head(tmp_path) -> None:
    checkpoint = _checkpoint_layout(SMALL, (12, 99))
    path = tmp_path / "passt.pt"
    _save_verified(checkpoint, path)
    model = PaSST(SMALL, (128, 100))
    head_before = model.head.weight.detach().clone()
    load_pretrained(model, path)
    state = model.state_dict()
    assert torch.equal(state["patch_embed.weight"], checkpoint["patch_embed.proj.weight"])
    assert torch.equal(state["token_pos"], checkpoint["new_pos_embed"])
    assert torch.equal(state["freq_pos"], checkpoint["freq_new_pos_embed"])
    assert torch.equal(state["time_pos"], checkpoint["time_new_pos_embed"][..., :9])  # 1 s: first 9 of 99
    assert torch.equal(state["head_norm.weight"], checkpoint["head.0.weight"])
    assert torch.equal(state["blocks.1.attn.qkv.weight"], checkpoint["blocks.1.attn.qkv.weight"])
    assert torch.equal(state["blocks.0.mlp.fc2.bias"], checkpoint["blocks.0.mlp.fc2.bias"])
    assert torch.equal(model.head.weight, head_before)  # the 527-class classifier is not used
    assert model(torch.randn(1, 1, 128, 100)).shape == (1, 10)


def test_load_pretrained_interpolates_other_frequency_grids(tmp_path) -> None:
    checkpoint = _checkpoint_layout(SMALL, (12, 99))
    ramp = torch.linspace(-1.0, 1.0, 12)
    checkpoint["freq_new_pos_embed"] = ramp.view(1, 1, 12, 1).expand(1, 32, 12, 1).clone()
    _save_verified(checkpoint, tmp_path / "passt.pt")
    model = load_pretrained(PaSST(SMALL, (64, 100)), tmp_path / "passt.pt")  # 64 mels: 5 frequency patches
    loaded = model.freq_pos[0, 0, :, 0]
    assert loaded.shape == (5,)
    assert torch.all(loaded[1:] > loaded[:-1])
    assert -1.0 <= loaded.min().item() and loaded.max().item() <= 1.0


def test_load_pretrained_errors_name_the_file(tmp_path) -> None:
    missing = tmp_path / "nothing.pt"
    with pytest.raises(PipelineError, match=f"{missing}: pretrained checkpoint not found"):
        build_model("passt_tiny", pretrained_path=str(missing))

    wrong_width = tmp_path / "wide.pt"
    _save_verified(_checkpoint_layout(PaSSTConfig(width=64, depth=2, heads=2), (12, 99)), wrong_width)
    with pytest.raises(PipelineError, match=f"{wrong_width}: does not match this PaSST"):
        load_pretrained(PaSST(SMALL, (128, 100)), wrong_width)

    shallow = tmp_path / "shallow.pt"
    _save_verified({k: v for k, v in _checkpoint_layout(SMALL, (12, 99)).items() if not k.startswith("blocks.1.")},
                   shallow)
    with pytest.raises(PipelineError, match=f"{shallow}: does not match this PaSST \\(missing blocks.1"):
        load_pretrained(PaSST(SMALL, (128, 100)), shallow)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    Path(checksum_beside(str(garbage))).write_text(f"{file_digest(garbage, 'sha256')}  garbage.pt\n")
    with pytest.raises(PipelineError, match=f"{garbage}: not a readable PyTorch checkpoint"):
        load_pretrained(PaSST(SMALL, (128, 100)), garbage)


def test_a_checkpoint_is_loaded_only_with_a_matching_checksum_beside_it(tmp_path) -> None:
    path = tmp_path / "cp.pt"
    backbone = {k: v for k, v in build_model("cp_resnet_tiny").state_dict().items() if not k.startswith("head.")}
    _save_verified(backbone, path)
    loaded = build_model("cp_resnet_tiny", pretrained_path=str(path), n_classes=3)
    assert torch.equal(loaded.state_dict()["stem.0.weight"], backbone["stem.0.weight"])
    assert loaded(torch.randn(2, 1, 256, 65)).shape == (2, 3)  # a fresh head of its own size

    Path(checksum_beside(str(path))).write_text("0" * 64 + "  cp.pt\n")
    with pytest.raises(PipelineError) as refused:
        build_model("cp_resnet_tiny", pretrained_path=str(path))
    assert str(refused.value) == (f"{path}: SHA-256 {file_digest(path, 'sha256')} does not match {'0' * 64} in"
                                  " cp.pt.sha256; refusing to load")  # fmt: skip
    Path(checksum_beside(str(path))).unlink()
    with pytest.raises(PipelineError, match=rf"^{path}: no SHA-256 in {path}.sha256"):
        build_model("cp_resnet_tiny", pretrained_path=str(path))
    wider = tmp_path / "wide.pt"
    _save_verified({k: v for k, v in build_model("cp_resnet").state_dict().items() if not k.startswith("head.")}, wider)
    with pytest.raises(PipelineError, match=rf"^{wider}: does not match this CPResNet \(stem.0.weight is"):
        build_model("cp_resnet_tiny", pretrained_path=str(wider))


# --- registry and command ---------------------------------------------------------------------------------------


def test_registry_specs_and_round_trip() -> None:
    names = available_models()
    assert names == ["dsflexinet_sm1", "dsflexinet_sm2", "dsflexinet_sm3", "dsflexinet_sm4",
                     "cp_resnet", "cp_resnet_tiny", "passt_s", "passt_tiny"]  # fmt: skip
    for name, frontend, shape in [("dsflexinet_sm2", "student", (1, 256, 64)), ("cp_resnet", "cp_resnet", (1, 256, 43)),
                                  ("passt_tiny", "passt", (1, 128, 100))]:  # fmt: skip
        assert (model_spec(name).frontend, model_spec(name).input_shape) == (frontend, shape)
    for name in names:
        if name == "passt_s":
            continue  # 85 M parameters: sized above
        torch.manual_seed(0)
        model = build_model(name).eval()
        copy = build_model(name).eval()
        copy.load_state_dict(model.state_dict())
        x = torch.randn(2, *model_spec(name).input_shape)
        with torch.no_grad():
            assert model(x).shape == (2, 10)
            assert torch.equal(model(x), copy(x))
    assert build_model("dsflexinet_sm1", n_classes=4).eval()(torch.zeros(1, 1, 256, 64)).shape == (1, 4)


def test_registry_refuses_unknown_names_and_options() -> None:
    with pytest.raises(PipelineError) as error:
        build_model("dsflexinet_sm5")
    assert str(error.value) == (
        "unknown model 'dsflexinet_sm5' (choose from dsflexinet_sm1, dsflexinet_sm2, dsflexinet_sm3, "
        "dsflexinet_sm4, cp_resnet, cp_resnet_tiny, passt_s, passt_tiny)"
    )
    with pytest.raises(PipelineError, match="model 'cp_resnet' takes no option\\(s\\) norm"):
        build_model("cp_resnet", norm="batchnorm")


def test_complexity_command_writes_the_table(tmp_path, capsys) -> None:
    out = tmp_path / "table.json"
    options = ["--options", '{"norm": "batchnorm"}']
    assert main(["complexity", "dsflexinet_sm1", "dsflexinet_sm2", *options, "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row["model"] for row in rows] == ["dsflexinet_sm1", "dsflexinet_sm2"]
    assert rows[0]["options"] == {"norm": "batchnorm"} and rows[0]["input_shape"] == [1, 256, 64]
    assert rows[0]["params"] == sum(p.numel() for p in build_model("dsflexinet_sm1", norm="batchnorm").parameters())
    printed = capsys.readouterr().out
    assert "dsflexinet_sm1" in printed and f"{rows[0]['params']:,}" in printed
    assert main(["complexity", "cp_resnet_tiny", "--out", str(out)]) == 0
    assert json.loads(out.read_text())[0]["input_shape"] == [1, 256, 43]
    capsys.readouterr()
    assert main(["complexity", "cp_resnet_tiny", *options]) == 1  # an option the model lacks is never dropped
    assert "model 'cp_resnet_tiny' takes no option(s) norm" in capsys.readouterr().err
    assert main(["complexity", "resnet50"]) == 1
    assert "unknown model 'resnet50'" in capsys.readouterr().err


def test_classifier_evaluates_a_large_batch_in_chunks_as_one_batch() -> None:
    # Evaluation is per clip, so the classifier runs a CPU batch EVAL_CHUNK_CLIPS at a time (faster): the logits
    # of the whole batch at once, for a batch that is not a multiple of the chunk.
    torch.manual_seed(0)
    classifier = SceneClassifier(build_model("dsflexinet_sm1"), TrainingInput(build_frontend("student")), {}).eval()
    waves = 0.1 * torch.randn(EVAL_CHUNK_CLIPS + 7, 32000)
    devices = ["a"] * waves.shape[0]
    with torch.no_grad():
        chunked = classifier(waves, devices)
        whole = classifier.model(classifier.inputs(waves, devices))
    assert chunked.shape == (EVAL_CHUNK_CLIPS + 7, 10)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
