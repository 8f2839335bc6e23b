"""Training throughput on CPU: clips per CPU-second of one full training step per model, against the FLOP bound.

A step is what a training job runs per batch under Lightning (`build_classifier` from the config's spec, the
job's own Trainer from `make_trainer`): the input chain (time roll, DIR/ADIR, log-mel frontend with masking,
Freq-MixStyle), the model's forward, the loss (eq. 5 with teacher logits for students) and logging, backward,
and the Adam step. Each turn fits a model for `--steps` steps plus one (dropped: the optimizer's state and the
first batch's allocations) and then runs the per-epoch validation pass (900 clips, half the default test split,
at the evaluation batch; as in a job's later validated epochs, it reuses the log-mels the warm-up round's pass
computed and kept, `train.module.ValidationInputs`). The parts of a step are timed with forward hooks on
`inputs` and `model` and Lightning's callback hooks; what is left (loss, logging, Lightning's loop) is `other`.
`sm4_qat` is a step of sm4's QAT fine-tuning: the same job prepared as the QAT job prepares it (conv+BN fused,
weights and activations fake-quantized for the configured engine).

The FLOP bound is the rate a step would run at if all its arithmetic ran at the speed of a large single-thread
fp32 matmul, measured in the same run: GFLOP/s x 1e9 / FLOPs per clip. FLOPs per clip are counted by
torch.utils.flop_counter.FlopCounterMode: the input chain's as they run, the model's forward x 3 for forward and
backward (gradients of the inputs and of the weights each cost a forward; the counter's own backward formula
ignores groups and charges a depthwise convolution's weight gradient as a dense one, 192x too much for sm4's
widest). Matrix products and convolutions only: FFTs and element-wise work count nothing, so the bound flatters
memory-bound parts.

One thread; time is the process's CPU time, so other jobs on a shared machine do not count against a model; the
median step counts. Synthetic waveforms: Gaussian noise whose level varies per clip (log-normal RMS around 0.1,
so ADIR's energy gate passes about half of the device-A clips; the threshold is their mean energy, as `auto` is
the training set's), devices in the default training split's proportions (A 71 %), random teacher logits.
Models take turns, `--repeats` rounds after one warm-up round, so a burst of host noise slows them alike.

`--compare REF` also measures REF (a commit or branch) from a temporary git worktree, in its own process with
that tree's src/ on PYTHONPATH and its own config.yaml, taking turns with this tree model by model:

    .venv/bin/python benchmarks/train_throughput.py [--models sm4 passt_tiny] [--compare bb4f155] [--out t.json]
"""

from __future__ import annotations

import os

# Figures are per core: pin every thread pool to one thread before numpy and torch start theirs.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# name in the tables -> (student run or teacher job of the default config); teachers with DIR, the full chain
MODELS = {
    "sm1": "student:sm1",
    "sm2": "student:sm2",
    "sm3": "student:sm3",
    "sm4": "student:sm4",
    "sm4_qat": "qat:sm4",  # sm4's QAT fine-tuning: the same step with fake-quantized weights and activations
    "passt_tiny": "teacher:passt-dir_fms-s1",
    "cp_resnet_tiny": "teacher:cpresnet-dir_fms-s1",
}
TRAIN_DEVICE_SHARES = {"a": 1000, "b": 80, "c": 80, "s1": 80, "s2": 80, "s3": 80}  # the default training split
VALIDATION_CLIPS = 900  # 100 clips of each of the nine devices: half the default test split (docs/benchmarks.md)
EVAL_BATCH = 256  # CacheDataModule's eval_batch_size
TRAIN_CLIPS = 1400  # clips per training epoch in the default run (for the validation's share of an epoch)
MATMUL_SIZE = 1024
PARTS = ("input", "forward", "backward", "optimizer", "other")


# --- the worker: one tree's code, driven over stdin/stdout by the parent ---------------------------------------


def matmul_gflops(size: int = MATMUL_SIZE, calls: int = 5) -> float:
    """Single-thread fp32 GFLOP/s of a square matmul, the median of `calls`."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(calls):
        start = time.process_time()
        a @ b
        times.append(time.process_time() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


class StepClock:
    """Per-step CPU times of the parts, from forward hooks on the classifier's `inputs` and `model` and from
    Lightning's callback hooks (constructed lazily so that the worker imports Lightning from its own tree)."""

    def __init__(self, module) -> None:
        self.marks: dict[str, float] = {}
        self.steps: list[dict[str, float]] = []
        self.validation: list[float] = []
        for name, part in (("input", module.inputs), ("forward", module.model)):
            part.register_forward_pre_hook(lambda *_, name=name: self.mark(f"{name}_start"))
            part.register_forward_hook(lambda *_, name=name: self.mark(f"{name}_end"))

    def mark(self, name: str) -> None:
        self.marks[name] = time.process_time()

    def finish_step(self) -> None:
        m = self.marks
        total = m["end"] - m["start"]
        parts = {
            "input": m["input_end"] - m["input_start"],
            "forward": m["forward_end"] - m["forward_start"],
            "backward": m["after_backward"] - m["before_backward"],
            # Lightning zeroes the gradients between training_step and backward, then steps the optimizer
            "optimizer": (m["before_backward"] - m["zero_grad"]) + (m["end"] - m["optimizer_step"]),
        }
        parts["other"] = total - sum(parts.values())
        self.steps.append({"total": total, **parts})
        self.marks = {}


def clock_callback(clock: StepClock):
    import pytorch_lightning as pl

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_index):
            clock.mark("start")

        def on_before_zero_grad(self, trainer, module, optimizer):
            clock.mark("zero_grad")

        def on_before_backward(self, trainer, module, loss):
            clock.mark("before_backward")

        def on_after_backward(self, trainer, module):
            clock.mark("after_backward")

        def on_before_optimizer_step(self, trainer, module, optimizer):
            clock.mark("optimizer_step")

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
            clock.mark("end")
            clock.finish_step()

        def on_validation_start(self, trainer, module):
            clock.mark("validation_start")

        def on_validation_end(self, trainer, module):
            clock.validation.append(time.process_time() - clock.marks.pop("validation_start"))

    return Clock()


def synthetic_batches(clips: int, batch: int, devices: list[str], distils: bool, seed: int) -> list[dict]:
    """Batches as the data module yields them: waves (log-normal levels), labels, device indices, logits."""
    import numpy as np
    import torch

    from dsflexinet.data.tau22 import DEVICES

    rng = np.random.default_rng(seed)
    level = 0.1 * np.exp(0.5 * rng.standard_normal((clips, 1)))
    waves = torch.from_numpy((level * rng.standard_normal((clips, 32000))).astype(np.float32))
    device_index = torch.tensor([DEVICES.index(device) for device in devices])
    labels = torch.from_numpy(rng.integers(0, 10, clips))
    batches = []
    for start in range(0, clips, batch):
        rows = slice(start, start + batch)
        item = {"wave": waves[rows], "label": labels[rows], "device": device_index[rows]}
        if distils:
            item["teacher"] = torch.from_numpy(rng.standard_normal((item["label"].shape[0], 10)).astype(np.float32))
        batches.append(item)
    return batches


def device_mix(shares: dict[str, int], clips: int, rng) -> list[str]:
    names = [device for device, count in shares.items() for _ in range(count)]
    return [names[i] for i in rng.integers(0, len(names), clips)]


def job_spec(config: dict, kind: str, name: str) -> dict:
    """A training job's spec as this tree builds it (student specs are per seed since the seed axis)."""
    from dsflexinet.config import student_spec, teacher_spec

    if kind == "teacher":
        return teacher_spec(config, name)
    try:  # a QAT job fine-tunes with its float student's spec
        return student_spec(config, name, 1)
    except TypeError:  # a tree from before the seed axis
        return student_spec(config, name)


def training_module(spec: dict, responses: Path, energy: Path):
    """The LightningModule of a job, as this tree's training job builds it (before the house refactor the
    threshold file went to the builder; since, the job resolves the spec first)."""
    from dsflexinet import config as config_module
    from dsflexinet.train.module import build_classifier

    if hasattr(config_module, "resolve_job_spec"):
        threshold = json.loads(energy.read_text())["threshold"]
        return build_classifier(config_module.resolve_job_spec(spec, threshold), responses)
    return build_classifier(spec, responses, energy)


def job_trainer(workdir: Path, callbacks: list):
    """This tree's training-job Trainer for one epoch (its files were a directory before the run layout)."""
    from dsflexinet.train.run import make_trainer

    try:
        from dsflexinet.layout import TrainingFiles
    except ImportError:
        return make_trainer(workdir, 1, {"accelerator": "cpu", "devices": 1}, callbacks)
    files = TrainingFiles.under(str(workdir))
    return make_trainer(files, 1, {"accelerator": "cpu", "devices": 1}, callbacks)


class ModelUnderTest:
    """One model of one tree: its classifier as the training job builds it, its batches and its clock."""

    def __init__(self, label: str, job: str, config: dict, workdir: Path, steps: int, seed: int) -> None:
        import numpy as np
        import torch

        from dsflexinet.audio.energy import clip_energy
        from dsflexinet.data.dirs import synthesise_impulse_responses
        from dsflexinet.data.tau22 import DEVICES

        kind, name = job.split(":")
        self.spec = job_spec(config, kind, name)
        self.label, self.workdir = label, workdir / label
        batch = self.spec["schedule"]["batch_size"]
        rng = np.random.default_rng(seed)
        train_devices = device_mix(TRAIN_DEVICE_SHARES, batch * (steps + 1), rng)
        distils = "distillation" in self.spec
        self.train = synthetic_batches(batch * (steps + 1), batch, train_devices, distils, seed)
        test_devices = [DEVICES[i % len(DEVICES)] for i in range(VALIDATION_CLIPS)]
        self.validation = synthetic_batches(VALIDATION_CLIPS, EVAL_BATCH, test_devices, False, seed + 1)
        responses = workdir / "impulse_responses"
        if not responses.is_dir():
            synthetic = config["data"]["impulse_responses"]["synthetic"]
            synthesise_impulse_responses(responses, synthetic["count"], synthetic["seed"])
        energy = workdir / "energy.json"
        waves = torch.cat([item["wave"] for item in self.train])
        energy.write_text(json.dumps({"threshold": float(clip_energy(waves).mean())}))
        torch.manual_seed(seed)
        self.module = training_module(self.spec, responses, energy)
        if kind == "qat":
            from dsflexinet.config import qat_spec
            from dsflexinet.quant.qat import prepare_qat

            self.module.model = prepare_qat(self.module.model, qat_spec(config, name)["backend"])
        self.clock = StepClock(self.module)
        self.batch = batch

    def flops_per_clip(self) -> dict[str, float]:
        """FLOPs per clip of the input chain and of the model's forward and backward (3 x forward)."""
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from dsflexinet.data.tau22 import DEVICES

        item = self.train[0]
        self.module.train()
        devices = [DEVICES[i] for i in item["device"].tolist()]
        with FlopCounterMode(display=False) as inputs:
            with torch.no_grad():
                x = self.module.inputs(item["wave"], devices)
        with FlopCounterMode(display=False) as model:
            with torch.no_grad():
                self.module.model(x)
        n = item["wave"].shape[0]
        return {"input": inputs.get_total_flops() / n, "model": 3 * model.get_total_flops() / n}

    def turn(self) -> dict:
        """Fit one epoch of the prepared batches and validate; the CPU seconds of each step after the first."""
        import warnings

        from torch.utils.data import DataLoader

        self.clock.steps, self.clock.validation = [], []
        trainer = job_trainer(self.workdir, [clock_callback(self.clock)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaders = DataLoader(self.train, batch_size=None), DataLoader(self.validation, batch_size=None)
            trainer.fit(self.module, *loaders)
        return {"steps": self.clock.steps[1:], "validation": self.clock.validation}


def worker(labels: list[str], config_file: Path, steps: int, seed: int) -> None:
    """Serve the parent: one line `turn <label>` in, one JSON line out; `setup` first, `exit` last."""
    import logging

    import pytorch_lightning
    import torch

    from dsflexinet.config import load_config

    torch.set_num_threads(1)
    logging.getLogger(pytorch_lightning.__name__).setLevel(logging.ERROR)
    schema = config_file.parent / "workflow" / "schemas" / "config.schema.yaml"
    config = load_config([config_file], schema)
    with tempfile.TemporaryDirectory() as tmp:
        models = {label: ModelUnderTest(label, MODELS[label], config, Path(tmp), steps, seed) for label in labels}
        reply = {
            label: {"batch": model.batch, "flops_per_clip": model.flops_per_clip()} for label, model in models.items()
        }
        print(json.dumps(reply), flush=True)
        for line in sys.stdin:
            command, *argument = line.split()
            if command == "exit":
                break
            if command == "matmul":
                print(json.dumps({"gflops": matmul_gflops()}), flush=True)
            else:
                print(json.dumps(models[argument[0]].turn()), flush=True)


# --- the parent: takes turns between the trees, summarises -----------------------------------------------------


class Tree:
    """A worker process running this script on one source tree."""

    def __init__(self, name: str, root: Path, labels: list[str], steps: int, seed: int) -> None:
        self.name = name
        env = {**os.environ, "PYTHONPATH": str(root / "src"), "PYTHONWARNINGS": "ignore"}
        command = [sys.executable, __file__, "--worker", "--config", str(root / "config.yaml"),
                   "--steps", str(steps), "--seed", str(seed), "--models", *labels]  # fmt: skip
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.setup = self.read()

    def ask(self, line: str) -> dict:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.read()

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"the worker for {self.name} stopped (see its error output above)")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.write("exit\n")
        self.process.stdin.close()
        self.process.wait()


def summarise(label: str, setup: dict, turns: list[dict], gflops: float) -> dict:
    steps = [step for turn in turns for step in turn["steps"]]
    batch = setup["batch"]
    median = {part: statistics.median(step[part] for step in steps) for part in ("total", *PARTS)}
    flops = setup["flops_per_clip"]
    per_clip = flops["input"] + flops["model"]
    rate = batch / median["total"]
    bound = gflops * 1e9 / per_clip
    validation = statistics.median(seconds for turn in turns for seconds in turn["validation"])
    epoch = TRAIN_CLIPS / rate
    return {
        "batch": batch, "steps": len(steps), "clips_per_cpu_second": rate,
        "step_ms": 1000 * median["total"], "shares": {part: median[part] / median["total"] for part in PARTS},
        "validation_s": validation, "validation_share_of_epoch": validation / (epoch + validation),
        "mflop_per_clip": {key: value / 1e6 for key, value in flops.items()},
        "bound_clips_per_second": bound, "ratio_to_bound": rate / bound,
    }  # fmt: skip


def print_table(name: str, rows: dict, gflops: float) -> None:
    print(f"\n{name}: one thread, matmul {gflops:.1f} GFLOP/s; shares of the median step's parts")
    header = "".join(f"{part:>10}" for part in PARTS)
    print(f"{'model':<15}{'batch':>6}{'clips/s':>9}{'step ms':>9}{header}{'val s':>7}{'val %':>7}"
          f"{'MFLOP/clip':>11}{'bound':>8}{'ratio':>7}")  # fmt: skip
    for label, row in rows.items():
        shares = "".join(f"{100 * row['shares'][part]:>9.1f}%" for part in PARTS)
        mflop = sum(row["mflop_per_clip"].values())
        print(f"{label:<15}{row['batch']:>6}{row['clips_per_cpu_second']:>9.1f}{row['step_ms']:>9.1f}{shares}"
              f"{row['validation_s']:>7.2f}{100 * row['validation_share_of_epoch']:>6.1f}%{mflop:>11.1f}"
              f"{row['bound_clips_per_second']:>8.0f}{100 * row['ratio_to_bound']:>6.1f}%")  # fmt: skip


def git_worktree(ref: str, directory: Path) -> Path:
    tree = directory / "tree"
    result = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref],
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"--compare {ref}: cannot check it out ({result.stderr.strip().splitlines()[-1]})")
    return tree


def measure(trees: list[Tree], labels: list[str], repeats: int) -> dict[str, dict]:
    turns: dict[str, dict[str, list]] = {tree.name: {label: [] for label in labels} for tree in trees}
    gflops: dict[str, list[float]] = {tree.name: [] for tree in trees}
    for round_index in range(repeats + 1):  # round 0 warms up
        order = trees if round_index % 2 == 0 else trees[::-1]
        for label in labels:
            for tree in order:
                result = tree.ask(f"turn {label}")
                if round_index:
                    turns[tree.name][label].append(result)
        for tree in order:
            gflops[tree.name].append(tree.ask("matmul")["gflops"])
        print(f"round {round_index}/{repeats} done", file=sys.stderr, flush=True)
    results = {}
    for tree in trees:
        rate = statistics.median(gflops[tree.name])
        rows = {label: summarise(label, tree.setup[label], turns[tree.name][label], rate) for label in labels}
        results[tree.name] = {"matmul_gflops": rate, "models": rows}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=4, help="timed steps per turn (one more runs first)")
    parser.add_argument("--repeats", type=int, default=4, help="rounds after the warm-up round")
    parser.add_argument("--compare", metavar="REF", default=None, help="also time this commit, taking turns")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.models, args.config, args.steps, args.seed)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        trees = [Tree("this tree", REPO, args.models, args.steps, args.seed)]
        if args.compare:
            trees.append(Tree(args.compare, git_worktree(args.compare, Path(tmp)), args.models, args.steps, args.seed))
        try:
            results = measure(trees, args.models, args.repeats)
        finally:
            for tree in trees:
                tree.close()
            if args.compare:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(Path(tmp) / "tree")])
    from dsflexinet.machine import describe_machine, machine_label

    machine = describe_machine()  # the workers' too: they run here, with one thread each
    print(f"\nmachine: {machine_label(machine)}")
    for name, result in results.items():
        print_table(name, result["models"], result["matmul_gflops"])
    if args.compare:
        before, after = results[args.compare]["models"], results["this tree"]["models"]
        print(f"\nclips per CPU-second, {args.compare} -> this tree")
        for label in args.models:
            old, new = before[label]["clips_per_cpu_second"], after[label]["clips_per_cpu_second"]
            print(f"{label:<15}{old:>9.1f}{new:>9.1f}{new / old:>8.2f}x")
    if args.out:
        from dsflexinet.atomic import write_json

        write_json(args.out, {"machine": machine, "threads": 1, "repeats": args.repeats, "steps_per_turn": args.steps,
                              "seed": args.seed, "trees": results})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
