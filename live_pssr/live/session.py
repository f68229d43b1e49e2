"""LiveSession: live-pssr inside a Micro-Manager acquisition (pycromanager or pymmcore-plus).

::

    with LiveSession(model="mito-sr4-fast", store="run.ome.zarr", policy="complete") as session:
        with Acquisition(directory=None, image_process_fn=session.pycromanager_hook) as acq:
            acq.acquire(multi_d_acquisition_events(num_time_points=100))

    with LiveSession(store="run.ome.zarr") as session:      # pymmcore-plus
        session.connect(core)                                # frameReady -> session
        core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 100}))

The acquisition thread only validates, copies and enqueues
---------------------------------------------------------
Per-frame callbacks that cannot keep up make Micro-Manager's buffers grow until runs truncate
or hang (pycro-manager #588, #619, #682). Both entry points (:meth:`LiveSession.pycromanager_hook`,
:meth:`LiveSession.frameReady`) therefore only reduce the metadata (:mod:`live_pssr.live.frame_info`),
copy the image and hand it to a :class:`~live_pssr.pipeline.LivePipeline`, whose threads write
the raw frame and run the model. Nothing on disk is created, opened or deleted on that thread:
the session claims its path when it is made (exclusive create + lock, on the caller's thread:
:mod:`live_pssr.store.claim`), each stream's store is created on a short-lived starter thread
(:mod:`live_pssr.live.stream`), and frames arriving meanwhile wait in order. The hooks never
raise into the acquisition: a frame that cannot join the run (ROI/binning or bit depth changed,
a store that failed, anything unexpected) is logged, counted in the summary (``rejected``) and
passed on unchanged to Micro-Manager's own storage.

Acknowledging a frame
---------------------
The pycromanager hook returns ``(image, metadata)`` untouched (same objects: the Java backend's
dtype rule holds, no resized images, #317). With ``own_storage=True`` it returns ``None`` (the
frame leaves Micro-Manager's storage) only for a *durable* frame: queued to a store that exists,
within the store's disk reserve, so that not even a full disk loses it. Every other frame (the
first ones while the store is being created, frames beyond the reserve when the disk lags,
anything refused) is returned to Micro-Manager as well. The only wait is the pipeline's lossless
back-pressure when the disk is slower than the camera for longer than its raw queue holds.

Streams and layout
------------------
Frames are grouped into streams by their non-time axes (:mod:`live_pssr.live.streams`,
:mod:`live_pssr.store.series`): a
time-lapse is one store at ``store``; a multi-dimensional run is a series of stores inside
``store``, one per (position, grid, z, channel) combination. Each stream has its own pipeline
and dense frame index ``t`` (arrival order); each frame's Micro-Manager axes are kept in
``mm/<axis>`` columns. All streams share one enhancer (:mod:`live_pssr.live.shared_enhancer`),
built off the acquisition thread; :meth:`LiveSession.prepare` (or ``frame_shape=``, or
:meth:`LiveSession.connect`) builds it before the acquisition instead.

Run metadata: ``run["acquisition"]`` of every store holds the camera, exposure, pixel size, ROI,
binning and package/MMCore versions, the stream's axes and the first frame's metadata;
``run["live_pssr_session"]`` the session's counters and hook timings.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..enhancer import Enhancer
from ..errors import ConfigError, FrameFormatError, FrameShapeError, LivePSSRError
from ..frames import check_frame
from ..mm.core import package_versions
from ..modelio import LoadedModel, load_model
from ..pipeline import DisplayFrame, LivePipeline, PipelineStats, Policy, RunState, StoreSpec, Summary
from ..pipeline.checking import consistency_spec
from ..store.chunks import check_codec
from ..store.claim import claim_dir
from ..store.series import write_frame_axes
from ..store.writer import fsync_period
from .frame_info import FrameInfo, from_mda, from_pycromanager
from .shared_enhancer import SharedEnhancer
from .stream import Stream
from .streams import LAYOUTS, StreamRouter
from .summary import CallTimer, SessionCounters, SessionSummary

log = logging.getLogger("live_pssr.session")

__all__ = ["LAYOUTS", "CallTimer", "LiveSession", "SessionSummary"]


class LiveSession:
    """Live enhancement and lossless storage of a Micro-Manager acquisition.

    Parameters
    ----------
    model : str, Path, LoadedModel or Enhancer
        Shipped model name, ``.safetensors`` path, loaded model, or a ready enhancer.
    store : str or Path
        Output: a run store (time-lapse) or a folder of run stores (multi-dimensional run).
        Claimed when the session is made (a second session or process on it is refused).
    policy : {"preview", "complete"}
        ``preview`` enhances the newest frame and skips stale ones; ``complete`` enhances every
        frame (a backlog is worked off from disk, at the latest when the session closes).
    engine : str
        Inference engine: ``auto`` (fastest correct here), ``torch``, ``onnxruntime``... (chosen
        and gated by :func:`~live_pssr.engines.select_engine`, as on the command line).
    overwrite : bool
        Replace an existing ``store`` (only a live-pssr store that is not being recorded).
    own_storage : bool
        The pycromanager hook returns ``None`` for durable frames (live-pssr owns storage).
    enhance : bool
        False: store raw frames only (``model`` is not loaded).
    layout : {"auto", "single", "series"}
        How frames are split into stores (see :mod:`live_pssr.store.series`).
    frame_shape : (int, int), optional
        Camera frame size: the enhancer is built when the session starts, not at the first frame.
    frame_interval_s : float, optional
        Time between frames for the store's time scale (default: the MDA sequence's interval).
    enhance_queue_size, max_raw_queue_bytes, codec
        Passed to each stream's :class:`~live_pssr.pipeline.LivePipeline` / store.
    reserve_bytes : int, optional
        Disk space each store sets aside for queued frames when the disk fills (and the most
        queued frames that count as durable); default 16 frames, at least 1 MiB.
    fsync : {"off", "commit"} or float
        Flush each commit to the disk (power-loss durability), or every N seconds.
    rescue_dir : str or Path, optional
        Where frames go that a failed store could not hold (default ``$LIVE_PSSR_RESCUE_DIR`` or
        the temp folder; see :mod:`live_pssr.store.rescue`): best on another disk.
    run_metadata : dict, optional
        Extra metadata for every store's ``run`` attributes.
    consistency, consistency_every, camera
        The live consistency check (:mod:`live_pssr.pipeline.checking`): on by default, every
        ``consistency_every``-th frame, noise from ``camera`` (a ``live-pssr calibrate`` YAML or
        camera object; a file that does not validate fails here) or estimated from each frame.
    max_batch : int
        ``complete``: up to this many waiting frames are enhanced in one engine call (1: frame
        by frame).
    """

    def __init__(
        self,
        model: str | Path | LoadedModel | Enhancer = "mito-sr4-fast",
        store: str | Path = "run.ome.zarr",
        policy: str = "preview",
        engine: str = "auto",
        overwrite: bool = False,
        own_storage: bool = False,
        enhance: bool = True,
        layout: str = "auto",
        frame_shape: tuple[int, int] | None = None,
        frame_interval_s: float | None = None,
        enhance_queue_size: int = 4,
        max_raw_queue_bytes: int = 2 << 30,
        run_metadata: dict[str, Any] | None = None,
        codec: str = "lz4",
        reserve_bytes: int | None = None,
        fsync: str | float = "off",
        rescue_dir: str | Path | None = None,
        consistency: bool = True,
        consistency_every: int = 1,
        camera: Any = None,
        max_batch: int = 4,
    ) -> None:
        try:
            self.policy = Policy(policy)
        except ValueError:
            raise ConfigError(f"unknown policy {policy!r}", "use policy='preview' or 'complete'") from None
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown layout {layout!r}", f"use one of {', '.join(LAYOUTS)}")
        if max_raw_queue_bytes <= 0:
            raise ConfigError(f"max_raw_queue_bytes={max_raw_queue_bytes} must be positive",
                              "give the raw queue's memory bound in bytes, e.g. 2 << 30 (2 GiB)")
        fsync_period(fsync)  # bad values are refused before anything is claimed
        self.consistency = consistency_spec(consistency and enhance, consistency_every, camera)
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch={max_batch!r} must be a whole number >= 1",
                              "1 enhances frame by frame; 4 lets a behind enhancer take 4 frames per call")
        self.max_batch = max_batch
        check_codec(codec)
        self.store_path = Path(store)
        self.overwrite = overwrite
        self.own_storage = own_storage
        self.frame_shape = tuple(frame_shape) if frame_shape is not None else None
        self.frame_interval_s = frame_interval_s
        self.enhance_queue_size = enhance_queue_size
        self.max_raw_queue_bytes = max_raw_queue_bytes
        self.codec = codec
        self.reserve_bytes = reserve_bytes
        self.fsync = fsync
        self.rescue_dir = Path(rescue_dir) if rescue_dir is not None else None
        self.run_metadata = dict(run_metadata or {})
        self.enhancer: SharedEnhancer | None = None
        if enhance:
            loaded = model if isinstance(model, LoadedModel | Enhancer) else load_model(model)
            self.enhancer = SharedEnhancer(loaded, engine, on_ready=self._engine_ready)
        self.counters = SessionCounters()
        self.acquisition: dict[str, Any] = {"versions": package_versions()}
        self._lock = threading.Lock()
        self._current: Stream | None = None
        self._t0: float | None = None
        self._core: Any = None
        self._mda_interval_s: float | None = None
        self._closed = False
        self._stop_lock = threading.Lock()
        self.summary: SessionSummary | None = None
        # one atomic step: the path is ours (created exclusively and locked) or the session fails here
        self._claim = claim_dir(self.store_path, overwrite=overwrite)
        self.router = StreamRouter(self.store_path, self._claim, layout, self._store_spec,
                                   self._new_pipeline, self._stream_failed, self._session_info)

    # ================================================================== lifecycle
    def start(self) -> LiveSession:
        """Warm the model up now when the frame size is known (``frame_shape``)."""
        if self.frame_shape is not None:
            self.prepare(self.frame_shape)
        return self

    def __enter__(self) -> LiveSession:
        return self.start()

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.stop(finish_backlog=exc_type is None, interrupted=exc_type is KeyboardInterrupt)

    def prepare(self, frame_shape: tuple[int, int]) -> None:
        """Build and warm up the enhancer for ``frame_shape`` now (blocking; raises its error)."""
        self.frame_shape = tuple(frame_shape)
        if self.enhancer is not None:
            self.enhancer.build(self.frame_shape)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def layout(self) -> str | None:
        return self.router.layout

    @property
    def frames_received(self) -> int:
        return self.counters.frames_received

    @property
    def rejected(self) -> int:
        return self.counters.rejected

    @property
    def after_close(self) -> int:
        return self.counters.after_close

    @property
    def rejected_reasons(self) -> dict[str, int]:
        return dict(self.counters.rejected_reasons)

    @property
    def timer(self) -> CallTimer:
        return self.counters.timer

    @property
    def streams(self) -> dict[str, LivePipeline]:
        """The pipelines by stream name (created at each stream's first frame)."""
        return {s.name: s.pipeline for s in list(self.router.streams.values()) if s.pipeline is not None}

    @property
    def spec(self) -> StoreSpec:
        """Where frames go (the viewer reads ``spec.path``): the current stream's, else ``store``'s."""
        cur = self._current
        if cur is not None and cur.pipeline is not None:
            return cur.pipeline.spec
        return StoreSpec(self.store_path, overwrite=self.overwrite)

    @property
    def failed(self) -> bool:
        return any(s.failure is not None for s in list(self.router.streams.values()))

    def close(self) -> SessionSummary:
        """Stop every pipeline (finishing the backlog) and close the stores; see :meth:`stop`."""
        return self.stop()

    def abandon_backlog(self) -> None:
        """Leave frames not yet enhanced as 'pending' (a second Ctrl-C); every raw frame is written."""
        for s in list(self.router.streams.values()):
            if s.pipeline is not None:
                s.pipeline.abandon_backlog()

    def stop(self, finish_backlog: bool = True, progress: Callable[[int, int], None] | None = None,
             interrupted: bool = False) -> SessionSummary:
        """End the session: later frames pass through untouched, every store is closed.

        ``progress(done, total)`` reports the backlog being enhanced from disk. Idempotent.
        """
        with self._stop_lock:
            if self.summary is None:
                self.summary = self._stop(finish_backlog, progress, interrupted)
            return self.summary

    def _stop(self, finish_backlog: bool, progress: Callable[[int, int], None] | None,
              interrupted: bool) -> SessionSummary:
        with self._lock:
            self._closed = True
        self.disconnect()
        streams = list(self.router.streams.values())
        summaries: dict[str, Summary] = {}
        if self.enhancer is not None:
            self.enhancer.wait_built()  # its on_ready writes run metadata too: one writer at a time
        for s in streams:
            s.wait_started()
            store = s.pipeline.store if s.pipeline is not None else None
            if store is not None:
                try:
                    store.update_run_metadata(live_pssr_session=self._session_info())
                except LivePSSRError as err:
                    self.counters.error(f"could not record session metadata in {s.path}: {err.message}")
            result = s.stop(finish_backlog=finish_backlog, progress=progress, interrupted=interrupted)
            if result is None:
                continue
            summaries[s.name] = result
            if store is not None:
                try:
                    write_frame_axes(s.path, s.columns.as_lists(), result.raw_written)
                except Exception as err:  # the frames are safe; only the axes columns are missing
                    self.counters.error(f"could not write the frame axes of {s.path}: {err}")
        counters = self.counters
        session_errors = counters.errors.lines()
        stream_errors = [e for sm in summaries.values() for e in sm.errors if e not in session_errors]
        summary = SessionSummary(
            store_path=str(self.store_path), layout=self.layout or "none", streams=summaries,
            frames_received=counters.frames_received, rejected=counters.rejected,
            rejected_reasons=dict(counters.rejected_reasons), after_close=counters.after_close,
            hook=counters.timer.as_dict(),
            engine=self.enhancer.engine_name if self.enhancer is not None else "none",
            errors=session_errors + stream_errors,
            interrupted=interrupted,
            not_stored=[(name, i) for name, sm in summaries.items() for i in sm.not_stored],
            rescued={name: sm.rescue_path for name, sm in summaries.items() if sm.rescue_path},
        )
        if self.layout == "series":
            try:
                self.router.write_index("closed", summaries)
            except OSError as err:
                summary.errors.append(f"could not write the series index: {err}")
        if not streams:
            self._claim.abandon()  # no frame arrived: leave no empty folder behind
        else:
            self._claim.release()
        return summary

    # ================================================================== pycromanager
    def pycromanager_hook(self, image: np.ndarray, metadata: dict[str, Any]) -> tuple[Any, Any] | None:
        """pycromanager ``image_process_fn``: copy the frame into live-pssr and pass it on.

        Returns ``(image, metadata)`` unchanged (Micro-Manager's storage keeps working), or
        ``None`` with ``own_storage=True`` when the frame is durable in live-pssr's store (see
        the module docstring). Never raises.
        """
        t0, c0 = time.perf_counter(), time.thread_time()
        durable = False
        try:
            durable = self._accept(image, lambda: from_pycromanager(metadata), "pycromanager")
        finally:
            self.counters.timer.add(time.perf_counter() - t0, time.thread_time() - c0)
        return None if (durable and self.own_storage) else (image, metadata)

    def record_settings(self, core: Any) -> None:
        """Store ``core``'s settings (camera, exposure, pixel size, ROI, binning, versions) with the run.

        :meth:`connect` does this itself; pycromanager users call it with their core (before the
        first frame: stores are created with the settings known then).
        """
        from ..mm.core import core_metadata

        self.acquisition.update(core_metadata(core))

    # ================================================================== pymmcore-plus
    def connect(self, core: Any, warm_up: bool = True) -> LiveSession:
        """Feed frames of ``core.mda.run(...)`` into the session (``frameReady`` listener).

        Records the core's settings for the store and, with ``warm_up``, builds the enhancer for
        the core's current image size before returning (so the first frames are not held up).
        """
        if self._core is not None and self._core is not core:
            self.disconnect()
        self._core = core
        self.record_settings(core)
        events = core.mda.events
        events.frameReady.connect(self.frameReady)
        events.sequenceStarted.connect(self.sequenceStarted)
        if warm_up and self.enhancer is not None and not self.enhancer.ready:
            self.prepare((int(core.getImageHeight()), int(core.getImageWidth())))
        return self

    def disconnect(self) -> None:
        """Stop listening to the connected core (idempotent)."""
        core, self._core = self._core, None
        if core is None:
            return
        for name, slot in (("frameReady", self.frameReady), ("sequenceStarted", self.sequenceStarted)):
            try:
                getattr(core.mda.events, name).disconnect(slot)
            except Exception:  # already disconnected
                pass

    def sequenceStarted(self, sequence: Any, metadata: Any = None) -> None:  # noqa: N802 - MDA signal name
        """pymmcore-plus signal: remember the sequence (its sizes decide the layout)."""
        try:
            sizes = dict(getattr(sequence, "sizes", {}) or {})
            with self._lock:
                if self.router.split_axes is None:
                    self.router.mda_sizes = sizes
                plan = getattr(sequence, "time_plan", None)
                interval = getattr(plan, "interval", None)
                if interval is not None:
                    self._mda_interval_s = float(getattr(interval, "total_seconds", lambda: interval)())
            self.acquisition["mda_sequence"] = {"sizes": sizes, "axis_order": list(getattr(
                sequence, "axis_order", ()) or ()), "uid": str(getattr(sequence, "uid", ""))}
        except Exception as err:
            self.counters.error(f"could not read the MDA sequence: {err!r}")

    def frameReady(self, image: np.ndarray, event: Any, metadata: dict[str, Any]) -> None:  # noqa: N802
        """pymmcore-plus signal: copy the frame into live-pssr. Never raises."""
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            self._accept(image, lambda: from_mda(event, metadata), "pymmcore-plus")
        finally:
            self.counters.timer.add(time.perf_counter() - t0, time.thread_time() - c0)

    # ================================================================== viewer interface
    def latest(self) -> DisplayFrame | None:
        """Newest raw/enhanced pair of the stream that received the last frame."""
        cur = self._current
        return cur.pipeline.latest() if cur is not None and cur.pipeline is not None else None

    def stats(self) -> PipelineStats:
        """Counters summed over streams; rates summed; latency of the current stream."""
        streams = [s for s in list(self.router.streams.values()) if s.pipeline is not None]
        engine = self.enhancer.engine_name if self.enhancer is not None else "none"
        model = self.enhancer.model.model_id if self.enhancer is not None else "none"
        errors = self.counters.errors.lines()
        if not streams:
            return PipelineStats(RunState.STOPPED if self._closed else RunState.WAITING, 0, 0, 0, 0, 0, 0,
                                 0, 0, 0, 0.0, 0.0, None, None, engine, model, str(self.store_path), 0,
                                 self.policy.value, errors[-1] if errors else None)
        all_stats = [s.pipeline.stats() for s in streams]
        cur_stream = self._current
        cur = (cur_stream.pipeline.stats() if cur_stream is not None and cur_stream.pipeline is not None
               else all_stats[-1])

        def total(name: str) -> Any:
            return sum(getattr(st, name) for st in all_stats)

        errs = [st.error for st in all_stats if st.error] + errors[-1:]
        return PipelineStats(
            state=next((st.state for st in all_stats if st.state == RunState.FAILED), cur.state),
            frames_acquired=total("frames_acquired"), raw_written=total("raw_written"),
            enhanced_live=total("enhanced_live"), enhanced_after=total("enhanced_after"),
            skipped=total("skipped"), failed=total("failed"), backlog=total("backlog"),
            raw_queue=total("raw_queue"), enhance_queue=total("enhance_queue"),
            camera_fps=total("camera_fps"), enhance_fps=total("enhance_fps"),
            latency_p50_ms=cur.latency_p50_ms, latency_p99_ms=cur.latency_p99_ms,
            engine=engine, model=model, store_path=str(self.store_path), store_bytes=total("store_bytes"),
            policy=self.policy.value, error=errs[0] if errs else None,
        )

    # ================================================================== internals
    def _accept(self, image: Any, info_of: Callable[[], FrameInfo], source: str) -> bool:
        """Validate, copy and enqueue one frame; True when it is durable. Never raises.

        Runs on the acquisition thread: nothing here touches the disk.
        """
        with self._lock:
            if self._closed:
                self.counters.after_close += 1
                if self.counters.after_close == 1:
                    log.warning("frames arrive after the session was closed: passed on, not stored")
                return False
            self.counters.frames_received += 1
            self.acquisition.setdefault("source", source)
            try:
                info = info_of()
                problem = info.metadata.get("metadata_problem")
                if problem and self.counters.frames_received == 1:
                    log.warning("frame metadata: %s; frames are stored without their axes", problem)
                check_frame(image)
                stream = self.router.stream_for(image, info)
                failure = stream.failure
                if failure is not None:  # a flag, checked before anything is copied
                    self.counters.reject(failure)
                    return False
                durable = stream.add(image, self._camera_time_ms(info), info.metadata, info.axes)
            except (FrameShapeError, FrameFormatError) as err:
                self.counters.reject(err.message)
                return False
            except LivePSSRError as err:  # the store refused it: it goes to Micro-Manager's storage only
                self.counters.reject(err.message)
                return False
            except Exception as err:  # never into the acquisition; counted, and reported at the end
                self.counters.reject(f"internal error: {type(err).__name__}: {err}")
                self.counters.error(f"{source} frame could not be taken: {type(err).__name__}: {err}")
                return False
            self._current = stream
            return durable

    def _camera_time_ms(self, info: FrameInfo) -> float:
        if self._t0 is None:
            self._t0 = info.timestamp_s
        return (info.timestamp_s - self._t0) * 1e3

    def _stream_failed(self, message: str, n_frames: int) -> None:
        self.counters.error(message)
        if n_frames:
            self.counters.reject(message, n_frames)

    def _store_spec(self, path: Path, name: str, key: tuple, info: FrameInfo) -> StoreSpec:
        md = info.metadata
        px = md.get("pixel_size_um")
        acquisition = {**self.acquisition, "stream": {"name": name, "axes": dict(key)}, "first_frame": md}
        return StoreSpec(
            path, pixel_size_um=px if px and px > 0 else None,
            frame_interval_s=self.frame_interval_s if self.frame_interval_s is not None
            else (self._mda_interval_s or 0.0),
            run_metadata={**self.run_metadata, "acquisition": acquisition}, codec=self.codec,
            reserve_bytes=self.reserve_bytes, fsync=self.fsync, rescue_dir=self.rescue_dir,
        )

    def _new_pipeline(self, spec: StoreSpec) -> LivePipeline:
        return LivePipeline(self.enhancer, spec, policy=self.policy,
                            enhance_queue_size=self.enhance_queue_size,
                            max_raw_queue_bytes=self.max_raw_queue_bytes, consistency=self.consistency,
                            max_batch=self.max_batch)

    def _session_info(self) -> dict[str, Any]:
        return {
            "layout": self.layout, "split_axes": list(self.router.split_axes or ()),
            **self.counters.as_dict(), "own_storage": self.own_storage,
            "engine": self.enhancer.engine_name if self.enhancer is not None else None,
        }

    def _engine_ready(self, enhancer: Enhancer) -> None:
        """Record the engine chosen after the stores were created (build thread)."""
        for s in list(self.router.streams.values()):
            store = s.pipeline.store if s.pipeline is not None else None
            if store is not None and not store.closed:
                try:
                    store.update_run_metadata(engine=enhancer.engine_name)
                except LivePSSRError as err:
                    self.counters.error(err.message)
