"""Calibrate the camera model to the user's microscope from real low-laser frames alone.

Photon transfer: a pixel that collects ``e`` photo-electrons on average reads
``ADU = gain * (Poisson(e) + N(0, read_noise)) + offset`` (rounded), so across repeats its mean and
variance obey ``var = gain * (mean - offset) + gain**2 * read_noise**2 + 1/12`` (the last term is
rounding, used for integer data). Binning pixels by mean and fitting a line gives the gain (slope)
and the intercept ``b = gain**2 * read_noise**2 - gain * offset``.

Where the (mean, variance) points come from:

* ``temporal`` (a stack of repeats of a static field, T >= 8): per-pixel temporal mean and
  variance, after removing each pixel's linear trend in time (bleaching, slow drift; ddof = 2).
  Pixels that touch 0 or the saturation value in any frame are dropped (clipping shrinks their
  variance). A moving sample would inflate the variance, so the lag-1 temporal autocorrelation of
  the residuals of the brightest 10 % of pixels is checked: noise gives ~0, motion > 0.2; then
  ``auto`` falls back to ``spatial``.
* ``spatial`` (one frame, or a moving sample): per 8x8 block, the mean and the variance of a
  4-neighbour high-pass residual (``x - mean of 4 neighbours``, variance 1.25 sigma^2 for white
  noise), keeping per mean bin the 30 % flattest blocks (lowest variance of the smoothed image),
  median over them (corrected for the chi-square median bias). Less precise (about 5 % on the
  FMD data) and it assumes spatially white noise.

The line is fitted to mean-binned points by iteratively reweighted least squares (weights
``n / var**2``, the inverse variance of a binned sample variance, with Huber down-weighting of
outlying bins). The slope identifies the gain; the intercept alone cannot separate offset and read
noise, so one more fact is used, in this order of preference:

1. ``dark`` frames (shutter closed): offset = their mean, read noise = their temporal (or, for
   one frame, spatial) standard deviation / gain;
2. a known ``offset`` (camera specification): read noise from the intercept;
3. a known ``read_noise``: offset from the intercept;
4. default: the darkest pixels of the field (``dark_percentile`` = 0.5 %, at least 50; for the
   spatial method the darkest bin) are taken as signal-free: their variance is the read noise
   (``gain**2 * read_noise**2 + 1/12``) and the offset follows from the intercept. Their variance
   is used rather than their mean because a Gaussian sample's variance is independent of its mean,
   so picking pixels by low mean does not bias it (a low percentile of the mean image would be
   biased low by the noise of the mean and would bias the read noise). Where the darkest pixels
   still hold signal (autofluorescence, PMT dark counts), the fit attributes that variance to read
   noise: the model still reproduces the measured curve (see :func:`validate_fit`). The spatial
   method uses the fitted line at its darkest bin instead (offset = that bin's mean: block means
   average 64 pixels, so selecting the darkest ones hardly biases them). Neither can find the
   offset of a field without signal-free background; then pass ``offset`` or ``dark`` frames.

The camera's mean photon count ``photons`` (what :class:`~live_pssr.crappify.CameraCrappifier`
scales to) is the mean over the field of ``(mean - offset) / gain``. :func:`validate_fit` checks the
whole model: it synthesises a stack from the measured mean image with the fitted
``CameraCrappifier`` and compares its mean-variance curve with the real one bin by bin.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .crappify import CameraCrappifier
from .errors import ConfigError

MIN_TEMPORAL_FRAMES = 8
MOTION_THRESHOLD = 0.2
QUANTISATION_VAR = 1 / 12


@dataclass
class PhotonTransferFit:
    """Fitted camera parameters and the binned curve they come from."""

    gain: float
    offset: float
    read_noise: float
    r2: float
    photons: float
    bit_depth: int
    method: str
    offset_source: str
    intercept: float
    n_frames: int
    curve_mean: np.ndarray
    curve_var: np.ndarray
    curve_n: np.ndarray
    motion: float | None = None
    #: rounding variance included in ``curve_var`` but not in the line (1/12 for integer data)
    quantisation_var: float = 0.0
    notes: list[str] = field(default_factory=list)

    def crappifier_config(self, scale: int = 4, psf_sigma_px: float = 0.0) -> dict[str, Any]:
        """The ``{"kind": "camera", ...}`` config :func:`~live_pssr.crappify.make_crappifier` takes."""
        return {"kind": "camera", "scale": int(scale), "psf_sigma_px": float(psf_sigma_px),
                "photons": round(self.photons, 4), "gain": round(self.gain, 5),
                "offset": round(self.offset, 4), "read_noise": round(self.read_noise, 5),
                "bit_depth": int(self.bit_depth), "baseline": 0.0}

    def summary(self) -> dict[str, Any]:
        """Scalars of the fit (for reports and the YAML's provenance block)."""
        return {"method": self.method, "gain_adu_per_e": self.gain, "offset_adu": self.offset,
                "read_noise_e": self.read_noise, "r2": self.r2, "photons_per_pixel": self.photons,
                "intercept": self.intercept, "offset_source": self.offset_source,
                "n_frames": self.n_frames, "n_bins": int(self.curve_mean.size),
                "motion_lag1_autocorrelation": self.motion, "notes": list(self.notes)}


# ----------------------------------------------------------------------------------------------
# (mean, variance) points


def infer_bit_depth(frames: np.ndarray) -> int:
    """8 for uint8; for other data the smallest of 10/12/14/16 bits holding the maximum."""
    if frames.dtype == np.uint8:
        return 8
    top = float(np.max(frames))
    for bits in (10, 12, 14, 16):
        if top <= 2**bits - 1:
            return bits
    return 16


def temporal_mean_variance(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel mean, linearly detrended variance (ddof 2) and lag-1 residual autocorrelation."""
    s = np.asarray(frames, dtype=np.float64)
    t = np.arange(s.shape[0]) - (s.shape[0] - 1) / 2
    mean = s.mean(axis=0)
    slope = np.tensordot(t, s - mean, axes=(0, 0)) / np.sum(t * t)
    resid = s - mean - t[:, None, None] * slope
    ss = np.sum(resid * resid, axis=0)
    var = ss / (s.shape[0] - 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        lag1 = np.sum(resid[1:] * resid[:-1], axis=0) / ss
    return mean, var, np.nan_to_num(lag1)


def _blocks(a: np.ndarray, block: int) -> np.ndarray:
    h, w = (a.shape[0] // block) * block, (a.shape[1] // block) * block
    return a[:h, :w].reshape(h // block, block, w // block, block).swapaxes(1, 2).reshape(-1, block * block)


def spatial_mean_variance(
    frames: np.ndarray, block: int = 8, keep: float = 0.3, n_bins: int = 30
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binned ``(mean, noise variance, n)`` from flat blocks of single frames (see module doc)."""
    from scipy.stats import chi2

    kernel = np.array([[0, -0.25, 0], [-0.25, 1, -0.25], [0, -0.25, 0]])
    means, variances, structure = [], [], []
    for x in np.asarray(frames, dtype=np.float64):
        resid = ndi.convolve(x, kernel, mode="reflect")
        smooth = ndi.gaussian_filter(x, 2.0)
        means.append(_blocks(x, block).mean(axis=1))
        variances.append(_blocks(resid, block).var(axis=1, ddof=1) / 1.25)
        structure.append(_blocks(smooth, block).var(axis=1))
    m, v, s = np.concatenate(means), np.concatenate(variances), np.concatenate(structure)
    n_bins = int(np.clip(m.size * keep / 30, 5, n_bins))  # >= ~30 flat blocks per bin
    dof = block * block - 1
    median_bias = chi2.median(dof) / dof
    edges = np.unique(np.percentile(m, np.linspace(0, 100, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, len(edges) - 2)
    out = []
    for b in range(len(edges) - 1):
        sel = np.nonzero(idx == b)[0]
        if sel.size < 8:
            continue
        flat = sel[s[sel] <= np.percentile(s[sel], keep * 100)]
        out.append((m[flat].mean(), np.median(v[flat]) / median_bias, flat.size))
    arr = np.array(out, dtype=np.float64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def bin_by_mean(
    mean: np.ndarray, var: np.ndarray, n_bins: int = 30, edges: np.ndarray | None = None, min_count: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bin pixels by mean: ``(bin mean, bin mean variance, count, edges)``.

    Default edges are log-spaced above the darkest pixel (so the bright, few pixels that pin the
    slope get bins of their own); bins with fewer than ``min_count`` pixels are dropped.
    """
    m, v = mean.ravel(), var.ravel()
    if edges is None:
        lo = float(m.min())
        edges = lo - 1 + np.geomspace(1.0, (float(m.max()) - lo + 1) * (1 + 1e-9), n_bins + 1)
    idx = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, len(edges) - 2)
    n = np.bincount(idx, minlength=len(edges) - 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bm = np.bincount(idx, m, len(edges) - 1) / n
        bv = np.bincount(idx, v, len(edges) - 1) / n
    ok = n >= min(min_count, m.size)
    return bm[ok], bv[ok], n[ok], edges


def fit_line(
    x: np.ndarray, y: np.ndarray, n: np.ndarray, floor: float = 0.0, iters: int = 20
) -> tuple[float, float, float]:
    """Robust weighted line fit ``y = a x + b``; returns ``(a, b, R^2)``.

    Weights ``n / max(y, floor)**2`` (inverse variance of a binned sample variance; the floor keeps
    a noise-free bin from taking all the weight), Huber down-weighting of outlying bins.
    """
    floor = max(floor, 0.01 * float(np.median(np.abs(y))), 1e-12)
    base = n / np.maximum(y, floor) ** 2
    w = base.copy()
    a_mat = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(iters):
        sw = np.sqrt(w)
        a, b = np.linalg.lstsq(a_mat * sw[:, None], y * sw, rcond=None)[0]
        z = (y - (a * x + b)) * np.sqrt(base)
        scale = 1.4826 * np.median(np.abs(z - np.median(z))) + 1e-12
        u = np.abs(z) / scale
        w_new = base * np.minimum(1.0, 1.345 / np.maximum(u, 1e-12))
        if np.allclose(w_new, w, rtol=1e-6):
            break
        w = w_new
    pred = a * x + b
    ybar = np.average(y, weights=w)
    r2 = 1 - np.sum(w * (y - pred) ** 2) / max(np.sum(w * (y - ybar) ** 2), 1e-300)
    return float(a), float(b), float(r2)


# ----------------------------------------------------------------------------------------------
# the fit


def _as_stack(frames: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ConfigError(f"{what} must be a (T, Y, X) stack or one 2-D frame, got shape {arr.shape}",
                          "pass the camera frames of one channel as a tif stack or zarr array")
    if arr.dtype.kind not in "uif":
        raise ConfigError(f"{what} hold {arr.dtype} data", "pass numeric camera frames")
    if min(arr.shape[1:]) < 16:
        raise ConfigError(f"{what} are only {arr.shape[1:]} pixels", "use frames of at least 16x16 pixels")
    return arr


def fit_photon_transfer(
    frames: np.ndarray,
    method: str = "auto",
    dark: np.ndarray | None = None,
    offset: float | None = None,
    read_noise: float | None = None,
    bit_depth: int | None = None,
    dark_percentile: float = 0.5,
    n_bins: int = 30,
) -> PhotonTransferFit:
    """Fit gain, offset and read noise of the camera that took ``frames`` (T, Y, X; see module doc)."""
    if method not in ("auto", "temporal", "spatial"):
        raise ConfigError(f"unknown calibration method {method!r}", "use auto, temporal or spatial")
    frames = _as_stack(frames, "calibration frames")
    t = frames.shape[0]
    bit_depth = infer_bit_depth(frames) if bit_depth is None else int(bit_depth)
    integer = frames.dtype.kind in "ui"
    q = QUANTISATION_VAR if integer else 0.0
    notes: list[str] = []
    motion = None
    if method == "temporal" and t < 3:
        raise ConfigError(f"the temporal method needs at least 3 frames, got {t}",
                          f"acquire {MIN_TEMPORAL_FRAMES}+ repeats of a static field, "
                          "or use --method spatial")
    use_temporal = method == "temporal" or (method == "auto" and t >= MIN_TEMPORAL_FRAMES)
    if use_temporal:
        mean_img, var_img, lag1 = temporal_mean_variance(frames)
        bright = mean_img >= np.percentile(mean_img, 90)
        motion = float(np.mean(lag1[bright]))
        if method == "auto" and motion > MOTION_THRESHOLD:
            notes.append(f"lag-1 autocorrelation {motion:.2f} > {MOTION_THRESHOLD}: the sample moves or "
                         "changes between frames, so per-frame spatial statistics were used")
            use_temporal = False
    if use_temporal:
        sat = 2**bit_depth - 1
        clipped = np.any(frames <= 0, axis=0) | np.any(frames >= sat, axis=0) if integer else np.zeros(
            mean_img.shape, bool)
        if clipped.mean() > 0.5:
            raise ConfigError(f"{clipped.mean():.0%} of the pixels touch 0 or saturation ({sat})",
                              "lower the laser/exposure so the frames are not clipped, or raise the offset")
        if clipped.any():
            notes.append(f"{clipped.mean():.1%} of pixels touch 0 or saturation and were left out")
        cm, cv, cn, _ = bin_by_mean(mean_img[~clipped], var_img[~clipped] - q, n_bins)
        field_mean = mean_img
        name = "temporal"
        usable_m, usable_v = mean_img[~clipped], var_img[~clipped]

        def dark_var_fn() -> float:
            k = max(int(round(usable_m.size * dark_percentile / 100)), min(50, usable_m.size))
            return float(np.mean(usable_v[np.argpartition(usable_m, k - 1)[:k]]))
    else:
        cm, cv, cn = spatial_mean_variance(frames, n_bins=n_bins)
        cv = cv - q
        field_mean = frames.astype(np.float64).mean(axis=0)
        name = "spatial"

        def dark_var_fn() -> float:  # the line at the darkest bin: offset = that bin's mean
            return float(gain * cm.min() + intercept + q)
    if cm.size < 3 or np.ptp(cm) <= 0:
        raise ConfigError("the frames hold too little intensity range to fit a photon-transfer line",
                          "image a field with both dark background and bright structures")
    gain, intercept, r2 = fit_line(cm, cv, cn, floor=QUANTISATION_VAR)
    if gain <= 0:
        raise ConfigError(f"the fitted gain is {gain:.3g} (variance does not grow with intensity)",
                          "check the frames are raw camera data (not background-subtracted, denoised or "
                          "averaged) of one static field")

    if dark is not None:
        d = _as_stack(dark, "dark frames").astype(np.float64)
        offset_v = float(d.mean())
        dvar = (temporal_mean_variance(d)[1].mean() if d.shape[0] >= 3 else d.var(axis=(1, 2), ddof=1).mean())
        rn2 = (dvar - q) / gain**2
        source = "dark frames"
        if offset is not None or read_noise is not None:
            notes.append("dark frames given: they override the given offset/read noise")
    elif offset is not None:
        offset_v = float(offset)
        rn2 = (intercept + gain * offset_v) / gain**2 if read_noise is None else float(read_noise) ** 2
        source = "given"
    elif read_noise is not None:
        rn2 = float(read_noise) ** 2
        offset_v = (gain**2 * rn2 - intercept) / gain
        source = "fit intercept given the read noise"
    else:
        # darkest pixels taken as signal-free: their variance is read noise (+ rounding); the variance
        # of a Gaussian sample is independent of its mean, so selecting them by mean does not bias it
        dark_var = float(dark_var_fn())
        rn2 = (dark_var - q) / gain**2
        offset_v = (dark_var - q - intercept) / gain
        source = (f"darkest {dark_percentile:g} % of pixels taken as signal-free: read noise from their "
                  "variance, offset from the fit intercept")
    if r2 < 0.95:
        notes.append(f"the line fits poorly (R^2 {r2:.3f}): check the frames are raw, unclipped camera data; "
                     "for the spatial method the field needs flat regions (background) at several levels")
    if rn2 < 0:
        notes.append(f"the intercept implies a negative read noise^2 ({rn2:.3g} e^2): set to 0")
        rn2 = 0.0
    if offset_v < 0:
        notes.append(f"offset {offset_v:.3g} < 0 set to 0")
        offset_v = 0.0
    photons = float(np.mean(np.maximum(field_mean - offset_v, 0.0)) / gain)
    return PhotonTransferFit(
        gain=float(gain), offset=float(offset_v), read_noise=float(np.sqrt(rn2)), r2=r2, photons=photons,
        bit_depth=bit_depth, method=name, offset_source=source, intercept=float(intercept), n_frames=t,
        curve_mean=cm, curve_var=cv + q, curve_n=cn, motion=motion, quantisation_var=q, notes=notes,
    )


# ----------------------------------------------------------------------------------------------
# validation, plot, config file


def validate_fit(
    frames: np.ndarray, fit: PhotonTransferFit, seed: int = 0, n_bins: int = 30
) -> dict[str, Any]:
    """Synthesise a stack from the frames' mean image with the fitted camera; compare their curves.

    Needs a temporal stack (T >= 3). Returns per-bin means and variances of the real and synthetic
    stacks (binned by the real mean image's bins) and the relative variance errors.
    """
    frames = _as_stack(frames, "calibration frames")
    if frames.shape[0] < 3:
        raise ConfigError("validation needs a stack of at least 3 repeats", "pass a temporal stack")
    mean_img, var_img, _ = temporal_mean_variance(frames)
    cam = CameraCrappifier(1, photons=fit.photons, gain=fit.gain, offset=fit.offset,
                           read_noise=fit.read_noise, bit_depth=fit.bit_depth, baseline=fit.offset)
    rng = np.random.default_rng(seed)
    mean32 = mean_img.astype(np.float32)
    synth = np.stack([cam(mean32, rng) for _ in range(frames.shape[0])])
    s_mean, s_var, _ = temporal_mean_variance(synth)
    _, _, _, edges = bin_by_mean(mean_img, var_img, n_bins)
    # bin both stacks' pixels by the *real* mean image, so both curves describe the same pixels
    idx = np.clip(np.searchsorted(edges, mean_img.ravel(), side="right") - 1, 0, len(edges) - 2)
    cnt = np.bincount(idx, minlength=len(edges) - 1).astype(np.float64)
    ok = cnt >= min(20, cnt.sum())

    def binned(values: np.ndarray) -> np.ndarray:
        return (np.bincount(idx, values.ravel(), len(edges) - 1) / np.maximum(cnt, 1))[ok]

    rm, rv, sm, sv = binned(mean_img), binned(var_img), binned(s_mean), binned(s_var)
    rel = (sv - rv) / rv
    return {"real_mean": rm, "real_var": rv, "synth_mean": sm, "synth_var": sv, "rel_err": rel,
            "median_abs_rel_err": float(np.median(np.abs(rel))),
            "max_abs_rel_err": float(np.max(np.abs(rel))),
            "frac_bins_within_5pct": float(np.mean(np.abs(rel) <= 0.05))}


def plot_fit(fit: PhotonTransferFit, path: str | Path, validation: dict[str, Any] | None = None,
             title: str = "") -> Path:
    """Write the mean-variance plot (binned points, fitted line, synthetic curve) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = 2 if validation is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2), dpi=110, squeeze=False)
    ax = axes[0, 0]
    ax.loglog(fit.curve_mean, fit.curve_var, "o", ms=4,
              label=f"measured ({fit.method}, {fit.n_frames} frames)")
    xs = np.geomspace(max(fit.curve_mean.min(), fit.offset + 1e-3), fit.curve_mean.max(), 200)
    ax.loglog(xs, fit.gain * xs + fit.intercept + fit.quantisation_var, "-", lw=1.5,
              label=f"fit: gain {fit.gain:.3f} ADU/e-, R$^2$ {fit.r2:.4f}")
    if validation is not None:
        ax.loglog(validation["synth_mean"], validation["synth_var"], "x", ms=5,
                  label="synthetic from the mean")
    ax.set_xlabel("mean (ADU)")
    ax.set_ylabel("variance (ADU$^2$)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_title(title or "photon transfer", fontsize=10)
    ax.text(0.03, 0.97, f"offset {fit.offset:.2f} ADU\nread noise {fit.read_noise:.2f} e-\n"
            f"{fit.photons:.2f} e-/pixel", transform=ax.transAxes, va="top", fontsize=8)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    if validation is not None:
        bx = axes[0, 1]
        bx.semilogx(validation["real_mean"], 100 * validation["rel_err"], "o-", ms=4)
        bx.axhspan(-5, 5, color="green", alpha=0.1, label="within 5 %")
        bx.axhline(0, color="grey", lw=0.8)
        bx.set_xlabel("mean (ADU)")
        bx.xaxis.set_major_formatter(ScalarFormatter())
        bx.xaxis.set_minor_formatter(NullFormatter())
        bx.set_ylabel("synthetic / measured variance - 1 (%)")
        bx.set_title(f"re-synthesis: median |error| {validation['median_abs_rel_err']:.1%}", fontsize=10)
        bx.legend(fontsize=8)
        bx.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_config(fit: PhotonTransferFit, path: str | Path, scale: int = 4, psf_sigma_px: float = 0.0,
                 source: str = "", validation: dict[str, Any] | None = None) -> Path:
    """Write the camera crappifier config YAML (readable by ``make_crappifier({"kind": "file", ...})``)."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prov = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fit.summary().items()}
    prov["source"] = str(source)
    prov["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    if validation is not None:
        prov["validation"] = {k: round(float(validation[k]), 5)
                              for k in ("median_abs_rel_err", "max_abs_rel_err", "frac_bins_within_5pct")}
    doc = {**fit.crappifier_config(scale, psf_sigma_px), "calibration": prov}
    header = ("# Camera crappifier fitted by `live-pssr calibrate` (photon transfer).\n"
              "# Use it in training: crappifier: {kind: file, path: THIS_FILE}\n")
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path
