"""Camera calibration: recovers known parameters, checks itself, writes a usable config; real FMD data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from typer.testing import CliRunner

from live_pssr.calibrate import fit_photon_transfer, validate_fit, write_config
from live_pssr.cli import app
from live_pssr.crappify import CameraCrappifier, make_crappifier
from live_pssr.errors import ConfigError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data folder {REAL} absent")


def _field(shape=(96, 96), seed=0) -> np.ndarray:
    """Expected photo-electrons: smooth bright regions on a signal-free background (~20 % of pixels)."""
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.random(shape), 6)
    img = (img - img.min()) / (img.max() - img.min())
    return np.clip(img - 0.35, 0, None) * 600


def _camera(e, n, gain, offset, rn, seed=1, bits=16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    stack = np.broadcast_to(e, (n, *e.shape))
    adu = gain * (rng.poisson(stack) + rng.normal(0, rn, stack.shape)) + offset
    return np.clip(np.rint(adu), 0, 2**bits - 1).astype(np.uint16 if bits > 8 else np.uint8)


@pytest.mark.parametrize("gain, offset, rn", [(2.5, 100.0, 1.6), (0.6, 400.0, 3.0), (4.0, 20.0, 0.9)])
def test_temporal_fit_recovers_gain_and_read_noise_within_5_percent(gain, offset, rn):
    e = _field()
    fit = fit_photon_transfer(_camera(e, 30, gain, offset, rn))
    assert fit.method == "temporal" and abs(fit.motion) < 0.1
    assert fit.gain == pytest.approx(gain, rel=0.05)
    assert fit.read_noise == pytest.approx(rn, rel=0.05)
    assert fit.offset == pytest.approx(offset, abs=0.02 * offset + 0.5)
    assert fit.r2 > 0.99
    assert fit.photons == pytest.approx(e.mean(), rel=0.05)
    assert fit.bit_depth in (10, 12, 14, 16)


def test_spatial_fallback_for_single_frames():
    e = _field((256, 256), seed=3)
    fit = fit_photon_transfer(_camera(e, 1, 2.5, 100.0, 1.5))
    assert fit.method == "spatial" and fit.n_frames == 1
    assert fit.gain == pytest.approx(2.5, rel=0.08)
    assert fit.offset == pytest.approx(100.0, abs=2.0)


def test_moving_sample_switches_to_spatial():
    e = _field((128, 128), seed=4)
    rng = np.random.default_rng(5)
    moving = np.stack([np.roll(e, 2 * t, axis=1) for t in range(12)])  # drifts 2 px per frame
    frames = np.rint(2.0 * rng.poisson(moving) + 100).astype(np.uint16)
    fit = fit_photon_transfer(frames)
    assert fit.motion > 0.2 and fit.method == "spatial"
    assert any("moves" in n for n in fit.notes)
    assert fit.gain == pytest.approx(2.0, rel=0.1)
    forced = fit_photon_transfer(frames, method="temporal")  # motion inflates the temporal variance
    assert forced.gain > 1.3 * 2.0


def test_dark_frames_and_known_values_fix_offset_and_read_noise():
    e = _field(seed=6)
    frames = _camera(e, 20, 1.8, 150.0, 2.0, seed=7)
    dark = _camera(np.zeros_like(e), 10, 1.8, 150.0, 2.0, seed=8)
    fit = fit_photon_transfer(frames, dark=dark)
    assert fit.offset_source == "dark frames"
    assert fit.offset == pytest.approx(150.0, abs=0.1) and fit.read_noise == pytest.approx(2.0, rel=0.05)
    given = fit_photon_transfer(frames, offset=150.0)
    assert given.read_noise == pytest.approx(2.0, rel=0.1)
    from_rn = fit_photon_transfer(frames, read_noise=2.0)
    assert from_rn.offset == pytest.approx(150.0, abs=1.5)


def test_resynthesis_matches_the_measured_curve():
    frames = _camera(_field(seed=9), 30, 2.2, 90.0, 1.2, seed=10)
    fit = fit_photon_transfer(frames)
    val = validate_fit(frames, fit)
    assert val["median_abs_rel_err"] < 0.03 and val["frac_bins_within_5pct"] > 0.8
    # a wrong gain is caught by the same check
    wrong = fit_photon_transfer(frames)
    wrong.gain *= 1.3
    assert validate_fit(frames, wrong)["median_abs_rel_err"] > 0.1


def test_config_file_builds_the_fitted_camera(tmp_path):
    frames = _camera(_field(seed=11), 20, 3.0, 50.0, 1.0, seed=12)
    fit = fit_photon_transfer(frames)
    path = write_config(fit, tmp_path / "calib.yaml", scale=4, psf_sigma_px=1.2, source="synthetic")
    cam = make_crappifier({"kind": "file", "path": str(path)})
    assert isinstance(cam, CameraCrappifier)
    assert cam.scale == 4 and cam.psf_sigma_px == 1.2 and cam.bit_depth == fit.bit_depth
    assert cam.gain == pytest.approx(fit.gain, rel=1e-4) and cam.offset == pytest.approx(fit.offset, abs=1e-3)
    assert cam.read_noise == pytest.approx(fit.read_noise, abs=1e-4)
    assert cam.photons == pytest.approx(fit.photons, rel=1e-3)


def test_bad_frames_are_clear_errors():
    with pytest.raises(ConfigError, match="stack"):
        fit_photon_transfer(np.zeros((2, 2, 32, 32)))
    with pytest.raises(ConfigError, match="at least 3 frames"):
        fit_photon_transfer(_camera(_field(), 2, 2.0, 100, 1.0), method="temporal")
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="gain"):  # variance falls with intensity: not camera data
        e = _field()
        fit_photon_transfer(e[None] + rng.normal(0, 1, (10, *e.shape)) * (600 - e)[None] / 20)
    with pytest.raises(ConfigError, match="method"):
        fit_photon_transfer(_camera(_field(), 10, 2.0, 100, 1.0), method="magic")


def test_calibrate_command_end_to_end(tmp_path):
    frames = _camera(_field(seed=13), 16, 2.0, 100.0, 1.5, seed=14)
    tifffile.imwrite(tmp_path / "frames.tif", frames, photometric="minisblack")
    out = tmp_path / "cal" / "camera.yaml"
    result = CliRunner().invoke(app, ["calibrate", str(tmp_path / "frames.tif"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "gain" in result.output and "R^2" in result.output and str(out.name) in result.output
    assert out.is_file() and out.with_suffix(".png").stat().st_size > 10_000
    assert make_crappifier({"kind": "file", "path": str(out)}).gain == pytest.approx(2.0, rel=0.05)


@needs_real
@pytest.mark.parametrize("field", [1, 2])
def test_fmd_real_repeats(field):
    """50 real repeats: the fitted model re-synthesises the real mean-variance curve."""
    frames = tifffile.imread(REAL / f"fmd_confocal_bpae_nuclei_fov0{field}_raw50.tif")
    fit = fit_photon_transfer(frames)
    assert fit.method == "temporal" and fit.bit_depth == 8
    assert fit.r2 > 0.999
    assert 3.5 < fit.gain < 4.0 and 3.0 < fit.offset < 4.0 and fit.read_noise < 0.6
    val = validate_fit(frames, fit)
    assert val["median_abs_rel_err"] < 0.02 and val["frac_bins_within_5pct"] >= 0.9
    # one frame alone (spatial fallback) agrees with the 50-frame fit within 10 %
    assert fit_photon_transfer(frames[:1]).gain == pytest.approx(fit.gain, rel=0.1)
