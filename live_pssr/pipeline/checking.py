"""The live consistency check: every enhanced frame (or every Nth) judged against its raw frame.

The pipeline's finisher thread (``complete``; the enhancer thread in ``preview``) calls
:meth:`ConsistencyCheck.run` right after writing the model's output, with the window the model
saw and that output; :func:`live_pssr.consistency.check_consistency` answers
(a few ms per 256² frame, 2-3 % of the default model's time on a 2-core CPU), and the result goes
to the store (the signed map as image ``2``, score / max / flag as record columns) and to the
display slot (the viewer's overlay). What the check compares:

- the raw frame the output belongs to: the window's newest frame, or its centre for a
  centre-target multi-frame model (``spec.target_frame == "centre"``);
- the noise model: the camera calibration given (a ``live-pssr calibrate`` YAML, loaded and
  validated once by :func:`consistency_spec`, before a run claims its path: a bad file fails the
  run's start, never a frame), else estimated from each frame;
- the PSF: from the model's training provenance (:func:`~live_pssr.consistency.psf_sigma_from_spec`).

A frame the check cannot judge (a constant or clipped raw frame, a blank output) keeps its
enhanced frame: its consistency is *unavailable* (NaN score, no map, the reason counted once in
the run's errors) and the run goes on. Any other exception of the check is treated the same way
(never a lost enhanced frame, never a stopped run), and reported.

Memory stays bounded: the tally keeps a 1000-bin score histogram, counts, and flagged frames as
index ranges (at most :data:`MAX_RANGES`; beyond that only the count grows).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..consistency import DEFAULT_FALSE_ALARM, ConsistencyResult, camera_noise, check_consistency
from ..errors import ConfigError, LivePSSRError

MAX_RANGES = 10_000
SCORE_BINS = 1000


@dataclass(frozen=True)
class ConsistencySpec:
    """How the live check runs: every ``every``-th frame index, with this noise model.

    ``camera``: None (estimate the noise from each frame) or a camera object (see
    :func:`~live_pssr.consistency.check_consistency`); :func:`consistency_spec` loads a calibration
    file into one. ``camera_label``: where it came from (for the store's metadata).
    """

    every: int = 1
    camera: Any = None
    false_alarm: float = DEFAULT_FALSE_ALARM
    camera_label: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int | np.integer) or self.every < 1:
            raise ConfigError(f"consistency_every={self.every!r} must be a whole number >= 1",
                              "check every frame with 1, every 4th with 4")
        if not 0 < float(self.false_alarm) < 1:
            raise ConfigError(f"false_alarm={self.false_alarm!r} must be a probability between 0 and 1",
                              f"e.g. {DEFAULT_FALSE_ALARM}")


def consistency_spec(consistency: bool | ConsistencySpec | None, every: int = 1,
                     camera: Any = None) -> ConsistencySpec | None:
    """The one reading of the ``consistency=`` / ``consistency_every=`` / ``camera=`` options.

    A calibration file (``camera`` a path) is loaded and validated here, once:
    :class:`~live_pssr.errors.ConfigError` naming the file and the fix when it does not validate.
    """
    if isinstance(consistency, ConsistencySpec):
        return consistency
    if consistency is None or consistency is False:
        return None
    if consistency is not True:
        raise ConfigError(f"consistency={consistency!r} is not a setting",
                          "pass consistency=True, False or a ConsistencySpec")
    label = None
    if isinstance(camera, str | Path):
        from ..crappify import load_crappifier_file

        label = f"calibration {camera}"
        camera = load_crappifier_file(camera)
    if camera is not None:
        noise = camera_noise(camera)  # validates: a ConfigError now, not on every frame
        if isinstance(camera, dict):  # built once, not per frame
            from ..crappify import make_crappifier

            camera = make_crappifier(camera)
        label = f"{label}: {noise.source.split(': ', 1)[-1]}" if label else noise.source
    return ConsistencySpec(every=every, camera=camera, camera_label=label)


class ConsistencyTally:
    """Bounded counts of a run's checks (thread-safe): what the summary and the stats report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.checked = 0
        self.flagged = 0
        self.unavailable = 0
        self.last_score: float | None = None
        self._hist = np.zeros(SCORE_BINS, dtype=np.int64)
        self._ranges: list[list[int]] = []
        self._min: float | None = None

    def add(self, index: int, result: ConsistencyResult) -> None:
        with self._lock:
            self.checked += 1
            self.last_score = float(result.score)
            self._min = result.score if self._min is None else min(self._min, result.score)
            self._hist[min(SCORE_BINS - 1, max(0, int(result.score * SCORE_BINS)))] += 1
            if result.flagged:
                self.flagged += 1
                r = self._ranges
                if r and r[-1][1] == index - 1:
                    r[-1][1] = index
                elif len(r) < MAX_RANGES:
                    r.append([index, index])

    def add_unavailable(self) -> None:
        with self._lock:
            self.unavailable += 1

    def _percentile(self, q: float) -> float | None:
        if self.checked == 0:
            return None
        k = int(np.searchsorted(np.cumsum(self._hist), q / 100 * self.checked, side="left"))
        return round((min(k, SCORE_BINS - 1) + 0.5) / SCORE_BINS, 4)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: checked, flagged (count, fraction, frames), unavailable, score percentiles."""
        with self._lock:
            frames = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self._ranges)
            return {
                "checked": self.checked,
                "flagged": self.flagged,
                "flagged_fraction": round(self.flagged / self.checked, 5) if self.checked else None,
                "flagged_frames": frames + (" ..." if len(self._ranges) >= MAX_RANGES else ""),
                "unavailable": self.unavailable,
                "score_min": None if self._min is None else round(float(self._min), 4),
                **{f"score_p{q}": self._percentile(q) for q in (5, 50, 95)},
            }


class ConsistencyCheck:
    """Runs the check for one pipeline (made on the caller's thread, run after each output is written)."""

    def __init__(self, spec: ConsistencySpec, enhancer: Any) -> None:
        self.spec = spec
        self.model = getattr(enhancer, "model", None)
        self.upscale = int(getattr(enhancer, "upscale", 1))
        target = getattr(getattr(self.model, "spec", None), "target_frame", "newest")
        self.centre = target == "centre"
        self.camera = spec.camera
        self.noise_source = spec.camera_label or (
            "estimated from each frame" if self.camera is None else camera_noise(self.camera).source)
        self.tally = ConsistencyTally()

    def settings(self) -> dict[str, Any]:
        """What the store's metadata says about the check."""
        return {"every": int(self.spec.every), "false_alarm": float(self.spec.false_alarm),
                "noise": self.noise_source,
                "map": "signed, noise sigmas: > 0 structure added by the network, < 0 structure removed",
                "target_frame": "centre" if self.centre else "newest"}

    def due(self, index: int) -> bool:
        return index % self.spec.every == 0

    def run(self, window: Sequence[np.ndarray], out: np.ndarray
            ) -> tuple[ConsistencyResult | None, tuple[str, str] | None]:
        """Check ``out`` against its raw frame: (result, None), or (None, (why it is unavailable,
        the kind of reason: one error line per kind in the summary))."""
        raw = window[len(window) // 2] if self.centre else window[-1]
        try:
            result = check_consistency(raw, out, upscale=self.upscale, camera=self.camera,
                                       model=self.model, false_alarm=self.spec.false_alarm)
        except LivePSSRError as err:
            self.tally.add_unavailable()
            return None, (f"consistency unavailable: {err.message}", type(err).__name__)
        except Exception as err:  # a bug in the check: the frame keeps its enhancement; reported
            self.tally.add_unavailable()
            return None, (f"consistency check failed: {type(err).__name__}: {err}", "bug")
        return result, None
