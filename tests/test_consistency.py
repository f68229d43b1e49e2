"""The per-frame consistency check (live_pssr.consistency) on the simulator, whose ground truth is known.

Validation (issue 10): over 100 seeded random scenes (80² camera pixels, laser power 0.02-0.2, the
shipped models' training range) the ground truth passed as the "enhanced" frame is not flagged;
the truth with a planted tube (the simulator's own tube model: width 0.3-0.7 um, brightness
0.6-1.0, 1.5-4 um long) where the raw frame shows background is flagged, on the "added" side, with
the error map's maximum on the tube; the truth with a piece of a real tube erased is flagged on the
"removed" side. Both with the camera's noise model given and with the noise estimated from the
frame. Then the threshold's false-alarm bound, the forward model, the PSF default from a model's
provenance, calibration files, torch tensors, the TTA signal and bad input.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from live_pssr.consistency import (
    ConsistencyInputError,
    ConsistencyResult,
    check_consistency,
    flag_threshold,
    forward_project,
    psf_sigma_from_spec,
    smooth_unit,
    tta_disagreement,
)
from live_pssr.errors import ConfigError, FrameFormatError, FrameShapeError, LivePSSRError
from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope, block_sum
from live_pssr.sim.scene import WIDTH_RANGE_UM, tube_points

SIZE = 80
N_SCENES = 100
NOISE = ("camera", "frame")


# ----------------------------------------------------------------------------------------------
# the simulated validation set


def _plant_tube(mic: SimulatedMicroscope, structure: np.ndarray, rng: np.random.Generator):
    """A tube rendered by the simulator's own model where the truth holds only background.

    Returns (photons per high-res pixel, footprint on the camera grid) or None.
    """
    c = mic.config
    h_um, w_um = c.height * c.pixel_size_um, c.width * c.pixel_size_um
    for _ in range(300):
        length = rng.uniform(1.5, 4.0)
        width = rng.uniform(*WIDTH_RANGE_UM)
        bright = rng.uniform(0.6, 1.0)
        theta0, kappa = rng.uniform(0, 2 * np.pi), rng.uniform(-0.3, 0.3)
        cy, cx = rng.uniform(0.15 * h_um, 0.85 * h_um), rng.uniform(0.15 * w_um, 0.85 * w_um)
        n = int(np.ceil(length / mic.scene.sample_um)) + 1
        s = np.linspace(-length / 2, length / 2, n)
        ds = length / (n - 1)
        theta = theta0 + kappa * s
        y, x = np.cumsum(np.sin(theta)) * ds, np.cumsum(np.cos(theta)) * ds
        y += cy - y.mean()
        x += cx - x.mean()
        py, px, w = tube_points(y, x, theta, np.full(n, width), np.full(n, bright * ds), mic._n_lanes)
        tube = mic._render(py, px, w * mic._photons_per_dye, mic.truth_shape)  # the simulator's renderer
        cam = block_sum(tube, c.upscale)
        near = ndi.binary_dilation(cam > 0.05 * cam.max(), iterations=2)
        if structure[near].max() < 0.05 * cam.max():  # the raw frame shows background there
            return tube, ndi.binary_dilation(cam > 0.05 * cam.max())
    return None


def _erase_piece(mic: SimulatedMicroscope, truth: np.ndarray, background: np.ndarray,
                 rng: np.random.Generator, radius_um: float = 0.5):
    """The truth with a disk (1 um across) on a real tube's centreline set back to background."""
    c = mic.config
    yc, xc, _, _, weight = mic.scene.centerlines(0.0)
    h_um, w_um = c.height * c.pixel_size_um, c.width * c.pixel_size_um
    inside = (yc > 0.1 * h_um) & (yc < 0.9 * h_um) & (xc > 0.1 * w_um) & (xc < 0.9 * w_um) & (weight > 0)
    if not inside.any():
        return None
    i = rng.choice(np.flatnonzero(inside))
    yy, xx = (np.mgrid[: truth.shape[0], : truth.shape[1]] + 0.5) * c.truth_pixel_size_um
    disk = (yy - yc[i]) ** 2 + (xx - xc[i]) ** 2 < radius_um**2
    erased = truth.copy()
    erased[disk] = background[disk]
    return erased, ndi.binary_dilation(block_sum(disk.astype(np.float32), c.upscale) > 0)


@pytest.fixture(scope="module")
def validation() -> dict[str, dict[str, list]]:
    """Run the three cases on N_SCENES seeded scenes with both noise models; collect the outcomes."""
    out: dict[str, dict[str, list]] = {k: {"truth": [], "truth_max": [], "planted": [], "planted_on": [],
                                           "planted_not_removed": [], "removed": [], "removed_on": []}
           for k in NOISE}
    for i in range(N_SCENES):
        rng = np.random.default_rng(1000 + i)
        laser = float(rng.uniform(0.02, 0.2))
        cfg = MicroscopeConfig(height=SIZE, width=SIZE, laser_power=laser, seed=i, n_networks=40)
        mic = SimulatedMicroscope(cfg)
        raw, truth = mic.acquire(0)
        # same seed without networks: the same autofluorescence background alone
        background = SimulatedMicroscope(MicroscopeConfig(height=SIZE, width=SIZE, laser_power=laser, seed=i,
                                                          n_networks=0)).ground_truth(0)
        planted = _plant_tube(mic, block_sum(truth - background, cfg.upscale), rng)
        erased = _erase_piece(mic, truth, background, rng)
        assert planted is not None and erased is not None, f"scene {i} has no room for the cases"
        for noise in NOISE:
            camera = mic.camera if noise == "camera" else None
            res = out[noise]
            r = check_consistency(raw, truth, 4, 0.0, camera)
            res["truth"].append(not r.flagged)
            res["truth_max"].append(float(r.error_map.max()))
            r = check_consistency(raw, truth + planted[0], 4, 0.0, camera)
            res["planted"].append(r.flagged and r.added)
            res["planted_on"].append(bool(planted[1][r.peak]))
            res["planted_not_removed"].append(not r.removed)  # the fit is not dragged by the fake tube
            r = check_consistency(raw, erased[0], 4, 0.0, camera)
            res["removed"].append(r.flagged and r.removed)
            res["removed_on"].append(bool(erased[1][r.peak]))
    for noise in NOISE:
        rates = {k: float(np.mean(v)) for k, v in out[noise].items() if k != "truth_max"}
        print(f"consistency validation ({noise} noise, {N_SCENES} scenes): {rates}")
    return out


@pytest.mark.parametrize("noise", NOISE)
def test_truth_is_not_flagged(validation, noise):
    assert np.mean(validation[noise]["truth"]) >= 0.95


@pytest.mark.parametrize("noise", NOISE)
def test_planted_tube_is_flagged_where_it_is(validation, noise):
    assert np.mean(validation[noise]["planted"]) >= 0.95
    assert np.mean(validation[noise]["planted_on"]) >= 0.95
    assert np.mean(validation[noise]["planted_not_removed"]) >= 0.95


@pytest.mark.parametrize("noise", NOISE)
def test_removed_structure_is_flagged(validation, noise):
    assert np.mean(validation[noise]["removed"]) >= 0.95
    assert np.mean(validation[noise]["removed_on"]) >= 0.95


@pytest.mark.parametrize("noise", NOISE)
def test_false_alarm_rate_on_the_simulator_is_within_the_bound(validation, noise):
    """Thresholds for loose rates (0.2, 0.05): the truth's maxima exceed them no more often than that."""
    maxima = np.array(validation[noise]["truth_max"])
    for alpha in (0.2, 0.05):
        rate = float(np.mean(maxima > flag_threshold((SIZE, SIZE), 1.0, alpha)))
        assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / maxima.size), (alpha, rate)


def test_threshold_bound_on_white_noise():
    """Smoothed unit white noise: unit variance everywhere (borders too); the max exceeds the threshold
    at most at the nominal rate, and the bound is not wildly conservative."""
    rng = np.random.default_rng(0)
    shape, n, alpha = (48, 64), 400, 0.1
    fields = np.stack([smooth_unit(rng.standard_normal(shape).astype(np.float32), 1.0) for _ in range(n)])
    var = fields.var(axis=0)
    for y, x in ((0, 0), (0, 30), (24, 0), (24, 30), (47, 63)):
        assert 0.8 < var[y, x] < 1.2, (y, x, var[y, x])
    rate = float(np.mean(np.abs(fields).max(axis=(1, 2)) > flag_threshold(shape, 1.0, alpha)))
    assert 0.02 <= rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / n), rate
    assert flag_threshold((256, 256)) == pytest.approx(5.81, abs=0.01)
    assert flag_threshold((512, 512)) > flag_threshold((256, 256))


# ----------------------------------------------------------------------------------------------
# forward model and PSF


def _direct_projection(e: np.ndarray, u: int, sigma: float) -> np.ndarray:
    """Reference: pad (reflect), convolve with the box-times-Gaussian kernel, take every u-th block."""
    from live_pssr.consistency import _forward_taps

    taps, radius = _forward_taps(u, sigma)
    p = np.pad(e.astype(np.float64), radius, mode="reflect") if radius else e.astype(np.float64)
    k = np.outer(taps, taps)
    h, w = e.shape[0] // u, e.shape[1] // u
    return np.array([[np.sum(k * p[j * u: j * u + k.shape[0], i * u: i * u + k.shape[1]]) for i in range(w)]
                     for j in range(h)])


@pytest.mark.parametrize("u,sigma", [(4, 0.0), (4, 1.118), (2, 0.7), (3, 2.0), (1, 1.5)])
def test_forward_projection_is_blur_then_area_integration(u, sigma):
    import torch

    e = (np.random.default_rng(u).random((11 * u, 9 * u)) * 1000).astype(np.uint16)
    ref = _direct_projection(e, u, sigma)
    np.testing.assert_allclose(forward_project(e, u, sigma), ref, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(forward_project(torch.from_numpy(e.astype(np.float32)), u, sigma), ref,
                               rtol=1e-5, atol=1e-3)
    if sigma == 0:
        np.testing.assert_allclose(forward_project(e, u), block_sum(e.astype(np.float64), u) / u**2)


def test_the_forward_blur_must_match_the_crappifier():
    """A frame made by a camera crappifier that blurs by 2 hi-res px is explained by the blurred forward
    model (psf_sigma_px=2), not by area integration alone."""
    from live_pssr.crappify import CameraCrappifier

    mic = SimulatedMicroscope(MicroscopeConfig(height=64, width=64, seed=3, n_networks=40))
    hi = mic.ground_truth(0)
    cam = CameraCrappifier(scale=4, psf_sigma_px=2.0, photons=80.0, gain=2.0, offset=100.0, read_noise=1.5)
    raw = cam(hi, np.random.default_rng(0)).astype(np.uint16)
    right = check_consistency(raw, hi, 4, 2.0, cam)
    wrong = check_consistency(raw, hi, 4, 0.0, cam)
    assert not right.flagged and right.score > 0.99 and abs(right.chi2 - 1) < 0.1
    assert wrong.flagged and wrong.removed and wrong.chi2 > right.chi2 + 0.1


def test_psf_sigma_from_the_model_provenance():
    from live_pssr.modelio import ModelSpec, load_model

    sigma, source = psf_sigma_from_spec(load_model("mito-sr4-fast"))
    assert sigma == 0.0 and "simulator" in source

    def spec(*sources):
        return ModelSpec("m", "fast-sr", {}, 4, training={"data": list(sources)})

    fluo = {"kind": "mito", "weight": 1.0, "crappifier": {"kind": "pssr-fluo", "scale": 4, "antialias": True}}
    assert psf_sigma_from_spec(spec(fluo))[0] == pytest.approx(math.sqrt(1.25))
    camera = {"kind": "images", "crappifier": {"kind": "camera", "scale": 4, "psf_sigma_px": 2.0}}
    assert psf_sigma_from_spec(spec(fluo, camera))[0] == pytest.approx(2.0)  # physical sources first
    compose = {"kind": "images", "crappifier": {"kind": "compose", "steps": [
        {"kind": "camera", "scale": 1, "psf_sigma_px": 1.0}, {"kind": "downsample", "scale": 4}]}}
    assert psf_sigma_from_spec(spec(compose))[0] == pytest.approx(math.sqrt(1.0 + 1.25))
    assert psf_sigma_from_spec(spec({"kind": "fmd"}))[0] == 0.0
    assert psf_sigma_from_spec(ModelSpec("m", "fast-sr", {}, 4))[0] == 0.0
    # check_consistency takes it from model=
    mic = SimulatedMicroscope(MicroscopeConfig(height=32, width=32, seed=1, n_networks=40))
    raw, truth = mic.acquire(0)
    r = check_consistency(raw, truth, model=spec(fluo))
    assert r.psf_sigma_px == pytest.approx(math.sqrt(1.25)) and r.psf_source.startswith("m: from")
    with pytest.raises(ConfigError, match="upscale"):
        check_consistency(raw, truth, 4, model=ModelSpec("d", "fast-sr", {}, 1))


# ----------------------------------------------------------------------------------------------
# noise from a calibration, clipped and hot pixels, torch input, the real model


def test_calibration_written_by_calibrate(tmp_path):
    """`live-pssr calibrate`'s YAML (photon transfer fitted to repeats of a static field) is the noise."""
    import yaml

    from live_pssr.calibrate import fit_photon_transfer, write_config

    mic = SimulatedMicroscope(MicroscopeConfig(height=64, width=64, laser_power=0.2, seed=5, n_networks=40))
    mean_e = mic.expected_electrons(mic.ground_truth(0))
    rng = np.random.default_rng(0)
    stack = np.stack([mic.camera.record(mean_e, rng) for _ in range(20)])
    path = write_config(fit_photon_transfer(stack), tmp_path / "cam.yaml")
    raw, truth = mic.acquire(0)
    r = check_consistency(raw, truth, 4, 0.0, path)
    assert r.noise.slope == pytest.approx(mic.camera.gain, rel=0.1)
    assert "calibration" in r.noise.source and not r.flagged
    as_dict = check_consistency(raw, truth, 4, 0.0, yaml.safe_load(path.read_text()))
    assert as_dict.noise.slope == r.noise.slope
    assert check_consistency(raw, truth, 4, 0.0, str(path)).noise.slope == r.noise.slope


def test_clipped_pixels_are_left_out_and_a_hot_pixel_does_not_flag():
    mic = SimulatedMicroscope(MicroscopeConfig(height=64, width=64, seed=2, n_networks=40))
    raw, truth = mic.acquire(0)
    hot = raw.copy()
    hot[30, 30] = 5000  # a hot pixel / cosmic ray: z ~ 100 alone
    r = check_consistency(hot, truth, 4, 0.0, mic.camera)
    assert not r.flagged and r.n_masked == 0
    sat = raw.copy()
    sat[:4] = 65535
    r = check_consistency(sat, truth, 4, 0.0, mic.camera)
    assert r.n_masked == 4 * 64 and not r.flagged and r.notes
    twelve_bit = np.minimum(raw, 4095)  # a 12-bit camera saturates at 4095: without a camera, too
    twelve_bit[:2] = 4095
    r = check_consistency(twelve_bit, truth, 4, 0.0)
    assert r.n_masked == int(np.count_nonzero(twelve_bit == 4095)) >= 2 * 64 and not r.flagged


def test_denoising_pair_and_the_raw_frame_itself(pair):
    """upscale 1 (denoising models): the raw frame explains itself; its 4x truth does too."""
    raw, truth = pair
    same = check_consistency(raw, raw, upscale=1)
    assert not same.flagged and same.score == 1.0 and same.error_map.max() == 0.0
    expected = block_sum(truth, 4)
    assert not check_consistency(raw, expected, upscale=1).flagged


def test_torch_tensor_gives_the_numpy_result():
    import torch

    mic = SimulatedMicroscope(MicroscopeConfig(height=48, width=48, seed=4, n_networks=40))
    raw, truth = mic.acquire(0)
    a = check_consistency(raw, truth, 4, 1.0)
    b = check_consistency(torch.from_numpy(raw.astype(np.int32)), torch.from_numpy(truth), 4, 1.0)
    assert a.flagged == b.flagged and a.peak == b.peak
    np.testing.assert_allclose(a.signed_map, b.signed_map, atol=1e-3)


def test_real_model_output_and_a_tube_planted_into_it():
    """The shipped default model's output is checked like any frame; a tube added to it is found."""
    from live_pssr.enhancer import Enhancer
    from live_pssr.modelio import load_model

    model = load_model("mito-sr4-fast")
    enhancer = Enhancer(model, "torch", out_dtype="float32")
    mic = SimulatedMicroscope(MicroscopeConfig(height=64, width=64, laser_power=0.1, seed=7, n_networks=40))
    raw, truth = mic.acquire(0)
    out = enhancer.enhance_window([raw])
    r = check_consistency(raw, out, model=model, camera=mic.camera)
    assert isinstance(r, ConsistencyResult) and 0.0 <= r.score <= 1.0 and r.psf_sigma_px == 0.0
    assert r.error_map.dtype == np.float32 and r.error_map.shape == raw.shape
    json.dumps(r.summary())
    background = SimulatedMicroscope(MicroscopeConfig(height=64, width=64, laser_power=0.1, seed=7,
                                                      n_networks=0)).ground_truth(0)
    tube, where = _plant_tube(mic, block_sum(truth - background, 4), np.random.default_rng(7))
    design = np.stack([truth.ravel(), np.ones(truth.size)], axis=1)
    scale = float(np.linalg.lstsq(design, out.ravel(), rcond=None)[0][0])  # the model's output units
    r = check_consistency(raw, out + scale * tube, model=model, camera=mic.camera)
    assert r.flagged and r.added and where[r.peak]


# ----------------------------------------------------------------------------------------------
# test-time augmentation


def _nearest_up(x):
    return np.kron(np.asarray(x, np.float32), np.ones((4, 4), np.float32))


def test_tta_equivariant_model_has_no_spread_and_a_biased_one_has():
    raw = (np.random.default_rng(0).random((24, 32)) * 100).astype(np.uint16)
    t = tta_disagreement(_nearest_up, raw)
    assert t.n_transforms == 8 and t.spread.shape == (96, 128) and t.disagreement < 1e-6
    np.testing.assert_allclose(t.mean, _nearest_up(raw), atol=1e-3)
    # a model that paints a ramp fixed to the image frame (not to the sample) disagrees with itself
    biased = tta_disagreement(lambda f: _nearest_up(f) + np.arange(f.shape[-1] * 4)[None, :], raw)
    assert biased.disagreement > 0.1 and biased.spread_raw.shape == raw.shape
    four = tta_disagreement(lambda f: _nearest_up(f), raw, transforms=4)
    assert four.n_transforms == 4
    window = tta_disagreement(lambda frames: _nearest_up(frames[-1]), [raw, raw])
    assert window.disagreement < 1e-6
    with pytest.raises(ConfigError):
        tta_disagreement(_nearest_up, raw, transforms=3)
    with pytest.raises(FrameShapeError):
        tta_disagreement(lambda f: np.zeros((96, 128)), raw)  # ignores the transposed shape


def test_tta_on_the_real_model():
    from live_pssr.enhancer import Enhancer

    enhancer = Enhancer("mito-sr4-fast", "torch", out_dtype="float32")
    raw = SimulatedMicroscope(MicroscopeConfig(height=32, width=32, seed=1, n_networks=40)).frame(0)
    t = tta_disagreement(lambda f: enhancer.enhance_window([f]), raw)
    assert t.spread.shape == (128, 128) and np.isfinite(t.spread).all() and 0 < t.disagreement < 1


# ----------------------------------------------------------------------------------------------
# bad input: clear errors


@pytest.fixture(scope="module")
def pair():
    mic = SimulatedMicroscope(MicroscopeConfig(height=32, width=32, seed=0, n_networks=40))
    raw, truth = mic.acquire(0)
    return raw, truth


def _nan(a, where=(3, 3), value=np.nan):
    a = a.astype(np.float32)
    a[where] = value
    return a


BAD = {
    "enhanced-size": (lambda r, e: (r, e[:-4]), {}, FrameShapeError, "upscale"),
    "wrong-upscale": (lambda r, e: (r, e), {"upscale": 2}, FrameShapeError, "upscale 2"),
    "upscale-zero": (lambda r, e: (r, e), {"upscale": 0}, ConfigError, "upscale"),
    "raw-3d": (lambda r, e: (r[None], e), {}, FrameFormatError, "2-D"),
    "raw-bool": (lambda r, e: (r > 100, e), {}, FrameFormatError, "bool"),
    "raw-tiny": (lambda r, e: (r[:4, :4], e[:16, :16]), {}, FrameFormatError, "4x4"),
    "raw-nan": (lambda r, e: (_nan(r), e), {}, FrameFormatError, "NaN"),
    "enhanced-nan": (lambda r, e: (r, _nan(e)), {}, FrameFormatError, "NaN"),
    "enhanced-inf": (lambda r, e: (r, _nan(e, value=np.inf)), {}, FrameFormatError, "Inf"),
    "raw-constant": (lambda r, e: (np.full_like(r, 100), e), {}, ConsistencyInputError, "constant"),
    "enhanced-constant": (lambda r, e: (r, np.ones_like(e)), {}, ConsistencyInputError, "constant"),
    "raw-saturated": (lambda r, e: (np.where(np.arange(r.size).reshape(r.shape) % 97 == 0, 7, 65535)
                                    .astype(np.uint16), e), {}, ConsistencyInputError, "clipped"),
    "psf-negative": (lambda r, e: (r, e), {"psf_sigma_px": -1.0}, ConfigError, "psf_sigma_px"),
    "psf-huge": (lambda r, e: (r, e), {"psf_sigma_px": 100.0}, ConfigError, "psf_sigma_px"),
    "false-alarm": (lambda r, e: (r, e), {"false_alarm": 1.5}, ConfigError, "false_alarm"),
    "smooth-zero": (lambda r, e: (r, e), {"smooth_sigma_px": 0}, ConfigError, "smooth_sigma_px"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_clear_error(pair, case):
    make, kwargs, error, words = BAD[case]
    raw, enhanced = make(*pair)
    with pytest.raises(error) as info:
        check_consistency(raw, enhanced, **({"upscale": 4} | kwargs))
    assert isinstance(info.value, LivePSSRError) and info.value.hint and words in info.value.message


CALIBRATIONS = {
    "missing": None,
    "not-yaml": "kind: camera\n  gain: [1,\n",
    "no-kind": "gain: 2.0\noffset: 100\n",
    "other-kind": "kind: pssr-fluo\nscale: 4\n",
    "negative-gain": "kind: camera\nscale: 4\ngain: -2.0\noffset: 100\nread_noise: 1.5\n",
    "text-read-noise": "kind: camera\nscale: 4\ngain: 2.0\noffset: 100\nread_noise: lots\n",
    "unknown-key": "kind: camera\nscale: 4\ngain: 2.0\nnoise_floor: 3\n",
}


@pytest.mark.parametrize("case", sorted(CALIBRATIONS))
def test_calibration_that_does_not_validate(pair, tmp_path, case):
    path = tmp_path / "cam.yaml"
    if CALIBRATIONS[case] is not None:
        path.write_text(CALIBRATIONS[case])
    with pytest.raises(ConfigError) as info:
        check_consistency(*pair, 4, 0.0, path)
    assert info.value.hint


def test_camera_objects_that_do_not_validate(pair):
    with pytest.raises(ConfigError, match="kind 'pssr-fluo'"):
        check_consistency(*pair, 4, 0.0, {"kind": "pssr-fluo"})
    with pytest.raises(ConfigError, match="no numeric gain"):
        check_consistency(*pair, 4, 0.0, object())
    from live_pssr.sim import CameraModel

    with pytest.raises(ConfigError, match="gain"):
        check_consistency(*pair, 4, 0.0, CameraModel(gain=0.0))


def test_benchmark_runs_and_writes_json(tmp_path):
    from live_pssr.bench.consistency import bench_consistency

    rows = bench_consistency((32,), engine="torch", repeats=1, enhance_repeats=1,
                             json_path=tmp_path / "b.json")
    assert rows[0]["check_ms"] > 0 and rows[0]["enhance_ms"] > 0 and rows[0]["ratio_pct"] > 0
    assert json.loads((tmp_path / "b.json").read_text())["rows"][0]["raw"] == "32x32"
