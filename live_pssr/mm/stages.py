"""Stages of the simulated microscope (pymmcore-plus unicore devices): a focus drive and an XY stage.

They only position: z-stacks and multi-position runs go through the real MMCore and their frames
carry ``z`` and ``position`` axes, but the simulated sample is thin and fills the field, so
every plane and position shows the same (freshly exposed) scene.
"""

from __future__ import annotations

from ._pymmcore import StageDevice, XYStageDevice


class SimulatedFocus(StageDevice):
    """A z drive that moves instantly (micrometres, origin settable)."""

    def __init__(self) -> None:
        super().__init__()
        self._z = 0.0
        self._origin = 0.0

    def set_position_um(self, val: float) -> None:
        self._z = float(val) + self._origin

    def get_position_um(self) -> float:
        return self._z - self._origin

    def home(self) -> None:
        self._z = 0.0

    def stop(self) -> None:
        """Nothing to stop: moves are instantaneous."""

    def set_origin(self) -> None:
        self._origin = self._z


class SimulatedXYStage(XYStageDevice):
    """An XY stage that moves instantly (micrometres, origin settable per axis)."""

    def __init__(self) -> None:
        super().__init__()
        self._xy = [0.0, 0.0]
        self._origin = [0.0, 0.0]

    def set_position_um(self, x: float, y: float) -> None:
        self._xy = [float(x) + self._origin[0], float(y) + self._origin[1]]

    def get_position_um(self) -> tuple[float, float]:
        return self._xy[0] - self._origin[0], self._xy[1] - self._origin[1]

    def set_origin_x(self) -> None:
        self._origin[0] = self._xy[0]

    def set_origin_y(self) -> None:
        self._origin[1] = self._xy[1]

    def home(self) -> None:
        self._xy = [0.0, 0.0]

    def stop(self) -> None:
        """Nothing to stop: moves are instantaneous."""
