"""The consistency overlay: the signed error map of the shown frame over the enhanced image.

The map comes from the run (the pipeline's :class:`~live_pssr.pipeline.DisplayFrame` live, the
store's third image in review): the viewer never computes it. It is at the raw frame's shape, so
it is drawn like the raw panel draws its frame, scaled by the upscale to the enhanced field
(``(0, 0, w * upscale, h * upscale)`` in enhanced pixels): each raw pixel's value covers exactly
the ``upscale x upscale`` enhanced pixels it was computed from.

Colours: :func:`~live_pssr.viewer.contrast.signed_rgba` (diverging, centred at 0, symmetric
limits ``+-limit`` = the flag threshold when known; red = the enhanced frame adds light the raw
frame does not show, blue = it removes light; opacity grows with ``|value|``, so consistent parts
show the enhanced image unchanged and noise only tints it). Colouring a raw-size map is one table
look-up, done only when the map changes.

The layer shows a map only with the enhanced frame it belongs to: a frame that was not checked
(every Nth frame, or the check unavailable for it) shows no map rather than another frame's.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from qtpy import QtCore

from .contrast import signed_limit, signed_rgba

#: above the enhanced image and the raw split/blend overlay (z 10), below the split line (z 20)
Z_VALUE = 15


class ConsistencyLayer:
    """One image item in the enhanced panel's view box showing a signed consistency map."""

    def __init__(self, view: pg.ViewBox) -> None:
        self.view = view
        self.item = pg.ImageItem(axisOrder="row-major")
        self.item.setZValue(Z_VALUE)
        view.addItem(self.item, ignoreBounds=True)
        self.map: np.ndarray | None = None
        self.index: int | None = None
        self.limit: float | None = None
        self.scale = 1.0
        self.enabled = False
        self._drawn: np.ndarray | None = None
        self.item.setVisible(False)

    def set_enabled(self, on: bool) -> None:
        """Show (True) or hide (False) the layer; the map is kept either way."""
        self.enabled = bool(on)
        if self.enabled and self.map is not None and self._drawn is not self.map:
            self._draw()
        self.item.setVisible(self.enabled and self.map is not None)

    def set_map(self, signed: np.ndarray | None, index: int | None, scale: float,
                threshold: float | None = None) -> None:
        """The map of enhanced frame ``index`` (None: that frame has none), ``scale`` = upscale."""
        self.map, self.index, self.scale = signed, index, float(scale)
        self.limit = None if signed is None else signed_limit(signed, threshold)
        if signed is not None and self.enabled:
            self._draw()
        self.item.setVisible(self.enabled and signed is not None)

    def _draw(self) -> None:
        assert self.map is not None and self.limit is not None
        self.item.setImage(signed_rgba(self.map, self.limit), autoLevels=False)
        h, w = self.map.shape[:2]
        self.item.setRect(QtCore.QRectF(0, 0, w * self.scale, h * self.scale))
        self._drawn = self.map

    @property
    def shown(self) -> bool:
        """True when a map is on screen."""
        return self.item.isVisible() and self.map is not None

    def value_at(self, x: float, y: float) -> float | None:
        """The map's value under view position ``(x, y)`` (enhanced pixels), or None."""
        if self.map is None:
            return None
        col, row = int(x // self.scale), int(y // self.scale)
        if 0 <= row < self.map.shape[0] and 0 <= col < self.map.shape[1]:
            v = float(self.map[row, col])
            return v if math.isfinite(v) else None
        return None

    def field(self) -> QtCore.QRectF:
        """The layer's extent in the view (enhanced pixels)."""
        return self.item.mapRectToParent(self.item.boundingRect())

    def rgba(self) -> np.ndarray | None:
        """The coloured map as drawn, ``(h, w, 4) uint8`` at raw resolution (None: no map)."""
        if self.map is None or self.limit is None:
            return None
        return signed_rgba(self.map, self.limit)
