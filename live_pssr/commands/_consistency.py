"""The live commands' consistency options (``demo``, ``acquire``): one definition, one meaning.

``--consistency/--no-consistency`` (on by default), ``--consistency-every N`` and
``--calibration FILE`` (the camera's ``live-pssr calibrate`` YAML: the check's noise model; without
it the noise is estimated from each frame). See :mod:`live_pssr.pipeline.checking`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConsistencyOpt = Annotated[bool, typer.Option(
    "--consistency/--no-consistency",
    help="Check every enhanced frame against its raw frame (score, flag, error map stored as image 2).")]
ConsistencyEveryOpt = Annotated[int, typer.Option(
    "--consistency-every", min=1, help="Check (and store the map of) every Nth frame only.")]
CalibrationOpt = Annotated[Path | None, typer.Option(
    "--calibration", help="Camera calibration YAML from `live-pssr calibrate`: the consistency check's "
    "noise model (default: estimated from each frame).")]
