"""OpenVINO, imported without its usage telemetry.

``import openvino`` loads its model converter (``openvino.tools.ovc``), which sends a usage event
to Google Analytics on every import unless the user has opted out (``opt_in_out --opt_out``,
which writes a consent file in the home folder; OpenVINO's telemetry page). The converter builds
its telemetry with ``disable_in_ci=True``, and openvino-telemetry then declines whenever ``CI`` is
``true``. live-pssr imports OpenVINO only from here: with ``CI=true`` set for the duration of the
import (unless the user set ``CI`` themselves) and the environment put back after. The consent
is decided once, at that import; live-pssr never calls the converter (it reads its ONNX exports
with ``Core.read_model``), so nothing is sent later either.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType


def import_openvino() -> ModuleType:
    """``import openvino`` with its telemetry declined (see the module docstring)."""
    if "openvino" not in sys.modules and "CI" not in os.environ:
        os.environ["CI"] = "true"
        try:
            import openvino  # noqa: F401 - decides the telemetry consent on import
        finally:
            os.environ.pop("CI", None)
    import openvino

    return openvino


__all__ = ["import_openvino"]
