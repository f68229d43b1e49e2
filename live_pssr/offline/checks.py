"""The optional checks of an offline run (``live-pssr enhance --consistency / --tta``), frame by frame.

Two signals, each frame judged on its own (:mod:`live_pssr.consistency` has the methods):

* ``consistency``: :func:`~live_pssr.consistency.check_consistency` of the raw frame against its
  enhanced frame as the enhancer returned it, in the input's units (the values written, before
  an output's rescaling to another dtype): does the enhanced frame, taken back to the camera,
  explain the raw frame within its noise?
  The forward blur defaults to the model's training provenance, the noise model to the frame
  itself (``camera``: a calibration YAML from ``live-pssr calibrate`` instead).
* ``tta``: :func:`~live_pssr.consistency.tta_disagreement`, the model's disagreement with
  itself under flips and rotations of its input window (8 transforms for square frames, the 4
  shape-preserving ones otherwise, so the engine keeps one frame shape). Costs that many extra
  enhancements per frame.

What is written beside the output ``OUT.EXT`` (``EXT``: ``.tif``, ``.ome.tif`` or ``.zarr``; a run
store ``OUT.ome.zarr`` keeps its consistency maps inside, as its image ``2`` (float16, with the
records' ``consistency``, ``consistency_max`` and ``flagged`` columns, like a live run's), and gets
an OME-Zarr image ``OUT.tta.zarr`` beside it):

* ``OUT.consistency.EXT``: per frame, the **signed consistency map** at the raw frame's size and
  pixel size (float32, noise units: ``> 0`` where the enhanced frame puts light the raw frame
  does not show (structure added), ``< 0`` where the raw frame holds light the enhanced frame
  lacks (structure removed); its absolute value is ``ConsistencyResult.error_map``; NaN where
  the check was unavailable for that frame);
* ``OUT.tta.EXT``: per frame, the TTA spread (per-pixel standard deviation of the de-augmented
  outputs) at the enhanced size, float32 in the output's value units;
* ``OUT.consistency.json``: the settings, one record per frame (score, flagged, added, removed,
  error maxima, peak, chi², TTA disagreement) and the summary (score distribution, flagged
  frames, unavailable frames).

A frame the check cannot judge (a constant raw frame, a blank enhanced one) keeps its
enhancement: its record says ``available: false`` and why, its map is NaN, and the run goes on.
Settings that cannot work (a calibration that does not validate, a negative blur) are refused
before any frame is enhanced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..consistency import (
    DEFAULT_FALSE_ALARM,
    camera_noise,
    check_consistency,
    psf_sigma_from_spec,
    tta_disagreement,
    valid_psf_sigma,
)
from ..errors import LivePSSRError

#: the JSON report's format tag (``live_pssr.format``)
REPORT_FORMAT = "live-pssr-consistency"
REPORT_VERSION = 1
#: per-frame record keys copied from ConsistencyResult.summary()
RECORD_KEYS = ("score", "flagged", "added", "removed", "max_error", "max_added", "max_removed", "peak",
               "chi2")


@dataclass(frozen=True)
class FrameChecks:
    """Which checks are made per frame, with the settings every worker uses (picklable).

    ``camera``: a calibration YAML (path), a camera object or None (noise estimated from each
    frame); ``psf_sigma_px`` None: from the model's provenance. :meth:`resolve` fills both in and
    validates them before any frame is checked.
    """

    consistency: bool = True
    tta: bool = False
    psf_sigma_px: float | None = None
    psf_source: str = "given"
    camera: Any = None
    noise_source: str = "estimated from each frame"

    @property
    def any(self) -> bool:
        return self.consistency or self.tta

    def resolve(self, model: Any) -> FrameChecks:
        """These checks with the blur and noise resolved and validated (ConfigError otherwise)."""
        if not self.consistency:
            return self
        psf, source = self.psf_sigma_px, self.psf_source
        if psf is None:
            psf, source = psf_sigma_from_spec(model)
        noise = self.noise_source
        if self.camera is not None:
            noise = camera_noise(self.camera).source  # a calibration that does not validate: ConfigError
        return replace(self, psf_sigma_px=valid_psf_sigma(psf), psf_source=source, noise_source=noise)

    def settings(self) -> dict[str, Any]:
        """JSON-ready description (for the report and the maps' metadata)."""
        camera = str(self.camera) if isinstance(self.camera, str | Path) else None
        return {"consistency": self.consistency, "tta": self.tta, "psf_sigma_px": self.psf_sigma_px,
                "psf_source": self.psf_source, "camera": camera, "noise": self.noise_source,
                "false_alarm": DEFAULT_FALSE_ALARM}


def tta_transforms(frame_shape: tuple[int, int]) -> int:
    """8 flips/rotations for square frames; the 4 that keep the shape otherwise."""
    return 8 if frame_shape[0] == frame_shape[1] else 4


@dataclass
class FrameCheck:
    """One frame's outcome: its record and maps (None where that check was not asked for).

    ``result``: the frame's :class:`~live_pssr.consistency.ConsistencyResult` (None when not
    checked or unavailable), for a run store's records; never sent back from a worker.
    """

    record: dict[str, Any]
    signed_map: np.ndarray | None = None
    spread: np.ndarray | None = None
    result: Any = None


def check_frame(checks: FrameChecks, t: int, raw: np.ndarray, enhanced: np.ndarray, upscale: int,
                enhance_window: Callable[[list[np.ndarray]], np.ndarray] | None = None,
                window: list[np.ndarray] | None = None) -> FrameCheck:
    """Run ``checks`` on frame ``t``: ``raw`` and the ``enhanced`` frame made from it.

    ``enhance_window`` maps an input window (a list of frames, oldest first) to its enhanced
    frame, statelessly, and ``window`` is the window ``enhanced`` was made from (for ``tta``). A
    frame either check cannot judge gets ``available: false`` with the reason in its record and
    NaN maps; the run goes on.
    """
    record: dict[str, Any] = {"frame": int(t)}
    out = FrameCheck(record)
    if checks.consistency:
        try:
            r = check_consistency(raw, enhanced, upscale, checks.psf_sigma_px, checks.camera)
        except LivePSSRError as err:
            record.update(available=False, reason=err.message)
            out.signed_map = np.full(raw.shape, np.nan, np.float32)
        else:
            summary = r.summary()
            record.update(available=True, **{k: summary[k] for k in RECORD_KEYS})
            out.signed_map = r.signed_map.astype(np.float32, copy=False)
            out.result = r
    if checks.tta:
        assert enhance_window is not None and window is not None
        shape = (raw.shape[0] * upscale, raw.shape[1] * upscale)
        try:
            tta = tta_disagreement(enhance_window, list(window), tta_transforms(raw.shape))
        except LivePSSRError as err:
            record.update(tta_disagreement=None, tta_reason=err.message)
            out.spread = np.full(shape, np.nan, np.float32)
        else:
            record["tta_disagreement"] = round(tta.disagreement, 6)
            out.spread = tta.spread
    return out


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    v = np.asarray(values, np.float64)
    q = np.percentile(v, (0, 5, 50, 95, 100))
    return {"min": round(float(q[0]), 5), "p05": round(float(q[1]), 5), "median": round(float(q[2]), 5),
            "mean": round(float(v.mean()), 5), "p95": round(float(q[3]), 5), "max": round(float(q[4]), 5)}


#: flagged / unavailable frames listed in the summary (all are in the records)
LIST_LIMIT = 1000


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Score distribution, flagged and unavailable frames, TTA disagreement over ``records``."""
    records = sorted(records, key=lambda r: r["frame"])
    out: dict[str, Any] = {"frames": len(records)}
    if any("available" in r for r in records):
        checked = [r for r in records if r.get("available")]
        flagged = [r["frame"] for r in checked if r["flagged"]]
        unavailable = [r for r in records if r.get("available") is False]
        out.update(
            checked=len(checked), flagged=len(flagged), flagged_frames=flagged[:LIST_LIMIT],
            flag_rate=round(len(flagged) / len(checked), 5) if checked else None,
            added=sum(1 for r in checked if r["added"]), removed=sum(1 for r in checked if r["removed"]),
            score=_stats([r["score"] for r in checked]),
            max_error=_stats([r["max_error"] for r in checked]),
            unavailable=len(unavailable),
            unavailable_frames=[{"frame": r["frame"], "reason": r["reason"]}
                                for r in unavailable[:LIST_LIMIT]])
    if any("tta_disagreement" in r for r in records):
        out["tta_disagreement"] = _stats([r["tta_disagreement"] for r in records
                                          if r.get("tta_disagreement") is not None])
    return out


def describe(summary: dict[str, Any]) -> str:
    """One line for the console: how many frames were checked, the scores, the flagged frames."""
    parts = []
    if "checked" in summary:
        s = summary["score"]
        score = f", score median {s['median']:.4f} (min {s['min']:.4f})" if s else ""
        flagged = summary["flagged_frames"]
        which = ""
        if flagged:
            shown = ", ".join(str(f) for f in flagged[:10]) + (", ..." if summary["flagged"] > 10 else "")
            which = f" (frame{'s' if len(flagged) > 1 else ''} {shown})"
        parts.append(f"consistency: {summary['checked']} of {summary['frames']} frame(s) checked{score}; "
                     f"{summary['flagged']} flagged{which}")
        if summary["unavailable"]:
            first = summary["unavailable_frames"][0]
            parts.append(f"{summary['unavailable']} frame(s) could not be checked (frame {first['frame']}: "
                         f"{first['reason']})")
    if summary.get("tta_disagreement"):
        t = summary["tta_disagreement"]
        parts.append(f"TTA disagreement median {t['median']:.4f} (max {t['max']:.4f})")
    return "; ".join(parts)


__all__ = ["REPORT_FORMAT", "REPORT_VERSION", "FrameCheck", "FrameChecks", "check_frame", "describe",
           "summarize", "tta_transforms"]
