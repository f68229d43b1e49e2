"""Simulated fluorescence microscope: a live mitochondria scene seen through a PSF and a camera.

Physical model and units
------------------------
1. Scene (:mod:`live_pssr.sim.scene`): tubular networks in um, moving with time
   ``tau = t / fps`` seconds for frame index ``t``.
2. Ground truth ("high laser", noise-free): the tubes' dye is splatted onto a HIGH-RES grid of
   pixel size ``pixel_size_um / upscale`` and blurred by a Gaussian PSF of sigma
   ``psf_sigma_um``; a dim, smooth, static autofluorescence background is added. Unit:
   **expected photons per high-res pixel per exposure at laser_power = 1**. Brightness is
   calibrated so that a straight, isolated tube of the widest kind (0.7 um) at full brightness
   gives ``photons_high`` expected photons in its brightest *camera* pixel (crossings and
   junctions can be brighter, thinner/dimmer tubes are dimmer).
3. Camera (:mod:`live_pssr.sim.camera`): each camera pixel integrates an ``upscale x upscale``
   block of the ground truth (block sum), scaled by ``laser_power`` -> expected electrons;
   the recorded frame adds Poisson shot noise and Gaussian read noise, then gain (ADU per
   electron), offset (ADU), rounding and clipping to ``bit_depth``.

Determinism: the geometry and the background depend on ``seed`` only, the scene state at ``t``
is analytic, and the noise of frame ``t`` comes from ``np.random.default_rng([seed, t])``:
``frame(t)`` is the same array for the same (config, t) whatever the call order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from .camera import CameraModel, block_sum
from .scene import WIDTH_RANGE_UM, MitoScene, tube_points

#: mean autofluorescence per camera pixel, as a fraction of ``photons_high``
AUTOFLUORESCENCE = 0.04
#: largest spacing of the point samples of a tube, in PSF sigmas
SAMPLE_SIGMAS = 1.5
#: the Gaussian PSF kernel is cut at this many sigmas
PSF_TRUNCATE = 3.0


@dataclass(frozen=True)
class MicroscopeConfig:
    """Settings of the simulated microscope (see the module docstring for the model).

    Attributes
    ----------
    height, width : int
        Camera size in pixels.
    upscale : int
        Undersampling factor of the camera relative to the ground truth (1 = none).
    fps : float
        Nominal frame rate; frame ``t`` shows the scene at ``t / fps`` seconds.
    laser_power : float
        Excitation relative to a high-laser acquisition (1.0).
    photons_high : float
        Peak expected photons per camera pixel at ``laser_power = 1`` (reference tube).
    gain : float
        ADU per photo-electron.
    offset : float
        Camera offset (ADU).
    read_noise : float
        Read noise (electrons rms).
    bit_depth : int
        8..16; frames are uint8 for 8 bits, else uint16, clipped to ``2**bit_depth - 1``.
    psf_sigma_um : float
        Sigma of the Gaussian PSF (um).
    pixel_size_um : float
        Camera pixel size (um); the ground-truth pixel is ``pixel_size_um / upscale``.
    n_networks : int
        Mitochondrial networks per 41 x 41 um (the default field); scaled with field area.
    seed : int
        Seed of the scene and of the noise (>= 0).
    """

    height: int = 256
    width: int = 256
    upscale: int = 4
    fps: float = 20.0
    laser_power: float = 0.05
    photons_high: float = 2000.0
    gain: float = 2.0
    offset: float = 100.0
    read_noise: float = 1.5
    bit_depth: int = 16
    psf_sigma_um: float = 0.12
    pixel_size_um: float = 0.16
    n_networks: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        ints = {"height", "width", "upscale", "bit_depth", "n_networks", "seed"}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ints:
                if isinstance(v, bool) or not isinstance(v, int | np.integer):
                    raise ConfigError(f"MicroscopeConfig.{f.name} must be an integer, got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, int | float | np.number):
                raise ConfigError(f"MicroscopeConfig.{f.name} must be a number, got {v!r}")
            elif not math.isfinite(float(v)):
                raise ConfigError(f"MicroscopeConfig.{f.name} must be finite, got {v!r}")

        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"MicroscopeConfig: {what}")

        need(self.height > 0, f"height (camera pixels) must be > 0, got {self.height}")
        need(self.width > 0, f"width (camera pixels) must be > 0, got {self.width}")
        need(self.upscale >= 1, f"upscale must be >= 1 (1 = no undersampling), got {self.upscale}")
        need(self.fps > 0, f"fps must be > 0, got {self.fps}")
        need(self.laser_power > 0, f"laser_power must be > 0 (1.0 = high laser), got {self.laser_power}")
        need(8 <= self.bit_depth <= 16, f"bit_depth must be in 8..16, got {self.bit_depth}")
        need(self.photons_high > 0, f"photons_high must be > 0, got {self.photons_high}")
        need(self.gain > 0, f"gain must be > 0 (ADU per electron), got {self.gain}")
        need(self.offset >= 0, f"offset must be >= 0 ADU, got {self.offset}")
        need(self.read_noise >= 0, f"read_noise must be >= 0 electrons, got {self.read_noise}")
        need(self.psf_sigma_um > 0, f"psf_sigma_um must be > 0, got {self.psf_sigma_um}")
        need(self.pixel_size_um > 0, f"pixel_size_um must be > 0, got {self.pixel_size_um}")
        need(self.n_networks >= 0, f"n_networks must be >= 0, got {self.n_networks}")
        need(self.seed >= 0, f"seed must be >= 0, got {self.seed}")

    @property
    def truth_pixel_size_um(self) -> float:
        """Ground-truth pixel size (um)."""
        return self.pixel_size_um / self.upscale


class SimulatedMicroscope:
    """A live mitochondria sample on a widefield/confocal microscope with a camera.

    Parameters
    ----------
    config : MicroscopeConfig
        Scene, optics, illumination and camera settings.

    Attributes
    ----------
    config : MicroscopeConfig
    camera_shape : tuple of int
        ``(height, width)`` of camera frames.
    truth_shape : tuple of int
        ``(height * upscale, width * upscale)`` of the ground truth.
    dtype : np.dtype
        dtype of camera frames (uint16, or uint8 for 8-bit cameras).
    scene : MitoScene
        The moving sample.
    camera : CameraModel
        Gain, offset, read noise, bit depth.
    """

    def __init__(self, config: MicroscopeConfig = MicroscopeConfig()) -> None:
        self.config = config
        c = config
        self.camera_shape = (int(c.height), int(c.width))
        self.truth_shape = (int(c.height * c.upscale), int(c.width * c.upscale))
        self.camera = CameraModel(c.gain, c.offset, c.read_noise, int(c.bit_depth))
        self.dtype = self.camera.dtype
        self._px_um = c.truth_pixel_size_um
        self._sigma_px = c.psf_sigma_um / self._px_um
        self._margin = int(math.ceil(PSF_TRUNCATE * self._sigma_px)) + 2
        # Point samples along and across tubes every <= 1.5 PSF sigmas: after the blur their sum
        # is smooth to ~2 * exp(-2 pi^2 / 1.5^2) = 3e-4 relative ripple.
        step_px = max(SAMPLE_SIGMAS * self._sigma_px, 0.5)
        lane_px = step_px
        self._n_lanes = int(np.clip(math.ceil(WIDTH_RANGE_UM[1] / self._px_um / lane_px), 1, 16))
        self.scene = MitoScene(
            (c.height * c.pixel_size_um, c.width * c.pixel_size_um),
            int(c.n_networks),
            int(c.seed),
            sample_um=step_px * self._px_um,
        )
        self._photons_per_dye = c.photons_high / self._reference_peak()
        self._background = self._make_background()

    # -- rendering ---------------------------------------------------------------------------
    def _render(
        self, y_um: np.ndarray, x_um: np.ndarray, w: np.ndarray, shape: tuple[int, int]
    ) -> np.ndarray:
        """Splat weighted points (bilinear) on a padded high-res canvas, blur, crop."""
        m = self._margin
        hc, wc = shape[0] + 2 * m, shape[1] + 2 * m
        fy = y_um * (1.0 / self._px_um) + (m - 0.5)  # pixel j covers [j, j+1) * px_um
        fx = x_um * (1.0 / self._px_um) + (m - 0.5)
        iy = np.floor(fy)
        ix = np.floor(fx)
        ok = (iy >= 0) & (iy < hc - 1) & (ix >= 0) & (ix < wc - 1)
        if not ok.all():
            fy, fx, iy, ix, w = fy[ok], fx[ok], iy[ok], ix[ok], w[ok]
        ay = fy - iy
        ax = fx - ix
        base = iy.astype(np.intp) * wc + ix.astype(np.intp)
        w1 = w * ay
        w0 = w - w1
        idx = np.concatenate((base, base + 1, base + wc, base + (wc + 1)))
        wts = np.concatenate((w0 - w0 * ax, w0 * ax, w1 - w1 * ax, w1 * ax))
        canvas = np.bincount(idx, wts, minlength=hc * wc).reshape(hc, wc)
        blurred = ndimage.gaussian_filter(
            canvas, self._sigma_px, output=np.float32, mode="constant", truncate=PSF_TRUNCATE
        )
        return blurred[m : m + shape[0], m : m + shape[1]]

    def _reference_peak(self) -> float:
        """Brightest camera pixel (dye units) of a straight 0.7 um tube at brightness 1."""
        u = self.config.upscale
        n = 16
        length_um = 0.75 * n * self.config.pixel_size_um
        n_s = int(math.ceil(length_um / self.scene.sample_um)) + 1
        x = np.linspace(0.125, 0.875, n_s) * n * self.config.pixel_size_um
        y = np.full(n_s, (n // 2 + 0.5) * self.config.pixel_size_um)
        ds = length_um / (n_s - 1)
        py, px, w = tube_points(
            y, x, np.zeros(n_s), np.full(n_s, WIDTH_RANGE_UM[1]), np.full(n_s, ds), self._n_lanes
        )
        img = self._render(py, px, w, (n * u, n * u))
        return float(block_sum(img, u).max())

    def _make_background(self) -> np.ndarray:
        """Static smooth autofluorescence (photons per high-res pixel at laser_power = 1)."""
        rng = np.random.default_rng(np.random.SeedSequence(self.config.seed).spawn(2)[1])
        spacing_um = 5.0
        axes = []
        for n_px in self.truth_shape:
            extent = n_px * self._px_um
            nodes = np.arange(-spacing_um, extent + 2 * spacing_um, spacing_um)
            pos = (np.arange(n_px) + 0.5) * self._px_um
            axes.append(np.exp(-0.5 * ((pos[:, None] - nodes[None, :]) / (0.7 * spacing_um)) ** 2))
        amp = rng.gamma(2.0, 0.5, (axes[0].shape[1], axes[1].shape[1]))
        field = axes[0] @ amp @ axes[1].T
        field = 0.4 + 0.6 * field / field.mean()
        level = AUTOFLUORESCENCE * self.config.photons_high / self.config.upscale**2
        return (level * field).astype(np.float32)

    def _check_t(self, t: int) -> int:
        if isinstance(t, bool) or not isinstance(t, int | np.integer) or t < 0:
            raise ValueError(f"time index t must be a non-negative integer, got {t!r}")
        return int(t)

    # -- public API --------------------------------------------------------------------------
    def ground_truth(self, t: int) -> np.ndarray:
        """Noise-free high-laser image at time index ``t``.

        Returns
        -------
        np.ndarray
            float32, :attr:`truth_shape`: expected photons per HIGH-RES pixel per exposure at
            ``laser_power = 1`` (filaments through the PSF plus autofluorescence).
        """
        t = self._check_t(t)
        y, x, w = self.scene.samples(t / self.config.fps, self._n_lanes)
        img = self._render(y, x, w * self._photons_per_dye, self.truth_shape)
        return np.add(img, self._background)

    def expected_electrons(self, truth: np.ndarray) -> np.ndarray:
        """Expected photo-electrons per camera pixel (float32) from a ground-truth image."""
        out = block_sum(truth, self.config.upscale)
        return out * np.float32(self.config.laser_power)

    def expected_frame(self, t: int) -> np.ndarray:
        """Noise-free mean of :meth:`frame` (float32 ADU, offset included; exact unless clipped)."""
        return self.camera.expected_adu(self.expected_electrons(self.ground_truth(t)))

    def acquire(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Camera frame and ground truth at time index ``t`` from one render.

        Returns
        -------
        (frame, ground_truth) : tuple of np.ndarray
            As :meth:`frame` and :meth:`ground_truth`.
        """
        truth = self.ground_truth(t)
        rng = np.random.default_rng([self.config.seed, int(t)])
        return self.camera.record(self.expected_electrons(truth), rng), truth

    def frame(self, t: int) -> np.ndarray:
        """What the low-laser camera records at time index ``t`` (:attr:`dtype`, camera_shape)."""
        return self.acquire(t)[0]
