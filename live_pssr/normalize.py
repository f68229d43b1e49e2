"""Intensity normalisation shared by training, live enhancement and offline enhancement.

Networks see ``(x - lo) / (hi - lo)`` where ``lo``/``hi`` are low/high percentiles of the *input*
frame (CSBDeep-style percentile normalisation); outputs are mapped back with the same ``lo``/``hi``
so enhanced images are in the raw data's intensity units. Percentiles are computed on a strided
subsample (every ``stride``-th pixel in each axis), which is within rounding of the full estimate
on camera frames and ~``stride**2`` times cheaper: it runs per frame on the live path.
"""

from __future__ import annotations

import numpy as np

DEFAULT_LOW = 1.0
DEFAULT_HIGH = 99.8


def percentile_range(
    image: np.ndarray, low: float = DEFAULT_LOW, high: float = DEFAULT_HIGH, stride: int = 2
) -> tuple[float, float]:
    """Return ``(lo, hi)`` percentiles of ``image`` with ``hi > lo`` guaranteed."""
    sample = image[::stride, ::stride] if image.ndim == 2 and min(image.shape) >= 64 else image
    lo, hi = np.percentile(sample, (low, high))
    lo, hi = float(lo), float(hi)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("image contains NaN or Inf values; clean or mask them first")
    if hi - lo < 1e-6:
        hi = lo + 1.0
    return lo, hi


def normalize(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` to ``[0, 1]`` as float32 (values outside are kept, not clipped)."""
    out = image.astype(np.float32)
    out -= lo
    out *= 1.0 / (hi - lo)
    return out


def denormalize(image: np.ndarray, lo: float, hi: float, dtype: np.dtype | None = None) -> np.ndarray:
    """Inverse of :func:`normalize`; with an integer ``dtype``, round and clip to its range."""
    out = np.asarray(image, dtype=np.float32) * np.float32(hi - lo)
    out += np.float32(lo)
    if dtype is None or np.dtype(dtype).kind == "f":
        return out if dtype is None else out.astype(dtype)
    info = np.iinfo(dtype)
    np.clip(out, info.min, info.max, out=out)
    return np.rint(out, out=out).astype(dtype)
