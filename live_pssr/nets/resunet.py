"""The published PSSR network (Fang et al. 2021) in plain torch: ``pssr-resunet``.

PSSR trained fastai's ``unet_learner(resnet34, blur=True, self_attention=True,
norm_type=NormType.Weight)`` on inputs upsampled to the output size first. This module rebuilds
that ``DynamicUnet`` layer for layer, without fastai or torchvision (nothing is downloaded; the
encoder is trained from scratch):

- input: the low-res frames upsampled ``upscale``x (bilinear, as PSSR's ``npzoom(order=1)``),
  ``in_frames`` channels (1, or 5 for PSSR-MF), padded to a multiple of 32;
- encoder: ResNet-34 (7x7/2 stem, BN, ReLU, max-pool; BasicBlock stages [3, 4, 6, 3] at
  64/128/256/512 channels); skips taken where the size changes (stem ReLU, layer1..layer3);
- middle: BN, ReLU, conv 512->1024, conv 1024->512;
- four ``UnetBlock``s: ``PixelShuffle_ICNR`` upsampling (1x1 conv with ICNR init, ReLU, pixel
  shuffle, blur = replication pad + 2x2 average pool) of the coarse path, BN of the skip,
  concatenation, ReLU, two 3x3 convs; the second block's last conv carries fastai's
  ``SelfAttention`` (SAGAN: 1x1 query/key/value, ``gamma`` initialised to 0);
- head: a last ``PixelShuffle_ICNR`` back to full size, the input concatenated (fastai's
  ``MergeLayer(dense=True)``), a residual block and a 1x1 conv to one channel.

Differences from fastai, on purpose: weight normalisation and the spectral norm of the attention
convs are re-parametrisations of the same function class and are left out (plain convs export to
every engine); ``width`` multiplies every channel count (1.0 = the published 41 M-parameter
net; the shipped model uses a fraction so it trains on a CPU and stays under 20 MB);
``residual=True`` adds the upsampled reference frame to the output (off = published).

Cost: the whole U-Net runs at the *output* resolution, ~``upscale**2`` times the work of
:class:`~live_pssr.nets.fast_sr.FastSRNet`; self-attention is quadratic in the pixels at 1/8 of the
output size (1024x1024 outputs: a 16384^2 attention matrix). It is the quality reference, not
the live default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import register


def _ch(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


def conv_layer(
    ni: int, nf: int, ks: int = 3, act: bool = True, self_attention: bool = False
) -> nn.Sequential:
    """fastai ``conv_layer``: conv (+ ReLU) (+ self-attention)."""
    layers: list[nn.Module] = [nn.Conv2d(ni, nf, ks, padding=ks // 2)]
    nn.init.kaiming_normal_(layers[0].weight, nonlinearity="relu")
    nn.init.zeros_(layers[0].bias)  # fastai's init_default
    if act:
        layers.append(nn.ReLU(inplace=True))
    if self_attention:
        layers.append(SelfAttention(nf))
    return nn.Sequential(*layers)


class SelfAttention(nn.Module):
    """SAGAN self-attention as in fastai (``gamma`` starts at 0: identity at initialisation)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.query = nn.Conv2d(ch, max(1, ch // 8), 1, bias=False)
        self.key = nn.Conv2d(ch, max(1, ch // 8), 1, bias=False)
        self.value = nn.Conv2d(ch, ch, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        f = self.query(x).flatten(2)
        g = self.key(x).flatten(2)
        v = self.value(x).flatten(2)
        beta = torch.softmax(torch.bmm(f.transpose(1, 2), g), dim=1)
        return (self.gamma * torch.bmm(v, beta)).view(b, c, h, w) + x


def icnr_(weight: torch.Tensor, scale: int = 2) -> None:
    """ICNR init (Aitken et al. 2017): every sub-pixel starts equal, so no checkerboard at init."""
    ni, nf, h, w = weight.shape
    sub = torch.empty(ni // scale**2, nf, h, w)
    nn.init.kaiming_normal_(sub, nonlinearity="relu")
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale**2, dim=0))


class PixelShuffleICNR(nn.Module):
    """fastai ``PixelShuffle_ICNR(blur=True)``: 1x1 conv, ReLU, shuffle x2, blur."""

    def __init__(self, ni: int, nf: int | None = None, blur: bool = True) -> None:
        super().__init__()
        nf = nf or ni
        self.conv = nn.Conv2d(ni, nf * 4, 1)
        icnr_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.shuf = nn.PixelShuffle(2)
        self.blur = blur

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shuf(F.relu(self.conv(x)))
        if self.blur:
            x = F.avg_pool2d(F.pad(x, (1, 0, 1, 0), mode="replicate"), 2, stride=1)
        return x


class BasicBlock(nn.Module):
    """ResNet BasicBlock: (conv3-BN-ReLU-conv3-BN) + shortcut, ReLU."""

    def __init__(self, ni: int, nf: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ni, nf, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(nf)
        self.conv2 = nn.Conv2d(nf, nf, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(nf)
        self.down = None
        self.stride = stride
        if stride != 1 or ni != nf:
            # 1x1 stride-s conv written as subsample + 1x1 conv: the same function, and it avoids a
            # heap corruption in torch 2.13's CPU backward of strided 1x1 convs in channels-last
            self.down = nn.Sequential(nn.Conv2d(ni, nf, 1, bias=False), nn.BatchNorm2d(nf))
        nn.init.zeros_(self.bn2.weight)  # zero-init the last BN: each block starts as identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x[..., :: self.stride, :: self.stride])
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + idt)


def _stage(ni: int, nf: int, blocks: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(ni, nf, stride), *[BasicBlock(nf, nf) for _ in range(blocks - 1)])


class UnetBlock(nn.Module):
    """fastai ``UnetBlock``: upsample the coarse path, merge the BN'd skip, two convs."""

    def __init__(self, up_in: int, x_in: int, final_div: bool = True, self_attention: bool = False) -> None:
        super().__init__()
        self.shuf = PixelShuffleICNR(up_in, up_in // 2)
        self.bn = nn.BatchNorm2d(x_in)
        ni = up_in // 2 + x_in
        self.out_ch = ni if final_div else ni // 2
        self.conv1 = conv_layer(ni, self.out_ch)
        self.conv2 = conv_layer(self.out_ch, self.out_ch, self_attention=self_attention)

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        u = self.shuf(up)
        if u.shape[-2:] != skip.shape[-2:]:
            u = F.interpolate(u, skip.shape[-2:], mode="nearest")
        return self.conv2(self.conv1(F.relu(torch.cat([u, self.bn(skip)], 1))))


class PSSRResUNet(nn.Module):
    """PSSR's ResNet-34 U-Net (upsample first), with a width multiplier.

    Parameters
    ----------
    in_frames : int
        Input frames as channels (1, or 5 for PSSR-MF).
    upscale : int
        Output/input size ratio; the input is upsampled bilinearly by this first.
    width : float
        Channel multiplier (1.0 = published ResNet-34 widths 64..512).
    self_attention : bool
        fastai's self-attention in the second decoder block (published: on).
    residual : bool
        Add the upsampled reference frame to the output (published: off).
    ref_frame : int
        Reference frame for ``residual`` (-1 = newest, ``in_frames // 2`` = centre).
    """

    def __init__(
        self,
        in_frames: int = 1,
        upscale: int = 4,
        width: float = 1.0,
        self_attention: bool = True,
        residual: bool = False,
        ref_frame: int = -1,
    ) -> None:
        super().__init__()
        if in_frames < 1 or upscale < 1 or not 0 < width <= 4:
            raise ValueError("in_frames>=1, upscale>=1 and 0<width<=4 are required")
        self.in_frames, self.upscale, self.residual, self.ref_frame = in_frames, upscale, residual, ref_frame
        c = [_ch(n, width) for n in (64, 64, 128, 256, 512)]
        # encoder (ResNet-34)
        self.stem = nn.Sequential(
            nn.Conv2d(in_frames, c[0], 7, 2, 3, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True)
        )
        self.layer1 = _stage(c[0], c[1], 3, 1)
        self.layer2 = _stage(c[1], c[2], 4, 2)
        self.layer3 = _stage(c[2], c[3], 6, 2)
        self.layer4 = _stage(c[3], c[4], 3, 2)
        # middle
        self.middle = nn.Sequential(
            nn.BatchNorm2d(c[4]),
            nn.ReLU(inplace=True),
            conv_layer(c[4], 2 * c[4]),
            conv_layer(2 * c[4], c[4]),
        )
        # decoder: skips layer3 (/16), layer2 (/8), layer1 (/4), stem (/2)
        blocks, up = [], c[4]
        for i, skip in enumerate((c[3], c[2], c[1], c[0])):
            blk = UnetBlock(up, skip, final_div=i != 3, self_attention=self_attention and i == 1)
            blocks.append(blk)
            up = blk.out_ch
        self.blocks = nn.ModuleList(blocks)
        self.final_shuf = PixelShuffleICNR(up, up)
        ni = up + in_frames
        self.res1 = conv_layer(ni, ni)
        self.res2 = conv_layer(ni, ni)
        self.head = conv_layer(ni, 1, ks=1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upscale > 1:
            x = F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)
        h, w = x.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32  # five stride-2 levels
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        s0 = self.stem(xp)
        s1 = self.layer1(F.max_pool2d(s0, 3, 2, 1))
        s2 = self.layer2(s1)
        s3 = self.layer3(s2)
        y = self.middle(self.layer4(s3))
        for blk, skip in zip(self.blocks, (s3, s2, s1, s0), strict=True):
            y = blk(y, skip)
        y = torch.cat([self.final_shuf(y), xp], 1)
        y = y + self.res2(self.res1(y))
        y = self.head(y)
        if ph or pw:
            y = y[..., :h, :w]
        if self.residual:
            y = y + x[:, self.ref_frame :][:, :1]
        return y


register("pssr-resunet", PSSRResUNet)

__all__ = ["PSSRResUNet", "PixelShuffleICNR", "SelfAttention", "UnetBlock"]
