"""The frame: one camera image with its index, time and acquisition metadata.

Frames are what sources produce and what the pipeline consumes. :func:`check_frame` is the one
place where an incoming image is validated (dtype, dimensionality, size against the run's first
frame), so every entry point (simulated source, replay, pycromanager hook, pymmcore-plus) gives
the same clear error. Big-endian camera data (``>u2``) is accepted: :func:`native_copy` (the one
copy every entry point makes) turns it into native byte order on the way in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import FrameFormatError, FrameShapeError

#: dtypes stored losslessly and understood by the models' normalisation.
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


@dataclass(frozen=True, slots=True)
class Frame:
    """One camera frame.

    Attributes
    ----------
    index : int
        Position in the run's time axis (0-based, dense).
    image : np.ndarray
        2-D uint8 or uint16 camera image (owned by the frame: producers pass a copy).
    camera_time_ms : float
        Camera/elapsed time of the exposure in ms since the run's first frame.
    metadata : dict
        Acquisition metadata worth keeping (axes, exposure, pixel size, camera, ROI, ...).
    """

    index: int
    image: np.ndarray
    camera_time_ms: float
    metadata: dict[str, Any] = field(default_factory=dict)


def check_frame(
    image: np.ndarray,
    expected_shape: tuple[int, ...] | None = None,
    expected_dtype: np.dtype | None = None,
) -> None:
    """Raise a clear error when ``image`` cannot join the run.

    Parameters
    ----------
    image : np.ndarray
        The incoming camera image.
    expected_shape, expected_dtype
        Shape and dtype of the run's first frame (None on the first frame).
    """
    if not isinstance(image, np.ndarray):
        raise FrameFormatError(
            f"frame is a {type(image).__name__}, not a numpy array",
            "pass the camera image as a 2-D numpy array",
        )
    if image.ndim != 2:
        raise FrameFormatError(
            f"frame has {image.ndim} dimensions {image.shape}; live-pssr takes 2-D camera images",
            "acquire one channel/plane per frame (multi-channel cameras: split channels first)",
        )
    if image.dtype.kind != "u" or image.dtype.newbyteorder("=") not in SUPPORTED_DTYPES:
        raise FrameFormatError(
            f"frame dtype {image.dtype} is not supported (only uint8 and uint16 camera data)",
            "set the camera to 8- or 16-bit output, or convert with "
            "np.clip(img, 0, 65535).astype(np.uint16) before handing frames to live-pssr",
        )
    native = image.dtype.newbyteorder("=")
    if expected_dtype is not None and native != np.dtype(expected_dtype).newbyteorder("="):
        raise FrameFormatError(
            f"frame dtype changed mid-run: {image.dtype}, the run started with {expected_dtype}",
            "keep the camera's bit depth fixed during a run; start a new run after changing it",
        )
    if expected_shape is not None and image.shape != tuple(expected_shape):
        raise FrameShapeError(
            f"frame size changed mid-run: {image.shape}, the run started with "
            f"{tuple(expected_shape)} (ROI or binning changed?)",
            "keep ROI and binning fixed during a run; start a new run (new store) after changing them",
        )


def native_copy(image: np.ndarray) -> np.ndarray:
    """A contiguous copy of ``image`` in native byte order (the frame a pipeline may own)."""
    dtype = image.dtype.newbyteorder("=")
    return np.array(image, dtype=dtype, order="C", copy=True)
