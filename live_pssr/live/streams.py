"""Where a session's frames go: the layout (one store or a series) and one :class:`Stream` each.

:class:`StreamRouter` decides the layout at the first frame (see :mod:`live_pssr.store.series`):
*single* puts every frame in the run store at the session's path; *series* splits frames by
their non-time axes into one run store per combination inside that path. The session has
already claimed the path (exclusive create + lock, :mod:`live_pssr.store.claim`) when it was
made, so the layout decision never creates, replaces or deletes anything on the acquisition
thread: the single stream's store is created inside the claimed folder, a series' index and its
stream stores inside it, all on the streams' starter threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..pipeline import LivePipeline, StoreSpec
from ..store.claim import OutputClaim
from ..store.series import write_series_index
from .frame_info import MDA_AXES, FrameInfo, order_axes, split_key, stream_name
from .stream import Stream

log = logging.getLogger("live_pssr.session")

LAYOUTS = ("auto", "single", "series")


class StreamRouter:
    """Layout decision, stream creation and the series index of one session.

    Parameters
    ----------
    path : Path
        The session's store path (claimed by ``claim``).
    claim : OutputClaim
        The session's claim on ``path``.
    request : {"auto", "single", "series"}
        The layout asked for.
    make_spec : callable
        ``make_spec(path, name, key, info) -> StoreSpec`` for a stream's store.
    make_pipeline : callable
        ``make_pipeline(spec) -> LivePipeline`` (not started).
    on_failed : callable
        ``on_failed(message, n_frames)`` when a stream fails.
    session_info : callable
        The session's counters for the series index.
    """

    def __init__(self, path: Path, claim: OutputClaim, request: str,
                 make_spec: Callable[[Path, str, tuple, FrameInfo], StoreSpec],
                 make_pipeline: Callable[[StoreSpec], LivePipeline],
                 on_failed: Callable[[str, int], None],
                 session_info: Callable[[], dict[str, Any]]) -> None:
        self.path, self.claim, self.request = path, claim, request
        self._make_spec, self._make_pipeline = make_spec, make_pipeline
        self._on_failed, self._session_info = on_failed, session_info
        self.streams: dict[tuple, Stream] = {}
        self.split_axes: tuple[str, ...] | None = None
        self.layout: str | None = None
        self.mda_sizes: dict[str, int] | None = None
        self._index_lock = threading.Lock()
        self._series_ready = False

    def decide(self, info: FrameInfo) -> None:
        """Choose the layout from the MDA sequence's sizes, or the first frame's axes."""
        if self.request == "single":
            split: tuple[str, ...] = ()
        elif self.mda_sizes:
            split = order_axes([MDA_AXES.get(k, k) for k, n in self.mda_sizes.items() if n > 1])
            if not split and self.request == "series":
                split = order_axes(list(info.axes))
        else:
            split = order_axes(list(info.axes))
        self.split_axes = split
        self.layout = "series" if (split or self.request == "series") else "single"
        log.info("layout %s%s", self.layout, f" split by {', '.join(split)}" if split else "")

    def stream_for(self, image: np.ndarray, info: FrameInfo) -> Stream:
        """The frame's stream (created, with its starter thread, at the stream's first frame)."""
        if self.split_axes is None:
            self.decide(info)
        key = split_key(info.axes, self.split_axes)
        stream = self.streams.get(key)
        if stream is not None:
            return stream
        name = stream_name(key)
        taken = {s.name for s in self.streams.values()}
        base, i = name, 2
        while name in taken:
            name, i = f"{base}-{i}", i + 1
        single = self.layout == "single"
        path = self.path if single else self.path / name
        spec = self._make_spec(path, name, key, info)
        if single:
            spec.claim = self.claim  # the store is created in the session's claimed folder

        def make_pipeline() -> LivePipeline:  # on the stream's starter thread
            if not single:
                self._prepare_series_folder()
            pipeline = self._make_pipeline(spec).start(
                frame_shape=image.shape, dtype=image.dtype.newbyteorder("="), metadata=info.metadata)
            if not single:
                self.write_index("recording")
            return pipeline

        stream = Stream(name, key, path, image.shape, image.dtype, make_pipeline, self._on_failed)
        self.streams[key] = stream
        return stream

    def _prepare_series_folder(self) -> None:
        """Write the series index into the claimed folder once."""
        with self._index_lock:
            if self._series_ready:
                return
            write_series_index(self.path, [], self._session_info(), "recording")
            self._series_ready = True

    def write_index(self, state: str, summaries: dict[str, Any] | None = None) -> None:
        """Rewrite the series index (atomic): streams, frame counts, summaries when closed."""
        with self._index_lock:
            streams = []
            for s in list(self.streams.values()):
                entry = {"name": s.name, "path": s.name, "axes": dict(s.key), "frames": s.n}
                if summaries is not None and s.name in summaries:
                    entry["summary"] = summaries[s.name].to_dict()
                streams.append(entry)
            write_series_index(self.path, streams, self._session_info(), state)
