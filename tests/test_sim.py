"""Simulated microscope: determinism, shapes, noise model, motion, calibration, validation."""

from __future__ import annotations

import numpy as np
import pytest

from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope, block_sum

SMALL = MicroscopeConfig(height=64, width=64, n_networks=48)  # ~3 networks in 10 x 10 um


@pytest.fixture(scope="module")
def scope() -> SimulatedMicroscope:
    return SimulatedMicroscope(SMALL)


def test_shapes_and_dtypes(scope: SimulatedMicroscope) -> None:
    assert scope.camera_shape == (64, 64)
    assert scope.truth_shape == (256, 256)
    assert scope.dtype == np.uint16
    frame, truth = scope.acquire(0)
    assert frame.shape == (64, 64) and frame.dtype == np.uint16
    assert truth.shape == (256, 256) and truth.dtype == np.float32
    expected = scope.expected_frame(0)
    assert expected.shape == (64, 64) and expected.dtype == np.float32
    assert scope.ground_truth(0).dtype == np.float32
    assert np.all(truth > 0)  # autofluorescence everywhere


def test_deterministic_and_order_independent(scope: SimulatedMicroscope) -> None:
    a5, a3 = scope.frame(5), scope.frame(3)
    other = SimulatedMicroscope(SMALL)
    b3, b5 = other.frame(3), other.frame(5)
    np.testing.assert_array_equal(a3, b3)
    np.testing.assert_array_equal(a5, b5)
    frame, truth = other.acquire(3)
    np.testing.assert_array_equal(frame, a3)
    np.testing.assert_array_equal(truth, scope.ground_truth(3))
    assert not np.array_equal(a3, a5)


def test_seed_changes_scene(scope: SimulatedMicroscope) -> None:
    other = SimulatedMicroscope(MicroscopeConfig(height=64, width=64, n_networks=48, seed=1))
    g0, g1 = scope.ground_truth(0), other.ground_truth(0)
    assert np.abs(g0 - g1).mean() > 0.2 * np.abs(g0 - g0.mean()).mean()


def test_noise_statistics_follow_camera_model() -> None:
    cfg = MicroscopeConfig(height=128, width=128, laser_power=0.2)
    scope = SimulatedMicroscope(cfg)
    frame = scope.frame(7).astype(np.float64)
    expected = scope.expected_frame(7).astype(np.float64)
    predicted = cfg.gain * (expected - cfg.offset) + (cfg.gain * cfg.read_noise) ** 2
    z = (frame - expected) / np.sqrt(predicted)
    assert abs(z.mean()) < 0.05
    assert 0.9 < z.var() < 1.1
    # the same holds in the dim background alone and on the bright filaments alone
    bright = expected > np.percentile(expected, 95)
    assert 0.8 < z[bright].var() < 1.2  # ~800 pixels
    assert 0.9 < z[~bright].var() < 1.1


def test_expected_frame_is_binned_truth() -> None:
    for upscale in (4, 1):
        cfg = MicroscopeConfig(height=32, width=48, upscale=upscale, n_networks=100)
        scope = SimulatedMicroscope(cfg)
        truth = scope.ground_truth(2)
        assert truth.shape == (32 * upscale, 48 * upscale)
        manual = cfg.offset + cfg.gain * cfg.laser_power * block_sum(truth, upscale)
        np.testing.assert_allclose(scope.expected_frame(2), manual, rtol=1e-5)
        assert scope.frame(2).shape == (32, 48)


def test_photons_high_sets_peak_brightness() -> None:
    cfg = MicroscopeConfig(height=64, width=64, n_networks=48, laser_power=1.0)
    peak = block_sum(SimulatedMicroscope(cfg).ground_truth(0), 4).max()
    assert 0.6 * cfg.photons_high < peak < 3 * cfg.photons_high


def test_scene_moves_smoothly(scope: SimulatedMicroscope) -> None:
    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    g0, g1, g20 = (scope.ground_truth(t) for t in (0, 1, 20))
    assert not np.array_equal(g0, g1)
    assert corr(g0, g1) > 0.97
    assert corr(g0, g20) < 0.9  # 1 s later: filaments moved by about their width
    assert corr(scope.frame(0), scope.frame(1)) > 0.8


def test_laser_power_scales_signal() -> None:
    lo = SimulatedMicroscope(MicroscopeConfig(height=32, width=32, laser_power=0.05))
    hi = SimulatedMicroscope(MicroscopeConfig(height=32, width=32, laser_power=0.5))
    np.testing.assert_array_equal(lo.ground_truth(4), hi.ground_truth(4))
    offset = lo.config.offset
    np.testing.assert_allclose(hi.expected_frame(4) - offset, 10 * (lo.expected_frame(4) - offset), rtol=1e-4)
    assert hi.frame(4).mean() - offset > 5 * (lo.frame(4).mean() - offset)


def test_bit_depth_and_clipping() -> None:
    eight = SimulatedMicroscope(MicroscopeConfig(height=32, width=32, bit_depth=8, offset=10))
    assert eight.dtype == np.uint8 and eight.frame(0).dtype == np.uint8
    cfg = MicroscopeConfig(height=32, width=32, bit_depth=12, laser_power=5.0, n_networks=200)
    frame = SimulatedMicroscope(cfg).frame(0)
    assert frame.dtype == np.uint16 and frame.max() == 4095


def test_empty_scene_is_background_only() -> None:
    scope = SimulatedMicroscope(MicroscopeConfig(height=16, width=16, n_networks=0))
    truth = scope.ground_truth(0)
    np.testing.assert_array_equal(truth, scope.ground_truth(50))
    assert truth.max() < 0.2 * scope.config.photons_high / scope.config.upscale**2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height", 0),
        ("width", -3),
        ("upscale", 0),
        ("laser_power", 0.0),
        ("fps", -1.0),
        ("bit_depth", 7),
        ("bit_depth", 17),
        ("gain", 0.0),
        ("read_noise", -1.0),
        ("psf_sigma_um", 0.0),
        ("seed", -1),
        ("height", 2.5),
        ("laser_power", float("nan")),
    ],
)
def test_config_validation(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        MicroscopeConfig(**{field: value})


def test_bad_time_index(scope: SimulatedMicroscope) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        scope.frame(-1)
    with pytest.raises(ValueError, match="non-negative"):
        scope.ground_truth(1.5)  # type: ignore[arg-type]
