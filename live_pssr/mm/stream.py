"""One stream of a :class:`~live_pssr.session.LiveSession`: frames of one axes combination.

Creating a run store takes tens of milliseconds (folders, metadata, arrays), which the
acquisition thread must not spend, so a :class:`Stream` starts its pipeline on a short-lived
thread::

    add(frame)  (acquisition thread, under the session's lock)
        check size/dtype against the stream's first frame (FrameShapeError / FrameFormatError)
        copy, give it the next index t
            pipeline running?  yes -> pipeline.submit(frame)
                           no  -> pending queue (starter drains it, in order, then switches over)

The pending queue only holds the frames that arrive while the store is being created. If the
pipeline cannot start (no space, path taken), the stream fails: its pending frames are dropped
(like the frames in a pipeline's queues on a disk failure) and the error is reported; later
``add`` calls raise it, so the session rejects those frames and passes them on to Micro-Manager.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LivePSSRError, StoreWriteError
from ..frames import Frame, check_frame
from ..pipeline import LivePipeline, Summary

log = logging.getLogger("live_pssr.session")


class Stream:
    """A pipeline for one axes combination, started in the background, fed in frame order.

    Parameters
    ----------
    name, key, path
        Stream name, its (axis, value) key and its store path.
    shape, dtype
        Size and dtype of its first frame (every later frame must match).
    make_pipeline : callable
        Returns a started :class:`~live_pssr.pipeline.LivePipeline` (run on the starter thread).
    on_error : callable
        Called with a message when the stream fails.
    """

    def __init__(self, name: str, key: tuple[tuple[str, Any], ...], path: Path, shape: tuple[int, int],
                 dtype: np.dtype, make_pipeline: Callable[[], LivePipeline],
                 on_error: Callable[[str], None]) -> None:
        self.name, self.key, self.path = name, key, path
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.pipeline: LivePipeline | None = None
        self.error: Exception | None = None
        self.n = 0
        self.columns: dict[str, list[Any]] = {}
        self._make, self._on_error = make_pipeline, on_error
        self._pending: deque[Frame] = deque()
        self._ready = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._start, name=f"live-pssr-start-{name}", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self._ready

    def add(self, image: np.ndarray, camera_time_ms: float, metadata: dict[str, Any],
            axes: dict[str, Any]) -> None:
        """Copy ``image`` in as the next frame (to the pipeline, or queued while it starts).

        Raises FrameShapeError/FrameFormatError for a frame that does not match the stream, and
        the stream's error once it failed (the pipeline's StoreWriteError after a disk failure).
        """
        check_frame(image, self.shape, self.dtype)
        if self.error is not None:
            raise self.error
        frame = Frame(self.n, np.array(image, copy=True), camera_time_ms, metadata)
        if not self._ready:
            with self._lock:
                queued = not self._ready
                if queued:
                    self._pending.append(frame)
            if not queued:  # the starter switched over meanwhile
                self.pipeline.submit(frame)
        else:
            self.pipeline.submit(frame)
        self._record(axes)

    def _record(self, axes: dict[str, Any]) -> None:
        for axis in axes:
            if axis not in self.columns:
                self.columns[axis] = [None] * self.n
        for axis, col in self.columns.items():
            col.append(axes.get(axis))
        self.n += 1

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
            for frame in batch:
                try:
                    self.pipeline.submit(frame)
                except Exception as err:
                    self._fail(err)
                    return

    def _fail(self, err: Exception) -> None:
        if not isinstance(err, LivePSSRError):  # e.g. OSError creating the series folder
            err = StoreWriteError(f"stream {self.name} could not start its store at {self.path}: {err}",
                                  "check that the output folder is writable and has free space")
        with self._lock:
            self.error = err
            dropped = len(self._pending)
            self._pending.clear()
        message = getattr(err, "message", None) or str(err)
        self._on_error(f"stream {self.name} stopped storing ({dropped} queued frame(s) lost): {message}")

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
