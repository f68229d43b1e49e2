"""Driving a pipeline from a frame source: the acquisition loop of ``demo`` (and replay).

:class:`SourceRunner` pulls frames from a :class:`~live_pssr.sources.FrameSource` on its own
thread and submits them to a :class:`~live_pssr.pipeline.LivePipeline`, so the main thread is free
for the viewer (Qt must own the main thread) or for a progress line. It stops at the frame count,
on :meth:`SourceRunner.stop` (window closed, Ctrl-C), or when the pipeline fails (disk full).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .errors import LivePSSRError
from .pipeline import LivePipeline, PipelineStats
from .sources import FrameSource

log = logging.getLogger("live_pssr.runner")


class SourceRunner:
    """Feed ``n_frames`` frames of ``source`` into ``pipeline`` on a background thread."""

    def __init__(self, source: FrameSource, pipeline: LivePipeline, n_frames: int | None,
                 paced: bool = True) -> None:
        self.source, self.pipeline, self.n_frames, self.paced = source, pipeline, n_frames, paced
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-pssr-source", daemon=True)

    def start(self) -> SourceRunner:
        self.pipeline.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop acquiring after the current frame."""
        self._stop.set()

    def pause(self, paused: bool = True) -> None:
        """Hold acquisition (the viewer's pause button); frames are not produced meanwhile."""
        (self._paused.set if paused else self._paused.clear)()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def _run(self) -> None:
        try:
            for frame in self.source.frames(self.n_frames, paced=self.paced):
                while self._paused.is_set() and not self._stop.is_set():
                    time.sleep(0.02)
                if self._stop.is_set():
                    break
                self.pipeline.submit(frame)
        except LivePSSRError as err:
            self.error = err
        except Exception as err:  # keep what was acquired; report at the end
            log.exception("acquisition stopped by an error")
            self.error = err
        finally:
            self.done.set()

    def wait(self, on_tick: Callable[[PipelineStats], None] | None = None,
             interval_s: float = 0.5) -> None:
        """Block until the source is done, calling ``on_tick(stats)`` every ``interval_s``."""
        while not self.done.wait(interval_s):
            if on_tick is not None:
                on_tick(self.pipeline.stats())
        if on_tick is not None:
            on_tick(self.pipeline.stats())
