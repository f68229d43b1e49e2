"""Known failure modes of a model, found on held-out data and drawn for its card.

A model card's averages hide where the model is wrong. This module looks, per image class of the
held-out sets, for the tile where the model does worst *against bicubic* (the baseline a user
would otherwise look at): both images are normalised against the truth over the whole image
(:func:`live_pssr.metrics.normalize_pair`, as the card's ``_norm`` scores), each tile's mean
squared error is taken, and the tile with the largest ``MSE(model) / MSE(bicubic)`` among tiles
with signal (the truth's range in the tile at least ``min_signal`` of the largest tile range of
that image) is that class's failure. Images smaller than one tile are left out.
Its PSNR gap (model minus bicubic on the tile, dB) says how bad it is: negative means the model
loses to plain interpolation there (it erased or invented structure).

:func:`worst_tiles` is the search (pure numpy); :func:`failure_figure` evaluates a model on data
sets, draws one row per class (raw input, bicubic, model, truth, ``|model - truth|``) into a
PNG and returns the rows for the card's "Known failure modes" section
(:func:`live_pssr.train.card.render_card`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics

#: tile side in output pixels (32 camera pixels of a 4x model; a 1x model's tiles are as large)
TILE_PX = 128


@dataclass
class Failure:
    """The worst tile of one image class: where, how bad, and the crops to draw."""

    data: str
    image_class: str
    image: str
    #: top-left corner of the tile in output pixels (row, column) and its side
    y: int
    x: int
    size: int
    psnr_model: float
    psnr_bicubic: float
    crops: dict[str, np.ndarray]
    #: the baseline's name ("bicubic"; "raw input" for 1x models, whose baseline is the frame)
    baseline: str = "bicubic"

    @property
    def gap_db(self) -> float:
        """Model minus bicubic PSNR on the tile (negative: the model loses to interpolation)."""
        return self.psnr_model - self.psnr_bicubic

    def row(self) -> dict[str, Any]:
        """The card's table row."""
        return {"data": self.data, "class": self.image_class, "image": self.image,
                "tile (y, x, side)": f"{self.y}, {self.x}, {self.size}",
                "PSNR model": round(float(self.psnr_model), 2),
                f"PSNR {self.baseline}": round(float(self.psnr_bicubic), 2),
                f"model - {self.baseline} (dB)": round(float(self.gap_db), 2)}


def worst_tiles(pred: np.ndarray, base: np.ndarray, truth: np.ndarray, tile: int,
                min_signal: float = 0.25) -> list[tuple[float, int, int, float, float]]:
    """Tiles ranked worst first: ``(mse ratio model/bicubic, y, x, psnr model, psnr bicubic)``.

    Normalised PSNR per tile (data range 1 in the truth's percentile units). Tiles whose truth
    spans less than ``min_signal`` of the largest tile span are background and left out.
    """
    p, t = metrics.normalize_pair(pred, truth)
    b, _ = metrics.normalize_pair(base, truth)
    return _rank_tiles(p, b, t, tile, min_signal)


def _rank_tiles(p: np.ndarray, b: np.ndarray, t: np.ndarray, tile: int,
                min_signal: float = 0.25) -> list[tuple[float, int, int, float, float]]:
    """:func:`worst_tiles` on prediction, baseline and truth already normalised to the truth."""
    ny, nx = t.shape[0] // tile, t.shape[1] // tile
    if ny == 0 or nx == 0:
        return []
    tt = t[: ny * tile, : nx * tile].reshape(ny, tile, nx, tile)
    span = tt.max(axis=(1, 3)) - tt.min(axis=(1, 3))
    mse_p = metrics.tile_means((p - t) ** 2, tile)
    mse_b = metrics.tile_means((b - t) ** 2, tile)
    keep = span >= min_signal * span.max()
    out = []
    for i, j in zip(*np.nonzero(keep), strict=True):
        mp, mb = max(float(mse_p[i, j]), 1e-12), max(float(mse_b[i, j]), 1e-12)
        out.append((mp / mb, int(i) * tile, int(j) * tile, -10 * np.log10(mp), -10 * np.log10(mb)))
    return sorted(out, key=lambda r: -r[0])


def find_failures(model: Any, data_sets: Sequence[Any], tile_px: int = TILE_PX,
                  seed: int = 0) -> list[Failure]:
    """The worst ``tile_px``-square output tile of each image class of ``data_sets`` (names or
    :class:`EvalSet`); ``tile_px`` is rounded down to a multiple of the model's upscale."""
    from ..evaluate import evaluate, upsample_bicubic
    from ..modelio import load_model

    loaded = load_model(model) if isinstance(model, str | Path) else model
    up = loaded.spec.upscale
    size = max(up, tile_px - tile_px % up)
    best: dict[tuple[str, str], Failure] = {}
    for data in data_sets:
        seen: list[tuple[Any, np.ndarray]] = []
        res = evaluate(loaded, data, seed=seed, progress=False, consistency=False,
                       on_item=lambda item, out, seen=seen: seen.append((item, out)))
        for item, out in seen:
            raw = item.inputs[-1]
            pn, tn = metrics.normalize_pair(out, item.target)
            bn, _ = metrics.normalize_pair(upsample_bicubic(raw, up), item.target)
            ranked = _rank_tiles(pn, bn, tn, size)
            if not ranked:
                continue
            ratio, y, x, pm, pb = ranked[0]
            key = (res["data"], item.image_class or "all")
            if key in best and best[key].psnr_bicubic - best[key].psnr_model >= pb - pm:
                continue
            rs = slice(y // up, (y + size) // up), slice(x // up, (x + size) // up)
            win = slice(y, y + size), slice(x, x + size)
            crops = {"raw input": np.kron(raw[rs], np.ones((up, up), np.float32))}
            if up > 1:
                crops["bicubic"] = bn[win]
            crops |= {"model": pn[win], "truth": tn[win], "|model - truth|": np.abs(pn[win] - tn[win])}
            best[key] = Failure(res["data"], key[1], item.name, y, x, size, pm, pb, crops,
                                res["baseline"])
    return sorted(best.values(), key=lambda f: (f.data, f.image_class))


def draw(failures: Sequence[Failure], out_png: str | Path, title: str = "") -> Path:
    """One row per failure: raw input, bicubic, model, truth (one grey scale), error (its own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not failures:
        raise ValueError("no failures to draw")
    cols = list(failures[0].crops)
    fig, axes = plt.subplots(len(failures), len(cols), figsize=(2.0 * len(cols), 2.2 * len(failures)),
                             squeeze=False)
    for r, f in enumerate(failures):
        lo, hi = np.percentile(f.crops["truth"], (0.5, 99.5))
        for c, name in enumerate(cols):
            ax = axes[r][c]
            img = f.crops[name]
            if name == "raw input":
                ax.imshow(img, cmap="gray", vmin=float(np.percentile(img, 0.5)),
                          vmax=float(np.percentile(img, 99.5)), interpolation="nearest")
            elif name.startswith("|"):
                ax.imshow(img, cmap="magma", vmin=0, vmax=max(float(hi - lo), 1e-6))
            else:
                ax.imshow(img, cmap="gray", vmin=float(lo), vmax=float(hi), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
        axes[r][0].set_ylabel(f"{f.image_class}\n{f.gap_db:+.1f} dB vs {f.baseline}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=72)
    plt.close(fig)
    return out


def failure_figure(model: Any, data_sets: Sequence[Any], out_png: str | Path,
                   tile_px: int = TILE_PX, seed: int = 0) -> list[Failure]:
    """Find each class's worst tile on ``data_sets`` and draw them into ``out_png`` (not written,
    and ``[]`` returned, when no image is as large as one tile)."""
    failures = find_failures(model, data_sets, tile_px, seed)
    if failures:  # none when no image is as large as one tile: no picture
        name = Path(str(model)).stem if isinstance(model, str | Path) else getattr(model.spec, "name", "")
        draw(failures, out_png, f"{name}: worst tile per held-out class")
    return failures


__all__ = ["Failure", "TILE_PX", "draw", "failure_figure", "find_failures", "worst_tiles"]
