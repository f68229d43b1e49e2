"""Display contrast without Qt: auto levels, histograms, lookup tables, rendering to RGB.

The viewer computes everything it needs per frame from a strided sample of the image (at most
``MAX_SAMPLES`` pixels), so a 2048² enhanced frame costs as little as a 512² raw one:

- :func:`auto_levels`: the display range from percentiles (as the models normalise their input);
- :func:`histogram`: counts for the manual-contrast histogram;
- :func:`lut_table`: the colour tables offered in the viewer (grey, green, magma);
- :func:`to_rgba`: levels + table -> ``uint8`` RGBA in one table look-up per pixel (8- and 16-bit
  frames index a 256/65536-entry table with the levels folded in). The panels hand Qt this RGBA
  image: Qt draws it several times faster than the 8-bit indexed image pyqtgraph would make;
- :func:`render_rgb`: the same, RGB, for snapshots (exactly what the panel shows);
- :func:`display_stride`: how many image pixels fall on one screen pixel, so the viewer hands Qt
  a strided view instead of an image larger than the screen (same look as Qt's nearest-neighbour
  scaling, a fraction of the cost);
- :func:`signed_rgba`: a signed map (the consistency check's, in noise sigmas) in the diverging
  table :data:`DIVERGING` with symmetric levels ``-limit..+limit`` centred at 0 (blue = the
  enhanced frame lacks light the raw frame holds, red = it adds light the raw frame does not
  show); its opacity grows with ``(|value| / limit)**2`` (0 at 0, full at ``limit``), so noise
  (``|value|`` about 1 sigma) barely tints the image underneath while what nears the flag level
  stands out; NaN (frame not checked) is transparent.
  :func:`signed_limit` picks ``limit``: the flag threshold when known, else a robust maximum.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

import numpy as np

#: lookup tables offered per panel, in menu order
LUTS = ("grey", "green", "magma")
#: pixels sampled for auto levels and histograms
MAX_SAMPLES = 1 << 15
#: pyqtgraph's (colorcet) diverging map for signed maps: blue - white - red, perceptually uniform
DIVERGING = "CET-D1"
#: opacity of the signed overlay at and beyond its limit
OVERLAY_OPACITY = 0.85
#: the smallest symmetric limit of a signed map without a known threshold (noise sigmas)
MIN_SIGNED_LIMIT = 3.0


def sample(image: np.ndarray, max_samples: int = MAX_SAMPLES) -> np.ndarray:
    """A strided view of ``image`` with at most about ``max_samples`` pixels."""
    step = max(1, math.ceil(math.sqrt(image.size / max_samples)))
    return image[::step, ::step]


def auto_levels(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> tuple[float, float]:
    """Display range ``(lo, hi)`` from the ``low``/``high`` percentiles of a sample of ``image``.

    Always ``hi > lo`` (a flat image gets a range of one intensity unit).
    """
    s = sample(image)
    if s.dtype.kind == "f":
        s = s[np.isfinite(s)]
    if s.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(s, [low, high]))
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def histogram(image: np.ndarray, bins: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres and counts of a sample of ``image`` (for the manual-contrast histogram)."""
    s = sample(image).ravel()
    if s.dtype.kind == "f":
        s = s[np.isfinite(s)]
    if s.size == 0:
        return np.zeros(1), np.zeros(1)
    lo, hi = float(s.min()), float(s.max())
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(s, bins=bins, range=(lo, hi))
    return (edges[:-1] + edges[1:]) / 2, counts.astype(np.float64)


@cache
def lut_table(name: str) -> np.ndarray:
    """The ``(256, 3) uint8`` colour table called ``name`` (one of :data:`LUTS`)."""
    ramp = np.arange(256, dtype=np.uint8)
    zeros = np.zeros(256, dtype=np.uint8)
    if name == "grey":
        table = np.stack([ramp, ramp, ramp], axis=1)
    elif name == "green":
        table = np.stack([zeros, ramp, zeros], axis=1)
    elif name == "magma":
        import pyqtgraph as pg  # the colour map data ships with pyqtgraph

        table = pg.colormap.get("magma").getLookupTable(nPts=256, alpha=False).astype(np.uint8)
    else:
        raise ValueError(f"unknown lookup table {name!r}; choose one of {', '.join(LUTS)}")
    table.setflags(write=False)
    return table


def _indices(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Intensities -> table indices 0..255 (``lo`` and below -> 0, ``hi`` and above -> 255)."""
    scaled = (values.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / max(hi - lo, 1e-12))
    return np.nan_to_num(np.clip(scaled, 0, 255), nan=0.0).astype(np.uint8)


@lru_cache(maxsize=16)
def _rgba_table(lo: float, hi: float, lut: str, entries: int) -> np.ndarray:
    """``entries`` RGBA pixels (as little-endian uint32) for the integer intensities 0..entries-1."""
    rgb = lut_table(lut)[_indices(np.arange(entries), lo, hi)].astype("<u4")
    table = rgb[:, 0] | (rgb[:, 1] << 8) | (rgb[:, 2] << 16) | np.uint32(0xFF000000)
    table.setflags(write=False)
    return table


def to_rgba(image: np.ndarray, levels: tuple[float, float], lut: str = "grey") -> np.ndarray:
    """Map ``image`` through ``levels`` and the table ``lut`` to ``(H, W, 4) uint8`` RGBA."""
    lo, hi = float(levels[0]), float(levels[1])
    if image.dtype in (np.uint8, np.uint16):
        table = _rgba_table(lo, hi, lut, 256 if image.dtype == np.uint8 else 65536)
        packed = np.take(table, image)
    else:
        packed = _rgba_table(0.0, 255.0, lut, 256)[_indices(image, lo, hi)]
    return packed.view(np.uint8).reshape(*image.shape, 4)


def render_rgb(image: np.ndarray, levels: tuple[float, float], lut: str = "grey") -> np.ndarray:
    """Map ``image`` through ``levels`` and the table ``lut`` to ``(H, W, 3) uint8`` RGB."""
    return to_rgba(image, levels, lut)[..., :3]


def display_stride(image_px_per_screen_px: float, max_stride: int = 8) -> int:
    """The stride that drops pixels Qt would not show anyway (1 when zoomed in)."""
    if not math.isfinite(image_px_per_screen_px) or image_px_per_screen_px < 2:
        return 1
    return int(min(max_stride, math.floor(image_px_per_screen_px)))


#: steps of the signed table: odd, so that 0 has its own entry and +v / -v mirror exactly
SIGNED_STEPS = 255


@cache
def _signed_table(opacity: float) -> np.ndarray:
    """RGBA pixels (little-endian uint32): :data:`SIGNED_STEPS` steps of :data:`DIVERGING` (the
    middle one is 0), alpha ``opacity * (|value| / limit)**2``; one more entry, transparent, for NaN."""
    import pyqtgraph as pg  # the colour map data ships with pyqtgraph

    n, mid = SIGNED_STEPS, SIGNED_STEPS // 2
    rgb = pg.colormap.get(DIVERGING).getLookupTable(nPts=n, alpha=False).astype("<u4")
    alpha = np.round(255.0 * opacity * (np.abs(np.arange(n) - mid) / mid) ** 2).astype("<u4")
    table = np.zeros(n + 1, "<u4")
    table[:n] = rgb[:, 0] | (rgb[:, 1] << 8) | (rgb[:, 2] << 16) | (alpha << 24)
    table.setflags(write=False)
    return table


def signed_rgba(signed: np.ndarray, limit: float, opacity: float = OVERLAY_OPACITY) -> np.ndarray:
    """``(H, W, 4) uint8``: ``signed`` in :data:`DIVERGING`, levels ``-limit..+limit`` (0 = centre).

    Opacity grows as ``(|value| / limit)**2`` up to ``opacity`` at ``limit``; NaN is transparent.
    """
    if not (math.isfinite(limit) and limit > 0):
        raise ValueError(f"the limit of a signed map must be a finite number > 0, got {limit!r}")
    mid = SIGNED_STEPS // 2
    v = np.asarray(signed, dtype=np.float32)
    steps = np.abs(v) * np.float32(mid / limit)  # |value| in table steps, rounded half up: symmetric
    np.minimum(steps, np.float32(mid), out=steps)
    nan = np.isnan(steps)
    steps[nan] = 0.0
    k = np.floor(steps + np.float32(0.5)).astype(np.int16)
    i = np.where(v < 0, mid - k, mid + k)
    i[nan] = SIGNED_STEPS
    return np.take(_signed_table(float(opacity)), i).view(np.uint8).reshape(*v.shape, 4)


def signed_limit(signed: np.ndarray, threshold: float | None = None) -> float:
    """The symmetric display limit of a signed map: the flag ``threshold`` when known (full colour
    = flagged), else the 99.8th percentile of ``|signed|`` (at least :data:`MIN_SIGNED_LIMIT`)."""
    if threshold is not None and math.isfinite(threshold) and threshold > 0:
        return float(threshold)
    s = np.abs(sample(np.asarray(signed)))
    s = s[np.isfinite(s)]
    top = float(np.percentile(s, 99.8)) if s.size else 0.0
    return max(MIN_SIGNED_LIMIT, top)
