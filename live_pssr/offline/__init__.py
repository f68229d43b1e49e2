"""Offline enhancement of recorded data (``live-pssr enhance``), in-process or scaled out on dask.

Modules, one job each:

- :mod:`.inputs`: lazy frame-by-frame views of tif / zarr / OME-Zarr / run-store inputs, with axes,
  dtype, pixel size and frame interval;
- :mod:`.outputs`: the output targets (tif, zarr / OME-Zarr image, run store), created with their
  final shape and filled region by region;
- :mod:`.work`: the unit of work (enhance and write a block of frames) and per-worker caches;
- :mod:`.schedule`: running the blocks in-process, on dask threads/processes or a cluster;
- :mod:`.enhance`: the public entry points :func:`enhance_file` and :func:`enhance_array`.
"""

from __future__ import annotations

from .enhance import EnhanceResult, enhance_array, enhance_file
from .inputs import InputStack, open_input

__all__ = ["EnhanceResult", "InputStack", "enhance_array", "enhance_file", "open_input"]
