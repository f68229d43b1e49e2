"""Simulated microscope: a live mitochondria-like sample, a Gaussian PSF and a noisy camera.

``SimulatedMicroscope(MicroscopeConfig(...)).acquire(t)`` returns the low-laser camera frame at
time index ``t`` and the matching noise-free high-laser ground truth (``upscale`` times finer).
See :mod:`live_pssr.sim.microscope` for the physical model and units.
"""

from .camera import CameraModel, block_sum
from .microscope import MicroscopeConfig, SimulatedMicroscope
from .scene import MitoScene

__all__ = ["CameraModel", "MicroscopeConfig", "MitoScene", "SimulatedMicroscope", "block_sum"]
