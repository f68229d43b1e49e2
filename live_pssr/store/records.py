"""Per-frame records: column names, dtypes, status codes, and the bounded in-memory table.

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
consistency        float32  consistency score in [0, 1] (NaN: not checked, or unavailable)
consistency_max    float32  largest value of the frame's error map (noise sigmas; NaN: not checked)
flagged            uint8    1: the enhanced frame holds structure the raw frame does not support
=================  =======  =====================================================

The last three come from :mod:`live_pssr.consistency` (:data:`CONSISTENCY_COLUMNS`); stores written
before they existed lack them and read as NaN / 0 (:data:`OPTIONAL_COLUMNS`).
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

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
    "consistency": np.dtype("<f4"),
    "consistency_max": np.dtype("<f4"),
    "flagged": np.dtype("u1"),
}
CONSISTENCY_COLUMNS = ("consistency", "consistency_max", "flagged")
#: columns a store may lack (written by an older live-pssr): they read as their fill value
OPTIONAL_COLUMNS = frozenset(CONSISTENCY_COLUMNS)
FILL = {"index": -1, "status": 0, "flagged": 0}  # floats: NaN
ROWS_PER_CHUNK = 1024


def index_ranges(indices: Iterable[int]) -> str:
    """Sorted frame indices as compact ranges: ``[3, 4, 5, 9]`` -> ``"3-5, 9"`` (logs, metadata)."""
    parts: list[tuple[int, int]] = []
    for i in map(int, indices):
        if parts and parts[-1][1] == i - 1:
            parts[-1] = (parts[-1][0], i)
        else:
            parts.append((i, i))
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)


def fill_value(name: str) -> float | int:
    return FILL.get(name, float("nan"))


class RecordTable:
    """Per-frame columns in chunks of :data:`ROWS_PER_CHUNK` rows, written by several threads.

    Memory stays bounded over any run length: a chunk that is on disk and unchanged since
    (:meth:`take_dirty` then :meth:`written`) is dropped once more than ``keep`` chunks are in
    memory, and read back through ``load(chunk)`` the next time a row of it changes (a backlog
    frame enhanced long after it was taken).
    """

    def __init__(self, load: Callable[[int], dict[str, np.ndarray]] | None = None, keep: int = 4) -> None:
        self.lock = threading.Lock()
        self._chunks: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._on_disk: set[int] = set()
        self.dirty_chunks: set[int] = set()
        self._load, self._keep = load, max(1, keep)

    def _chunk(self, c: int) -> dict[str, np.ndarray]:
        chunk = self._chunks.get(c)
        if chunk is not None:
            self._chunks.move_to_end(c)
            return chunk
        if c in self._on_disk and self._load is not None:
            chunk = {k: np.array(v, dtype=COLUMNS[k]) for k, v in self._load(c).items()}
        else:
            chunk = {k: np.full(ROWS_PER_CHUNK, fill_value(k), dtype=d) for k, d in COLUMNS.items()}
        self._chunks[c] = chunk
        self._evict()
        return chunk

    def _evict(self) -> None:
        if self._load is None:
            return
        for c in list(self._chunks):
            if len(self._chunks) <= self._keep:
                return
            if c not in self.dirty_chunks and c in self._on_disk:
                del self._chunks[c]

    def set(self, row: int, /, **values: float | int) -> None:
        """Set columns of ``row`` (thread-safe)."""
        c, r = divmod(row, ROWS_PER_CHUNK)
        with self.lock:
            chunk = self._chunk(c)
            for k, v in values.items():
                chunk[k][r] = v
            self.dirty_chunks.add(c)

    def get(self, index: int, name: str) -> float | int:
        c, r = divmod(index, ROWS_PER_CHUNK)
        with self.lock:
            if c not in self._chunks and c not in self._on_disk:
                return fill_value(name)
            return self._chunk(c)[name][r]

    def take_dirty(self) -> dict[int, dict[str, np.ndarray]]:
        """Copies of the chunks changed since the last call (for the store's commit)."""
        with self.lock:
            dirty = sorted(self.dirty_chunks)
            self.dirty_chunks.clear()
            return {c: {k: a.copy() for k, a in self._chunks[c].items()} for c in dirty}

    def written(self, chunks: list[int]) -> None:
        """These chunks are on disk now (they may be dropped from memory)."""
        with self.lock:
            self._on_disk.update(chunks)
            self._evict()

    def not_written(self, chunks: list[int]) -> None:
        """A commit of these chunks failed: they are dirty again."""
        with self.lock:
            self.dirty_chunks.update(chunks)
