"""Runners: what produces frames for a live run, on a thread of its own.

Both follow :class:`~live_pssr.live.protocols.Runner` (``start``, ``stop``, ``pause``, ``paused``,
``done``, ``error``, ``wait``), so the viewer and the driver loop (:mod:`live_pssr.live.driver`)
treat them alike, and the main thread stays free for Qt or a progress line:

* :class:`SourceRunner` pulls frames from a :class:`~live_pssr.sources.FrameSource` (the simulated
  microscope, a replayed recording) and submits them to a
  :class:`~live_pssr.pipeline.LivePipeline`; it stops at the frame count, on :meth:`stop`, or when
  the pipeline refuses frames (disk full).
* :class:`MDARunner` runs ``core.mda.run(sequence)`` (pymmcore-plus); frames reach a
  :class:`~live_pssr.live.session.LiveSession` through its ``frameReady`` listener.

Pausing an MDA
--------------
pymmcore-plus pauses between events (``mda.set_paused``), and in 0.18.1 a pause that lands while
the runner moves from waiting to acquiring is overwritten (the state is set to ``ACQUIRING``
after the pause check), so the camera keeps going. :class:`MDARunner` therefore re-asserts a
requested pause at every ``eventStarted``: the acquisition holds after at most the event in
progress. A hardware-sequenced burst (``interval=0``: one event for all frames) cannot be paused
by pymmcore-plus at all, only cancelled; :meth:`MDARunner.pause` returns False and logs that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import LivePSSRError
from ..pipeline import LivePipeline, PipelineStats
from ..sources import FrameSource

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
        """Open the store (on this thread: the source thread only acquires), then start acquiring."""
        self.pipeline.start(frame_shape=tuple(self.source.shape), dtype=getattr(self.source, "dtype", None))
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop acquiring after the current frame."""
        self._stop.set()

    def pause(self, paused: bool = True) -> bool:
        """Hold acquisition (the viewer's pause button); frames are not produced meanwhile."""
        (self._paused.set if paused else self._paused.clear)()
        return True

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


class MDARunner:
    """``core.mda.run(sequence)`` on a thread, with stop/pause and a done event.

    Parameters
    ----------
    core : CMMCorePlus
        The core (``UniMMCore`` for the simulated microscope).
    sequence : useq.MDASequence or iterable of MDAEvent
        What to acquire.
    stats_source : object, optional
        Anything with ``stats()`` (a LiveSession) for :meth:`wait`'s ``on_tick``.
    """

    def __init__(self, core: Any, sequence: Any, stats_source: Any = None) -> None:
        self.core, self.sequence, self.stats_source = core, sequence, stats_source
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.canceled = False
        self._stop = threading.Event()
        self._want_paused = False
        self._in_burst = False
        self._thread = threading.Thread(target=self._run, name="live-pssr-mda", daemon=True)

    def start(self) -> MDARunner:
        events = self.core.mda.events
        events.sequenceStarted.connect(self._on_started)
        events.eventStarted.connect(self._on_event)
        self._thread.start()
        return self

    def _on_started(self, *args: Any) -> None:
        if self._stop.is_set():  # stop() came before the MDA was running
            self.core.mda.cancel()

    def _on_event(self, event: Any, *args: Any) -> None:
        self._in_burst = type(event).__name__ == "SequencedEvent"  # pymmcore-plus's burst of frames
        if self._want_paused and not self.core.mda.is_paused():
            self.core.mda.set_paused(True)  # the pause was lost in pymmcore-plus's state change

    def _run(self) -> None:
        try:
            if not self._stop.is_set():
                self.core.mda.run(self.sequence)
        except Exception as err:  # keep what was acquired; report at the end
            log.exception("the MDA stopped with an error")
            self.error = err
        finally:
            self.canceled = self._stop.is_set()
            for name, slot in (("sequenceStarted", self._on_started), ("eventStarted", self._on_event)):
                try:
                    getattr(self.core.mda.events, name).disconnect(slot)
                except Exception:  # already disconnected
                    pass
            self.done.set()

    def stop(self) -> None:
        """Cancel the acquisition (after the current event)."""
        self._stop.set()
        self._want_paused = False
        self.core.mda.cancel()

    def pause(self, paused: bool = True) -> bool:
        """Hold (or resume) the acquisition between events; False where it cannot (a burst)."""
        if paused and self._in_burst:
            log.warning("a hardware-sequenced burst cannot be paused (pymmcore-plus can only cancel it); "
                        "use an interval > 0 to be able to pause")
            return False
        self._want_paused = paused
        self.core.mda.set_paused(paused)
        return True

    @property
    def paused(self) -> bool:
        return self._want_paused and bool(self.core.mda.is_paused())

    def wait(self, on_tick: Callable[[Any], None] | None = None, interval_s: float = 0.5) -> None:
        """Block until the MDA ends, calling ``on_tick(stats)`` every ``interval_s``."""
        while not self.done.wait(interval_s):
            if on_tick is not None and self.stats_source is not None:
                on_tick(self.stats_source.stats())
        if on_tick is not None and self.stats_source is not None:
            on_tick(self.stats_source.stats())
