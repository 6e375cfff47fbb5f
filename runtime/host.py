"""What this machine's CPU is and can do natively, asked of the host (never assumed): its
name, its flags, and the reduced precisions it computes in hardware."""

from __future__ import annotations

import functools
import platform

# Flags that decide which precisions run natively, as /proc/cpuinfo spells them.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
REPORTED_FLAGS = ("avx2", "avx512f", *BF16_FLAGS, *INT8_FLAGS, "amx_tile")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict:
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_name() -> str:
    return _cpuinfo().get("model name") or platform.processor() or "unknown CPU"


def cpu_flags() -> set[str]:
    return set(_cpuinfo().get("flags", "").split())


def precision_flags() -> list[str]:
    """The flags that matter for speed and precision, in a stable order (for names, reports)."""
    return [flag for flag in REPORTED_FLAGS if flag in cpu_flags()]


def native_bf16() -> bool:
    """bf16 arithmetic in hardware (AMX or AVX-512 BF16); elsewhere it would be emulated."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS)


def has_amx_int8() -> bool:
    """Intel AMX tiles for INT8 (Sapphire Rapids and later)."""
    return "amx_int8" in cpu_flags()


def int8_dot_products() -> bool:
    """INT8 dot products without 16-bit saturation (VNNI or AMX). Without them (AVX2 alone, or
    AVX-512 without VNNI) x86 INT8 kernels add pairs of u8 x s8 products into int16, which
    saturates on full 8-bit weights."""
    return any(flag in cpu_flags() for flag in INT8_FLAGS)


def fast_int8() -> bool:
    """INT8 dot products in hardware that OpenVINO's kernels use: AMX or AVX-512 VNNI."""
    return bool(cpu_flags() & {"amx_int8", "avx512_vnni"})


def describe() -> str:
    flags = precision_flags()
    return f"{cpu_name()} ({', '.join(flags) if flags else 'no AVX-512/AMX/VNNI'})"
