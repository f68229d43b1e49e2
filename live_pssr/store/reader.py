"""Reading a run store (finished, crashed, or still being written) with zarr-python."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import StoreFormatError
from . import layout
from .records import COLUMNS, OPTIONAL_COLUMNS, STATUS, FrameStatus, fill_value, index_ranges


@dataclass
class StoreReader:
    """An opened run store.

    ``raw`` and ``enhanced`` are zarr arrays (t, c, y, x); ``n_frames`` is the number of frames
    every part of the store agrees on (after a crash the arrays may be one commit apart; frames
    past ``n_frames`` are ignored). ``records`` holds the per-frame columns cut to ``n_frames``
    (every column of :data:`~live_pssr.store.records.COLUMNS`: those an older store lacks read as
    their fill value). ``consistency``: the consistency map image (``2/0``), None when the run had
    no check.
    """

    path: Path
    raw: zarr.Array
    enhanced: zarr.Array
    records: dict[str, np.ndarray]
    run: dict[str, Any]
    n_frames: int
    consistency: zarr.Array | None = None

    @property
    def closed_cleanly(self) -> bool:
        return self.run.get("state") == "closed"

    def raw_frame(self, t: int) -> np.ndarray:
        return self.raw[t, 0]

    def enhanced_frame(self, t: int) -> np.ndarray:
        return self.enhanced[t, 0]

    def consistency_frame(self, t: int) -> np.ndarray | None:
        """Frame ``t``'s signed consistency map (float32, raw shape); None if it was not checked."""
        if self.consistency is None or not np.isfinite(self.records["consistency"][t]):
            return None
        m = np.asarray(self.consistency[t, 0], dtype=np.float32)
        return None if not np.isfinite(m).any() else m

    def consistency_summary(self) -> dict[str, Any] | None:
        """Score distribution and flagged frames (None when the run had no consistency check)."""
        if "consistency" not in self.run:
            return None
        return consistency_stats(self.records["consistency"], self.records["flagged"],
                                 self.run.get("consistency") or {})

    def status_counts(self) -> dict[str, int]:
        codes = self.records["status"]
        return {name: int((codes == code).sum()) for code, name in STATUS.items()}

    def summary(self) -> dict[str, Any]:
        """What the store holds, as printed by ``live-pssr info``."""
        lat = self.records["latency_ms"]
        lat = lat[np.isfinite(lat)]
        cam = self.records["camera_time_ms"]
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return {
            "path": str(self.path),
            "state": self.run.get("state", "unknown"),
            "closed_cleanly": self.closed_cleanly,
            "frames": self.n_frames,
            "raw": {"shape": [self.n_frames, *self.raw.shape[1:]],
                    "dtype": str(self.raw.dtype)},
            "enhanced": {"shape": [self.n_frames, *self.enhanced.shape[1:]],
                         "dtype": str(self.enhanced.dtype)},
            "upscale": self.run.get("upscale"),
            "pixel_size_um": self.run.get("pixel_size_um"),
            "model": self.run.get("model"),
            "engine": self.run.get("engine"),
            "policy": self.run.get("policy"),
            "status": self.status_counts(),
            "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_ms_p99": float(np.percentile(lat, 99)) if lat.size else None,
            "duration_s": float((cam[-1] - cam[0]) / 1e3) if self.n_frames > 1 else 0.0,
            "bytes_on_disk": size,
            "acquisition": self.run.get("acquisition"),
            "consistency": self.consistency_summary(),
            "run_summary": self.run.get("summary"),
        }


def consistency_stats(scores: np.ndarray, flagged: np.ndarray, settings: dict[str, Any]) -> dict[str, Any]:
    """What ``info`` and the summaries say about a run's consistency records."""
    scores = np.asarray(scores, dtype=np.float64)
    checked = np.isfinite(scores)
    flag_idx = np.flatnonzero((np.asarray(flagged) == 1) & checked)
    s = scores[checked]
    pct = {f"score_p{q}": float(np.percentile(s, q)) if s.size else None for q in (5, 50, 95)}
    return {
        "checked": int(checked.sum()),
        "flagged": int(flag_idx.size),
        "flagged_fraction": float(flag_idx.size / checked.sum()) if checked.any() else None,
        "flagged_frames": index_ranges(flag_idx),
        "score_min": float(s.min()) if s.size else None,
        **pct,
        "every": settings.get("every"),
        "noise": settings.get("noise"),
    }


def _root_attrs(path: Path) -> dict[str, Any]:
    """The attributes in ``path/zarr.json`` ({} when unreadable: zarr reports that below)."""
    try:
        doc = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    attrs = doc.get("attributes", {}) if isinstance(doc, dict) else {}
    return attrs if isinstance(attrs, dict) else {}


def series_streams(path: Path) -> list[str] | None:
    """The stream paths of a series run's root (``live_pssr_series`` index), or None for anything else."""
    index = _root_attrs(path).get("live_pssr_series")
    if not isinstance(index, dict):
        return None
    listed = [str(s.get("path") or s.get("name")) for s in index.get("streams", []) if isinstance(s, dict)]
    found = [p.name for p in sorted(path.iterdir()) if p.is_dir() and p.name not in listed
             and isinstance(_root_attrs(p).get("live_pssr"), dict)]
    return listed + found


def _not_a_store(path: Path) -> StoreFormatError:
    """The error for a path without zarr.json: say what it is instead, and what to pass."""
    usual = "pass the folder written by `live-pssr demo/acquire` (e.g. run.ome.zarr)"
    if not path.exists():
        return StoreFormatError(f"{path} does not exist (not a zarr v3 store)", f"check the path; {usual}")
    if not path.is_dir():
        return StoreFormatError(f"{path} is a file, not a zarr v3 store (a store is a folder)", usual)
    try:
        inside = [p for p in sorted(path.iterdir()) if p.is_dir() and (p / "zarr.json").is_file()
                  and _root_attrs(p).keys() & {"live_pssr", "live_pssr_series"}]
    except OSError:
        inside = []
    if inside:
        names = ", ".join(str(p) for p in inside[:8]) + (" ..." if len(inside) > 8 else "")
        return StoreFormatError(f"{path} is not a zarr v3 store (no zarr.json): it is a folder of stores",
                                f"pass one of them: {names}")
    return StoreFormatError(f"{path} is not a zarr v3 store (no zarr.json)", usual)


def open_store(path: str | Path) -> StoreReader:
    """Open a live-pssr run store for reading."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise _not_a_store(path)
    streams = series_streams(path)
    if streams is not None:
        where = ", ".join(str(path / s) for s in streams[:8]) + (" ..." if len(streams) > 8 else "")
        raise StoreFormatError(
            f"{path} is a series of {len(streams)} run stores (one per stream of a multi-dimensional "
            "run), not a single run store",
            f"open one stream: {where or '(none written yet)'}; `live-pssr info {path}` lists them",
        )
    try:
        root = zarr.open_group(str(path), mode="r")
        run = dict(root.attrs.get("live_pssr", {}))
        raw = zarr.open_array(str(path / layout.RAW / "0"), mode="r")
        enhanced = zarr.open_array(str(path / layout.ENHANCED / "0"), mode="r")
        cols = {k: zarr.open_array(str(path / "frames" / k), mode="r") for k in COLUMNS
                if k not in OPTIONAL_COLUMNS or (path / "frames" / k / "zarr.json").is_file()}
        cmap = (zarr.open_array(str(path / layout.CONSISTENCY / "0"), mode="r")
                if (path / layout.CONSISTENCY / "0" / "zarr.json").is_file() else None)
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise StoreFormatError(
            f"{path} is not a live-pssr run store ({err})",
            "open it with zarr/napari directly, or pass a store written by live-pssr",
        ) from err
    if run.get("format") != "live-pssr-run":
        raise StoreFormatError(f"{path} has no live-pssr run metadata",
                               "pass a store written by `live-pssr demo/acquire/enhance`")
    n = min(raw.shape[0], enhanced.shape[0], *(c.shape[0] for c in cols.values()),
            *([cmap.shape[0]] if cmap is not None else []))
    records = {k: cols[k][:n] if k in cols else np.full(n, fill_value(k), dtype=d)
               for k, d in COLUMNS.items()}
    return StoreReader(path=path, raw=raw, enhanced=enhanced, records=records, run=run, n_frames=n,
                       consistency=cmap)


__all__ = ["FrameStatus", "StoreReader", "consistency_stats", "open_store", "series_streams"]
