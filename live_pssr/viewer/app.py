"""Running the viewer: the QApplication, the event loop, screenshots, Ctrl-C.

Both entry points run on the main thread and return when the window closes. They use a local
``QEventLoop`` (not ``app.exec()``), so they work whether or not a QApplication already exists
(tests, notebooks). Ctrl-C in the terminal closes the window and re-raises
:class:`KeyboardInterrupt` afterwards, so the caller's clean shutdown runs as usual. With no
display and a screenshot asked for, Qt's ``offscreen`` platform renders the window.

Qt aborts the whole process (a C++ ``qFatal``) when its X11 platform plugin cannot load, which would
leave a run's store unclosed. :func:`qt_platform_problem` finds that case first (the plugin and
the libraries it loads); the live viewer then renders offscreen for a screenshot, or warns and
lets the run go on without a window.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("live_pssr.viewer")

#: Debian/Ubuntu packages Qt's X11 platform plugin needs beyond a basic X client
XCB_PACKAGES = ("libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 "
                "libxcb-xkb1 libxkbcommon-x11-0")


def qt_platform_problem() -> str | None:
    """Why Qt could not open a window here (it would abort the process), or None.

    Checks the X11 case on Linux: the ``xcb`` plugin and its libraries must load.
    """
    if not sys.platform.startswith("linux"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None
    if not os.environ.get("DISPLAY") or (os.environ.get("WAYLAND_DISPLAY") and not platform):
        return None
    try:
        from qtpy import QtCore

        plugins = Path(QtCore.QLibraryInfo.path(QtCore.QLibraryInfo.LibraryPath.PluginsPath))
    except Exception as err:  # no Qt binding at all
        return f"Qt is not usable ({err})"
    plugin = plugins / "platforms" / "libqxcb.so"
    if plugin.exists():
        try:
            ctypes.CDLL(str(plugin))
        except OSError as err:
            return f"Qt's X11 platform plugin cannot load: {err}"
    if ctypes.util.find_library("xcb-cursor") is None:
        return "Qt's X11 platform plugin needs libxcb-cursor.so.0, which is not installed"
    return None


def platform_hint() -> str:
    return (f"install the X11 libraries Qt needs (Debian/Ubuntu: sudo apt-get install -y {XCB_PACKAGES}),"
            " or run with --headless, or --screenshot PATH (rendered offscreen)")


def ensure_app(offscreen: bool = False) -> Any:
    """The running QApplication, or a new one (``offscreen``: without a display)."""
    if offscreen and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from qtpy import QtWidgets

    app = QtWidgets.QApplication.instance()
    if app is None:
        _quiet_offscreen_warnings()
        app = QtWidgets.QApplication(["live-pssr"])
        app.setApplicationName("live-pssr")
    import pyqtgraph as pg

    from .qt_refcount import guard

    guard()
    pg.setConfigOptions(antialias=False)
    return app


def _quiet_offscreen_warnings() -> None:
    """Drop the offscreen platform's harmless 'propagateSizeHints' warning; pass on the rest."""
    from qtpy import QtCore

    previous = None

    def handler(mode: Any, context: Any, message: str) -> None:
        if "propagateSizeHints" in message:
            return
        if previous is not None:
            previous(mode, context, message)
        else:
            print(message, file=sys.stderr)

    previous = QtCore.qInstallMessageHandler(handler)


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt"


@contextmanager
def _ctrl_c_closes(window: Any):
    """While the loop runs, SIGINT/SIGTERM/SIGHUP close ``window``; yields the signals received."""
    hit: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield hit
        return
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.getsignal(getattr(signal, n)) for n in names}

    def handler(signum: int, frame: Any) -> None:  # runs at the next GUI timer tick
        hit.append(signum)
        window.close()

    for n in names:
        signal.signal(getattr(signal, n), handler)
    try:
        yield hit
    finally:
        for n in names:
            signal.signal(getattr(signal, n), previous[n])


def _run_loop(window: Any, watch: Callable[[], None] | None = None, interval_ms: int = 50) -> int:
    """Show ``window`` and run an event loop until it closes; the signal that closed it, or 0."""
    from qtpy import QtCore

    loop = QtCore.QEventLoop()
    window.closed.connect(loop.quit)
    watcher = None
    if watch is not None:
        watcher = QtCore.QTimer()
        watcher.setInterval(interval_ms)
        watcher.timeout.connect(watch)
        watcher.start()
    window.show()
    with _ctrl_c_closes(window) as hit:
        if not window._closed:  # noqa: SLF001 - closed before the loop started
            loop.exec()
    if watcher is not None:
        watcher.stop()
    return hit[0] if hit else 0


def grab_png(window: Any, path: str | Path) -> Path:
    """Render ``window`` as it is now into a PNG (works offscreen)."""
    from qtpy import QtWidgets

    QtWidgets.QApplication.processEvents()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        from ..errors import StoreWriteError

        raise StoreWriteError(f"cannot create the folder of the screenshot {path}: {err.strerror or err}",
                              "give --screenshot a PNG path in a writable folder") from err
    if path.is_dir() or not window.grab().save(str(path), "PNG"):
        from ..errors import StoreWriteError

        raise StoreWriteError(f"could not write the screenshot {path}"
                              + (" (it is a folder)" if path.is_dir() else ""),
                              "give --screenshot a PNG file path in a writable folder")
    return path


def run_live_viewer(pipeline: Any, runner: Any, screenshot: Path | None = None,
                    screenshot_after: int = 30, refresh_hz: float = 60.0) -> None:
    """Show the live viewer for ``pipeline`` driven by ``runner``; returns when it closes.

    With ``screenshot``, the window is saved as PNG after ``screenshot_after`` enhanced frames
    have been shown (or when the run ends), then acquisition stops and the function returns.
    Closing the window mid-run calls ``runner.stop()``; the caller stops the pipeline.
    """
    offscreen = screenshot is not None and not _has_display()
    problem = None if offscreen or os.environ.get("QT_QPA_PLATFORM") == "offscreen" \
        else qt_platform_problem()
    if problem is not None:
        if screenshot is None:
            log.warning("no viewer: %s; the run goes on without a window (fix: %s)", problem,
                        platform_hint())
            _wait_without_window(runner)
            return
        log.warning("%s: rendering the screenshot offscreen", problem)
        offscreen = True
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    ensure_app(offscreen=offscreen)
    from .window import ViewerWindow

    window = ViewerWindow(pipeline=pipeline, runner=runner, refresh_hz=refresh_hz)

    def watch() -> None:
        if window._closed:  # noqa: SLF001
            return
        if window.enhanced_shown >= screenshot_after or window.finished:
            window.tick()
            grab_png(window, screenshot)
            runner.stop()
            window.close()

    signum = _run_loop(window, watch if screenshot is not None else None)
    window.deleteLater()
    if signum:
        from ..errors import Interrupted

        raise Interrupted(signum)


def _wait_without_window(runner: Any) -> None:
    """The run without a viewer: a progress line until the source is done (Ctrl-C stops)."""
    from rich.console import Console
    from rich.live import Live

    with Live(console=Console(stderr=True), refresh_per_second=4) as live:
        runner.wait(lambda st: live.update(st.line()), interval_s=0.25)


def run_review_viewer(store: str | Path, frame: int = 0, screenshot: Path | None = None,
                      mode: str = "side", consistency: bool = False) -> None:
    """Open a run store for review (time slider, records); returns when the window closes.

    With ``screenshot``, frame ``frame`` is drawn, the window saved as PNG, and it closes.
    ``consistency``: start with the consistency overlay on (a store without maps: the window
    opens without it and its status bar says why).
    """
    offscreen = screenshot is not None and not _has_display()
    problem = None if offscreen or os.environ.get("QT_QPA_PLATFORM") == "offscreen" \
        else qt_platform_problem()
    if problem is not None:
        if screenshot is None:
            from ..errors import LivePSSRError

            raise LivePSSRError(f"cannot open the viewer: {problem}", platform_hint())
        os.environ["QT_QPA_PLATFORM"] = offscreen = "offscreen"
    ensure_app(offscreen=bool(offscreen))
    from .window import ViewerWindow

    window = ViewerWindow(store=store)
    window.set_mode(mode)
    window.review(frame)
    if consistency:
        window.set_consistency(True)
    if screenshot is not None:
        window.show()
        window.tick()
        window.fit()
        window.tick()
        grab_png(window, screenshot)
        window.close()
        window.deleteLater()
        return
    signum = _run_loop(window)
    window.deleteLater()
    if signum:
        from ..errors import Interrupted

        raise Interrupted(signum)
