"""One enhancer for all streams of a session, built off the acquisition thread.

A :class:`~live_pssr.live.session.LiveSession` creates its pipelines at the first frame of each
stream (on starter threads, started from the acquisition's thread). Choosing
and warming up an engine can take seconds, which that thread cannot spend. :class:`SharedEnhancer`
looks like an :class:`~live_pssr.enhancer.Enhancer` to the pipeline, but:

* ``prepare(shape)`` returns at once: the first call starts a background thread that builds the
  real enhancer (model load already done, engine selection + warm-up for ``shape``);
* ``enhance_window`` (called on the pipelines' enhancer threads) waits for that build, then runs
  under a lock, so the streams of a multi-dimensional run share one engine one frame at a time
  (one accelerator, one model in memory);
* a failed build makes every ``enhance_window`` raise that error: the pipeline marks the frames
  'failed', keeps saving raw frames, and reports it.

:meth:`SharedEnhancer.build` is the blocking version, for a warm-up before acquisition starts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..enhancer import Enhancer, build_enhancer
from ..modelio import LoadedModel

log = logging.getLogger("live_pssr.session")


class SharedEnhancer:
    """Enhancer proxy: lazy background build, serialised use (see module docstring).

    Parameters
    ----------
    model : LoadedModel or Enhancer
        The model (an engine is chosen for it), or a ready enhancer used as is.
    engine : str
        Engine name for :func:`~live_pssr.enhancer.build_enhancer` (``auto``, ``torch``, ...).
    on_ready : callable, optional
        Called (on the build thread) with the real enhancer once it is built.
    """

    def __init__(self, model: LoadedModel | Enhancer, engine: str = "auto",
                 on_ready: Callable[[Enhancer], None] | None = None) -> None:
        self._real: Enhancer | None = model if isinstance(model, Enhancer) else None
        self.model: LoadedModel = model.model if isinstance(model, Enhancer) else model
        self.engine_request = engine
        self.upscale = self.model.spec.upscale
        self.in_frames = self.model.spec.in_frames
        self.on_ready = on_ready
        self.error: BaseException | None = None
        self.build_seconds: float | None = None
        self._ready = threading.Event()
        self._started = False
        self._start_lock = threading.Lock()
        self._run_lock = threading.Lock()

    # ------------------------------------------------------------------ building
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def engine_name(self) -> str:
        real = self._real
        return real.engine_name if real is not None else f"{self.engine_request} (selecting)"

    def prepare(self, shape: tuple[int, int]) -> None:
        """Start building for frames of ``shape`` in the background (returns at once)."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._build, args=(tuple(shape),), name="live-pssr-engine-build",
                         daemon=True).start()

    def build(self, shape: tuple[int, int], timeout: float | None = None) -> Enhancer:
        """Build (or wait for the build) now; raises the build's error."""
        self.prepare(shape)
        if not self._ready.wait(timeout):
            raise TimeoutError("the enhancer is still being built")
        if self.error is not None:
            raise self.error
        assert self._real is not None
        return self._real

    def wait_built(self, timeout: float | None = None) -> bool:
        """Wait for a build in progress (True at once when none was started)."""
        return not self._started or self._ready.wait(timeout)

    def _build(self, shape: tuple[int, int]) -> None:
        t0 = time.perf_counter()
        try:
            if self._real is None:
                self._real = build_enhancer(self.model, shape, self.engine_request, prepare=True)
            else:
                with self._run_lock:
                    self._real.prepare(shape)
        except Exception as err:  # reported by every enhance call and in the summary
            log.error("could not build the enhancer (%s): %s", self.engine_request, err)
            self.error = err
        self.build_seconds = time.perf_counter() - t0
        if self.error is None:
            log.info("enhancer ready in %.1f s: %s", self.build_seconds, self._real.engine_name)
            if self.on_ready is not None:  # before the enhancer threads run (and stores close)
                try:
                    self.on_ready(self._real)
                except Exception:
                    log.exception("on_ready callback failed")
        self._ready.set()

    # ------------------------------------------------------------------ the Enhancer interface
    def output_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return shape[0] * self.upscale, shape[1] * self.upscale

    def enhance_window(self, frames: list[np.ndarray]) -> np.ndarray:
        """Enhance the last of ``frames`` (waits for the build; one caller at a time)."""
        if not self._ready.is_set():
            self.prepare(frames[-1].shape)
            self._ready.wait()
        if self.error is not None:
            raise RuntimeError(f"enhancer unavailable: {self.error}") from self.error
        with self._run_lock:
            return self._real.enhance_window(frames)

    def enhance_windows(self, windows: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Enhance several windows as one batch (waits for the build; one caller at a time)."""
        if not self._ready.is_set():
            self.prepare(windows[0][-1].shape)
            self._ready.wait()
        if self.error is not None:
            raise RuntimeError(f"enhancer unavailable: {self.error}") from self.error
        with self._run_lock:
            return self._real.enhance_windows(windows)

    def enhance(self, image: np.ndarray) -> np.ndarray:
        """Enhance one frame on its own (single-frame window)."""
        return self.enhance_window([image])

    def reset(self) -> None:
        """Nothing to forget: windows are passed in whole."""

    def __getattr__(self, name: str) -> Any:  # anything else the pipeline may ask (out_dtype...)
        real = self.__dict__.get("_real")
        if real is None:
            raise AttributeError(name)
        return getattr(real, name)
