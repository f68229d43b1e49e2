"""LiveSession: live-pssr inside a Micro-Manager acquisition (pycromanager or pymmcore-plus).

::

    with LiveSession(model="mito-sr4-fast", store="run.ome.zarr", policy="complete") as session:
        with Acquisition(directory=None, image_process_fn=session.pycromanager_hook) as acq:
            acq.acquire(multi_d_acquisition_events(num_time_points=100))

    with LiveSession(store="run.ome.zarr") as session:      # pymmcore-plus
        session.connect(core)                                # frameReady -> session
        core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 100}))

The hook costs the acquisition a copy
-------------------------------------
Per-frame callbacks that cannot keep up make Micro-Manager's buffers grow until runs truncate
or hang (pycro-manager #588, #619, #682). Both entry points (:meth:`LiveSession.pycromanager_hook`,
:meth:`LiveSession.frameReady`) therefore only reduce the metadata (:mod:`live_pssr.mm.frame_info`),
copy the image and hand it to a :class:`~live_pssr.pipeline.LivePipeline`, whose threads write
the raw frame and run the model (a stream's store is created on a short-lived thread, frames
arriving meanwhile wait in order: :mod:`live_pssr.mm.stream`). They never raise into the
acquisition: a frame that cannot join the run (ROI/binning or bit depth changed, a store that
failed) is logged, counted in the summary (``rejected``) and passed on unchanged to
Micro-Manager's own storage. The pycromanager
hook returns ``(image, metadata)`` untouched (same objects: the Java backend's dtype rule holds,
no resized images, #317), or ``None`` with ``own_storage=True`` once live-pssr holds the frame.
The only wait is the pipeline's lossless back-pressure when the disk is slower than the camera
for longer than its raw queue (2 GiB by default) holds.

Streams and layout
------------------
Frames are grouped into streams by their non-time axes (see :mod:`live_pssr.mm.series`): a
time-lapse is one store at ``store``; a multi-dimensional run is a series of stores inside
``store``, one per (position, grid, z, channel) combination. Each stream has its own pipeline
and dense frame index ``t`` (arrival order); each frame's Micro-Manager axes are kept in
``mm/<axis>`` columns. All streams share one enhancer (:mod:`live_pssr.mm.shared_enhancer`),
built off the acquisition thread; :meth:`LiveSession.prepare` (or ``frame_shape=``, or
:meth:`LiveSession.connect`) builds it before the acquisition instead.

Run metadata: ``run["acquisition"]`` of every store holds the camera, exposure, pixel size, ROI,
binning and package/MMCore versions, the stream's axes and the first frame's metadata;
``run["live_pssr_session"]`` the session's counters and hook timings.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .enhancer import Enhancer
from .errors import ConfigError, FrameFormatError, FrameShapeError, LivePSSRError, StoreExistsError
from .frames import check_frame
from .mm.core import package_versions
from .mm.frame_info import (
    MDA_AXES,
    FrameInfo,
    from_mda,
    from_pycromanager,
    order_axes,
    split_key,
    stream_name,
)
from .mm.series import write_frame_axes, write_series_index
from .mm.shared_enhancer import SharedEnhancer
from .mm.stream import Stream
from .modelio import LoadedModel, load_model
from .pipeline import DisplayFrame, LivePipeline, PipelineStats, Policy, StoreSpec, Summary

log = logging.getLogger("live_pssr.session")

LAYOUTS = ("auto", "single", "series")
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

    def _sum(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.streams.values())

    @property
    def frames_acquired(self) -> int:
        return self._sum("frames_acquired")

    @property
    def raw_written(self) -> int:
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
                             f"skipped {s.skipped}, failed {s.failed}, pending {s.pending}")
        hook_ms = ("-" if hook.get("p50_ms") is None
                   else f"p50 {hook['p50_ms']:.3f} / p99 {hook['p99_ms']:.3f} / max {hook['max_ms']:.3f} ms"
                   f" (CPU {hook['cpu_mean_ms']:.3f} ms per frame)")
        lines += [f"  layout            {self.layout} ({len(self.streams)} stream(s)) at {self.store_path}",
                  f"  frames received   {self.frames_received} (rejected {self.rejected}, "
                  f"after close {self.after_close})",
                  f"  hook cost         {hook_ms}"]
        for reason, n in list(self.rejected_reasons.items())[:3]:
            lines.append(f"  rejected x{n}      {reason}")
        if self.errors:
            lines.append("  errors            " + "; ".join(self.errors[:3]))
        return "\n".join(lines)


class LiveSession:
    """Live enhancement and lossless storage of a Micro-Manager acquisition.

    Parameters
    ----------
    model : str, Path, LoadedModel or Enhancer
        Shipped model name, ``.safetensors`` path, loaded model, or a ready enhancer.
    store : str or Path
        Output: a run store (time-lapse) or a folder of run stores (multi-dimensional run).
    policy : {"preview", "complete"}
        ``preview`` enhances the newest frame and skips stale ones; ``complete`` enhances every
        frame (a backlog is worked off from disk, at the latest when the session closes).
    engine : str
        Inference engine: ``auto`` (fastest correct here), ``torch``, ``onnxruntime``...
    overwrite : bool
        Replace an existing ``store``.
    own_storage : bool
        The pycromanager hook returns ``None`` for stored frames (live-pssr owns storage).
    enhance : bool
        False: store raw frames only (``model`` is not loaded).
    layout : {"auto", "single", "series"}
        How frames are split into stores (see :mod:`live_pssr.mm.series`).
    frame_shape : (int, int), optional
        Camera frame size: the enhancer is built when the session starts, not at the first frame.
    frame_interval_s : float, optional
        Time between frames for the store's time scale (default: the MDA sequence's interval).
    enhance_queue_size, max_raw_queue_bytes, codec
        Passed to each stream's :class:`~live_pssr.pipeline.LivePipeline` / store.
    run_metadata : dict, optional
        Extra metadata for every store's ``run`` attributes.
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
    ) -> None:
        try:
            self.policy = Policy(policy)
        except ValueError:
            raise ConfigError(f"unknown policy {policy!r}", "use policy='preview' or 'complete'") from None
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown layout {layout!r}", f"use one of {', '.join(LAYOUTS)}")
        self.store_path = Path(store)
        if self.store_path.exists() and not overwrite:
            raise StoreExistsError(f"output {self.store_path} already exists",
                                   "choose another store path, or pass overwrite=True to replace it")
        self.overwrite = overwrite
        self.own_storage = own_storage
        self.layout_request = layout
        self.frame_shape = tuple(frame_shape) if frame_shape is not None else None
        self.frame_interval_s = frame_interval_s
        self.enhance_queue_size = enhance_queue_size
        self.max_raw_queue_bytes = max_raw_queue_bytes
        self.codec = codec
        self.run_metadata = dict(run_metadata or {})
        self.enhancer: SharedEnhancer | None = None
        if enhance:
            loaded = model if isinstance(model, LoadedModel | Enhancer) else load_model(model)
            self.enhancer = SharedEnhancer(loaded, engine, on_ready=self._engine_ready)
        # streams
        self._lock = threading.Lock()
        self._streams: dict[tuple, Stream] = {}
        self._current: Stream | None = None
        self._split_axes: tuple[str, ...] | None = None
        self.layout: str | None = None
        self._t0: float | None = None
        self._index_lock = threading.Lock()
        self._series_ready = False
        # counters
        self.timer = CallTimer()
        self.frames_received = 0
        self.rejected = 0
        self.rejected_reasons: dict[str, int] = {}
        self.after_close = 0
        self.errors: list[str] = []
        # Micro-Manager context
        self.acquisition: dict[str, Any] = {"versions": package_versions()}
        self._core: Any = None
        self._mda_sizes: dict[str, int] | None = None
        self._mda_interval_s: float | None = None
        self._closed = False
        self._stop_lock = threading.Lock()
        self.summary: SessionSummary | None = None

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
    def streams(self) -> dict[str, LivePipeline]:
        """The pipelines by stream name (created at each stream's first frame)."""
        return {s.name: s.pipeline for s in list(self._streams.values()) if s.pipeline is not None}

    @property
    def spec(self) -> StoreSpec:
        """Where frames go (the viewer reads ``spec.path``): the current stream's, else ``store``'s."""
        cur = self._current
        if cur is not None and cur.pipeline is not None:
            return cur.pipeline.spec
        return StoreSpec(self.store_path, overwrite=self.overwrite)

    @property
    def failed(self) -> bool:
        return any(s.error is not None or (s.pipeline is not None and s.pipeline.failed)
                   for s in list(self._streams.values()))

    def close(self) -> SessionSummary:
        """Stop every pipeline (finishing the backlog) and close the stores; see :meth:`stop`."""
        return self.stop()

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
        streams = list(self._streams.values())
        info = self._session_info()
        summaries: dict[str, Summary] = {}
        if self.enhancer is not None:
            self.enhancer.wait_built()  # its on_ready writes run metadata too: one writer at a time
        for s in streams:
            s.wait_started()
            if s.pipeline is not None and s.pipeline.store is not None:
                try:
                    s.pipeline.store.update_run_metadata(live_pssr_session=info)
                except LivePSSRError as err:
                    self._error(f"could not record session metadata in {s.path}: {err.message}")
            result = s.stop(finish_backlog=finish_backlog, progress=progress, interrupted=interrupted)
            if result is None:
                continue
            summaries[s.name] = result
            if s.pipeline.store is not None:
                try:
                    write_frame_axes(s.path, s.columns, s.pipeline.store.n_committed)
                except Exception as err:  # the frames are safe; only the axes columns are missing
                    self._error(f"could not write the frame axes of {s.path}: {err}")
        summary = SessionSummary(
            store_path=str(self.store_path), layout=self.layout or "none", streams=summaries,
            frames_received=self.frames_received, rejected=self.rejected,
            rejected_reasons=dict(self.rejected_reasons), after_close=self.after_close,
            hook=self.timer.as_dict(),
            engine=self.enhancer.engine_name if self.enhancer is not None else "none",
            errors=list(self.errors) + [e for s in summaries.values() for e in s.errors],
            interrupted=interrupted,
        )
        if self.layout == "series":
            try:
                self._write_index("closed", summary)
            except OSError as err:
                summary.errors.append(f"could not write the series index: {err}")
        return summary

    # ================================================================== pycromanager
    def pycromanager_hook(self, image: np.ndarray, metadata: dict[str, Any]) -> tuple[Any, Any] | None:
        """pycromanager ``image_process_fn``: copy the frame into live-pssr and pass it on.

        Returns ``(image, metadata)`` unchanged (Micro-Manager's storage keeps working), or
        ``None`` with ``own_storage=True`` when live-pssr stored the frame. Never raises.
        """
        t0, c0 = time.perf_counter(), time.thread_time()
        stored = False
        try:
            stored = self._accept(image, from_pycromanager(metadata), "pycromanager")
        except Exception as err:  # never into the acquisition
            self._error(f"hook failed: {err!r}")
        finally:
            self.timer.add(time.perf_counter() - t0, time.thread_time() - c0)
        return None if (stored and self.own_storage) else (image, metadata)

    def record_settings(self, core: Any) -> None:
        """Store ``core``'s settings (camera, exposure, pixel size, ROI, binning, versions) with the run.

        :meth:`connect` does this itself; pycromanager users call it with their core (before the
        first frame: stores are created with the settings known then).
        """
        from .mm.core import core_metadata

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
                if self._split_axes is None:
                    self._mda_sizes = sizes
                plan = getattr(sequence, "time_plan", None)
                interval = getattr(plan, "interval", None)
                if interval is not None:
                    self._mda_interval_s = float(getattr(interval, "total_seconds", lambda: interval)())
            self.acquisition["mda_sequence"] = {"sizes": sizes, "axis_order": list(getattr(
                sequence, "axis_order", ()) or ()), "uid": str(getattr(sequence, "uid", ""))}
        except Exception as err:
            self._error(f"could not read the MDA sequence: {err!r}")

    def frameReady(self, image: np.ndarray, event: Any, metadata: dict[str, Any]) -> None:  # noqa: N802
        """pymmcore-plus signal: copy the frame into live-pssr. Never raises."""
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            self._accept(image, from_mda(event, metadata), "pymmcore-plus")
        except Exception as err:
            self._error(f"frameReady failed: {err!r}")
        finally:
            self.timer.add(time.perf_counter() - t0, time.thread_time() - c0)

    # ================================================================== viewer interface
    def latest(self) -> DisplayFrame | None:
        """Newest raw/enhanced pair of the stream that received the last frame."""
        cur = self._current
        return cur.pipeline.latest() if cur is not None and cur.pipeline is not None else None

    def stats(self) -> PipelineStats:
        """Counters summed over streams; rates summed; latency of the current stream."""
        streams = [s for s in list(self._streams.values()) if s.pipeline is not None]
        engine = self.enhancer.engine_name if self.enhancer is not None else "none"
        model = self.enhancer.model.model_id if self.enhancer is not None else "none"
        if not streams:
            return PipelineStats("closed" if self._closed else "waiting", 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                 0.0, 0.0, None, None, engine, model, str(self.store_path), 0,
                                 self.policy.value, self.errors[-1] if self.errors else None)
        all_stats = [s.pipeline.stats() for s in streams]
        cur_stream = self._current
        cur = (cur_stream.pipeline.stats() if cur_stream is not None and cur_stream.pipeline is not None
               else all_stats[-1])

        def total(name: str) -> Any:
            return sum(getattr(st, name) for st in all_stats)

        errors = [st.error for st in all_stats if st.error] + self.errors[-1:]
        return PipelineStats(
            state=next((st.state for st in all_stats if st.state == "failed"), cur.state),
            frames_acquired=total("frames_acquired"), raw_written=total("raw_written"),
            enhanced_live=total("enhanced_live"), enhanced_after=total("enhanced_after"),
            skipped=total("skipped"), failed=total("failed"), backlog=total("backlog"),
            raw_queue=total("raw_queue"), enhance_queue=total("enhance_queue"),
            camera_fps=total("camera_fps"), enhance_fps=total("enhance_fps"),
            latency_p50_ms=cur.latency_p50_ms, latency_p99_ms=cur.latency_p99_ms,
            engine=engine, model=model, store_path=str(self.store_path), store_bytes=total("store_bytes"),
            policy=self.policy.value, error=errors[0] if errors else None,
        )

    # ================================================================== internals
    def _accept(self, image: np.ndarray, info: FrameInfo, source: str) -> bool:
        """Copy one frame into its stream; False when it was not stored (rejected, closed)."""
        with self._lock:
            if self._closed:
                self.after_close += 1
                if self.after_close == 1:
                    log.warning("frames arrive after the session was closed: passed on, not stored")
                return False
            self.frames_received += 1
            try:
                check_frame(image)
                stream = self._stream_for(image, info, source)
                stream.add(image, self._camera_time_ms(info), info.metadata, info.axes)
            except (FrameShapeError, FrameFormatError) as err:
                self._reject(err.message)
                return False
            except LivePSSRError as err:  # store failure: the frame goes to Micro-Manager's storage only
                self._reject(err.message)
                return False
            self._current = stream
            return True

    def _camera_time_ms(self, info: FrameInfo) -> float:
        if self._t0 is None:
            self._t0 = info.timestamp_s
        return (info.timestamp_s - self._t0) * 1e3

    def _reject(self, reason: str) -> None:
        self.rejected += 1
        if reason in self.rejected_reasons:
            self.rejected_reasons[reason] += 1
            return
        if len(self.rejected_reasons) < MAX_REASONS:
            self.rejected_reasons[reason] = 1
        log.warning("frame not stored (passed on to Micro-Manager): %s", reason)

    def _error(self, message: str) -> None:
        log.error("%s", message)
        if len(self.errors) < 100:
            self.errors.append(message)

    def _decide_layout(self, info: FrameInfo) -> None:
        if self.layout_request == "single":
            split: tuple[str, ...] = ()
        elif self._mda_sizes:
            split = order_axes([MDA_AXES.get(k, k) for k, n in self._mda_sizes.items() if n > 1])
            if not split and self.layout_request == "series":
                split = order_axes(list(info.axes))
        else:
            split = order_axes(list(info.axes))
        self._split_axes = split
        self.layout = "series" if (split or self.layout_request == "series") else "single"
        log.info("layout %s%s", self.layout, f" split by {', '.join(split)}" if split else "")

    def _stream_for(self, image: np.ndarray, info: FrameInfo, source: str) -> Stream:
        if self._split_axes is None:
            self._decide_layout(info)
        key = split_key(info.axes, self._split_axes)
        stream = self._streams.get(key)
        if stream is not None:
            return stream
        name = stream_name(key)
        taken = {s.name for s in self._streams.values()}
        base, i = name, 2
        while name in taken:
            name, i = f"{base}-{i}", i + 1
        path = self.store_path if self.layout == "single" else self.store_path / name
        md = info.metadata
        px = md.get("pixel_size_um")
        acquisition = {**self.acquisition, "source": source, "stream": {"name": name, "axes": dict(key)},
                       "first_frame": md}
        spec = StoreSpec(
            path, overwrite=self.overwrite or self.layout == "series",
            pixel_size_um=px if px and px > 0 else None,
            frame_interval_s=self.frame_interval_s if self.frame_interval_s is not None
            else (self._mda_interval_s or 0.0),
            run_metadata={**self.run_metadata, "acquisition": acquisition}, codec=self.codec,
        )

        def make_pipeline() -> LivePipeline:  # on the stream's starter thread
            if self.layout == "series":
                self._prepare_series_folder()
            pipeline = LivePipeline(self.enhancer, spec, policy=self.policy,
                                    enhance_queue_size=self.enhance_queue_size,
                                    max_raw_queue_bytes=self.max_raw_queue_bytes).start()
            if self.layout == "series":
                self._write_index("recording")
            return pipeline

        stream = Stream(name, key, path, image.shape, image.dtype, make_pipeline, self._error)
        self._streams[key] = stream
        return stream

    def _prepare_series_folder(self) -> None:
        """Create the series group once (removing an old store first: overwrite was allowed)."""
        with self._index_lock:
            if self._series_ready:
                return
            if self.store_path.exists():
                shutil.rmtree(self.store_path) if self.store_path.is_dir() else self.store_path.unlink()
            write_series_index(self.store_path, [], self._session_info(), "recording")
            self._series_ready = True

    def _write_index(self, state: str, summary: SessionSummary | None = None) -> None:
        with self._index_lock:
            self._write_index_locked(state, summary)

    def _write_index_locked(self, state: str, summary: SessionSummary | None) -> None:
        streams = []
        for s in list(self._streams.values()):
            entry = {"name": s.name, "path": s.name, "axes": dict(s.key), "frames": s.n}
            if summary is not None and s.name in summary.streams:
                entry["summary"] = summary.streams[s.name].to_dict()
            streams.append(entry)
        write_series_index(self.store_path, streams, self._session_info(), state)

    def _session_info(self) -> dict[str, Any]:
        return {
            "layout": self.layout, "split_axes": list(self._split_axes or ()),
            "frames_received": self.frames_received, "rejected": self.rejected,
            "rejected_reasons": dict(self.rejected_reasons), "after_close": self.after_close,
            "own_storage": self.own_storage, "hook": self.timer.as_dict(), "errors": list(self.errors),
            "engine": self.enhancer.engine_name if self.enhancer is not None else None,
        }

    def _engine_ready(self, enhancer: Enhancer) -> None:
        """Record the engine chosen after the stores were created (build thread)."""
        for s in list(self._streams.values()):
            store = s.pipeline.store if s.pipeline is not None else None
            if store is not None and not store.closed:
                try:
                    store.update_run_metadata(engine=enhancer.engine_name)
                except LivePSSRError as err:
                    self._error(err.message)
