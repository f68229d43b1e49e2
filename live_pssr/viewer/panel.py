"""One image panel: a view box with one image item, its contrast (auto / manual with a histogram)
and its lookup table.

The panel owns the display state of one stream (raw or enhanced): ``levels``, ``auto`` and
``lut``. Other image items that show the same stream elsewhere (the raw image under the enhanced
one in split/blend mode) are registered with :meth:`ImagePanel.add_mirror` and follow the same
levels and table. Coordinates are in enhanced pixels: a raw panel is created with
``scale=upscale`` so both panels span the same field and can be linked.

Per frame the panel does as little as possible: auto levels from a sample of the frame (at most
``AUTO_HZ`` times a second), a strided view of the frame when the view shows more image pixels
than screen pixels, coloured by one table look-up (:func:`~live_pssr.viewer.contrast.to_rgba`),
one ``setImage(..., autoLevels=False)``; the histogram is refreshed at most
``HIST_HZ`` times a second.
A hidden panel keeps the newest frame and draws it when shown again.
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from qtpy import QtCore, QtGui, QtWidgets

from .contrast import LUTS, auto_levels, display_stride, histogram, lut_table, to_rgba

HIST_HZ = 4.0
AUTO_HZ = 10.0  # auto levels follow the frames at most this often (a change shows within 0.1 s)


def _lut_icon(name: str) -> QtGui.QIcon:
    """A small colour-bar icon of table ``name`` for the LUT menu."""
    bar = np.ascontiguousarray(np.repeat(lut_table(name)[None, ::4], 10, axis=0))
    img = QtGui.QImage(bar.data, bar.shape[1], bar.shape[0], 3 * bar.shape[1],
                       QtGui.QImage.Format.Format_RGB888)
    return QtGui.QIcon(QtGui.QPixmap.fromImage(img.copy()))


class LevelsHistogram(pg.PlotWidget):
    """The frame's histogram (log counts) with a draggable region: the display levels.

    In its own small view, so redrawing an image never repaints it; it is refreshed at most
    ``HIST_HZ`` times a second, and at once when the user edits levels.
    """

    #: the user dragged the region (lo, hi)
    levelsEdited = QtCore.Signal(float, float)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedHeight(64)
        item = self.getPlotItem()
        item.hideAxis("left")
        item.setMenuEnabled(False)
        item.hideButtons()
        item.setMouseEnabled(x=False, y=False)
        item.getAxis("bottom").setHeight(18)
        self.curve = pg.PlotCurveItem(fillLevel=0, brush=(90, 110, 210, 140), pen=(190, 190, 220, 160))
        self.addItem(self.curve)
        self.region = pg.LinearRegionItem((0, 1), orientation="vertical", swapMode="block",
                                          brush=(255, 255, 255, 30))
        self.region.setZValue(10)
        self.addItem(self.region)
        self.region.sigRegionChanged.connect(self._changed)
        self._setting = False
        self._data_range = (0.0, 1.0)

    def set_data(self, centres: np.ndarray, counts: np.ndarray) -> None:
        """Show a histogram (bin centres, counts)."""
        self.curve.setData(centres, np.log1p(counts))
        self._data_range = (float(centres[0]), float(centres[-1]))
        self._fit()

    def set_levels(self, lo: float, hi: float) -> None:
        """Move the region without emitting ``levelsEdited``."""
        self._setting = True
        try:
            self.region.setRegion((lo, hi))
        finally:
            self._setting = False
        self._fit()

    def levels(self) -> tuple[float, float]:
        lo, hi = self.region.getRegion()
        return float(lo), float(hi)

    def _fit(self) -> None:
        lo, hi = self.levels()
        a, b = min(lo, self._data_range[0]), max(hi, self._data_range[1])
        self.setXRange(a, b if b > a else a + 1, padding=0.02)

    def _changed(self) -> None:
        if not self._setting:
            lo, hi = self.levels()
            if hi > lo:
                self.levelsEdited.emit(lo, hi)


class ImagePanel(QtWidgets.QWidget):
    """An image view with a title, an auto-contrast switch, a LUT menu and a histogram."""

    #: emitted when the contrast mode, manual levels or the LUT change (not per-frame auto levels)
    contrastChanged = QtCore.Signal()

    def __init__(self, title: str, lut: str = "grey", scale: float = 1.0,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.scale = float(scale)
        self.image: np.ndarray | None = None
        self.index: int | None = None
        self.levels: tuple[float, float] = (0.0, 1.0)
        self.auto = True
        self.lut = lut
        self._mirrors: list[tuple[pg.ImageItem, float]] = []
        self._stride = 1
        self._hist_t = 0.0
        self._auto_t = 0.0
        self._dirty = False

        self.title_label = QtWidgets.QLabel(f"<b>{title}</b>")
        self.info_label = QtWidgets.QLabel("waiting for frames")
        self.info_label.setStyleSheet("color: gray")
        self.note_label = QtWidgets.QLabel("")  # e.g. the consistency map's legend or flag
        self.note_label.setVisible(False)
        self.auto_box = QtWidgets.QCheckBox("auto")
        self.auto_box.setChecked(True)
        self.auto_box.setToolTip("Auto contrast: 1-99.8 percentiles of each frame (A: both panels)")
        self.auto_box.toggled.connect(self.set_auto)
        self.lut_box = QtWidgets.QComboBox()
        for name in LUTS:
            self.lut_box.addItem(_lut_icon(name), name)
        self.lut_box.setIconSize(QtCore.QSize(32, 10))
        self.lut_box.setToolTip("Lookup table")
        self.lut_box.currentTextChanged.connect(self.set_lut)
        header = QtWidgets.QHBoxLayout()
        header.setContentsMargins(4, 2, 4, 0)
        header.setSpacing(8)
        for w in (self.title_label, self.info_label, self.note_label):
            header.addWidget(w)
        header.addStretch(1)
        header.addWidget(self.auto_box)
        header.addWidget(self.lut_box)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.ci.setContentsMargins(0, 0, 0, 0)
        self.view: pg.ViewBox = self.graphics.addViewBox(row=0, col=0, lockAspect=True, invertY=True,
                                                         enableMenu=False)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        self.hist = LevelsHistogram()
        self.hist.levelsEdited.connect(self._levels_from_histogram)
        self.view.sigRangeChanged.connect(self._range_changed)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(header)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.hist)
        self.lut_box.setCurrentText(lut)

    def set_note(self, text: str, style: str = "") -> None:
        """A note in the panel's header (hidden when empty)."""
        self.note_label.setText(text)
        self.note_label.setStyleSheet(style)
        self.note_label.setVisible(bool(text))

    # ---------------------------------------------------------------- contrast and LUT
    def set_auto(self, auto: bool) -> None:
        """Switch auto contrast on (levels follow each frame) or off (levels stay as set)."""
        self.auto = bool(auto)
        if self.auto_box.isChecked() != self.auto:
            self.auto_box.blockSignals(True)
            self.auto_box.setChecked(self.auto)
            self.auto_box.blockSignals(False)
        if self.auto and self.image is not None:
            self._apply_levels(auto_levels(self.image))
            self.hist.set_levels(*self.levels)
            self.redraw()
        self.contrastChanged.emit()

    def set_levels(self, lo: float, hi: float) -> None:
        """Manual contrast: show intensities ``lo..hi`` (switches auto off)."""
        self.set_auto(False)
        self._apply_levels((float(lo), float(hi)))
        self.redraw()
        self.contrastChanged.emit()

    def set_lut(self, name: str) -> None:
        """Use lookup table ``name`` (one of :data:`~live_pssr.viewer.contrast.LUTS`)."""
        if name not in LUTS:
            raise ValueError(f"unknown lookup table {name!r}; choose one of {', '.join(LUTS)}")
        self.lut = name
        if self.lut_box.currentText() != name:
            self.lut_box.setCurrentText(name)  # re-enters once through the signal
            return
        self.redraw()
        self.contrastChanged.emit()

    def _apply_levels(self, levels: tuple[float, float]) -> None:
        self.levels = levels
        if not self.auto:  # automatic levels reach the histogram with its next refresh
            self.hist.set_levels(*levels)

    def _levels_from_histogram(self, lo: float, hi: float) -> None:
        self.set_auto(False)
        self.levels = (float(lo), float(hi))
        self.redraw()
        self.contrastChanged.emit()

    # ---------------------------------------------------------------- images
    def add_mirror(self, item: pg.ImageItem, scale: float) -> None:
        """Let ``item`` (elsewhere) follow this panel's levels and LUT; see :meth:`draw_into`."""
        self._mirrors.append((item, scale))

    def set_image(self, image: np.ndarray, index: int | None = None, info: str | None = None) -> None:
        """Show ``image`` (frame ``index``); drawn now if visible, else when the panel is shown."""
        self.image, self.index = image, index
        if info is not None:
            self.info_label.setText(info)
        elif index is not None:
            self.info_label.setText(f"#{index}")
        now = time.perf_counter()
        if self.auto and now - self._auto_t >= 1.0 / AUTO_HZ:
            self._auto_t = now
            self._apply_levels(auto_levels(image))
        if self.isVisible():
            self._draw()
        else:
            self._dirty = True

    def draw_into(self, item: pg.ImageItem, image: np.ndarray, scale: float) -> None:
        """Draw ``image`` in a mirror item with this panel's levels and LUT."""
        _set_strided(item, image, self._stride_for(scale), scale, self.levels, self.lut)

    def _stride_for(self, scale: float) -> int:
        px = self.view.viewPixelSize()[0]  # view units per (logical) screen pixel
        ratio = self.graphics.devicePixelRatioF() or 1.0  # physical pixels per logical one
        return display_stride(px / (scale * ratio) if px else 1.0)

    def _draw(self) -> None:
        if self.image is None:
            return
        self._stride = self._stride_for(self.scale)
        _set_strided(self.item, self.image, self._stride, self.scale, self.levels, self.lut)
        self._dirty = False
        now = time.perf_counter()
        if now - self._hist_t >= 1.0 / HIST_HZ:
            self._hist_t = now
            self.hist.set_data(*histogram(self.image))
            self.hist.set_levels(*self.levels)

    def redraw(self) -> None:
        """Draw the current frame again (new contrast, LUT or zoom); a hidden panel waits."""
        if self.image is None:
            return
        if self.isVisible():
            self._draw()
        else:
            self._dirty = True

    def _range_changed(self) -> None:
        if self.image is not None and self._stride_for(self.scale) != self._stride:
            self._dirty = True

    @property
    def needs_redraw(self) -> bool:
        return self._dirty and self.isVisible()

    def showEvent(self, ev) -> None:  # noqa: N802 - Qt override
        super().showEvent(ev)
        if self._dirty:
            self._draw()

    # ---------------------------------------------------------------- view
    def full_rect(self) -> QtCore.QRectF | None:
        if self.image is None:
            return None
        h, w = self.image.shape[:2]
        return QtCore.QRectF(0, 0, w * self.scale, h * self.scale)

    def fit(self) -> None:
        """Show the whole field."""
        rect = self.full_rect()
        if rect is not None:
            self.view.setRange(rect, padding=0)

    def rendered_rgb(self) -> np.ndarray | None:
        """The image item's current rendering as ``(h, w, 3) uint8`` (what the screen shows)."""
        self.item.render()
        qimg = self.item.qimage
        if qimg is None:
            return None
        return _qimage_rgb(qimg)


def _set_strided(item: pg.ImageItem, image: np.ndarray, stride: int, scale: float,
                 levels: tuple[float, float], lut: str) -> None:
    """Show every ``stride``-th pixel of ``image``, coloured, over its full extent."""
    shown = to_rgba(image[::stride, ::stride] if stride > 1 else image, levels, lut)
    item.setImage(shown, autoLevels=False)
    h, w = shown.shape[:2]
    rect = QtCore.QRectF(0, 0, w * stride * scale, h * stride * scale)
    if getattr(item, "_live_pssr_rect", None) != rect:
        item.setRect(rect)
        item._live_pssr_rect = rect  # noqa: SLF001 - remember to avoid resetting the transform


def _qimage_rgb(qimg) -> np.ndarray:
    from qtpy import QtGui

    img = qimg.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=h * bpl).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()
