"""Camera model: pixel integration, shot noise, gain, offset, read noise and quantisation.

Units
-----
* ``electrons``: expected photo-electrons per camera pixel during one exposure (quantum
  efficiency folded in: one detected photon = one electron).
* ADU (analog-digital units): what the camera writes, ``offset + gain * electrons``.

Recording a pixel with mean ``lam`` electrons::

    n   ~ Poisson(lam)                     shot noise
    e   = n + Normal(0, read_noise)        read noise (electrons rms)
    adu = clip(rint(offset + gain * e), 0, 2**bit_depth - 1)

so ``adu - (offset + gain * lam)`` has variance ``gain**2 * (lam + read_noise**2) + 1/12``
(the last term from rounding) as long as nothing clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def block_sum(image: np.ndarray, factor: int) -> np.ndarray:
    """Sum ``factor`` x ``factor`` blocks: the light a coarse pixel integrates.

    Parameters
    ----------
    image : np.ndarray
        2-D image whose sides are multiples of ``factor``.
    factor : int
        Block size (1 returns ``image`` unchanged).

    Returns
    -------
    np.ndarray
        Image of shape ``(h // factor, w // factor)``, same dtype.
    """
    if factor == 1:
        return image
    h, w = image.shape
    if h % factor or w % factor:
        raise ValueError(f"image shape {image.shape} is not a multiple of {factor}")
    # sum rows of each block first (contiguous), then columns
    rows = image.reshape(h // factor, factor, w).sum(axis=1)
    return rows.reshape(h // factor, w // factor, factor).sum(axis=2)


@dataclass(frozen=True)
class CameraModel:
    """A scientific camera without excess noise (CCD/sCMOS-like): gain, offset, read noise.

    Attributes
    ----------
    gain : float
        ADU per photo-electron.
    offset : float
        Dark offset (ADU) added to every pixel.
    read_noise : float
        Gaussian read noise (electrons rms).
    bit_depth : int
        ADU range is ``0 .. 2**bit_depth - 1``; stored as uint8 (<= 8 bits) or uint16.
    """

    gain: float = 2.0
    offset: float = 100.0
    read_noise: float = 1.5
    bit_depth: int = 16

    @property
    def dtype(self) -> np.dtype:
        """Container dtype: uint8 for 8-bit cameras, else uint16."""
        return np.dtype(np.uint8 if self.bit_depth <= 8 else np.uint16)

    @property
    def max_adu(self) -> int:
        """Largest value the camera writes."""
        return 2**self.bit_depth - 1

    def expected_adu(self, electrons: np.ndarray) -> np.ndarray:
        """Noise-free mean ADU (float32) of pixels with ``electrons`` expected electrons."""
        out = np.asarray(electrons, dtype=np.float32) * np.float32(self.gain)
        out += np.float32(self.offset)
        return out

    def record(self, electrons: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One noisy recording of pixels with mean ``electrons`` (see module docstring).

        Parameters
        ----------
        electrons : np.ndarray
            Expected photo-electrons per pixel (>= 0).
        rng : np.random.Generator
            Noise source (seed it for reproducible frames).

        Returns
        -------
        np.ndarray
            Camera image in :attr:`dtype`.
        """
        lam = np.maximum(np.asarray(electrons, dtype=np.float64), 0.0)
        e = rng.poisson(lam).astype(np.float32)
        if self.read_noise > 0:
            e += rng.standard_normal(lam.shape, dtype=np.float32) * np.float32(self.read_noise)
        adu = e * np.float32(self.gain)
        adu += np.float32(self.offset)
        np.rint(adu, out=adu)
        np.clip(adu, 0, self.max_adu, out=adu)
        return adu.astype(self.dtype)
