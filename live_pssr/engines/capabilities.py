"""What this machine can run: CPU features, cores, CUDA, and which optional runtimes import.

Used by ``auto`` to decide which candidates are worth timing (e.g. bf16 only where the CPU has
native bf16 instructions: elsewhere it is emulated and 8-100x slower) and by the engines to give a
clear :class:`~live_pssr.errors.EngineUnavailableError` instead of an ImportError.
"""

from __future__ import annotations

import functools
import importlib
import os


@functools.cache
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (empty where unavailable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX); else bf16 is emulated."""
    flags = cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def cpu_cores() -> int:
    """Cores this process may use (respects CPU affinity/containers)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cuda_available() -> bool:
    """True when PyTorch sees a CUDA GPU."""
    import torch

    return bool(torch.cuda.is_available())


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if cuda_available() else "cpu"


def module_available(name: str) -> bool:
    """True when ``name`` imports (the import is attempted once and cached by Python)."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    except Exception:  # a broken install (e.g. missing shared library) counts as unavailable
        return False
    return True


__all__ = ["cpu_cores", "cpu_flags", "cpu_has_native_bf16", "cuda_available", "default_device",
           "module_available"]
