"""One stream of a :class:`~live_pssr.live.session.LiveSession`: frames of one axes combination.

Creating a run store takes tens of milliseconds (folders, metadata, arrays, the disk reserve),
which the acquisition thread must not spend, so a :class:`Stream` starts its pipeline (and
creates its store) on a short-lived thread::

    add(frame)  (acquisition thread, under the session's lock)
        check size/dtype against the stream's first frame (FrameShapeError / FrameFormatError)
        failed?  -> StoreWriteError (a flag checked before any copy; a new error each time)
        copy (native byte order), give it the next index t
            pipeline running?  yes -> pipeline.submit(frame) -> durable?
                           no  -> pending queue (the starter drains it, in order, then switches over)

``add`` returns whether the frame is *durable* (queued to a store that exists, within its disk
reserve): only then may the pycromanager hook acknowledge it (return ``None`` with
``own_storage=True``). Frames queued while the store is being created are not durable yet: they
are passed on to Micro-Manager as well, so nothing depends on the store's creation succeeding.

If the store cannot be created (read-only folder, full disk, path taken), the stream fails: its
pending frames are counted as not stored (``rejected``, with the reason; Micro-Manager has them)
and every later frame of the stream is refused the same way.

Each frame's Micro-Manager axes are kept in compact integer columns (8 bytes per axis and frame),
written as the store's ``mm/<axis>`` arrays when the session closes.
"""

from __future__ import annotations

import logging
import threading
from array import array
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LivePSSRError, StoreWriteError
from ..frames import Frame, check_frame, native_copy
from ..pipeline import LivePipeline, Summary

log = logging.getLogger("live_pssr.session")

STREAM_FAILED_HINT = ("check that the output folder is writable and has free space; "
                      "Micro-Manager kept the frames")


class AxisColumns:
    """Each frame's axis values: ints as themselves, names as codes, ``None`` as -1 (bounded)."""

    def __init__(self) -> None:
        self._cols: dict[str, array] = {}
        self._names: dict[str, list[str]] = {}
        self._codes: dict[str, dict[str, int]] = {}
        self.n = 0

    def append(self, axes: dict[str, Any]) -> None:
        for axis in axes:
            if axis not in self._cols:
                self._cols[axis] = array("q", [-1] * self.n)
        for axis, col in self._cols.items():
            value = axes.get(axis)
            if value is None:
                col.append(-1)
            elif isinstance(value, str):
                codes = self._codes.setdefault(axis, {})
                if value not in codes:
                    codes[value] = len(codes)
                    self._names.setdefault(axis, []).append(value)
                col.append(-2 - codes[value])
            else:
                col.append(int(value))
        self.n += 1

    def as_lists(self) -> dict[str, list[Any]]:
        """``{axis: [value per frame]}`` with names and None restored."""
        out: dict[str, list[Any]] = {}
        for axis, col in self._cols.items():
            names = self._names.get(axis, [])
            out[axis] = [None if v == -1 else (names[-2 - v] if v < -1 else v) for v in col]
        return out


class Stream:
    """A pipeline for one axes combination, started in the background, fed in frame order.

    Parameters
    ----------
    name, key, path
        Stream name, its (axis, value) key and its store path.
    shape, dtype
        Size and dtype of its first frame (every later frame must match).
    make_pipeline : callable
        Returns a started :class:`~live_pssr.pipeline.LivePipeline` with its store created (run
        on the starter thread).
    on_failed : callable
        ``on_failed(message, n_frames)`` when the stream fails with ``n_frames`` not stored.
    """

    def __init__(self, name: str, key: tuple[tuple[str, Any], ...], path: Path, shape: tuple[int, int],
                 dtype: np.dtype, make_pipeline: Callable[[], LivePipeline],
                 on_failed: Callable[[str, int], None]) -> None:
        self.name, self.key, self.path = name, key, path
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.pipeline: LivePipeline | None = None
        self.columns = AxisColumns()
        self._failure: str | None = None
        self._make, self._on_failed = make_pipeline, on_failed
        self._pending: deque[Frame] = deque()
        self._ready = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._start, name=f"live-pssr-start-{name}", daemon=True)
        self._thread.start()

    @property
    def n(self) -> int:
        """Frames given an index in this stream."""
        return self.columns.n

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def failure(self) -> str | None:
        """Why the stream takes no more frames (None while it does)."""
        if self._failure is not None:
            return self._failure
        refusal = self.pipeline.refusal if self.pipeline is not None else None
        return refusal[0] if refusal is not None else None

    def add(self, image: np.ndarray, camera_time_ms: float, metadata: dict[str, Any],
            axes: dict[str, Any]) -> bool:
        """Copy ``image`` in as the next frame; True when it is durable (see the module docstring).

        Raises FrameShapeError/FrameFormatError for a frame that does not match the stream, and
        a new StoreWriteError once the stream failed (nothing copied then).
        """
        check_frame(image, self.shape, self.dtype)
        failure = self.failure
        if failure is not None:
            raise StoreWriteError(failure, STREAM_FAILED_HINT)
        frame = Frame(self.n, native_copy(image), camera_time_ms, metadata)
        if not self._ready:
            with self._lock:
                queued = not self._ready
                if queued:
                    self._pending.append(frame)
            if queued:
                self.columns.append(axes)
                return False
        pipeline = self.pipeline
        if pipeline is None:  # the start failed just now
            raise StoreWriteError(self.failure or f"stream {self.name} has no store", STREAM_FAILED_HINT)
        durable = pipeline.submit(frame)  # raises when the store refuses it: index not used
        self.columns.append(axes)
        return durable

    def _start(self) -> None:
        try:
            self.pipeline = self._make()
        except Exception as err:
            self._fail(err)
            return
        while True:
            with self._lock:
                if not self._pending:
                    self._ready = True
                    return
                batch = list(self._pending)
                self._pending.clear()
            for i, frame in enumerate(batch):
                try:
                    self.pipeline.submit(frame)
                except Exception as err:
                    with self._lock:
                        self._pending.extendleft(reversed(batch[i:]))
                    self._fail(err)
                    return

    def _fail(self, err: Exception) -> None:
        message = err.message if isinstance(err, LivePSSRError) else f"{type(err).__name__}: {err}"
        message = f"stream {self.name} could not store its frames at {self.path}: {message}"
        with self._lock:
            self._failure = message
            dropped = len(self._pending)
            self._pending.clear()
            self._ready = True  # no more queueing: add() refuses from now on
        self._on_failed(message, dropped)

    def wait_started(self) -> None:
        """Block until the starter thread is done (pipeline running, or the stream failed)."""
        self._thread.join()

    def stop(self, finish_backlog: bool = True, progress: Callable[[int, int], None] | None = None,
             interrupted: bool = False) -> Summary | None:
        """Wait for the start, then stop the pipeline (None if it never started)."""
        self._thread.join()
        if self.pipeline is None:
            return None
        return self.pipeline.stop(finish_backlog=finish_backlog, progress=progress, interrupted=interrupted)
