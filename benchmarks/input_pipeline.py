"""Throughput of the training input pipeline on CPU, batched vs a straightforward per-clip baseline.

Both do the same work per batch, with every augmentation switched on (p = 1): time roll (+-4000 samples),
ADIR on device-A clips (threshold 0, so every clip passes the energy gate and is convolved with a random
impulse response), log-mel 256 x 64 (n_fft 4096, window 3072, hop 500), frequency masking (48 bins) and
Freq-MixStyle. The batched pipeline is `dsflexinet.audio.pipeline.TrainingInput`; the baseline handles one
clip at a time with `scipy.signal.convolve` and `torchaudio.transforms.MelSpectrogram` (the same STFT and mel
sizes; torchaudio's own window and HTK bank cost the same), then applies the same Freq-MixStyle to the stacked
batch. Batches alternate between the two so both see the same machine load.

Everything runs on one thread and time is the process's CPU time (`time.process_time`), so clips per CPU-second
is the rate per core and other jobs on a shared machine do not count against either pipeline; the median
batch counts. Wall-clock rates are printed beside it.

    .venv/bin/python benchmarks/input_pipeline.py [--cache results/cache/train.npy] [--out results.json]

Without --cache the clips are Gaussian noise of RMS 0.1 (the cost does not depend on the content). The real
MicIRP set is used when it is found beside the checkout (or at --dirs), else a synthetic set of 66 responses.
"""

from __future__ import annotations

import os

# Figures are per core: pin every thread pool to one thread before numpy, scipy and torch start theirs (numpy's
# BLAS would otherwise run the baseline's dot products on two threads and leave them spinning).
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402
import torchaudio  # noqa: E402

from dsflexinet.audio.augment import DeviceImpulseAugmentation, freq_mixstyle  # noqa: E402
from dsflexinet.audio.frontend import build_frontend  # noqa: E402
from dsflexinet.audio.pipeline import TrainingInput  # noqa: E402
from dsflexinet.data.dirs import ImpulseResponses, load_impulse_responses, synthesise_impulse_responses  # noqa: E402
from dsflexinet.machine import describe_machine, machine_label  # noqa: E402

SAMPLE_RATE = 32000
ROLL = 4000
FREQ_MASK = 48
MIXSTYLE_ALPHA = 0.3
SHARED = Path(os.environ.get("DSFLEXINET_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def load_responses(directory: Path | None) -> tuple[ImpulseResponses, str]:
    if directory is not None:
        return load_impulse_responses(directory, SAMPLE_RATE), str(directory)
    micirp = SHARED / "data" / "micirp"
    if micirp.is_dir():
        return load_impulse_responses(micirp, SAMPLE_RATE), f"MicIRP ({micirp})"
    with tempfile.TemporaryDirectory() as tmp:
        synthesise_impulse_responses(tmp, 66, seed=66)
        return load_impulse_responses(tmp, SAMPLE_RATE), "synthetic (66 responses)"


def load_clips(cache: Path | None, count: int, seed: int) -> tuple[np.ndarray, str]:
    if cache is None:
        rng = np.random.default_rng(seed)
        return (0.1 * rng.standard_normal((count, SAMPLE_RATE))).astype(np.float32), "Gaussian noise, RMS 0.1"
    from dsflexinet.data.cache import WaveformCache

    waves = WaveformCache.open(cache).waves
    return np.array(waves[:count], dtype=np.float32), f"first {count} clips of {cache}"


class PerClipBaseline:
    """The same chain, one clip at a time, with off-the-shelf calls."""

    def __init__(self, responses: ImpulseResponses, seed: int) -> None:
        self.responses = [responses.responses[i, :length] for i, length in enumerate(responses.lengths)]
        self.mel = torchaudio.transforms.MelSpectrogram(
            SAMPLE_RATE, n_fft=4096, win_length=3072, hop_length=500, f_min=0.0, f_max=15500.0, n_mels=256
        )
        self.mask = torchaudio.transforms.FrequencyMasking(FREQ_MASK)
        self.rng = np.random.default_rng(seed)

    def __call__(self, waves: np.ndarray) -> torch.Tensor:
        mels = []
        for wave in waves:
            wave = np.roll(wave, int(self.rng.integers(-ROLL, ROLL + 1)))
            if float(np.dot(wave.astype(np.float64), wave)) > 0.0:  # ADIR gate at threshold 0, p = 1
                response = self.responses[int(self.rng.integers(len(self.responses)))]
                wave = scipy.signal.convolve(wave, response)[: wave.shape[0]]
            x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
            mel = torch.log(self.mel(x[1:] - 0.97 * x[:-1]) + 1e-5)
            mels.append((self.mask(mel) + 4.5) / 5)
        return freq_mixstyle(torch.stack(mels).unsqueeze(1), 1.0, MIXSTYLE_ALPHA)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="waveform cache (.npy) to read batches from")
    parser.add_argument("--dirs", type=Path, default=None, help="impulse-response directory (default: MicIRP)")
    parser.add_argument("--batch", type=int, default=256, help="clips per batch (the recipe's batch size)")
    parser.add_argument("--batches", type=int, default=6, help="timed batches per pipeline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    responses, response_source = load_responses(args.dirs)
    clips, clip_source = load_clips(args.cache, args.batch * (args.batches + 1), args.seed)
    devices = ["a"] * args.batch

    impulse = DeviceImpulseAugmentation(responses, p=1.0, devices=("a",), energy_threshold=0.0)
    batched = TrainingInput(build_frontend("student", freq_mask=FREQ_MASK), impulse, ROLL, 1.0, MIXSTYLE_ALPHA)
    batched.train()
    generator = torch.Generator().manual_seed(args.seed)
    baseline = PerClipBaseline(responses, args.seed)

    def run_batched(batch: np.ndarray) -> torch.Tensor:
        return batched(torch.from_numpy(batch), devices, generator)

    pipelines = {"batched (TrainingInput)": run_batched, "per-clip baseline": baseline}
    cpu: dict[str, list[float]] = {name: [] for name in pipelines}
    wall: dict[str, list[float]] = {name: [] for name in pipelines}
    shapes = {}
    for index in range(args.batches + 1):  # batch 0 warms up caches and allocators
        batch = clips[index * args.batch : (index + 1) * args.batch]
        for name, pipeline in pipelines.items():
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            shapes[name] = tuple(pipeline(batch).shape)
            if index:
                cpu[name].append(time.process_time() - start_cpu)
                wall[name].append(time.perf_counter() - start_wall)

    per_core = {name: args.batch / statistics.median(values) for name, values in cpu.items()}
    per_wall = {name: args.batch / statistics.median(values) for name, values in wall.items()}
    speedup = per_core["batched (TrainingInput)"] / per_core["per-clip baseline"]
    machine = describe_machine()
    print(f"machine: {machine_label(machine)}")
    print(f"clips: {clip_source}; responses: {response_source}; batch {args.batch}, {args.batches} timed batches, "
          "one thread")  # fmt: skip
    print(f"{'pipeline':<26}{'output':>20}{'clips/CPU-s':>13}{'CPU ms/clip':>13}{'clips/s wall':>14}")
    for name, rate in per_core.items():
        print(f"{name:<26}{str(shapes[name]):>20}{rate:>13.1f}{1000 / rate:>13.2f}{per_wall[name]:>14.1f}")
    print(f"speed-up per core: {speedup:.2f}x")
    if args.out:
        from dsflexinet.atomic import write_json

        write_json(args.out, {"machine": machine, "clips": clip_source, "responses": response_source,
                              "batch": args.batch, "threads": 1, "clips_per_cpu_second": per_core,
                              "clips_per_wall_second": per_wall, "cpu_seconds": cpu, "wall_seconds": wall,
                              "speedup_per_core": speedup})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
