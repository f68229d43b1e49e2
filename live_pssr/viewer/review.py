"""Reading frames back from a run store for review, also while the run is still being written.

:class:`StoreBrowser` keeps one read-only :class:`~live_pssr.store.StoreReader` and re-opens it
when asked for a frame past the frames it knows, or when its view is older than
``refresh_s`` (so records of frames enhanced since, e.g. the backlog, show up); a closed store
is opened once. The store's
writer commits by atomic metadata replacement, so a re-open always sees a consistent prefix.
No Qt here: the viewer calls it from its GUI timer, tests call it directly.

Runs recorded with the data-consistency check hold a third image, the signed error map of each
checked frame at the raw frame's shape (``RUN/2``); :attr:`ReviewFrame.consistency` is that map
(None when the store has none or the frame was not checked), and the frame's record carries its
``consistency`` score, ``consistency_max`` and ``flagged``. :attr:`StoreBrowser.consistency_absent`
says why a store has no map to show (None when it has one).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreFormatError
from ..store import STATUS, StoreReader, open_store

log = logging.getLogger("live_pssr.viewer")

RETRY_S = 0.1  # shortest interval between re-opens when asked for a frame not committed yet


@dataclass(frozen=True)
class ReviewFrame:
    """One frame of a store: both images and its record (column name -> value)."""

    index: int
    raw: np.ndarray
    enhanced: np.ndarray
    record: dict[str, Any]
    #: the signed consistency map (float32, raw shape), or None (no map in the store / not checked)
    consistency: np.ndarray | None = None

    @property
    def status(self) -> str:
        return STATUS.get(int(self.record.get("status", 0)), "unknown")

    @property
    def score(self) -> float | None:
        """The consistency score of this frame (None: not checked)."""
        v = self.record.get("consistency", math.nan)
        return float(v) if v is not None and math.isfinite(v) else None

    @property
    def consistency_max(self) -> float | None:
        v = self.record.get("consistency_max", math.nan)
        return float(v) if v is not None and math.isfinite(v) else None

    @property
    def flagged(self) -> bool:
        return bool(self.record.get("flagged", 0)) and self.score is not None

    @property
    def enhanced_valid(self) -> bool:
        """False where the store holds no enhanced image for this frame (zeros on disk)."""
        return self.status in ("live", "after")


def record_text(frame: ReviewFrame) -> str:
    """One line describing a frame's record, as shown under the time slider."""
    r = frame.record
    parts = [f"frame {frame.index}", f"status {frame.status}"]
    cam = r.get("camera_time_ms", math.nan)
    if math.isfinite(cam):
        parts.append(f"camera {cam / 1e3:.3f} s")
    lat = r.get("latency_ms", math.nan)
    if math.isfinite(lat):
        parts.append(f"latency {lat:.0f} ms")
    start, end = r.get("enhance_start_s", math.nan), r.get("enhance_end_s", math.nan)
    if math.isfinite(start) and math.isfinite(end):
        parts.append(f"enhanced at {end:.2f} s (took {(end - start) * 1e3:.0f} ms)")
    if frame.score is not None:
        parts.append(f"consistency {frame.score:.3f}" + (" FLAGGED" if frame.flagged else ""))
    if not frame.enhanced_valid:
        parts.append("no enhanced image" + (" (newer frame enhanced instead)"
                                             if frame.status == "skipped" else ""))
    return " | ".join(parts)


class StoreBrowser:
    """Random access to the frames of a (possibly growing) run store."""

    def __init__(self, path: str | Path, refresh_s: float = 1.0) -> None:
        self.path = Path(path)
        self.refresh_s = refresh_s
        self._reader: StoreReader | None = None
        self._opened = 0.0

    @property
    def reader(self) -> StoreReader:
        if self._reader is None:
            self.refresh()
        assert self._reader is not None
        return self._reader

    def refresh(self) -> int:
        """Re-open the store; returns the number of frames it now holds.

        A store being written can be caught mid-write (a record chunk being rewritten): then the
        previous view is kept and the next call tries again.
        """
        try:
            reader = open_store(self.path)
        except Exception as err:
            if self._reader is None or isinstance(err, StoreFormatError):
                raise
            log.debug("re-opening %s failed (%s); keeping the previous view", self.path, err)
            return self._reader.n_frames
        self._reader = reader
        self._opened = time.perf_counter()
        return reader.n_frames

    @property
    def n_frames(self) -> int:
        return self.reader.n_frames

    @property
    def upscale(self) -> int:
        r = self.reader
        return int(r.run.get("upscale") or max(1, r.enhanced.shape[-1] // r.raw.shape[-1]))

    @property
    def consistency_absent(self) -> str | None:
        """Why this store has no consistency map to show, or None when it has one."""
        if self.reader.consistency is None:
            return ("this run has no consistency map: it was recorded without the data-consistency "
                    "check (record with it on to see where the enhanced frame departs from the raw one)")
        return None

    @property
    def consistency_threshold(self) -> float | None:
        """The flag level of the run's error maps (noise sigmas), when the store says."""
        cfg = self.reader.run.get("consistency")
        v = cfg.get("threshold") if isinstance(cfg, dict) else None
        return float(v) if isinstance(v, int | float) and math.isfinite(v) and v > 0 else None

    def consistency_counts(self) -> tuple[int, int]:
        """``(checked, flagged)`` frames of the store's records."""
        rec = self.reader.records
        checked = np.isfinite(rec["consistency"])
        return int(checked.sum()), int((rec["flagged"].astype(bool) & checked).sum())

    @property
    def growing(self) -> bool:
        """True while the store is still being written (not closed)."""
        return self.reader.run.get("state") != "closed"

    def frame(self, t: int) -> ReviewFrame:
        """Frame ``t``, or the last committed one if ``t`` is not on disk yet.

        A store being written is re-opened when ``t`` is past its known frames (at most every
        ``RETRY_S``) or when the view is older than ``refresh_s``.
        """
        now = time.perf_counter()
        r = self._reader
        if r is None:
            self.refresh()
        elif r.run.get("state") != "closed":
            age = now - self._opened
            if (t >= r.n_frames and age > RETRY_S) or age > self.refresh_s:
                self.refresh()
        r = self.reader
        if r.n_frames == 0:
            raise IndexError(f"{self.path} holds no frames yet")
        t = int(min(max(t, 0), r.n_frames - 1))
        record = {k: v[t].item() for k, v in r.records.items()}
        cmap = r.consistency_frame(t)
        return ReviewFrame(t, np.asarray(r.raw_frame(t)), np.asarray(r.enhanced_frame(t)), record,
                           None if cmap is None else np.asarray(cmap, dtype=np.float32))
