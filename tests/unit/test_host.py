"""runtime/host.py: the CPU's name and flags, read from the host, and what they allow."""

import pytest

from fexport.runtime import host


def _proc_flags():
    try:
        with open("/proc/cpuinfo") as f:
            line = next(line for line in f if line.startswith("flags"))
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags here")
    return set(line.split(":", 1)[1].split())


def test_the_flags_are_the_first_cpus_from_proc_cpuinfo():
    assert host.cpu_flags() == _proc_flags()


def test_precision_flags_are_the_reported_ones_present_in_a_stable_order():
    flags = _proc_flags()
    assert host.precision_flags() == [f for f in host.REPORTED_FLAGS if f in flags]


def test_native_precisions_follow_the_flags():
    flags = _proc_flags()
    assert host.native_bf16() == bool(flags & {"amx_bf16", "avx512_bf16"})
    assert host.has_amx_int8() == ("amx_int8" in flags)
    assert host.fast_int8() == bool(flags & {"amx_int8", "avx512_vnni"})


def test_describe_names_the_cpu_and_its_flags():
    text = host.describe()
    assert host.cpu_name() and text.startswith(host.cpu_name())
    flags = host.precision_flags()
    assert text.endswith(f"({', '.join(flags)})" if flags else "(no AVX-512/AMX/VNNI)")
