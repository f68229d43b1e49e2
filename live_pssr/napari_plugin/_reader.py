"""napari reader for live-pssr run stores (and for a series root of several streams).

What it returns, per stream: ``raw``, ``enhanced`` and, when the store has image ``2``,
``consistency`` (names get `` <stream>`` appended when a run has several streams), each a lazy
``(t, y, x)`` dask array cut to the frames every part of the store agrees on.

Geometry (world coordinates in micrometres and seconds)
-------------------------------------------------------
napari puts a pixel's *centre* at ``index * scale + translate``. Raw pixel ``i`` (size ``s``)
has its centre at ``i * s`` and covers ``[(i - 1/2) s, (i + 1/2) s]``. An enhanced image is ``u``
times finer: pixel ``j`` has size ``s/u`` and must cover ``[-s/2 + j s/u, -s/2 + (j + 1) s/u]``
so that ``u x u`` enhanced pixels tile exactly one raw pixel. Its centre is then
``(j + 1/2) s/u - s/2`` in raw-pixel-centre coordinates, i.e. ``scale = s/u`` and
``translate = -(s/2)(1 - 1/u)`` on each spatial axis (:mod:`._geometry`). The
consistency map has the raw shape and scale (translate 0).

Time: the axis' scale is the real frame interval, the median of the differences of the
per-frame ``frames/camera_time_ms`` (finite ones), else the store's ``frame_interval_s``, else 1 s
(:func:`frame_interval_s`).

Claiming: only a folder whose root ``zarr.json`` has attributes ``live_pssr`` (a run store) or
``live_pssr_series`` (a series root) is ours; for anything else :func:`get_reader` returns
None, so napari's builtin reader (or napari-ome-zarr) keeps every other zarr store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreFormatError
from ..normalize import percentile_range
from ..store.reader import StoreReader, open_store, series_streams
from ..store.records import FrameStatus
from ._geometry import enhanced_translate

LayerData = tuple[Any, dict[str, Any], str]

#: contrast limits: these percentiles of one enhanced frame (and the raw frame it came from)
CONTRAST_PERCENTILES = (0.5, 99.8)
#: the consistency map's limits: +-this percentile of |map| of one checked frame
CONSISTENCY_PERCENTILE = 99.5
#: RGBA stops of the consistency map's diverging colormap: blue (-), transparent at 0, red (+)
DIVERGING = [[0.15, 0.35, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0], [1.0, 0.2, 0.1, 1.0]]
DIVERGING_NAME = "live-pssr diverging"


def root_kind(path: str | Path) -> str | None:
    """``"run"`` or ``"series"`` for a live-pssr store root, None for anything else."""
    doc = Path(path) / "zarr.json"
    try:
        attrs = json.loads(doc.read_text(encoding="utf-8")).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(attrs, dict):
        return None
    if isinstance(attrs.get("live_pssr_series"), dict):
        return "series"
    if isinstance(attrs.get("live_pssr"), dict):
        return "run"
    return None


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader contribution: :func:`read_run` for live-pssr stores, None for anything else."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    if not paths or any(root_kind(p) is None for p in paths):
        return None
    return read_run


def read_run(path: str | list[str]) -> list[LayerData]:
    """Layer data of one or more run stores / series roots (see the module docstring)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        layers.extend(run_layers(p))
    return layers


def run_layers(path: str | Path) -> list[LayerData]:
    """The layers of a run store, or of every stream of a series root."""
    path = Path(path)
    if root_kind(path) == "series":
        names = series_streams(path) or []
        streams = [(name, path / name) for name in names if root_kind(path / name) == "run"]
        if not streams:
            raise StoreFormatError(f"{path} is a series of run stores with no stream written yet",
                                   "open it again once the acquisition has stored a frame")
        suffix = len(streams) > 1
        return [layer for name, p in streams
                for layer in stream_layers(open_store(p), name if suffix else None)]
    return stream_layers(open_store(path))


def frame_interval_s(camera_time_ms: np.ndarray, fallback_s: float | None) -> float:
    """Median frame interval from camera timestamps (finite, positive differences), in seconds.

    Falls back to ``fallback_s`` (the store's ``frame_interval_s``) when fewer than two frames
    have finite timestamps, then to 1.0 (a time axis needs a positive scale).
    """
    cam = np.asarray(camera_time_ms, dtype=np.float64)
    steps = np.diff(cam[np.isfinite(cam)])
    steps = steps[steps > 0]
    if steps.size:
        return float(np.median(steps)) / 1e3
    if fallback_s is not None and np.isfinite(fallback_s) and fallback_s > 0:
        return float(fallback_s)
    return 1.0


def reference_frame(reader: StoreReader) -> int:
    """The frame the contrast limits come from: the newest enhanced one, else the newest."""
    status = reader.records["status"][: reader.n_frames]
    done = np.flatnonzero((status == FrameStatus.LIVE) | (status == FrameStatus.AFTER))
    return int(done[-1]) if done.size else reader.n_frames - 1


def _limits(frame: np.ndarray) -> tuple[float, float]:
    lo, hi = percentile_range(np.asarray(frame), *CONTRAST_PERCENTILES)
    return float(lo), float(hi)


def _consistency_limit(cmap: Any, n: int, records: dict[str, np.ndarray]) -> float:
    """Symmetric limit of the map: a percentile of |map| of the newest checked frame (3 if none)."""
    scores = records.get("consistency")
    checked = np.flatnonzero(np.isfinite(scores[:n])) if scores is not None else np.arange(n)
    for t in checked[::-1][:4]:
        m = np.abs(np.asarray(cmap[int(t), 0], dtype=np.float32))
        m = m[np.isfinite(m)]
        if m.size:
            limit = float(np.percentile(m, CONSISTENCY_PERCENTILE))
            return limit if limit > 0 else 1.0
    return 3.0


def stream_layers(reader: StoreReader, stream: str | None = None) -> list[LayerData]:
    """``raw``, ``enhanced`` (and ``consistency``) layer data of one opened run store."""
    import dask.array as da

    n = reader.n_frames  # frames every array (the map's too) and the records agree on
    cmap = reader.consistency  # image 2, None when the run had no consistency check
    if n == 0:
        raise StoreFormatError(f"{reader.path} holds no frames yet",
                               "open it again once the acquisition has stored a frame")
    run = reader.run
    s = float(run.get("pixel_size_um") or 1.0)
    u = int(run.get("upscale") or round(reader.enhanced.shape[-1] / reader.raw.shape[-1]))
    dt = frame_interval_s(reader.records["camera_time_ms"][:n], run.get("frame_interval_s"))
    shift = enhanced_translate(s, u)
    t_ref = min(reference_frame(reader), n - 1)
    tag = f" {stream}" if stream else ""
    common = {"axis_labels": ("t", "y", "x"), "units": ("second", "micrometer", "micrometer")}
    meta = {"live_pssr": {"path": str(reader.path), "stream": stream, "upscale": u,
                          "pixel_size_um": s, "frame_interval_s": dt, "n_frames": n,
                          "model": run.get("model"), "engine": run.get("engine")}}

    raw = da.from_zarr(reader.raw)[:n, 0]
    enhanced = da.from_zarr(reader.enhanced)[:n, 0]
    layers: list[LayerData] = [
        (raw, {"name": f"raw{tag}", "scale": (dt, s, s), "translate": (0.0, 0.0, 0.0),
               "contrast_limits": _limits(reader.raw[t_ref, 0]), "colormap": "gray",
               "metadata": meta, **common}, "image"),
        (enhanced, {"name": f"enhanced{tag}", "scale": (dt, s / u, s / u),
                    "translate": (0.0, shift, shift),
                    "contrast_limits": _limits(reader.enhanced[t_ref, 0]), "colormap": "gray",
                    "blending": "translucent", "metadata": meta, **common}, "image"),
    ]
    if cmap is not None:
        from napari.utils import Colormap

        limit = _consistency_limit(cmap, n, reader.records)
        diverging = Colormap(DIVERGING, name=DIVERGING_NAME, display_name=DIVERGING_NAME)
        layers.append(
            (da.from_zarr(cmap)[:n, 0].astype(np.float32),
             {"name": f"consistency{tag}", "scale": (dt, s, s), "translate": (0.0, 0.0, 0.0),
              "contrast_limits": (-limit, limit), "colormap": diverging, "blending": "translucent",
              "opacity": 0.5, "metadata": meta, **common}, "image"))
    return layers
