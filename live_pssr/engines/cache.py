"""The on-disk engine cache: exported ONNX graphs, TensorRT engines and ``auto`` decisions.

Everything an engine builds slowly (an ONNX export, a TensorRT engine, an OpenVINO compiled blob)
is stored under :func:`cache_dir` (``$LIVE_PSSR_CACHE``, else the user cache folder that
``platformdirs`` names: ``~/.cache/live-pssr`` or ``$XDG_CACHE_HOME/live-pssr`` on Linux,
``~/Library/Caches/live-pssr`` on macOS, ``%LOCALAPPDATA%\\live-pssr\\Cache`` on Windows) in a file
named by a hash of *everything the artefact depends on* (model hash and spec, input shape,
precision, library versions, GPU): a key never goes stale, it simply stops being asked for.

Files are written atomically (temporary file + rename) so a crash never leaves half a file, and
:func:`cached_artifact` treats a file it cannot load as a miss: it is deleted, rebuilt and the
event logged; a corrupt cache never crashes a run. :func:`machine_fingerprint` (what makes an
artefact machine-specific) and :func:`machine_info` (what a benchmark or evaluation result records
it ran on) describe the machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("live_pssr.engines")
T = TypeVar("T")


CACHE_ENV = "LIVE_PSSR_CACHE"


def cache_root() -> Path:
    """``$LIVE_PSSR_CACHE``, else the platform's user cache folder for live-pssr (not created)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("live-pssr", appauthor=False)


def cache_dir(sub: str | None = None) -> Path:
    """The cache folder (created), or its sub-folder ``sub``."""
    root = cache_root()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(**parts: Any) -> str:
    """A short stable hash of ``parts`` (JSON-serialisable values)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def model_fingerprint(model: Any) -> str:
    """Identity of a :class:`~live_pssr.modelio.LoadedModel`: file hash plus spec."""
    return cache_key(sha256=model.sha256, spec=model.spec.to_json())


def machine_fingerprint() -> dict[str, Any]:
    """What makes timings and compiled artefacts machine-specific (CPU, cores, library versions)."""
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    for mod in ("onnxruntime", "openvino"):
        info[mod] = _version(mod)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, torch and GPU: what a benchmark or evaluation result records it ran on."""
    import psutil
    import torch

    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def atomic_write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: Path) -> dict[str, Any] | None:
    """Read a cached JSON object; ``None`` when missing, and delete-and-``None`` when corrupt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("engine cache file %s is unreadable (%s): ignoring and removing it", path, err)
        path.unlink(missing_ok=True)
        return None
    if not isinstance(data, dict):
        log.warning("engine cache file %s does not hold an object: removing it", path)
        path.unlink(missing_ok=True)
        return None
    return data


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Atomically write ``data`` as JSON."""
    return atomic_write(path, json.dumps(data, indent=2, default=str))


def cached_artifact(
    path: Path,
    build: Callable[[Path], None],
    load: Callable[[Path], T],
    what: str = "artefact",
) -> tuple[T, bool]:
    """Load ``path`` if it exists and loads; otherwise build it (atomically) and load it.

    Parameters
    ----------
    path : Path
        Final file location (its name should be a :func:`cache_key`).
    build : callable
        ``build(tmp_path)`` writes the artefact to ``tmp_path`` (renamed to ``path`` on success).
    load : callable
        ``load(path) -> T``; any exception from loading a *cached* file marks it corrupt: the file
        is removed and rebuilt once.
    what : str
        Name used in log messages.

    Returns
    -------
    (T, bool)
        The loaded artefact and whether it came from the cache.
    """
    if path.exists():
        try:
            return load(path), True
        except Exception as err:  # a corrupt/stale file of any library: rebuild, never crash
            log.warning("cached %s %s could not be loaded (%s: %s): rebuilding it",
                        what, path, type(err).__name__, str(err).splitlines()[0] if str(err) else "")
            path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        build(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return load(path), False


__all__ = [
    "atomic_write",
    "cache_dir",
    "cache_key",
    "cache_root",
    "cached_artifact",
    "machine_fingerprint",
    "machine_info",
    "model_fingerprint",
    "read_json",
    "write_json",
]
