"""Rescue: frames a failed store could not hold, written elsewhere so that none is lost.

When a run store fails for good (the disk remounted read-only, an I/O error, the disk gone, or
full beyond its reserve), the pipeline still has the frames it took but the store does not hold:
those queued in memory, and those whose chunks were written but never committed (read back from
the failed disk, which usually still reads). Some were already acknowledged to Micro-Manager
(``own_storage=True``). :func:`rescue_frames` writes them to a multi-page tif in another folder:
``rescue_dir`` when given, else ``$LIVE_PSSR_RESCUE_DIR``, else ``<system temp>/live-pssr-rescue``
(pick a folder on another disk for acquisitions that must never lose a frame). The tif's ImageJ
``Info`` names the store, each page's frame index and camera time; the run's summary and log say
where it is. If that fails too, the frames are reported as not stored, with their indices.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..frames import Frame
from .claim import claim_file, commit_file

ENV = "LIVE_PSSR_RESCUE_DIR"


def default_rescue_dir() -> Path:
    """``$LIVE_PSSR_RESCUE_DIR``, else ``<system temp>/live-pssr-rescue``."""
    return Path(os.environ.get(ENV) or Path(tempfile.gettempdir()) / "live-pssr-rescue")


def rescue_frames(frames: list[Frame], store_path: str | Path, rescue_dir: str | Path | None = None) -> Path:
    """Write ``frames`` (one shape and dtype) to a rescue tif; returns its path (OSError on failure)."""
    import tifffile

    folder = Path(rescue_dir) if rescue_dir is not None else default_rescue_dir()
    name = Path(store_path).name
    first, last = frames[0].index, frames[-1].index
    path = folder / f"{name}.rescued-{first}-{last}-{time.strftime('%Y%m%dT%H%M%S')}.tif"
    info = {"live_pssr": {"rescued_from": str(Path(store_path).resolve()),
                          "indices": [f.index for f in frames],
                          "camera_time_ms": [f.camera_time_ms for f in frames],
                          "why": "the run store failed before these frames were committed"}}
    tmp = claim_file(path)
    try:
        tifffile.imwrite(tmp, np.stack([f.image for f in frames]), imagej=True,
                         metadata={"axes": "TYX", "Info": json.dumps(info)})
        commit_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_rescued(path: str | Path) -> tuple[list[int], np.ndarray]:
    """The frame indices and frames (T, Y, X) of a rescue tif."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        info = json.loads(tif.imagej_metadata["Info"])["live_pssr"]
        data = tif.asarray()
    data = data.reshape((-1, *data.shape[-2:]))
    return list(info["indices"]), data
