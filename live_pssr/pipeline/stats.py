"""Counters and rolling rates of a running pipeline, and the end-of-run summary."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..store.records import index_ranges


class RollingWindow:
    """Timestamped values over the last ``seconds``: rate and percentiles (thread-safe)."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self._items: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def add(self, value: float = 0.0, t: float | None = None) -> None:
        t = time.perf_counter() if t is None else t
        with self._lock:
            self._items.append((t, value))
            self._trim(t)

    def _trim(self, now: float) -> None:
        while self._items and now - self._items[0][0] > self.seconds:
            self._items.popleft()

    def rate(self) -> float:
        """Events per second over the window (0 with fewer than two events)."""
        with self._lock:
            self._trim(time.perf_counter())
            if len(self._items) < 2:
                return 0.0
            span = self._items[-1][0] - self._items[0][0]
            return (len(self._items) - 1) / span if span > 0 else 0.0

    def percentiles(self, *qs: float) -> list[float | None]:
        with self._lock:
            self._trim(time.perf_counter())
            vals = np.array([v for _, v in self._items])
        return [float(np.percentile(vals, q)) if vals.size else None for q in qs]


class ErrorLog:
    """Distinct error messages with how often each happened and the first frame (bounded)."""

    MAX_DISTINCT = 50

    def __init__(self) -> None:
        self._items: dict[str, list[Any]] = {}  # key -> [count, first frame index or None, message]
        self._dropped = 0
        self._lock = threading.Lock()

    def add(self, message: str, index: int | None = None, key: str | None = None) -> None:
        """Count ``message``; errors of one ``key`` (default: the message) are one line, the first's text."""
        key = message if key is None else key
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                item[0] += 1
            elif len(self._items) < self.MAX_DISTINCT:
                self._items[key] = [1, index, message]
            else:
                self._dropped += 1

    def lines(self) -> list[str]:
        """Each distinct error once: ``message (x N, first on frame I)``."""
        with self._lock:
            out = []
            for n, first, msg in self._items.values():
                extra = [f"x {n}"] if n > 1 else []
                if first is not None:
                    extra.append(f"{'first ' if n > 1 else ''}on frame {first}")
                out.append(f"{msg} ({', '.join(extra)})" if extra else msg)
            if self._dropped:
                out.append(f"... and {self._dropped} more errors of other kinds (see the log)")
            return out

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot for progress lines and the viewer's status bar."""

    state: str  # a RunState (a str enum)
    frames_acquired: int
    raw_written: int
    enhanced_live: int
    enhanced_after: int
    skipped: int
    failed: int
    backlog: int
    raw_queue: int
    enhance_queue: int
    camera_fps: float
    enhance_fps: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    engine: str
    model: str
    store_path: str
    store_bytes: int
    policy: str
    error: str | None = None
    #: the consistency check (0 / None when it is off)
    frames_checked: int = 0
    frames_flagged: int = 0
    last_score: float | None = None

    def line(self) -> str:
        """One-line progress text."""
        lat = "-" if self.latency_p50_ms is None else f"{self.latency_p50_ms:.0f}/{self.latency_p99_ms:.0f}"
        check = (f" | consistency {self.last_score:.2f}, flagged {self.frames_flagged}/{self.frames_checked}"
                 if self.last_score is not None else "")
        return (f"frames {self.frames_acquired} | raw {self.raw_written} | enhanced "
                f"{self.enhanced_live}+{self.enhanced_after} | skipped {self.skipped} | "
                f"backlog {self.backlog} | cam {self.camera_fps:.1f} fps | enh {self.enhance_fps:.1f} fps"
                f" | latency p50/p99 {lat} ms{check}")


def consistency_rows(c: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The summary's lines about the consistency check (none when it was off)."""
    if not c:
        return []
    if not c.get("checked"):
        return [("consistency", f"no frame checked ({c.get('unavailable', 0)} unavailable)")]
    scores = " / ".join("-" if c.get(k) is None else f"{c[k]:.3f}"
                        for k in ("score_p5", "score_p50", "score_p95"))
    rows = [("consistency p5/p50/p95", f"{scores} ({c['checked']} frame(s) checked"
             + (f", {c['unavailable']} unavailable)" if c.get("unavailable") else ")"))]
    if c.get("flagged"):
        rows.append(("FLAGGED", f"{c['flagged']} frame(s) hold structure the raw frames do not support: "
                     f"{c.get('flagged_frames')}"))
    else:
        rows.append(("flagged", "none"))
    return rows


@dataclass(frozen=True)
class Summary:
    """What a run did, printed at the end and stored in the run metadata."""

    frames_acquired: int
    raw_written: int
    enhanced_live: int
    enhanced_after: int
    skipped: int
    failed: int
    pending: int
    duration_s: float
    acquisition_fps: float
    enhance_fps: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    policy: str
    engine: str
    model: str
    store_path: str
    errors: list[str]
    interrupted: bool = False
    #: indices of frames the pipeline took but the store does not hold (a store failure)
    not_stored: list[int] = field(default_factory=list)
    #: why enhancement stopped during the run (None: it ran to the end)
    enhancement_disabled: str | None = None
    #: frames the failed store could not hold, written to ``rescue_path`` instead
    rescued: list[int] = field(default_factory=list)
    rescue_path: str | None = None
    #: the consistency check's tally (:meth:`~live_pssr.pipeline.checking.ConsistencyTally.as_dict`);
    #: None when the check was off
    consistency: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["not_stored"] = self.ranges(self.not_stored)
        d["rescued"] = self.ranges(self.rescued)
        return d

    @staticmethod
    def ranges(indices: list[int]) -> str:
        """``[3, 4, 5, 9]`` -> ``"3-5, 9"`` (compact, for logs and metadata)."""
        return index_ranges(indices)

    def text(self) -> str:
        lat = ("-" if self.latency_p50_ms is None
               else f"{self.latency_p50_ms:.1f} / {self.latency_p99_ms:.1f} ms")
        rows = [
            ("frames acquired", self.frames_acquired),
            ("raw written", self.raw_written),
            ("enhanced live", self.enhanced_live),
            ("enhanced afterwards", self.enhanced_after),
            ("skipped (preview)", self.skipped),
            ("failed", self.failed),
            ("not enhanced", self.pending),
            ("acquisition fps", f"{self.acquisition_fps:.1f}"),
            ("enhancement fps", f"{self.enhance_fps:.1f}"),
            ("latency p50 / p99", lat),
            ("policy / engine", f"{self.policy} / {self.engine}"),
            ("model", self.model),
            ("store", self.store_path),
        ]
        rows += consistency_rows(self.consistency)
        if self.rescued:
            rows.append(("RESCUED", f"{len(self.rescued)} frame(s) the store could not hold "
                         f"({self.ranges(self.rescued)}) are in {self.rescue_path}"))
        if self.not_stored:
            rows.append(("NOT STORED", f"{len(self.not_stored)} frame(s): {self.ranges(self.not_stored)}"))
        if self.enhancement_disabled:
            rows.append(("enhancement", self.enhancement_disabled))
        rows += [("error" if i == 0 else "", e) for i, e in enumerate(self.errors)]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
