"""Raw over enhanced in one view: a split line (raw left of it) or a blend (raw's opacity).

The raw image item sits above the enhanced one inside a clipping rectangle in the enhanced
panel's view box; split mode narrows the clip to the left part, blend mode shows all of it with
opacity ``1 - blend`` (0 = raw only, 1 = enhanced only). The split line can be dragged in the
image, or moved with the window's slider (both stay in step). The raw item is a mirror of the
raw panel, so it keeps the raw panel's contrast and LUT.
"""

from __future__ import annotations

import pyqtgraph as pg
from qtpy import QtCore, QtGui, QtWidgets


class Overlay(QtCore.QObject):
    """The split/blend overlay of raw on top of enhanced in ``view``."""

    #: the split position (0..1) changed by dragging the line in the image
    positionChanged = QtCore.Signal(float)

    def __init__(self, view: pg.ViewBox) -> None:
        super().__init__()
        self.view = view
        self.clip = QtWidgets.QGraphicsRectItem()
        self.clip.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape)
        self.clip.setPen(QtGui.QPen(QtCore.Qt.PenStyle.NoPen))
        self.clip.setZValue(10)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.item.setParentItem(self.clip)
        self.line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen((255, 255, 0), width=1.5))
        self.line.setZValue(20)
        self.line.sigPositionChanged.connect(self._line_moved)
        view.addItem(self.clip, ignoreBounds=True)
        view.addItem(self.line, ignoreBounds=True)
        self.mode = "off"
        self.position = 0.5
        self.blend = 0.5
        self.width = 1.0
        self.height = 1.0
        self._moving = False
        self.set_mode("off")

    def set_extent(self, width: float, height: float) -> None:
        """The field size in view units (enhanced pixels)."""
        if (width, height) != (self.width, self.height):
            self.width, self.height = float(width), float(height)
            self._update()

    def set_mode(self, mode: str) -> None:
        """``'split'``, ``'blend'`` or ``'off'``."""
        if mode not in ("split", "blend", "off"):
            raise ValueError(f"unknown overlay mode {mode!r}")
        self.mode = mode
        self.clip.setVisible(mode != "off")
        self.line.setVisible(mode == "split")
        self._update()

    def set_fraction(self, value: float) -> None:
        """The slider: split position (split mode) or blend towards enhanced (blend mode)."""
        value = min(1.0, max(0.0, float(value)))
        if self.mode == "blend":
            self.blend = value
        else:
            self.position = value
        self._update()

    def fraction(self) -> float:
        return self.blend if self.mode == "blend" else self.position

    @property
    def active(self) -> bool:
        return self.mode != "off"

    def _update(self) -> None:
        if self.mode == "split":
            self.clip.setRect(QtCore.QRectF(0, 0, self.position * self.width, self.height))
            self.item.setOpacity(1.0)
            self._moving = True
            try:
                self.line.setValue(self.position * self.width)
            finally:
                self._moving = False
        else:
            self.clip.setRect(QtCore.QRectF(0, 0, self.width, self.height))
            self.item.setOpacity(1.0 - self.blend)

    def _line_moved(self) -> None:
        if self._moving or self.width <= 0:
            return
        self.position = min(1.0, max(0.0, self.line.value() / self.width))
        self.clip.setRect(QtCore.QRectF(0, 0, self.position * self.width, self.height))
        self.positionChanged.emit(self.position)
