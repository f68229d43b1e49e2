"""The seams of the live path, declared: what a runner, a live run and an enhancer must offer.

Two classes implement each, and the viewer, the driver loop and the pipeline rely only on these:

* :class:`Runner` -- produces frames on its own thread: :class:`~live_pssr.live.runners.SourceRunner`
  (simulated microscope, replay), :class:`~live_pssr.live.runners.MDARunner` (pymmcore-plus).
* :class:`LiveRun` -- takes frames, stores and enhances them, shows the newest pair:
  :class:`~live_pssr.pipeline.LivePipeline` (one store), :class:`~live_pssr.live.session.LiveSession`
  (Micro-Manager: one or many stores).
* :class:`LiveEnhancer` -- what a pipeline calls: :class:`~live_pssr.enhancer.Enhancer`, and
  :class:`~live_pssr.live.shared_enhancer.SharedEnhancer` (one enhancer for all streams).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..modelio import LoadedModel


@runtime_checkable
class Runner(Protocol):
    """Acquisition on a background thread, controllable from the GUI / main thread."""

    done: threading.Event
    error: BaseException | None

    def stop(self) -> None: ...

    def pause(self, paused: bool = True) -> bool: ...

    @property
    def paused(self) -> bool: ...

    def wait(self, on_tick: Callable[[Any], None] | None = None, interval_s: float = 0.5) -> None: ...


@runtime_checkable
class LiveRun(Protocol):
    """Frames in; newest pair, counters and the end summary out.

    ``consistency``: the live consistency check's settings
    (:class:`~live_pssr.pipeline.checking.ConsistencySpec`), None when the run has no check.
    """

    consistency: Any

    def latest(self) -> Any: ...

    def stats(self) -> Any: ...

    def stop(self, finish_backlog: bool = True, progress: Callable[[int, int], None] | None = None,
             interrupted: bool = False) -> Any: ...

    def abandon_backlog(self) -> None: ...


@runtime_checkable
class LiveEnhancer(Protocol):
    """Enhancement of one window of camera frames (oldest first) into the newest frame's output."""

    model: LoadedModel
    upscale: int
    in_frames: int

    @property
    def engine_name(self) -> str: ...

    def prepare(self, shape: tuple[int, int]) -> None: ...

    def enhance_window(self, frames: list[np.ndarray]) -> np.ndarray: ...
