"""Machine records: what model files, evaluations, tables and benchmarks say about where a number came from."""

from __future__ import annotations

from pathlib import Path

import torch

from dsflexinet.machine import describe_machine, distinct_machines, machine_label

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni sha_ni

processor\t: 1
model name\t: another CPU that must not be read
flags\t\t: amx_int8
"""


def test_the_first_processor_is_described_with_the_flags_kernels_dispatch_on(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    machine = describe_machine(cpuinfo)
    assert machine["cpu"] == "AMD EPYC 7B13 (family 25, model 1)"
    assert machine["kernel_flags"] == ["avx2", "avx512f", "avx512_vnni"]  # amx_int8 is the second CPU's
    assert machine["torch"] == torch.__version__ and machine["threads"] == torch.get_num_threads()
    assert machine_label(machine) == (
        f"AMD EPYC 7B13 (family 25, model 1) [avx2/avx512f/avx512_vnni], torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")  # a cap on oneDNN's kernels changes int8 bits too
    capped = describe_machine(cpuinfo)
    assert capped["onednn_max_cpu_isa"] == "AVX512_CORE_VNNI"
    assert "[avx2/avx512f/avx512_vnni, oneDNN at most AVX512_CORE_VNNI]" in machine_label(capped)


def test_without_a_cpuinfo_the_platform_names_the_cpu(tmp_path: Path) -> None:
    machine = describe_machine(tmp_path / "absent")
    assert machine["cpu"] and machine["kernel_flags"] == []
    assert machine_label(machine).startswith(f"{machine['cpu']} [no AVX2], torch ")


def test_distinct_machines_in_the_order_first_seen(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    epyc = describe_machine(cpuinfo)
    other = epyc | {"cpu": "Intel(R) Xeon(R) Processor (family 6, model 143)", "threads": 1}
    assert distinct_machines([None, epyc, other, epyc, None]) == ["not recorded", machine_label(epyc),
                                                                  machine_label(other)]  # fmt: skip
    assert machine_label(other).endswith(f"torch {torch.__version__}, 1 thread(s)")
