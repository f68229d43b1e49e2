"""What live-pssr keeps of a Micro-Manager frame's metadata, from pycromanager or pymmcore-plus.

Both hooks reduce their metadata to a :class:`FrameInfo`: the frame's acquisition axes under
pycromanager's names (``time``, ``position``, ``grid``, ``z``, ``channel`` and any custom axis), a
wall-clock timestamp, and the metadata that matters for a run (exposure, pixel size, camera, ROI,
binning, image number, elapsed time). pymmcore-plus index keys are renamed
(``t`` -> ``time``, ``p`` -> ``position``, ``g`` -> ``grid``, ``c`` -> ``channel`` with the
preset's name when the event has one, ``z`` stays).

Parsing is tolerant: Micro-Manager tag values are often strings, some are missing in snap mode;
absent values are simply left out (the hook must never fail on metadata). Metadata that is not
a dict (``None``), or ``Axes`` that are not a dict, still give a FrameInfo: no axes, and a
``metadata_problem`` note saying what was wrong, so the frame is stored with what can be known.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TIME_AXIS = "time"
MDA_AXES = {"t": "time", "p": "position", "g": "grid", "z": "z", "c": "channel"}
#: order of the non-time axes in stream names
AXIS_ORDER = ("position", "grid", "z", "channel")

AxisValue = int | str


@dataclass(frozen=True)
class FrameInfo:
    """A frame's axes, timestamp and kept metadata.

    Attributes
    ----------
    axes : dict
        Axis name -> index (int) or name (str), e.g. ``{"time": 3, "channel": "GFP"}``.
    timestamp_s : float
        When the camera delivered it (epoch seconds; the arrival time when the metadata has none).
    metadata : dict
        ``exposure_ms, pixel_size_um, camera, roi [x, y, w, h], binning, image_number,
        elapsed_ms`` where known, plus ``axes``.
    """

    axes: dict[str, AxisValue]
    timestamp_s: float
    metadata: dict[str, Any] = field(default_factory=dict)


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    out = _num(value)
    return None if out is None else int(out)


def _timestamp(value: Any) -> float | None:
    """Epoch seconds from Micro-Manager's ``TimeReceivedByCore`` ('2024-01-31 12:00:00.123456')."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        return None


def _axis_value(value: Any) -> AxisValue:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return str(value)


def _camera_tags(tags: dict[str, Any], out: dict[str, Any]) -> None:
    """Camera, ROI, binning and image number from MMCore's per-image tags."""
    if "Camera" in tags:
        out["camera"] = str(tags["Camera"])
    x, y = _int(tags.get("ROI-X-start")), _int(tags.get("ROI-Y-start"))
    w, h = _int(tags.get("Width")), _int(tags.get("Height"))
    if None not in (x, y, w, h):
        out["roi"] = [x, y, w, h]
    if (b := _int(tags.get("Binning"))) is not None:
        out["binning"] = b
    if (n := _int(tags.get("ImageNumber"))) is not None:
        out["image_number"] = n


def from_pycromanager(metadata: Any, arrival_s: float | None = None) -> FrameInfo:
    """Reduce pycromanager's ``image_process_fn`` metadata dict (anything else: no axes, noted)."""
    out: dict[str, Any] = {}
    if not isinstance(metadata, dict):
        out["metadata_problem"] = f"metadata is {type(metadata).__name__}, not a dict"
        metadata = {}
    raw_axes = metadata.get("Axes")
    if raw_axes is not None and not isinstance(raw_axes, dict):
        out["metadata_problem"] = f"Axes is {type(raw_axes).__name__} {str(raw_axes)[:40]!r}, not a dict"
        raw_axes = None
    axes = {str(k): _axis_value(v) for k, v in (raw_axes or {}).items()}
    out["axes"] = axes
    _camera_tags(metadata, out)
    if (e := _num(metadata.get("Exposure"))) is not None:
        out["exposure_ms"] = e
    if (px := _num(metadata.get("PixelSize_um"))) is not None:
        out["pixel_size_um"] = px
    if (el := _num(metadata.get("ElapsedTime-ms"))) is not None:
        out["elapsed_ms"] = el
    ts = _timestamp(metadata.get("TimeReceivedByCore"))
    return FrameInfo(axes, ts if ts is not None else (arrival_s or time.time()), out)


def from_mda(event: Any, meta: dict[str, Any], arrival_s: float | None = None) -> FrameInfo:
    """Reduce pymmcore-plus's ``frameReady(img, event, meta)`` arguments."""
    axes: dict[str, AxisValue] = {}
    for key, value in dict(getattr(event, "index", {}) or {}).items():
        axes[MDA_AXES.get(key, key)] = _axis_value(value)
    channel = getattr(event, "channel", None)
    if "channel" in axes and channel is not None and getattr(channel, "config", None):
        axes["channel"] = str(channel.config)
    out: dict[str, Any] = {"axes": axes}
    cam = dict(meta.get("camera_metadata") or {})
    _camera_tags(cam, out)
    if "camera" not in out and meta.get("camera_device"):
        out["camera"] = str(meta["camera_device"])
    if (e := _num(meta.get("exposure_ms"))) is not None:
        out["exposure_ms"] = e
    if (px := _num(meta.get("pixel_size_um"))) is not None:
        out["pixel_size_um"] = px
    if (el := _num(meta.get("runner_time_ms"))) is not None:
        out["elapsed_ms"] = el
    pos = meta.get("position")
    if isinstance(pos, dict):
        out["position_um"] = {k: float(v) for k, v in pos.items() if _num(v) is not None}
    ts = _timestamp(cam.get("TimeReceivedByCore"))
    return FrameInfo(axes, ts if ts is not None else (arrival_s or time.time()), out)


def split_key(axes: dict[str, AxisValue], split_axes: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """The stream a frame belongs to: its values on ``split_axes`` (None where absent)."""
    return tuple((a, axes.get(a)) for a in split_axes)


def order_axes(names: set[str] | list[str]) -> tuple[str, ...]:
    """Non-time axes in stream-name order: position, grid, z, channel, then others by name."""
    names = {n for n in names if n != TIME_AXIS}
    known = [a for a in AXIS_ORDER if a in names]
    return tuple(known + sorted(names - set(known)))


def stream_name(key: tuple[tuple[str, Any], ...]) -> str:
    """A folder name for a stream, e.g. ``position-0_z-2_channel-GFP`` (``run`` for no axes)."""
    if not key:
        return "run"
    parts = []
    for axis, value in key:
        text = "none" if value is None else str(value)
        parts.append(f"{axis}-{text}")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts))
