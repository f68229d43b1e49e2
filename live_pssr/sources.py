"""Frame sources: the simulated microscope and replay of recorded timelapses.

A source is an iterator factory of :class:`~live_pssr.frames.Frame` at a frame rate:
``source.frames(n, paced=True)`` yields ``n`` frames (``None``: all, or endless) and, when
paced, sleeps so that frame ``i`` is delivered at ``t0 + i / fps`` (``time.perf_counter``;
the schedule does not drift, and a consumer that falls behind gets the late frames back to
back, like a camera's buffer). ``camera_time_ms`` is the elapsed time since the first frame:
measured when paced, ``i * 1000 / fps`` when not. Every call to ``frames`` starts a new run at
index 0.

* :class:`SimulatedSource`: frames of :class:`~live_pssr.sim.SimulatedMicroscope` (endless).
* :class:`ReplaySource`: a TIFF stack or a zarr / OME-Zarr array, read lazily frame by frame.
* :func:`open_source`: ``"sim"`` or a path.
"""

from __future__ import annotations

import re
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
_AXIS_NAMES = {"t": "T", "time": "T", "c": "C", "channel": "C", "z": "Z", "y": "Y", "x": "X"}


def _guess_axes(shape: tuple[int, ...]) -> str:
    """Axes of an array without metadata: (T)(C)YX, or YXC/TYXC for a short last axis."""
    nd = len(shape)
    if nd >= 3 and shape[-1] <= 4 < min(shape[-3], shape[-2]):
        return {3: "YXC", 4: "TYXC"}.get(nd, "Q" * (nd - 3) + "YXC")
    return {2: "YX", 3: "TYX", 4: "TCYX", 5: "TCZYX"}.get(nd, "Q" * (nd - 2) + "YX")


def _plan(shape: tuple[int, ...], axes: str, channel: int | None, where: str) -> tuple[list, int]:
    """Indexing template for frame i and the number of recorded frames.

    ``axes`` uses tifffile's letters (T, Z, C, S = samples, Y, X; Q/I = unknown). C, or S as
    the last axis (RGB-like), is the channel axis; one other non-singleton axis is time.

    Returns ``(key, n)``: ``key`` is a list with ``None`` at the frame axis (filled with i),
    channel/singleton indices elsewhere and ``slice(None)`` on Y and X.
    """
    axes = axes.upper()
    # tifffile names axes it cannot identify Q or I: guess those from the shape
    if len(axes) != len(shape) or not axes.endswith(("YX", "YXS", "YXC")) or set(axes) <= set("QIYX"):
        axes = _guess_axes(shape)
    key: list = [slice(None)] * len(shape)
    last = len(axes) - 1
    chan_axes = [k for k, a in enumerate(axes) if (a == "C" or (a == "S" and k == last)) and shape[k] > 1]
    if len(chan_axes) > 1:
        raise FrameFormatError(
            f"{where}: more than one channel-like axis ({axes}, shape {shape})",
            "save a single-channel (or single C axis) timelapse",
        )
    if chan_axes:
        k = chan_axes[0]
        if channel is None:
            raise ConfigError(
                f"{where} has {shape[k]} channels (axes {axes}, shape {shape})",
                f"choose one with channel=0..{shape[k] - 1} (CLI: --channel)",
            )
        if not 0 <= channel < shape[k]:
            raise ConfigError(
                f"channel={channel} is out of range: {where} has {shape[k]} channels",
                f"use channel=0..{shape[k] - 1}",
            )
        key[k] = channel
    elif channel not in (None, 0):
        raise ConfigError(
            f"channel={channel} given but {where} has a single channel (axes {axes})",
            "leave channel unset",
        )
    yx = axes.index("YX")
    others = [k for k in range(len(shape)) if k not in (yx, yx + 1) and k not in chan_axes]
    frame_axes = [k for k in others if shape[k] > 1]
    for k in others:
        if shape[k] == 1:  # singleton axes (and a size-1 channel axis)
            key[k] = 0
    if len(frame_axes) > 1:
        names = "".join(axes[k] for k in frame_axes)
        raise FrameFormatError(
            f"{where}: replay takes one plane per time point, but axes {axes} (shape {shape}) "
            f"have {len(frame_axes)} stacked axes ({names})",
            "save a T,Y,X (or T,C,Y,X) timelapse, e.g. a max projection over Z",
        )
    n = 1
    if frame_axes:
        key[frame_axes[0]] = None
        n = int(shape[frame_axes[0]])
    return key, n


def _check_dtype(dtype: np.dtype, where: str) -> np.dtype:
    native = np.dtype(dtype).newbyteorder("=")
    if native not in SUPPORTED_DTYPES:
        raise FrameFormatError(
            f"{where} holds {np.dtype(dtype)} data; replay needs uint8 or uint16 camera data",
            "convert it first, e.g. tifffile.imwrite('out.tif', "
            "np.clip(data, 0, 65535).astype(np.uint16)) (rescale float data to counts first)",
        )
    return native


def _tiff_pixel_size(tif: Any) -> float | None:
    """Pixel size (um) from OME-XML or ImageJ resolution tags, if recorded."""
    ome = tif.ome_metadata
    if ome:
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', ome)
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', ome)
        if m and (unit is None or unit.group(1) in ("µm", "um", "\u00b5m", "micron")):
            return float(m.group(1))
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).lower()
    if unit in ("micron", "um", "µm", "\\u00b5m", "\u00b5m", "microns"):
        tag = tif.pages[0].tags.get("XResolution")
        if tag is not None:
            num, den = tag.value
            if num > 0 and den > 0:
                return den / num
    return None


def _zarr_axes_and_scale(attrs: dict, arr: Any) -> tuple[str, float | None]:
    """Axes letters and x pixel size (um) from OME-Zarr multiscales or array dimension names."""
    axes, size = "", None
    ms = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
    if ms:
        ax = ms[0].get("axes") or []
        names = [a.get("name", "") if isinstance(a, dict) else str(a) for a in ax]
        axes = "".join(_AXIS_NAMES.get(n.lower(), "Q") for n in names)
        units = [a.get("unit") if isinstance(a, dict) else None for a in ax]
        try:
            ct = ms[0]["datasets"][0]["coordinateTransformations"]
            scale = next(c["scale"] for c in ct if c.get("type") == "scale")
            if "X" in axes and units[axes.index("X")] in ("micrometer", None):
                size = float(scale[axes.index("X")])
        except (KeyError, IndexError, StopIteration, TypeError, ValueError):
            size = None
    if not axes:
        dims = getattr(getattr(arr, "metadata", None), "dimension_names", None)
        if dims and all(dims):
            axes = "".join(_AXIS_NAMES.get(str(d).lower(), "Q") for d in dims)
    return axes, size


class ReplaySource:
    """Replay a recorded timelapse as a live source.

    Parameters
    ----------
    path : str or Path
        A TIFF file (T,Y,X stack, single 2-D image, Y,X,C or T,C,Y,X with ``channel``) or a
        zarr / OME-Zarr path (a group: its multiscale level 0, or array ``'0'``; or an array
        itself; T,C,Y,X or T,Y,X, singleton Z allowed).
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
    n_recorded : int
        Frames in the recording.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float = 10.0,
        channel: int | None = None,
        loop: bool = False,
        pixel_size_um: float | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"replay source not found: {self.path}")
        if not fps > 0:
            raise ConfigError(f"fps must be > 0, got {fps}", "pass a positive frame rate")
        if pixel_size_um is not None and not pixel_size_um > 0:
            raise ConfigError(f"pixel_size_um must be > 0, got {pixel_size_um}")
        self.fps = float(fps)
        self.channel = channel
        self.loop = bool(loop)
        where = f"'{self.path}'"
        is_zarr = self.path.is_dir() or self.path.suffix.lower() == ".zarr"
        data, axes, file_px = self._open_zarr() if is_zarr else self._open_tiff()
        self.dtype: np.dtype = _check_dtype(data.dtype, where)
        shape = tuple(int(s) for s in data.shape)
        if len(shape) < 2:
            raise FrameFormatError(f"{where} holds a {len(shape)}-D array, not images")
        self._key, self.n_recorded = _plan(shape, axes, channel, where)
        self._data = data
        if self.n_recorded < 1:
            raise FrameFormatError(f"{where} holds no frames (shape {shape})")
        first = self.read(0)
        self.shape: tuple[int, int] = (int(first.shape[0]), int(first.shape[1]))
        self.n_frames: int | None = None if self.loop else self.n_recorded
        self.pixel_size_known = pixel_size_um is not None or file_px is not None
        self.pixel_size_um = float(pixel_size_um or file_px or 1.0)
        self.axes = axes

    def _open_tiff(self) -> tuple[Any, str, float | None]:
        import tifffile

        try:
            with tifffile.TiffFile(self.path) as tif:
                series = tif.series[0]
                axes = series.axes
                px = _tiff_pixel_size(tif)
                _check_dtype(series.dtype, f"'{self.path}'")
        except (tifffile.TiffFileError, OSError) as err:
            raise FrameFormatError(
                f"cannot read '{self.path}' as TIFF: {err}",
                "replay takes a TIFF stack or a zarr / OME-Zarr path",
            ) from err
        try:  # uncompressed, contiguous: map lazily
            data = tifffile.memmap(self.path, mode="r")
            if data.shape != tuple(series.shape):
                raise ValueError("memmap shape differs from the series")
        except ValueError:
            data = tifffile.imread(self.path)
        return data, axes, px

    def _open_zarr(self) -> tuple[Any, str, float | None]:
        import zarr

        try:
            node = zarr.open(str(self.path), mode="r")
        except Exception as err:  # zarr raises several types for a non-zarr path
            raise FrameFormatError(
                f"cannot open '{self.path}' as zarr: {err}",
                "replay takes a TIFF stack or a zarr / OME-Zarr path",
            ) from err
        attrs = dict(node.attrs)
        if isinstance(node, zarr.Array):
            arr = node
        else:
            ms = attrs.get("ome", {}).get("multiscales") or attrs.get("multiscales")
            name = ms[0]["datasets"][0]["path"] if ms else "0"
            if name not in node:
                raise FrameFormatError(
                    f"zarr group '{self.path}' has no array '{name}' (arrays: {sorted(node.array_keys())})",
                    "pass the path of the array itself, e.g. " + str(self.path / "<array>"),
                )
            arr = node[name]
        axes, px = _zarr_axes_and_scale(attrs, arr)
        return arr, axes, px

    def read(self, i: int) -> np.ndarray:
        """Recorded frame ``i`` (0 <= i < n_recorded) as a new C-contiguous 2-D array."""
        key = tuple(i if k is None else k for k in self._key)
        return np.array(self._data[key], dtype=self.dtype, order="C", copy=True)

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
