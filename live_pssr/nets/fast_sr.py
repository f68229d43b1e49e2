"""The fast live network: a small U-Net at the *input* resolution, pixel-shuffle at the end.

PSSR upsamples the input 4x first and runs a ResNet-34 U-Net at the output resolution; this net
does all its work at the camera resolution (and two coarser levels) and only the last layer
produces ``upscale**2`` sub-pixel channels that :class:`torch.nn.PixelShuffle` rearranges, so it
costs about ``upscale**2`` times less. A bilinear upsampling of the (centre/newest) input frame is
added to the output (global residual), which makes training fast and stable. ``upscale=1`` gives
the denoising variant.

Data flow::

    x (B,F,H,W) -> head 3x3 -> [enc0 @H] -> down -> [enc1 @H/2] -> down -> [mid @H/4]
                              skip ------------------skip -----------------+
                -> up -> [dec1 @H/2] -> up -> [dec0 @H] -> 3x3 (s*s sub-pixel channels)
                -> + bilinear(x_ref) as a fixed 3x3 conv onto the s*s channels -> PixelShuffle(s)

Blocks (``block``): ``"res"`` (default; conv-ReLU-conv + identity) or ``"gate"``, a NAFNet-style
block (Chen et al. 2022) without its normalisation or global-pooling channel attention: a 3x3 conv
to ``2c`` channels, the *simple gate* (split the channels in two halves and multiply them), a 3x3
conv back to ``c``, scaled per channel by a learnable ``beta`` (zero at init, so every block starts
as the identity) and added. Multiplicative gating gives a small net more expressive power per
FLOP than ReLU (1.5x a residual block's FLOPs); it stays local (no global pooling), so tiled
inference matches whole-frame inference, and it is only conv, slice and multiply for the engines.

The bilinear residual is computed in sub-pixel space (a fixed 3x3 kernel per output phase,
replicate padding: exactly ``F.interpolate(bilinear, align_corners=False)``) and added before the
single PixelShuffle: one cheap conv instead of an Interpolate node, which OpenVINO and ONNX
Runtime run 1.2-1.5x slower end to end. The kernel is a non-persistent buffer, so model files
are unchanged.

Only conv, ReLU, pixel (un)shuffle and bilinear resize: every engine (TorchScript-free eager,
torch.compile, ONNX Runtime, OpenVINO, TensorRT) handles it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ResBlock(nn.Module):
    """conv-ReLU-conv with identity skip."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.c2(F.relu(self.c1(x))))


class _GateBlock(nn.Module):
    """NAFNet-style block: x + beta * conv3x3(SimpleGate(conv3x3(x, 2c)))."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(ch, 2 * ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.beta = nn.Parameter(torch.zeros(1, ch, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.c1(x).chunk(2, dim=1)
        return x + self.beta * self.c2(a * b)


BLOCKS: dict[str, type[nn.Module]] = {"res": _ResBlock, "gate": _GateBlock}


class FastSRNet(nn.Module):
    """Small U-Net at input resolution with a pixel-shuffle upsampler.

    Parameters
    ----------
    in_frames : int
        Input frames stacked as channels (1 = single frame, 5 = PSSR-MF).
    upscale : int
        Output/input size ratio (4 for super-resolution, 1 for denoising).
    width : int
        Channels at the finest level (doubled per level).
    ref_frame : int
        Index of the input frame used for the residual (-1 = newest, ``in_frames // 2`` = centre).
    block : {"res", "gate"}
        Residual blocks (ReLU) or NAFNet-style simple-gate blocks (see the module docstring).
    """

    def __init__(self, in_frames: int = 1, upscale: int = 4, width: int = 24, ref_frame: int = -1,
                 block: str = "res"):
        super().__init__()
        if upscale < 1 or in_frames < 1 or width < 4:
            raise ValueError("in_frames>=1, upscale>=1 and width>=4 are required")
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        blk = BLOCKS[block]
        c0, c1, c2 = width, 2 * width, 4 * width
        self.in_frames, self.upscale, self.ref_frame = in_frames, upscale, ref_frame
        self.head = nn.Conv2d(in_frames, c0, 3, padding=1)
        self.enc0 = blk(c0)
        self.down0 = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.enc1 = blk(c1)
        self.down1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.mid = blk(c2)
        self.up1 = nn.Conv2d(c2, c1 * 4, 1)
        self.dec1 = blk(c1)
        self.up0 = nn.Conv2d(c1, c0 * 4, 1)
        self.dec0 = blk(c0)
        self.tail = nn.Conv2d(c0, upscale * upscale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(upscale)
        self.register_buffer("_bilinear", bilinear_subpixel_kernel(upscale), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4  # two stride-2 levels need sizes divisible by 4
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        e0 = self.enc0(F.relu(self.head(xp)))
        e1 = self.enc1(F.relu(self.down0(e0)))
        m = self.mid(F.relu(self.down1(e1)))
        d1 = self.dec1(F.pixel_shuffle(self.up1(m), 2) + e1)
        d0 = self.dec0(F.pixel_shuffle(self.up0(d1), 2) + e0)
        t = self.tail(d0)
        if ph or pw:
            t = t[..., :h, :w]
        ref = x[:, self.ref_frame : self.ref_frame + 1] if self.ref_frame != -1 else x[:, -1:]
        if self.upscale == 1:
            return t + ref
        return self.shuffle(t + F.conv2d(F.pad(ref, (1, 1, 1, 1), mode="replicate"), self._bilinear))


def bilinear_subpixel_kernel(s: int) -> torch.Tensor:
    """``(s*s, 1, 3, 3)`` kernel: conv + PixelShuffle(s) == bilinear upsampling by ``s``.

    Output pixel ``i*s + p`` samples the input at ``i + o`` with ``o = (p + 0.5)/s - 0.5``
    (align_corners=False), i.e. taps ``i-1, i`` (o < 0) or ``i, i+1`` (o >= 0) with linear weights.
    """
    w1 = torch.zeros(s, 3, dtype=torch.float64)
    for p in range(s):
        o = (p + 0.5) / s - 0.5
        if o < 0:
            w1[p, 0], w1[p, 1] = -o, 1 + o
        else:
            w1[p, 1], w1[p, 2] = 1 - o, o
    k = torch.einsum("pi,qj->pqij", w1, w1).reshape(s * s, 1, 3, 3)
    return k.float()
