"""What a live session counts and reports: the hook's cost, refused frames, errors, the end summary.

:class:`SessionCounters` is written on the acquisition thread (under the session's lock) and read
by anyone; everything in it is bounded (a fixed number of distinct reasons and errors, a
fixed-length window of hook timings), so a week-long run does not grow in memory.
:class:`SessionSummary` is the per-stream pipeline summaries plus those counters, frozen at the
end of the session.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..pipeline import Summary
from ..pipeline.stats import ErrorLog

log = logging.getLogger("live_pssr.session")

MAX_REASONS = 20


class CallTimer:
    """Cost of the hook calls: wall time (count, mean, max, recent percentiles) and CPU time.

    Wall time is what the acquisition thread waited; the calling thread's CPU time is what the
    hook itself spent (the difference is time the OS or the GIL gave to other threads).
    """

    def __init__(self, keep: int = 10_000) -> None:
        self.count = 0
        self.total_s = 0.0
        self.cpu_s = 0.0
        self.max_s = 0.0
        self.recent: deque[float] = deque(maxlen=keep)

    def add(self, seconds: float, cpu_seconds: float = 0.0) -> None:
        self.count += 1
        self.total_s += seconds
        self.cpu_s += cpu_seconds
        self.max_s = max(self.max_s, seconds)
        self.recent.append(seconds)

    def as_dict(self) -> dict[str, Any]:
        rec = np.array(self.recent) * 1e3
        n = self.count
        return {
            "calls": n,
            "mean_ms": self.total_s / n * 1e3 if n else None,
            "cpu_mean_ms": self.cpu_s / n * 1e3 if n else None,
            "p50_ms": float(np.percentile(rec, 50)) if rec.size else None,
            "p99_ms": float(np.percentile(rec, 99)) if rec.size else None,
            "max_ms": self.max_s * 1e3 if n else None,
        }


class SessionCounters:
    """Frames received, refused (with their reasons), after close; errors; hook timings."""

    def __init__(self) -> None:
        self.timer = CallTimer()
        self.frames_received = 0
        self.rejected = 0
        self.rejected_reasons: dict[str, int] = {}
        self.after_close = 0
        self.errors = ErrorLog()
        self._lock = threading.Lock()

    def reject(self, reason: str, n: int = 1) -> None:
        """Count ``n`` frames not stored by live-pssr (passed on to Micro-Manager)."""
        with self._lock:
            self.rejected += n
            if reason in self.rejected_reasons:
                self.rejected_reasons[reason] += n
                return
            if len(self.rejected_reasons) < MAX_REASONS:
                self.rejected_reasons[reason] = n
        log.warning("%d frame(s) not stored by live-pssr (passed on to Micro-Manager): %s", n, reason)

    def error(self, message: str) -> None:
        log.error("%s", message)
        self.errors.add(message)

    def as_dict(self) -> dict[str, Any]:
        return {"frames_received": self.frames_received, "rejected": self.rejected,
                "rejected_reasons": dict(self.rejected_reasons), "after_close": self.after_close,
                "hook": self.timer.as_dict(), "errors": self.errors.lines()}


@dataclass(frozen=True)
class SessionSummary:
    """What a session did: per-stream pipeline summaries plus the hook's own counters."""

    store_path: str
    layout: str
    streams: dict[str, Summary]
    frames_received: int
    rejected: int
    rejected_reasons: dict[str, int]
    after_close: int
    hook: dict[str, Any]
    engine: str
    errors: list[str]
    interrupted: bool = False
    #: (stream name, frame index) of frames taken but neither in the store nor rescued
    not_stored: list[tuple[str, int]] = field(default_factory=list)
    #: stream name -> rescue tif holding the frames its failed store could not hold
    rescued: dict[str, str] = field(default_factory=dict)

    def _sum(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.streams.values())

    @property
    def frames_acquired(self) -> int:
        return self._sum("frames_acquired")

    @property
    def raw_written(self) -> int:
        """Raw frames the stores hold (committed)."""
        return self._sum("raw_written")

    @property
    def enhanced(self) -> int:
        return self._sum("enhanced_live") + self._sum("enhanced_after")

    @property
    def failed(self) -> int:
        return self._sum("failed")

    @property
    def skipped(self) -> int:
        return self._sum("skipped")

    @property
    def pending(self) -> int:
        return self._sum("pending")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["streams"] = {k: v.to_dict() for k, v in self.streams.items()}
        d["not_stored"] = {name: Summary.ranges([i for n, i in self.not_stored if n == name])
                           for name in dict.fromkeys(n for n, _ in self.not_stored)}
        return d

    def text(self) -> str:
        """A printable report (the single stream's table, or one line per stream)."""
        hook = self.hook
        lines = []
        if len(self.streams) == 1:
            lines.append(next(iter(self.streams.values())).text())
        else:
            for name, s in self.streams.items():
                lines.append(f"  {name}: raw {s.raw_written}, enhanced {s.enhanced_live}+{s.enhanced_after}, "
                             f"skipped {s.skipped}, failed {s.failed}, pending {s.pending}"
                             + (f", FLAGGED {s.consistency['flagged']}/{s.consistency['checked']}"
                                if s.consistency and s.consistency.get("flagged") else "")
                             + (f", NOT STORED {len(s.not_stored)}" if s.not_stored else "")
                             + (f", RESCUED {len(s.rescued)} to {s.rescue_path}" if s.rescued else ""))
        hook_ms = ("-" if hook.get("p50_ms") is None
                   else f"p50 {hook['p50_ms']:.3f} / p99 {hook['p99_ms']:.3f} / max {hook['max_ms']:.3f} ms"
                   f" (CPU {hook['cpu_mean_ms']:.3f} ms per frame)")
        lines += [f"  layout            {self.layout} ({len(self.streams)} stream(s)) at {self.store_path}",
                  f"  frames received   {self.frames_received} (not stored by live-pssr, passed on to "
                  f"Micro-Manager: {self.rejected}; after close {self.after_close})",
                  f"  hook cost         {hook_ms}"]
        for reason, n in self.rejected_reasons.items():
            lines.append(f"  not stored x{n}    {reason}")
        stream_errors = {e for s in self.streams.values() for e in s.errors}
        for e in self.errors:
            if e not in stream_errors or len(self.streams) != 1:
                lines.append(f"  error             {e}")
        return "\n".join(lines)
