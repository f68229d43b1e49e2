"""Crappifiers: statistics against their formulas, PSSR's reference code, shapes, seeds, configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from live_pssr.crappify import (
    CameraCrappifier,
    Compose,
    Crappifier,
    DownsampleCrappifier,
    PSSREMCrappifier,
    PSSRFluoCrappifier,
    area_downsample,
    bilinear_downsample,
    local_variance_noise,
    make_crappifier,
    salt_and_pepper,
)
from live_pssr.errors import ConfigError, FrameFormatError


def _blobs(shape=(96, 128), seed=0) -> np.ndarray:
    """A fluorescence-like float32 image: Gaussian blobs on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape)
    for _ in range(30):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        img += rng.uniform(50, 200) * np.exp(-r2 / (2 * rng.uniform(1, 4) ** 2))
    return (img + 5).astype(np.float32)


ALL = [
    PSSRFluoCrappifier(4),
    PSSRFluoCrappifier(4, order="preprint"),
    PSSREMCrappifier(4),
    CameraCrappifier(4, psf_sigma_px=1.0, photons=10),
    DownsampleCrappifier(4),
    Compose([PSSRFluoCrappifier(1), DownsampleCrappifier(2), CameraCrappifier(2)]),
]


@pytest.mark.parametrize("crap", ALL, ids=lambda c: type(c).__name__)
def test_shape_dtype_and_determinism(crap):
    assert isinstance(crap, Crappifier)
    hi = _blobs((98, 130))  # not multiples of 4: cropped
    a = crap(hi, np.random.default_rng(7))
    b = crap(hi, np.random.default_rng(7))
    c = crap(hi, np.random.default_rng(8))
    assert crap.scale == 4
    assert a.shape == (98 // 4, 130 // 4) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    if not isinstance(crap, DownsampleCrappifier):
        assert not np.array_equal(a, c)
    # torch in -> torch out, same values as numpy with the same seed
    t = crap(torch.from_numpy(hi), np.random.default_rng(7))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.device == torch.device("cpu")
    np.testing.assert_array_equal(t.numpy(), a)


def test_config_round_trip():
    for crap in ALL:
        rebuilt = make_crappifier(crap.config())
        assert rebuilt.config() == crap.config()
        hi = _blobs()
        expected = crap(hi, np.random.default_rng(1))
        np.testing.assert_array_equal(rebuilt(hi, np.random.default_rng(1)), expected)


def test_pssr_fluo_equals_pssr_code_run_with_scikit_image():
    """Same generator state -> same output as PSSR's new_crap_AG_SP / new_crap with scikit-image."""
    skimage = pytest.importorskip("skimage")
    from skimage import filters
    from skimage.transform import rescale
    from skimage.util import random_noise

    def pssr_reference(x, rng, order):  # BPHO-Salk/PSSR utils/crappifiers.py, generator made explicit
        xorig_max = x.max()
        xn = x / x.max()
        if order == "preprint":
            xn = random_noise(xn, mode="salt", amount=0.005, rng=rng)
            xn = random_noise(xn, mode="pepper", amount=0.005, rng=rng)
        lvar = filters.gaussian(xn, sigma=5) + 1e-10
        xn = random_noise(xn, mode="localvar", local_vars=lvar * 0.5, rng=rng)
        if order == "published":
            xn = random_noise(xn, mode="salt", amount=0.005, rng=rng)
            xn = random_noise(xn, mode="pepper", amount=0.005, rng=rng)
        xn = xn / xn.max() * xorig_max
        return rescale(xn, scale=1 / 4, order=1)

    hi = _blobs((128, 160)).astype(np.float64)
    for order in ("published", "preprint"):
        ours = PSSRFluoCrappifier(4, order=order)(hi, np.random.default_rng(3))
        ref = pssr_reference(hi, np.random.default_rng(3), order)
        assert skimage.__version__ and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4 * hi.max())


def test_bilinear_downsample_matches_skimage_rescale():
    pytest.importorskip("skimage")
    from skimage.transform import rescale

    x = _blobs((72, 96)).astype(np.float64)  # divisible by 2, 3 and 4
    for scale in (2, 3, 4):
        for aa in (False, True):
            ref = rescale(x, 1 / scale, order=1, anti_aliasing=aa)
            np.testing.assert_allclose(bilinear_downsample(x, scale, aa), ref, rtol=1e-6, atol=1e-6)


def test_local_variance_noise_variance_is_factor_times_blurred_image():
    rng = np.random.default_rng(0)
    for level in (0.05, 0.3):
        x = np.full((256, 256), level)
        noisy = local_variance_noise(x, 0.5, 5.0, rng, clip=False)
        assert np.var(noisy - x) == pytest.approx(0.5 * level, rel=0.02)
        assert np.mean(noisy - x) == pytest.approx(0.0, abs=3 * np.sqrt(0.5 * level / x.size))
    # spatially varying: variance follows the blurred image region by region
    x = np.zeros((256, 256))
    x[:, 128:] = 0.4
    noisy = local_variance_noise(x, 0.05, 3.0, rng, clip=False)
    assert np.var(noisy[:, 150:] - 0.4) == pytest.approx(0.05 * 0.4, rel=0.03)
    assert np.var(noisy[:, :100]) < 1e-8


def test_pssr_fluo_noise_on_flat_image_follows_clipped_normal():
    """Whole crappifier (scale 1, no salt/pepper): output = x_clipped * orig_max / new_max."""
    c = 0.2
    hi = np.full((256, 256), c, np.float32)
    out = PSSRFluoCrappifier(1, sp_amount=0.0, in_range=1.0)(hi, np.random.default_rng(0))
    # x ~ N(c, 0.5 c) clipped to [0, 1]; new max is 1 (P(x > 1) ~ 0.6 %), orig max is c
    sd = np.sqrt(0.5 * c)
    a, b = (0 - c) / sd, (1 - c) / sd
    grid = np.linspace(a, b, 20001)
    pdf = stats.norm.pdf(grid)
    p_lo, p_hi = stats.norm.cdf(a), stats.norm.sf(b)
    mean = np.trapezoid((c + sd * grid) * pdf, grid) + 0 * p_lo + 1 * p_hi
    second = np.trapezoid((c + sd * grid) ** 2 * pdf, grid) + p_hi
    var = second - mean**2
    assert out.max() == pytest.approx(c)
    assert np.mean(out) == pytest.approx(c * mean, rel=0.01)
    assert np.var(out) == pytest.approx(c**2 * var, rel=0.03)


def test_salt_and_pepper_fractions():
    x = np.full((400, 400), 0.5)
    out = salt_and_pepper(x, 0.005, np.random.default_rng(0))
    n = x.size
    assert np.mean(out == 1.0) == pytest.approx(0.005, abs=4 * np.sqrt(0.005 / n))
    # pepper after salt: some salted pixels get peppered, so slightly fewer than 0.5 % salt survive
    assert np.mean(out == 0.0) == pytest.approx(0.005, abs=4 * np.sqrt(0.005 / n))
    assert np.mean(out == 0.5) == pytest.approx(0.99, abs=0.002)


def test_em_crappifier_noise_variance():
    hi = np.full((256, 256), 0.5, np.float32)
    out = PSSREMCrappifier(1, in_range=1.0)(hi, np.random.default_rng(0))
    assert np.var(out) == pytest.approx(0.05 * 0.5, rel=0.03)
    low = PSSREMCrappifier(4, in_range=1.0)(hi, np.random.default_rng(0))
    # bilinear 4x without antialiasing averages 2x2 samples: variance / 4
    assert low.shape == (64, 64) and np.var(low) == pytest.approx(0.05 * 0.5 / 4, rel=0.1)


def test_camera_statistics_match_the_photon_transfer_formula():
    gain, offset, rn, photons = 2.5, 100.0, 3.0, 40.0
    cam = CameraCrappifier(4, photons=photons, gain=gain, offset=offset, read_noise=rn, bit_depth=16)
    hi = np.full((512, 512), 7.0, np.float32)
    out = cam(hi, np.random.default_rng(0))
    assert out.shape == (128, 128)
    assert np.all(out == np.rint(out))  # quantised
    assert out.mean() == pytest.approx(gain * photons + offset, rel=0.002)
    expected_var = gain**2 * (photons + rn**2) + 1 / 12
    assert out.var() == pytest.approx(expected_var, rel=0.04)


def test_camera_photon_scaling_baseline_psf_and_clipping():
    hi = _blobs((128, 128)) + 300.0
    cam = CameraCrappifier(4, photons=50, gain=1.0, offset=0.0, read_noise=0.0, baseline=300.0)
    e = cam.expected_electrons(hi)
    assert e.mean() == pytest.approx(50.0)
    np.testing.assert_allclose(e, area_downsample(hi - 300.0, 4) * 50 / area_downsample(hi - 300.0, 4).mean())
    blurred = CameraCrappifier(1, psf_sigma_px=2.0, photons=50, baseline=300).expected_electrons(hi)
    sharp = CameraCrappifier(1, psf_sigma_px=0.0, photons=50, baseline=300).expected_electrons(hi)
    assert (np.diff(blurred, axis=1) ** 2).mean() < 0.5 * (np.diff(sharp, axis=1) ** 2).mean()
    eight_bit_cam = CameraCrappifier(4, photons=1000, gain=1.0, offset=10, bit_depth=8)
    eight_bit = eight_bit_cam(hi, np.random.default_rng(0))
    assert eight_bit.max() == 255 and eight_bit.min() >= 0


def test_area_and_bilinear_downsampling_factor():
    x = np.arange(16 * 24, dtype=np.float64).reshape(16, 24)
    assert area_downsample(x, 4).shape == (4, 6)
    assert area_downsample(x, 4)[0, 0] == pytest.approx(x[:4, :4].mean())
    # bilinear 4x samples between pixels 1 and 2 of each block
    assert bilinear_downsample(x, 4)[1, 2] == pytest.approx(x[5:7, 9:11].mean())
    assert bilinear_downsample(x, 1).shape == x.shape


def test_make_crappifier_from_file_with_overrides(tmp_path):
    path = tmp_path / "calib.yaml"
    path.write_text("kind: camera\ngain: 2.0\noffset: 99\nread_noise: 1.2\nphotons: 30\nbit_depth: 12\n"
                    "psf_sigma_px: 0.0\nscale: 4\ncalibration: {r2: 0.99}\n")
    crap = make_crappifier({"kind": "file", "path": str(path), "scale": 2})
    assert isinstance(crap, CameraCrappifier)
    assert (crap.scale, crap.gain, crap.offset, crap.bit_depth) == (2, 2.0, 99.0, 12)
    composed = make_crappifier([{"kind": "pssr-fluo", "scale": 1}, {"kind": "downsample", "scale": 4}])
    assert composed.scale == 4


@pytest.mark.parametrize(
    "cfg, needle",
    [
        ({"kind": "nope"}, "unknown crappifier kind"),
        ({"kind": "pssr-fluo", "sigma": 3}, "no parameter"),
        ({"kind": "pssr-fluo", "scale": 0}, "positive integer"),
        ({"kind": "pssr-fluo", "order": "new"}, "order"),
        ({"kind": "camera", "gain": -1}, "gain"),
        ({"kind": "camera", "bit_depth": 40}, "bit_depth"),
        ({"kind": "file"}, "no 'path'"),
        ({"kind": "file", "path": "/nonexistent/calib.yaml"}, "does not exist"),
        ({"scale": 4}, "'kind'"),
    ],
)
def test_bad_configs_raise_config_error(cfg, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        make_crappifier(cfg)
    assert info.value.hint


def test_bad_images_raise_clear_errors():
    crap = PSSRFluoCrappifier(4)
    with pytest.raises(FrameFormatError, match="2-D"):
        crap(np.zeros((2, 32, 32), np.float32), np.random.default_rng(0))
    bad = _blobs((32, 32))
    bad[3, 3] = np.nan
    with pytest.raises(FrameFormatError, match="NaN"):
        crap(bad, np.random.default_rng(0))
    with pytest.raises(FrameFormatError, match="smaller"):
        crap(np.ones((2, 2), np.float32), np.random.default_rng(0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_tensor_in_cuda_tensor_out():
    hi = torch.from_numpy(_blobs()).cuda()
    out = PSSRFluoCrappifier(4)(hi, np.random.default_rng(0))
    assert out.device == hi.device and out.shape == (24, 32)
    expected = PSSRFluoCrappifier(4)(_blobs(), np.random.default_rng(0))
    np.testing.assert_array_equal(out.cpu().numpy(), expected)


# ---------------------------------------------------------------------------------------------
# randomisation


RANDOM_FLUO = {
    "kind": "randomized",
    "base": {"kind": "pssr-fluo", "scale": 4},
    "ranges": {"var_factor": [0.2, 1.0], "blur_sigma": [3.0, 7.0], "pre_blur_px": [0.0, 1.0]},
}
RANDOM_CAMERA = {
    "kind": "randomized",
    "base": {"kind": "camera", "scale": 4, "photons": 20.0},
    "ranges": {"photons": [4.0, 80.0], "gain": [0.5, 4.0], "offset": [50.0, 400.0], "read_noise": [0.8, 3.0]},
}


@pytest.mark.parametrize("cfg", [RANDOM_FLUO, RANDOM_CAMERA])
def test_randomized_draws_stay_in_their_ranges_and_cover_them(cfg: dict) -> None:
    crap = make_crappifier(cfg)
    assert crap.scale == 4 and make_crappifier(crap.config()).config() == crap.config()
    rng = np.random.default_rng(0)
    seen: dict[str, list[float]] = {k: [] for k in cfg["ranges"]}
    for _ in range(200):
        concrete, blur = crap.draw(rng)
        params = {**concrete.config(), "pre_blur_px": blur}
        for k, v in seen.items():
            v.append(params[k])
        assert all(params[k] == cfg["base"][k] for k in cfg["base"] if k not in cfg["ranges"])
    for k, (lo, hi) in cfg["ranges"].items():
        vals = np.array(seen[k])
        assert vals.min() >= lo and vals.max() <= hi, k
        assert vals.min() < lo + 0.1 * (hi - lo) and vals.max() > hi - 0.1 * (hi - lo), k  # spread over it


def test_randomized_is_seeded_and_applies_what_it_draws() -> None:
    img = _blobs()
    crap = make_crappifier(RANDOM_CAMERA)
    a = crap(img, np.random.default_rng(5))
    assert np.array_equal(a, crap(img, np.random.default_rng(5)))
    assert not np.array_equal(a, crap(img, np.random.default_rng(6)))
    # the same generator state, drawn by hand: the concrete camera with those parameters, same noise
    rng = np.random.default_rng(5)
    concrete, blur = crap.draw(rng)
    assert blur == 0.0
    assert np.array_equal(a, concrete(img, rng))
    # the mean follows the drawn offset and gain (photons * gain + offset)
    cam = concrete.config()
    assert abs(a.mean() - (cam["photons"] * cam["gain"] + cam["offset"])) < 0.05 * a.mean()


def test_randomized_pre_blur_blurs() -> None:
    img = _blobs()
    plain = make_crappifier({"kind": "randomized", "base": {"kind": "downsample", "scale": 1},
                             "ranges": {"pre_blur_px": [0.0, 0.0]}})
    blurred = make_crappifier({"kind": "randomized", "base": {"kind": "downsample", "scale": 1},
                               "ranges": {"pre_blur_px": [2.0, 2.0]}})
    assert np.allclose(plain(img, 0), img, atol=1e-6)
    assert np.allclose(blurred(img, 0), ndi_gaussian(img, 2.0), atol=1e-5)


def ndi_gaussian(img: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(img.astype(np.float64), sigma, mode="reflect")


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"base": {"kind": "pssr-fluo"}, "ranges": {"noise": [0, 1]}}, "cannot vary 'noise'"),
        ({"base": {"kind": "camera"}, "ranges": {"bit_depth": [8, 12]}}, "cannot vary 'bit_depth'"),
        ({"base": {"kind": "pssr-fluo"}, "ranges": {"var_factor": [1.0, 0.5]}}, "low <= high"),
        ({"base": {"kind": "pssr-fluo"}, "ranges": {"var_factor": [-1.0, 0.5]}}, "var_factor"),
        ({"base": {"kind": "pssr-fluo"}, "ranges": {"pre_blur_px": [-1.0, 0.5]}}, "pre_blur_px"),
        ({"base": {"kind": "pssr-fluo"}, "ranges": {"var_factor": "wide"}}, "not \\[low, high\\]"),
        ({"base": {"kind": "pssr-fluo"}, "ranges": {}}, "non-empty"),
        ({"base": {"kind": "compose", "steps": []}, "ranges": {"x": [0, 1]}}, "one crappifier"),
        ({"base": {"kind": "pssr-fluo"}}, "exactly 'base' and 'ranges'"),
    ],
)
def test_randomized_config_errors(cfg: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        make_crappifier({"kind": "randomized", **cfg})
    assert err.value.hint
