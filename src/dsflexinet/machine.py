"""Which machine a number came from: the CPU, the instruction sets torch's kernels dispatch on, torch and threads.

Float training is bit-reproducible on one machine with one thread count, not across CPUs, and speed figures
move between CPUs more than between commits (sm2's int8 speed-up at batch 1: about 2.0x on an AMD EPYC VM, 1.56x
on an Intel Xeon one, the same code). So every model file and evaluation records the machine that made it, the
tables say which machines a run's rows come from, and every benchmark prints it beside its figures.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path

# CPU flags that change which int8, bf16 and float kernels oneDNN and fbgemm run, and so speed and rounding: the
# same int8 sm2 gives logits up to 0.07 apart with oneDNN's AMX kernels and without them.
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16")
ONEDNN_ISA_CAP = "ONEDNN_MAX_CPU_ISA"  # oneDNN runs no kernels above this instruction set when it is set
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo(path: Path = CPUINFO) -> dict[str, str]:
    """The first processor's fields of a Linux /proc/cpuinfo; empty elsewhere."""
    fields: dict[str, str] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def describe_machine(cpuinfo: Path = CPUINFO) -> dict:
    """This process's machine, as model files, evaluations and benchmarks record it."""
    import torch  # here, not at the top: the report jobs that only label machines then never load torch

    fields = _cpuinfo(cpuinfo)
    cpu = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:  # VMs often report a generic name: the model pins it down
        cpu += f" (family {fields['cpu family']}, model {fields['model']})"
    flags = set(fields.get("flags", "").split())
    return {
        "cpu": cpu,
        "kernel_flags": [flag for flag in KERNEL_FLAGS if flag in flags],
        "onednn_max_cpu_isa": os.environ.get(ONEDNN_ISA_CAP),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def machine_label(machine: dict | None) -> str:
    """One line for a recorded machine; records written before machines were recorded read "not recorded"."""
    if not machine:
        return "not recorded"
    flags = "/".join(machine.get("kernel_flags", [])) or "no AVX2"
    if machine.get("onednn_max_cpu_isa"):
        flags += f", oneDNN at most {machine['onednn_max_cpu_isa']}"
    threads = f", {machine['threads']} thread(s)" if machine.get("threads") else ""
    gpu = f", {machine['gpu']}" if machine.get("gpu") else ""
    return f"{machine.get('cpu', '?')} [{flags}], torch {machine.get('torch', '?')}{threads}{gpu}"


def distinct_machines(machines: Iterable[dict | None]) -> list[str]:
    """The labels of the distinct machines among some records, in the order first seen."""
    return list(dict.fromkeys(machine_label(machine) for machine in machines))
