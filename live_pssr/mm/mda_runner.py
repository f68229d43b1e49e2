"""Run a pymmcore-plus MDA on a background thread, driven like the demo's source runner.

:class:`MDARunner` has the runner protocol the viewer and the live commands use (``done``,
``stop()``, ``pause(bool)``, ``paused``, ``error``, ``wait(on_tick)``): the acquisition runs
``core.mda.run(sequence)`` on its own thread, so the main thread is free for Qt or a progress
line; ``stop`` cancels the MDA at the next event boundary (pymmcore-plus ``mda.cancel``),
``pause`` holds it between events (``mda.set_paused``). Frames reach a
:class:`~live_pssr.session.LiveSession` through its ``frameReady`` listener
(:meth:`~live_pssr.session.LiveSession.connect`), which the runner does not need to know about;
``stats_source`` (the session) only feeds ``wait``'s ticks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("live_pssr.mm")


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
        self._thread = threading.Thread(target=self._run, name="live-pssr-mda", daemon=True)

    def start(self) -> MDARunner:
        self.core.mda.events.sequenceStarted.connect(self._on_started)
        self._thread.start()
        return self

    def _on_started(self, *args: Any) -> None:
        if self._stop.is_set():  # stop() came before the MDA was running
            self.core.mda.cancel()

    def _run(self) -> None:
        try:
            if not self._stop.is_set():
                self.core.mda.run(self.sequence)
        except Exception as err:  # keep what was acquired; report at the end
            log.exception("the MDA stopped with an error")
            self.error = err
        finally:
            self.canceled = self._stop.is_set()
            try:
                self.core.mda.events.sequenceStarted.disconnect(self._on_started)
            except Exception:
                pass
            self.done.set()

    def stop(self) -> None:
        """Cancel the acquisition (after the current event)."""
        self._stop.set()
        self.core.mda.cancel()

    def pause(self, paused: bool = True) -> None:
        """Hold (or resume) the acquisition between events."""
        self.core.mda.set_paused(paused)

    @property
    def paused(self) -> bool:
        return bool(self.core.mda.is_paused())

    def wait(self, on_tick: Callable[[Any], None] | None = None, interval_s: float = 0.5) -> None:
        """Block until the MDA ends, calling ``on_tick(stats)`` every ``interval_s``."""
        while not self.done.wait(interval_s):
            if on_tick is not None and self.stats_source is not None:
                on_tick(self.stats_source.stats())
        if on_tick is not None and self.stats_source is not None:
            on_tick(self.stats_source.stats())
