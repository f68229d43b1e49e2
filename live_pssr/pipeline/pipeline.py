"""The live pipeline: every raw frame saved, enhancement as fast as the model allows.

::

    submit(frame)  (acquisition thread: check, enqueue; never opens a file, never waits on the model)
        |--> raw queue (lossless, memory-bounded) --> [raw writer thread] --> store 0/0 + records
        |--> enhancement: preview  -> one slot (newest frame; the one it replaces is 'skipped')
        |                 complete -> bounded queue; when full the frame is 'deferred' (its raw
        |                             frame is on disk) and enhanced later from the store
        |                     --> [enhancer thread] --> (complete: finish queue (2) --> [finisher thread])
        |                                 --> store 1/0 + records + display slot
        |                                 '--> consistency check (every Nth) --> store 2/0 + records
        '--> display slot (newest raw)                      GUI timer reads latest()

State (:class:`RunState`, one writer at a time)::

    IDLE --start()--> RUNNING --stop()--> FINISHING --> STOPPED
                         |  store failure (disk full after the reserve, read-only, any writer error)
                         '--> FAILED: new frames refused; queued frames written if the disk allows

Acquisition thread: :meth:`LivePipeline.submit` only checks the frame, appends to the queues and
notifies; the store is created by :meth:`LivePipeline.start` (given the frame size) or by the raw
writer thread at the first frame, never on the caller's thread. The path is claimed when the
pipeline is made (:mod:`live_pssr.store.claim`), so a second writer is refused at once.

Raw writes: the raw writer thread takes frames from the queue in order and hands each to a
small pool (``StoreSpec.raw_writers`` threads, default 8; up to twice as many frames handed over
at once) that encodes and writes its chunk file; as the writes complete it appends the frames in
index order (the contiguous prefix written), and only then takes them off the queue. A frame is
therefore in memory until its chunk is on disk, the durability budget and the rescue see exactly
what they saw with one writer, and a failed write stops the appends at that frame (the frames
after it, written or not, are rescued from memory). At 2048² a 4 MB write waits mostly on the
kernel's writeback; writes in parallel overlap that, and the writer thread wakes for a new frame
or a finished write alike, so one slow write never idles the writers behind it.

The raw queue never drops a frame: if the disk is slower than the camera for long enough to fill
``max_raw_queue_bytes``, ``submit`` waits (back-pressure, never with an empty queue) rather than
lose data, and says so in the log. ``submit`` returns whether the frame is *durable*: queued to a
store that exists, within the store's reserve (:mod:`live_pssr.store.writer`), so that even a full
disk cannot lose it. Only durable frames may be acknowledged to Micro-Manager as stored.

Enhancement: each job carries its own window of frames (multi-frame models), taken from memory
when the frame arrives, so a slow disk never makes a window read frames not yet written. The
enhancer prefers live frames; deferred frames are worked off whenever the live queue is empty
(without waiting for a live frame once the next one is on disk: a 20 ms wait per fetch had kept
the backlog at half the engine's rate) and, at :meth:`LivePipeline.stop`, until none is left (the
backlog is a list of indices, pixels are read back from disk).

Finisher (``complete``): the enhancer thread runs the engine and hands each output to the
finisher thread (a queue of 2), which writes the enhanced frame, runs the check, updates the
records, stats and the display slot, in the order the outputs came. The engine starts the next
frame while the last one is written and checked: throughput (on 2 cores, 512²: 0.84x the engine
against 0.59x without). A finisher that cannot go on (disk full, store failure, a bug) stops the
enhancer too; outputs still queued stay 'pending'. ``preview`` has no finisher: latency matters
there, and on 2 cores the overlapped write and check slowed the next frame's engine call more
than they saved, so each frame is finished on the enhancer thread right after its engine call.

Consistency (``consistency=ConsistencySpec(...)``, :mod:`live_pssr.pipeline.checking`): each
enhanced frame (every ``every``-th index) is checked against its raw frame on the thread that
writes it (the finisher, or the enhancer in ``preview``); the signed map goes to the store's
image ``2`` and the display slot, score and flag to the records and the stats. A frame the check
cannot judge keeps its enhancement (its consistency reads NaN, the reason is in the summary);
the check never stops the run.

Batches (``complete``, ``max_batch`` > 1): when several frames wait (live jobs in the queue, or
deferred frames on disk), the enhancer takes up to ``max_batch`` of one kind at once and runs
them as one engine call (:meth:`~live_pssr.enhancer.Enhancer.enhance_windows`); a batch whose
call fails is redone frame by frame, so one bad frame fails alone. ``preview`` always enhances
one frame (only the newest matters). Engines with static shapes (OpenVINO) compile the batch
shape once, at its first use.

Failures: an enhancer exception (or a NaN/Inf output) marks that frame 'failed' with the reason
and the run goes on (10 in a row disable enhancement; raw frames keep being saved). A store
failure refuses later frames (``submit`` raises a new :class:`~live_pssr.errors.StoreWriteError`
each time: a flag, checked before anything is copied), everything committed stays readable,
and the summary lists the frames that were taken but are not in the store (``not_stored``).
Any exception in a pipeline thread ends in that state or in the summary, never in silence.
"""

from __future__ import annotations

import enum
import itertools
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

from ..errors import ConfigError, DiskFullError, LivePSSRError, StoreWriteError
from ..frames import Frame, check_frame
from ..modelio import check_input_channels
from ..store import FrameStatus, RunStore
from ..store.chunks import check_codec
from ..store.claim import OutputClaim, claim_dir
from ..store.writer import blocks, fsync_period
from .checking import ConsistencyCheck, ConsistencySpec
from .display import DisplayFrame, DisplaySlot
from .stats import ErrorLog, PipelineStats, RollingWindow, Summary

log = logging.getLogger("live_pssr.pipeline")

MAX_CONSECUTIVE_FAILURES = 10
#: latencies kept for the summary's percentiles (the most recent ones)
LATENCY_KEEP = 100_000


class Policy(enum.StrEnum):
    """How enhancement keeps up with the camera."""

    PREVIEW = "preview"  #: enhance the newest frame, skip stale ones
    COMPLETE = "complete"  #: enhance every frame; a backlog is worked off from disk


class RunState(enum.StrEnum):
    """Where a pipeline is (see the state diagram in the module docstring)."""

    IDLE = "idle"
    WAITING = "waiting"  #: a session before its first frame
    RUNNING = "running"
    FINISHING = "finishing"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass
class StoreSpec:
    """Where and how to create the run store.

    ``inputs``: paths this run reads (a replayed recording): never replaced. ``claim``: the path
    already claimed by the caller. ``reserve_bytes`` and ``fsync``: see :mod:`live_pssr.store.writer`;
    ``rescue_dir``: where frames go that a failed store could not hold (:mod:`live_pssr.store.rescue`).
    """

    path: str | Path
    overwrite: bool = False
    pixel_size_um: float | None = None
    frame_interval_s: float = 0.0
    run_metadata: dict[str, Any] = field(default_factory=dict)
    codec: str = "lz4"
    inputs: tuple[Path, ...] = ()
    claim: OutputClaim | None = None
    reserve_bytes: int | None = None
    fsync: str | float = "off"
    rescue_dir: Path | None = None
    #: raw chunk files written at once (1: one after the other; see the module docstring)
    #: (8: at 2048² on 2 cores, 0.90-0.95x tensorstore's rate; 4: 0.70-0.90x; 16: no better)
    raw_writers: int = 8


@dataclass
class _Job:
    """One live enhancement: the frame and the window of frames it needs (oldest first)."""

    frame: Frame
    window: tuple[np.ndarray, ...]
    received_s: float


#: one enhanced output on its way to the store: (index, live job or None, window, output, start_s)
_Output = tuple[int, _Job | None, list[np.ndarray], np.ndarray, float]


class LivePipeline:
    """Raw writer + enhancer + display slot around one run store."""

    def __init__(
        self,
        enhancer: Any,
        store: StoreSpec,
        policy: Policy | str = Policy.PREVIEW,
        enhance_queue_size: int = 4,
        max_raw_queue_bytes: int = 2 << 30,
        consistency: ConsistencySpec | None = None,
        max_batch: int = 4,
    ) -> None:
        self.enhancer = enhancer
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch={max_batch!r} must be a whole number >= 1",
                              "1 enhances frame by frame; 4 lets a behind enhancer take 4 frames per call")
        self.max_batch = max_batch if hasattr(enhancer, "enhance_windows") else 1
        self.spec = store
        self.policy = Policy(policy)
        check_codec(store.codec)
        rw = store.raw_writers
        if isinstance(rw, bool) or not isinstance(rw, int) or not 1 <= rw <= 32:
            raise ConfigError(f"raw_writers={rw!r} must be a whole number from 1 to 32",
                              "8 writes eight raw frames at once (the default); 1 one after the other")
        fsync_period(store.fsync)  # bad settings are refused before the path is claimed
        #: the consistency check (None: off, or nothing to enhance), and its settings
        self.check = (ConsistencyCheck(consistency, enhancer)
                      if consistency is not None and enhancer is not None else None)
        self.consistency = consistency if self.check is not None else None
        self._claim = store.claim or claim_dir(Path(store.path), overwrite=store.overwrite,
                                               inputs=tuple(store.inputs))
        self.store: RunStore | None = None
        self.display = DisplaySlot()
        self.max_raw_queue_bytes = max_raw_queue_bytes
        self._t0 = time.perf_counter()  # the records' clock (the store takes it over)
        self._store_ready = threading.Event()  # set when the store exists, or could not be made
        # raw path
        self._raw_q: deque[tuple[Frame, float]] = deque()
        self._raw_bytes = 0  # bytes of the frames queued
        self._raw_blocks = 0  # their size on disk, counted against the store's reserve
        self._raw_cv = threading.Condition()
        # enhancement path
        self._enh_q: queue.Queue[_Job] = queue.Queue(maxsize=max(1, enhance_queue_size))
        self._slot: _Job | None = None
        self._slot_cv = threading.Condition()
        self._deferred: deque[int] = deque()
        #: outputs from the enhancer to the finisher; None ends it
        self._finish_q: queue.Queue[_Output | None] = queue.Queue(maxsize=2)
        self._finish_stopped = threading.Event()  # the finisher cannot go on: the enhancer stops too
        self._finisher: threading.Thread | None = None
        self._window: deque[np.ndarray] = deque(maxlen=self.window)
        # state
        self._shape: tuple[int, int] | None = None
        self._dtype: np.dtype | None = None
        self._n_submitted = 0
        self._accepting = True
        self._acq_done = threading.Event()
        self._raw_done = threading.Event()
        self._abandon = threading.Event()
        self._state = RunState.IDLE
        self._error: LivePSSRError | None = None  # the store failure that stopped the run
        self._refusal: tuple[str, str] | None = None  # (message, hint) for refused frames
        self._hard_failure = False  # the raw writer cannot go on (not just a full disk)
        self._errors = ErrorLog()
        self._consecutive_failures = 0
        self._enhancement_disabled: str | None = None
        self._counts = {s: 0 for s in FrameStatus}
        self._count_lock = threading.Lock()
        self._cam_rate = RollingWindow(5.0)
        self._enh_rate = RollingWindow(5.0)
        self._latency = RollingWindow(5.0)
        self._all_latency: deque[float] = deque(maxlen=LATENCY_KEEP)
        self._t_first: float | None = None
        self._t_last: float | None = None
        self._enh_first: float | None = None
        self._enh_last: float | None = None
        self._threads: list[threading.Thread] = []
        self._status_lock = threading.Lock()
        self._early_status: list[tuple[int, FrameStatus]] = []
        self._rescued: tuple[str | None, list[int]] = (None, [])
        self._summary: Summary | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle
    def start(self, frame_shape: tuple[int, int] | None = None, dtype: Any = None,
              metadata: dict[str, Any] | None = None) -> LivePipeline:
        """Start the writer and enhancer threads (idempotent).

        With ``frame_shape`` and ``dtype`` the store is created now, on the calling thread, and
        its errors are raised here; otherwise the raw writer creates it at the first frame.
        """
        if self._threads:
            return self
        if frame_shape is not None and dtype is not None and self.store is None:
            self.open_store(tuple(frame_shape), np.dtype(dtype), metadata)
        self._state = RunState.RUNNING
        self._threads = [threading.Thread(target=self._raw_loop, name="live-pssr-raw", daemon=True)]
        if self.enhancer is not None:
            self._threads.append(
                threading.Thread(target=self._enhance_loop, name="live-pssr-enhance", daemon=True))
            if self.policy is Policy.COMPLETE:  # preview finishes each frame on the enhancer thread
                self._finisher = threading.Thread(target=self._finish_loop, name="live-pssr-finish",
                                                  daemon=True)
                self._threads.append(self._finisher)
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

    @property
    def error(self) -> LivePSSRError | None:
        """The store failure that stopped the run (None while it is fine)."""
        return self._error

    @property
    def state(self) -> RunState:
        return self._state

    @property
    def refusal(self) -> tuple[str, str] | None:
        """(message, hint) once the run refuses frames because its store failed; else None."""
        return self._refusal

    @property
    def accepting(self) -> bool:
        """False once the run refuses frames (stopped, or the store failed)."""
        return self._accepting and self._refusal is None

    # ----------------------------------------------------------------- acquisition side
    def submit(self, frame: Frame) -> bool:
        """Hand one frame to the pipeline (called on the acquisition thread).

        ``frame.index`` must be the next index (0, 1, 2, ...); ``frame.image`` must not be
        modified afterwards (pass a copy of a camera buffer). Raises on a frame that cannot
        join the run (dtype/size change) or after a store failure; never waits on the model.
        Returns True when the frame is durable (see the module docstring).
        """
        if self._refusal is not None:
            raise StoreWriteError(*self._refusal)  # a new error each time: no growing traceback
        if not self._accepting:
            raise RuntimeError("pipeline is stopped; start a new one for a new run")
        if self.enhancer is not None and getattr(frame.image, "ndim", 2) == 3:
            # a multi-channel frame: say which model/channel mismatch it is, not just "3-D"
            check_input_channels(self.enhancer.model.spec, min(frame.image.shape))
        check_frame(frame.image, self._shape, self._dtype)
        if frame.index != self._n_submitted:
            raise ValueError(f"frame index {frame.index} out of order (expected {self._n_submitted})")
        now = time.perf_counter()
        received = now - self._t0
        self._shape, self._dtype = frame.image.shape, frame.image.dtype
        self._n_submitted += 1
        self._t_first = self._t_first or now
        self._t_last = now
        self._cam_rate.add(t=now)
        # raw path (lossless)
        nbytes = frame.image.nbytes
        with self._raw_cv:
            if self._raw_q and self._raw_bytes + nbytes > self.max_raw_queue_bytes:
                log.warning("raw queue full (%d MB): the disk is slower than the camera; waiting",
                            self._raw_bytes >> 20)
                # never wait with an empty queue: a frame larger than the bound still goes in
                while self._raw_q and self._raw_bytes + nbytes > self.max_raw_queue_bytes \
                        and self._error is None:
                    self._raw_cv.wait(0.1)
            self._raw_q.append((frame, received))
            self._raw_bytes += nbytes
            self._raw_blocks += blocks(nbytes)
            store = self.store
            durable = (store is not None and self._error is None
                       and self._raw_blocks <= store.ack_budget)
            self._raw_cv.notify_all()
        self.display.put_raw(frame.index, frame.image)
        if self.enhancer is None or self._enhancement_disabled:
            return durable
        # enhancement path: the job carries its window (from memory, never from the disk)
        self._window.append(frame.image)
        job = _Job(frame, tuple(self._window), received)
        if self.policy is Policy.PREVIEW:
            with self._slot_cv:
                stale, self._slot = self._slot, job
                self._slot_cv.notify()
            if stale is not None:
                self._set_status(stale.frame.index, FrameStatus.SKIPPED)
        else:
            try:
                self._enh_q.put_nowait(job)
            except queue.Full:
                with self._lock:
                    self._deferred.append(frame.index)
        return durable

    def open_store(self, shape: tuple[int, int], dtype: np.dtype,
                   metadata: dict[str, Any] | None = None) -> RunStore:
        """Create the run store in the claimed folder (not on the acquisition thread)."""
        spec = self.spec
        md = metadata or {}
        px = spec.pixel_size_um or md.get("PixelSize_um") or md.get("pixel_size_um") or 1.0
        run = {
            "policy": self.policy.value,
            **({"model": self.enhancer.model.model_id, "engine": self.enhancer.engine_name,
                "model_spec": self.enhancer.model.spec.name} if self.enhancer is not None
               else {"model": None, "engine": None}),
            **spec.run_metadata,
        }
        try:
            store = RunStore.create(
                spec.path, shape, dtype,
                upscale=self.enhancer.upscale if self.enhancer is not None else 1,
                pixel_size_um=float(px), frame_interval_s=spec.frame_interval_s, run_metadata=run,
                codec=spec.codec, claim=self._claim, reserve_bytes=spec.reserve_bytes,
                fsync=spec.fsync, t0=self._t0,
                consistency=self.check.settings() if self.check is not None else None,
            )
            with self._status_lock:  # statuses set before the store existed (skipped frames)
                for index, status in self._early_status:
                    store.set_status(index, status)
                self._early_status.clear()
                self.store = store
        finally:
            self._store_ready.set()
        return store
        # the engine is prepared (compiled, warmed up) on the enhancer thread, never here

    # ----------------------------------------------------------------- raw writer
    def _raw_loop(self) -> None:
        try:
            self._write_raw_frames()
        except Exception as err:  # a bug, not a disk error: stop cleanly and say so
            log.exception("the raw writer failed")
            self._fail(StoreWriteError(f"the raw writer failed: {type(err).__name__}: {err}",
                                       "this is a bug in live-pssr: please report it with the log; "
                                       "frames committed before are in the store"))
        finally:
            self._raw_done.set()
            self._store_ready.set()  # no store will come now: the enhancer must not wait for it
            with self._raw_cv:
                self._raw_cv.notify_all()

    def _write_raw_frames(self) -> None:
        """Write the queue's frames through the pool, append them in order (module docstring).

        Up to ``2 * raw_writers`` frames are handed to the pool at once (the pool runs
        ``raw_writers`` of them; the rest wait there with no buffer of their own), and the loop
        sleeps until a new frame arrives or the oldest write in flight completes: a slow write
        never keeps the idle writers from the frames behind it.
        """
        from concurrent.futures import Future, ThreadPoolExecutor

        width = self.spec.raw_writers
        window = 2 * width
        pool = ThreadPoolExecutor(width, thread_name_prefix="live-pssr-raw-io")
        inflight: deque[tuple[Frame, float, Future[int]]] = deque()  # = self._raw_q[:len(inflight)]

        def wake(_: Future[int]) -> None:
            with self._raw_cv:
                self._raw_cv.notify_all()

        try:
            while True:
                with self._raw_cv:
                    while not ((len(self._raw_q) > len(inflight) and len(inflight) < window)
                               or (inflight and inflight[0][2].done())):
                        if not self._raw_q and self._acq_done.is_set():
                            return  # acquisition over and everything written
                        self._raw_cv.wait(0.05)
                    fresh = list(itertools.islice(self._raw_q, len(inflight), window))
                if self._hard_failure:
                    return  # the store failed: nothing more can be written
                if self.store is None:
                    frame, _ = self._raw_q[0]
                    try:
                        self.open_store(frame.image.shape, frame.image.dtype, frame.metadata)
                    except StoreWriteError as err:
                        self._fail(err)
                        return
                for frame, received in fresh:
                    future = pool.submit(self.store.write_raw_chunk, frame)
                    inflight.append((frame, received, future))
                    future.add_done_callback(wake)
                if not self._append_written(inflight):
                    return
        finally:
            pool.shutdown(wait=True)  # no write of this run outlives its writer

    def _append_written(self, inflight: deque) -> bool:
        """Append the written prefix of ``inflight`` (the writes already done, in order); False
        when a write failed (the run is failed; the frames from there on stay queued)."""
        store = self.store
        while inflight and inflight[0][2].done():
            frame, received, future = inflight[0]
            try:
                nbytes = future.result()
                store.mark_raw_appended(frame, nbytes, received_s=received)
            except StoreWriteError as err:
                self._fail(err)
                return False
            inflight.popleft()
            with self._raw_cv:
                self._raw_q.popleft()
                self._raw_bytes -= frame.image.nbytes
                self._raw_blocks -= blocks(frame.image.nbytes)
                self._raw_cv.notify_all()
            if store.disk_full and self._refusal is None:
                self._refuse(DiskFullError(
                    f"the disk is full ({self.spec.path}): no frames are taken from now on (the frames "
                    "already queued are written into the reserved space)",
                    "free space or write to another disk; every frame taken before is in the store"))
        return True

    def _refuse(self, err: LivePSSRError) -> None:
        """Take no more frames (the store cannot hold them); frames queued are still written."""
        with self._raw_cv:
            if self._error is None:
                self._error = err
            self._errors.add(err.message)
            log.error("%s", err.message)
            self._refusal = (self._error.message, self._error.hint)
            self._state = RunState.FAILED
            self._accepting = False
            self._acq_done.set()
            self._raw_cv.notify_all()
        with self._slot_cv:
            self._slot_cv.notify_all()

    def _fail(self, err: LivePSSRError) -> None:
        """The store failed: refuse frames, and the raw writer stops (queued frames are not stored)."""
        self._hard_failure = True
        self._refuse(err)

    # ----------------------------------------------------------------- enhancer
    def _next_jobs(self) -> tuple[list[_Job], list[int]]:
        """The next live jobs, or deferred indices whose raw frames are on disk (at most ``max_batch``)."""
        if self.policy is Policy.PREVIEW:
            with self._slot_cv:
                if self._slot is None and not self._acq_done.is_set():
                    self._slot_cv.wait(0.05)
                job, self._slot = self._slot, None
            return ([job] if job is not None else []), []
        with self._lock:
            backlog_ready = self._deferred_head_on_disk()
        try:  # live frames first; a backlog on disk is never kept waiting for one that may come
            jobs = [self._enh_q.get_nowait() if backlog_ready
                    else self._enh_q.get(timeout=0.02 if self._deferred else 0.05)]
        except queue.Empty:
            jobs = []
        while jobs and len(jobs) < self.max_batch:  # frames already waiting join the batch
            try:
                jobs.append(self._enh_q.get_nowait())
            except queue.Empty:
                break
        if jobs:
            return jobs, []
        deferred: list[int] = []
        with self._lock:
            while len(deferred) < self.max_batch and self._deferred_head_on_disk():
                deferred.append(self._deferred.popleft())
            if (len(deferred) < self.max_batch and self._deferred and self.store is not None
                    and not self._abandon.is_set() and self._raw_done.is_set()):
                self._deferred.clear()  # their raw frames will never be written: they stay pending
        return [], deferred

    def _deferred_head_on_disk(self) -> bool:
        """Whether the oldest deferred frame can be enhanced now (its raw frame is on disk).

        The caller holds ``self._lock``.
        """
        return (bool(self._deferred) and self.store is not None and not self._abandon.is_set()
                and self._deferred[0] < self.store.n_appended)

    def _enhance_loop(self) -> None:
        try:
            self._enhance_frames()
        except Exception as err:  # a bug outside the per-frame work: enhancement stops, raw goes on
            log.exception("the enhancer thread failed")
            self._disable_enhancement(f"the enhancer thread failed: {type(err).__name__}: {err}")
        finally:
            self._hand_over(None)  # the finisher ends after the outputs queued before this

    def _hand_over(self, item: _Output | None) -> bool:
        """Queue an output for the finisher (``None``: the end); False once it cannot take more.

        Without a finisher (``preview``) the output is written, checked and shown here, at once.
        """
        if self._finisher is None:
            if item is not None and not self._store_enhanced(*item):
                self._finish_stopped.set()
                return False
            return True
        while True:
            if self._finish_stopped.is_set() and item is not None:
                return False
            try:
                self._finish_q.put(item, timeout=0.1)
                return True
            except queue.Full:
                if item is None and not self._finisher.is_alive():
                    return False  # the finisher is gone: nothing waits for the end mark

    def _finish_loop(self) -> None:
        """The finisher thread: each output written, checked and shown, in order (module docstring)."""
        try:
            while True:
                item = self._finish_q.get()
                if item is None:
                    return
                if self._finish_stopped.is_set():
                    continue  # outputs after a stop stay pending
                if not self._store_enhanced(*item):
                    self._finish_stopped.set()
        except Exception as err:  # a bug: enhancement stops (and says why), raw goes on
            log.exception("the finisher thread failed")
            self._finish_stopped.set()
            self._disable_enhancement(f"the finisher thread failed: {type(err).__name__}: {err}")

    def _enhance_frames(self) -> None:
        self._store_ready.wait()
        while True:
            if self._finish_stopped.is_set():
                return  # the finisher stopped (disk full, store failure): nothing more is stored
            jobs, deferred = self._next_jobs()
            if not jobs and not deferred:
                if self._refusal is not None or self.store is None:
                    return
                if self._acq_done.is_set() and self._work_left() == 0:
                    return
                continue
            if self._enhancement_disabled or self._refusal is not None:
                continue
            start = self.store.now()
            items: list[tuple[int, _Job | None, list[np.ndarray] | None]] = [
                (j.frame.index, j, list(j.window)) for j in jobs]
            for index in deferred:
                try:
                    items.append((index, None, self._window_from_disk(index)))
                except Exception as err:  # its raw frame cannot be read back: that frame fails
                    self._enhance_failed(index, err)
            outputs = self._enhance_batch([w for _, _, w in items])
            for (index, job, window), out in zip(items, outputs, strict=True):
                if isinstance(out, Exception):
                    self._enhance_failed(index, out)
                    continue
                if not self._hand_over((index, job, window, out, start)):
                    return

    def _enhance_batch(self, windows: list[list[np.ndarray]]) -> list[np.ndarray | Exception]:
        """Outputs (or each frame's exception): one engine call, frame by frame if that fails."""
        if len(windows) > 1:
            try:
                return list(self.enhancer.enhance_windows(windows))
            except Exception as err:  # redo one by one: only the bad frame fails
                log.info("a batch of %d failed (%s: %s); enhancing its frames one by one",
                         len(windows), type(err).__name__, err)
        out: list[np.ndarray | Exception] = []
        for w in windows:
            try:
                out.append(self.enhancer.enhance_window(w))
            except Exception as err:
                out.append(err)
        return out

    def _store_enhanced(self, index: int, job: _Job | None, window: list[np.ndarray], out: np.ndarray,
                        start: float) -> bool:
        """Write one enhanced frame, its check and stats; False when enhancement must stop."""
        status = FrameStatus.LIVE if job is not None else FrameStatus.AFTER
        try:
            self.store.write_enhanced(index, out, status, enhance_start_s=start,
                                      received_s=job.received_s if job is not None else None)
        except DiskFullError:
            self._disable_enhancement("enhancement stopped: the disk is full (raw frames come first)")
            return False
        except StoreWriteError as err:
            self._fail(err)
            return False
        except Exception as err:  # e.g. an output of the wrong size: this frame fails, the run goes on
            self._enhance_failed(index, err)
            return True
        self._consecutive_failures = 0
        now = time.perf_counter()
        self._enh_first = self._enh_first or now
        self._enh_last = now
        self._enh_rate.add(t=now)
        if job is not None:
            latency = (self.store.now() - job.received_s) * 1e3
            self._latency.add(latency, t=now)
            self._all_latency.append(latency)
        self._count(status)
        check = self._check_frame(index, window, out)
        self.display.put_enhanced(index, window[-1], out, check)
        return True

    def _check_frame(self, index: int, window: list[np.ndarray], out: np.ndarray) -> Any:
        """The consistency check of an enhanced frame, stored; None when off, not due or unavailable."""
        if self.check is None or not self.check.due(index):
            return None
        result, why = self.check.run(window, out)
        if result is None:
            message, kind = why
            if kind == "bug":
                log.error("frame %d: %s", index, message)
            self._errors.add(message, index, key=f"consistency:{kind}")
            return None
        self.check.tally.add(index, result)
        try:
            self.store.write_consistency(index, result)
            if self.check.tally.checked == 1:  # the flag level of this frame size, for readers of the run
                self.store.update_run_metadata(consistency={
                    **self.store.run.get("consistency", {}), "threshold": round(result.threshold, 4),
                    "smooth_sigma_px": result.smooth_sigma_px, "psf_sigma_px": result.psf_sigma_px,
                    "psf_source": result.psf_source})
        except StoreWriteError as err:  # the enhanced frame is stored; its map (or a note) is not
            self._errors.add(f"consistency map not stored: {err.message}", index, key="consistency:store")
        return result

    def _work_left(self) -> int:
        if self.policy is Policy.PREVIEW:
            return 0 if self._slot is None else 1
        backlog = 0 if self._abandon.is_set() else len(self._deferred)
        return self._enh_q.qsize() + backlog

    def _window_from_disk(self, index: int) -> list[np.ndarray]:
        return [self.store.read_raw(i) for i in range(max(0, index - self.window + 1), index + 1)]

    def _enhance_failed(self, index: int, err: Exception) -> None:
        reason = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
        if self._consecutive_failures == 0:
            log.error("enhancement failed on frame %d: %s", index, reason)
        self._errors.add(f"enhancement failed: {reason}", index)
        self._consecutive_failures += 1
        self._set_status(index, FrameStatus.FAILED)
        if self._consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            self._disable_enhancement(f"enhancement disabled after {self._consecutive_failures} failures "
                                      "in a row; raw frames are still saved")

    def _disable_enhancement(self, reason: str) -> None:
        if self._enhancement_disabled is None:
            self._enhancement_disabled = reason
            self._errors.add(reason)
            log.error("%s", reason)

    def _set_status(self, index: int, status: FrameStatus) -> None:
        with self._status_lock:
            if self.store is not None:
                self.store.set_status(index, status)
            else:
                self._early_status.append((index, status))
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
            frames_checked=self.check.tally.checked if self.check else 0,
            frames_flagged=self.check.tally.flagged if self.check else 0,
            last_score=self.check.tally.last_score if self.check else None,
        )

    # ----------------------------------------------------------------- stopping
    def abandon_backlog(self) -> None:
        """Leave frames not yet enhanced as 'pending' (a second Ctrl-C); raw frames are all written."""
        self._abandon.set()

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
        if self._state is not RunState.FAILED:
            self._state = RunState.FINISHING
        if not finish_backlog:
            self._abandon.set()
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
            self._abandon.set()
            for t in self._threads:
                t.join()
        if progress is not None and total:
            progress(total - len(self._deferred), total)
        summary = self._close_store(interrupted)
        self._state = RunState.FAILED if self._error else RunState.STOPPED
        self._summary = summary
        return summary

    def _close_store(self, interrupted: bool) -> Summary:
        """Commit, summarise what the store really holds, then close it (lock released)."""
        store = self.store
        if store is None:
            self._claim.abandon()  # no frame ever reached the disk: leave no empty folder behind
            return self._make_summary(interrupted, 0)
        try:
            store.commit()
        except StoreWriteError as err:
            self._errors.add(err.message)
        missing = list(range(store.n_committed, self._n_submitted))
        if missing:  # before close: the store's own summary then says where they went
            self._rescue(store, missing)
        summary = self._make_summary(interrupted, store.n_committed)
        if summary.not_stored:
            self._errors.add(f"{len(summary.not_stored)} frame(s) taken but neither stored nor rescued: "
                             f"{Summary.ranges(summary.not_stored)}")
            summary = self._make_summary(interrupted, store.n_committed)
        try:
            store.close(summary.to_dict())
        except StoreWriteError as err:
            log.error("could not finalise the store: %s", err)
            if self._error is None:
                self._error = err
            self._errors.add(err.message)
            summary = self._make_summary(interrupted, store.n_committed)
        if getattr(store, "metadata_error", None):  # frames all stored; the close's metadata not
            self._errors.add(str(store.metadata_error))
            summary = self._make_summary(interrupted, store.n_committed)
        return summary

    def _rescue(self, store: RunStore, missing: list[int]) -> None:
        """Write the frames the store does not hold to a rescue tif (see :mod:`live_pssr.store.rescue`)."""
        from ..store.rescue import rescue_frames

        queued = {f.index: f for f, _ in self._raw_q}
        frames: list[Frame] = []
        for i in missing:
            if i in queued:
                frames.append(queued[i])
                continue
            try:  # written but never committed: read it back from the failed disk
                records = store.records
                frames.append(Frame(i, store.read_raw(i), float(records.get(i, "camera_time_ms"))))
            except Exception as err:  # unreadable: it stays in not_stored
                log.error("frame %d could not be read back for the rescue: %s", i, err)
        if not frames:
            return
        try:
            path = rescue_frames(frames, self.spec.path, self.spec.rescue_dir)
        except Exception as err:
            self._errors.add(f"the frames the store could not hold could not be rescued either: {err}")
            log.error("rescue failed: %s", err)
            return
        self._rescued = (str(path), [f.index for f in frames])
        log.error("%d frame(s) the store could not hold were rescued to %s", len(frames), path)

    def _make_summary(self, interrupted: bool, committed: int) -> Summary:
        c = self._counts
        n = self._n_submitted
        done = c[FrameStatus.LIVE] + c[FrameStatus.AFTER]
        acq_span = (self._t_last - self._t_first) if n > 1 else 0.0
        enh_span = (self._enh_last - self._enh_first) if done > 1 else 0.0
        lat = np.array(self._all_latency)
        rescue_path, rescued = self._rescued
        saved = set(rescued)
        not_stored = [i for i in range(committed, n) if i not in saved]
        return Summary(
            frames_acquired=n,
            raw_written=committed,
            enhanced_live=c[FrameStatus.LIVE],
            enhanced_after=c[FrameStatus.AFTER],
            skipped=c[FrameStatus.SKIPPED],
            failed=c[FrameStatus.FAILED],
            pending=(committed - done - c[FrameStatus.SKIPPED] - c[FrameStatus.FAILED])
            if self.enhancer is not None else committed,
            duration_s=acq_span,
            acquisition_fps=(n - 1) / acq_span if acq_span > 0 else 0.0,
            enhance_fps=(done - 1) / enh_span if enh_span > 0 else 0.0,
            latency_p50_ms=float(np.percentile(lat, 50)) if lat.size else None,
            latency_p99_ms=float(np.percentile(lat, 99)) if lat.size else None,
            policy=self.policy.value,
            engine=self.enhancer.engine_name if self.enhancer else "none",
            model=self.enhancer.model.model_id if self.enhancer else "none",
            store_path=str(self.spec.path),
            errors=self._errors.lines(),
            interrupted=interrupted,
            not_stored=not_stored,
            enhancement_disabled=self._enhancement_disabled,
            rescued=list(rescued),
            rescue_path=rescue_path,
            consistency=self.check.tally.as_dict() if self.check is not None else None,
        )
