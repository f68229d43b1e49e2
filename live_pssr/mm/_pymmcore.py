"""pymmcore-plus, imported for live-pssr with its logging kept to its own logger.

Importing pymmcore-plus runs its ``configure_logging()``, which sets the *root* logger to DEBUG:
from then on every library's debug records are made and reach the user's own handlers (a
``logging.basicConfig()`` handler prints asyncio's and pymmcore-plus's chatter). live-pssr's
modules import pymmcore-plus only from here, which puts the root level back and leaves
pymmcore-plus's output where pymmcore-plus sends it: its ``pymmcore-plus`` logger gets the level
its own handlers need (stderr at ``$PYMM_LOG_LEVEL``, its log file at DEBUG) and stops
propagating, so the user's handlers see none of it (``logging.getLogger("pymmcore-plus").propagate
= True`` brings it back). A process that imported pymmcore-plus before live-pssr keeps its setup.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "pymmcore-plus"


def _import_keeping_root_level() -> None:
    if "pymmcore_plus" in sys.modules:
        return
    root = logging.getLogger()
    level = root.level
    try:
        import pymmcore_plus  # noqa: F401 - configures its logging on import
    finally:
        root.setLevel(level)
    own = logging.getLogger(LOGGER)
    own.setLevel(min((h.level for h in own.handlers), default=logging.WARNING))
    own.propagate = False


_import_keeping_root_level()

from pymmcore_plus import CMMCorePlus  # noqa: E402
from pymmcore_plus.experimental.unicore import (  # noqa: E402
    SimpleCameraDevice,
    StageDevice,
    UniMMCore,
    XYStageDevice,
    pymm_property,
)

__all__ = ["CMMCorePlus", "SimpleCameraDevice", "StageDevice", "UniMMCore", "XYStageDevice", "pymm_property"]
