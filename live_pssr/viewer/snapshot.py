"""Snapshots: both panels as one PNG, at full resolution, with each panel's contrast and LUT.

The raw frame is enlarged by pixel repetition to the enhanced size, so the two halves show the
same field at the same scale (raw left, enhanced right, a 16-pixel dark gap between them). With
the consistency overlay on, its coloured map (raw resolution, RGBA) is enlarged the same way and
alpha-blended over the enhanced half, as on screen.
Files go next to the run store and never overwrite: ``<store stem>_snap_<raw>-<enhanced>.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .contrast import render_rgb

GAP = 16


def side_by_side(raw: np.ndarray | None, raw_levels: tuple[float, float], raw_lut: str,
                 enhanced: np.ndarray | None, enh_levels: tuple[float, float], enh_lut: str,
                 upscale: int, overlay: np.ndarray | None = None) -> np.ndarray:
    """``(H, 2W + GAP, 3) uint8``: raw (enlarged ``upscale`` times) beside enhanced.

    ``overlay``: ``(h, w, 4) uint8`` RGBA at raw resolution, blended over the enhanced half.
    """
    if raw is None and enhanced is None:
        raise ValueError("nothing to snapshot: no frame shown yet")
    if enhanced is None:
        enhanced = np.zeros((raw.shape[0] * upscale, raw.shape[1] * upscale), raw.dtype)
    h, w = enhanced.shape[:2]
    left = np.zeros((h, w, 3), np.uint8)
    if raw is not None:
        big = np.repeat(np.repeat(render_rgb(raw, raw_levels, raw_lut), upscale, 0), upscale, 1)
        left[: min(h, big.shape[0]), : min(w, big.shape[1])] = big[:h, :w]
    gap = np.full((h, GAP, 3), 24, np.uint8)
    right = render_rgb(enhanced, enh_levels, enh_lut)
    if overlay is not None:
        right = blend_over(right, overlay, upscale)
    return np.concatenate([left, gap, right], axis=1)


def blend_over(rgb: np.ndarray, rgba: np.ndarray, upscale: int) -> np.ndarray:
    """``rgba`` (enlarged ``upscale`` times by pixel repetition) alpha-blended over ``rgb``."""
    h, w = rgb.shape[:2]
    big = np.repeat(np.repeat(rgba, upscale, 0), upscale, 1)[:h, :w]
    out = rgb.astype(np.float32)
    hh, ww = big.shape[:2]
    alpha = big[..., 3:4].astype(np.float32) / 255.0
    out[:hh, :ww] = out[:hh, :ww] * (1.0 - alpha) + big[..., :3].astype(np.float32) * alpha
    return np.rint(out).astype(np.uint8)


def snapshot_path(store_path: str | Path | None, raw_index: int | None, enh_index: int | None,
                  folder: Path | None = None) -> Path:
    """A new file name next to the store (or in ``folder``/cwd) that does not exist yet."""
    store = Path(store_path) if store_path else Path("live-pssr")
    stem = store.name.split(".")[0] or "live-pssr"
    parent = folder or (store.parent if store_path else Path.cwd())
    tag = f"{'-' if raw_index is None else raw_index}-{'-' if enh_index is None else enh_index}"
    path = parent / f"{stem}_snap_{tag}.png"
    n = 1
    while path.exists():
        n += 1
        path = parent / f"{stem}_snap_{tag}_{n}.png"
    return path


def save_png(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an ``(H, W, 3) uint8`` array as PNG (through Qt, which the viewer has loaded)."""
    from qtpy import QtGui

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = data.shape[:2]
    img = QtGui.QImage(data.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888)
    if not img.save(str(path), "PNG"):
        raise OSError(f"could not write {path}")
    return path
