"""The status bar's text, made from a :class:`~live_pssr.pipeline.PipelineStats` (no Qt).

Fields, in order: state, camera fps, enhancement fps, latency p50/p99 (the pipeline's rolling
window, last 5 s), queue depth (raw queue + enhancement queue + backlog), frames skipped in
preview, display fps (the viewer's own redraws of raw and of enhanced frames), engine and
model, store path and size.

The consistency field (:func:`consistency_status`) says how many checked frames the run's
data-consistency check flagged, the newest score, and the shown frame's score; its ``level``
picks one of :data:`CONSISTENCY_STYLES`: ``off`` (no check), ``ok``, ``warn`` (frames of this run
were flagged, not the shown one) and ``flagged`` (the shown frame is: white on red).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..pipeline import PipelineStats


def format_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KB'`` (powers of 1024)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover - the loop returns


def status_fields(stats: PipelineStats, raw_fps: float, enhanced_fps: float,
                  state: str | None = None) -> dict[str, str]:
    """The status bar's labels for one update.

    ``raw_fps``/``enhanced_fps`` are the viewer's redraw rates; ``state`` overrides the
    pipeline's state text.
    """
    lat = ("-" if stats.latency_p50_ms is None
           else f"{stats.latency_p50_ms:.0f}/{stats.latency_p99_ms:.0f} ms")
    queue = stats.raw_queue + stats.enhance_queue + stats.backlog
    return {
        "state": state or stats.state,
        "camera": f"camera {stats.camera_fps:.1f} fps",
        "enhance": f"enhance {stats.enhance_fps:.1f} fps",
        "latency": f"latency p50/p99 {lat}",
        "queue": f"queue {queue}" + (f" (backlog {stats.backlog})" if stats.backlog else ""),
        "skipped": f"skipped {stats.skipped}",
        "display": f"display {raw_fps:.0f}/{enhanced_fps:.0f} fps",
        "engine": f"{stats.engine} | {stats.model}",
        "store": f"{stats.store_path} ({format_bytes(stats.store_bytes)})",
    }


def review_fields(summary: dict[str, Any]) -> dict[str, str]:
    """Status labels for a store opened for review (``StoreReader.summary()``)."""
    counts = summary.get("status", {})
    lat = ("-" if summary.get("latency_ms_p50") is None
           else f"{summary['latency_ms_p50']:.0f}/{summary['latency_ms_p99']:.0f} ms")
    run = summary.get("run_summary") or {}
    return {
        "state": f"review ({summary.get('state', 'unknown')})",
        "camera": f"camera {run.get('acquisition_fps', 0.0):.1f} fps",
        "enhance": f"enhance {run.get('enhance_fps', 0.0):.1f} fps",
        "latency": f"latency p50/p99 {lat}",
        "queue": f"frames {summary.get('frames', 0)}",
        "skipped": f"skipped {counts.get('skipped', 0)}",
        "display": "",
        "engine": f"{summary.get('engine') or '-'} | {summary.get('model') or '-'}",
        "store": f"{summary.get('path')} ({format_bytes(summary.get('bytes_on_disk', 0))})",
    }


#: Qt style sheets of the consistency field, by level
CONSISTENCY_STYLES = {
    "off": "color: gray",
    "ok": "",
    "warn": "color: #e07b00; font-weight: bold",
    "flagged": "background-color: #c62828; color: white; font-weight: bold",
}


@dataclass(frozen=True)
class ConsistencyStatus:
    """The status bar's consistency field: its text, level (a key of CONSISTENCY_STYLES), tooltip."""

    text: str
    level: str
    tip: str

    @property
    def style(self) -> str:
        return CONSISTENCY_STYLES[self.level]


def _score(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def consistency_status(checked: int, flagged: int, *, frame: int | None = None,
                       frame_score: float | None = None, frame_flagged: bool | None = None,
                       frame_max: float | None = None, threshold: float | None = None,
                       last_score: float | None = None, enabled: bool = True) -> ConsistencyStatus:
    """The consistency field for ``checked`` frames of which ``flagged`` were flagged.

    ``frame``/``frame_score``/``frame_flagged``/``frame_max``: the shown enhanced frame (its
    score, flag and error-map maximum; None: not checked); ``threshold``: the flag level;
    ``last_score``: the newest checked frame's score (live); ``enabled``: the run checks frames.
    """
    tip = ("data consistency: does the enhanced frame explain the raw frame within the camera's "
           "noise? 'N of M flagged': of the M frames checked so far, N add or remove structure the raw "
           "frame does not support; score 1 = the frame fully explains its raw frame (C shows the "
           "map: red added, blue removed)")
    if not enabled:
        return ConsistencyStatus("consistency off", "off", "this run does not check its frames "
                                 "(start it with the consistency check on)")
    counts = f"{flagged} of {checked} flagged"
    last = f" | last {_score(last_score)}" if last_score is not None else ""
    if frame is None:
        shown = ""
    elif frame_score is None or frame_score != frame_score:
        shown = f"#{frame} not checked"
    else:
        shown = f"#{frame} score {_score(frame_score)}"
    if frame_flagged and frame is not None:
        over = ""
        if frame_max is not None and threshold is not None:
            over = f", max {frame_max:.1f}σ > {threshold:.1f}σ"
        score = f"score {_score(frame_score)}" if frame_score is not None else "score -"
        return ConsistencyStatus(f"⚠ FLAGGED #{frame}: {score}{over} | {counts}", "flagged", tip)
    if flagged > 0:
        return ConsistencyStatus(f"⚠ {counts}" + (f" | {shown}" if shown else "") + last, "warn", tip)
    if checked == 0:
        return ConsistencyStatus("consistency: no frame checked yet" + (f" | {shown}" if shown else ""),
                                 "ok", tip)
    return ConsistencyStatus(f"consistency {counts}" + (f" | {shown}" if shown else "") + last, "ok", tip)


class RateCounter:
    """Events per second over the last ``seconds`` (the viewer's display fps; GUI thread only)."""

    def __init__(self, seconds: float = 2.0) -> None:
        self.seconds = seconds
        self._times: deque[float] = deque()
        self.total = 0

    def tick(self, t: float | None = None) -> None:
        t = time.perf_counter() if t is None else t
        self._times.append(t)
        self.total += 1
        while t - self._times[0] > self.seconds:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        while self._times and now - self._times[0] > self.seconds:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0
