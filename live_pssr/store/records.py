"""Per-frame records: column names, dtypes, status codes, and the growable in-memory table.

Columns (one 1-D zarr array each under ``frames/``; times in seconds since the run's start on the
host's monotonic clock, except ``camera_time_ms`` which is the camera's own):

=================  =======  =====================================================
index              int64    frame index (position on the t axis)
camera_time_ms     float64  camera/elapsed time of the exposure
received_s         float64  handed to live-pssr (hook/source)
raw_written_s      float64  raw chunk on disk
enhance_start_s    float64  network started on it (NaN if never)
enhance_end_s      float64  enhanced chunk on disk (NaN if never)
latency_ms         float64  enhance_end - received (NaN if never enhanced)
status             uint8    :class:`FrameStatus`
=================  =======  =====================================================
"""

from __future__ import annotations

import enum
import threading

import numpy as np


class FrameStatus(enum.IntEnum):
    """What happened to a frame's enhancement."""

    PENDING = 0  #: raw saved, not enhanced (yet)
    LIVE = 1  #: enhanced during acquisition from the in-memory stream
    AFTER = 2  #: enhanced from the raw frames on disk (backlog worked off)
    SKIPPED = 3  #: preview policy: a newer frame was enhanced instead
    FAILED = 4  #: the enhancer raised on this frame (see the run log)


STATUS = {s.value: s.name.lower() for s in FrameStatus}

COLUMNS: dict[str, np.dtype] = {
    "index": np.dtype("<i8"),
    "camera_time_ms": np.dtype("<f8"),
    "received_s": np.dtype("<f8"),
    "raw_written_s": np.dtype("<f8"),
    "enhance_start_s": np.dtype("<f8"),
    "enhance_end_s": np.dtype("<f8"),
    "latency_ms": np.dtype("<f8"),
    "status": np.dtype("u1"),
}
FILL = {"index": -1, "status": 0}  # floats: NaN
ROWS_PER_CHUNK = 1024


def fill_value(name: str) -> float | int:
    return FILL.get(name, float("nan"))


class RecordTable:
    """Growable columns, written by several threads, flushed chunk-wise by the store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cols = {k: np.full(ROWS_PER_CHUNK, fill_value(k), dtype=d) for k, d in COLUMNS.items()}
        self.dirty_chunks: set[int] = set()

    def _ensure(self, index: int) -> None:
        cap = len(self.cols["index"])
        if index >= cap:
            new = max(cap * 2, (index // ROWS_PER_CHUNK + 1) * ROWS_PER_CHUNK)
            for k, a in self.cols.items():
                b = np.full(new, fill_value(k), dtype=a.dtype)
                b[:cap] = a
                self.cols[k] = b

    def set(self, row: int, /, **values: float | int) -> None:
        """Set columns of ``row`` (thread-safe)."""
        with self.lock:
            self._ensure(row)
            for k, v in values.items():
                self.cols[k][row] = v
            self.dirty_chunks.add(row // ROWS_PER_CHUNK)

    def get(self, index: int, name: str) -> float | int:
        with self.lock:
            return self.cols[name][index] if index < len(self.cols[name]) else fill_value(name)

    def column(self, name: str, n: int) -> np.ndarray:
        with self.lock:
            return self.cols[name][:n].copy()
