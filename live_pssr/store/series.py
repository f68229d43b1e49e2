"""Where a Micro-Manager run's frames go: one store, or a series of stores, plus each frame's axes.

Layouts (chosen by :class:`~live_pssr.live.session.LiveSession` at the first frame)
-------------------------------------------------------------------------------
*single*: a time-lapse (frames whose only axis is ``time``, or ``layout="single"``) is one run
store at ``PATH``; frames are ``t = 0, 1, 2, ...`` in arrival order.

*series*: a multi-dimensional run (z, channel, position, grid or custom axes) splits into one
stream per combination of its non-time axes; each stream is a complete run store (its own
pipeline, time axis ``t`` in arrival order)::

    PATH/                     zarr v3 group: attributes["live_pssr_series"] = index below
      position-0_z-0_channel-GFP/     a run store (open_store works on it)
      position-0_z-1_channel-GFP/
      ...

The index lists every stream (``name``, ``path``, its constant ``axes``, frame count) and the
session's summary. For pymmcore-plus the split axes are those of the ``MDASequence`` with more
than one value; for pycromanager, every non-time axis present in the first frame (a one-channel
run with a ``channel`` axis is a series of one stream: pass ``layout="single"`` to avoid that).

Frame axes
----------
In both layouts every stored frame keeps the Micro-Manager axes it came with: ``STORE/mm/<axis>``
are 1-D int64 zarr arrays indexed by the frame index ``t`` (written when the session closes).
Integer axes hold their index (-1: absent); named axes (channel presets) hold codes into the
``categories`` listed in ``STORE/mm/zarr.json`` (-1: absent). :func:`read_frame_axes` decodes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreFormatError
from .chunks import write_json_atomic
from .reader import StoreReader, open_store

SERIES = {"format": "live-pssr-series", "version": 1}
AXES = {"format": "live-pssr-frame-axes", "version": 1}
AXES_GROUP = "mm"


def write_series_index(path: Path, streams: list[dict[str, Any]], session: dict[str, Any],
                       state: str) -> None:
    """Write (replace atomically) the series group's ``zarr.json`` with its index."""
    path.mkdir(parents=True, exist_ok=True)
    attrs = {"live_pssr_series": {**SERIES, "state": state, "streams": streams, "session": session}}
    write_json_atomic(path / "zarr.json", {"zarr_format": 3, "node_type": "group", "attributes": attrs})


def write_frame_axes(store_path: Path, columns: dict[str, list[Any]], n_frames: int) -> None:
    """Write each frame's axes as ``STORE/mm/<axis>`` columns (see module docstring)."""
    import zarr

    group = zarr.open_group(str(store_path / AXES_GROUP), mode="w")
    described: dict[str, Any] = {}
    for axis, values in columns.items():
        values = list(values[:n_frames]) + [None] * max(0, n_frames - len(values))
        named = any(isinstance(v, str) for v in values)
        if named:
            categories = sorted({str(v) for v in values if v is not None})
            code = {c: i for i, c in enumerate(categories)}
            data = np.array([-1 if v is None else code[str(v)] for v in values], dtype=np.int64)
            described[axis] = {"kind": "name", "categories": categories}
        else:
            data = np.array([-1 if v is None else int(v) for v in values], dtype=np.int64)
            described[axis] = {"kind": "index"}
        arr = group.create_array(axis, shape=(n_frames,), dtype="int64", chunks=(max(n_frames, 1),),
                                 fill_value=-1, dimension_names=("t",))
        if n_frames:
            arr[:] = data
    group.attrs["live_pssr"] = {**AXES, "axes": described}


def read_frame_axes(store_path: str | Path) -> dict[str, list[Any]]:
    """Each stored frame's Micro-Manager axes: ``{axis: [value per frame index]}`` (None: absent)."""
    import zarr

    path = Path(store_path) / AXES_GROUP
    if not (path / "zarr.json").is_file():
        return {}
    group = zarr.open_group(str(path), mode="r")
    described = dict(group.attrs.get("live_pssr", {})).get("axes", {})
    out: dict[str, list[Any]] = {}
    for axis, info in described.items():
        codes = np.asarray(group[axis][:])
        if info.get("kind") == "name":
            cats = info["categories"]
            out[axis] = [None if c < 0 else cats[c] for c in codes.tolist()]
        else:
            out[axis] = [None if c < 0 else c for c in codes.tolist()]
    return out


@dataclass
class SeriesReader:
    """The stores of a Micro-Manager run: ``streams[name]`` and the axes each one holds."""

    path: Path
    streams: dict[str, StoreReader]
    axes: dict[str, dict[str, Any]]
    index: dict[str, Any]


def open_series(path: str | Path) -> SeriesReader:
    """Open a session's output: a series (one store per stream) or a single store (stream ``run``)."""
    import json

    path = Path(path)
    doc_path = path / "zarr.json"
    if not doc_path.is_file():
        raise StoreFormatError(f"{path} is not a zarr store (no zarr.json)",
                               "pass the store path given to LiveSession(store=...)")
    attrs = json.loads(doc_path.read_text(encoding="utf-8")).get("attributes", {})
    index = attrs.get("live_pssr_series")
    if index is None:
        reader = open_store(path)
        return SeriesReader(path, {"run": reader}, {"run": {}}, {"streams": [], "single": True})
    streams = {s["name"]: open_store(path / s["path"]) for s in index.get("streams", [])}
    axes = {s["name"]: dict(s.get("axes", {})) for s in index.get("streams", [])}
    return SeriesReader(path, streams, axes, index)
