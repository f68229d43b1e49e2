"""FastSRNet's bilinear residual in sub-pixel space equals bilinear upsampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from live_pssr.nets import FastSRNet
from live_pssr.nets.fast_sr import bilinear_subpixel_kernel


@pytest.mark.parametrize("s", [2, 3, 4])
def test_subpixel_kernel_is_bilinear(s):
    x = torch.rand(2, 1, 13, 17)
    ref = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
    ours = F.pixel_shuffle(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), bilinear_subpixel_kernel(s)), s)
    torch.testing.assert_close(ours, ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize("upscale", [1, 4])
def test_zero_tail_returns_the_residual(upscale):
    net = FastSRNet(in_frames=3, upscale=upscale, width=4).eval()
    torch.nn.init.zeros_(net.tail.weight)
    torch.nn.init.zeros_(net.tail.bias)
    x = torch.rand(1, 3, 22, 30)  # not a multiple of 4: padded inside, cropped back
    with torch.inference_mode():
        y = net(x)
    expected = x[:, -1:] if upscale == 1 else F.interpolate(x[:, -1:], scale_factor=upscale, mode="bilinear")
    assert y.shape == (1, 1, 22 * upscale, 30 * upscale)
    torch.testing.assert_close(y, expected, atol=2e-6, rtol=0)
