"""Augmentations held to their definitions: Freq-MixStyle, time roll, masking, DIR and ADIR (paper eq. 3)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from dsflexinet.audio.augment import (
    DeviceImpulseAugmentation,
    fill_bands_by_mask,
    fill_bands_by_slices,
    freq_mixstyle,
    mask_along_axis_,
    mix_frequency_statistics,
    roll_by_copies,
    roll_by_gather,
    time_roll,
)
from dsflexinet.audio.energy import clip_energy
from dsflexinet.audio.frontend import build_frontend
from dsflexinet.audio.pipeline import TrainingInput
from dsflexinet.data.dirs import ImpulseResponses, load_impulse_responses
from dsflexinet.errors import PipelineError


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def within_binomial(hits: int, trials: int, p: float, sigmas: float = 4.5) -> bool:
    return abs(hits - trials * p) <= sigmas * math.sqrt(trials * p * (1 - p))


def responses_from(arrays: list[np.ndarray], rate: int = 32000) -> ImpulseResponses:
    lengths = np.array([len(a) for a in arrays])
    padded = np.zeros((len(arrays), lengths.max()), dtype=np.float32)
    for row, array in enumerate(arrays):
        padded[row, : len(array)] = array
    return ImpulseResponses([f"r{i}" for i in range(len(arrays))], padded, lengths, rate)


def spectrogram_like(n: int = 6, seed: int = 0) -> torch.Tensor:
    """(N, C, F, T) with clearly different per-sample, per-frequency statistics."""
    g = generator(seed)
    means = 3 * torch.randn(n, 1, 16, 1, generator=g)
    scales = torch.rand(n, 1, 16, 1, generator=g) * 2 + 0.1
    return means + scales * torch.randn(n, 2, 16, 20, generator=g)


# --- Freq-MixStyle ---------------------------------------------------------------------------------------------


def test_mixstyle_with_p_zero_is_the_identity() -> None:
    x = spectrogram_like()
    assert freq_mixstyle(x, 0.0, 0.3, generator()) is x


def test_mixstyle_with_lambda_one_or_self_partner_is_the_identity() -> None:
    x = spectrogram_like()
    torch.testing.assert_close(mix_frequency_statistics(x, torch.ones(6), torch.randperm(6)), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(mix_frequency_statistics(x, torch.rand(6), torch.arange(6)), x, atol=1e-5, rtol=0)


def test_mixstyle_output_carries_the_mixed_statistics() -> None:
    x = spectrogram_like().double()
    lam = torch.tensor([0.0, 0.2, 0.5, 0.7, 0.9, 0.3], dtype=torch.float64)
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    out = mix_frequency_statistics(x, lam, perm).numpy()
    values = x.numpy()
    for i in range(6):
        for f in range(16):
            own, partner = values[i, :, f].ravel(), values[perm[i], :, f].ravel()
            std_own = math.sqrt(own.var(ddof=1) + 1e-6)
            std_partner = math.sqrt(partner.var(ddof=1) + 1e-6)
            mixed_mean = lam[i] * own.mean() + (1 - lam[i]) * partner.mean()
            mixed_std = lam[i] * std_own + (1 - lam[i]) * std_partner
            result = out[i, :, f].ravel()
            assert result.mean() == pytest.approx(float(mixed_mean), abs=1e-9)
            # eps makes the normalised std sqrt(var / (var + eps)) rather than exactly 1
            assert result.std(ddof=1) == pytest.approx(float(mixed_std) * own.std(ddof=1) / std_own, rel=1e-9)


def test_mixstyle_recovers_as_a_beta_mix_with_a_partner() -> None:
    """Black box: every sample's band means are lam * own + (1 - lam) * partner's, lam in [0, 1]."""
    x = spectrogram_like(8, seed=3).double()
    out = freq_mixstyle(x, 1.0, 0.3, generator(11))
    own, mixed = x.mean(dim=(1, 3)), out.mean(dim=(1, 3))  # (N, F)
    lams = []
    for i in range(8):
        fits = []
        for j in range(8):
            delta = own[i] - own[j]
            lam = 1.0 if j == i else float((mixed[i] - own[j]) @ delta / (delta @ delta))
            fits.append((float((lam * own[i] + (1 - lam) * own[j] - mixed[i]).abs().max()), lam))
        residual, lam = min(fits)
        assert residual < 1e-9 and -1e-9 <= lam <= 1 + 1e-9
        lams.append(lam)
    assert len({round(v, 6) for v in lams}) > 4  # one lambda per sample, not one per batch
    assert torch.equal(out, freq_mixstyle(x, 1.0, 0.3, generator(11)))


def test_mixstyle_applies_to_the_whole_batch_with_probability_p() -> None:
    g = generator(1)
    x = spectrogram_like(4)
    applied = sum(not torch.equal(freq_mixstyle(x, 0.4, 0.3, g), x) for _ in range(600))
    assert within_binomial(applied, 600, 0.4)


def test_mixstyle_statistics_are_constants_for_the_gradient() -> None:
    x = spectrogram_like().requires_grad_()
    lam, perm = torch.rand(6, generator=generator(2)), torch.tensor([1, 2, 3, 4, 5, 0])
    weights = torch.randn(x.shape, generator=generator(3))
    (weights * mix_frequency_statistics(x, lam, perm)).sum().backward()
    detached = x.detach()
    std = (detached.var(dim=(1, 3), keepdim=True) + 1e-6).sqrt()
    mixed_std = lam.view(-1, 1, 1, 1) * std + (1 - lam.view(-1, 1, 1, 1)) * std[perm]
    # With detached statistics the output is an affine map of x with a constant scale per (sample, bin).
    torch.testing.assert_close(x.grad, weights * mixed_std / std, rtol=1e-5, atol=1e-6)


# --- time roll and masking -------------------------------------------------------------------------------------


def test_time_roll_shifts_each_clip_circularly_within_range() -> None:
    waves = torch.randn(40, 1000, generator=generator(0))
    rolled = time_roll(waves, 100, generator(1))
    shifts = []
    for row in range(40):
        matches = [s for s in range(-100, 101) if torch.equal(rolled[row], torch.roll(waves[row], s))]
        assert len(matches) == 1
        shifts.extend(matches)
    assert min(shifts) < -20 and max(shifts) > 20 and len(set(shifts)) > 30
    assert time_roll(waves, 0) is waves
    assert torch.equal(rolled, time_roll(waves, 100, generator(1)))


def test_mask_sets_one_band_per_sample_along_the_axis() -> None:
    x = torch.ones(300, 1, 64, 10)
    out = mask_along_axis_(x, 48, 2, generator(3))
    assert out is x  # in place
    zeros = out == 0
    band = zeros.all(dim=3)[:, 0]  # (samples, bins)
    assert torch.equal(zeros.any(dim=3)[:, 0], band)  # a masked bin is masked in every frame
    widths = band.sum(dim=1)
    assert widths.max() <= 48 and widths.float().mean().item() == pytest.approx(23.5, abs=3.0)
    for rows in (row.nonzero().flatten() for row in band):  # one contiguous band
        assert rows.numel() == 0 or rows[-1] - rows[0] + 1 == rows.numel()
    assert torch.equal(mask_along_axis_(torch.ones(3, 4), 0, 1), torch.ones(3, 4))


def test_cpu_and_gpu_forms_of_roll_and_masking_agree_bit_for_bit() -> None:
    # The CPU copies and fills slices clip by clip, other devices take one batched gather and one broadcast mask.
    waves = torch.randn(9, 500, generator=generator(0))
    starts = torch.tensor([0, 1, 499, 250, 3, 0, 17, 498, 100])
    rolled = roll_by_copies(waves, starts)
    assert torch.equal(rolled, roll_by_gather(waves, starts))
    assert all(torch.equal(rolled[row], torch.roll(waves[row], -int(start))) for row, start in enumerate(starts))
    first, width = torch.tensor([0, 3, 11, 5, 0, 7]), torch.tensor([0, 4, 1, 7, 12, 5])
    for axis, shape in ((1, (6, 12, 15)), (2, (6, 15, 12))):  # bands along an axis of 12, each 15 long
        x = torch.randn(shape, generator=generator(1))
        by_slices = fill_bands_by_slices(x.clone(), axis, first, first + width, 9.0)
        assert torch.equal(by_slices, fill_bands_by_mask(x.clone(), axis, first, first + width, 9.0))
        assert int((by_slices == 9.0).sum()) == int(width.sum()) * 15


# --- DIR -------------------------------------------------------------------------------------------------------


def test_dir_with_a_unit_impulse_is_the_identity() -> None:
    impulse = np.zeros(300, dtype=np.float32)
    impulse[0] = 1.0
    augment = DeviceImpulseAugmentation(responses_from([impulse]), p=1.0)
    waves = 0.1 * torch.randn(5, 4000, generator=generator(0))
    out, chosen = augment(waves, ["a"] * 5, generator(1))
    assert out.shape == waves.shape and torch.all(chosen == 0)
    torch.testing.assert_close(out, waves, atol=1e-6, rtol=0)  # FFT round-off only


def test_dir_is_truncated_full_convolution() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n).astype(np.float32) * np.exp(-np.arange(n) / 200) for n in (700, 1500, 333)]
    augment = DeviceImpulseAugmentation(responses_from(arrays), p=1.0)
    waves = 0.1 * torch.randn(20, 4000, generator=generator(2))
    out, chosen = augment(waves, ["a"] * 20, generator(3))
    assert out.shape == (20, 4000) and set(chosen.tolist()) == {0, 1, 2}
    for row in range(20):
        expected = scipy.signal.convolve(waves[row].double().numpy(), arrays[chosen[row]].astype(np.float64))[:4000]
        np.testing.assert_allclose(out[row].numpy(), expected, atol=2e-6 * np.abs(expected).max())


def test_dir_leaves_other_devices_untouched_and_rate_is_p() -> None:
    rng = np.random.default_rng(1)
    augment = DeviceImpulseAugmentation(responses_from([rng.standard_normal(50) for _ in range(4)]), p=0.6)
    devices = ["a", "b", "s4", "a", "c"] * 400
    waves = torch.randn(2000, 64, generator=generator(4))
    out, chosen = augment(waves, devices, generator(5))
    is_a = torch.tensor([d == "a" for d in devices])
    assert torch.all(chosen[~is_a] == -1) and torch.equal(out[~is_a], waves[~is_a])
    applied = chosen[is_a] >= 0
    assert within_binomial(int(applied.sum()), 800, 0.6)
    assert not torch.any(torch.all(out[is_a][applied] == waves[is_a][applied], dim=1))
    assert torch.equal(out[is_a][~applied], waves[is_a][~applied])
    counts = torch.bincount(chosen[chosen >= 0], minlength=4)  # responses drawn uniformly
    assert all(within_binomial(int(c), int(applied.sum()), 0.25) for c in counts)


def test_dir_device_set_is_configurable() -> None:
    augment = DeviceImpulseAugmentation(responses_from([np.ones(3)]), p=1.0, devices=("b", "s1"))
    _, chosen = augment(torch.randn(4, 32), ["a", "b", "s1", "c"])
    assert chosen.tolist() == [-1, 0, 0, -1]


def test_dir_rejects_bad_settings() -> None:
    responses = responses_from([np.ones(3)])
    with pytest.raises(PipelineError, match="not in \\[0, 1\\]"):
        DeviceImpulseAugmentation(responses, p=1.5)
    with pytest.raises(PipelineError, match="unknown device.*'?A'?"):
        DeviceImpulseAugmentation(responses, p=0.5, devices=("A",))
    with pytest.raises(ValueError, match="3 device names for 2 clips"):
        DeviceImpulseAugmentation(responses, p=0.5)(torch.zeros(2, 8), ["a"] * 3)


# --- ADIR ------------------------------------------------------------------------------------------------------


def test_adir_convolves_only_above_the_threshold_at_rate_p() -> None:
    rng = np.random.default_rng(2)
    augment_responses = responses_from([rng.standard_normal(40) for _ in range(3)])
    g = generator(6)
    waves = torch.randn(3001, 200, generator=g)
    target = torch.cat([torch.full((1500,), 100.0), torch.full((1500,), 900.0), torch.tensor([323.0])])
    waves *= (target / clip_energy(waves)).sqrt().float().unsqueeze(1)
    threshold = float(clip_energy(waves[-1:])[0])  # the last clip sits exactly at the threshold
    augment = DeviceImpulseAugmentation(augment_responses, p=0.3, energy_threshold=threshold)
    out, chosen = augment(waves, ["a"] * 3001, g)
    quiet = clip_energy(waves) <= threshold
    assert int(quiet.sum()) == 1501
    assert torch.all(chosen[quiet] == -1) and torch.equal(out[quiet], waves[quiet])  # bit-identical
    assert within_binomial(int((chosen[~quiet] >= 0).sum()), 1500, 0.3)
    assert torch.equal(out[~quiet][chosen[~quiet] < 0], waves[~quiet][chosen[~quiet] < 0])


def test_adir_with_a_zero_threshold_is_dir_on_non_silent_clips() -> None:
    augment = DeviceImpulseAugmentation(responses_from([np.ones(4)]), p=1.0, energy_threshold=0.0)
    waves = torch.randn(3, 16)
    waves[1] = 0.0
    assert augment(waves, ["a"] * 3)[1].tolist() == [0, -1, 0]


# --- the real MicIRP set ---------------------------------------------------------------------------------------


def test_micirp_responses_load_resample_and_convolve(micirp_dir: Path) -> None:
    responses = load_impulse_responses(micirp_dir, 32000)
    assert len(responses.names) == 66 and {"B&O_BM2", "B&O_BM6"} <= set(responses.names)
    assert responses.sample_rate == 32000 and responses.responses.dtype == np.float32
    # 16,446-22,050 samples at 44.1/48 kHz become 0.34-0.5 s at 32 kHz
    assert 10900 <= responses.lengths.min() and responses.lengths.max() <= 16001
    assert np.all(np.abs(responses.responses).max(axis=1) > 0.05)
    augment = DeviceImpulseAugmentation(responses, p=1.0)
    waves = 0.1 * torch.randn(6, 32000, generator=generator(7))
    out, chosen = augment(waves, ["a"] * 6, generator(8))
    assert out.shape == (6, 32000) and torch.all(chosen >= 0)
    for row in (0, 5):
        expected = scipy.signal.convolve(waves[row].double().numpy(), responses.responses[chosen[row]].astype(float))
        np.testing.assert_allclose(out[row].numpy(), expected[:32000], atol=1e-5 * np.abs(expected).max())


# --- the composed training input -------------------------------------------------------------------------------


def test_training_input_chains_the_augmentations_in_order_and_eval_is_plain() -> None:
    decay = np.exp(-np.arange(400) / 50.0) * np.random.default_rng(3).standard_normal(400)
    augment = DeviceImpulseAugmentation(responses_from([decay]), p=1.0)
    frontend = build_frontend("student")
    pipeline = TrainingInput(frontend, augment, roll_samples=4000, mixstyle_p=1.0, mixstyle_alpha=0.3).train()
    waves = 0.1 * torch.randn(4, 32000, generator=generator(9))
    devices = ["a", "b", "a", "c"]
    trained = pipeline(waves, devices, generator(10))
    assert trained.shape == (4, 1, 256, 64)
    g = generator(10)  # roll -> DIR/ADIR -> frontend (jitter, masks) -> Freq-MixStyle, one generator throughout
    rolled = time_roll(waves, 4000, g)
    convolved, chosen = augment(rolled, devices, g)
    assert chosen.tolist() == [0, -1, 0, -1]
    assert torch.equal(trained, freq_mixstyle(frontend(convolved, g), 1.0, 0.3, g))
    plain = build_frontend("student").eval()(waves)
    assert torch.equal(pipeline.eval()(waves, devices), plain)
