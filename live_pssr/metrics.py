"""Image-quality metrics for restoration: PSNR, SSIM (raw and CSBDeep-normalised), FRC, flicker.

Conventions (chosen to be comparable with the literature):

* :func:`psnr` / :func:`ssim` are scikit-image's ``peak_signal_noise_ratio`` and
  ``structural_similarity`` with their defaults (7x7 uniform window, sample covariance, K1=0.01,
  K2=0.03, the window-radius border excluded from the mean), which is what PSSR's
  ``metric_gen.py`` and CSBDeep used, computed in float64 whatever the input dtype.
  ``data_range`` defaults to the dtype range of an integer ``target`` (255 for uint8) and to
  ``target.max() - target.min()`` for float images (scikit-image refuses floats without one).
* :func:`normalized_psnr` / :func:`normalized_ssim` first apply CSBDeep's ``norm_minmse`` (as
  PSSR does): the target is percentile-normalised (0.1, 99.9), both images are made zero-mean and
  the prediction is scaled by the least-squares factor onto the target; then PSNR/SSIM with
  ``data_range=1``. This removes any affine intensity mismatch, so a method is not penalised for
  a different brightness/offset, only for structure and noise.
* :func:`frc_resolution`: Fourier ring correlation of two images (two independent acquisitions,
  or a restoration and its ground truth), both apodised with scipy's Tukey window, rings one
  frequency bin (``1 / min(H, W)`` cycles/pixel) wide, smoothed over 3 rings; the resolution is
  ``1 / f`` at the first crossing of the fixed 1/7 threshold, in units of ``pixel_size``
  (Nyquist, ``2 * pixel_size``, when the curve never crosses; ``inf`` when it starts below).
* :func:`tile_rank_correlation`: how well a map that claims to show where an image is wrong (a
  consistency error map, a TTA spread) ranks the regions of the image by their true error:
  Spearman's rank correlation, over the full ``tile x tile`` tiles of the image, between the
  map's tile means and the true error's tile means (the map may be ``scale`` times coarser).
* :func:`flicker`: frame-to-frame change of a restored timelapse relative to that of the ground
  truth, ``rms(diff_t(pred')) / rms(diff_t(target))``, where ``pred'`` is the prediction mapped
  into the target's units by the affine fit ``pred ~ a * target + b`` (regressing the prediction
  on the target keeps the slope unbiased by noise in the prediction). 1 means the output changes
  between frames exactly as much as the truth; noisy or flickering outputs score above 1.
"""

from __future__ import annotations

import numpy as np

FRC_THRESHOLD = 1 / 7


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and target {t.shape} differ in shape")
    return p.astype(np.float64), t.astype(np.float64)


def default_data_range(target: np.ndarray) -> float:
    """Dtype range for integer images (255 for uint8), else ``max - min`` of the target."""
    target = np.asarray(target)
    if target.dtype.kind in "ui":
        info = np.iinfo(target.dtype)
        return float(info.max - (info.min if target.dtype.kind == "i" else 0))
    rng = float(np.max(target) - np.min(target))
    return rng if rng > 0 else 1.0


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical images)."""
    from skimage.metrics import peak_signal_noise_ratio

    data_range = default_data_range(target) if data_range is None else float(data_range)
    p, t = _pair(pred, target)
    if np.array_equal(p, t):
        return float("inf")  # scikit-image would divide by zero (and warn)
    return float(peak_signal_noise_ratio(t, p, data_range=data_range))


def ssim(pred: np.ndarray, target: np.ndarray, data_range: float | None = None, win_size: int = 7) -> float:
    """Mean structural similarity of two 2-D images (scikit-image's default settings)."""
    from skimage.metrics import structural_similarity

    data_range = default_data_range(target) if data_range is None else float(data_range)
    p, t = _pair(pred, target)
    if p.ndim != 2 or min(p.shape) < win_size:
        raise ValueError(f"SSIM needs 2-D images of at least {win_size}x{win_size} pixels, got {p.shape}")
    return float(structural_similarity(p, t, data_range=data_range, win_size=win_size))


def normalize_pair(
    pred: np.ndarray, target: np.ndarray, pmin: float = 0.1, pmax: float = 99.9
) -> tuple[np.ndarray, np.ndarray]:
    """CSBDeep's ``norm_minmse``: returns ``(pred', target')``, both zero-mean, target in percentile units."""
    p, t = _pair(pred, target)
    lo, hi = np.percentile(t, (pmin, pmax))
    t = (t - lo) / (hi - lo + 1e-20)
    t -= t.mean()
    p = p - p.mean()
    denom = float(np.sum(p * p))
    scale = float(np.sum(p * t)) / denom if denom > 0 else 0.0
    return scale * p, t


def normalized_psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR after :func:`normalize_pair` (data range 1), as CSBDeep and PSSR report."""
    p, t = normalize_pair(pred, target)
    return psnr(p, t, data_range=1.0)


def normalized_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM after :func:`normalize_pair` (data range 1), as CSBDeep and PSSR report."""
    p, t = normalize_pair(pred, target)
    return ssim(p, t, data_range=1.0)


def _apodize(img: np.ndarray, alpha: float = 0.25) -> np.ndarray:
    """Mean removed, times a Tukey window (flat middle, cosine ramps over ``alpha / 2`` of each end)."""
    from scipy.signal.windows import tukey

    h, w = img.shape
    return (img - img.mean()) * np.outer(tukey(h, alpha), tukey(w, alpha))


def frc_curve(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two 2-D images: ``(frequency in cycles/pixel, FRC)`` up to Nyquist."""
    a, b = _pair(a, b)
    if a.ndim != 2 or min(a.shape) < 16:
        raise ValueError(f"FRC needs 2-D images of at least 16x16 pixels, got {a.shape}")
    fa, fb = np.fft.fft2(_apodize(a)), np.fft.fft2(_apodize(b))
    fy, fx = np.fft.fftfreq(a.shape[0]), np.fft.fftfreq(a.shape[1])
    r = np.hypot(fy[:, None], fx[None, :])
    n = min(a.shape)
    ring = np.rint(r * n).astype(np.int64).ravel()
    nbins = n // 2 + 1
    keep = ring < nbins
    ring = ring[keep]
    cross = np.bincount(ring, (fa * np.conj(fb)).real.ravel()[keep], nbins)
    pa = np.bincount(ring, (np.abs(fa) ** 2).ravel()[keep], nbins)
    pb = np.bincount(ring, (np.abs(fb) ** 2).ravel()[keep], nbins)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = cross / np.sqrt(pa * pb)
    frc = np.nan_to_num(frc, nan=0.0)
    return np.arange(nbins) / n, frc


def frc_resolution(
    a: np.ndarray, b: np.ndarray, pixel_size: float = 1.0, threshold: float = FRC_THRESHOLD
) -> float:
    """Resolution (``1 / f`` at the FRC = ``threshold`` crossing) in units of ``pixel_size``.

    ``pixel_size=1`` gives pixels; pass the pixel size in um to get um. Returns ``2 * pixel_size``
    (Nyquist) when the correlation stays above the threshold, ``inf`` when it starts below.
    """
    freq, frc = frc_curve(a, b)
    smooth = np.convolve(frc, np.ones(3) / 3, mode="same")
    smooth[0], smooth[-1] = frc[0], frc[-1]
    below = np.nonzero(smooth[1:] < threshold)[0]
    if below.size == 0:
        return 2.0 * pixel_size
    i = int(below[0]) + 1
    if i == 1:
        return float("inf")
    f0, f1, c0, c1 = freq[i - 1], freq[i], smooth[i - 1], smooth[i]
    f = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0) if c0 != c1 else f1
    return float(pixel_size / f)


def tile_means(image: np.ndarray, tile: int) -> np.ndarray:
    """Means over the full ``tile x tile`` tiles of a 2-D image (the last partial row/column left out)."""
    a = np.asarray(image, dtype=np.float64)
    ny, nx = a.shape[0] // tile, a.shape[1] // tile
    return a[: ny * tile, : nx * tile].reshape(ny, tile, nx, tile).mean(axis=(1, 3))


#: fewest tiles a rank correlation is computed from
MIN_TILES = 4


def tile_rank_correlation(score_map: np.ndarray, error: np.ndarray, tile: int, scale: int = 1) -> float:
    """Spearman correlation of per-tile means of ``score_map`` (tiles of ``tile`` px) and ``error``.

    ``error`` is ``scale`` times larger than ``score_map`` on each side (its tiles are ``tile *
    scale`` px: the same regions). NaN with fewer than :data:`MIN_TILES` tiles or when either
    side is constant over them (no ranking to compare).
    """
    from scipy import stats

    s = np.asarray(score_map)
    e = np.asarray(error)
    tile, scale = int(tile), int(scale)
    if tile < 1 or scale < 1 or e.shape != (s.shape[0] * scale, s.shape[1] * scale):
        raise ValueError(f"error {e.shape} must be scale={scale} times the map {s.shape}, tile >= 1")
    a, b = tile_means(s, tile).ravel(), tile_means(e, tile * scale).ravel()
    if a.size < MIN_TILES or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def flicker(pred_series: np.ndarray, target_series: np.ndarray) -> float:
    """Temporal change of the prediction relative to the ground truth's (1 = same; see module doc)."""
    p, t = _pair(pred_series, target_series)
    if p.ndim != 3 or p.shape[0] < 2:
        raise ValueError(f"flicker needs (T, H, W) series with T >= 2, got {p.shape}")
    tc = t - t.mean()
    var_t = float(np.sum(tc * tc))
    a = float(np.sum((p - p.mean()) * tc)) / var_t if var_t > 0 else 1.0
    if a <= 0:
        a = 1.0  # prediction uncorrelated with the truth: compare in its own units
    p_fit = (p - p.mean()) / a + t.mean()
    dp = np.sqrt(np.mean(np.diff(p_fit, axis=0) ** 2))
    dt = np.sqrt(np.mean(np.diff(t, axis=0) ** 2))
    return float(dp / dt) if dt > 0 else float("inf")
