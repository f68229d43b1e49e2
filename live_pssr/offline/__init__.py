"""Offline enhancement of recorded data (``live-pssr enhance``), in-process or scaled out on dask.

Modules, one job each:

- the input: :mod:`live_pssr.stacks`, live-pssr's one reader of recorded stacks (lazy
  frame-by-frame views of tif / zarr / OME-Zarr / run-store inputs, with axes, dtype, pixel size
  and frame interval; replay, :class:`~live_pssr.sources.ReplaySource`, reads through it too);
- :mod:`.outputs`: the output targets (tif, zarr / OME-Zarr image, run store), claimed through
  :mod:`live_pssr.store.claim`, created with their final shape and filled region by region;
- :mod:`.work`: the unit of work (enhance and write a block of frames) and per-worker caches;
- :mod:`.checks`: the optional per-frame checks (consistency, TTA), their records and summary;
- :mod:`.schedule`: running the blocks in-process, on dask threads/processes or a cluster;
- :mod:`.enhance`: the public entry points :func:`enhance_file` and :func:`enhance_array`.

The names below are imported on first use, so reading a stack (``from live_pssr.stacks
import open_input``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..stacks import InputStack, open_input
    from .enhance import EnhanceResult, enhance_array, enhance_file

_NAMES = {"EnhanceResult": ".enhance", "enhance_array": ".enhance", "enhance_file": ".enhance",
          "InputStack": "..stacks", "open_input": "..stacks"}

__all__ = ["EnhanceResult", "InputStack", "enhance_array", "enhance_file", "open_input"]


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        import importlib

        return getattr(importlib.import_module(_NAMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
