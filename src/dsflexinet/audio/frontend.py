"""Log-mel frontends: batched waveforms (N, samples) -> normalised log-mel spectrograms (N, 1, mels, frames).

The recipe (CP-JKU, DCASE 2023): pre-emphasis [-0.97, 1], centre-padded STFT with a symmetric Hann window,
power spectrum, Kaldi-style triangular mel bank, log(mel + 1e-5), then (x + 4.5) / 5. In training mode only,
the bank's fmin/fmax are jittered per batch, and frequency (and, for PaSST, time) masks set bins to what a
log-mel of 0 becomes after the normalisation (the recipe masks before normalising).

Frame counts: the pre-emphasis is a valid 2-tap convolution, so a 32,000-sample clip becomes 31,999 samples and
the centre-padded STFT gives 1 + 31999 // hop frames: 64 at hop 500, 43 at hop 750, 100 at hop 320. These are
the recipe's shapes; no frame is dropped.

Speed on CPU: a Kaldi bank has at most two non-zero weights per FFT bin, so a dense (mels x bins) matmul is
mostly multiplying zeros. The bank is built and applied as blocks of 16 adjacent bands, each a small dense
matmul over only the bins that block touches: identical weights, 15x fewer multiply-adds for the student (8x for
PaSST), and cheap enough to rebuild for every training batch's jittered fmax. Clips go through the STFT a few at
a time on CPU (chunks.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from dsflexinet.audio.augment import mask_along_axis_, uniform
from dsflexinet.audio.chunks import row_chunks
from dsflexinet.errors import PipelineError

BANDS_PER_BLOCK = 16
# CPU clips per STFT call (see chunks.py): 4 clips' frames and spectra take about 8 MB at n_fft 4096.
STFT_CHUNK_CLIPS = 4


@dataclass(frozen=True)
class FrontendConfig:
    """STFT, mel and training-time augmentation settings of one frontend."""

    sample_rate: int = 32000
    n_fft: int = 4096
    win_length: int = 3072
    hop_length: int = 500
    n_mels: int = 256
    fmin: float = 0.0
    fmax: float = 15500.0
    fmin_jitter: float = 0.0  # training: fmin drawn per batch from [fmin, fmin + fmin_jitter]
    fmax_jitter: float = 1000.0  # training: fmax drawn per batch from fmax -+ fmax_jitter / 2
    freq_mask: int = 48  # training: one mask of up to this many mel bins per clip
    time_mask: int = 0  # training: one mask of up to this many frames per clip
    preemphasis: float = 0.97
    log_offset: float = 1e-5
    norm_shift: float = 4.5
    norm_scale: float = 5.0

    def __post_init__(self) -> None:
        nyquist = self.sample_rate / 2
        checks = [
            (self.win_length <= self.n_fft, "win_length must not exceed n_fft"),
            (self.hop_length > 0 and self.n_mels > 0, "hop_length and n_mels must be positive"),
            (0 <= self.fmin and self.fmin + self.fmin_jitter < self.fmax - self.fmax_jitter / 2,
             "fmin (plus its jitter) must stay below fmax (minus its jitter)"),
            (self.fmax + self.fmax_jitter / 2 <= nyquist, f"fmax plus half its jitter must not exceed {nyquist:g} Hz"),
            (self.fmin_jitter >= 0 and self.fmax_jitter >= 0, "jitter ranges must not be negative"),
            (self.freq_mask >= 0 and self.time_mask >= 0, "mask sizes must not be negative"),
        ]  # fmt: skip
        for ok, problem in checks:
            if not ok:
                raise PipelineError(f"frontend config: {problem} ({self})")

    def frames(self, samples: int) -> int:
        """Frames the frontend gives for a clip of `samples` samples (the pre-emphasis drops one)."""
        return 1 + (samples - 1) // self.hop_length


FRONTEND_PRESETS: dict[str, FrontendConfig] = {
    "student": FrontendConfig(),  # 256 x 64 for 1 s
    "cp_resnet": FrontendConfig(hop_length=750),  # 256 x 43
    "passt": FrontendConfig(n_mels=128, n_fft=1024, win_length=800, hop_length=320, time_mask=20),  # 128 x 100
}


def build_frontend(name: str, **overrides) -> MelFrontend:
    """The named preset with pipeline-config overrides (e.g. `freq_mask=0`, `fmax_jitter=0`)."""
    if name not in FRONTEND_PRESETS:
        raise PipelineError(f"unknown frontend preset {name!r} (choose from {', '.join(FRONTEND_PRESETS)})")
    fields = {field.name for field in dataclasses.fields(FrontendConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise PipelineError(f"frontend {name!r}: unknown setting(s) {', '.join(unknown)}")
    return MelFrontend(dataclasses.replace(FRONTEND_PRESETS[name], **overrides))


def _mel(frequency: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(frequency / 700.0)


@dataclass
class BandedBank:
    """Kaldi's triangular mel filters (peak 1, no area normalisation) as blocks of adjacent bands.

    Each block keeps only the FFT bins its bands touch. Kaldi leaves out the Nyquist bin, the STFT's last; it
    gets weight 0, as in the recipe.
    """

    blocks: list[tuple[int, int, torch.Tensor]]  # (first bin, end bin, weights [bins, bands]) in band order
    n_bins: int

    @classmethod
    def kaldi(
        cls, n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float,
        device: torch.device | None = None, bands_per_block: int = BANDS_PER_BLOCK,
    ) -> BandedBank:  # fmt: skip
        low, high = _mel(torch.tensor([fmin, fmax], dtype=torch.float64))
        edges = low + torch.linspace(0.0, 1.0, n_mels + 2, dtype=torch.float64) * (high - low)
        bin_mels = _mel(torch.arange(n_fft // 2, dtype=torch.float64) * (sample_rate / n_fft))
        blocks = []
        for start in range(0, n_mels, bands_per_block):
            stop = min(start + bands_per_block, n_mels)
            # Band j rises from edges[j] to edges[j + 1] and falls to edges[j + 2]: the block's bands are
            # non-zero only strictly between edges[start] and edges[stop + 1].
            first = int(torch.searchsorted(bin_mels, edges[start], right=True))
            end = max(first, int(torch.searchsorted(bin_mels, edges[stop + 1])))
            mels = bin_mels[first:end, None]
            left, centre, right = edges[start:stop], edges[start + 1 : stop + 1], edges[start + 2 : stop + 2]
            weights = torch.minimum((mels - left) / (centre - left), (right - mels) / (right - centre)).clamp(min=0)
            blocks.append((first, end, weights.float().to(device)))
        return cls(blocks, n_fft // 2 + 1)

    def apply(self, power: torch.Tensor) -> torch.Tensor:
        """(..., bins) power -> (..., bands) mel energies."""
        return torch.cat([power[..., first:end] @ weights for first, end, weights in self.blocks], dim=-1)

    def dense(self) -> torch.Tensor:
        """The (bands, bins) matrix, e.g. to compare with other implementations."""
        rows = [torch.nn.functional.pad(weights.T, (first, self.n_bins - end)) for first, end, weights in self.blocks]
        return torch.cat(rows)


class MelFrontend(nn.Module):
    """Waveforms (N, samples) -> log-mel (N, 1, n_mels, frames); random only in training mode."""

    def __init__(self, config: FrontendConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("window", torch.hann_window(config.win_length, periodic=False), persistent=False)
        self._bank_key: tuple | None = None
        self._bank: BandedBank | None = None
        self.banded_bank(config.fmin, config.fmax, self.window.device)  # eval's bank, built before any tracing

    def extra_repr(self) -> str:
        return repr(self.config)

    def train(self, mode: bool = True) -> MelFrontend:
        """Back in eval mode, the eval bank is built at once: after training the kept bank is a jittered one,
        and a trace must find the eval bank ready rather than record its construction."""
        super().train(mode)
        if not mode:
            self.banded_bank(self.config.fmin, self.config.fmax, self.window.device)
        return self

    def banded_bank(self, fmin: float, fmax: float, device: torch.device) -> BandedBank:
        """The bank for (fmin, fmax); the last one is kept, so eval mode builds it once."""
        key = (fmin, fmax, device)
        if key != self._bank_key:
            c = self.config
            self._bank_key, self._bank = key, BandedBank.kaldi(c.n_mels, c.n_fft, c.sample_rate, fmin, fmax, device)
        return self._bank

    def band_limits(self, generator: torch.Generator | None = None) -> tuple[float, float]:
        """(fmin, fmax) of the mel bank for one batch: drawn in training mode, the configured ones in eval."""
        c = self.config
        if not self.training:
            return c.fmin, c.fmax
        draws = uniform(2, generator).tolist()
        return c.fmin + draws[0] * c.fmin_jitter, c.fmax + (draws[1] - 0.5) * c.fmax_jitter

    def forward(self, waves: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if waves.dim() != 2:
            raise ValueError(f"expected waveforms of shape (clips, samples), got {tuple(waves.shape)}")
        c = self.config
        with torch.autocast(waves.device.type, enabled=False):
            waves = waves.float()
            bank = self.banded_bank(*self.band_limits(generator), waves.device)
            mel = waves.new_empty(waves.shape[0], c.n_mels, c.frames(waves.shape[1]))
            for rows in row_chunks(waves.shape[0], waves.device, STFT_CHUNK_CLIPS):
                self._log_mel(waves[rows], bank, out=mel[rows].transpose(1, 2))
            if self.training:
                masked = c.norm_shift / c.norm_scale
                mask_along_axis_(mel, c.freq_mask, 1, generator, value=masked)
                mask_along_axis_(mel, c.time_mask, 2, generator, value=masked)
            return mel.unsqueeze(1)

    def _log_mel(self, waves: torch.Tensor, bank: BandedBank, out: torch.Tensor) -> None:
        """(n, samples) -> normalised log-mel written to `out` (n, frames, mels)."""
        c = self.config
        spectrum = torch.stft(
            reflect_padded_preemphasis(waves, c.preemphasis, c.n_fft // 2), c.n_fft, hop_length=c.hop_length,
            win_length=c.win_length, window=self.window, center=False, return_complex=True,
        ).transpose(1, 2)  # fmt: skip
        # (n, frames, bins) is the STFT's memory order, so squaring in place is one contiguous pass (the strided
        # .real/.imag views run about 1.6x slower) and the bank's matmuls read contiguous rows.
        squares = torch.view_as_real(spectrum).square_()
        power = squares[..., 0] + squares[..., 1]
        out.copy_(bank.apply(power).add_(c.log_offset).log_().add_(c.norm_shift).div_(c.norm_scale))


def reflect_padded_preemphasis(waves: torch.Tensor, preemphasis: float, pad: int) -> torch.Tensor:
    """The pre-emphasised waves with `pad` reflected samples at each end: the input a centre-padded STFT
    (`pad_mode="reflect"`) frames, the same values. Written into one buffer, because PyTorch's reflection pad
    took about 130 us per 4-clip chunk on the CPU where these three copies take 30."""
    length = waves.shape[-1] - 1
    if not torch.jit.is_tracing() and length <= pad:  # exported models take clips of one recorded length
        raise PipelineError(f"a clip of {waves.shape[-1]} samples is too short for an STFT of {2 * pad} points")
    padded = waves.new_empty(waves.shape[0], length + 2 * pad)
    emphasised = padded[:, pad : pad + length]
    torch.add(waves[:, 1:], waves[:, :-1], alpha=-preemphasis, out=emphasised)
    padded[:, :pad] = emphasised[:, 1 : pad + 1].flip(1)
    padded[:, pad + length :] = emphasised[:, length - pad - 1 : length - 1].flip(1)
    return padded


def output_shape(config: FrontendConfig, seconds: float = 1.0) -> tuple[int, int]:
    """(mels, frames) for a clip of `seconds` at the config's rate."""
    return config.n_mels, config.frames(math.floor(seconds * config.sample_rate))
