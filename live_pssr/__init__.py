"""live-pssr: live PSSR enhancement of low-light microscopy frames while they are acquired.

Public entry points: :class:`LiveSession` (Micro-Manager hooks: pycromanager and pymmcore-plus),
:class:`~live_pssr.pipeline.LivePipeline` (the pipeline itself), :func:`~live_pssr.store.open_store`
(reading a run), :func:`~live_pssr.modelio.load_model` and :class:`~live_pssr.enhancer.Enhancer`.
Imports are lazy so ``import live_pssr`` stays fast; ``__version__`` comes from the installed
package's metadata (``pyproject.toml``'s version: one place to bump).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "LiveSession": "live_pssr.live.session",
    "LivePipeline": "live_pssr.pipeline",
    "Enhancer": "live_pssr.enhancer",
    "load_model": "live_pssr.modelio",
    "open_store": "live_pssr.store",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("live-pssr")
        except metadata.PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'live_pssr' has no attribute {name!r}")


__all__ = ["Enhancer", "LivePipeline", "LiveSession", "__version__", "load_model", "open_store"]
