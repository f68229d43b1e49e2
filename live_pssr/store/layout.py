"""OME metadata of a run store: NGFF v0.5 groups (built with yaozarrs) and the OME-XML (ome-types).

What is written where
---------------------
- ``zarr.json`` (root): the ``bioformats2raw.layout`` collection (:class:`yaozarrs.v05.Bf2Raw`)
  and the run's own ``live_pssr`` metadata; ``OME/zarr.json``: the series ``0``, ``1`` (``2``).
- ``0``, ``1``, ``2``: one image each (:class:`yaozarrs.v05.Image`, one resolution level ``0``):
  axes ``t`` (second), ``c``, ``y``, ``x`` (micrometer), a ``scale`` and, for the enhanced image,
  a ``translation``; an ``omero`` block with the channel's name (``raw``/``enhanced``/
  ``consistency``), colour and window.
- ``OME/METADATA.ome.xml``: one OME ``Image`` per series in the same order, built with
  ``ome-types``: ``Pixels`` with ``MetadataOnly`` (the pixels live in the zarr arrays, as
  bioformats2raw writes it), physical sizes in µm, ``TimeIncrement`` in s, one named ``Channel``.

Every model is validated when it is built: that happens at :meth:`RunStore.create` and at
:meth:`RunStore.close`, never per frame. The commits between rewrite only the OME-XML's ``SizeT``
(:func:`ome_xml` renders each image set once with ome-types and reuses the text; close adds
the ``Plane`` elements to it in ome-types' own format, byte for byte).

Geometry (pixel-centre convention)
----------------------------------
NGFF maps array index ``i`` to the world coordinate ``i * scale + translation``: the position of
the pixel's *centre*. Raw pixel ``i`` (size ``s``) has its centre at ``i * s`` and covers
``[(i - 1/2) s, (i + 1/2) s]``. The enhanced image is ``u`` times finer and its ``u x u`` pixels
tile the raw pixel they came from (the network is trained on block-averaged downsampling): in
coordinates with the origin at the raw image's corner, an enhanced pixel ``j`` has its centre at
``(j + 1/2) s/u`` and a raw pixel ``i`` at ``(i + 1/2) s``. With the origin moved to the centre of
raw pixel 0 (NGFF's convention for the raw image, translation 0), the enhanced image gets
``scale = s/u`` and ``translation = -(s/2)(1 - 1/u)`` on each spatial axis
(:func:`enhanced_translation`). The consistency map has the raw shape, scale and origin.

Time: the ``t`` scale is the run's real frame interval, the median difference of the cameras'
``frames/camera_time_ms`` (:func:`measured_interval_s`), written at close; until then (and when
the times do not advance: an offline run) the nominal ``frame_interval_s``, else 1 s (NGFF needs a
positive scale). The same value is the OME ``TimeIncrement``.

Per-plane times: at close each OME ``Pixels`` gets one ``Plane`` per frame with ``DeltaT`` (s since
the first frame's camera time) when the run has at most :data:`MAX_PLANES` frames: that keeps the
XML near 60 bytes x 3 images x 512 frames (~100 kB, well inside the reserve's metadata margin)
and its rendering well under a second. Longer runs get ``TimeIncrement`` only; every frame's time
is in ``frames/camera_time_ms`` whatever the length.

Pixel types: OME's ``Type`` is the zarr dtype's (``uint16`` ...). The consistency map is float16 in
zarr and OME has no half type: it says ``float`` (32-bit), the smallest OME type that holds every
float16 value exactly, so a reader that converts to the declared type loses nothing. 64-bit
integers (no OME type either) say ``double``.

Windows (``omero``): at create from the dtype range (the map: +-:data:`MAP_WINDOW_SIGMA` noise
sigmas); at close from a few stored frames (:func:`data_window`), ``min``/``max`` staying the dtype
range.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from ome_types import model as ome
from ome_types import to_xml
from yaozarrs import v05

OME_VERSION = "0.5"
RAW, ENHANCED, CONSISTENCY = "0", "1", "2"
#: the images of a run store, by path (``2`` only when the run had the consistency check on)
IMAGE_NAMES = {RAW: "raw", ENHANCED: "enhanced", CONSISTENCY: "consistency"}
SPACE_UNIT, TIME_UNIT = "micrometer", "second"
#: a run with more frames gets no per-plane DeltaT in its OME-XML (module docstring)
MAX_PLANES = 512
#: the consistency map's display window until close: +- this many noise sigmas
MAP_WINDOW_SIGMA = 5.0
#: display windows from the data: these percentiles (raw, enhanced); the map: +- this one of |map|
WINDOW_PERCENTILES = (0.5, 99.8)
MAP_PERCENTILE = 99.5
CREATOR = "live-pssr"

_PIXEL_TYPES = {"int8": "int8", "int16": "int16", "int32": "int32", "uint8": "uint8",
                "uint16": "uint16", "uint32": "uint32", "float16": "float", "float32": "float",
                "float64": "double", "int64": "double", "uint64": "double", "bool": "bit"}
#: rendered instead of the real SizeT in the cached OME-XML text (a valid PositiveInt)
_SIZE_T_TOKEN = 2**31 - 1


# ============================================================================ NGFF
def axes() -> list[v05.TimeAxis | v05.ChannelAxis | v05.SpaceAxis]:
    """The image axes t, c, y, x with their units."""
    return [v05.TimeAxis(name="t", unit=TIME_UNIT), v05.ChannelAxis(name="c"),
            v05.SpaceAxis(name="y", unit=SPACE_UNIT), v05.SpaceAxis(name="x", unit=SPACE_UNIT)]


def enhanced_translation(raw_pixel_size_um: float, upscale: int) -> float:
    """Spatial translation (µm) of the enhanced image: ``-(s/2)(1 - 1/u)`` (module docstring)."""
    return -(raw_pixel_size_um / 2.0) * (1.0 - 1.0 / upscale)


def dtype_window(dtype: np.dtype | str) -> dict[str, float]:
    """An omero window spanning the dtype's range (floats: +-their largest finite value)."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        lo, hi = 0.0, 1.0
    elif dt.kind in "iu":
        lo, hi = float(np.iinfo(dt).min), float(np.iinfo(dt).max)
    else:
        hi = float(np.finfo(dt).max)
        lo = -hi
    return {"min": lo, "max": hi, "start": lo, "end": hi}


def map_window() -> dict[str, float]:
    """The consistency map's window before close: float16's range, +-MAP_WINDOW_SIGMA shown."""
    full = dtype_window("<f2")
    return {**full, "start": -MAP_WINDOW_SIGMA, "end": MAP_WINDOW_SIGMA}


def data_window(samples: Sequence[np.ndarray], dtype: np.dtype | str,
                symmetric: bool = False) -> dict[str, float] | None:
    """A window from sampled frames (NaN ignored): percentiles, or +-a percentile of |x|.

    None when the samples hold no finite value or give an empty window.
    """
    values = [np.asarray(s, dtype=np.float64).ravel() for s in samples]
    data = np.concatenate(values) if values else np.empty(0)
    data = data[np.isfinite(data)]
    if not data.size:
        return None
    if symmetric:
        m = float(np.percentile(np.abs(data), MAP_PERCENTILE))
        lo, hi = -m, m
    else:
        lo, hi = (float(v) for v in np.percentile(data, WINDOW_PERCENTILES))
    if not hi > lo:
        return None
    full = dtype_window(dtype)
    return {"min": full["min"], "max": full["max"], "start": max(lo, full["min"]),
            "end": min(hi, full["max"])}


def image_model(name: str, pixel_size_um: float, time_scale_s: float, translation_um: float = 0.0,
                window: dict[str, float] | None = None, dtype: np.dtype | str = "uint16") -> v05.Image:
    """The validated NGFF image of one series (one level, path ``0``; raises if invalid).

    ``time_scale_s``: seconds per frame (0 or less: 1 s); ``translation_um``: the same on y and x
    (0: none written); ``window``: omero window (default :func:`dtype_window`).
    """
    scale = [time_scale_s if time_scale_s > 0 else 1.0, 1.0, pixel_size_um, pixel_size_um]
    transforms: list[v05.ScaleTransformation | v05.TranslationTransformation] = [
        v05.ScaleTransformation(scale=scale)]
    if translation_um:
        transforms.append(v05.TranslationTransformation(translation=[0.0, 0.0, translation_um,
                                                                     translation_um]))
    channel = v05.OmeroChannel(label=name, color="FFFFFF", family="linear", active=True,
                               inverted=False, coefficient=1.0,
                               window=v05.OmeroWindow(**(window or dtype_window(dtype))))
    return v05.Image(
        multiscales=[v05.Multiscale(name=name, axes=axes(), datasets=[
            v05.Dataset(path="0", coordinateTransformations=transforms)])],
        omero=v05.Omero(channels=[channel], rdefs=v05.OmeroRenderingDefs(model="greyscale")),
    )


def image_attrs(name: str, pixel_size_um: float, time_scale_s: float, translation_um: float = 0.0,
                window: dict[str, float] | None = None, dtype: np.dtype | str = "uint16") -> dict[str, Any]:
    """Group attributes of one image: ``{"ome": ...}`` of :func:`image_model` (validated)."""
    model = image_model(name, pixel_size_um, time_scale_s, translation_um, window, dtype)
    return {"ome": model.model_dump(mode="json", exclude_none=True, by_alias=True)}


def root_attrs(run: dict[str, Any]) -> dict[str, Any]:
    """The root group's attributes: the bioformats2raw collection and the run's metadata."""
    collection = v05.Bf2Raw(**{"bioformats2raw.layout": 3})
    return {"ome": collection.model_dump(mode="json", exclude_none=True, by_alias=True), "live_pssr": run}


def series_attrs(consistency: bool = False) -> dict[str, Any]:
    """``OME/zarr.json``'s attributes: the series in OME-XML order."""
    series = v05.Series(series=[RAW, ENHANCED, *([CONSISTENCY] if consistency else [])])
    return {"ome": series.model_dump(mode="json", exclude_none=True, by_alias=True)}


# ============================================================================ times
def measured_interval_s(camera_time_ms: np.ndarray) -> float | None:
    """The median frame interval (s) of camera times in ms; None if they never advance.

    Only finite, positive differences count (a repeated or missing time is not an interval).
    """
    t = np.asarray(camera_time_ms, dtype=np.float64)
    d = np.diff(t)
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) / 1e3 if d.size else None


def time_scale_s(camera_time_ms: np.ndarray | None, nominal_s: float) -> float:
    """The ``t`` scale: measured interval, else the nominal one, else 1 s."""
    measured = measured_interval_s(camera_time_ms) if camera_time_ms is not None else None
    if measured is not None:
        return measured
    return nominal_s if nominal_s and nominal_s > 0 else 1.0


def delta_t_s(camera_time_ms: np.ndarray) -> list[float] | None:
    """Per-frame DeltaT (s since the first finite camera time), NaN where unknown.

    None when the times never advance (nothing to say) or the run has more than :data:`MAX_PLANES`
    frames (module docstring).
    """
    t = np.asarray(camera_time_ms, dtype=np.float64)
    if t.size > MAX_PLANES or measured_interval_s(t) is None:
        return None
    t0 = t[np.isfinite(t)][0]
    return [round(float(v), 6) for v in (t - t0) / 1e3]


# ============================================================================ OME-XML
def ome_pixel_type(dtype: np.dtype | str) -> str:
    """OME's pixel ``Type`` for a numpy dtype (float16 -> float: module docstring)."""
    name = np.dtype(dtype).name
    if name not in _PIXEL_TYPES:
        raise ValueError(f"no OME pixel type for dtype {name}")
    return _PIXEL_TYPES[name]


def ome_model(images: list[dict[str, Any]]) -> ome.OME:
    """The OME document of a run store's images (validated by ome-types' models).

    ``images``: one dict per series: ``name, size_t, size_y, size_x, pixel_size_um, dtype`` and
    optionally ``time_increment_s`` (None: not written) and ``delta_t_s`` (per-frame seconds, NaN:
    no plane; None: no planes). ``size_t`` 0 is written as 1: OME has no empty image (the arrays
    say how many frames exist).
    """
    out = []
    for i, im in enumerate(images):
        incr = im.get("time_increment_s")
        times = im.get("delta_t_s")
        planes = [ome.Plane(the_z=0, the_c=0, the_t=t, delta_t=dt, delta_t_unit=ome.UnitsTime.SECOND)
                  for t, dt in enumerate(times or []) if np.isfinite(dt)]
        pixels = ome.Pixels(
            id=f"Pixels:{i}", dimension_order="XYCZT", type=ome_pixel_type(im["dtype"]),
            size_x=im["size_x"], size_y=im["size_y"], size_c=1, size_z=1, size_t=max(1, im["size_t"]),
            physical_size_x=im["pixel_size_um"], physical_size_x_unit=ome.UnitsLength.MICROMETER,
            physical_size_y=im["pixel_size_um"], physical_size_y_unit=ome.UnitsLength.MICROMETER,
            **({"time_increment": incr, "time_increment_unit": ome.UnitsTime.SECOND}
               if incr is not None and incr > 0 else {}),
            channels=[ome.Channel(id=f"Channel:{i}:0", name=im["name"], samples_per_pixel=1)],
            metadata_only=ome.MetadataOnly(), planes=planes,
        )
        out.append(ome.Image(id=f"Image:{i}", name=im["name"], pixels=pixels))
    return ome.OME(images=out, creator=CREATOR)


def _render(images: list[dict[str, Any]]) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + to_xml(ome_model(images)) + "\n"


@functools.lru_cache(maxsize=8)
def _template(key: str) -> str:
    images = json.loads(key)
    return _render([{**im, "size_t": _SIZE_T_TOKEN} for im in images])


def ome_xml(images: list[dict[str, Any]]) -> str:
    """The OME-XML text (UTF-8 declared) of :func:`ome_model`.

    The text without planes is rendered by ome-types once per image set and only the ``SizeT``
    values are put in on later calls (the commits' case): the same text ome-types writes, without
    its milliseconds of work on every commit. ``delta_t_s`` planes (close) are put in after each
    ``MetadataOnly`` in ome-types' own format (:func:`_planes_xml`; the same text byte for byte,
    tested), since ome-types takes ~0.4 ms per plane: a tenth of a second at the run's close.
    """
    key = json.dumps([{k: v for k, v in im.items() if k not in ("size_t", "delta_t_s")} for im in images],
                     sort_keys=True)
    sizes = iter(max(1, int(im["size_t"])) for im in images)
    text, count = re.subn(f'SizeT="{_SIZE_T_TOKEN}"', lambda _: f'SizeT="{next(sizes)}"', _template(key))
    if count != len(images):  # never: the token is a value only SizeT can have
        raise RuntimeError(f"OME-XML template has {count} SizeT fields for {len(images)} images")
    if all(im.get("delta_t_s") is None for im in images):
        return text
    parts = text.split(_METADATA_ONLY)
    if len(parts) != len(images) + 1:  # never: one MetadataOnly per Pixels
        raise RuntimeError(f"OME-XML template has {len(parts) - 1} MetadataOnly for {len(images)} images")
    out = [parts[0]]
    for im, rest in zip(images, parts[1:], strict=True):
        out += [_METADATA_ONLY, _planes_xml(im.get("delta_t_s")), rest]
    return "".join(out)


_METADATA_ONLY = "<MetadataOnly/>\n"


def _planes_xml(times: Sequence[float] | None) -> str:
    """``Plane`` elements as ome-types writes them in a ``Pixels`` (finite ``DeltaT`` only)."""
    from xsdata.formats.converter import converter

    return "".join(
        f'      <Plane TheZ="0" TheT="{t}" TheC="0" DeltaT="{converter.serialize(float(dt))}" '
        'DeltaTUnit="s"/>\n'
        for t, dt in enumerate(times if times is not None else []) if np.isfinite(dt))
