"""Training-time augmentations: time roll, DIR/ADIR, frequency/time masking, Freq-MixStyle.

All of them work on whole batches wherever the tensors live. Random numbers come from an optional
`torch.Generator` (the global torch RNG otherwise, so Lightning's seeding covers them) and are drawn on the
generator's device, then moved: a CPU generator drives CUDA batches too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft
import torch
from torch import nn

from dsflexinet.audio.chunks import row_chunks
from dsflexinet.audio.energy import clip_energy
from dsflexinet.data.dirs import ImpulseResponses
from dsflexinet.data.tau22 import DEVICES
from dsflexinet.errors import PipelineError

# CPU rows per chunk (see chunks.py): a DIR chunk's spectra take about 3 MB each.
DIR_CHUNK_CLIPS = 16


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def uniform(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`n` draws from U[0, 1), float32 on the generator's device."""
    return torch.rand(n, generator=generator, device=_device(generator))


def time_roll(waves: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Roll each clip (N, samples) circularly by its own shift, drawn uniformly from [-max_shift, max_shift]."""
    if max_shift <= 0:
        return waves
    n, samples = waves.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n,), generator=generator, device=_device(generator))
    starts = -shifts % samples  # row i of the result is x_i from sample starts[i] on, wrapping around
    return (roll_by_copies if waves.device.type == "cpu" else roll_by_gather)(waves, starts)


def roll_by_copies(waves: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Two contiguous copies per clip: on the CPU a twelfth of the gather's time for a 32-clip batch."""
    samples = waves.shape[1]
    out = torch.empty_like(waves)
    for row, start in enumerate(starts.tolist()):
        out[row, : samples - start] = waves[row, start:]
        out[row, samples - start :] = waves[row, :start]
    return out


def roll_by_gather(waves: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """One batched gather of the windows of [x_i, x_i] (a strided view), no per-sample index tensor: for GPUs."""
    windows = waves.repeat(1, 2).unfold(1, waves.shape[1], 1)
    return windows[torch.arange(waves.shape[0], device=waves.device), starts.to(waves.device)]


def mask_along_axis_(
    x: torch.Tensor, max_width: int, axis: int, generator: torch.Generator | None = None, value: float = 0.0
) -> torch.Tensor:
    """Set one band per sample along `axis` of `x` to `value`, in place (torchaudio's iid masking).

    Width ~ U[0, max_width), start ~ U[0, size - width), both truncated to integers.
    """
    if max_width <= 0:
        return x
    n, size = x.shape[0], x.shape[axis]
    width = uniform(n, generator) * min(max_width, size)
    start = uniform(n, generator) * (size - width)
    bands = start.long(), (start + width).long()
    return (fill_bands_by_slices if x.device.type == "cpu" else fill_bands_by_mask)(x, axis, *bands, value)


def fill_bands_by_slices(
    x: torch.Tensor, axis: int, first: torch.Tensor, end: torch.Tensor, value: float
) -> torch.Tensor:
    """One slice fill per sample: on the CPU less than half the broadcast mask's time."""
    for row, (low, high) in enumerate(zip(first.tolist(), end.tolist(), strict=True)):
        x[row].narrow(axis - 1, low, high - low).fill_(value)
    return x


def fill_bands_by_mask(
    x: torch.Tensor, axis: int, first: torch.Tensor, end: torch.Tensor, value: float
) -> torch.Tensor:
    """One broadcast mask for the batch: for GPUs."""
    positions = torch.arange(x.shape[axis], device=first.device)
    masked = ((positions >= first[:, None]) & (positions < end[:, None])).to(x.device)
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[axis] = x.shape[axis]
    return x.masked_fill_(masked.view(shape), value)


def mix_frequency_statistics(
    x: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Freq-MixStyle's deterministic core on (N, C, F, T).

    Each frequency bin of each sample is normalised by its own mean and std over (channel, time) and re-scaled
    with `lam * own + (1 - lam) * partner` statistics, the partner being sample `perm[i]`. The statistics are
    detached (constants for the gradient); the variance is the unbiased one (n - 1), as torch.var in the recipe.
    """
    mean = x.detach().mean(dim=(1, 3), keepdim=True)
    centred = x - mean  # the one full-size temporary: everything after works in place or on statistics
    # A norm of the centred values instead of torch.var, whose Welford kernel is about 10x slower on CPU.
    count = max(x.shape[1] * x.shape[3] - 1, 1)
    std = (torch.linalg.vector_norm(centred.detach(), dim=(1, 3), keepdim=True).square() / count + eps).sqrt()
    lam = lam.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
    perm = perm.to(x.device)
    mixed_mean = lam * mean + (1 - lam) * mean[perm]
    mixed_std = lam * std + (1 - lam) * std[perm]
    return centred.mul_(mixed_std / std).add_(mixed_mean)


def freq_mixstyle(
    x: torch.Tensor, p: float, alpha: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Freq-MixStyle: with probability `p` for the whole batch, lambda ~ Beta(alpha, alpha) per sample and a
    random permutation as partners (see `mix_frequency_statistics`)."""
    if p <= 0 or uniform(1, generator).item() >= p:
        return x
    n = x.shape[0]
    # torch's Beta sampler takes no generator: seed numpy's from the torch generator, so one seed rules all.
    seed = int(torch.randint(2**62, (1,), generator=generator, device=_device(generator)))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n))
    perm = torch.randperm(n, generator=generator, device=_device(generator))
    return mix_frequency_statistics(x, lam, perm)


class DeviceImpulseAugmentation(nn.Module):
    """DIR, and ADIR when `energy_threshold` is set (paper eq. 3).

    A clip is eligible when its device is in `devices` and, for ADIR, its energy E(x) (sum of squared samples)
    exceeds the threshold; each eligible clip is convolved with probability `p` with a response drawn uniformly
    from the set: full convolution truncated to the clip length, no gain normalisation. Other clips come back
    bit-identical. The waveforms must be at the responses' sample rate.
    """

    def __init__(
        self,
        responses: ImpulseResponses,
        p: float,
        devices: Sequence[str] = ("a",),
        energy_threshold: float | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise PipelineError(f"DIR probability {p} is not in [0, 1]")
        unknown = sorted(set(devices) - set(DEVICES))
        if unknown:
            raise PipelineError(f"DIR devices: unknown device(s) {', '.join(unknown)} (known: {', '.join(DEVICES)})")
        self.p = p
        self.devices = tuple(devices)
        self.energy_threshold = energy_threshold
        self.names = list(responses.names)
        self.sample_rate = responses.sample_rate
        self.register_buffer("responses", torch.from_numpy(responses.responses).float(), persistent=False)
        self._spectra: dict[tuple[int, torch.device], torch.Tensor] = {}

    def extra_repr(self) -> str:
        gate = "" if self.energy_threshold is None else f", energy_threshold={self.energy_threshold}"
        return f"{len(self.names)} responses at {self.sample_rate} Hz, p={self.p}, devices={self.devices}{gate}"

    def choose(
        self, waves: torch.Tensor, devices: Sequence[str], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Per clip, the index of the response to apply, or -1 to leave the clip untouched."""
        n = waves.shape[0]
        if len(devices) != n:
            raise ValueError(f"{len(devices)} device names for {n} clips")
        # Draw for every clip whether eligible or not: a batch's draws never depend on its contents.
        draws = uniform(n, generator)
        picks = torch.randint(len(self.names), (n,), generator=generator, device=_device(generator))
        eligible = torch.tensor([device in self.devices for device in devices], device=draws.device)
        if self.energy_threshold is not None:
            eligible &= (clip_energy(waves) > self.energy_threshold).to(draws.device)
        return torch.where(eligible & (draws < self.p), picks, -1).to(waves.device)

    def forward(
        self, waves: torch.Tensor, devices: Sequence[str], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, samples) waves -> (augmented waves, chosen response per clip or -1)."""
        chosen = self.choose(waves, devices, generator)
        return self.convolve(waves, chosen), chosen

    def _response_spectra(self, n_fft: int, device: torch.device) -> torch.Tensor:
        key = (n_fft, device)
        if key not in self._spectra:
            self._spectra[key] = torch.fft.rfft(self.responses.to(device), n=n_fft)
        return self._spectra[key]

    def convolve(self, waves: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Convolve row i with response `chosen[i]` where it is >= 0: batched FFTs of one fast size."""
        rows = (chosen >= 0).nonzero().flatten()
        if rows.numel() == 0:
            return waves
        samples = waves.shape[1]
        # Linear (not circular) convolution needs samples + response - 1 points; a 2/3/5-smooth size is fast.
        n_fft = scipy.fft.next_fast_len(samples + self.responses.shape[1] - 1, real=True)
        spectra = self._response_spectra(n_fft, waves.device)
        out = waves.clone()
        for part in row_chunks(rows.numel(), waves.device, DIR_CHUNK_CLIPS):
            selected = rows[part]
            spectrum = torch.fft.rfft(waves[selected].float(), n=n_fft)
            spectrum *= spectra[chosen[selected]]
            out[selected] = torch.fft.irfft(spectrum, n=n_fft)[:, :samples].to(out.dtype)
        return out
