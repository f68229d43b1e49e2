"""The correctness gate: an engine serves frames only if it reproduces fp32 eager PyTorch.

Every engine is checked on a calibration batch at the shape it was prepared for before it is
used: its output is compared with the model run in fp32 eager mode on the CPU (the reference),
as ``max |out - ref| / (max(ref) - min(ref))`` (the worst pixel relative to the image's range).
The bound depends on the precision (:data:`PRECISION_BOUNDS`); a NaN/Inf or a wrong shape never
passes. A failed gate raises :class:`~live_pssr.errors.EngineUnavailableError` and ``auto`` falls
back to the next engine.

The calibration input is a synthetic fluorescence-like frame (Gaussian spots and filaments on a
background, shot noise), normalised exactly like camera frames, unless a real frame is given.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel
from ..normalize import normalize, percentile_range
from .cache import CACHE_ENV, cache_root

#: worst-pixel error relative to the reference's range accepted per precision
PRECISION_BOUNDS: dict[str, float] = {"fp32": 1e-3, "fp16": 1e-2, "bf16": 3e-2, "int8": 5e-2}


@dataclass(frozen=True)
class GateResult:
    """Outcome of the correctness gate for one engine."""

    passed: bool
    max_rel_err: float
    bound: float
    reason: str = ""


def synthetic_frame(shape: tuple[int, int], seed: int = 0, photons: float = 200.0) -> np.ndarray:
    """A fluorescence-like float32 frame: spots and filaments, background, Poisson noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.full((h, w), 0.05, np.float32)
    for _ in range(max(4, h * w // 2048)):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        s = rng.uniform(1.0, 4.0)
        img += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    for _ in range(max(2, (h + w) // 64)):  # filaments: lines with a Gaussian profile
        cy, cx, th = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, np.pi)
        d = np.abs((yy - cy) * np.cos(th) - (xx - cx) * np.sin(th))
        img += 0.5 * np.exp(-(d**2) / 2.0)
    return rng.poisson(img * photons).astype(np.float32)


def calibration_batch(
    in_frames: int, shape: tuple[int, int], batch: int = 1, frame: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """A normalised float32 ``(batch, in_frames, H, W)`` input like the live path produces.

    ``frame`` (a real 2-D image of ``shape``) replaces the synthetic one; the extra frames of a
    multi-frame window are shifted by a pixel each (motion) with fresh noise.
    """
    out = np.empty((batch, in_frames, *shape), np.float32)
    rng = np.random.default_rng(seed + 1)
    for b in range(batch):
        base = synthetic_frame(shape, seed + b) if frame is None else np.asarray(frame, np.float32)
        for f in range(in_frames):
            img = np.roll(base, f - in_frames + 1, axis=1)
            if f != in_frames - 1 or b:
                img = img + rng.normal(0, max(1e-3, float(img.std()) * 0.05), img.shape).astype(np.float32)
            lo, hi = percentile_range(img)
            out[b, f] = normalize(img, lo, hi)
    return out


def reference_output(model: LoadedModel, batch: np.ndarray, device: str | None = None) -> np.ndarray:
    """The model's fp32 eager output: what every engine must reproduce.

    Computed where the model lives (the CPU after :func:`~live_pssr.modelio.load_model`), or on
    ``device`` (e.g. ``cuda`` for large frames) with TF32 disabled so it stays true fp32.
    """
    net = model.net
    here = next(iter(net.parameters()), torch.empty(0)).device
    if device is not None and torch.device(device) != here:
        net = copy.deepcopy(net).float().to(device)
        here = torch.device(device)
    x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(here)
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False,
                                                     allow_tf32=False):
        y = net(x)
    return y.float().cpu().numpy()


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    """``max|out - ref| / range(ref)``; ``inf`` for a shape mismatch or any non-finite value."""
    out = np.asarray(out)
    if out.shape != ref.shape or not np.all(np.isfinite(out)):
        return float("inf")
    span = float(ref.max() - ref.min()) or 1.0
    return float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64)))) / span


def check_engine(
    engine: object,
    model: LoadedModel,
    batch: np.ndarray,
    ref: np.ndarray | None = None,
    bound: float | None = None,
) -> GateResult:
    """Run ``engine`` on ``batch`` and compare with the fp32 eager reference (never raises)."""
    precision = getattr(engine, "precision", "fp32")
    bound = PRECISION_BOUNDS.get(precision, PRECISION_BOUNDS["fp32"]) if bound is None else bound
    if ref is None:
        ref = reference_output(model, batch)
    try:
        out = engine.run(batch)  # type: ignore[attr-defined]
    except Exception as err:  # an engine that crashes fails the gate
        return GateResult(False, float("inf"), bound, f"run failed: {type(err).__name__}: {err}")
    out = np.asarray(out)
    if out.shape != ref.shape:
        return GateResult(False, float("inf"), bound, f"output shape {out.shape} != expected {ref.shape}")
    if not np.all(np.isfinite(out)):
        return GateResult(False, float("inf"), bound, "output contains NaN or Inf")
    err = relative_error(out, ref)
    if err > bound:
        reason = f"max relative error {err:.3g} exceeds the {precision} bound {bound:g}"
        return GateResult(False, err, bound, reason)
    return GateResult(True, err, bound)


def require_gate(
    engine: object, model: LoadedModel, batch: np.ndarray, ref: np.ndarray | None = None
) -> GateResult:
    """:func:`check_engine`, raising :class:`EngineUnavailableError` when the engine fails."""
    res = check_engine(engine, model, batch, ref)
    if not res.passed:
        label = f"{getattr(engine, 'name', '?')}:{getattr(engine, 'device', '?')}:" \
                f"{getattr(engine, 'precision', '?')}"
        raise EngineUnavailableError(
            f"engine {label} failed the correctness gate for model {model.model_id}: {res.reason}",
            "use --engine auto (it falls back to a correct engine) or --engine torch; "
            f"if a cached engine is stale, delete the cache folder {cache_root()} (${CACHE_ENV} moves it)",
        )
    return res


__all__ = [
    "PRECISION_BOUNDS",
    "GateResult",
    "calibration_batch",
    "check_engine",
    "reference_output",
    "relative_error",
    "require_gate",
    "synthetic_frame",
]
