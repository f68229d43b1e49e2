"""The live pipeline: every raw frame saved, enhancement as fast as the model allows.

::

    submit(frame)  (acquisition thread: validate, copy-free enqueue, never waits on the model)
        |--> raw queue (lossless, memory-bounded) --> [raw writer thread] --> store 0/0 + records
        |--> enhancement: preview  -> one slot (newest frame; the one it replaces is 'skipped')
        |                 complete -> bounded queue; when full the frame is 'deferred' (its raw
        |                             frame is on disk) and enhanced later from the store
        |                     --> [enhancer thread] --> store 1/0 + records + display slot
        '--> display slot (newest raw)                      GUI timer reads latest()

The acquisition thread only does a size/dtype check, a few appends and a notify. The raw queue
never drops a frame: if the disk is slower than the camera for long enough to fill
``max_raw_queue_bytes``, ``submit`` waits (back-pressure) rather than lose data, and says so in
the log. The enhancer prefers live frames; deferred frames are worked off whenever the live
queue is empty and, at :meth:`LivePipeline.stop`, until none is left (memory stays bounded: the
backlog is a list of indices, the pixels are read back from disk).

Failures: an enhancer exception marks that frame 'failed' and the run goes on (10 in a row
disable enhancement; raw frames keep being saved). A store write error (disk full, read-only)
stops the run: ``submit`` raises :class:`~live_pssr.errors.StoreWriteError`, everything
committed before stays readable, and :meth:`stop` closes the store as far as the disk allows.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..enhancer import Enhancer
from ..errors import LivePSSRError, StoreExistsError, StoreWriteError
from ..frames import Frame, check_frame
from ..modelio import check_input_channels
from ..store import FrameStatus, RunStore
from .display import DisplayFrame, DisplaySlot
from .stats import PipelineStats, RollingWindow, Summary

log = logging.getLogger("live_pssr.pipeline")

MAX_CONSECUTIVE_FAILURES = 10


class Policy(enum.StrEnum):
    """How enhancement keeps up with the camera."""

    PREVIEW = "preview"  #: enhance the newest frame, skip stale ones
    COMPLETE = "complete"  #: enhance every frame; a backlog is worked off from disk


@dataclass
class StoreSpec:
    """Where and how to create the run store (created at the first frame, when the size is known)."""

    path: str | Path
    overwrite: bool = False
    pixel_size_um: float | None = None
    frame_interval_s: float = 0.0
    run_metadata: dict[str, Any] = field(default_factory=dict)
    codec: str = "lz4"


class LivePipeline:
    """Raw writer + enhancer + display slot around one run store."""

    def __init__(
        self,
        enhancer: Enhancer | None,
        store: StoreSpec,
        policy: Policy | str = Policy.PREVIEW,
        enhance_queue_size: int = 4,
        max_raw_queue_bytes: int = 2 << 30,
    ) -> None:
        self.enhancer = enhancer
        self.spec = store
        self.policy = Policy(policy)
        path = Path(store.path)
        if path.exists() and not store.overwrite:
            raise StoreExistsError(
                f"output {path} already exists",
                "choose another --out path, or pass --overwrite to replace it",
            )
        self.store: RunStore | None = None
        self.display = DisplaySlot()
        self.max_raw_queue_bytes = max_raw_queue_bytes
        # raw path
        self._raw_q: deque[tuple[Frame, float]] = deque()
        self._raw_bytes = 0
        self._raw_cv = threading.Condition()
        # enhancement path
        self._enh_q: queue.Queue[Frame] = queue.Queue(maxsize=max(1, enhance_queue_size))
        self._slot: Frame | None = None
        self._slot_cv = threading.Condition()
        self._deferred: deque[int] = deque()
        self._recent: dict[int, np.ndarray] = {}
        self._received: dict[int, float] = {}
        # state
        self._shape: tuple[int, int] | None = None
        self._dtype: np.dtype | None = None
        self._n_submitted = 0
        self._accepting = True
        self._acq_done = threading.Event()
        self._abandon_backlog = threading.Event()
        self._state = "idle"
        self._error: LivePSSRError | None = None
        self._errors: list[str] = []
        self._consecutive_failures = 0
        self._enhancement_disabled = False
        self._counts = {s: 0 for s in FrameStatus}
        self._count_lock = threading.Lock()
        self._cam_rate = RollingWindow(5.0)
        self._enh_rate = RollingWindow(5.0)
        self._latency = RollingWindow(5.0)
        self._all_latency: list[float] = []
        self._t_first: float | None = None
        self._t_last: float | None = None
        self._enh_first: float | None = None
        self._enh_last: float | None = None
        self._threads: list[threading.Thread] = []
        self._summary: Summary | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> LivePipeline:
        """Start the writer and enhancer threads (idempotent)."""
        if self._threads:
            return self
        self._state = "running"
        self._threads = [threading.Thread(target=self._raw_loop, name="live-pssr-raw", daemon=True)]
        if self.enhancer is not None:
            self._threads.append(
                threading.Thread(target=self._enhance_loop, name="live-pssr-enhance", daemon=True))
        for t in self._threads:
            t.start()
        return self

    def __enter__(self) -> LivePipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(finish_backlog=exc[0] is None)

    @property
    def window(self) -> int:
        return self.enhancer.in_frames if self.enhancer is not None else 1

    @property
    def failed(self) -> bool:
        return self._error is not None

    # ----------------------------------------------------------------- acquisition side
    def submit(self, frame: Frame) -> None:
        """Hand one frame to the pipeline (called on the acquisition thread).

        ``frame.index`` must be the next index (0, 1, 2, ...); ``frame.image`` must not be
        modified afterwards (pass a copy of a camera buffer). Raises on a frame that cannot
        join the run (dtype/size change) or after a store failure; never waits on the model.
        """
        if self._error is not None:
            raise self._error
        if not self._accepting:
            raise RuntimeError("pipeline is stopped; start a new one for a new run")
        if self.enhancer is not None and getattr(frame.image, "ndim", 2) == 3:
            # a multi-channel frame: say which model/channel mismatch it is, not just "3-D"
            check_input_channels(self.enhancer.model.spec, min(frame.image.shape))
        check_frame(frame.image, self._shape, self._dtype)
        if frame.index != self._n_submitted:
            raise ValueError(f"frame index {frame.index} out of order (expected {self._n_submitted})")
        now = time.perf_counter()
        if self.store is None:
            self._open_store(frame)
        received = self.store.now()
        self._shape, self._dtype = frame.image.shape, frame.image.dtype
        self._n_submitted += 1
        self._t_first = self._t_first or now
        self._t_last = now
        self._cam_rate.add(t=now)
        self._received[frame.index] = received
        # raw path (lossless)
        nbytes = frame.image.nbytes
        with self._raw_cv:
            if self._raw_bytes + nbytes > self.max_raw_queue_bytes:
                log.warning("raw queue full (%d MB): the disk is slower than the camera; waiting",
                            self._raw_bytes >> 20)
                while self._raw_bytes + nbytes > self.max_raw_queue_bytes and self._error is None:
                    self._raw_cv.wait(0.1)
            self._raw_q.append((frame, received))
            self._raw_bytes += nbytes
            self._raw_cv.notify_all()
        self.display.put_raw(frame.index, frame.image)
        if self.enhancer is None or self._enhancement_disabled:
            return
        # enhancement path
        self._recent[frame.index] = frame.image
        self._recent.pop(frame.index - self.window - 1, None)
        if self.policy is Policy.PREVIEW:
            with self._slot_cv:
                stale, self._slot = self._slot, frame
                self._slot_cv.notify()
            if stale is not None:
                self._set_status(stale.index, FrameStatus.SKIPPED)
        else:
            try:
                self._enh_q.put_nowait(frame)
            except queue.Full:
                with self._lock:
                    self._deferred.append(frame.index)

    def _open_store(self, frame: Frame) -> None:
        spec = self.spec
        md = frame.metadata or {}
        px = spec.pixel_size_um or md.get("PixelSize_um") or md.get("pixel_size_um") or 1.0
        run = {
            "policy": self.policy.value,
            **({"model": self.enhancer.model.model_id, "engine": self.enhancer.engine_name,
                "model_spec": self.enhancer.model.spec.name} if self.enhancer is not None
               else {"model": None, "engine": None}),
            **spec.run_metadata,
        }
        self.store = RunStore.create(
            spec.path, frame.image.shape, frame.image.dtype,
            upscale=self.enhancer.upscale if self.enhancer is not None else 1,
            pixel_size_um=float(px), frame_interval_s=spec.frame_interval_s, run_metadata=run,
            overwrite=spec.overwrite, codec=spec.codec,
        )
        # the engine is prepared (compiled, warmed up) on the enhancer thread, never here

    # ----------------------------------------------------------------- raw writer
    def _raw_loop(self) -> None:
        while True:
            with self._raw_cv:
                while not self._raw_q and not self._acq_done.is_set():
                    self._raw_cv.wait(0.05)
                if not self._raw_q:
                    return  # acquisition over and everything written
                frame, received = self._raw_q.popleft()
            try:
                self.store.append_raw(frame, received_s=received)
            except StoreWriteError as err:
                self._fail(err)
                return
            finally:
                with self._raw_cv:
                    self._raw_bytes -= frame.image.nbytes
                    self._raw_cv.notify_all()

    def _fail(self, err: LivePSSRError) -> None:
        log.error("%s", err)
        self._error = err
        self._errors.append(str(err.message))
        self._state = "failed"
        self._accepting = False
        self._acq_done.set()
        with self._slot_cv:
            self._slot_cv.notify_all()

    # ----------------------------------------------------------------- enhancer
    def _next_job(self) -> tuple[Frame | None, int | None]:
        """The next live frame, or a deferred index whose raw frame is on disk."""
        if self.policy is Policy.PREVIEW:
            with self._slot_cv:
                if self._slot is None and not self._acq_done.is_set():
                    self._slot_cv.wait(0.05)
                frame, self._slot = self._slot, None
            return frame, None
        try:
            return self._enh_q.get(timeout=0.02 if self._deferred else 0.05), None
        except queue.Empty:
            pass
        with self._lock:
            if self._deferred and self._deferred[0] < self.store.n_appended \
                    and not self._abandon_backlog.is_set():
                return None, self._deferred.popleft()
        return None, None

    def _enhance_loop(self) -> None:
        while True:
            frame, deferred = self._next_job()
            if frame is None and deferred is None:
                if self._error is not None:
                    return
                if self._acq_done.is_set() and self._work_left() == 0:
                    return
                continue
            if self._enhancement_disabled or self._error is not None:
                continue
            index = frame.index if frame is not None else deferred
            status = FrameStatus.LIVE if frame is not None else FrameStatus.AFTER
            start = self.store.now()
            try:
                window = self._window_for(index, frame)
                out = self.enhancer.enhance_window(window)
                self.store.write_enhanced(index, out, status, enhance_start_s=start)
            except StoreWriteError as err:
                self._fail(err)
                return
            except Exception as err:  # the model failed on this frame: record, go on
                self._enhance_failed(index, err)
                continue
            self._consecutive_failures = 0
            now = time.perf_counter()
            self._enh_first = self._enh_first or now
            self._enh_last = now
            self._enh_rate.add(t=now)
            latency = (self.store.now() - self._received.get(index, start)) * 1e3
            if status is FrameStatus.LIVE:
                self._latency.add(latency, t=now)
                self._all_latency.append(latency)
            self._count(status)
            self.display.put_enhanced(index, window[-1], out)

    def _work_left(self) -> int:
        if self.policy is Policy.PREVIEW:
            return 0 if self._slot is None else 1
        backlog = 0 if self._abandon_backlog.is_set() else len(self._deferred)
        return self._enh_q.qsize() + backlog

    def _window_for(self, index: int, frame: Frame | None) -> list[np.ndarray]:
        frames = []
        for i in range(max(0, index - self.window + 1), index + 1):
            if frame is not None and i == index:
                frames.append(frame.image)
                continue
            img = self._recent.get(i)
            frames.append(img if img is not None else self.store.read_raw(i))
        return frames

    def _enhance_failed(self, index: int, err: Exception) -> None:
        msg = f"enhancement failed on frame {index}: {type(err).__name__}: {err}"
        if self._consecutive_failures == 0:
            log.error(msg)
        self._errors.append(msg)
        self._consecutive_failures += 1
        self._set_status(index, FrameStatus.FAILED)
        if self._consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            self._enhancement_disabled = True
            log.error("enhancement disabled after %d failures in a row; raw frames are still saved",
                      self._consecutive_failures)
            self._errors.append("enhancement disabled after repeated failures")

    def _set_status(self, index: int, status: FrameStatus) -> None:
        self.store.set_status(index, status)
        self._count(status)

    def _count(self, status: FrameStatus) -> None:
        with self._count_lock:
            self._counts[status] += 1

    # ----------------------------------------------------------------- reading
    def latest(self) -> DisplayFrame | None:
        """The newest raw and enhanced frames (for a viewer's timer; never blocks)."""
        return self.display.get()

    def stats(self) -> PipelineStats:
        c = self._counts
        p50, p99 = self._latency.percentiles(50, 99)
        st = self.store
        return PipelineStats(
            state=self._state,
            frames_acquired=self._n_submitted,
            raw_written=st.n_appended if st else 0,
            enhanced_live=c[FrameStatus.LIVE],
            enhanced_after=c[FrameStatus.AFTER],
            skipped=c[FrameStatus.SKIPPED],
            failed=c[FrameStatus.FAILED],
            backlog=len(self._deferred),
            raw_queue=len(self._raw_q),
            enhance_queue=self._enh_q.qsize() + (1 if self._slot is not None else 0),
            camera_fps=self._cam_rate.rate(),
            enhance_fps=self._enh_rate.rate(),
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            engine=self.enhancer.engine_name if self.enhancer else "none",
            model=self.enhancer.model.model_id if self.enhancer else "none",
            store_path=str(self.spec.path),
            store_bytes=st.bytes_written if st else 0,
            policy=self.policy.value,
            error=str(self._error.message) if self._error else None,
        )

    # ----------------------------------------------------------------- stopping
    def stop(
        self,
        finish_backlog: bool = True,
        progress: Callable[[int, int], None] | None = None,
        interrupted: bool = False,
    ) -> Summary:
        """End the run: write every raw frame, finish (or abandon) the backlog, close the store.

        ``progress(done, total)`` is called while the backlog is worked off. Idempotent.
        """
        if self._summary is not None:
            return self._summary
        self._accepting = False
        self._state = "finishing"
        if not finish_backlog:
            self._abandon_backlog.set()
        self._acq_done.set()
        with self._raw_cv:
            self._raw_cv.notify_all()
        with self._slot_cv:
            self._slot_cv.notify_all()
        total = len(self._deferred)
        try:
            while any(t.is_alive() for t in self._threads):
                if progress is not None and total:
                    progress(total - len(self._deferred), total)
                for t in self._threads:
                    t.join(0.1)
        except KeyboardInterrupt:  # a second Ctrl-C: leave the backlog for later
            interrupted = True
            self._abandon_backlog.set()
            for t in self._threads:
                t.join()
        if progress is not None and total:
            progress(total - len(self._deferred), total)
        summary = self._make_summary(interrupted)
        if self.store is not None:
            try:
                self.store.close(summary.to_dict())
            except StoreWriteError as err:
                log.error("could not finalise the store: %s", err)
                if self._error is None:
                    self._error = err
                summary.errors.append(str(err.message))
        self._state = "failed" if self._error else "stopped"
        self._summary = summary
        return summary

    def _make_summary(self, interrupted: bool) -> Summary:
        c = self._counts
        n = self._n_submitted
        written = self.store.n_appended if self.store else 0
        done = c[FrameStatus.LIVE] + c[FrameStatus.AFTER]
        acq_span = (self._t_last - self._t_first) if n > 1 else 0.0
        enh_span = (self._enh_last - self._enh_first) if done > 1 else 0.0
        lat = np.array(self._all_latency)
        return Summary(
            frames_acquired=n,
            raw_written=written,
            enhanced_live=c[FrameStatus.LIVE],
            enhanced_after=c[FrameStatus.AFTER],
            skipped=c[FrameStatus.SKIPPED],
            failed=c[FrameStatus.FAILED],
            pending=(written - done - c[FrameStatus.SKIPPED] - c[FrameStatus.FAILED])
            if self.enhancer is not None else written,
            duration_s=acq_span,
            acquisition_fps=(n - 1) / acq_span if acq_span > 0 else 0.0,
            enhance_fps=(done - 1) / enh_span if enh_span > 0 else 0.0,
            latency_p50_ms=float(np.percentile(lat, 50)) if lat.size else None,
            latency_p99_ms=float(np.percentile(lat, 99)) if lat.size else None,
            policy=self.policy.value,
            engine=self.enhancer.engine_name if self.enhancer else "none",
            model=self.enhancer.model.model_id if self.enhancer else "none",
            store_path=str(self.spec.path),
            errors=list(self._errors),
            interrupted=interrupted,
        )
