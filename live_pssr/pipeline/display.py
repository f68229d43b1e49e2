"""The one-slot "latest frame" for display: the acquisition and enhancer threads overwrite it,
the GUI timer reads it. Never a queue: a slow viewer simply sees fewer frames."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DisplayFrame:
    """The newest raw frame and the newest enhanced frame (with the raw frame it came from).

    ``seq`` increases with every update, so a viewer can skip redraws when nothing changed.
    ``consistency``, ``score``, ``flagged``, ``threshold``: the consistency check of the enhanced
    frame (:mod:`live_pssr.consistency`; the signed map, float32 at the raw shape), None when it
    was not checked.
    """

    seq: int
    raw_index: int
    raw: np.ndarray
    enhanced_index: int | None = None
    enhanced: np.ndarray | None = None
    enhanced_raw: np.ndarray | None = None
    consistency: np.ndarray | None = None
    score: float | None = None
    flagged: bool | None = None
    threshold: float | None = None


class DisplaySlot:
    """Thread-safe holder of the latest :class:`DisplayFrame`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: DisplayFrame | None = None

    def put_raw(self, index: int, raw: np.ndarray) -> None:
        with self._lock:
            v = self._value
            if v is None:
                self._value = DisplayFrame(1, index, raw)
            else:
                self._value = replace(v, seq=v.seq + 1, raw_index=index, raw=raw)

    def put_enhanced(self, index: int, raw: np.ndarray, enhanced: np.ndarray, check: Any = None) -> None:
        """The newest enhanced frame, the raw frame it came from and its consistency result."""
        with self._lock:
            v = self._value
            if v is not None and v.enhanced_index is not None and v.enhanced_index > index:
                return  # a newer enhanced frame is already shown (backlog frames arrive late)
            seq = 1 if v is None else v.seq + 1
            raw_index, raw_now = (index, raw) if v is None else (v.raw_index, v.raw)
            self._value = DisplayFrame(
                seq, raw_index, raw_now, index, enhanced, raw,
                consistency=None if check is None else check.signed_map,
                score=None if check is None else float(check.score),
                flagged=None if check is None else bool(check.flagged),
                threshold=None if check is None else float(check.threshold))

    def get(self) -> DisplayFrame | None:
        with self._lock:
            return self._value
