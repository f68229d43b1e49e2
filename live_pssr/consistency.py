"""Does the enhanced frame explain the raw frame? A per-frame consistency check, fast enough to run live.

A network trained on crappified images can draw structure that is not in the sample (or leave out
structure that is). The raw camera frame is the only measurement there is, so the check asks one
question of every frame: *is the raw frame what the camera would have recorded, give or take its
noise, had the sample looked like the enhanced frame?* (the question NanoJ-SQUIRREL asks offline,
answered here per frame, with the camera's noise model instead of a global error).

Method
------
1. **Forward model** (enhanced frame -> camera). ``F = A(G_s * E)``: a Gaussian blur ``G_s`` of
   ``psf_sigma_px`` enhanced pixels (the part of the optics the network's output does not carry),
   then area integration over each ``upscale x upscale`` block (a camera pixel collects the light
   falling on it; block mean). Both at once, as a separable strided filter whose taps are the box
   convolved with the Gaussian: one pass along y over whole rows of the enhanced frame (read
   once), one along x on the ``upscale`` times smaller result. Default ``psf_sigma_px``:
   :func:`psf_sigma_from_spec` (from the model's training provenance: 0 for the simulator and for
   camera crappifiers without blur, whose targets already carry the PSF; the excess of PSSR's
   Gaussian-plus-bilinear downsampling over area integration for PSSR's crappifiers; 0 when the
   provenance names no crappifier).
2. **Intensity fit.** ``raw ~ a * F + b`` by iteratively reweighted least squares from the
   least-squares start: weights are the inverse noise variance times a Huber weight (k = 2) once,
   then Tukey's biweight (c = 4.685: pixels off by more than that weigh nothing), so an invented or
   erased structure does not drag the fit (and then show up as false errors everywhere else);
   ``a >= 0``. The enhanced frame's units and offset do not matter. The fit and the noise estimate
   use a strided subsample of about :data:`FIT_PIXELS` pixels; everything else uses every pixel.
3. **Noise** (Poisson-Gaussian). The expected variance of a camera pixel whose mean is ``mu`` ADU is
   ``gain * (mu - offset) + gain**2 * read_noise**2 + 1/12`` (rounding; integer frames), evaluated at
   the fitted ``mu = a * F + b`` (noise-free), from ``camera=``: a calibration YAML written by
   ``live-pssr calibrate``, a crappifier config of kind ``camera``, a ``CameraCrappifier``, the
   simulator's ``CameraModel`` or a ``PhotonTransferFit``. Without one it is **estimated from the
   frame**: the line ``var = alpha * mu + beta`` is fitted to the squared residuals (weights
   ``1 / var**2``; pixels beyond 3 sigma left out and the truncation corrected), alternating with
   the intensity fit. A local inconsistency hardly moves that estimate, but an enhanced frame that
   is wrong everywhere inflates it: pass the camera for a check that cannot be argued away.
   Pixels at 0 or at saturation are left out (clipping breaks the noise model).
4. **Normalised residual** ``z = (raw - mu) / sqrt(var)``: unit-variance noise wherever the
   enhanced frame explains the raw frame. Each pixel's ``|z|`` is capped at
   :data:`Z_CAP` so one hot pixel or cosmic ray cannot raise a flag alone (a structure spans
   several pixels and still does).
5. **Smoothing at the PSF's scale**: a Gaussian of ``smooth_sigma_px`` camera pixels (default
   :data:`SMOOTH_SIGMA_PX` = 1: the PSF of a Nyquist-sampled camera; PSSR's undersampled cameras see
   a narrower one, and a structure cannot be placed more finely than a camera pixel), with the
   kernel scaled to unit sum of squares and each pixel renormalised by the kernel mass inside the
   frame, so pure noise gives a unit-variance smooth field everywhere, borders included. A
   misplaced or invented structure (many neighbouring pixels of one sign) stands out; noise does
   not. ``signed_map = -smooth(z)``: **> 0 where the enhanced frame puts light the raw frame does not
   show (structure added), < 0 where the raw frame holds light the enhanced frame lacks (structure
   removed)**. ``error_map = |signed_map|``.
6. **Flag threshold, from the noise statistics.** ``flagged`` when ``error_map.max()`` exceeds the
   level ``u`` that the maximum of ``|smoothed noise|`` over a frame of this size exceeds with
   probability ``false_alarm`` (default :data:`DEFAULT_FALSE_ALARM` = 1e-3 per frame), from the
   expected Euler characteristic of a smooth Gaussian random field (Worsley et al. 1996; area,
   boundary and point terms, lattice roughness ``2 (1 - exp(-1 / (4 s**2)))`` of white noise
   smoothed at ``s`` pixels, both signs). This bound is conservative: in simulation of white noise
   the real rate is about half of ``false_alarm`` or less. For ``s = 1`` the threshold is 5.38 at
   80², 5.81 at 256², 6.05 at 512². The flag is about noise only: at high photon counts a small but
   real misfit is significant, and it is flagged.
7. **Score** in [0, 1]: the fraction of the raw frame's structure (its variance above the noise,
   ``sum(((raw - mean) / sigma)**2 - 1)``) that the enhanced frame explains:
   ``1 - max(0, sum(z**2 - 1)) / that``. 1 = the residual is noise; it falls with the residual's
   excess power. It is a global number; the flag is the local decision.

Cost: one read of the enhanced frame plus a few passes over raw-size arrays, numpy/scipy only:
about 4-10 ms per 256² raw frame (1024² enhanced) and 15-30 ms per 512² on a shared 2-core AMD
EPYC, 1.5-3 % of the default model's enhancement time there (``live-pssr bench consistency``
measures it). A forward blur (``psf_sigma_px > 0``; not the shipped models' default) makes the
projection a 12-tap strided filter: 2-4x the cost, still under 5 % of the enhancement. A
torch tensor as ``enhanced`` is projected where it lies (on the GPU beside the engine) and only the
raw-size projection comes to the CPU.

Optional second signal: :func:`tta_disagreement` enhances the frame under the 8 flips/rotations
and reports the per-pixel spread of the results after undoing them (costs 8 enhancements: for
offline use and evaluation, not live).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy import optimize, stats

from .errors import ConfigError, FrameFormatError, FrameShapeError, LivePSSRError

#: per-frame probability that pure noise raises the flag (an upper bound, see the module docstring)
DEFAULT_FALSE_ALARM = 1e-3
#: default smoothing of the normalised residual, camera pixels (the PSF of a Nyquist-sampled camera)
SMOOTH_SIGMA_PX = 1.0
#: per-pixel cap on |z| before smoothing (a lone hot pixel / cosmic ray cannot flag a frame)
Z_CAP = 6.0
#: Gaussian kernels are cut at this many sigmas
TRUNCATE = 3.0
#: Huber constant (first reweighting) and Tukey biweight constant (later ones) of the intensity fit,
#: and the inlier cut (sigmas) of the noise estimate
HUBER_K = 2.0
TUKEY_C = 4.685
NOISE_CUT = 3.0
#: rounding variance of integer frames (ADU^2)
QUANTISATION_VAR = 1.0 / 12.0
#: alternations of intensity fit and noise estimate
ITERATIONS = 6
MIN_SIDE = 8
#: pixels the intensity fit and noise estimate use (a strided subsample of larger frames)
FIT_PIXELS = 8192
#: median of a chi-square variable with 1 degree of freedom
CHI2_1_MEDIAN = 0.454936
#: E[z² | |z| < NOISE_CUT] of a unit Gaussian (the noise estimate's truncation correction)
TRUNCATED_VAR = float(1.0 - 2.0 * NOISE_CUT * stats.norm.pdf(NOISE_CUT)
                      / (1.0 - 2.0 * stats.norm.sf(NOISE_CUT)))


class ConsistencyInputError(LivePSSRError, ValueError):
    """A frame pair the consistency check cannot judge (e.g. a constant frame: nothing to compare)."""


# ----------------------------------------------------------------------------------------------
# noise model


@dataclass(frozen=True)
class NoiseModel:
    """Expected variance (ADU²) of a camera pixel with mean ``mu`` ADU: ``slope * mu + intercept``.

    For a camera ``slope = gain`` and ``intercept = gain**2 * read_noise**2 + q - gain * offset``
    (``q`` = 1/12 for integer frames); below the offset only the read noise remains (``floor``).
    ``source`` says where the numbers come from.
    """

    slope: float
    intercept: float
    floor: float
    source: str
    #: the camera's largest value (pixels there are clipped), when known
    saturation: float | None = None

    def variance(self, mu: np.ndarray) -> np.ndarray:
        return np.maximum(self.slope * mu + self.intercept, self.floor)


def camera_noise(camera: Any, integer: bool = True) -> NoiseModel:
    """The :class:`NoiseModel` of ``camera`` (see :func:`check_consistency` for what it may be).

    Raises :class:`~live_pssr.errors.ConfigError` for a file or config that does not validate.
    """
    source = type(camera).__name__
    if isinstance(camera, str | Path):
        from .crappify import load_crappifier_file

        source = f"calibration {camera}"
        camera = load_crappifier_file(camera)
    if isinstance(camera, dict):
        from .crappify import make_crappifier

        kind = camera.get("kind")
        if kind not in ("camera", "file"):
            raise ConfigError(f"the camera config is of kind {kind!r}, not a camera model",
                              "pass a calibration written by `live-pssr calibrate` (kind: camera), "
                              "or camera=None to estimate the noise from the frame")
        source = "camera config" if source == "dict" else source
        camera = make_crappifier(camera)
    values = {}
    bits = getattr(camera, "bit_depth", None)
    saturation = float(2 ** int(bits) - 1) if isinstance(bits, int | np.integer) and not isinstance(
        bits, bool) and 1 <= bits <= 32 else None
    for name in ("gain", "offset", "read_noise"):
        v = getattr(camera, name, None)
        try:
            v = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"camera {camera!r} has no numeric {name}",
                              "pass a calibration YAML from `live-pssr calibrate`, a CameraCrappifier, "
                              "the simulator's CameraModel, or None (estimate from the frame)") from None
        if not math.isfinite(v) or v < 0 or (name == "gain" and v == 0):
            raise ConfigError(f"camera {name} is {v!r}",
                              f"{name} must be a finite number {'> 0' if name == 'gain' else '>= 0'}; "
                              "re-run `live-pssr calibrate` on raw frames of the camera")
        values[name] = v
    g, off, rn = values["gain"], values["offset"], values["read_noise"]
    q = QUANTISATION_VAR if integer else 0.0
    floor = g * g * rn * rn + q
    if floor <= 0:
        floor = max(1e-3 * g, 1e-12)  # a noiseless floor would divide by zero
    return NoiseModel(slope=g, intercept=floor - g * off, floor=floor, saturation=saturation,
                      source=f"{source}: gain {g:.4g} ADU/e-, offset {off:.4g} ADU, read noise {rn:.3g} e-")


# ----------------------------------------------------------------------------------------------
# the PSF the model's training assumed


def _crappifier_blur_var(cfg: Any) -> tuple[float, int] | None:
    """(extra blur variance in high-res px² beyond area integration, scale) of one crappifier config."""
    if not isinstance(cfg, dict):
        return None
    kind = cfg.get("kind")
    try:
        scale = int(cfg.get("scale", 4))
        if kind == "camera":
            return float(cfg.get("psf_sigma_px", 0.0)) ** 2, scale
        if kind in ("pssr-fluo", "downsample", "pssr-em"):
            # Gaussian pre-filter of sigma (s - 1) / 2 (antialias), then bilinear sampling at
            # (s - 1) / 2 inside each block (variance w (1 - w), w its fraction); area integration
            # alone has variance (s**2 - 1) / 12: the excess is the extra blur.
            antialias = bool(cfg.get("antialias", kind != "pssr-em"))
            pos = (scale - 1) / 2
            w = pos - math.floor(pos)
            var = (pos**2 if antialias else 0.0) + w * (1 - w) - (scale**2 - 1) / 12
            return max(var, 0.0), scale
        if kind == "compose":
            total, cum = 0.0, 1
            for step in cfg.get("steps", []):
                got = _crappifier_blur_var(step)
                if got is None:
                    return None
                total += got[0] * cum**2
                cum *= got[1]
            return total, cum
    except (TypeError, ValueError):
        return None
    return None


def psf_sigma_from_crappifier(cfg: Any) -> float | None:
    """The forward blur (enhanced pixels) that matches crappifier config ``cfg`` (None: unknown kind).

    As :func:`psf_sigma_from_spec` reads each training source: a ``camera`` crappifier's
    ``psf_sigma_px``; for PSSR's crappifiers the part of their blur beyond area integration.
    """
    got = _crappifier_blur_var(cfg)
    return None if got is None else math.sqrt(got[0])


def psf_sigma_from_spec(spec: Any) -> tuple[float, str]:
    """Default forward blur (enhanced pixels) for a model: ``(psf_sigma_px, where it comes from)``.

    ``spec``: a :class:`~live_pssr.modelio.ModelSpec` or a loaded model (``.spec``). Read from the
    training provenance (``spec.training["data"]``, else the config's ``data.sources``):

    * ``sim`` sources and ``camera`` crappifiers model a physical camera: their targets already
      carry the PSF and the camera integrates area, so the blur is the crappifier's
      ``psf_sigma_px`` (0 for the simulator). These are preferred when present;
    * PSSR's crappifiers (``pssr-fluo``, ``downsample``, ``pssr-em``) blur with a Gaussian and
      sample bilinearly: the blur is the part of their variance beyond area integration
      (sqrt(1.25) = 1.118 px at scale 4 with antialiasing);
    * several sources: the training-weight average of their variances;
    * no usable provenance (real pairs only, a hand-made spec): 0 (area integration only).
    """
    spec = getattr(spec, "spec", spec)
    training = getattr(spec, "training", None)
    sources: list[Any] = []
    if isinstance(training, dict):
        data = training.get("data")
        if not isinstance(data, list):
            cfg = training.get("config")
            data = cfg.get("data", {}).get("sources") if isinstance(cfg, dict) and isinstance(
                cfg.get("data"), dict) else None
        sources = [s for s in data if isinstance(s, dict)] if isinstance(data, list) else []
    physical: list[tuple[float, float]] = []
    other: list[tuple[float, float]] = []
    for s in sources:
        try:
            weight = float(s.get("weight", 1.0))
        except (TypeError, ValueError):
            weight = 1.0
        if not weight > 0:
            continue
        if s.get("kind") == "sim":
            physical.append((0.0, weight))
            continue
        got = _crappifier_blur_var(s.get("crappifier"))
        if got is None:
            continue
        kind = s["crappifier"].get("kind")
        (physical if kind == "camera" else other).append((got[0], weight))
    chosen, what = (physical, "its simulator / camera-model training data") if physical else (
        other, "its PSSR crappifier")
    if not chosen:
        return 0.0, "no crappifier in the model's training provenance: area integration only"
    var = sum(v * w for v, w in chosen) / sum(w for _, w in chosen)
    name = getattr(spec, "name", "the model")
    return math.sqrt(var), f"{name}: from {what}"


# ----------------------------------------------------------------------------------------------
# forward model


@lru_cache(maxsize=32)
def _forward_taps(upscale: int, sigma: float) -> tuple[np.ndarray, int]:
    """1-D taps (box of ``upscale`` convolved with a Gaussian, normalised) and the Gaussian radius."""
    if sigma <= 0:
        return np.full(upscale, 1.0 / upscale), 0
    radius = int(math.ceil(3.0 * sigma))
    x = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    taps = np.convolve(np.ones(upscale), g) / upscale  # length upscale + 2 * radius
    return taps, radius


def _reflect(i: int, n: int) -> int:
    """numpy's / torch's ``reflect`` border (the edge pixel is not repeated)."""
    i = abs(i)
    return 2 * (n - 1) - i if i > n - 1 else i


def _strided_pass(e: np.ndarray, upscale: int, taps: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """``out[j] = sum_m taps[m] * e[j * upscale + m - radius]`` along ``axis`` (float32, reflect borders).

    Each tap is one strided slice of ``e`` (whole rows for axis 0: contiguous, fast); only the
    outputs whose taps fall outside the frame (within ``radius`` of a border) take single lines.
    """
    n = e.shape[axis]
    h = n // upscale
    shape = list(e.shape)
    shape[axis] = h
    out = np.zeros(shape, np.float32)

    def line(arr: np.ndarray, sl: Any) -> np.ndarray:
        return arr[sl] if axis == 0 else arr[:, sl]

    scratch = np.empty(shape, np.float32)
    for m, tap in enumerate(taps):
        off = m - radius
        t = np.float32(tap)
        j_lo = max(0, -(off // upscale))  # first j with off + j * upscale >= 0
        j_hi = min(h, (n - 1 - off) // upscale + 1)  # past the last j inside the frame
        if j_hi > j_lo:
            src = line(e, slice(off + j_lo * upscale, off + (j_hi - 1) * upscale + 1, upscale))
            dst = line(out, slice(j_lo, j_hi))
            if t == 1:
                np.add(dst, src, out=dst, casting="unsafe")
            else:
                tmp = line(scratch, slice(j_lo, j_hi))
                np.multiply(src, t, out=tmp, casting="unsafe")
                dst += tmp
        for j in (*range(0, min(j_lo, h)), *range(max(j_hi, 0), h)):
            line(out, j)[...] += line(e, _reflect(off + j * upscale, n)) * t
    return out


def _project_numpy(enhanced: np.ndarray, upscale: int, sigma: float) -> np.ndarray:
    """``A(G_sigma * E)`` as float32 of the raw shape: a strided pass along y, then along x."""
    if upscale == 1 and sigma <= 0:
        return enhanced.astype(np.float32)
    taps, radius = _forward_taps(upscale, sigma)
    if radius == 0:  # block mean: sums of whole rows first (contiguous), then of columns
        taps = np.ones(upscale)
    rows = _strided_pass(enhanced, upscale, taps, radius, 0)
    out = _strided_pass(rows, upscale, taps, radius, 1)
    if radius == 0:
        out *= np.float32(1.0 / (upscale * upscale))
    return out


def _project_torch(enhanced: Any, upscale: int, sigma: float) -> np.ndarray:
    """Same as :func:`_project_numpy` for a torch tensor, on its device; returns numpy float32."""
    import torch
    import torch.nn.functional as tf

    taps, radius = _forward_taps(upscale, sigma)
    with torch.no_grad():
        x = enhanced.detach().to(torch.float32)[None, None]
        if radius:
            x = tf.pad(x, (radius, radius, radius, radius), mode="reflect")
        k = torch.as_tensor(taps, dtype=torch.float32, device=x.device)
        x = tf.conv2d(x, k.view(1, 1, 1, -1), stride=(1, upscale))
        x = tf.conv2d(x, k.view(1, 1, -1, 1), stride=(upscale, 1))
        return x[0, 0].cpu().numpy()


def forward_project(enhanced: Any, upscale: int, psf_sigma_px: float = 0.0) -> np.ndarray:
    """The camera's noise-free view of ``enhanced`` (up to intensity scale): blur, then area integration.

    ``enhanced``: a 2-D numpy array or torch tensor whose sides are multiples of ``upscale``.
    Returns float32 ``(H // upscale, W // upscale)`` (block means of the blurred frame).
    """
    if _is_torch(enhanced):
        return _project_torch(enhanced, upscale, psf_sigma_px)
    return _project_numpy(np.asarray(enhanced), upscale, psf_sigma_px)


def _is_torch(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "torch"


# ----------------------------------------------------------------------------------------------
# smoothing and threshold


@lru_cache(maxsize=32)
def _smooth_kernel(sigma: float) -> np.ndarray:
    radius = max(int(TRUNCATE * sigma + 0.5), 1)
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / math.sqrt(np.sum(k**2))).astype(np.float32)  # 1-D kernel of unit sum of squares


@lru_cache(maxsize=32)
def _edge_norm(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """1 / sqrt(kernel² mass inside the frame) per pixel (1 in the interior)."""
    k2 = _smooth_kernel(sigma).astype(np.float64) ** 2
    cy = np.convolve(np.ones(shape[0]), k2, mode="same")
    cx = np.convolve(np.ones(shape[1]), k2, mode="same")
    return (1.0 / np.sqrt(np.outer(cy, cx))).astype(np.float32)


def smooth_unit(z: np.ndarray, sigma: float, valid: np.ndarray | None = None) -> np.ndarray:
    """Smooth ``z`` with a Gaussian of ``sigma`` px scaled so unit white noise stays unit variance.

    Pixels outside the frame (and, with ``valid``, invalid pixels, whose ``z`` must be 0) count as
    missing: each output pixel is renormalised by the kernel's sum of squares over present pixels.
    """
    k = _smooth_kernel(float(sigma))
    out = ndi.correlate1d(ndi.correlate1d(z, k, axis=0, mode="constant"), k, axis=1, mode="constant")
    if valid is None or valid.all():
        out *= _edge_norm(z.shape, float(sigma))
        return out
    k2 = k * k
    mass = ndi.correlate1d(ndi.correlate1d(valid.astype(np.float32), k2, axis=0, mode="constant"), k2,
                           axis=1, mode="constant")
    out /= np.sqrt(np.maximum(mass, 1e-3))
    return out


def _rft_exceedance(u: float, shape: tuple[int, int], sigma: float) -> float:
    """Expected Euler characteristic bound on P(max |smoothed noise| > u) over a frame (both signs)."""
    lam = 2.0 * (1.0 - math.exp(-1.0 / (4.0 * sigma * sigma)))  # lattice roughness
    h, w = shape
    e = math.exp(-0.5 * u * u)
    ec = (h * w * lam / (2 * math.pi) ** 1.5 * u * e + (h + w) * math.sqrt(lam) / (2 * math.pi) * e
          + float(stats.norm.sf(u)))
    return 2.0 * ec


@lru_cache(maxsize=64)
def flag_threshold(shape: tuple[int, int], smooth_sigma_px: float = SMOOTH_SIGMA_PX,
                   false_alarm: float = DEFAULT_FALSE_ALARM) -> float:
    """The ``error_map`` level pure noise exceeds in a ``shape`` frame with probability <= ``false_alarm``."""
    shape = (int(shape[0]), int(shape[1]))
    return float(optimize.brentq(lambda u: _rft_exceedance(u, shape, smooth_sigma_px) - false_alarm,
                                 0.5, 40.0, xtol=1e-6))


# ----------------------------------------------------------------------------------------------
# the result


@dataclass(frozen=True)
class ConsistencyResult:
    """How well an enhanced frame explains its raw frame (see the module docstring for the method).

    Attributes
    ----------
    score : float
        In [0, 1]: the fraction of the raw frame's structure (variance above noise) the enhanced
        frame explains; 1 = the residual is noise.
    error_map : np.ndarray
        float32, raw shape: ``|signed_map|``; larger = less consistent there.
    signed_map : np.ndarray
        float32, raw shape: smoothed normalised residual (noise: unit variance); > 0 where the
        enhanced frame adds light the raw frame does not show, < 0 where it lacks light the raw
        frame holds.
    flagged : bool
        ``error_map.max() > threshold``: the frame holds (or lacks) structure the raw frame does
        not support, beyond what noise explains at the ``false_alarm`` rate.
    threshold : float
        The flag level (from the frame size, smoothing and ``false_alarm``).
    peak : tuple of int
        ``(y, x)`` of ``error_map``'s maximum (raw pixels).
    """

    score: float
    error_map: np.ndarray
    signed_map: np.ndarray
    flagged: bool
    threshold: float
    peak: tuple[int, int]
    max_added: float
    max_removed: float
    #: mean of z² over the checked pixels (1 = noise as modelled; < 1 a net that fits the noise)
    chi2: float
    #: the intensity fit raw ~ scale * F + offset
    fit_scale: float
    fit_offset: float
    noise: NoiseModel
    psf_sigma_px: float
    psf_source: str
    smooth_sigma_px: float
    false_alarm: float
    #: pixels left out (clipped at 0 or saturation)
    n_masked: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def added_map(self) -> np.ndarray:
        """Where the enhanced frame shows structure the raw frame does not (>= 0, z units)."""
        return np.maximum(self.signed_map, 0.0)

    @property
    def removed_map(self) -> np.ndarray:
        """Where the raw frame shows structure the enhanced frame lacks (>= 0, z units)."""
        return np.maximum(-self.signed_map, 0.0)

    @property
    def added(self) -> bool:
        """Structure added beyond the threshold somewhere."""
        return self.max_added > self.threshold

    @property
    def removed(self) -> bool:
        """Structure removed beyond the threshold somewhere."""
        return self.max_removed > self.threshold

    def flagged_fraction(self) -> float:
        """Fraction of raw pixels whose ``error_map`` exceeds the threshold."""
        return float(np.mean(self.error_map > self.threshold))

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars (for per-frame records and reports)."""
        return {"score": round(self.score, 5), "flagged": self.flagged, "added": self.added,
                "removed": self.removed, "max_error": round(float(self.error_map.max()), 3),
                "max_added": round(self.max_added, 3), "max_removed": round(self.max_removed, 3),
                "threshold": round(self.threshold, 3), "peak": list(self.peak),
                "chi2": round(self.chi2, 4), "psf_sigma_px": self.psf_sigma_px,
                "smooth_sigma_px": self.smooth_sigma_px, "false_alarm": self.false_alarm,
                "noise": self.noise.source, "n_masked": self.n_masked, "notes": list(self.notes)}


# ----------------------------------------------------------------------------------------------
# checks of the inputs


def _positive_number(name: str, value: Any, allow_zero: bool, hint: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{name}={value!r} must be a finite number {'>= 0' if allow_zero else '> 0'}", hint)
    return v


def valid_psf_sigma(value: Any) -> float:
    """``psf_sigma_px`` as :func:`check_consistency` takes it (a finite number >= 0); else ConfigError."""
    return _positive_number("psf_sigma_px", value, True,
                            "the blur in enhanced pixels, e.g. 0 (targets carry the PSF) or 1.1")


def _check_inputs(raw: Any, enhanced: Any, upscale: Any) -> tuple[np.ndarray, int]:
    if isinstance(upscale, bool) or not isinstance(upscale, int | np.integer) or upscale < 1:
        raise ConfigError(f"upscale={upscale!r} must be a whole number >= 1",
                          "pass the model's upscale (4 for the 4x models, 1 for denoising)")
    upscale = int(upscale)
    if _is_torch(raw):
        raw = raw.detach().cpu().numpy()
    raw = np.asarray(raw)
    for what, arr in (("raw", raw), ("enhanced", enhanced)):
        ndim = arr.dim() if _is_torch(arr) else np.ndim(arr)
        if ndim != 2:
            raise FrameFormatError(f"the {what} frame has {ndim} dimensions {tuple(arr.shape)}; the check "
                                   "takes one 2-D frame", "pass single planes (one time point, one channel)")
    if raw.dtype.kind not in "uif" or raw.dtype == np.bool_:
        raise FrameFormatError(f"the raw frame holds {raw.dtype} data",
                               "pass the camera frame (integer or float)")
    if not _is_torch(enhanced) and np.asarray(enhanced).dtype.kind not in "uif":
        raise FrameFormatError(f"the enhanced frame holds {np.asarray(enhanced).dtype} data",
                               "pass the enhanced frame as numbers (the Enhancer's output)")
    h, w = raw.shape
    if min(h, w) < MIN_SIDE:
        raise FrameFormatError(f"the raw frame is only {h}x{w} pixels",
                               f"check frames of at least {MIN_SIDE}x{MIN_SIDE} camera pixels")
    eh, ew = tuple(int(s) for s in enhanced.shape)
    if (eh, ew) != (h * upscale, w * upscale):
        ratio = f"{eh / h:.3g} x {ew / w:.3g}"
        raise FrameShapeError(
            f"the enhanced frame is {eh}x{ew} but the raw frame {h}x{w} times upscale {upscale} is "
            f"{h * upscale}x{w * upscale} (their ratio is {ratio})",
            "pass the enhanced frame made from this raw frame, and upscale = the model's upscale "
            "(enhanced size / raw size); crop neither")
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        bad = int(raw.size - np.count_nonzero(np.isfinite(raw)))
        raise FrameFormatError(f"the raw frame holds {bad} NaN/Inf value(s)",
                               "pass the camera frame as recorded (NaN/Inf are not camera values)")
    return raw, upscale


# ----------------------------------------------------------------------------------------------
# the check


def _wls_affine(f: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares ``y ~ a f + b`` with ``a >= 0`` (float64 moments)."""
    sw = float(w.sum())
    wf = w * f
    swf, swy = float(wf.sum()), float(w @ y)
    mf, my = swf / sw, swy / sw
    sff = float(wf @ f) - swf * mf
    sfy = float(wf @ y) - swf * my
    a = max(sfy / sff, 0.0) if sff > 0 else 0.0
    return a, my - a * mf


def _estimate_noise(r2: np.ndarray, mu: np.ndarray, var: np.ndarray) -> tuple[float, float]:
    """Fit ``r² ~ alpha mu + beta`` on pixels within NOISE_CUT sigmas (weights 1/var²), bias-corrected."""
    inl = r2 < (NOISE_CUT * NOISE_CUT) * var
    if inl.sum() < 16:
        inl = np.ones_like(inl)
    alpha, beta = _wls_affine(mu, r2, inl / (var * var))
    return alpha / TRUNCATED_VAR, beta / TRUNCATED_VAR


def check_consistency(
    raw: Any,
    enhanced: Any,
    upscale: int = 4,
    psf_sigma_px: float | None = None,
    camera: Any = None,
    *,
    model: Any = None,
    smooth_sigma_px: float | None = None,
    false_alarm: float = DEFAULT_FALSE_ALARM,
) -> ConsistencyResult:
    """Check that ``enhanced`` explains ``raw`` within the camera's noise (method: module docstring).

    Parameters
    ----------
    raw : np.ndarray
        The camera frame (2-D, ADU as recorded: not background-subtracted or rescaled).
    enhanced : np.ndarray or torch.Tensor
        The enhanced frame made from it, ``upscale`` times larger on each side, any intensity
        units. A torch tensor is projected on its own device (GPU beside the engine).
    upscale : int
        The model's upscale.
    psf_sigma_px : float or None
        Extra blur of the forward model in enhanced pixels; None: from ``model``'s training
        provenance (:func:`psf_sigma_from_spec`), else 0.
    camera : None, str, Path, dict or camera object
        The noise model: a calibration YAML from ``live-pssr calibrate`` (path), a crappifier
        config ``{"kind": "camera", ...}``, a ``CameraCrappifier``, the simulator's
        ``CameraModel``, a ``PhotonTransferFit``, or any object with ``gain``, ``offset`` and
        ``read_noise``; None (or ``"frame"``): estimated from the frame. Pixels at 0 or at the
        camera's saturation (its ``bit_depth``; without a camera, a frame maximum of
        ``2**bits - 1`` for 8-16 bits) are left out.
    model : LoadedModel or ModelSpec, optional
        Where the default ``psf_sigma_px`` comes from; its upscale must equal ``upscale``.
    smooth_sigma_px : float or None
        Smoothing of the normalised residual in camera pixels (default :data:`SMOOTH_SIGMA_PX`,
        or the forward model's footprint in camera pixels when that is larger).
    false_alarm : float
        Per-frame probability (upper bound) that noise alone raises the flag.

    Raises
    ------
    FrameShapeError
        Sizes that do not match ``upscale``.
    FrameFormatError
        Not 2-D, not numeric, smaller than 8x8, NaN/Inf in either frame.
    ConsistencyInputError
        A constant raw frame, or an enhanced frame that is constant on the camera grid.
    ConfigError
        A calibration that does not validate, a bad parameter.
    """
    raw, upscale = _check_inputs(raw, enhanced, upscale)
    notes: list[str] = []
    spec = getattr(model, "spec", model)
    if spec is not None and getattr(spec, "upscale", upscale) != upscale:
        raise ConfigError(f"upscale={upscale} but the model {getattr(spec, 'name', '')!r} upscales by "
                          f"{spec.upscale}", f"pass upscale={spec.upscale} (or leave the model out)")
    if psf_sigma_px is None:
        psf_sigma_px, psf_source = psf_sigma_from_spec(spec) if spec is not None else (
            0.0, "no model given: area integration only")
    else:
        psf_source = "given"
    psf_sigma_px = valid_psf_sigma(psf_sigma_px)
    false_alarm = float(false_alarm)
    if not 0 < false_alarm < 1:
        raise ConfigError(f"false_alarm={false_alarm!r} must be a probability between 0 and 1",
                          f"e.g. {DEFAULT_FALSE_ALARM} (one false flag in about 1000 frames or fewer)")
    if math.ceil(3.0 * psf_sigma_px) >= min(raw.shape) * upscale:
        raise ConfigError(f"psf_sigma_px={psf_sigma_px:g} is as wide as the frame itself",
                          "pass the PSF's sigma in enhanced pixels (typically 0-3)")
    footprint = math.sqrt(psf_sigma_px**2 + (upscale**2 - 1) / 12) / upscale
    if smooth_sigma_px is None:
        smooth_sigma_px = max(SMOOTH_SIGMA_PX, round(footprint, 3))
    smooth_sigma_px = _positive_number("smooth_sigma_px", smooth_sigma_px, False,
                                       f"the smoothing in camera pixels, e.g. {SMOOTH_SIGMA_PX}")

    f = forward_project(enhanced, upscale, psf_sigma_px)
    f_lo, f_hi = float(f.min()), float(f.max())
    if not (math.isfinite(f_lo) and math.isfinite(f_hi)):
        bad = int(f.size - np.count_nonzero(np.isfinite(f)))
        raise FrameFormatError(f"the enhanced frame holds NaN/Inf values (in {bad} camera-pixel block(s))",
                               "the model's output is unusable for this frame: keep the raw frame only")
    y_lo, y_hi = float(raw.min()), float(raw.max())
    if y_lo == y_hi:
        raise ConsistencyInputError(
            f"the raw frame is constant (every pixel {y_lo:g}): no signal or noise to check against",
            "check a camera frame of the sample (a closed shutter, blank or saturated frame is no check)")
    if f_lo == f_hi:
        raise ConsistencyInputError(
            "the enhanced frame is constant on the camera grid: it explains no structure to compare",
            "pass the model's output for this raw frame (a blank output means the enhancement failed)")

    integer = raw.dtype.kind in "ui"
    noise: NoiseModel | None = None
    if camera is not None and not (isinstance(camera, str) and camera == "frame"):
        noise = camera_noise(camera, integer)
    max_adu = None if noise is None else noise.saturation
    valid: np.ndarray | None = None
    n_masked = 0
    if integer:
        top = _saturation(raw.dtype, y_hi) if max_adu is None else max_adu
        if y_lo <= 0 or y_hi >= top:
            valid = (raw > 0) & (raw < top)
            n_masked = int(valid.size - np.count_nonzero(valid))
            if valid.size - n_masked < 64:
                raise ConsistencyInputError(
                    f"{n_masked} of {raw.size} raw pixels are clipped at 0 or saturation ({top:g})",
                    "lower the laser/exposure or raise the camera offset so the frame is not clipped")
            notes.append(f"{n_masked} clipped pixel(s) left out")

    # intensity fit and noise model on a strided subsample (plenty for 2 + 2 numbers)
    stride = max(1, math.ceil(math.sqrt(raw.size / FIT_PIXELS)))
    fs, ys = f[::stride, ::stride], raw[::stride, ::stride]
    if valid is not None:
        keep = valid[::stride, ::stride]
        fs, ys = fs[keep], ys[keep]
    a, b, noise = _fit(fs.astype(np.float64).ravel(), ys.astype(np.float64).ravel(), noise,
                       QUANTISATION_VAR if integer else 1e-12)
    if a == 0.0:
        notes.append("the enhanced frame does not correlate positively with the raw frame")

    # normalised residual over the whole frame (float32)
    mu = f * np.float32(a)
    mu += np.float32(b)
    inv_sd = noise.variance(mu).astype(np.float32, copy=False)
    np.sqrt(inv_sd, out=inv_sd)
    np.reciprocal(inv_sd, out=inv_sd)
    y = raw.astype(np.float32)
    z = np.subtract(y, mu, out=mu)
    z *= inv_sd
    n_valid = raw.size - n_masked
    if valid is not None:
        z[~valid] = 0.0
    zf = z.ravel()
    chi2 = float(np.dot(zf, zf)) / n_valid
    y -= np.float32(y.mean(dtype=np.float64) if valid is None else y[valid].mean(dtype=np.float64))
    y *= inv_sd
    if valid is not None:
        y[~valid] = 0.0
    yf = y.ravel()
    signal = float(np.dot(yf, yf)) - n_valid
    excess = max(0.0, chi2 * n_valid - n_valid)
    if a == 0.0:
        score = 0.0
    elif signal <= 0:
        score = 1.0 if excess == 0 else 0.0
    else:
        score = float(np.clip(1.0 - excess / signal, 0.0, 1.0))

    np.clip(z, -Z_CAP, Z_CAP, out=z)
    signed = smooth_unit(z, smooth_sigma_px, valid)
    np.negative(signed, out=signed)  # > 0: the enhanced frame adds light the raw frame lacks
    error = np.abs(signed)
    threshold = flag_threshold(raw.shape, smooth_sigma_px, false_alarm)
    peak = np.unravel_index(int(np.argmax(error)), error.shape)
    max_added, max_removed = float(signed.max()), float(-signed.min())
    return ConsistencyResult(
        score=score, error_map=error, signed_map=signed, flagged=bool(error[peak] > threshold),
        threshold=threshold, peak=(int(peak[0]), int(peak[1])), max_added=max_added,
        max_removed=max_removed, chi2=chi2, fit_scale=a, fit_offset=b, noise=noise,
        psf_sigma_px=float(psf_sigma_px), psf_source=psf_source, smooth_sigma_px=float(smooth_sigma_px),
        false_alarm=false_alarm, n_masked=n_masked, notes=tuple(notes))


def _saturation(dtype: np.dtype, top: float) -> float:
    """Without a camera: the frame's maximum counts as saturation when it is ``2**bits - 1`` of a usual
    ADC depth (8, 10, 12, 14, 16 bits) that the dtype holds; otherwise nothing is saturated."""
    limit = float(np.iinfo(dtype).max)
    for bits in (8, 10, 12, 14, 16):
        if top == 2**bits - 1 and top <= limit:
            return top
    return limit if top >= limit else math.inf


def _fit(f: np.ndarray, y: np.ndarray, noise: NoiseModel | None,
         min_var: float = 1e-12) -> tuple[float, float, NoiseModel]:
    """IRLS fit ``y ~ a f + b`` (Huber, inverse-variance weights), alternating with the noise estimate."""
    a, b = _wls_affine(f, y, np.ones_like(y))
    alpha = beta = 0.0
    var: np.ndarray | None = None
    floor = 0.0
    for it in range(ITERATIONS):
        mu = a * f + b
        r = y - mu
        if noise is not None:
            var = noise.variance(mu)
        else:
            r2 = r * r
            if var is None:  # first pass: one robust variance for every pixel
                var = np.full_like(r2, max(float(np.median(r2)) / CHI2_1_MEDIAN, min_var))
            alpha, beta = _estimate_noise(r2, mu, var)
            line = alpha * mu + beta
            floor = max(0.1 * float(line.mean()), min_var)
            var = np.maximum(line, floor)
        if it == ITERATIONS - 1:
            break
        z = np.abs(r) / np.sqrt(var)
        if it == 0:  # Huber from the least-squares start, then Tukey's biweight (outliers weigh 0)
            w = np.minimum(1.0, HUBER_K / np.maximum(z, 1e-12))
        else:
            w = np.square(np.maximum(1.0 - np.square(z / TUKEY_C), 0.0))
        a, b = _wls_affine(f, y, w / var)
    if noise is None:
        noise = NoiseModel(alpha, beta, floor,
                           f"estimated from the frame: var = {alpha:.4g} * mean {beta:+.4g} ADU²")
    return a, b, noise


# ----------------------------------------------------------------------------------------------
# optional second signal: test-time-augmentation disagreement

#: the 8 symmetries of the square: (k quarter turns, flip left-right first)
D4 = tuple((k, flip) for flip in (False, True) for k in range(4))


def _apply(x: np.ndarray, k: int, flip: bool) -> np.ndarray:
    if flip:
        x = x[..., ::-1]
    return np.rot90(x, k, axes=(-2, -1))


def _undo(x: np.ndarray, k: int, flip: bool) -> np.ndarray:
    x = np.rot90(x, -k, axes=(-2, -1))
    return x[..., ::-1] if flip else x


@dataclass(frozen=True)
class TTAResult:
    """Disagreement of a model with itself under flips and rotations of its input.

    Attributes
    ----------
    mean : np.ndarray
        float32, enhanced shape: mean of the de-augmented outputs.
    spread : np.ndarray
        float32, enhanced shape: their per-pixel standard deviation (the output's units).
    disagreement : float
        99th percentile of ``spread`` over the robust range (99.8th - 1st percentile) of ``mean``:
        0 = the model is equivariant here; 0.1 = spreads of 10 % of the image's range.
    n_transforms : int
    """

    mean: np.ndarray
    spread: np.ndarray
    disagreement: float
    n_transforms: int
    upscale: int

    @property
    def spread_raw(self) -> np.ndarray:
        """``spread`` averaged over each camera pixel's block (raw shape, to overlay on error_map)."""
        return forward_project(self.spread, self.upscale, 0.0)


def tta_disagreement(enhancer_fn: Callable[[Any], Any], raw: Any, transforms: int = 8) -> TTAResult:
    """Enhance ``raw`` under the symmetries of the square; report the spread of the de-augmented outputs.

    ``enhancer_fn`` maps a frame to its enhanced frame (stateless: e.g.
    ``lambda f: enhancer.enhance_window([f])``). ``raw`` is one 2-D frame, or a window of frames
    (a list or a 3-D array, oldest first) for a multi-frame model: every frame of the window gets
    the same transform and ``enhancer_fn`` receives the transformed window as a list.
    ``transforms``: 8 (flips and quarter turns; the turns of a non-square frame swap its sides, so
    the model must take both) or 4 (identity, the two flips and the half turn: shapes kept).
    Costs ``transforms`` enhancements: for offline use and evaluation, off live.
    """
    if transforms not in (4, 8):
        raise ConfigError(f"transforms={transforms!r} must be 4 or 8",
                          "8: all flips and quarter turns; 4: shape-preserving ones only")
    window = isinstance(raw, list | tuple) or np.ndim(raw) == 3
    frames = np.asarray(raw)
    if frames.ndim not in (2, 3) or frames.dtype.kind not in "uif":
        raise FrameFormatError(f"raw has shape {frames.shape} and dtype {frames.dtype}",
                               "pass one 2-D frame or a window of 2-D frames of numbers")
    if not np.isfinite(frames).all():
        raise FrameFormatError("the raw frame holds NaN/Inf values", "pass the camera frame as recorded")
    group = D4 if transforms == 8 else ((0, False), (0, True), (2, False), (2, True))
    total = sq = None
    upscale = 1
    for k, flip in group:
        x = np.ascontiguousarray(_apply(frames, k, flip))
        out = enhancer_fn(list(x) if window else x)
        out = out.detach().cpu().numpy() if _is_torch(out) else np.asarray(out)
        if out.ndim != 2:
            raise FrameShapeError(f"enhancer_fn returned shape {out.shape}", "return one 2-D enhanced frame")
        if not np.isfinite(out).all():
            raise FrameFormatError("enhancer_fn returned NaN/Inf values", "check the model / engine")
        y = _undo(out.astype(np.float64), k, flip)
        if total is None:
            total, sq = y.copy(), y * y
            h = frames.shape[-2]
            upscale = max(1, y.shape[0] // h)
            if y.shape != (h * upscale, frames.shape[-1] * upscale):
                raise FrameShapeError(f"enhancer_fn returned {y.shape} for a {frames.shape[-2:]} frame",
                                      "return the enhanced frame (an integer multiple of the input size)")
        elif y.shape != total.shape:
            raise FrameShapeError(f"enhancer_fn returned {out.shape} for a transformed frame "
                                  f"{x.shape[-2:]}, unlike {total.shape} for the original",
                                  "use transforms=4 if the model only takes one orientation of the frame")
        else:
            total += y
            sq += y * y
    n = len(group)
    mean = total / n
    spread = np.sqrt(np.maximum(sq / n - mean * mean, 0.0))
    lo, hi = np.percentile(mean, (1.0, 99.8))
    rng = float(hi - lo) if hi > lo else 1.0
    return TTAResult(mean=mean.astype(np.float32), spread=spread.astype(np.float32),
                     disagreement=float(np.percentile(spread, 99.0)) / rng, n_transforms=n,
                     upscale=upscale)


__all__ = [
    "DEFAULT_FALSE_ALARM", "SMOOTH_SIGMA_PX", "ConsistencyInputError", "ConsistencyResult", "NoiseModel",
    "TTAResult", "camera_noise", "check_consistency", "flag_threshold", "forward_project",
    "psf_sigma_from_crappifier", "psf_sigma_from_spec", "smooth_unit", "tta_disagreement", "valid_psf_sigma",
]
