"""The status bar's text, made from a :class:`~live_pssr.pipeline.PipelineStats` (no Qt).

Fields, in order: state, camera fps, enhancement fps, latency p50/p99 (the pipeline's rolling
window, last 5 s), queue depth (raw queue + enhancement queue + backlog), frames skipped in
preview, display fps (the viewer's own redraws of raw and of enhanced frames), engine and
model, store path and size.
"""

from __future__ import annotations

import time
from collections import deque
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
