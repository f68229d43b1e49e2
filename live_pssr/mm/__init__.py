"""Micro-Manager integration: a simulated camera for a real MMCore, cores, pycromanager, MDA runs.

Modules (imported lazily: ``import live_pssr.mm`` does not load pymmcore-plus):

* :mod:`~live_pssr.mm.camera` -- :class:`SimulatedCamera`, a unicore Python camera device serving
  the simulated microscope; :mod:`~live_pssr.mm.stages` -- its z drive and XY stage.
* :mod:`~live_pssr.mm.core` -- :func:`simulated_core`, :func:`load_core` (a ``.cfg`` file),
  :func:`core_metadata`.
* :mod:`~live_pssr.mm.pycromanager_bridge` -- pycromanager's Python backend on a ``UniMMCore``
  (:class:`SnakeUniMMCore`, :func:`pycromanager_backend`), version-pinned.

The live session that takes these cores' frames, and the MDA runner, are in :mod:`live_pssr.live`;
the series layout of its stores in :mod:`live_pssr.store.series`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SimulatedCamera": "camera",
    "SimulatedFocus": "stages",
    "SimulatedXYStage": "stages",
    "simulated_core": "core",
    "simulated_camera": "core",
    "load_core": "core",
    "core_metadata": "core",
    "SnakeUniMMCore": "pycromanager_bridge",
    "pycromanager_backend": "pycromanager_bridge",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
