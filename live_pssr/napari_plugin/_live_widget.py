"""Live enhancement of the MDA that napari-micromanager / pymmcore-widgets drive.

Threads
-------
* **Start** (GUI thread) reads the choices; a napari ``thread_worker`` then makes the
  :class:`~live_pssr.live.LiveSession` (it claims the store path) and builds and warms up the
  enhancer for the core's image size (:meth:`~live_pssr.live.LiveSession.prepare`: seconds for
  ``auto``). Back on the GUI thread the session is connected to the core
  (:meth:`~live_pssr.live.LiveSession.connect`, ``frameReady`` and ``sequenceStarted``), so the
  connection is made on the thread that owns the widget (pymmcore-plus's Qt signals queue to it).
* **Acquisition**: pymmcore-plus's runner thread (or the GUI thread, when the core's signals are
  Qt's and queued) calls ``session.frameReady``, which only validates, copies and enqueues; the
  session's own threads write the store and run the model. Nothing here runs on that thread
  except a ``threading.Event`` set when the sequence finishes.
* **Display**: a ``QTimer`` on the GUI thread (``display_hz``) reads the session's one-slot
  :meth:`~live_pssr.live.LiveSession.latest` and, when a newer enhanced frame is there, sets the
  layer ``enhanced (live)``'s data (created at the first frame with scale = core pixel size /
  upscale and the translation of :mod:`._geometry`). It never waits for a frame.
* **Stop** (the button, or the end of the MDA with "close the store when the MDA ends"): the
  session is disconnected and closed on a ``thread_worker`` (the ``complete`` policy's backlog is
  enhanced from disk meanwhile); its summary is shown. Every worker's ``errored`` is shown in
  napari's notifications and the status line; the session's own errors (a store that failed) are
  shown as they appear in its stats. (Workers are napari's ``FunctionWorker`` made directly, not
  by ``create_worker``: see :mod:`._enhance_widget`.)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..normalize import percentile_range
from ._common import engine_choices, model_choices, report_error
from ._geometry import enhanced_translate

LAYER_NAME = "enhanced (live)"
POLICIES = ("preview", "complete")


def default_store() -> Path:
    """``./live-pssr-<date>-<time>.ome.zarr``: a fresh path for each run."""
    return Path.cwd() / time.strftime("live-pssr-%Y%m%d-%H%M%S.ome.zarr")


class LiveWidget(QWidget):
    """Dock widget: attach a LiveSession to a pymmcore-plus core and show its enhanced stream.

    ``core``: the core to attach to; default ``pymmcore_plus.CMMCorePlus.instance()`` (the one
    napari-micromanager and pymmcore-widgets use), looked up when Start is pressed.
    """

    def __init__(self, napari_viewer: Any, core: Any = None, display_hz: float = 30.0) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.core = core
        self.session: Any = None
        self.layer: Any = None
        self.summary: Any = None
        self.shown_index: int | None = None  #: index of the enhanced frame on screen
        self.frames_shown = 0
        self._worker: Any = None
        self._seq = -1
        self._sequence_done = threading.Event()
        self._last_error: str | None = None

        self.model_box = QComboBox()
        self.model_box.setEditable(True)
        self.model_box.addItems(model_choices())
        self.engine_box = QComboBox()
        self.engine_box.addItems(engine_choices())
        self.policy_box = QComboBox()
        self.policy_box.addItems(POLICIES)
        self.store_edit = QLineEdit(str(default_store()))
        self.overwrite = QCheckBox("replace an existing live-pssr store")
        self.close_at_end = QCheckBox("close the store when the MDA ends")
        self.close_at_end.setChecked(True)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.status = QLabel("not attached")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("model", self.model_box)
        form.addRow("engine", self.engine_box)
        form.addRow("policy", self.policy_box)
        form.addRow("store", self.store_edit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        box = QVBoxLayout(self)
        box.addLayout(form)
        box.addWidget(self.overwrite)
        box.addWidget(self.close_at_end)
        box.addLayout(buttons)
        box.addWidget(self.status)
        box.addStretch()

        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.timer = QTimer(self)
        self.timer.setInterval(max(1, int(round(1000.0 / display_hz))))
        self.timer.timeout.connect(self.refresh)

    # ------------------------------------------------------------------ start
    def _core(self) -> Any:
        if self.core is None:
            from pymmcore_plus import CMMCorePlus

            self.core = CMMCorePlus.instance()
        return self.core

    def start(self) -> Any:
        """Make the session and warm its model up on a worker, then connect it (GUI thread)."""
        from napari.qt.threading import FunctionWorker

        if self.session is not None or self._worker is not None:
            return self._worker
        try:
            core = self._core()
            shape = (int(core.getImageHeight()), int(core.getImageWidth()))
        except Exception as err:  # no camera loaded, or pymmcore-plus missing
            self.status.setText(report_error("cannot attach to the Micro-Manager core", err))
            return None
        settings = {"model": self.model_box.currentText().strip(), "engine": self.engine_box.currentText(),
                    "policy": self.policy_box.currentText(), "store": self.store_edit.text().strip(),
                    "overwrite": self.overwrite.isChecked()}
        self.summary, self.shown_index, self.frames_shown, self._seq = None, None, 0, -1
        self._sequence_done.clear()
        self.start_button.setEnabled(False)
        self.status.setText(f"loading {settings['model']} ({settings['engine']}) for {shape[1]} x {shape[0]} "
                            "frames...")
        return self._run_worker(FunctionWorker(_make_session, settings, shape), self._attach,
                                self._start_failed)

    def _attach(self, session: Any) -> None:
        core = self._core()
        self.session = session.connect(core, warm_up=False)
        core.mda.events.sequenceFinished.connect(self._on_sequence_finished)
        self.stop_button.setEnabled(True)
        self.status.setText(f"attached: {session.store_path} ({session.policy.value}); waiting for the MDA")
        self.timer.start()

    def _start_failed(self, err: BaseException) -> None:
        self.status.setText(report_error("could not start live enhancement", err))
        self.start_button.setEnabled(True)

    def _on_sequence_finished(self, *_: Any) -> None:
        """MDA signal (the runner's thread, or the GUI thread): only sets a flag."""
        self._sequence_done.set()

    def _worker_done(self) -> None:
        self._worker = None

    # ------------------------------------------------------------------ display
    def refresh(self) -> None:
        """GUI timer: show the session's newest enhanced frame, if it changed; update the status."""
        session = self.session
        if session is None:
            return
        frame = session.latest()
        if frame is not None and frame.seq != self._seq and frame.enhanced is not None \
                and frame.enhanced_index != self.shown_index:
            self._show(frame.enhanced, session)
            self.shown_index = frame.enhanced_index
            self.frames_shown += 1
        if frame is not None:
            self._seq = frame.seq
        stats = session.stats()
        if stats.error and stats.error != self._last_error:
            self._last_error = stats.error
            report_error("live enhancement", stats.error)
        self.status.setText(f"{stats.raw_written} raw frame(s) stored, {stats.enhanced_live} enhanced live, "
                            f"latency p50 {stats.latency_p50_ms or 0:.0f} ms; on screen: frame "
                            f"{self.shown_index}" + (f"; error: {stats.error}" if stats.error else ""))
        if self._sequence_done.is_set() and self.close_at_end.isChecked():
            self.stop()

    def _show(self, image: Any, session: Any) -> None:
        if self.layer is not None and self.layer not in self.viewer.layers:
            self.layer = None  # the user deleted it: make it again
        if self.layer is None:
            u = session.enhancer.upscale if session.enhancer is not None else 1
            px = float(self._core().getPixelSizeUm() or 1.0)
            shift = enhanced_translate(px, u)
            lo, hi = percentile_range(image, 0.5, 99.8)
            self.layer = self.viewer.add_image(
                image, name=LAYER_NAME, scale=(px / u, px / u), translate=(shift, shift),
                contrast_limits=(float(lo), float(hi)), units=("micrometer", "micrometer"),
                metadata={"live_pssr": {"store": str(session.store_path), "upscale": u}})
        else:
            self.layer.data = image

    # ------------------------------------------------------------------ stop
    def stop(self) -> Any:
        """Disconnect from the core and close the session on a worker (backlog, then summary)."""
        from napari.qt.threading import FunctionWorker

        session, self.session = self.session, None
        if session is None:
            return None
        self.timer.stop()
        self.stop_button.setEnabled(False)
        session.disconnect()
        try:
            self._core().mda.events.sequenceFinished.disconnect(self._on_sequence_finished)
        except Exception:  # already disconnected
            pass
        self.status.setText(f"closing {session.store_path}...")
        return self._run_worker(FunctionWorker(session.stop), self._stopped, self._stop_failed)

    def _run_worker(self, worker: Any, returned: Any, errored: Any) -> Any:
        """Start ``worker`` (off the GUI thread) with its result and error handlers; kept until done."""
        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(self._worker_done)
        self._worker = worker
        worker.start()
        return worker

    def _stopped(self, summary: Any) -> None:
        self.summary = summary
        self.status.setText(summary.text())
        self.start_button.setEnabled(True)
        self.store_edit.setText(str(default_store()))

    def _stop_failed(self, err: BaseException) -> None:
        self.status.setText(report_error("closing the live session failed", err))
        self.start_button.setEnabled(True)


def _make_session(settings: dict[str, Any], shape: tuple[int, int]) -> Any:
    """Worker: the session (claims the store path) with its enhancer built for ``shape``."""
    from ..live import LiveSession

    session = LiveSession(model=settings["model"], store=settings["store"], policy=settings["policy"],
                          engine=settings["engine"], overwrite=settings["overwrite"])
    try:
        session.prepare(shape)
    except BaseException:
        session.stop()
        raise
    return session
