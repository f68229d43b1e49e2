"""Metrics against known values and reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from live_pssr.metrics import (
    flicker,
    frc_curve,
    frc_resolution,
    normalize_pair,
    normalized_psnr,
    normalized_ssim,
    psnr,
    ssim,
)


def _texture(shape=(128, 128), blur=1.5, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.random(shape), blur)
    return (img - img.min()) / (img.max() - img.min())


def test_identical_images_score_inf_and_one():
    t = _texture()
    assert psnr(t, t) == math.inf
    assert ssim(t, t) == pytest.approx(1.0)
    assert normalized_psnr(t, t) > 200  # exact up to float rounding of the affine fit
    assert normalized_ssim(t, t) == pytest.approx(1.0)
    u8 = (t * 255).astype(np.uint8)
    assert psnr(u8, u8) == math.inf and ssim(u8, u8) == pytest.approx(1.0)


@pytest.mark.parametrize("sigma, data_range", [(0.01, 1.0), (0.05, 1.0), (3.0, 255.0)])
def test_psnr_of_known_gaussian_noise(sigma, data_range):
    rng = np.random.default_rng(1)
    t = _texture((256, 256)) * data_range
    p = t + rng.normal(0, sigma, t.shape)
    assert psnr(p, t, data_range) == pytest.approx(20 * math.log10(data_range / sigma), abs=0.1)


def test_psnr_default_range_uses_the_dtype_for_integers():
    t = np.full((32, 32), 100, np.uint8)
    p = t.copy()
    p[0, 0] = 110  # mse = 100 / 1024
    assert psnr(p, t) == pytest.approx(20 * math.log10(255) - 10 * math.log10(100 / 1024))


def _reference_ssim(p: np.ndarray, t: np.ndarray, data_range: float, win: int = 7) -> float:
    """SSIM written out (uniform window, sample covariance, K1 0.01, K2 0.03, border cropped)."""
    p, t = p.astype(np.float64), t.astype(np.float64)
    cov = win**2 / (win**2 - 1)
    ux, uy = ndi.uniform_filter(p, win), ndi.uniform_filter(t, win)
    vx = cov * (ndi.uniform_filter(p * p, win) - ux * ux)
    vy = cov * (ndi.uniform_filter(t * t, win) - uy * uy)
    vxy = cov * (ndi.uniform_filter(p * t, win) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.uint16])
def test_scikit_image_metrics_equal_the_documented_formulas(dtype):
    """psnr/ssim (scikit-image underneath) give the numbers of the formulas the module documents."""
    rng = np.random.default_rng(2)
    scale = 200.0 if np.dtype(dtype).kind == "u" else 1.0
    t = (_texture((96, 80)) * scale).astype(dtype)
    for noise in (0.02, 0.2):
        p = np.clip(t + rng.normal(0, noise * scale, t.shape), 0, None).astype(dtype)
        data_range = {np.uint8: 255.0, np.uint16: 65535.0}.get(dtype, float(t.max() - t.min()))
        assert ssim(p, t) == pytest.approx(_reference_ssim(p, t, data_range), abs=1e-12)
        assert ssim(p, t, data_range=1.0) == pytest.approx(_reference_ssim(p, t, 1.0), abs=1e-12)
        mse = float(np.mean((p.astype(np.float64) - t.astype(np.float64)) ** 2))
        assert psnr(p, t) == pytest.approx(10 * math.log10(data_range**2 / mse), abs=1e-9)


def test_frc_window_is_the_documented_tukey():
    """scipy's Tukey window (FRC's apodisation) is the tapered cosine written out."""
    from scipy.signal.windows import tukey

    for n, alpha in ((16, 0.25), (101, 0.25), (64, 0.5)):
        x = np.linspace(0.0, 1.0, n)
        edge = alpha / 2
        w = np.ones(n)
        lo, hi = x < edge, x > 1 - edge
        w[lo] = 0.5 * (1 + np.cos(np.pi * (x[lo] / edge - 1)))
        w[hi] = 0.5 * (1 + np.cos(np.pi * ((x[hi] - 1) / edge + 1)))
        np.testing.assert_allclose(tukey(n, alpha), w, atol=1e-12)


def test_ssim_decreases_with_noise():
    rng = np.random.default_rng(3)
    t = _texture()
    scores = [ssim(t + rng.normal(0, s, t.shape), t, 1.0) for s in (0.01, 0.05, 0.2)]
    assert scores[0] > scores[1] > scores[2]


def test_normalized_metrics_ignore_affine_intensity_changes_and_match_csbdeep():
    rng = np.random.default_rng(4)
    t = _texture() * 1000 + 50
    p = t + rng.normal(0, 40, t.shape)
    a = normalized_psnr(p, t)
    assert normalized_psnr(2 * p + 100, t) == pytest.approx(a, abs=1e-9)
    assert normalized_ssim(0.5 * p - 3, t) == pytest.approx(normalized_ssim(p, t), abs=1e-9)
    # CSBDeep's norm_minmse (np.cov with ddof=1 over np.var with ddof=0: a N/(N-1) factor)
    lo, hi = np.percentile(t, (0.1, 99.9))
    gt = (t - lo) / (hi - lo + 1e-20)
    x, gt = p - p.mean(), gt - gt.mean()
    x = np.cov(x.ravel(), gt.ravel())[0, 1] / np.var(x.ravel()) * x
    assert a == pytest.approx(10 * np.log10(1 / np.mean((x - gt) ** 2)), abs=0.01)
    pn, tn = normalize_pair(p, t)
    assert abs(pn.mean()) < 1e-9 and abs(tn.mean()) < 1e-9
    # raw PSNR does see the intensity change
    assert psnr(2 * p + 100, t) < psnr(p, t) - 10


def test_frc_blurred_image_resolves_worse_than_sharp():
    rng = np.random.default_rng(5)
    sharp = _texture((256, 256), blur=1.0, seed=6)
    blurred = ndi.gaussian_filter(sharp, 3.0)
    res = {}
    for name, img in (("sharp", sharp), ("blurred", blurred)):
        img = img / img.std()
        a = img + rng.normal(0, 0.3, img.shape)  # two independent noisy acquisitions
        b = img + rng.normal(0, 0.3, img.shape)
        res[name] = frc_resolution(a, b)
    assert 2.0 <= res["sharp"] < res["blurred"]
    assert frc_resolution(a, b, pixel_size=0.1) == pytest.approx(0.1 * res["blurred"])


def test_frc_limits():
    rng = np.random.default_rng(7)
    img = _texture((64, 64))
    freq, curve = frc_curve(img, img)
    assert freq[0] == 0 and freq[-1] == pytest.approx(0.5) and np.allclose(curve[1:], 1.0)
    assert frc_resolution(img, img) == pytest.approx(2.0)  # Nyquist
    a, b = rng.random((64, 64)), rng.random((64, 64))
    assert frc_resolution(a, b) > 10 or math.isinf(frc_resolution(a, b))


def test_flicker_is_one_for_the_truth_and_grows_with_temporal_noise():
    rng = np.random.default_rng(8)
    base = _texture((48, 48))
    truth = np.stack([np.roll(base, t, axis=1) for t in range(6)])  # moving sample
    assert flicker(truth, truth) == pytest.approx(1.0)
    assert flicker(3 * truth + 7, truth) == pytest.approx(1.0)  # units do not matter
    noisy = truth + rng.normal(0, 0.1, truth.shape)
    noisier = truth + rng.normal(0, 0.3, truth.shape)
    assert 1.0 < flicker(noisy, truth) < flicker(noisier, truth)
    static = np.repeat(truth[:1], 6, axis=0)
    assert flicker(static, truth) < 0.1  # frozen output: no change at all


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="T >= 2"):
        flicker(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)))
