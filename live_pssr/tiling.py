"""Tiling: run a network on frames larger than a tile, with no seams.

Data and stitching are separate (like CAREamics): :func:`plan_tiles` returns :class:`TileSpec`
records (where a tile is read, which part of its output is kept, where that part goes);
:func:`stitch` assembles tile outputs; :func:`tiled_apply` does both around a function ``fn``
that maps a float32 ``(..., h, w)`` array to ``(..., h*scale, w*scale)`` (the leading axes of the
output may differ from the input's, e.g. an engine maps ``(B, F, h, w)`` to ``(B, 1, hs, ws)``).
:class:`~live_pssr.engines.AutoTileEngine` (the one tiling wrapper of an engine, live and offline)
uses these so frames of any size go through an engine tile by tile (frames larger than a
compiled shape or ``--tile``, or a smaller tile after a CUDA out-of-memory error).

Design
------
Along each axis, tiles are at most ``tile`` pixels long, start at multiples of ``align`` and
overlap their neighbour by at least ``overlap`` pixels; the last tile ends at the frame's edge
(it starts at the first aligned position from which it still fits, so it is at most ``align - 1``
pixels shorter than ``tile``). Each overlap is cut at its middle:

- ``blend="crop"`` (default) keeps, of every tile, only the part between the cuts. An output pixel
  then lies at least ``overlap // 2`` input pixels from the inner edges of the tile it comes from.
  A convolutional network's output at a pixel depends only on the inputs within its receptive
  field radius ``r``, and (for a net that downsamples by ``align`` in total) on the phase of the
  pixel on the ``align``-grid, which aligned tile starts preserve. So with ``overlap >= 2 * r``
  every kept pixel is computed from exactly the inputs the untiled call uses: the stitched frame
  equals the untiled one up to float rounding (1e-6 in practice), at the image borders too.
- ``blend="cosine"`` weights every tile with a raised-cosine ramp across its overlaps and
  normalises by the summed weights: seams are smoothed, not removed. Use it only for networks
  whose receptive field exceeds any affordable overlap (global context); it is not exact.

:func:`receptive_field` measures ``r`` for a torch network (gradients of the outputs belonging to
one input pixel, for every phase of the alignment grid), :func:`net_alignment` its total
downsampling in input pixels (input size over its coarsest feature map, seen by forward hooks).

Measured receptive fields (input pixels):

- :class:`FastSRNet` (two stride-2 levels, any width or number of frames): ``align = 4``,
  ``r = 28``, so ``overlap=56`` or more gives tiled == untiled (max difference 5e-7 for a random
  net; the outermost part of the field weighs so little that overlap 48 already agrees within
  1e-6, overlap 40 within 2e-5).
- ``pssr-resunet`` (ResNet-34 U-Net at 4x the input size): ``align = 8``; without its
  self-attention (``gamma = 0``, as initialised) ``r = 56`` and tiling with ``overlap=112`` is
  bit-exact; a trained one attends globally (the measurement returns about ``max_size / 2``), so
  no overlap is exact: blend, or enhance whole frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

Slice2 = tuple[slice, slice]
Pair = int | tuple[int, int]

BLENDS = ("crop", "cosine")


@dataclass(frozen=True)
class TileSpec:
    """One tile of a frame.

    Attributes
    ----------
    in_slice : (slice, slice)
        The tile's region of the input frame (y, x), fed to the function.
    out_slice : (slice, slice)
        Where the kept part of the tile's output goes in the output frame (output pixels).
    crop : (slice, slice)
        The kept part within the tile's own output (output pixels, relative to the tile).
    """

    in_slice: Slice2
    out_slice: Slice2
    crop: Slice2

    @property
    def in_shape(self) -> tuple[int, int]:
        return tuple(s.stop - s.start for s in self.in_slice)  # type: ignore[return-value]


def _pair(v: Pair, what: str) -> tuple[int, int]:
    a, b = (v, v) if isinstance(v, int | np.integer) else tuple(v)
    if a < 0 or b < 0:
        raise ValueError(f"{what} must be >= 0, got {v}")
    return int(a), int(b)


def _axis_tiles(n: int, tile: int, overlap: int, align: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(start, stop, keep_start, keep_stop)`` in input pixels."""
    if n <= tile:
        return [(0, n, 0, n)]
    step = (tile - overlap) // align * align
    if step < align:
        raise ValueError(
            f"tile {tile} is too small for overlap {overlap} (tiles start on multiples of {align}): "
            f"use tile >= overlap + {align}"
        )
    starts = [0]
    while starts[-1] + tile < n:
        starts.append(starts[-1] + step)
    # the last tile: as far left as alignment allows while still ending at n (longest tile <= tile)
    starts[-1] = -(-(n - tile) // align) * align
    stops = [min(s + tile, n) for s in starts]
    cuts = [0] + [(starts[i + 1] + stops[i]) // 2 for i in range(len(starts) - 1)] + [n]
    return [(starts[i], stops[i], cuts[i], cuts[i + 1]) for i in range(len(starts))]


def plan_tiles(
    shape: tuple[int, int], tile: Pair, overlap: Pair, scale: int = 1, align: int = 4
) -> list[TileSpec]:
    """Split a ``shape`` (h, w) frame into overlapping tiles (row-major order).

    Parameters
    ----------
    shape : (int, int)
        Frame size (input pixels).
    tile : int or (int, int)
        Largest tile size (input pixels) along y and x.
    overlap : int or (int, int)
        Smallest overlap between neighbouring tiles; ``>= 2 * receptive_field(net)`` for
        tiled == untiled.
    scale : int
        Output pixels per input pixel (the model's upscale).
    align : int
        Tiles start at multiples of ``align`` (the network's total downsampling factor).

    Returns
    -------
    list[TileSpec]
        The tiles; their kept parts cover the output exactly once.
    """
    h, w = (int(v) for v in shape)
    (th, tw), (oy, ox) = _pair(tile, "tile"), _pair(overlap, "overlap")
    if min(th, tw) < 1 or align < 1 or scale < 1:
        raise ValueError(f"tile ({tile}), align ({align}) and scale ({scale}) must be >= 1")
    specs = []
    for y0, y1, ky0, ky1 in _axis_tiles(h, th, oy, align):
        for x0, x1, kx0, kx1 in _axis_tiles(w, tw, ox, align):
            specs.append(TileSpec(
                in_slice=(slice(y0, y1), slice(x0, x1)),
                out_slice=(slice(ky0 * scale, ky1 * scale), slice(kx0 * scale, kx1 * scale)),
                crop=(slice((ky0 - y0) * scale, (ky1 - y0) * scale),
                      slice((kx0 - x0) * scale, (kx1 - x0) * scale)),
            ))
    return specs


def _ramp_1d(length: int, crop: slice) -> np.ndarray:
    """Raised-cosine weights along one axis of a tile's output: 1 in the middle, ramps over overlaps.

    The overlap with a neighbour extends twice the distance from the tile's edge to the cut.
    """
    w = np.ones(length, np.float32)
    lead, trail = crop.start, length - crop.stop
    for n, side in ((2 * lead, slice(0, 2 * lead)), (2 * trail, slice(length - 2 * trail, length))):
        if n:
            ramp = np.sin(0.5 * np.pi * (np.arange(n, dtype=np.float32) + 0.5) / n) ** 2
            w[side] *= ramp if side.start == 0 else ramp[::-1]
    return w


def blend_window(spec: TileSpec, tile_out_shape: tuple[int, int]) -> np.ndarray:
    """The ``cosine`` blending weights (h, w) of a tile's whole output."""
    wy = _ramp_1d(tile_out_shape[0], spec.crop[0])
    wx = _ramp_1d(tile_out_shape[1], spec.crop[1])
    return wy[:, None] * wx[None, :]


def stitch(
    tiles: Iterable[tuple[TileSpec, np.ndarray]], out_hw: tuple[int, int], blend: str = "crop"
) -> np.ndarray:
    """Assemble tile outputs ``(spec, (..., th*s, tw*s))`` into one ``(..., *out_hw)`` array.

    Leading axes and dtype are those of the tile outputs; ``tiles`` may be a lazy iterable (one
    tile output is held at a time).
    """
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    out: np.ndarray | None = None
    weight: np.ndarray | None = None
    for spec, y in tiles:
        if out is None:
            out = np.zeros((*y.shape[:-2], *out_hw), y.dtype)
            weight = np.zeros(out_hw, np.float32) if blend == "cosine" else None
        if weight is None:
            out[(..., *spec.out_slice)] = y[(..., *spec.crop)]
            continue
        full = tuple(slice(o.start - c.start, o.start - c.start + n)
                     for o, c, n in zip(spec.out_slice, spec.crop, y.shape[-2:], strict=True))
        win = blend_window(spec, y.shape[-2:])
        out[(..., *full)] += y * win
        weight[full] += win
    if out is None:
        raise ValueError("no tiles to stitch")
    if weight is not None:
        out /= weight
    return out


def tiled_apply(
    fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile: Pair,
    overlap: Pair,
    scale: int,
    align: int = 4,
    blend: str = "crop",
) -> np.ndarray:
    """Apply ``fn`` (``(..., h, w) -> (..., h*scale, w*scale)``) to ``image`` tile by tile.

    A frame that fits in one tile is passed to ``fn`` whole. See the module docstring for when the
    result equals ``fn(image)``.
    """
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    h, w = image.shape[-2:]
    specs = plan_tiles((h, w), tile, overlap, scale, align)
    if len(specs) == 1:
        return fn(image)

    def outputs() -> Iterable[tuple[TileSpec, np.ndarray]]:
        for spec in specs:
            y = fn(np.ascontiguousarray(image[(..., *spec.in_slice)]))
            th, tw = spec.in_shape
            if y.shape[-2:] != (th * scale, tw * scale):
                raise ValueError(f"fn mapped a {(th, tw)} tile to {tuple(y.shape[-2:])}, expected "
                                 f"{(th * scale, tw * scale)} (scale={scale})")
            yield spec, y

    return stitch(outputs(), (h * scale, w * scale), blend)


def _net_frames(net: Any) -> int:
    """Input channels of a network: its ``in_frames`` attribute, else its first conv's inputs."""
    from torch import nn

    frames = getattr(net, "in_frames", None)
    if frames is None:
        conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
        frames = conv.in_channels if conv is not None else 1
    return int(frames)


class _EvalMode:
    """Run a network in eval mode without gradients on its weights, restoring its state after."""

    def __init__(self, net: Any) -> None:
        self.net = net

    def __enter__(self) -> Any:
        self.training = self.net.training
        self.net.eval()
        return self.net

    def __exit__(self, *exc: object) -> None:
        self.net.train(self.training)


_alignments: Any = None


def net_alignment(net: Any, size: int = 64) -> int:
    """A network's alignment in input pixels: how coarse its coarsest feature map is.

    Runs one ``size`` x ``size`` input through ``net`` (eval mode, no side effects) with hooks
    that record the height of every 4-D module output; the alignment is ``size`` over the
    smallest one, as a power of two. This sees functional pooling and nets that upsample their
    input first (``pssr-resunet``: 32x down at 4x the input size = 8). Cached per network object.
    """
    global _alignments
    import weakref

    import torch

    if _alignments is None:
        _alignments = weakref.WeakKeyDictionary()
    if net in _alignments:
        return _alignments[net]
    heights: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: heights.append(int(out.shape[-2]))
                                     if isinstance(out, torch.Tensor) and out.ndim == 4 else None)
             for m in net.modules()]
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        with _EvalMode(net), torch.no_grad():
            net(torch.zeros(1, _net_frames(net), size, size, device=device))
    finally:
        for h in hooks:
            h.remove()
    coarsest = max(1, min(heights, default=size))
    align = 1
    while align * coarsest < size:
        align *= 2
    _alignments[net] = align
    return align


def receptive_field(net: Any, in_frames: int | None = None, align: int | None = None, size: int = 96,
                    max_size: int = 192) -> int:
    """Measure the receptive-field radius ``r`` of ``net`` in input pixels.

    Back-propagates the output pixels that belong to one input pixel near the centre of a random
    ``size`` x ``size`` input (eval mode, two random inputs) and takes the farthest input pixel
    with a non-zero gradient. Every phase of the ``align`` grid is measured for ``align <= 4``;
    beyond, phases 0 and ``align - 1`` per axis, plus ``align - 1`` (a bound: the reach changes by
    less than ``align`` across phases). While the field touches the border, ``size`` doubles (one
    input, phase 0, plus ``align``) up to ``max_size``. Tiling with ``overlap >= 2 * r`` is exact.

    A result of about ``max_size / 2`` or more means the field spans the whole input
    (self-attention, global pooling, e.g. a trained ``pssr-resunet``): no overlap makes tiles
    exact there; blend them (``blend="cosine"``) or do not tile.
    """
    import torch

    in_frames = _net_frames(net) if in_frames is None else in_frames
    align = net_alignment(net) if align is None else align
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if align <= 4:
        phases, slack = [(py, px) for py in range(align) for px in range(align)] * 2, 0
    else:
        ends = (0, align - 1)
        phases, slack = [(py, px) for py in ends for px in ends] * 2, align - 1
    gen = torch.Generator().manual_seed(0)
    with _EvalMode(net), torch.enable_grad():
        while True:
            c = size // 2 // align * align
            x = torch.randn(len(phases), in_frames, size, size, generator=gen).to(device).requires_grad_(True)
            y = net(x)
            s = y.shape[-1] // size
            loss = sum(y[b, :, (c + py) * s:(c + py + 1) * s, (c + px) * s:(c + px + 1) * s].sum()
                       for b, (py, px) in enumerate(phases))
            (g,) = torch.autograd.grad(loss, x)
            del x, y, loss
            radius, touches = 0, False
            for b, (py, px) in enumerate(phases):
                ys, xs = torch.nonzero(g[b].abs().sum(0) > 0, as_tuple=True)
                if ys.numel() == 0:
                    continue
                lo_y, hi_y, lo_x, hi_x = (int(v) for v in (ys.min(), ys.max(), xs.min(), xs.max()))
                touches |= min(lo_y, lo_x) == 0 or max(hi_y, hi_x) == size - 1
                radius = max(radius, c + py - lo_y, hi_y - c - py, c + px - lo_x, hi_x - c - px)
            if not touches or size * 2 > max_size:
                return radius + slack
            size *= 2
            phases, slack = [(0, 0)], max(slack, align)
