"""live-pssr: live PSSR enhancement of low-light microscopy frames while they are acquired.

Public entry points: :class:`LiveSession` (Micro-Manager hooks: pycromanager and pymmcore-plus),
:class:`~live_pssr.pipeline.LivePipeline` (the pipeline itself), :func:`~live_pssr.store.open_store`
(reading a run), :func:`~live_pssr.modelio.load_model` and :class:`~live_pssr.enhancer.Enhancer`.
Imports are lazy so ``import live_pssr`` stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "LiveSession": "live_pssr.live.session",
    "LivePipeline": "live_pssr.pipeline",
    "Enhancer": "live_pssr.enhancer",
    "load_model": "live_pssr.modelio",
    "open_store": "live_pssr.store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'live_pssr' has no attribute {name!r}")


__all__ = ["Enhancer", "LivePipeline", "LiveSession", "__version__", "load_model", "open_store"]
