"""Tiling: plans cover every output pixel once; tiled == untiled for the fast net; the engine wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live_pssr.nets import FastSRNet
from live_pssr.tiling import (
    blend_window,
    net_alignment,
    plan_tiles,
    receptive_field,
    stitch,
    tiled_apply,
)


def _net_fn(net: torch.nn.Module):
    @torch.inference_mode()
    def fn(a: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(a)).numpy()

    return fn


@pytest.fixture(scope="module")
def fast_net() -> torch.nn.Module:
    torch.manual_seed(1)
    return FastSRNet(width=4).eval()


@pytest.mark.parametrize("shape", [(130, 201), (64, 64), (65, 63), (300, 17), (5, 7)])
@pytest.mark.parametrize("tile,overlap,align", [(64, 24, 4), (48, 16, 8), (32, 0, 1), (100, 56, 4)])
@pytest.mark.parametrize("scale", [1, 4])
def test_plan_covers_output_once(shape, tile, overlap, align, scale):
    specs = plan_tiles(shape, tile, overlap, scale, align)
    count = np.zeros((shape[0] * scale, shape[1] * scale), int)
    for s in specs:
        (y0, y1), (x0, x1) = ((sl.start, sl.stop) for sl in s.in_slice)
        assert 0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]
        assert y1 - y0 <= tile and x1 - x0 <= tile
        assert y0 % align == 0 and x0 % align == 0
        # the crop lies inside the tile's output and has the size of its place in the output
        for c, o, n in zip(s.crop, s.out_slice, (y1 - y0, x1 - x0), strict=True):
            assert 0 <= c.start < c.stop <= n * scale and c.stop - c.start == o.stop - o.start
        # kept pixels are at least overlap // 2 from inner tile edges (frame edges excepted)
        for sl, c, n in zip(s.in_slice, s.crop, shape, strict=True):
            if sl.start > 0:
                assert c.start >= (overlap // 2) * scale
            if sl.stop < n:
                assert (sl.stop - sl.start) * scale - c.stop >= (overlap // 2) * scale
        count[s.out_slice] += 1
    assert (count == 1).all()


def test_plan_rejects_tile_too_small_for_overlap():
    with pytest.raises(ValueError, match="too small for overlap"):
        plan_tiles((200, 200), 32, 30, align=4)


def test_fast_net_field_and_alignment(fast_net):
    assert net_alignment(fast_net) == 4
    assert receptive_field(fast_net) == 28
    mf = FastSRNet(in_frames=3, width=4).train()
    assert net_alignment(mf) == 4 and receptive_field(mf) == 28
    assert mf.training  # measured in eval mode, state restored


class _PoolNet(torch.nn.Module):
    """Functional pooling (no strided module) and a 2x2 average: alignment 8, field radius 1 + 3*8/2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.out = torch.nn.Conv2d(2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = torch.nn.functional.avg_pool2d(y, 8)
        y = self.out(y)
        return torch.nn.functional.interpolate(y, scale_factor=8, mode="nearest")


def test_alignment_sees_functional_pooling():
    net = _PoolNet()
    assert net_alignment(net) == 8
    x = np.random.default_rng(0).standard_normal((1, 1, 80, 72)).astype(np.float32)
    fn = _net_fn(net)
    r = receptive_field(net)
    assert 8 <= r <= 16
    np.testing.assert_allclose(tiled_apply(fn, x, 48, 2 * r, 1, align=8), fn(x), atol=1e-6)
    # misaligned tiles (align 1) change the pooling grid: the result differs
    assert np.abs(tiled_apply(fn, x, 48, 2 * r, 1, align=1) - fn(x)).max() > 1e-3


@pytest.mark.parametrize("shape", [(130, 201), (97, 64)])
def test_tiled_equals_untiled_for_fast_net(fast_net, shape):
    x = np.random.default_rng(0).standard_normal((1, 1, *shape)).astype(np.float32)
    fn = _net_fn(fast_net)
    ref = fn(x)
    out = tiled_apply(fn, x, 96, 2 * receptive_field(fast_net), 4)
    assert len(plan_tiles(shape, 96, 56, 4)) > 1
    assert out.shape == ref.shape and out.dtype == ref.dtype
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


def test_too_small_overlap_shows_seams(fast_net):
    """The test above can fail: without enough overlap, tiles differ from the untiled result."""
    x = np.random.default_rng(0).standard_normal((1, 1, 96, 96)).astype(np.float32)
    fn = _net_fn(fast_net)
    assert np.abs(tiled_apply(fn, x, 48, 0, 4) - fn(x)).max() > 1e-3


def test_cosine_blend_is_smooth_partition(fast_net):
    x = np.random.default_rng(2).standard_normal((1, 1, 120, 90)).astype(np.float32)
    fn = _net_fn(fast_net)
    out = tiled_apply(fn, x, 64, 56, 4, blend="cosine")
    assert np.abs(out - fn(x)).max() < 1e-2  # smoothed, not exact
    # blending a constant function gives the constant back everywhere (weights normalise)
    ones = tiled_apply(lambda a: np.ones((1, a.shape[-2] * 2, a.shape[-1] * 2), np.float32),
                       x[0], 64, 24, 2, blend="cosine")
    np.testing.assert_allclose(ones, 1.0, atol=1e-6)
    spec = plan_tiles((120, 90), 64, 24, 2)[0]
    win = blend_window(spec, (spec.in_shape[0] * 2, spec.in_shape[1] * 2))
    assert win.min() > 0 and win.max() <= 1 and win[0, 0] == 1 and win[-1, -1] < 0.01


def test_stitch_identity_function_and_leading_axes():
    img = np.arange(3 * 50 * 70, dtype=np.float32).reshape(3, 50, 70)
    specs = plan_tiles((50, 70), 24, 8, 1, 4)
    out = stitch(((s, img[(..., *s.in_slice)]) for s in specs), (50, 70))
    np.testing.assert_array_equal(out, img)
    # fn may change leading axes (engines map (B, F, h, w) to (B, 1, hs, ws))
    out = tiled_apply(lambda a: a[:, -1:].repeat(2, -1).repeat(2, -2), img[None], 24, 8, 2)
    np.testing.assert_array_equal(out, img[None, -1:].repeat(2, -1).repeat(2, -2))


def test_wrong_scale_is_reported():
    with pytest.raises(ValueError, match="expected"):
        tiled_apply(lambda a: a, np.zeros((64, 64), np.float32), 32, 8, 2)


def test_tiled_engine_wraps_an_engine(tiny_model):
    from live_pssr.engines import AutoTileEngine, make_engine
    from live_pssr.enhancer import Enhancer

    from .conftest import camera_frames

    inner = make_engine("torch", tiny_model)
    tiled = AutoTileEngine(inner, tiny_model, tile=96, overlap=56)  # the one tiling wrapper
    assert tiled.name == "torch" and tiled.device == "cpu" and tiled.precision == "fp32"
    frame = camera_frames(1, (150, 130))[0]
    ref = Enhancer(tiny_model, engine=inner, out_dtype="float32").enhance(frame)
    out = Enhancer(tiny_model, engine=tiled, out_dtype="float32").enhance(frame)
    np.testing.assert_allclose(out, ref, atol=1e-5 * float(np.ptp(ref)), rtol=0)
