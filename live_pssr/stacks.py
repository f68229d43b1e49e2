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

This is live-pssr's one reader of recorded stacks: ``live-pssr enhance`` reads through it, and so
does replay (:class:`~live_pssr.sources.ReplaySource`, ``demo --replay``). What it guarantees:

* **Kinds**: a folder is a zarr store (a run store's root ``RUN`` gives its raw stream ``RUN/0``;
  ``RUN/0`` and ``RUN/0/0`` work too), a file is a tif by its name (``.tif``/``.tiff``) or by its
  TIFF signature.
* **Axes without names** (a zarr array without ``dimension_names``, a tif of unknown ``Q`` axes)
  are guessed from the shape as replay always did: ``YX``, ``TYX``, ``TCYX``, ``TCZYX``, and
  ``YXC``/``TYXC`` when the last axis is short (<= 4) and y, x are not.
* **Byte order**: big-endian data (``>u2`` tifs or zarr v2 arrays) is read in the native byte
  order; :attr:`InputStack.dtype` is the native dtype.
* **Damage is an error, never a traceback or a silent short read**: a truncated tif (data or IFDs
  past the end of the file, or tifffile's reports of an invalid page offset / corrupt metadata) is
  refused at open; a frame that cannot be decoded (a corrupt zarr chunk) raises a
  :class:`~live_pssr.errors.FrameFormatError` naming the file and frames. A stack of 0 frames, and
  a zarr output of ``live-pssr enhance`` still marked ``live_pssr.state == "partial"`` (its run
  stopped before the end), are refused with what to do.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, FrameFormatError, LivePSSRError


class InputNotFoundError(FrameFormatError, FileNotFoundError):
    """The input path does not exist."""


class ChannelError(FrameFormatError, ConfigError):
    """The channel asked for does not fit the data (none chosen, out of range, or not multi-channel)."""

TIF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr",)
CHANNEL_AXES = "CS"
_UNIT_UM = {"um": 1.0, "µm": 1.0, "μm": 1.0, "\\u00b5m": 1.0, "micron": 1.0, "microns": 1.0,
            "micrometer": 1.0, "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3}
_UNIT_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "ms": 1e-3, "millisecond": 1e-3, "min": 60.0,
           "minute": 60.0}


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def input_kind(path: Path) -> str:
    """``tif``, ``ome-tif``, ``zarr`` or ``ome-zarr`` of an existing input (a folder is a zarr store)."""
    if path.is_dir():
        return "ome-zarr" if path.name.lower().endswith(".ome.zarr") else "zarr"
    try:
        return path_kind(path)
    except FrameFormatError:
        try:
            with open(path, "rb") as f:
                if f.read(4) in _TIFF_MAGIC:
                    return "tif"
        except OSError:
            pass
        raise


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
        """Frames ``start:stop`` as a ``(stop - start, h, w)`` array in :attr:`dtype` (native order).

        Raises :class:`~live_pssr.errors.FrameFormatError` when the frames cannot be read (a
        damaged file: a corrupt chunk, a tif cut short).
        """
        try:
            return self._read(start, stop)
        except (LivePSSRError, MemoryError, KeyboardInterrupt):
            raise
        except Exception as err:  # zarr, numcodecs, tifffile and zlib raise many types
            frames = f"frame {start}" if stop - start <= 1 else f"frames {start}..{stop - 1}"
            raise FrameFormatError(
                f"{self.path}: cannot read {frames}: the file is damaged ({type(err).__name__}: {err})",
                "copy the file again from the original (an interrupted copy or a full disk while "
                "recording leaves a damaged file); the frames before the damage read fine",
            ) from err

    def _read(self, start: int, stop: int) -> np.ndarray:
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
        data = np.moveaxis(data, [kept.index(a) for a in "FYX"], [0, 1, 2])
        return np.ascontiguousarray(data, dtype=self.dtype)  # big-endian data: byte-swapped here

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
    if not path.exists():
        raise InputNotFoundError(f"input {path} does not exist", "check the path (and the current folder)")
    kind = input_kind(path)
    if kind in ("tif", "ome-tif"):
        return _open_tif(path, kind, channel)
    return _open_zarr(path, channel)


# ---------------------------------------------------------------------------------------- axes
def _reduce_axes(path: Path, axes: str, shape: tuple[int, ...], channel: int | None
                 ) -> tuple[tuple[str | int, ...], int | None]:
    """Per-axis selection (``"F"``, ``"Y"``, ``"X"`` or an index) and the frame axis position."""
    axes = _named_axes(axes.upper(), shape)
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
            raise ChannelError(
                f"{path}: {len(shape)}-D data {tuple(shape)} (axes {axes}) has {shape[c]} channels "
                "but no channel was chosen",
                f"pass --channel N (0..{shape[c] - 1}) to use one channel",
            )
        if not 0 <= channel < shape[c]:
            raise ChannelError(f"{path}: channel {channel} is out of range (axis {axes[c]} has "
                               f"{shape[c]} channels)", f"use --channel 0..{shape[c] - 1}")
    elif channel not in (None, 0):
        raise ChannelError(f"{path}: channel {channel} asked for, but the data {tuple(shape)} "
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


def guess_axes(shape: tuple[int, ...]) -> str:
    """Axes of an array without names: (T)(C)YX, or YXC / TYXC for a short last axis."""
    nd = len(shape)
    if nd >= 3 and shape[-1] <= 4 < min(shape[-3], shape[-2]):
        return {3: "YXC", 4: "TYXC"}.get(nd, "Q" * (nd - 3) + "YXC")
    return {2: "YX", 3: "TYX", 4: "TCYX", 5: "TCZYX"}.get(nd, "Q" * (nd - 2) + "YX")


def _named_axes(axes: str, shape: tuple[int, ...]) -> str:
    """``axes``, or a guess from the shape where they are missing or unknown (tifffile's Q / I)."""
    if (len(axes) != len(shape) or not axes.endswith(("YX", "YXS", "YXC"))
            or sum(a in "QI" for a in axes) > 1):
        return guess_axes(tuple(shape))
    return axes


def _check_dtype(path: Path, dtype: np.dtype) -> np.dtype:
    dtype = np.dtype(dtype).newbyteorder("=")  # big-endian data is byte-swapped on reading
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise FrameFormatError(f"{path}: pixel type {dtype} cannot be enhanced",
                               "convert the data to uint8, uint16 or float32 first")
    return dtype


def _stack(path: Path, kind: str, axes: str, shape: tuple[int, ...], dtype: np.dtype,
           channel: int | None, location: str | int, px: float | None, dt: float | None,
           frame_axis: dict[str, Any] | None, chunk_frames: int = 1) -> InputStack:
    sel, fax = _reduce_axes(path, axes, shape, channel)
    axes = _named_axes(axes.upper(), shape)
    y, x = shape[sel.index("Y")], shape[sel.index("X")]
    n = shape[fax] if fax is not None else 1
    if n == 0 or y == 0 or x == 0 or 0 in shape:
        raise FrameFormatError(
            f"{path} holds no frames (shape {tuple(shape)}, axes {axes})",
            "pass a recording with at least one frame (a run that received no frame stores none)")
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
        with _tifffile_reports() as reports, tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            axes, shape, dtype = series.axes, tuple(series.shape), series.dtype
            px, dt = _tif_pixel_size(tf), _tif_interval(tf)
            damage = _tif_damage(tf, series, path, reports)
    except (OSError, ValueError, IndexError, KeyError, tifffile.TiffFileError) as err:
        raise FrameFormatError(f"{path}: not a readable tif ({err})",
                               "check the file (re-export it as tif from Fiji or tifffile)") from err
    if damage:
        raise FrameFormatError(
            f"{path}: the tif is truncated or damaged ({damage})",
            "copy it again from the original (an interrupted copy, or a full disk while it was "
            "recorded, cuts a tif short)")
    return _stack(path, kind, axes, shape, dtype, channel, 0, px, dt, None)


#: what tifffile reports (as log warnings) when it meets a cut or corrupt file
_DAMAGE_REPORTS = ("invalid page offset", "corrupt", "truncat", "invalid value offset", "failed to read",
                   "failed to reshape", "invalid tag")


class _Reports(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _tifffile_reports() -> Iterator[list[str]]:
    """Collect tifffile's warnings (instead of printing them) while a tif is inspected."""
    handler, log = _Reports(), logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)


def _tif_damage(tf: Any, series: Any, path: Path, reports: list[str]) -> str | None:
    """Why the tif's series cannot be read whole (None when its data lies inside the file)."""
    for msg in reports:
        if any(k in msg.lower() for k in _DAMAGE_REPORTS):
            return msg.split("> ", 1)[-1]
    size = path.stat().st_size
    if series.dataoffset is not None:  # contiguous: one extent
        end = int(series.dataoffset) + int(series.nbytes)
    else:
        end = 0
        for page in series.pages:
            if page is None:
                return "pages are missing"
            for off, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                end = max(end, int(off) + int(count))
    if end > size:
        return f"its pixel data needs {end} bytes, the file has {size}"
    if tf.is_imagej:
        images = (tf.imagej_metadata or {}).get("images")
        planes = int(np.prod([n for a, n in zip(series.axes, series.shape, strict=False) if a not in "YXS"]))
        if images and int(images) > planes:
            return f"ImageJ says {images} images, the file holds {planes}"
    return None


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
    _check_not_partial(path, dict(node.attrs))
    if isinstance(node, zarr.Array):
        attrs = dict(node.attrs)
        names = getattr(node.metadata, "dimension_names", None) or attrs.get("_ARRAY_DIMENSIONS")
        if names and all(names):
            axes = _letters(list(names))
        elif node.ndim >= 2:
            axes = guess_axes(tuple(node.shape))
        else:
            raise FrameFormatError(
                f"{path}: {node.ndim}-D zarr array {node.shape}, not images",
                "store images with dimension_names (e.g. ('t', 'c', 'y', 'x')) or as T,Y,X / Y,X",
            )
        px = attrs.get("pixel_size_um", (attrs.get("live_pssr") or {}).get("pixel_size_um"))
        dt = attrs.get("frame_interval_s")
        return _stack(path, "zarr", axes, node.shape, node.dtype, channel, "", px, dt, None,
                      _frame_chunk(node, axes))
    return _open_ome_group(path, node, channel)


def _check_not_partial(path: Path, attrs: dict[str, Any]) -> None:
    """Refuse a zarr output of ``live-pssr enhance`` whose run stopped before its last frame."""
    mark = attrs.get("live_pssr")
    if isinstance(mark, dict) and mark.get("state") == "partial":
        raise FrameFormatError(
            f"{path} is an incomplete live-pssr output: the enhance run that wrote it stopped before "
            "the end (live_pssr state 'partial'), so some of its frames are missing",
            "run that `live-pssr enhance` again (with --overwrite to replace the incomplete output)")


def _frame_chunk(arr: Any, axes: str) -> int:
    for a, c in zip(axes, arr.chunks, strict=False):
        if a not in "YXCS":
            return int(c)
    return 1


def _ome(attrs: dict[str, Any]) -> dict[str, Any]:
    return attrs.get("ome", attrs)  # OME-Zarr 0.5 nests under "ome", 0.4 is top-level


def _open_ome_group(path: Path, group: Any, channel: int | None) -> InputStack:
    import zarr

    try:
        ome = _ome(dict(group.attrs))
        prefix = ""
        if "bioformats2raw.layout" in ome:  # a collection (e.g. a live-pssr run store): its first image
            series = _ome(dict(group["OME"].attrs)).get("series", ["0"]) if "OME" in group else ["0"]
            prefix = f"{series[0]}/"
            group = group[series[0]]
            ome = _ome(dict(group.attrs))
        if "multiscales" not in ome:
            arrays = sorted(k for k, _ in group.arrays())
            if "0" in arrays:  # a plain group holding array "0"
                arr = group["0"]
                axes = _named_axes("", tuple(arr.shape))
                return _stack(path, "zarr", axes, arr.shape, arr.dtype, channel, prefix + "0", None, None,
                              None, _frame_chunk(arr, axes))
            raise FrameFormatError(
                f"{path}: zarr group without an OME-Zarr image (no multiscales metadata)",
                f"pass the array inside it, e.g. {path / arrays[0]}" if arrays else
                "pass a zarr array or an OME-Zarr image",
            )
        ms = ome["multiscales"][0]
        ds = ms["datasets"][0]
        arr = group[ds["path"]]
        if not isinstance(arr, zarr.Array):
            raise KeyError(f"{ds['path']} is not an array")
        raw_axes = ms.get("axes") or ["t", "c", "z", "y", "x"][-arr.ndim:]
        axes_meta = [a if isinstance(a, dict) else {"name": a} for a in raw_axes]
        axes = _letters([a["name"] for a in axes_meta])
        scale = next((t["scale"] for t in ds.get("coordinateTransformations", [])
                      if t.get("type") == "scale"), [1.0] * arr.ndim)
        ix = axes.index("X") if "X" in axes else -1
        px = float(scale[ix]) * (_unit_um(axes_meta[ix].get("unit")) or 1.0) if ix >= 0 else None
        it = axes.find("T")
        dt = (float(scale[it]) * _UNIT_S.get(str(axes_meta[it].get("unit", "s")).lower(), 1.0)
              if it >= 0 else None)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise FrameFormatError(
            f"{path}: a zarr group whose OME-Zarr metadata does not lead to an image ({err})",
            "pass the image array itself (e.g. RUN/0/0 of a run store), or an OME-Zarr image folder",
        ) from err
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


__all__ = ["ChannelError", "InputNotFoundError", "InputStack", "check_frame_values", "guess_axes",
           "input_kind", "open_input", "path_kind"]
