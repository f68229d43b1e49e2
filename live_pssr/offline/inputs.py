"""Reading recorded data frame by frame: tif stacks, zarr arrays, OME-Zarr images and run stores.

:func:`open_input` inspects a file (axes, dtype, pixel size, frame interval) without reading
pixels and returns an :class:`InputStack`: a lazy ``(n_frames, h, w)`` view whose
:meth:`InputStack.read` reads only the frames asked for. Tifs are read through tifffile's zarr
view (``series.aszarr()``) and zarr stores through zarr-python, so a long stack is never loaded
whole. An :class:`InputStack` pickles to its description (path, axes, selection): each dask worker
reopens the file itself.

Axes are reduced to ``(frame, y, x)``: a channel axis (``C``, or ``S`` for RGB samples) of more
than one plane needs ``channel``; one other axis of more than one plane (time, z, or an unnamed
sequence) becomes the frame axis; axes of size 1 are dropped. Anything else (two non-channel axes,
no y/x) is refused with a :class:`~live_pssr.errors.FrameFormatError` that says how to fix it.

Pixel size (um) comes from ImageJ resolution tags and unit, OME-XML ``PhysicalSizeX``, TIFF
resolution in cm, OME-Zarr ``scale`` transformations, or a ``pixel_size_um`` attribute of a plain
zarr array; the frame interval from ImageJ ``finterval``, OME ``TimeIncrement`` or the time axis'
scale.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FrameFormatError

TIF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr",)
CHANNEL_AXES = "CS"
_UNIT_UM = {"um": 1.0, "µm": 1.0, "μm": 1.0, "\\u00b5m": 1.0, "micron": 1.0, "microns": 1.0,
            "micrometer": 1.0, "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3}
_UNIT_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "ms": 1e-3, "millisecond": 1e-3, "min": 60.0,
           "minute": 60.0}


def path_kind(path: Path) -> str:
    """``tif``, ``ome-tif``, ``zarr`` or ``ome-zarr`` from a file name (else an error)."""
    name = path.name.lower().rstrip("/")
    if name.endswith((".ome.tif", ".ome.tiff")):
        return "ome-tif"
    if name.endswith(TIF_SUFFIXES):
        return "tif"
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    if name.endswith(ZARR_SUFFIXES):
        return "zarr"
    raise FrameFormatError(
        f"{path}: unsupported file type {path.suffix or '(no extension)'!r}",
        "use a .tif/.tiff stack, a .zarr array or an .ome.zarr image (convert other formats, e.g. "
        "with Fiji's 'Save As > Tiff')",
    )


@dataclass
class InputStack:
    """A lazy ``(n_frames, h, w)`` view of an image file.

    Attributes
    ----------
    path : Path
        The file (tif) or store (zarr).
    kind : str
        ``tif``, ``ome-tif``, ``zarr`` or ``ome-zarr`` (an OME-Zarr image or a run store's raw).
    axes : str
        Axes of the reduced stack: ``"YX"`` for a single image, else the frame axis' letter
        (``T``, ``Z``, ``Q`` ...) followed by ``"YX"``.
    shape : (int, int, int)
        ``(n_frames, h, w)`` (``n_frames == 1`` for a single image).
    dtype : np.dtype
    pixel_size_um : float or None
    frame_interval_s : float or None
    frame_axis : dict or None
        The frame axis as an OME-NGFF axis (name, type, unit) for OME-Zarr outputs.
    """

    path: Path
    kind: str
    axes: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    pixel_size_um: float | None
    frame_interval_s: float | None
    frame_axis: dict[str, Any] | None
    #: where the pixels are: zarr array path inside the store (zarr) or series index (tif)
    location: str | int
    #: per source axis: "F" (frame), "Y", "X", or an int index
    selection: tuple[str | int, ...]
    chunk_frames: int = 1
    _arr: Any = field(default=None, repr=False)
    _tif: Any = field(default=None, repr=False)

    @property
    def n_frames(self) -> int:
        return self.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.shape[1], self.shape[2]

    def _array(self) -> Any:
        if self._arr is None:
            import zarr

            if self.kind in ("tif", "ome-tif"):
                import tifffile

                self._tif = tifffile.TiffFile(self.path)
                store = self._tif.series[int(self.location)].aszarr(level=0)
                self._arr = zarr.open_array(store, mode="r")
            else:
                root = zarr.open(str(self.path), mode="r")
                self._arr = root[str(self.location)] if self.location else root
        return self._arr

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` as a ``(stop - start, h, w)`` array in the file's dtype."""
        arr = self._array()
        index, kept = [], []
        for sel in self.selection:
            if sel == "F":
                index.append(slice(start, stop))
                kept.append("F")
            elif sel in ("Y", "X"):
                index.append(slice(None))
                kept.append(sel)
            else:
                index.append(int(sel))
        data = np.asarray(arr[tuple(index)])
        if "F" not in kept:
            data, kept = data[None], ["F", *kept]
        return np.ascontiguousarray(np.moveaxis(data, [kept.index(a) for a in "FYX"], [0, 1, 2]))

    def clone(self) -> InputStack:
        """A copy with its own file handles (one per worker thread)."""
        new = copy.copy(self)
        new._arr = new._tif = None
        return new

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
        self._arr = self._tif = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arr"] = state["_tif"] = None
        return state


def open_input(path: str | Path, channel: int | None = None) -> InputStack:
    """Inspect ``path`` and return a lazy :class:`InputStack` of its frames.

    Raises
    ------
    FrameFormatError
        Missing file, unsupported type, unreadable file, or axes that do not reduce to frames.
    """
    path = Path(path)
    kind = path_kind(path)
    if not path.exists():
        raise FrameFormatError(f"input {path} does not exist", "check the path (and the current folder)")
    if kind in ("tif", "ome-tif"):
        return _open_tif(path, kind, channel)
    return _open_zarr(path, channel)


# ---------------------------------------------------------------------------------------- axes
def _reduce_axes(path: Path, axes: str, shape: tuple[int, ...], channel: int | None
                 ) -> tuple[tuple[str | int, ...], int | None]:
    """Per-axis selection (``"F"``, ``"Y"``, ``"X"`` or an index) and the frame axis position."""
    axes = axes.upper()
    if len(axes) != len(shape) or "Y" not in axes or "X" not in axes:
        raise FrameFormatError(
            f"{path}: cannot find the image axes in {axes or '?'} {tuple(shape)}",
            "save the data with y and x as its last two axes (e.g. T,Y,X or Y,X)",
        )
    chans = [i for i, a in enumerate(axes) if a in CHANNEL_AXES and shape[i] > 1]
    if len(chans) > 1:
        raise FrameFormatError(f"{path}: more than one channel axis in {axes} {tuple(shape)}",
                               "split the channels into separate files first")
    others = [i for i, a in enumerate(axes) if a not in "YX" and i not in chans]
    big = [i for i in others if shape[i] > 1 and axes[i] not in CHANNEL_AXES]
    if len(big) > 1:
        dims = ", ".join(f"{axes[i]}={shape[i]}" for i in big)
        raise FrameFormatError(
            f"{path}: {len(shape)}-D data with more than one frame axis ({dims}, axes {axes})",
            "enhance one axis at a time: save e.g. one T,Y,X stack per z-plane (or per position)",
        )
    sel: list[str | int] = []
    if chans:
        c = chans[0]
        if channel is None:
            raise FrameFormatError(
                f"{path}: {len(shape)}-D data {tuple(shape)} (axes {axes}) has {shape[c]} channels "
                "but no channel was chosen",
                f"pass --channel N (0..{shape[c] - 1}) to enhance one channel",
            )
        if not 0 <= channel < shape[c]:
            raise FrameFormatError(f"{path}: channel {channel} does not exist (axis {axes[c]} has "
                                   f"{shape[c]} channels)", f"use --channel 0..{shape[c] - 1}")
    elif channel not in (None, 0):
        raise FrameFormatError(f"{path}: channel {channel} asked for, but the data {tuple(shape)} "
                               f"(axes {axes}) has a single channel", "drop --channel")
    frame_ax = big[0] if big else next((i for i in others if axes[i] not in CHANNEL_AXES), None)
    for i, a in enumerate(axes):
        if a in "YX":
            sel.append(a)
        elif i == frame_ax:
            sel.append("F")
        elif chans and i == chans[0]:
            sel.append(int(channel))  # type: ignore[arg-type]
        else:
            sel.append(0)
    return tuple(sel), frame_ax


def _check_dtype(path: Path, dtype: np.dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise FrameFormatError(f"{path}: pixel type {dtype} cannot be enhanced",
                               "convert the data to uint8, uint16 or float32 first")
    return dtype


def _stack(path: Path, kind: str, axes: str, shape: tuple[int, ...], dtype: np.dtype,
           channel: int | None, location: str | int, px: float | None, dt: float | None,
           frame_axis: dict[str, Any] | None, chunk_frames: int = 1) -> InputStack:
    sel, fax = _reduce_axes(path, axes, shape, channel)
    y, x = shape[sel.index("Y")], shape[sel.index("X")]
    n = shape[fax] if fax is not None else 1
    letter = axes[fax].upper() if fax is not None else ""
    if fax is not None and frame_axis is None:
        frame_axis = {"name": letter.lower(), "type": "time" if letter == "T" else
                      ("space" if letter == "Z" else "other")}
    return InputStack(path=path, kind=kind, axes=f"{letter}YX", shape=(n, y, x),
                      dtype=_check_dtype(path, dtype), pixel_size_um=px,
                      frame_interval_s=dt if letter in ("T", "") else None,
                      frame_axis=frame_axis if fax is not None else None,
                      location=location, selection=sel, chunk_frames=max(1, chunk_frames))


# ---------------------------------------------------------------------------------------- tif
def _open_tif(path: Path, kind: str, channel: int | None) -> InputStack:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            axes, shape, dtype = series.axes, tuple(series.shape), series.dtype
            px, dt = _tif_pixel_size(tf), _tif_interval(tf)
    except (OSError, ValueError, IndexError, tifffile.TiffFileError) as err:
        raise FrameFormatError(f"{path}: not a readable tif ({err})",
                               "check the file (re-export it as tif from Fiji or tifffile)") from err
    return _stack(path, kind, axes, shape, dtype, channel, 0, px, dt, None)


def _unit_um(unit: Any) -> float | None:
    return _UNIT_UM.get(str(unit).strip().lower()) if unit else None


def _tif_pixel_size(tf: Any) -> float | None:
    if tf.is_ome:
        m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tf.ome_metadata or "")
        if m:
            unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tf.ome_metadata)
            return float(m.group(1)) * ((_unit_um(unit.group(1)) if unit else None) or 1.0)
    page = tf.pages.first
    res = page.tags.get("XResolution")
    if res is None:
        return None
    num, den = res.value
    if not num:
        return None
    per_unit = den / num  # pixel size in the resolution unit
    if tf.is_imagej:
        scale = _unit_um((tf.imagej_metadata or {}).get("unit"))
        return per_unit * scale if scale else None
    unit = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 2
    return {3: 1e4, 4: 1e3, 5: 1.0}.get(unit, 0.0) * per_unit or None  # cm, mm, um; not inches


def _tif_interval(tf: Any) -> float | None:
    if tf.is_imagej:
        v = (tf.imagej_metadata or {}).get("finterval")
        return float(v) if v else None
    if tf.is_ome:
        m = re.search(r'TimeIncrement="([0-9.eE+-]+)"', tf.ome_metadata or "")
        if m:
            unit = re.search(r'TimeIncrementUnit="([^"]+)"', tf.ome_metadata)
            return float(m.group(1)) * (_UNIT_S.get(unit.group(1).lower(), 1.0) if unit else 1.0)
    return None


# ---------------------------------------------------------------------------------------- zarr
_AXIS_LETTERS = {"t": "T", "time": "T", "z": "Z", "c": "C", "channel": "C", "ch": "C", "y": "Y", "x": "X"}


def _letters(names: list[str]) -> str:
    return "".join(_AXIS_LETTERS.get(str(n).lower(), "Q") for n in names)


def _open_zarr(path: Path, channel: int | None) -> InputStack:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:  # zarr raises several types for non-stores
        raise FrameFormatError(f"{path}: not a readable zarr store ({err})",
                               "pass a zarr array or an OME-Zarr image folder") from err
    if isinstance(node, zarr.Array):
        attrs = dict(node.attrs)
        names = getattr(node.metadata, "dimension_names", None) or attrs.get("_ARRAY_DIMENSIONS")
        if names and all(names):
            axes = _letters(list(names))
        elif node.ndim in (2, 3):
            axes = "YX" if node.ndim == 2 else "TYX"
        else:
            raise FrameFormatError(
                f"{path}: {node.ndim}-D zarr array {node.shape} without axis names",
                "store it with dimension_names (e.g. ('t', 'c', 'y', 'x')) or as T,Y,X / Y,X",
            )
        px = attrs.get("pixel_size_um", (attrs.get("live_pssr") or {}).get("pixel_size_um"))
        dt = attrs.get("frame_interval_s")
        return _stack(path, "zarr", axes, node.shape, node.dtype, channel, "", px, dt, None,
                      _frame_chunk(node, axes))
    return _open_ome_group(path, node, channel)


def _frame_chunk(arr: Any, axes: str) -> int:
    for a, c in zip(axes, arr.chunks, strict=False):
        if a not in "YXCS":
            return int(c)
    return 1


def _ome(attrs: dict[str, Any]) -> dict[str, Any]:
    return attrs.get("ome", attrs)  # OME-Zarr 0.5 nests under "ome", 0.4 is top-level


def _open_ome_group(path: Path, group: Any, channel: int | None) -> InputStack:
    ome = _ome(dict(group.attrs))
    prefix = ""
    if "bioformats2raw.layout" in ome:  # a collection (e.g. a live-pssr run store): first image
        series = _ome(dict(group["OME"].attrs)).get("series", ["0"]) if "OME" in group else ["0"]
        prefix = f"{series[0]}/"
        group = group[series[0]]
        ome = _ome(dict(group.attrs))
    if "multiscales" not in ome:
        arrays = sorted(k for k, _ in group.arrays())
        raise FrameFormatError(
            f"{path}: zarr group without an OME-Zarr image (no multiscales metadata)",
            f"pass the array inside it, e.g. {path / arrays[0]}" if arrays else
            "pass a zarr array or an OME-Zarr image",
        )
    ms = ome["multiscales"][0]
    ds = ms["datasets"][0]
    arr = group[ds["path"]]
    raw_axes = ms.get("axes") or ["t", "c", "z", "y", "x"][-arr.ndim:]
    axes_meta = [a if isinstance(a, dict) else {"name": a} for a in raw_axes]
    axes = _letters([a["name"] for a in axes_meta])
    scale = next((t["scale"] for t in ds.get("coordinateTransformations", []) if t.get("type") == "scale"),
                 [1.0] * arr.ndim)
    ix = axes.index("X") if "X" in axes else -1
    px = float(scale[ix]) * (_unit_um(axes_meta[ix].get("unit")) or 1.0) if ix >= 0 else None
    it = axes.find("T")
    dt = float(scale[it]) * _UNIT_S.get(str(axes_meta[it].get("unit", "s")).lower(), 1.0) if it >= 0 else None
    stack = _stack(path, "ome-zarr", axes, arr.shape, arr.dtype, channel, prefix + ds["path"], px, dt,
                   None, _frame_chunk(arr, axes))
    if stack.frame_axis is not None:
        fi = stack.selection.index("F")
        stack.frame_axis = {k: v for k, v in axes_meta[fi].items() if k in ("name", "type", "unit")}
    return stack


def check_frame_values(frame: np.ndarray, path: Path | str, index: int) -> None:
    """Refuse frames that cannot be normalised: NaN/Inf values or a constant image."""
    if frame.dtype.kind == "f" and not np.isfinite(frame).all():
        raise FrameFormatError(
            f"{path}: frame {index} contains NaN or Inf values",
            "replace them first (e.g. np.nan_to_num, or Fiji's Process > Math > Remove NaNs)",
        )
    lo, hi = frame.min(), frame.max()
    if lo == hi:
        raise FrameFormatError(
            f"{path}: frame {index} is constant (every pixel is {lo}): there is nothing to enhance",
            "check that the file holds image data; remove blank frames (e.g. shutter closed) first",
        )


__all__ = ["InputStack", "check_frame_values", "open_input", "path_kind"]
