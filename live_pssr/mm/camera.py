"""A Micro-Manager camera device (pymmcore-plus unicore) that films the simulated microscope.

:class:`SimulatedCamera` is a :class:`~pymmcore_plus.experimental.unicore.SimpleCameraDevice`: load
it into a :class:`~pymmcore_plus.experimental.unicore.UniMMCore` with ``core.loadPyDevice`` (or a
``#py pyDevice,Cam,live_pssr.mm.camera,SimulatedCamera`` line of a ``.cfg`` file) and the real C++
MMCore, pycromanager's ``Acquisition`` and pymmcore-plus's MDA run on it without Micro-Manager
installed.

Frame ``t`` (``t`` counts snaps: 0, 1, 2, ... across snaps and sequences) is what
:class:`~live_pssr.sim.SimulatedMicroscope` renders at time index ``t``, with the camera's
settings applied::

    electrons = block_sum(ground_truth(t), upscale) * LaserPower * Exposure / ReferenceExposureMs
    electrons = block_sum(electrons, Binning)                   (binning sums charge)
    frame     = CameraModel(BitDepth).record(electrons, rng([seed, t]))
    frame     = frame[ROI]                                      (software ROI of the base class)

With the defaults (``Exposure == ReferenceExposureMs``, ``LaserPower`` = the config's, binning 1,
no ROI) frame ``t`` is bit-identical to ``SimulatedMicroscope(config).frame(t)``.

Timing: ``Timing = "exposure"`` delivers one frame per exposure time on the camera's own clock,
like a real camera (a late host catches up instead of slowing the clock); ``fast``: as fast as
frames can be rendered. ``FrameBank = N`` renders N time points once and
cycles through them (for benchmarks at sizes that cannot be rendered at camera rate).

Every delivered frame is logged in :attr:`SimulatedCamera.log` (time index, delivery time, shape and,
with ``keep_checksums``, a CRC-32 of the pixels) so tests can prove that nothing was lost.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..sim import CameraModel, MicroscopeConfig, SimulatedMicroscope, block_sum
from ._pymmcore import SimpleCameraDevice, pymm_property

TIMINGS = ("exposure", "fast")
BINNINGS = (1, 2, 4)
BIT_DEPTHS = (8, 10, 12, 14, 16)


@dataclass(frozen=True, slots=True)
class ProducedFrame:
    """One frame the camera delivered (for checking a run lost nothing)."""

    t: int
    time_s: float  #: perf_counter() when delivered
    shape: tuple[int, int]
    crc32: int | None = None


class SimulatedCamera(SimpleCameraDevice):
    """Python camera device serving :class:`~live_pssr.sim.SimulatedMicroscope` frames.

    Parameters
    ----------
    config : MicroscopeConfig, optional
        Sample, optics and camera (``height`` x ``width`` is the sensor size).
    exposure_ms : float
        Initial exposure time.
    reference_exposure_ms : float
        Exposure at which the photon budget equals ``config.laser_power``'s.
    timing : {"exposure", "fast"}
        Deliver one frame per exposure time, or as fast as frames render.
    bank_size : int
        0: render every frame; N > 0: cycle through N pre-rendered time points.
    keep_checksums : bool
        Log a CRC-32 of every delivered frame.
    log_size : int
        Number of delivered frames kept in :attr:`log`.
    """

    def __init__(
        self,
        config: MicroscopeConfig | None = None,
        exposure_ms: float = 100.0,
        reference_exposure_ms: float = 100.0,
        timing: str = "exposure",
        bank_size: int = 0,
        keep_checksums: bool = False,
        log_size: int = 100_000,
    ) -> None:
        super().__init__()
        self._config = config or MicroscopeConfig()
        self._microscope: SimulatedMicroscope | None = None
        self._exposure = float(exposure_ms)
        self._reference = float(reference_exposure_ms)
        self._laser = float(self._config.laser_power)
        self._binning = 1
        self._bit_depth = int(self._config.bit_depth)
        self._timing = timing
        self._bank_size = int(bank_size)
        self._bank: dict[int, np.ndarray] = {}
        self._t = 0
        self._due: float | None = None
        self.keep_checksums = keep_checksums
        self.log: deque[ProducedFrame] = deque(maxlen=log_size)
        self._render_lock = threading.RLock()
        self.set_property_allowed_values("Binning", list(BINNINGS))
        self.set_property_limits("Exposure", (0.01, 60_000.0))

    # ------------------------------------------------------------------ MM camera API
    def get_exposure(self) -> float:
        return self._exposure

    def set_exposure(self, exposure: float) -> None:
        self._exposure = float(exposure)
        self._invalidate_bank()

    def get_binning(self) -> int:
        return self._binning

    def set_binning(self, value: int) -> None:
        value = int(value)
        if value != self._binning:
            self._binning = value
            self.clear_roi()  # ROI coordinates are in binned pixels
            self._invalidate_bank()

    def sensor_shape(self) -> tuple[int, int]:
        b = self._binning
        return self._config.height // b, self._config.width // b

    def dtype(self) -> np.dtype:
        return CameraModel(bit_depth=self._bit_depth).dtype

    def start_sequence(self, n: int | None, get_buffer: Any) -> Iterator[Mapping]:
        """A sequence (or one snap): the camera's frame clock starts now."""
        self._due = None
        yield from super().start_sequence(n, get_buffer)

    def snap(self, buffer: np.ndarray) -> Mapping[str, Any]:
        """Render the next frame into ``buffer`` (full sensor), waiting out the exposure."""
        with self._render_lock:
            t = self._t
            self._t += 1
            image = self.render(t)
        self._wait_exposure()
        buffer[:] = image
        if self._roi is not None:  # what the base class delivers: the ROI of the full frame
            x, y, w, h = self._roi
            image = image[y:y + h, x:x + w]
        crc = zlib.crc32(np.ascontiguousarray(image)) if self.keep_checksums else None
        self.log.append(ProducedFrame(t, time.perf_counter(), image.shape, crc))
        return {"SimCam-TimeIndex": str(t)}

    # ------------------------------------------------------------------ properties
    @pymm_property(limits=(1e-4, 100.0), property_type=float, name="LaserPower")
    def laser_power(self) -> float:
        """Excitation relative to a high-laser acquisition (1.0)."""
        return self._laser

    @laser_power.setter
    def laser_power(self, value: float) -> None:
        self._laser = float(value)
        self._invalidate_bank()

    @pymm_property(allowed_values=list(BIT_DEPTHS), property_type=int, name="BitDepth")
    def bit_depth(self) -> int:
        """ADU range 0..2**BitDepth-1; 8 bits give uint8 frames, more give uint16."""
        return self._bit_depth

    @bit_depth.setter
    def bit_depth(self, value: int) -> None:
        self._bit_depth = int(value)
        self._invalidate_bank()

    @pymm_property(allowed_values=list(TIMINGS), property_type=str, name="Timing")
    def timing(self) -> str:
        """``exposure``: one frame per exposure time; ``fast``: as fast as rendering goes."""
        return self._timing

    @timing.setter
    def timing(self, value: str) -> None:
        self._timing = str(value)
        self._due = None

    @pymm_property(limits=(0, 4096), property_type=int, name="FrameBank")
    def frame_bank(self) -> int:
        """0: render every frame; N: cycle through N pre-rendered time points."""
        return self._bank_size

    @frame_bank.setter
    def frame_bank(self, value: int) -> None:
        self._bank_size = int(value)
        self._invalidate_bank()

    @pymm_property(limits=(0.01, 60_000.0), property_type=float, name="ReferenceExposureMs")
    def reference_exposure_ms(self) -> float:
        """Exposure at which the photon budget is the configured laser power's."""
        return self._reference

    @reference_exposure_ms.setter
    def reference_exposure_ms(self, value: float) -> None:
        self._reference = float(value)
        self._invalidate_bank()

    @pymm_property(limits=(8, 8192), property_type=int, name="SensorHeight")
    def sensor_height(self) -> int:
        return self._config.height

    @sensor_height.setter
    def sensor_height(self, value: int) -> None:
        self.configure(height=int(value))

    @pymm_property(limits=(8, 8192), property_type=int, name="SensorWidth")
    def sensor_width(self) -> int:
        return self._config.width

    @sensor_width.setter
    def sensor_width(self, value: int) -> None:
        self.configure(width=int(value))

    @pymm_property(limits=(0, 2**31 - 1), property_type=int, name="Seed")
    def seed(self) -> int:
        return self._config.seed

    @seed.setter
    def seed(self, value: int) -> None:
        self.configure(seed=int(value))

    @pymm_property(limits=(0, 2**31 - 1), property_type=int, name="TimeIndex")
    def time_index(self) -> int:
        """Time index of the next frame (set 0 to restart the sample's movie)."""
        return self._t

    @time_index.setter
    def time_index(self, value: int) -> None:
        with self._render_lock:
            self._t = int(value)

    # ------------------------------------------------------------------ rendering
    @property
    def config(self) -> MicroscopeConfig:
        return self._config

    @property
    def microscope(self) -> SimulatedMicroscope:
        if self._microscope is None:
            self._microscope = SimulatedMicroscope(self._config)
        return self._microscope

    def configure(self, **changes: Any) -> None:
        """Change the simulated sample/camera (``MicroscopeConfig`` fields); clears ROI and bank."""
        with self._render_lock:
            self._config = dataclasses.replace(self._config, **changes)
            self._microscope = None
            if "laser_power" in changes:
                self._laser = float(self._config.laser_power)
            if "bit_depth" in changes:
                self._bit_depth = int(self._config.bit_depth)
            self.clear_roi()
            self._invalidate_bank()

    def render(self, t: int) -> np.ndarray:
        """The full-sensor frame at time index ``t`` with the current settings (no ROI)."""
        if self._bank_size > 0:
            key = t % self._bank_size
            image = self._bank.get(key)
            if image is None:
                image = self._bank[key] = self._render_uncached(key)
            return image
        return self._render_uncached(t)

    def prerender(self) -> None:
        """Fill the frame bank now (so a benchmark does not time the first renders)."""
        for t in range(self._bank_size):
            self.render(t)

    def _render_uncached(self, t: int) -> np.ndarray:
        mic = self.microscope
        cfg = self._config
        scale = self._laser if self._exposure == self._reference else (
            self._laser * self._exposure / self._reference)
        electrons = block_sum(mic.ground_truth(t), cfg.upscale) * np.float32(scale)
        b = self._binning
        if b > 1:
            h, w = (cfg.height // b) * b, (cfg.width // b) * b
            electrons = block_sum(np.ascontiguousarray(electrons[:h, :w]), b)
        camera = CameraModel(cfg.gain, cfg.offset, cfg.read_noise, self._bit_depth)
        return camera.record(electrons, np.random.default_rng([cfg.seed, int(t)]))

    def _invalidate_bank(self) -> None:
        self._bank = {}

    def _wait_exposure(self) -> None:
        """Deliver frame k of a sequence at start + (k + 1) * exposure, like a camera's own clock.

        A late host thread does not slow the clock down: frames that are due are delivered at
        once (the frame grabber's buffer catching up), so the frame rate over a run is the
        camera's, whatever else runs on the computer.
        """
        if self._timing != "exposure":
            return
        if self._due is None:
            self._due = time.perf_counter()
        self._due += self._exposure / 1e3
        delay = self._due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
