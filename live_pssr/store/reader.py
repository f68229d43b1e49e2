"""Reading a run store (finished, crashed, or still being written) with zarr-python."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import StoreFormatError
from . import layout
from .records import COLUMNS, STATUS, FrameStatus


@dataclass
class StoreReader:
    """An opened run store.

    ``raw`` and ``enhanced`` are zarr arrays (t, c, y, x); ``n_frames`` is the number of frames
    every part of the store agrees on (after a crash the arrays may be one commit apart; frames
    past ``n_frames`` are ignored). ``records`` holds the per-frame columns cut to ``n_frames``.
    """

    path: Path
    raw: zarr.Array
    enhanced: zarr.Array
    records: dict[str, np.ndarray]
    run: dict[str, Any]
    n_frames: int

    @property
    def closed_cleanly(self) -> bool:
        return self.run.get("state") == "closed"

    def raw_frame(self, t: int) -> np.ndarray:
        return self.raw[t, 0]

    def enhanced_frame(self, t: int) -> np.ndarray:
        return self.enhanced[t, 0]

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
            "run_summary": self.run.get("summary"),
        }


def open_store(path: str | Path) -> StoreReader:
    """Open a live-pssr run store for reading."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreFormatError(
            f"{path} is not a zarr v3 store (no zarr.json)",
            "pass the folder written by `live-pssr demo/acquire` (e.g. run.ome.zarr)",
        )
    try:
        root = zarr.open_group(str(path), mode="r")
        run = dict(root.attrs.get("live_pssr", {}))
        raw = zarr.open_array(str(path / layout.RAW / "0"), mode="r")
        enhanced = zarr.open_array(str(path / layout.ENHANCED / "0"), mode="r")
        cols = {k: zarr.open_array(str(path / "frames" / k), mode="r") for k in COLUMNS}
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise StoreFormatError(
            f"{path} is not a live-pssr run store ({err})",
            "open it with zarr/napari directly, or pass a store written by live-pssr",
        ) from err
    if run.get("format") != "live-pssr-run":
        raise StoreFormatError(f"{path} has no live-pssr run metadata",
                               "pass a store written by `live-pssr demo/acquire/enhance`")
    n = min(raw.shape[0], enhanced.shape[0], *(c.shape[0] for c in cols.values()))
    records = {k: c[:n] for k, c in cols.items()}
    return StoreReader(path=path, raw=raw, enhanced=enhanced, records=records, run=run, n_frames=n)


__all__ = ["FrameStatus", "StoreReader", "open_store"]
