"""The viewer window: raw and enhanced panels, controls, time slider, status bar.

One window class serves both uses:

- **live** (``pipeline`` and ``runner`` given): a GUI timer (``refresh_hz``, 60 by default) takes
  the newest :class:`~live_pssr.pipeline.DisplayFrame` from ``pipeline.latest()`` and redraws only
  what changed (``seq``, then the raw and enhanced indices); the status bar reads
  ``pipeline.stats()`` four times a second. The acquisition thread never sees Qt; the window never
  waits on the pipeline. Start/pause/stop call the runner (``pause(bool)``, ``stop()``).
- **review** (a store path, or the time slider moved during a live run): frames are read back
  from the store with :class:`~live_pssr.viewer.review.StoreBrowser` on the GUI timer (the newest
  requested index wins, so scrubbing never queues reads), with the frame's record shown.

Display modes: side by side (linked pan/zoom; raw scaled to the enhanced field), split and blend
(raw over enhanced in one view, see :mod:`~live_pssr.viewer.overlay`), enhanced only. In split,
blend and "pair" mode the raw image is the frame the enhanced one was made from, so the two
always show the same instant; otherwise the raw panel shows the newest camera frame.

Consistency overlay (C, or the "consistency" box; in any display mode): the signed error map of
the run's data-consistency check over the enhanced image, at the raw frame's field (see
:mod:`~live_pssr.viewer.consistency_layer`). Live, the map, score and flag of the shown enhanced
frame come in the pipeline's ``DisplayFrame`` and the run's counts in its ``PipelineStats``; in
review they are read from the store. The status bar's consistency field counts the flagged
frames and turns white on red while the shown frame is flagged (the enhanced panel says so too).
A map shows only over the enhanced frame it belongs to (a frame not checked shows none). A run
without maps (recorded, or running, without the check) leaves the control disabled, its tooltip
saying why; the C key then only shows that reason in the status bar, never an error.

Keys: Space pause/resume, Shift+Esc stop, Ctrl+S snapshot, 1-4 modes, C consistency overlay,
A auto contrast, F fit, M pair, Left/Right step back/forward (review), Home first frame, End back
to live, Ctrl+W close.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy import QtCore, QtGui, QtWidgets

from .consistency_layer import ConsistencyLayer
from .overlay import Overlay
from .panel import ImagePanel
from .qt_refcount import guard
from .review import ReviewFrame, StoreBrowser, record_text
from .snapshot import save_png, side_by_side, snapshot_path
from .status import ConsistencyStatus, RateCounter, consistency_status, review_fields, status_fields

MODES = {"side": "Side by side", "split": "Split", "blend": "Blend", "enhanced": "Enhanced only"}
STATUS_HZ = 4.0
#: status fields cut (not the others) when the status bar is too short for all
SHRINKABLE = ("engine", "store")
STATUS_KEYS = ("state", "consistency", "cursor", "camera", "enhance", "latency", "queue", "skipped",
               "display", "engine", "store")


class ViewerWindow(QtWidgets.QMainWindow):
    """Live viewer for a running pipeline, or a review window for a store."""

    #: emitted once when the window closes (the caller's event loop ends on it)
    closed = QtCore.Signal()

    def __init__(self, pipeline: Any = None, runner: Any = None, store: str | Path | None = None,
                 upscale: int | None = None, refresh_hz: float = 60.0) -> None:
        super().__init__()
        guard()  # a binding bug would otherwise abort the process after a minute of viewing
        if pipeline is None and store is None:
            raise ValueError("give a pipeline (live) or a store path (review)")
        self.pipeline, self.runner = pipeline, runner
        self.live = pipeline is not None
        self.store_path = Path(pipeline.spec.path if self.live else store)
        self.browser = None if self.live else StoreBrowser(self.store_path)
        if upscale is None:
            enh = getattr(pipeline, "enhancer", None) if self.live else None
            upscale = enh.upscale if enh is not None else (1 if self.live else self.browser.upscale)
        self.upscale = int(upscale)
        self.mode = "side"
        self.pair = False
        self.reviewing = not self.live
        self.review_t: int | None = 0 if not self.live else None
        self.enhanced_shown = 0  # distinct enhanced frames drawn (live)
        self.raw_drawn = RateCounter()  # redraws of the raw panel per second
        self.enh_drawn = RateCounter()  # redraws of the enhanced panel per second
        self.last_snapshot: Path | None = None
        self._seq = -1
        self._latest: Any = None
        self._review_frame: ReviewFrame | None = None
        self._review_shown: int | None = None
        self._review_retry = 0.0
        self._status_t = 0.0
        self._fitted = False
        self._closed = False
        self._n_max = 0
        self.consistency_on = False  # the overlay mode (C)
        self._cons_seen = False  # live: a consistency map has arrived from the pipeline
        #: the shown enhanced frame's check: (index, score, flagged, error-map max, threshold)
        self._cons_frame: tuple[int, float | None, bool, float | None, float | None] | None = None
        self.consistency_state: ConsistencyStatus | None = None

        self.setWindowTitle(f"live-pssr - {self.store_path}")
        self.raw_panel = ImagePanel("raw", lut="grey", scale=self.upscale)
        self.enh_panel = ImagePanel("enhanced", lut="grey", scale=1.0)
        self.raw_panel.view.setXLink(self.enh_panel.view)
        self.raw_panel.view.setYLink(self.enh_panel.view)
        self.overlay = Overlay(self.enh_panel.view)
        self.raw_panel.add_mirror(self.overlay.item, self.upscale)
        self.overlay.positionChanged.connect(self._overlay_dragged)
        self.consistency = ConsistencyLayer(self.enh_panel.view)
        self.raw_panel.contrastChanged.connect(self._raw_contrast_changed)
        splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        splitter.addWidget(self.raw_panel)
        splitter.addWidget(self.enh_panel)
        splitter.setChildrenCollapsible(False)

        self._build_toolbar()
        review_bar = self._build_review_bar()
        central = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(central)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(splitter, 1)
        lay.addWidget(review_bar)
        self.setCentralWidget(central)
        self._build_status_bar()
        for panel in (self.raw_panel, self.enh_panel):
            panel.graphics.scene().sigMouseMoved.connect(lambda pos, p=panel: self._cursor(p, pos))
        self.resize(1400, 820)
        self.set_mode("side")

        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.setInterval(max(1, int(round(1000.0 / refresh_hz))))
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        if not self.live:
            self._review_status()

    # ================================================================ building
    def _action(self, text: str, keys: str | list[str], slot: Any, tip: str) -> QtGui.QAction:
        act = QtGui.QAction(text, self)
        seqs = [keys] if isinstance(keys, str) else keys
        act.setShortcuts([QtGui.QKeySequence(k) for k in seqs])
        act.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        act.setToolTip(f"{tip} ({', '.join(seqs)})" if seqs else tip)
        act.triggered.connect(slot)
        self.addAction(act)
        return act

    def _build_toolbar(self) -> None:
        bar = self.addToolBar("controls")
        bar.setMovable(False)
        self.start_act = self._action("Start", [], self.start, "Resume acquisition (Space)")
        self.pause_act = self._action("Pause", [], self.pause, "Pause acquisition (Space)")
        self.toggle_act = self._action("Pause/resume", "Space", self.toggle_pause, "Pause or resume")
        self.stop_act = self._action("Stop", "Shift+Esc", self.stop, "Stop acquisition")
        self.snap_act = self._action("Snapshot", "Ctrl+S", lambda: self.snapshot(),
                                     "Save both panels as PNG next to the store")
        self.fit_act = self._action("Fit", "F", self.fit, "Show the whole field")
        if self.live:
            for a in (self.start_act, self.pause_act, self.stop_act):
                bar.addAction(a)
            bar.addSeparator()
        bar.addAction(self.snap_act)
        bar.addAction(self.fit_act)
        bar.addSeparator()
        self.mode_box = QtWidgets.QComboBox()
        for key, label in MODES.items():
            self.mode_box.addItem(label, key)
        self.mode_box.setToolTip("Display mode (1-4)")
        self.mode_box.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.mode_box.currentIndexChanged.connect(lambda i: self.set_mode(self.mode_box.itemData(i)))
        bar.addWidget(QtWidgets.QLabel(" mode "))
        bar.addWidget(self.mode_box)
        for i, key in enumerate(MODES, start=1):
            self._action(MODES[key], str(i), lambda _=False, k=key: self.set_mode(k), MODES[key])
        self.mix_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.mix_slider.setRange(0, 1000)
        self.mix_slider.setValue(500)
        self.mix_slider.setFixedWidth(180)
        self.mix_slider.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.mix_slider.setToolTip("Split position / blend (0 = raw, 1 = enhanced)")
        self.mix_slider.valueChanged.connect(lambda v: self.overlay.set_fraction(v / 1000))
        bar.addWidget(self.mix_slider)
        self.pair_box = QtWidgets.QCheckBox("pair")
        self.pair_box.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.pair_box.setToolTip("Show the raw frame the enhanced frame was made from (M)")
        self.pair_box.toggled.connect(self.set_pair)
        self._action("Pair", "M", lambda: self.set_pair(not self.pair), "Pair raw with enhanced")
        if self.live:
            bar.addWidget(self.pair_box)
        self.cons_box = QtWidgets.QCheckBox("consistency")
        self.cons_box.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.cons_box.toggled.connect(self.set_consistency)
        bar.addWidget(self.cons_box)
        self.cons_act = self._action("Consistency", "C", self.toggle_consistency, "Consistency overlay")
        self._action("Auto contrast", "A", self.auto_contrast, "Auto contrast on both panels")
        self._action("Close", "Ctrl+W", self.close, "Close the window")

    def _build_review_bar(self) -> QtWidgets.QWidget:
        w = QtWidgets.QWidget()
        lay = QtWidgets.QHBoxLayout(w)
        lay.setContentsMargins(4, 0, 4, 0)
        self.live_button = QtWidgets.QPushButton("Live")
        self.live_button.setToolTip("Back to the live frames (End)")
        self.live_button.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.live_button.clicked.connect(self.go_live)
        self.time_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.time_slider.setRange(0, 0)
        self.time_slider.setToolTip("Scrub through the run's frames (read back from the store)")
        self.time_slider.valueChanged.connect(self.review)
        self.time_label = QtWidgets.QLabel("0 / 0")
        self.record_label = QtWidgets.QLabel("")
        self.record_label.setStyleSheet("color: gray")
        if self.live:
            lay.addWidget(self.live_button)
        lay.addWidget(QtWidgets.QLabel("frame"))
        lay.addWidget(self.time_slider, 3)
        lay.addWidget(self.time_label)
        lay.addWidget(self.record_label, 4)
        self._action("Back", "Left", lambda: self.step(-1), "Previous frame")
        self._action("Forward", "Right", lambda: self.step(1), "Next frame")
        self._action("First", "Home", lambda: self.review(0), "First frame")
        self._action("Live", "End", self.go_live, "Back to live")
        return w

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status_labels: dict[str, QtWidgets.QLabel] = {}
        for key in STATUS_KEYS:
            lab = QtWidgets.QLabel("")
            lab.setContentsMargins(6, 0, 6, 0)
            if key in SHRINKABLE:  # long and least urgent: cut first when the bar is short (tooltip: all)
                lab.setMinimumWidth(24)
            self.status_labels[key] = lab
            if key == "state":
                bar.addWidget(lab, 1)
            else:
                bar.addPermanentWidget(lab)
        self.status_labels["state"].setText("starting" if self.live else "review")
        self._update_consistency_control()

    # ================================================================ controls
    def start(self) -> None:
        """Resume a paused acquisition."""
        if self.runner is not None and self.runner.paused:
            self.runner.pause(False)
        self._update_status(force=True)

    def pause(self) -> None:
        if self.runner is not None and not self.runner.done.is_set():
            self.runner.pause(True)
        self._update_status(force=True)

    def toggle_pause(self) -> None:
        if self.runner is not None:
            (self.start if self.runner.paused else self.pause)()

    def stop(self) -> None:
        """Stop acquisition; the window stays open on the last frames."""
        if self.runner is not None:
            self.runner.stop()
            if self.runner.paused:
                self.runner.pause(False)
        self._update_status(force=True)

    def set_mode(self, mode: str) -> None:
        """One of ``side``, ``split``, ``blend``, ``enhanced``."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        idx = list(MODES).index(mode)
        if self.mode_box.currentIndex() != idx:
            self.mode_box.blockSignals(True)
            self.mode_box.setCurrentIndex(idx)
            self.mode_box.blockSignals(False)
        self.raw_panel.setVisible(mode == "side")
        overlay = mode if mode in ("split", "blend") else "off"
        self._set_title()
        self.overlay.set_mode(overlay)
        self.mix_slider.setEnabled(overlay != "off")
        if overlay != "off":
            self.mix_slider.blockSignals(True)
            self.mix_slider.setValue(int(round(self.overlay.fraction() * 1000)))
            self.mix_slider.blockSignals(False)
        self._seq = -1  # redraw with the raw frame this mode wants
        self._review_shown = None
        self._redraw_now()

    def set_pair(self, pair: bool) -> None:
        """Side by side: raw panel shows the frame the enhanced one came from (True) or the newest."""
        self.pair = bool(pair)
        if self.pair_box.isChecked() != self.pair:
            self.pair_box.blockSignals(True)
            self.pair_box.setChecked(self.pair)
            self.pair_box.blockSignals(False)
        self._seq = -1
        self._redraw_now()

    def _set_title(self) -> None:
        title = {"split": "raw | enhanced", "blend": "raw + enhanced"}.get(self.mode, "enhanced")
        if self.consistency_on:
            title += " + consistency"
        self.enh_panel.title_label.setText(f"<b>{title}</b>")

    @property
    def consistency_unavailable(self) -> str | None:
        """Why the consistency overlay cannot be shown (None: it can)."""
        if self.live and not self.reviewing:
            if self.checks_consistency:
                return None
            return ("this run does not check its frames: start it with the consistency check on "
                    "(it is on unless switched off)")
        if self.browser is None:
            return "no run store to read consistency maps from"
        try:
            return self.browser.consistency_absent
        except (OSError, ValueError) as err:
            return f"cannot read the consistency maps of {self.store_path}: {err}"

    def set_consistency(self, on: bool) -> None:
        """Show (True) or hide the consistency overlay; unavailable: says why and stays off."""
        on = bool(on)
        reason = self.consistency_unavailable if on else None
        if reason is not None:
            on = False
            self.statusBar().showMessage(f"consistency overlay unavailable: {reason}", 6000)
        self.consistency_on = on
        if self.cons_box.isChecked() != on:
            self.cons_box.blockSignals(True)
            self.cons_box.setChecked(on)
            self.cons_box.blockSignals(False)
        self.consistency.set_enabled(on)
        self._set_title()
        self._consistency_note()

    def toggle_consistency(self) -> None:
        self.set_consistency(not self.consistency_on)

    def _update_consistency_control(self) -> None:
        """Enable the control when maps exist; its tooltip says what it does, or why it cannot."""
        reason = self.consistency_unavailable
        tip = ("Consistency overlay (C): the check's signed error map over the enhanced image; red = "
               "structure the raw frame does not show (added), blue = structure it shows that the "
               "enhanced frame lacks (removed)" if reason is None
               else f"Consistency overlay unavailable: {reason}")
        if self.cons_box.isEnabled() != (reason is None) or self.cons_box.toolTip() != tip:
            self.cons_box.setEnabled(reason is None)
            self.cons_box.setToolTip(tip)
        if reason is not None and self.consistency_on:
            self.set_consistency(False)

    @property
    def checks_consistency(self) -> bool:
        """Live: the pipeline runs the consistency check (or maps have arrived from it)."""
        return self.live and (getattr(self.pipeline, "consistency", None) is not None or self._cons_seen)

    def _show_consistency(self, signed: np.ndarray | None, index: int | None, score: float | None,
                          flagged: bool | None, threshold: float | None,
                          peak: float | None = None) -> None:
        """The shown enhanced frame's check: the overlay's map, the panel note, the status field."""
        if signed is not None and peak is None:
            finite = np.abs(signed[np.isfinite(signed)])
            peak = float(finite.max()) if finite.size else None
        self.consistency.set_map(signed, index, self.upscale, threshold)
        self._cons_frame = None if index is None else (index, score, bool(flagged), peak, threshold)
        self._consistency_note()

    def _consistency_note(self) -> None:
        f = self._cons_frame
        flagged = f is not None and f[2]
        if flagged:
            self.enh_panel.set_note(f"\u26a0 FLAGGED #{f[0]}: structure the raw frame does not support",
                                    "color: white; background-color: #c62828; font-weight: bold")
        elif self.consistency_on and self.consistency.map is not None:
            self.enh_panel.set_note(f"map #{self.consistency.index}: red added, blue removed, "
                                    f"\u00b1{self.consistency.limit:.1f}\u03c3", "color: gray")
        elif self.consistency_on and f is not None:
            self.enh_panel.set_note(f"#{f[0]} not checked: no map", "color: gray")
        else:
            self.enh_panel.set_note("")

    def auto_contrast(self) -> None:
        self.raw_panel.set_auto(True)
        self.enh_panel.set_auto(True)
        self._redraw_overlay()

    def fit(self) -> None:
        self.enh_panel.fit() if self.enh_panel.image is not None else self.raw_panel.fit()

    def review(self, t: int) -> None:
        """Show frame ``t`` from the store (during a live run: leaves live display until End)."""
        t = max(0, int(t))
        self.reviewing = True
        self.review_t = t
        if self.time_slider.value() != t:
            self.time_slider.blockSignals(True)
            self.time_slider.setValue(min(t, self.time_slider.maximum()))
            self.time_slider.blockSignals(False)
        if self.browser is None:
            self.browser = StoreBrowser(self.store_path, refresh_s=0.5)

    def step(self, delta: int) -> None:
        if self.reviewing and self.review_t is not None:
            t = self.review_t + delta
        else:
            d = self._latest
            t = (d.raw_index if d is not None else 0) + delta
        self.review(max(0, t))

    def go_live(self) -> None:
        """Leave review and follow the live frames again."""
        if not self.live:
            return
        self.reviewing = False
        self.review_t = None
        self._review_shown = None
        self._seq = -1
        self._cons_frame = None
        self.record_label.setText("")

    def snapshot(self, path: str | Path | None = None) -> Path | None:
        """Write both panels (full resolution, current contrast and LUT) as one PNG."""
        raw, enh = self.raw_panel, self.enh_panel
        if raw.image is None and enh.image is None:
            self.statusBar().showMessage("snapshot: no frame yet", 3000)
            return None
        out = Path(path) if path else snapshot_path(self.store_path, raw.index, enh.index)
        rgb = side_by_side(raw.image, raw.levels, raw.lut, enh.image, enh.levels, enh.lut, self.upscale,
                           overlay=self.consistency.rgba() if self.consistency.shown else None)
        self.last_snapshot = save_png(rgb, out)
        self.statusBar().showMessage(f"snapshot saved: {out}", 5000)
        return self.last_snapshot

    # ================================================================ the GUI timer
    def tick(self) -> None:
        """One GUI timer step: draw what is new, refresh the status bar at STATUS_HZ."""
        if self._closed:
            return
        drew = self._review_tick() if self.reviewing else self._live_tick()
        for p in (self.raw_panel, self.enh_panel):
            if p.needs_redraw:
                p.redraw()
        if drew:
            if not self._fitted and self.enh_panel.image is not None:
                self.fit()
                self._fitted = True
        if self.live:
            self._update_status()
        elif time.perf_counter() - self._status_t > 1.0:
            self._follow_growing_store()

    def _follow_growing_store(self) -> None:
        """Review of a store still being written: see new frames and counts once a second."""
        self._status_t = time.perf_counter()
        if not self.browser.growing:
            return
        n = self.browser.refresh()
        self._n_max = max(0, n - 1)
        self.time_slider.setMaximum(self._n_max)
        self.time_label.setText(f"{self.review_t} / {self._n_max}")
        self._review_status()

    def _live_tick(self) -> bool:
        d = self.pipeline.latest()
        if d is None or d.seq == self._seq:
            return False
        return self.show_frame(d)

    def show_frame(self, d: Any) -> bool:
        """Draw a :class:`~live_pssr.pipeline.DisplayFrame` (the live timer's step, with
        ``pipeline.latest()``): what changed of raw, enhanced and its consistency check."""
        self._seq = d.seq
        self._latest = d
        drew = False
        paired = (self.pair or self.overlay.active) and d.enhanced_raw is not None
        raw, raw_idx = (d.enhanced_raw, d.enhanced_index) if paired else (d.raw, d.raw_index)
        if raw_idx != self.raw_panel.index or raw is not self.raw_panel.image:
            self.raw_panel.set_image(raw, raw_idx, info=f"#{raw_idx}" + (" (paired)" if paired else ""))
            self.raw_drawn.tick()
            drew = True
        if d.enhanced is not None and (d.enhanced_index != self.enh_panel.index
                                       or d.enhanced is not self.enh_panel.image):
            behind = d.raw_index - d.enhanced_index
            self.enh_panel.set_image(d.enhanced, d.enhanced_index,
                                     info=f"#{d.enhanced_index} ({behind} behind the camera)")
            self.enhanced_shown += 1
            self.enh_drawn.tick()
            drew = True
        signed = d.consistency
        shown = self._cons_frame
        if d.enhanced_index is not None and (shown is None or shown[0] != d.enhanced_index
                                             or signed is not self.consistency.map):
            self._cons_seen = self._cons_seen or signed is not None
            self._show_consistency(signed, d.enhanced_index, d.score, d.flagged, d.threshold)
        if drew:
            self._redraw_overlay()
        if self.live and not self.reviewing:
            self._follow_slider(d.raw_index)
        return drew

    def _redraw_now(self) -> None:
        """Apply a mode change at once instead of at the next timer tick."""
        if self.reviewing:
            self._review_tick()
        else:
            self._live_tick()
        self._redraw_overlay()

    def _follow_slider(self, index: int) -> None:
        self.time_slider.blockSignals(True)
        self.time_slider.setMaximum(max(self._n_max, index))
        self.time_slider.setValue(index)
        self.time_slider.blockSignals(False)
        self.time_label.setText(f"{index} / {max(self._n_max, index)}")

    def _review_tick(self) -> bool:
        t = self.review_t
        now = time.perf_counter()
        if t is None or t == self._review_shown or now < self._review_retry:
            return False
        try:
            f = self.browser.frame(t)
        except Exception as err:  # not committed yet, or a chunk caught mid-write: try again
            self.record_label.setText(f"cannot read frame {t} yet: {type(err).__name__}: {err}")
            self._review_retry = now + 0.2
            return False
        pending = f.index < t and self.browser.growing  # not committed yet: keep asking
        if pending:
            self._review_retry = now + 0.1
            if self._review_frame is not None and self._review_frame.index == f.index:
                return False
        else:
            self._review_shown = self.review_t = f.index
        self._review_frame = f
        n = self.browser.n_frames
        if not self.live:
            self._n_max = n - 1
        self.time_slider.blockSignals(True)
        self.time_slider.setMaximum(max(self._n_max, n - 1, t))
        self.time_slider.setValue(self.review_t)
        self.time_slider.blockSignals(False)
        self.time_label.setText(f"{self.review_t} / {max(self._n_max, n - 1)}")
        self.raw_panel.set_image(f.raw, f.index, info=f"#{f.index} (store)")
        self.enh_panel.set_image(f.enhanced, f.index, info=f"#{f.index} ({f.status})")
        self._show_consistency(f.consistency, f.index, f.score, f.flagged, self.browser.consistency_threshold,
                               f.consistency_max)
        if not self.live:
            self._review_consistency_status()
        self.record_label.setText(record_text(f) + (f" | frame {t} not on disk yet" if pending else ""))
        self._redraw_overlay()
        return True

    def _redraw_overlay(self) -> None:
        if not self.overlay.active:
            return
        if self.reviewing and self._review_frame is not None:
            raw = self._review_frame.raw
        else:
            d = self._latest
            raw = None if d is None else (d.enhanced_raw if d.enhanced_raw is not None else d.raw)
        if raw is None:
            return
        h, w = raw.shape[:2]
        self.overlay.set_extent(w * self.upscale, h * self.upscale)
        self.raw_panel.draw_into(self.overlay.item, raw, self.upscale)

    def _raw_contrast_changed(self) -> None:
        self._redraw_overlay()

    def _overlay_dragged(self, position: float) -> None:
        self.mix_slider.blockSignals(True)
        self.mix_slider.setValue(int(round(position * 1000)))
        self.mix_slider.blockSignals(False)

    def _cursor(self, panel: ImagePanel, pos: QtCore.QPointF) -> None:
        """Raw and enhanced values under the mouse (raw pixel coordinates)."""
        if not panel.view.sceneBoundingRect().contains(pos):
            return
        pt = panel.view.mapSceneToView(pos)
        raw = pixel_value(self.raw_panel.image, pt.x(), pt.y(), self.upscale)
        enh = pixel_value(self.enh_panel.image, pt.x(), pt.y(), 1.0)
        if raw is None and enh is None:
            self.status_labels["cursor"].setText("")
            return
        fmt = "{:.0f}".format
        cons = self.consistency.value_at(pt.x(), pt.y()) if self.consistency.shown else None
        self.status_labels["cursor"].setText(
            f"x {pt.x() / self.upscale:.1f} y {pt.y() / self.upscale:.1f}: raw "
            f"{'-' if raw is None else fmt(raw)} | enhanced {'-' if enh is None else fmt(enh)}"
            + ("" if cons is None else f" | consistency {cons:+.1f}\u03c3"))

    # ================================================================ status
    @property
    def finished(self) -> bool:
        """Acquisition over and nothing left to enhance or display (live only)."""
        if not self.live or self.runner is None or not self.runner.done.is_set():
            return False
        st = self.pipeline.stats()
        return st.error is not None or (st.raw_queue == 0 and st.enhance_queue == 0 and st.backlog == 0)

    def state_text(self, stats: Any) -> str:
        r = self.runner
        if stats.error:
            return f"store failed: {stats.error}"
        if r is not None and r.error is not None:
            return f"acquisition stopped by an error: {r.error}"
        if r is not None and r.done.is_set():
            work = stats.raw_queue + stats.enhance_queue + stats.backlog
            if work:
                return f"acquisition over - enhancing {work} more frame(s)"
            return "finished - close the window to finalise the store"
        if r is not None and r.paused:
            return "paused (Space resumes)"
        if self.reviewing:
            return f"live run | reviewing frame {self.review_t} (End: back to live)"
        return "live"

    def _update_status(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.perf_counter()
        if not force and now - self._status_t < 1.0 / STATUS_HZ:
            return
        self._status_t = now
        st = self.pipeline.stats()
        self._n_max = max(0, st.raw_written - 1)
        fields = status_fields(st, self.raw_drawn.rate(now), self.enh_drawn.rate(now), self.state_text(st))
        self._set_fields(fields)
        self._update_consistency_control()
        if self.reviewing and self.browser is not None:
            self._review_consistency_status()
        else:
            f = self._cons_frame
            self._set_consistency_status(consistency_status(
                st.frames_checked, st.frames_flagged,
                frame=None if f is None else f[0], frame_score=None if f is None else f[1],
                frame_flagged=None if f is None else f[2], frame_max=None if f is None else f[3],
                threshold=None if f is None else f[4], last_score=st.last_score,
                enabled=st.frames_checked > 0 or self.checks_consistency))
        bad = st.error is not None or (self.runner is not None and self.runner.error is not None)
        self.status_labels["state"].setStyleSheet("color: #d04040" if bad else "")
        done = self.runner is None or self.runner.done.is_set()
        paused = self.runner is not None and self.runner.paused
        self.start_act.setEnabled(not done and paused)
        self.pause_act.setEnabled(not done and not paused)
        self.stop_act.setEnabled(not done)
        if self.reviewing:
            self.time_slider.setMaximum(max(self._n_max, self.time_slider.maximum()))

    def _set_fields(self, fields: dict[str, str]) -> None:
        for key, text in fields.items():
            lab = self.status_labels[key]
            if lab.text() != text:
                lab.setText(text)
                if key in SHRINKABLE:
                    lab.setToolTip(text)

    def _review_status(self) -> None:
        try:
            fields = review_fields(self.browser.reader.summary())
        except (OSError, ValueError) as err:
            fields = {"state": f"cannot read {self.store_path}: {err}"}
        self._set_fields(fields)
        self._review_consistency_status()

    def _review_consistency_status(self) -> None:
        """The consistency field from the store's records (review)."""
        try:
            checked, flagged = self.browser.consistency_counts()
            enabled = self.browser.consistency_absent is None or checked > 0
        except (OSError, ValueError) as err:
            self._set_consistency_status(ConsistencyStatus(f"consistency unreadable: {err}", "warn", ""))
            return
        f = self._cons_frame
        self._set_consistency_status(consistency_status(
            checked, flagged, frame=None if f is None else f[0], frame_score=None if f is None else f[1],
            frame_flagged=None if f is None else f[2], frame_max=None if f is None else f[3],
            threshold=None if f is None else f[4], enabled=enabled))
        self._update_consistency_control()

    def _set_consistency_status(self, state: ConsistencyStatus) -> None:
        self.consistency_state = state
        lab = self.status_labels["consistency"]
        if lab.text() != state.text:
            lab.setText(state.text)
            lab.setMinimumWidth(lab.sizeHint().width())  # the other fields give way, never this one
        if lab.styleSheet() != state.style:
            lab.setStyleSheet(state.style)
        lab.setToolTip(state.tip)

    # ================================================================ closing
    def closeEvent(self, ev: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt override
        """Closing mid-run stops acquisition; the caller then closes the store."""
        if not self._closed:
            self._closed = True
            self.timer.stop()
            if self.runner is not None and not self.runner.done.is_set():
                self.runner.stop()
                if self.runner.paused:
                    self.runner.pause(False)
            self.closed.emit()
        super().closeEvent(ev)


def pixel_value(image: np.ndarray | None, x: float, y: float, scale: float) -> float | None:
    """The value of ``image`` under view position ``(x, y)`` (None outside)."""
    if image is None:
        return None
    col, row = int(x // scale), int(y // scale)
    if 0 <= row < image.shape[0] and 0 <= col < image.shape[1]:
        return float(image[row, col])
    return None
