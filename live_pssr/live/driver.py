"""The driver loop of the live commands (``demo``, ``acquire``): run, show, stop, summarise.

:func:`drive_run` shows the viewer (or a progress line) until the runner is done, then stops the
run: whatever happens (the window closed, Ctrl-C, SIGTERM, SIGHUP, an error in the viewer),
acquisition is stopped, every raw frame is written and the store closed, and the summary is
printed. Signals (:func:`stop_signals`): the first SIGINT/SIGTERM/SIGHUP stops acquisition like
Ctrl-C (:class:`~live_pssr.errors.Interrupted`, exit status 128 + signal: 130, 143, 129); any
later one only abandons the enhancement backlog (the raw frames are all written) and never
raises again, so a second Ctrl-C cannot tear the process down mid-close.
:func:`run_live` is ``demo``'s whole run: source -> pipeline -> store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Interrupted
from ..pipeline import Policy
from .protocols import LiveRun, Runner

log = logging.getLogger("live_pssr")

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def has_display() -> bool:
    """True where a Qt window can be shown to a person."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt"


def use_viewer(headless: bool, screenshot: Path | None, console: Any = None) -> bool:
    """Whether the run shows the viewer; call it before the run starts.

    A ``--screenshot`` without Qt is an error now (not after the acquisition); a display without
    Qt only means a headless run (said once).
    """
    wanted = not headless and (has_display() or screenshot is not None)
    if not wanted:
        return False
    from ..engines.capabilities import MissingExtraError
    from ..viewer import require_qt

    try:
        require_qt("the live viewer")
    except MissingExtraError as err:
        if screenshot is not None:
            raise
        if console is not None:
            console.print(f"no viewer: {err.message} ({err.hint}); running headless")
        return False
    return True


@dataclass
class RunOutcome:
    """How a driven run ended: its summary and the signal that stopped it (0: none)."""

    summary: Any
    signum: int = 0

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 0


@contextlib.contextmanager
def stop_signals(on_again: Callable[[], None]) -> Iterator[list[int]]:
    """First stop signal -> :class:`Interrupted` in the main thread; later ones -> ``on_again()``.

    Yields the list of signals received. A no-op off the main thread (signals go there only).
    After a stop signal the handlers are not restored: the run has ended and its store is
    closed, and a further signal while the process exits is ignored (it must not kill it).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            raise Interrupted(signum)
        log.warning("signal %d again: leaving the enhancement backlog for later (raw frames are safe)",
                    signum)
        on_again()

    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield received
    finally:
        if received:  # the process is on its way out with 128 + signal: later signals are ignored
            for s in STOP_SIGNALS:  # (SIG_IGN also holds while the interpreter shuts down)
                signal.signal(s, signal.SIG_IGN)
        else:
            for s, h in previous.items():
                signal.signal(s, h)


def drive_run(run: LiveRun, runner: Runner, *, headless: bool, screenshot: Path | None,
              console: Any) -> RunOutcome:
    """Show the viewer (or a progress line) until ``runner`` is done, then stop ``run``.

    ``run`` is a LivePipeline or a LiveSession; ``runner`` a SourceRunner or MDARunner. Whatever
    happens in the viewer or the loop, acquisition is stopped and the store closed.
    """
    show = use_viewer(headless, screenshot, console)
    if not headless and not show and not has_display() and screenshot is None:
        console.print("no display found: running headless (use --screenshot PATH to render the viewer)")
    signum = 0
    with stop_signals(run.abandon_backlog) as received:
        try:
            try:
                if show:
                    from ..viewer import run_live_viewer

                    run_live_viewer(run, runner, screenshot=screenshot)
                else:
                    _progress_loop(runner, console)
            except Interrupted as err:
                signum = err.signum
            except KeyboardInterrupt:
                signum = signal.SIGINT
            if signum:
                console.print(f"\ninterrupted ({signal.Signals(signum).name}): stopping acquisition, closing "
                              "the store (again: leave the enhancement backlog for later)")
        finally:  # whatever happened in the viewer or the loop: stop acquiring, close the store
            runner.stop()
            _wait_done(runner, run)
            summary = _stop_with_progress(run, console, interrupted=bool(signum or received))
            console.print(summary.text())
    return RunOutcome(summary, signum or (received[0] if received else 0))


def _wait_done(runner: Runner, run: LiveRun) -> None:
    """Wait for the runner's thread; a signal meanwhile only abandons the backlog."""
    while True:
        try:
            runner.done.wait()
            return
        except Interrupted:
            run.abandon_backlog()


def _progress_loop(runner: Runner, console: Any) -> None:
    from rich.live import Live

    with Live(console=console, refresh_per_second=4, transient=False) as live:
        runner.wait(lambda st: live.update(st.line()), interval_s=0.25)


def _stop_with_progress(run: LiveRun, console: Any, interrupted: bool) -> Any:
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = None

        def progress(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task("enhancing the backlog from disk (Ctrl-C leaves it for later)",
                                    total=total)
            bar.update(task, completed=done)

        while True:
            try:
                return run.stop(progress=progress, interrupted=interrupted)
            except Interrupted:  # cannot happen after the first signal, but never leave the store open
                run.abandon_backlog()


def run_live(
    *, source: Any, model: Any, engine: str, out: Path, overwrite: bool, policy: str,
    frames: int | None, headless: bool, screenshot: Path | None, acquisition: dict[str, Any],
    inputs: tuple[Path, ...] = (), fsync: str | float = "off",
    consistency: bool = True, consistency_every: int = 1, camera: Any = None,
) -> RunOutcome:
    """Source -> pipeline -> store (+ viewer), with a progress line and the end summary.

    ``inputs``: files the source reads (a replayed recording), never replaced by the output.
    ``consistency``, ``consistency_every``, ``camera``: the live consistency check
    (:func:`~live_pssr.pipeline.checking.consistency_spec`; a bad calibration fails here, first).
    Raises the run's store error after the store is closed; returns how the run ended.
    """
    from rich.console import Console

    from ..enhancer import build_enhancer
    from ..pipeline import LivePipeline, StoreSpec
    from ..pipeline.checking import consistency_spec
    from ..store.claim import claim_dir
    from .runners import SourceRunner

    console = Console(stderr=True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pol = Policy(policy)
    check = consistency_spec(consistency, consistency_every, camera)
    use_viewer(headless, screenshot)  # a --screenshot without Qt fails before anything is claimed
    claim = claim_dir(out, overwrite=overwrite, inputs=tuple(inputs))  # before any work on the model
    try:
        enhancer = build_enhancer(model, source.shape, engine)
    except BaseException:
        claim.abandon()
        raise
    console.print(f"model {enhancer.model.model_id} (x{enhancer.upscale}, {enhancer.in_frames} frame(s)), "
                  f"engine {enhancer.engine_name}, policy {pol.value}")
    pipeline = LivePipeline(
        enhancer,
        StoreSpec(out, overwrite=overwrite, pixel_size_um=source.pixel_size_um,
                  frame_interval_s=1.0 / source.fps if source.fps else 0.0,
                  run_metadata={"acquisition": acquisition}, inputs=tuple(inputs), fsync=fsync,
                  claim=claim),
        policy=pol,
        consistency=check,
    )
    runner = SourceRunner(source, pipeline, frames).start()
    outcome = drive_run(pipeline, runner, headless=headless, screenshot=screenshot, console=console)
    if runner.error is not None:
        raise runner.error
    if pipeline.error is not None:
        raise pipeline.error
    return outcome
