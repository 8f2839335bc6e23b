"""Mel frontends: shapes of the three presets, agreement with the recipe's computation, train/eval behaviour."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchaudio

from dsflexinet.audio.frontend import (
    FRONTEND_PRESETS,
    BandedBank,
    FrontendConfig,
    build_frontend,
    output_shape,
    reflect_padded_preemphasis,
)
from dsflexinet.errors import PipelineError

MASKED = 4.5 / 5  # a masked log-mel value (0) after the normalisation


def noise(clips: int, samples: int = 32000, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(clips, samples, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("preset", "shape"), [("student", (256, 64)), ("cp_resnet", (256, 43)), ("passt", (128, 100))])
def test_presets_give_the_recipe_shapes_for_one_second(preset: str, shape: tuple[int, int]) -> None:
    frontend = build_frontend(preset).eval()
    out = frontend(noise(3))
    assert out.shape == (3, 1, *shape)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert output_shape(FRONTEND_PRESETS[preset]) == shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("n_mels", "n_fft", "fmin", "fmax"), [(256, 4096, 0.0, 15500.0), (128, 1024, 0.0, 15500.0),
                                                              (256, 4096, 7.0, 15873.5)])  # fmt: skip
def test_mel_bank_is_kaldis(n_mels: int, n_fft: int, fmin: float, fmax: float) -> None:
    reference, _ = torchaudio.compliance.kaldi.get_mel_banks(n_mels, n_fft, 32000, fmin, fmax, 100.0, -500.0, 1.0)
    bank = BandedBank.kaldi(n_mels, n_fft, 32000, fmin, fmax).dense()
    assert bank.shape == (n_mels, n_fft // 2 + 1)
    assert torch.all(bank[:, -1] == 0)  # the Nyquist bin, which Kaldi leaves out
    # torchaudio builds the bank in float32, this one in float64: weights agree to float32 rounding of mel values
    torch.testing.assert_close(bank[:, :-1], reference, atol=1e-4, rtol=0)
    assert (bank > 0).sum(dim=0).max() <= 2  # each bin feeds at most two triangles: why the banded form pays


def test_banded_bank_equals_dense_matmul() -> None:
    banded = BandedBank.kaldi(256, 4096, 32000, 0.0, 15500.0)
    assert sum(weights.numel() for _, _, weights in banded.blocks) < 256 * 2049 / 10  # what the blocks save
    power = torch.rand(2, 5, 2049, generator=torch.Generator().manual_seed(1)) ** 4 * 100
    torch.testing.assert_close(banded.apply(power), power @ banded.dense().T, rtol=1e-5, atol=1e-6)


def test_eval_output_is_the_recipe_computation() -> None:
    """Pre-emphasis conv, centre-padded STFT (symmetric Hann 3072 in 4096), power, Kaldi bank, log, (x+4.5)/5."""
    waves = noise(5)
    emphasised = torch.nn.functional.conv1d(waves.unsqueeze(1), torch.tensor([[[-0.97, 1.0]]])).squeeze(1)
    window = torch.hann_window(3072, periodic=False)
    power = torch.stft(emphasised, 4096, 500, 3072, window, center=True, return_complex=True).abs() ** 2
    bank, _ = torchaudio.compliance.kaldi.get_mel_banks(256, 4096, 32000, 0.0, 15500.0, 100.0, -500.0, 1.0)
    expected = (torch.log(torch.nn.functional.pad(bank, (0, 1)) @ power + 1e-5) + 4.5) / 5
    assert expected.shape == (5, 256, 64)
    torch.testing.assert_close(build_frontend("student").eval()(waves)[:, 0], expected, atol=2e-4, rtol=0)


def test_chunked_cpu_batches_match_clip_by_clip() -> None:
    frontend = build_frontend("cp_resnet").eval()
    waves = noise(11, seed=3)  # not a multiple of the STFT chunk
    one_by_one = torch.cat([frontend(wave.unsqueeze(0)) for wave in waves])
    torch.testing.assert_close(frontend(waves), one_by_one, atol=1e-5, rtol=0)


def test_eval_frontend_traces_with_a_free_batch_size() -> None:
    """QAT export traces frontend + model on one example batch; other batch sizes must give the same output."""
    frontend = build_frontend("cp_resnet").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated in favour of torch.export
        traced = torch.jit.trace(frontend, noise(6), check_trace=False)  # 6: more than one CPU chunk
    for clips in (1, 3, 9):
        waves = noise(clips, seed=clips)
        torch.testing.assert_close(traced(waves), frontend(waves), atol=1e-5, rtol=0)


def test_eval_mode_is_deterministic_and_draws_no_random_numbers() -> None:
    frontend = build_frontend("student").eval()
    waves = noise(4)
    state = torch.get_rng_state()
    first = frontend(waves)
    assert torch.equal(first, frontend(waves, torch.Generator().manual_seed(9)))
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.any(torch.all(first[:, 0] == MASKED, dim=-1))  # no masked band


def test_band_limits_jitter_only_in_training() -> None:
    frontend = build_frontend("student")
    generator = torch.Generator().manual_seed(0)
    limits = torch.tensor([frontend.band_limits(generator) for _ in range(400)])
    assert torch.all(limits[:, 0] == 0.0)  # no fmin jitter for the student
    assert 15000.0 <= limits[:, 1].min() < 15050.0 and 15950.0 < limits[:, 1].max() <= 16000.0
    assert limits[:, 1].mean().item() == pytest.approx(15500.0, abs=30.0)  # uniform: sd of the mean 14 Hz
    frontend.eval()
    assert frontend.band_limits(generator) == (0.0, 15500.0)


def test_training_jitter_changes_the_bank_and_nothing_else() -> None:
    waves = noise(2)
    still = build_frontend("student", freq_mask=0, fmax_jitter=0.0).train()
    assert torch.equal(still(waves), still.eval()(waves))
    jittered = build_frontend("student", freq_mask=0).train()
    generator = torch.Generator().manual_seed(4)
    _, fmax = jittered.band_limits(torch.Generator().manual_seed(4))
    assert fmax != 15500.0
    # The training output is exactly an eval-mode frontend whose fmax is the drawn one.
    expected = build_frontend("student", fmax=fmax, fmax_jitter=0.0).eval()(waves)
    assert torch.equal(jittered(waves, generator), expected)
    assert not torch.allclose(expected, still(waves), atol=1e-3)


def test_frequency_masking_in_training_only() -> None:
    frontend = build_frontend("student", fmax_jitter=0.0).train()
    waves = noise(64, samples=8000, seed=2)
    masked = frontend(waves, torch.Generator().manual_seed(5))[:, 0]
    clean = frontend.eval()(waves)[:, 0]
    band = torch.all(masked == MASKED, dim=-1)  # (clips, mels): bins masked across all frames
    widths = band.sum(dim=1)
    assert widths.max() <= 48 and widths.float().mean().item() == pytest.approx(23.5, abs=6.0)
    for clip in range(64):  # one contiguous band per clip; everything else untouched
        rows = band[clip].nonzero().flatten()
        if rows.numel():
            assert rows[-1] - rows[0] + 1 == rows.numel()
        torch.testing.assert_close(masked[clip][~band[clip]], clean[clip][~band[clip]], atol=1e-6, rtol=0)


def test_passt_preset_masks_time_too() -> None:
    frontend = build_frontend("passt", freq_mask=0, fmax_jitter=0.0).train()
    out = frontend(noise(32, seed=6), torch.Generator().manual_seed(1))[:, 0]
    frames = torch.all(out == MASKED, dim=1).sum(dim=1)  # (clips,): frames masked across all mel bins
    assert frames.max() <= 20 and frames.sum() > 32 * 5


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(PipelineError, match="unknown frontend preset 'cnn'"):
        build_frontend("cnn")
    with pytest.raises(PipelineError, match="unknown setting.*freqmask"):
        build_frontend("student", freqmask=10)
    with pytest.raises(PipelineError, match="must not exceed 16000 Hz"):
        FrontendConfig(fmax=15800.0, fmax_jitter=1000.0)
    with pytest.raises(ValueError, match="clips, samples"):
        build_frontend("student")(torch.zeros(32000))


@pytest.mark.parametrize("n_fft", [1024, 4096])
def test_the_stft_input_is_the_centre_padded_one_exactly(n_fft: int) -> None:
    waves = noise(3, seed=n_fft)
    emphasised = torch.add(waves[:, 1:], waves[:, :-1], alpha=-0.97)
    padded = reflect_padded_preemphasis(waves, 0.97, n_fft // 2)
    assert padded.shape == (3, 31999 + n_fft)
    assert torch.equal(padded, F.pad(emphasised.unsqueeze(1), (n_fft // 2, n_fft // 2), mode="reflect")[:, 0])
    window = torch.hann_window(n_fft, periodic=False)
    centred = torch.stft(emphasised, n_fft, 320, window=window, center=True, pad_mode="reflect", return_complex=True)
    assert torch.equal(torch.stft(padded, n_fft, 320, window=window, center=False, return_complex=True), centred)


def test_a_clip_shorter_than_the_stft_is_refused() -> None:
    with pytest.raises(PipelineError, match="2049 samples is too short for an STFT of 4096 points"):
        reflect_padded_preemphasis(torch.zeros(1, 2049), 0.97, 2048)
    assert reflect_padded_preemphasis(torch.zeros(1, 2050), 0.97, 2048).shape == (1, 2049 + 4096)
