"""Crappifiers: turn a high-quality image into the low-resolution, noisy one a network learns to undo.

A crappifier is any object with an integer ``scale`` and ``__call__(hi, rng)`` mapping a float32
2-D high-quality image (any intensity units) to its degraded version of shape
``(H // scale, W // scale)`` (the input is cropped to a multiple of ``scale`` first). It is seeded
only by the ``rng`` passed in (a :class:`numpy.random.Generator`), so a data loader worker that owns
its generator gets reproducible pairs. numpy in -> numpy out; a torch tensor in -> a torch tensor
out on the same device (the work goes through numpy on the CPU).

Implemented (all composable with :class:`Compose`, all built by :func:`make_crappifier` from a
config dict, and all reporting their own config with ``.config()`` for model provenance):

* :class:`PSSRFluoCrappifier`: PSSR's fluorescence crappifier (Fang et al. 2021, BPHO-Salk/PSSR
  ``utils/crappifiers.py``; ``new_crap_AG_SP`` = ``order="published"``, ``new_crap`` =
  ``order="preprint"``). On the image scaled to [0, 1] (divided by its maximum, or by ``in_range``):
  local-variance Gaussian noise with variance ``0.5 * gaussian(x, sigma=5)`` (+1e-10), salt then
  pepper at ``amount=0.005`` each (the preprint order puts salt and pepper first), clipped to [0, 1]
  as scikit-image's ``random_noise`` does, divided by the new maximum and multiplied by the
  original maximum (so the output is in the input's units), then downsampled by ``scale`` with
  scikit-image's ``rescale(order=1)`` geometry: pixel-centre-aligned bilinear sampling after a
  Gaussian anti-aliasing filter of sigma ``(scale - 1) / 2`` (``rescale``'s default since
  scikit-image 0.15, the version PSSR pinned; ``antialias=False`` gives plain bilinear). The noise
  uses the same generator calls as ``skimage.util.random_noise`` so, given the same generator
  state, the result equals PSSR's code run with scikit-image (tested).
* :class:`PSSREMCrappifier`: PSSR's EM crappifier (``em_AG_D_sameas_preprint``): local-variance
  Gaussian noise with variance ``0.05 * gaussian(x, sigma=3)``, clipped, then bilinear ``scale``x
  downsampling. PSSR used ``scipy.ndimage.zoom`` (corner-aligned grid) here; we use the same
  pixel-centre grid as everywhere else so inputs and targets stay registered the way the
  networks' bilinear residual assumes.
* :class:`CameraCrappifier`: a physical sCMOS/EMCCD-free camera model. Optional PSF blur (Gaussian,
  ``psf_sigma_px`` in high-resolution pixels), background ``baseline`` removed, integration over
  each ``scale x scale`` block (area downsampling: a camera pixel collects the light falling on
  it), scaling so the mean expected photo-electron count per camera pixel is ``photons``,
  Poisson shot noise, Gaussian read noise (``read_noise`` in electrons), ``gain`` (ADU per
  electron) and ``offset`` (ADU), rounding and clipping to ``bit_depth`` bits. Output in ADU.
  ``live-pssr calibrate`` fits these numbers to the user's own camera.
* :class:`DownsampleCrappifier`: resolution loss only (PSSR's "downsampleonly" control).
* :class:`RandomizedCrappifier`: any of the above (or a calibration file) with some of its
  numeric parameters drawn uniformly from ``[low, high]`` ranges on every call, from the ``rng``
  passed in (so seeded like everything else), plus an optional extra Gaussian blur of the
  high-quality image (``pre_blur_px``). Training on a neighbourhood of the published and
  calibrated crappifiers (noise level, blur, photons, gain, offset, read noise) makes a model
  generalise to cameras it was not calibrated on. Config:
  ``{"kind": "randomized", "base": {...}, "ranges": {"var_factor": [0.2, 1.0], ...}}``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from scipy import ndimage as ndi

from .errors import ConfigError, FrameFormatError

T = TypeVar("T")

#: keys of a crappifier config file that carry provenance, not parameters (ignored when building).
META_KEYS = ("calibration", "note", "comment")


@runtime_checkable
class Crappifier(Protocol):
    """What the trainer needs: a downsampling factor and a seeded degradation."""

    scale: int

    def __call__(self, hi: T, rng: np.random.Generator) -> T: ...


# ----------------------------------------------------------------------------------------------
# building blocks (numpy, float64 inside for fidelity to the scikit-image reference)


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so both sides are multiples of ``scale``."""
    h, w = image.shape
    return image[: h - h % scale, : w - w % scale]


def bilinear_downsample(image: np.ndarray, scale: int, antialias: bool = False) -> np.ndarray:
    """Downsample by an integer factor with pixel-centre-aligned bilinear sampling.

    Output pixel ``i`` samples the input at ``(i + 0.5) * scale - 0.5`` (the geometry of
    ``skimage.transform.rescale`` and of ``torch`` ``interpolate(align_corners=False)``). With
    ``antialias`` a Gaussian of sigma ``(scale - 1) / 2`` (mode ``mirror``) is applied first, as
    ``rescale`` does by default. The input is cropped to a multiple of ``scale``.
    """
    x = crop_to_multiple(np.asarray(image, dtype=np.float64), scale)
    if scale == 1:
        return x.copy()
    if antialias:
        x = ndi.gaussian_filter(x, (scale - 1) / 2, mode="mirror")
    pos = (scale - 1) / 2  # sample position inside each block
    f = int(math.floor(pos))
    w = pos - f
    out = x[f::scale, :] if w == 0 else (1 - w) * x[f::scale, :] + w * x[f + 1 :: scale, :]
    out = out[:, f::scale] if w == 0 else (1 - w) * out[:, f::scale] + w * out[:, f + 1 :: scale]
    return out


def area_downsample(image: np.ndarray, scale: int) -> np.ndarray:
    """Mean over each ``scale x scale`` block (what a coarser camera pixel integrates)."""
    x = crop_to_multiple(np.asarray(image, dtype=np.float64), scale)
    h, w = x.shape
    return x.reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))


def local_variance_noise(
    x01: np.ndarray, factor: float, sigma: float, rng: np.random.Generator, clip: bool = True
) -> np.ndarray:
    """Gaussian noise with variance ``factor * gaussian(x01, sigma) + factor * 1e-10`` per pixel.

    ``x01`` is an image in [0, 1]; the blur is scikit-image's ``filters.gaussian`` (mode
    ``nearest``, truncate 4); with ``clip`` the result is clipped to [0, 1] like ``random_noise``.
    """
    lvar = (ndi.gaussian_filter(x01, sigma, mode="nearest", truncate=4.0) + 1e-10) * factor
    out = x01 + rng.normal(0.0, np.sqrt(np.maximum(lvar, 1e-300)))
    return np.clip(out, 0.0, 1.0) if clip else out


def salt_and_pepper(x01: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Set a fraction ``amount`` of pixels to 1 (salt), then another ``amount`` to 0 (pepper).

    Same draws as ``random_noise(mode="salt")`` followed by ``random_noise(mode="pepper")``.
    """
    out = x01.copy()
    if amount > 0:
        out[rng.random(out.shape) <= amount] = 1.0
        out[rng.random(out.shape) <= amount] = 0.0
    return out


# ----------------------------------------------------------------------------------------------
# array handling shared by all crappifiers


def _check_image(image: np.ndarray, scale: int) -> None:
    if image.ndim != 2:
        raise FrameFormatError(
            f"crappifier input has {image.ndim} dimensions {image.shape}; it takes one 2-D image",
            "pass a single plane (split stacks and channels first)",
        )
    if image.shape[0] < scale or image.shape[1] < scale:
        raise FrameFormatError(
            f"crappifier input {image.shape} is smaller than the downsampling factor {scale}",
            f"use crops of at least {scale}x{scale} pixels (ideally >= 64 low-resolution pixels)",
        )
    if not np.isfinite(image).all():
        raise FrameFormatError(
            "crappifier input contains NaN or Inf values",
            "clean or mask non-finite pixels (e.g. np.nan_to_num) before crappifying",
        )


def _is_torch(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "torch"


class _Base:
    """numpy/torch dispatch, validation and config round-trip for the built-in crappifiers."""

    kind: str = ""
    scale: int = 1

    def __call__(self, hi: T, rng: np.random.Generator | int | None) -> T:
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        if _is_torch(hi):
            import torch

            arr = hi.detach().to("cpu", torch.float32).numpy()
            _check_image(arr, self.scale)
            out = self._apply(arr.astype(np.float64), rng).astype(np.float32)
            return torch.from_numpy(out).to(hi.device)  # type: ignore[return-value]
        arr = np.asarray(hi)
        _check_image(arr, self.scale)
        return self._apply(arr.astype(np.float64), rng).astype(np.float32)  # type: ignore[return-value]

    def _apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The dict :func:`make_crappifier` rebuilds this crappifier from."""
        return {"kind": self.kind, **self._params()}

    def _params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


def _check_scale(scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int | np.integer) or scale < 1:
        raise ConfigError(f"crappifier scale must be a positive integer, got {scale!r}",
                          "use 4 for 4x super-resolution models, 1 for denoising models")
    return int(scale)


def _check_positive(name: str, value: Any, allow_zero: bool = True) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"crappifier parameter {name}={value!r} must be a finite number {bound}",
                          f"set {name} to a value {bound} (see docs/calibration.md)")
    return v


# ----------------------------------------------------------------------------------------------
# the crappifiers


class PSSRFluoCrappifier(_Base):
    """PSSR's fluorescence crappifier (see the module docstring).

    Parameters
    ----------
    scale : int
        Downsampling factor (1: noise only, for denoising models).
    order : {"published", "preprint"}
        ``published``: local-variance noise, then salt and pepper; ``preprint``: salt and pepper
        first (its local variance then sees the salt).
    var_factor, blur_sigma, sp_amount : float
        Noise variance factor (0.5), blur of the local-variance map (5 px), salt/pepper fraction.
    in_range : float or None
        Value that maps to 1 before adding noise; None (default) uses the image's maximum, which
        makes the noise level independent of the intensity units. PSSR used 255 on uint8 images.
    antialias : bool
        Gaussian pre-filter before bilinear downsampling, as ``skimage.transform.rescale`` does.
    """

    kind = "pssr-fluo"

    def __init__(
        self,
        scale: int = 4,
        order: str = "published",
        var_factor: float = 0.5,
        blur_sigma: float = 5.0,
        sp_amount: float = 0.005,
        in_range: float | None = None,
        antialias: bool = True,
    ) -> None:
        if order not in ("published", "preprint"):
            raise ConfigError(f"unknown PSSR fluorescence crappifier order {order!r}",
                              "use order 'published' (noise, then salt and pepper) or 'preprint'")
        self.scale = _check_scale(scale)
        self.order = order
        self.var_factor = _check_positive("var_factor", var_factor)
        self.blur_sigma = _check_positive("blur_sigma", blur_sigma)
        self.sp_amount = _check_positive("sp_amount", sp_amount)
        if not self.sp_amount <= 1:
            raise ConfigError(f"sp_amount={sp_amount} is a fraction of pixels and must be <= 1",
                              "PSSR uses 0.005")
        self.in_range = None if in_range is None else _check_positive("in_range", in_range, False)
        self.antialias = bool(antialias)

    def _params(self) -> dict[str, Any]:
        return {"scale": self.scale, "order": self.order, "var_factor": self.var_factor,
                "blur_sigma": self.blur_sigma, "sp_amount": self.sp_amount,
                "in_range": self.in_range, "antialias": self.antialias}

    def _apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = np.maximum(x, 0.0)
        orig_max = float(x.max())
        ref = self.in_range if self.in_range is not None else orig_max
        xn = x / ref if ref > 0 else x.copy()
        if self.order == "preprint":
            xn = salt_and_pepper(xn, self.sp_amount, rng)
        xn = local_variance_noise(xn, self.var_factor, self.blur_sigma, rng)
        if self.order == "published":
            xn = salt_and_pepper(xn, self.sp_amount, rng)
        new_max = float(xn.max())
        if new_max > 0:
            xn /= new_max
        xn *= orig_max
        return bilinear_downsample(xn, self.scale, self.antialias)


class PSSREMCrappifier(_Base):
    """PSSR's EM crappifier: local-variance Gaussian noise (0.05 x blur at sigma 3), then downsampling.

    ``in_range`` as in :class:`PSSRFluoCrappifier` (None: the image's maximum maps to 1; the
    output is returned in the input's units).
    """

    kind = "pssr-em"

    def __init__(self, scale: int = 4, var_factor: float = 0.05, blur_sigma: float = 3.0,
                 in_range: float | None = None) -> None:
        self.scale = _check_scale(scale)
        self.var_factor = _check_positive("var_factor", var_factor)
        self.blur_sigma = _check_positive("blur_sigma", blur_sigma)
        self.in_range = None if in_range is None else _check_positive("in_range", in_range, False)

    def _params(self) -> dict[str, Any]:
        return {"scale": self.scale, "var_factor": self.var_factor, "blur_sigma": self.blur_sigma,
                "in_range": self.in_range}

    def _apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = np.maximum(x, 0.0)
        ref = self.in_range if self.in_range is not None else float(x.max())
        ref = ref if ref > 0 else 1.0
        xn = local_variance_noise(x / ref, self.var_factor, self.blur_sigma, rng)
        return bilinear_downsample(xn * ref, self.scale)


class CameraCrappifier(_Base):
    """A physical camera: PSF blur, pixel integration, shot noise, read noise, gain, offset, bits.

    Parameters
    ----------
    scale : int
        High-resolution pixels per camera pixel along each axis.
    psf_sigma_px : float
        Extra Gaussian blur in high-resolution pixels (0: the image already carries the optics).
    photons : float
        Mean expected photo-electrons per camera pixel over the image (after ``baseline``).
    gain : float
        ADU per electron.
    offset : float
        Camera offset (dark level) in ADU.
    read_noise : float
        Gaussian read noise in electrons (rms).
    bit_depth : int
        Output clipped to ``[0, 2**bit_depth - 1]`` after rounding.
    baseline : float
        Background of the high-quality image (its units) removed before scaling to photons.
    """

    kind = "camera"

    def __init__(
        self,
        scale: int = 4,
        psf_sigma_px: float = 0.0,
        photons: float = 20.0,
        gain: float = 2.0,
        offset: float = 100.0,
        read_noise: float = 1.5,
        bit_depth: int = 16,
        baseline: float = 0.0,
    ) -> None:
        self.scale = _check_scale(scale)
        self.psf_sigma_px = _check_positive("psf_sigma_px", psf_sigma_px)
        self.photons = _check_positive("photons", photons)
        self.gain = _check_positive("gain", gain, allow_zero=False)
        self.offset = _check_positive("offset", offset)
        self.read_noise = _check_positive("read_noise", read_noise)
        if isinstance(bit_depth, bool) or not isinstance(bit_depth, int | np.integer) or not (
            1 <= bit_depth <= 32
        ):
            raise ConfigError(f"camera bit_depth={bit_depth!r} must be an integer from 1 to 32",
                              "use the camera's ADC depth: 8, 12, 14 or 16")
        self.bit_depth = int(bit_depth)
        try:
            self.baseline = float(baseline)
        except (TypeError, ValueError):
            raise ConfigError(f"camera baseline={baseline!r} is not a number",
                              "set baseline to the background level of the high-quality images") from None

    def _params(self) -> dict[str, Any]:
        return {"scale": self.scale, "psf_sigma_px": self.psf_sigma_px, "photons": self.photons,
                "gain": self.gain, "offset": self.offset, "read_noise": self.read_noise,
                "bit_depth": self.bit_depth, "baseline": self.baseline}

    def expected_electrons(self, hi: np.ndarray) -> np.ndarray:
        """Noise-free expected photo-electrons per camera pixel for high-quality image ``hi``."""
        x = np.maximum(np.asarray(hi, dtype=np.float64) - self.baseline, 0.0)
        if self.psf_sigma_px > 0:
            x = ndi.gaussian_filter(x, self.psf_sigma_px, mode="reflect")
        coarse = area_downsample(x, self.scale)
        mean = float(coarse.mean())
        return coarse * (self.photons / mean) if mean > 0 else np.zeros_like(coarse)

    def _apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        electrons = rng.poisson(self.expected_electrons(x)).astype(np.float64)
        if self.read_noise > 0:
            electrons += rng.normal(0.0, self.read_noise, electrons.shape)
        adu = np.rint(electrons * self.gain + self.offset)
        return np.clip(adu, 0.0, float(2**self.bit_depth - 1))


class DownsampleCrappifier(_Base):
    """Resolution loss only: bilinear downsampling (PSSR's ``downsampleonly`` control)."""

    kind = "downsample"

    def __init__(self, scale: int = 4, antialias: bool = True) -> None:
        self.scale = _check_scale(scale)
        self.antialias = bool(antialias)

    def _params(self) -> dict[str, Any]:
        return {"scale": self.scale, "antialias": self.antialias}

    def _apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return bilinear_downsample(x, self.scale, self.antialias)


class Compose(_Base):
    """Apply crappifiers in order; ``scale`` is the product of theirs.

    Example: ``Compose([PSSRFluoCrappifier(scale=1), DownsampleCrappifier(scale=4)])``.
    """

    kind = "compose"

    def __init__(self, steps: Iterable[Crappifier]) -> None:
        self.steps = list(steps)
        if not self.steps:
            raise ConfigError("Compose needs at least one crappifier", "list the steps to apply in order")
        for s in self.steps:
            if not isinstance(s, Crappifier):
                raise ConfigError(f"Compose step {s!r} is not a crappifier",
                                  "pass objects with .scale and __call__(image, rng)")
        self.scale = math.prod(int(s.scale) for s in self.steps)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind,
                "steps": [s.config() if hasattr(s, "config") else {"kind": repr(s)} for s in self.steps]}

    def __repr__(self) -> str:
        return f"Compose({self.steps!r})"

    def _apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in self.steps:
            x = np.asarray(step(x.astype(np.float32), rng), dtype=np.float64)
        return x


#: extra parameter of :class:`RandomizedCrappifier`: Gaussian blur (high-resolution pixels) first
PRE_BLUR = "pre_blur_px"


class RandomizedCrappifier(_Base):
    """A crappifier whose numeric parameters are drawn from ranges on every call (seeded by ``rng``).

    Parameters
    ----------
    base : dict
        Config of the crappifier to vary (any kind but ``compose``/``randomized``; a ``file`` is
        resolved to its contents). Parameters without a range keep the base's value.
    ranges : dict
        ``{parameter: [low, high]}``: floating-point parameters of the base's kind (integers such
        as ``scale`` and ``bit_depth`` cannot vary), plus ``pre_blur_px``, a Gaussian blur of the
        high-quality image (sigma in its pixels, 0 = none) before the base degrades it. Values are
        drawn uniformly; the base's own validation applies to every draw.
    """

    kind = "randomized"

    def __init__(self, base: dict[str, Any], ranges: dict[str, Sequence[float]]) -> None:
        if not isinstance(base, dict) or base.get("kind") in ("compose", "randomized"):
            raise ConfigError(f"randomized crappifier base {base!r} must be one crappifier's config",
                              f"use a base of kind {', '.join([*KINDS, 'file'])}")
        built = make_crappifier(base)
        self.base = built.config()
        self._cls = KINDS[self.base["kind"]]
        self.scale = built.scale
        if not isinstance(ranges, dict) or not ranges:
            raise ConfigError("randomized crappifier needs a non-empty 'ranges' mapping",
                              "write e.g. ranges: {var_factor: [0.2, 1.0]}")
        numeric = [k for k, v in self.base.items()
                   if isinstance(v, float) and k not in ("kind", "scale", "bit_depth")]
        self.ranges: dict[str, tuple[float, float]] = {}
        for key, rng_ in ranges.items():
            if key != PRE_BLUR and key not in numeric:
                raise ConfigError(f"randomized crappifier cannot vary {key!r} of kind {self.base['kind']!r}",
                                  f"vary one of: {', '.join([*numeric, PRE_BLUR])}")
            try:
                lo, hi = (float(v) for v in rng_)
            except (TypeError, ValueError):
                raise ConfigError(f"randomized crappifier range {key}={rng_!r} is not [low, high]",
                                  "give two numbers, e.g. [0.2, 1.0]") from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ConfigError(f"randomized crappifier range {key}=[{lo}, {hi}] needs finite low <= high",
                                  "swap or fix the bounds")
            if key == PRE_BLUR and lo < 0:
                raise ConfigError(f"{PRE_BLUR} range [{lo}, {hi}] must be >= 0", "blur sigmas are >= 0")
            self.ranges[key] = (lo, hi)
        for corner in (0, 1):  # both ends must build (bad bounds fail here, not mid-training)
            self._build({k: v[corner] for k, v in self.ranges.items() if k != PRE_BLUR})

    def _build(self, drawn: dict[str, float]) -> _Base:
        params = {k: v for k, v in self.base.items() if k != "kind"}
        return self._cls(**{**params, **drawn})

    def draw(self, rng: np.random.Generator) -> tuple[_Base, float]:
        """One draw: (the concrete crappifier, the pre-blur sigma); ranges in sorted key order."""
        vals = {k: float(rng.uniform(*self.ranges[k])) for k in sorted(self.ranges)}
        blur = vals.pop(PRE_BLUR, 0.0)
        return self._build(vals), blur

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "base": dict(self.base),
                "ranges": {k: [lo, hi] for k, (lo, hi) in self.ranges.items()}}

    def _params(self) -> dict[str, Any]:
        return {"base": self.base, "ranges": self.ranges}

    def _apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        crap, blur = self.draw(rng)
        if blur > 0:
            x = ndi.gaussian_filter(x, blur, mode="reflect")
        return crap._apply(x, rng)


# ----------------------------------------------------------------------------------------------
# configuration

KINDS: dict[str, type[_Base]] = {
    "pssr-fluo": PSSRFluoCrappifier,
    "pssr-em": PSSREMCrappifier,
    "camera": CameraCrappifier,
    "downsample": DownsampleCrappifier,
}


def load_crappifier_file(path: str | Path) -> dict[str, Any]:
    """Read a crappifier config (YAML or JSON, e.g. written by ``live-pssr calibrate``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"crappifier config file {path} does not exist",
                          "check the path, or create one with `live-pssr calibrate FRAMES --out calib.yaml`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"crappifier config file {path} is not valid YAML/JSON ({err})",
                          "fix the file's syntax or regenerate it with `live-pssr calibrate`") from err
    if isinstance(data, dict) and isinstance(data.get("crappifier"), dict):
        data = data["crappifier"]
    if not isinstance(data, dict) or "kind" not in data:
        raise ConfigError(f"crappifier config file {path} holds no mapping with a 'kind' key",
                          "write e.g. `kind: camera` followed by its parameters (see docs/calibration.md)")
    return data


def make_crappifier(cfg: dict[str, Any] | Sequence[dict[str, Any]]) -> _Base:
    """Build a crappifier from a config dict.

    ``{"kind": "pssr-fluo", "scale": 4, "order": "published"}``, ``{"kind": "pssr-em"}``,
    ``{"kind": "camera", "gain": ..., "offset": ..., ...}``, ``{"kind": "downsample"}``,
    ``{"kind": "compose", "steps": [cfg, ...]}`` (or a list of configs), and
    ``{"kind": "file", "path": "calib.yaml", **overrides}`` (a file holding one of the above;
    its ``calibration``/``note`` keys are provenance and ignored, other keys given beside ``path``
    override the file's values, e.g. ``scale``).
    """
    if isinstance(cfg, list | tuple):
        return Compose([make_crappifier(c) for c in cfg])
    if not isinstance(cfg, dict) or "kind" not in cfg:
        raise ConfigError(f"crappifier config {cfg!r} is not a mapping with a 'kind' key",
                          f"use e.g. {{'kind': 'pssr-fluo', 'scale': 4}}; kinds: "
                          f"{', '.join([*KINDS, 'compose', 'file', 'randomized'])}")
    cfg = dict(cfg)
    kind = cfg.pop("kind")
    for key in META_KEYS:
        cfg.pop(key, None)
    if kind == "file":
        if "path" not in cfg:
            raise ConfigError("crappifier config of kind 'file' has no 'path'",
                              "give the calibration file: {'kind': 'file', 'path': 'calib.yaml'}")
        loaded = load_crappifier_file(cfg.pop("path"))
        if loaded.get("kind") == "file":
            raise ConfigError("a crappifier file may not point to another file",
                              "write the crappifier parameters into the file itself")
        return make_crappifier({**loaded, **cfg})
    if kind == "randomized":
        if set(cfg) != {"base", "ranges"}:
            raise ConfigError(f"randomized crappifier config needs exactly 'base' and 'ranges', "
                              f"got keys {sorted(cfg)}",
                              "write {'kind': 'randomized', 'base': {'kind': 'pssr-fluo', ...}, "
                              "'ranges': {'var_factor': [0.2, 1.0]}}")
        return RandomizedCrappifier(cfg["base"], cfg["ranges"])
    if kind == "compose":
        steps = cfg.pop("steps", None)
        if cfg or not isinstance(steps, list):
            raise ConfigError(f"compose crappifier config needs only a 'steps' list, got keys {sorted(cfg)}",
                              "write {'kind': 'compose', 'steps': [{'kind': ...}, ...]}")
        return Compose([make_crappifier(s) for s in steps])
    if kind not in KINDS:
        raise ConfigError(f"unknown crappifier kind {kind!r}",
                          f"use one of: {', '.join([*KINDS, 'compose', 'file', 'randomized'])}")
    cls = KINDS[kind]
    import inspect

    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise ConfigError(f"crappifier kind {kind!r} has no parameter(s) {', '.join(unknown)}",
                          f"its parameters are: {', '.join(allowed)}")
    return cls(**cfg)
