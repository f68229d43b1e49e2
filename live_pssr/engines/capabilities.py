"""What this machine can run: CPU features, cores, CUDA, and which optional runtimes import.

Used by ``auto`` to decide which candidates are worth timing (e.g. bf16 only where the CPU has
native bf16 instructions: elsewhere it is emulated and 8-100x slower) and by the engines to give a
clear :class:`~live_pssr.errors.EngineUnavailableError` instead of an ImportError.

Optional packages come with the extras of ``pyproject.toml`` (``viewer``: Qt; ``openvino``; ``mm``:
Micro-Manager): :func:`require_extra` checks one before it is used and raises
:class:`MissingExtraError` (a :class:`~live_pssr.errors.LivePSSRError` and an ``ImportError``) that
names the package and the ``pip install "live-pssr[EXTRA]"`` that brings it;
:func:`missing_extra_error` turns an ``ImportError`` of such a package raised anywhere into one
(the CLI does this for every command).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os

from ..errors import LivePSSRError

#: extra -> (what it is for, {importable module: distribution that provides it})
EXTRAS: dict[str, tuple[str, dict[str, str]]] = {
    "viewer": ("the Qt viewer", {"PySide6": "PySide6-Essentials", "shiboken6": "PySide6-Essentials",
                                 "qtpy": "qtpy", "pyqtgraph": "pyqtgraph"}),
    "openvino": ("the OpenVINO engine", {"openvino": "openvino"}),
    "mm": ("Micro-Manager acquisition", {"pymmcore_plus": "pymmcore-plus", "pymmcore": "pymmcore",
                                         "pycromanager": "pycromanager", "useq": "useq-schema"}),
    "gpu": ("the TensorRT engine", {"torch_tensorrt": "torch-tensorrt"}),
}
#: what :func:`require_extra` checks, in order: (any one of these modules, the package that brings it);
#: then it imports the ``_LOAD`` modules (for Qt: the widgets, which load Qt's shared libraries)
_REQUIRES: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "viewer": [(("PySide6", "PyQt6", "PyQt5", "PySide2"), "PySide6-Essentials"), (("qtpy",), "qtpy"),
               (("pyqtgraph",), "pyqtgraph")],
    "openvino": [(("openvino",), "openvino")],
    "mm": [(("pymmcore_plus",), "pymmcore-plus"), (("useq",), "useq-schema")],
    "gpu": [(("torch_tensorrt",), "torch-tensorrt")],
}
_LOAD = {"viewer": ("qtpy.QtWidgets", "pyqtgraph"), "openvino": ("openvino",),
         "mm": ("pymmcore_plus", "useq"), "gpu": ("torch_tensorrt",)}


class MissingExtraError(LivePSSRError, ImportError):
    """An optional package is not installed: ``hint`` is the ``pip install "live-pssr[EXTRA]"``."""

    def __init__(self, message: str, hint: str = "", extra: str = "", package: str = "") -> None:
        super().__init__(message, hint)
        self.extra, self.package = extra, package


def install_hint(extra: str) -> str:
    """``pip install "live-pssr[EXTRA]"`` (what brings the packages of ``extra``)."""
    return f'pip install "live-pssr[{extra}]"'


def _missing(extra: str, package: str, what: str) -> MissingExtraError:
    purpose = EXTRAS[extra][0]
    return MissingExtraError(
        f"{what or purpose} needs {package}, which is not installed "
        f"(it comes with live-pssr's '{extra}' extra: {purpose})",
        install_hint(extra) + (' (or every extra: pip install "live-pssr[all]")' if extra != "gpu" else ""),
        extra=extra, package=package)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra_error(err: ImportError, what: str = "") -> MissingExtraError | None:
    """The :class:`MissingExtraError` for ``err`` when it says an optional package is missing, else None."""
    if isinstance(err, MissingExtraError):
        return err
    top = (getattr(err, "name", None) or "").split(".")[0]
    if not top or _installed(top):
        return None  # not a missing module (a broken install, or a name we do not know)
    for extra, (_, modules) in EXTRAS.items():
        if top in modules:
            return _missing(extra, modules[top], what)
    return None


def require_extra(extra: str, what: str = "") -> None:
    """Raise :class:`MissingExtraError` unless the packages of ``extra`` are installed and load.

    ``what`` names the feature in the message (e.g. ``"live-pssr view"``). A package that is
    installed but fails to load (e.g. Qt without its system libraries) is reported with the
    loader's own message.
    """
    for alternatives, package in _REQUIRES[extra]:
        if not any(_installed(m) for m in alternatives):
            raise _missing(extra, package, what)
    for module in _LOAD[extra]:
        try:
            _import(module)
        except ImportError as err:
            converted = missing_extra_error(err, what)
            if converted is not None:
                raise converted from err
            raise MissingExtraError(
                f"{what or EXTRAS[extra][0]}: {module} is installed but does not load: {err}",
                f"reinstall it: {install_hint(extra)} --force-reinstall"
                + ("; on Linux Qt also needs libEGL, libGL, libxkbcommon, libfontconfig and libdbus "
                   "(apt-get install libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3)"
                   if extra == "viewer" else ""),
                extra=extra, package=module) from err


def _import(module: str) -> None:
    """Import ``module`` the way live-pssr does (OpenVINO without its telemetry: ``engines._openvino``)."""
    if module == "openvino":
        from ._openvino import import_openvino

        import_openvino()
    else:
        importlib.import_module(module)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (empty where unavailable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
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


__all__ = ["EXTRAS", "MissingExtraError", "cpu_cores", "cpu_flags", "cpu_has_native_bf16", "cuda_available",
           "default_device", "install_hint", "missing_extra_error", "module_available", "require_extra"]
