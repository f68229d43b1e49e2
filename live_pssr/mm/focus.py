"""A Micro-Manager focus drive (pymmcore-plus unicore ``StageDevice``) for the simulated microscope.

It only positions: z-stacks run through the real MMCore and their frames carry a ``z`` axis, but
the simulated sample is thin, so every plane shows the same (freshly exposed) scene.
"""

from __future__ import annotations

from pymmcore_plus.experimental.unicore import StageDevice


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
