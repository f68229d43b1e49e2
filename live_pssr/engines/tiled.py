"""Tiling in the engine layer: frames larger than the compiled shape, and GPU out-of-memory.

:class:`AutoTileEngine` wraps any engine. While frames fit (no ``tile`` set, or frames no larger
than it) they go through whole. Frames larger than ``tile`` are split with
:func:`live_pssr.tiling.tiled_apply` (overlapping tiles, seams cut in the overlaps' middles: exact
when the overlap covers the network's receptive field twice). The overlap defaults to
``2 * receptive_field(net)`` rounded up to the network's alignment (measured once per model and
cached, :func:`model_overlap`).

All tiles of a frame have one shape (chosen so that the tile grid, aligned to the network's
downsampling factor, ends exactly at the frame's edge), so static-shape engines (TensorRT,
OpenVINO, ONNX Runtime) are prepared once for it and never recompile for a short edge tile.

A CUDA out-of-memory error (or a runtime's "out of memory") in ``run`` frees the cache, halves
the tile (down to ``min_tile``), logs it and retries; below ``min_tile`` it re-raises as
:class:`EngineUnavailableError` with a hint.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel
from ..tiling import net_alignment, receptive_field, tiled_apply
from .cache import cache_dir, model_fingerprint, read_json, write_json

log = logging.getLogger("live_pssr.engines")

def model_overlap(model: LoadedModel, cap: int | None = None) -> tuple[int, int]:
    """``(overlap, align)`` for exact tiling of ``model`` (cached per model on disk)."""
    path = cache_dir("fields") / f"{model_fingerprint(model)}.json"
    data = read_json(path)
    if data is None or not {"radius", "align"} <= set(data):
        net = model.net
        align = net_alignment(net)
        radius = receptive_field(net, model.spec.in_frames, align)
        data = {"radius": int(radius), "align": int(align), "model": model.model_id}
        write_json(path, data)
    align = int(data["align"])
    overlap = -(-2 * int(data["radius"]) // align) * align
    if cap is not None:
        overlap = min(overlap, cap // align * align)
    return overlap, align


def tile_shape(shape: tuple[int, ...], tile: int | None, align: int) -> tuple[int, ...]:
    """The shape an engine runs for ``(B, F, H, W)`` frames tiled with at most ``tile`` pixels.

    Along an axis of ``n > tile`` pixels: the largest ``t <= tile`` with ``n - t`` a multiple of
    ``align`` (so the aligned tile grid ends exactly at the frame's edge with a full tile).
    """
    def axis(n: int) -> int:
        if tile is None or n <= tile:
            return n
        return n - -(-(n - tile) // align) * align

    b, f, h, w = shape
    return (b, f, axis(h), axis(w))


def is_out_of_memory(err: BaseException) -> bool:
    """True for CUDA/TensorRT/ORT out-of-memory errors."""
    import torch

    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    text = str(err).lower()
    return "out of memory" in text or "outofmemory" in text or "cudaerrormemoryallocation" in text


class AutoTileEngine:
    """Run ``inner`` whole while frames fit, tile by tile beyond ``tile`` or after running out of memory.

    Tiles all have one shape per frame size (important for static-shape engines): along an axis of
    ``n > tile`` pixels the tile length is the largest ``t <= tile`` with ``n - t`` a multiple of the
    network's alignment, so :func:`~live_pssr.tiling.plan_tiles` never produces a shorter last
    tile, and no tile is padded (tiled output equals untiled output).

    Parameters
    ----------
    inner : Engine
        The engine to wrap.
    model : LoadedModel
        Its model (upscale, frames, alignment, receptive field).
    tile : int, optional
        Largest tile side (input pixels); ``None``: whole frames until memory runs out.
    overlap : int, optional
        Tile overlap (default: exact, from the measured receptive field, at most ``tile // 2``).
    min_tile : int
        Smallest tile tried after out-of-memory errors.
    """

    def __init__(self, inner: Any, model: LoadedModel, tile: int | None = None, overlap: int | None = None,
                 min_tile: int = 64) -> None:
        self.inner, self.model = inner, model
        self.name, self.device, self.precision = inner.name, inner.device, inner.precision
        self.scale = int(model.spec.upscale)
        self.align = net_alignment(model.net)
        self.tile, self._overlap, self.min_tile = tile, overlap, min_tile
        self.input_shape: tuple[int, ...] | None = None
        self.prepare_s: float | None = None

    @property
    def tiling(self) -> bool:
        """Whether frames of the prepared shape are being tiled."""
        shape = self.input_shape
        return self.tile is not None and shape is not None and max(shape[2:]) > self.tile

    def tile_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape ``inner`` runs for frames of ``shape`` (the whole frame, or the tile)."""
        return tile_shape(shape, self.tile, self.align)

    def prepare(self, input_shape: tuple[int, int, int, int]) -> None:
        """Prepare ``inner`` for whole frames or for the tile shape."""
        if self.input_shape == tuple(input_shape):
            return
        self.input_shape = tuple(input_shape)
        self.inner.prepare(self.tile_shape(self.input_shape))
        self.prepare_s = getattr(self.inner, "prepare_s", None)

    def overlap(self) -> int:
        """Tile overlap in input pixels (exact for the model unless set explicitly)."""
        if self._overlap is None:
            self._overlap = model_overlap(self.model)[0]
        cap = (self.tile or 0) * 3 // 4 // self.align * self.align  # plan_tiles needs overlap < tile
        return min(self._overlap, cap) if cap else self._overlap

    def _run(self, batch: np.ndarray) -> np.ndarray:
        h, w = batch.shape[-2:]
        if self.tile is None or max(h, w) <= self.tile:
            return self.inner.run(batch)
        th, tw = self.tile_shape(batch.shape)[2:]
        return tiled_apply(self.inner.run, batch, (th, tw), self.overlap(), self.scale, self.align)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Map ``(B, F, H, W)`` float32 to ``(B, 1, H*s, W*s)``, tiling when needed."""
        while True:
            try:
                return self._run(batch)
            except Exception as err:
                if not is_out_of_memory(err):
                    raise
                self._shrink(tuple(batch.shape), err)

    def _shrink(self, shape: tuple[int, ...], err: BaseException) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        current = self.tile or max(shape[2:])
        new = max(self.min_tile, (current // 2) // self.align * self.align)
        if current <= self.min_tile or new >= current:
            raise EngineUnavailableError(
                f"engine {self.name} on {self.device} ran out of memory even with {current}-pixel tiles "
                f"({type(err).__name__})",
                "close other GPU programs, use a smaller model, or run on the CPU (--device cpu)",
            ) from err
        log.warning("engine %s: out of memory on %s input; retrying with %d-pixel tiles",
                    self.name, shape, new)
        self.tile = new
        self.inner.prepare(self.tile_shape(shape))


__all__ = ["AutoTileEngine", "is_out_of_memory", "model_overlap", "tile_shape"]
