"""Frame sources: the simulated microscope and replay of recorded timelapses.

A source is an iterator factory of :class:`~live_pssr.frames.Frame` at a frame rate:
``source.frames(n, paced=True)`` yields ``n`` frames (``None``: all, or endless) and, when
paced, sleeps so that frame ``i`` is delivered at ``t0 + i / fps`` (``time.perf_counter``;
the schedule does not drift, and a consumer that falls behind gets the late frames back to
back, like a camera's buffer). ``camera_time_ms`` is the elapsed time since the first frame:
measured when paced, ``i * 1000 / fps`` when not. Every call to ``frames`` starts a new run at
index 0.

* :class:`SimulatedSource`: frames of :class:`~live_pssr.sim.SimulatedMicroscope` (endless).
* :class:`ReplaySource`: a TIFF stack, a zarr / OME-Zarr array or a run store's raw frames, read
  lazily frame by frame through :mod:`live_pssr.stacks` (the reader ``enhance`` uses).
* :func:`open_source`: ``"sim"`` or a path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import ConfigError, FrameFormatError
from .frames import SUPPORTED_DTYPES, Frame
from .sim import MicroscopeConfig, SimulatedMicroscope

__all__ = ["FrameSource", "ReplaySource", "SimulatedSource", "open_source"]


@runtime_checkable
class FrameSource(Protocol):
    """What the pipeline reads frames from.

    Attributes
    ----------
    shape : tuple of int
        ``(height, width)`` of every frame.
    dtype : np.dtype
        uint8 or uint16.
    fps : float
        Frame rate of paced delivery.
    pixel_size_um : float
        Camera pixel size in the sample (um).
    n_frames : int or None
        Frames in one pass; ``None`` for an endless source.
    """

    shape: tuple[int, int]
    dtype: np.dtype
    fps: float
    pixel_size_um: float
    n_frames: int | None

    def frames(self, n: int | None = None, paced: bool = True) -> Iterator[Frame]:
        """Yield ``n`` frames (``None``: all of them / endless), at ``fps`` when ``paced``."""
        ...


def _run(
    read: Callable[[int], tuple[np.ndarray, dict[str, Any]]],
    fps: float,
    count: int | None,
    paced: bool,
) -> Iterator[Frame]:
    """Yield frames ``0 .. count-1`` (endless when ``count`` is None) on a drift-free schedule."""
    period = 1.0 / fps
    t0 = 0.0
    i = 0
    while count is None or i < count:
        image, meta = read(i)
        if paced:
            now = time.perf_counter()
            if i == 0:
                t0 = now
            else:
                delay = t0 + i * period - now
                if delay > 0:
                    time.sleep(delay)
                now = time.perf_counter()
            stamp = (now - t0) * 1000.0
        else:
            stamp = i * 1000.0 * period
        yield Frame(index=i, image=image, camera_time_ms=stamp, metadata=meta)
        i += 1


def _count(n: int | None, available: int | None) -> int | None:
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0 or None, got {n}")
    if available is None:
        return n
    return available if n is None else min(n, available)


class SimulatedSource:
    """Endless frames of the simulated microscope.

    Parameters
    ----------
    config : MicroscopeConfig
        Microscope settings; ``config.fps`` is the source's frame rate.

    Attributes
    ----------
    microscope : SimulatedMicroscope
        The instrument: ``microscope.ground_truth(frame.index)`` is the matching truth.
    """

    def __init__(self, config: MicroscopeConfig = MicroscopeConfig()) -> None:
        self.microscope = SimulatedMicroscope(config)
        self.config = config
        self.shape: tuple[int, int] = self.microscope.camera_shape
        self.dtype: np.dtype = self.microscope.dtype
        self.fps = float(config.fps)
        self.pixel_size_um = float(config.pixel_size_um)
        self.n_frames: int | None = None
        self._meta = {
            "source": "simulated",
            "seed": int(config.seed),
            "laser_power": float(config.laser_power),
            "upscale": int(config.upscale),
            "pixel_size_um": self.pixel_size_um,
            "truth_pixel_size_um": float(config.truth_pixel_size_um),
        }

    def _read(self, i: int) -> tuple[np.ndarray, dict[str, Any]]:
        return self.microscope.frame(i), dict(self._meta)

    def frames(self, n: int | None = None, paced: bool = True) -> Iterator[Frame]:
        """Yield frames 0, 1, ... (``n`` of them, endless when None), at ``fps`` when paced."""
        return _run(self._read, self.fps, _count(n, None), paced)

    def __repr__(self) -> str:
        return f"SimulatedSource({self.config!r})"


# -- replay --------------------------------------------------------------------------------
def _check_dtype(dtype: np.dtype, where: str) -> np.dtype:
    native = np.dtype(dtype).newbyteorder("=")
    if native not in SUPPORTED_DTYPES:
        raise FrameFormatError(
            f"{where} holds {native} data; replay needs uint8 or uint16 camera data",
            "convert it first, e.g. tifffile.imwrite('out.tif', "
            "np.clip(data, 0, 65535).astype(np.uint16)) (rescale float data to counts first)",
        )
    return native


class ReplaySource:
    """Replay a recorded timelapse as a live source.

    The recording is read through live-pssr's one stack reader,
    :func:`live_pssr.stacks.open_input` (lazily, frame by frame; the same axes, pixel
    sizes and checks as ``live-pssr enhance``): a damaged file (a truncated tif, a corrupt zarr
    chunk), an empty one or an unfinished enhance output is a
    :class:`~live_pssr.errors.FrameFormatError` naming the problem, never a traceback.

    Parameters
    ----------
    path : str or Path
        A TIFF file (T,Y,X stack, single 2-D image, Y,X,C or T,C,Y,X with ``channel``), a zarr
        array, an OME-Zarr image (its multiscale level 0), or a live-pssr run store (its root
        ``RUN`` replays the raw frames ``RUN/0``); T,C,Y,X or T,Y,X, singleton axes allowed.
        Big-endian data is byte-swapped on reading.
    fps : float
        Replay frame rate.
    channel : int, optional
        Channel to replay from multi-channel data (required there).
    loop : bool
        Start over at the end (endless: ``n_frames`` is None, indices keep increasing).
    pixel_size_um : float, optional
        Override the pixel size; default: from the file's metadata, else 1.0
        (:attr:`pixel_size_known` tells which).

    Attributes
    ----------
    path : Path
        The recording (what a writer must never replace: pass it as an input to the output claim).
    n_recorded : int
        Frames in the recording.
    axes : str
        The recording's frame axes after reduction (``"TYX"``, ``"YX"`` ...).
    """

    def __init__(
        self,
        path: str | Path,
        fps: float = 10.0,
        channel: int | None = None,
        loop: bool = False,
        pixel_size_um: float | None = None,
    ) -> None:
        from .stacks import open_input

        self.path = Path(path)
        if not fps > 0:
            raise ConfigError(f"fps must be > 0, got {fps}", "pass a positive frame rate")
        if pixel_size_um is not None and not pixel_size_um > 0:
            raise ConfigError(f"pixel_size_um must be > 0, got {pixel_size_um}")
        self.fps = float(fps)
        self.channel = channel
        self.loop = bool(loop)
        self._stack = open_input(self.path, channel)
        self.dtype: np.dtype = _check_dtype(self._stack.dtype, f"'{self.path}'")
        self.n_recorded = self._stack.n_frames
        self.shape: tuple[int, int] = self._stack.frame_shape
        self.read(0)  # a recording whose first frame cannot be read fails here, before any run
        self.n_frames: int | None = None if self.loop else self.n_recorded
        file_px = self._stack.pixel_size_um
        self.pixel_size_known = pixel_size_um is not None or file_px is not None
        self.pixel_size_um = float(pixel_size_um or file_px or 1.0)
        self.axes = self._stack.axes

    def read(self, i: int) -> np.ndarray:
        """Recorded frame ``i`` (0 <= i < n_recorded) as a new C-contiguous 2-D array."""
        if not 0 <= i < self.n_recorded:
            raise IndexError(f"frame {i} is not in the recording (0..{self.n_recorded - 1})")
        return self._stack.read(i, i + 1)[0]

    def close(self) -> None:
        """Close the recording's file handles (reading again reopens them)."""
        self._stack.close()

    def _read(self, i: int) -> tuple[np.ndarray, dict[str, Any]]:
        j = i % self.n_recorded
        meta = {
            "source": "replay",
            "path": str(self.path),
            "recorded_index": j,
            "pixel_size_um": self.pixel_size_um,
        }
        if self.channel is not None:
            meta["channel"] = self.channel
        return self.read(j), meta

    def frames(self, n: int | None = None, paced: bool = True) -> Iterator[Frame]:
        """Yield the recording (``n`` frames at most; endless with ``loop`` and n=None)."""
        return _run(self._read, self.fps, _count(n, self.n_frames), paced)

    def __repr__(self) -> str:
        return (
            f"ReplaySource('{self.path}', fps={self.fps}, channel={self.channel}, "
            f"loop={self.loop}, frames={self.n_recorded}, shape={self.shape})"
        )


def open_source(spec: str | Path, **kwargs: Any) -> FrameSource:
    """Open ``"sim"`` (the simulated microscope) or a recording path.

    Parameters
    ----------
    spec : str or Path
        ``"sim"``, or a TIFF / zarr path.
    **kwargs
        For ``"sim"``: ``config=MicroscopeConfig(...)`` and/or MicroscopeConfig fields
        (``fps``, ``laser_power``, ``seed``, ...). For a path: :class:`ReplaySource`
        options. Keys whose value is None are ignored (CLI defaults).

    Returns
    -------
    FrameSource
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(spec, str) and spec.strip().lower() == "sim":
        config = kwargs.pop("config", MicroscopeConfig())
        known = {f.name for f in fields(MicroscopeConfig)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(
                f"unknown option(s) for the simulated source: {', '.join(unknown)}",
                f"valid: {', '.join(sorted(known))}",
            )
        return SimulatedSource(replace(config, **kwargs))
    return ReplaySource(spec, **kwargs)
