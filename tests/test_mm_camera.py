"""The simulated camera on a real MMCore (pymmcore-plus unicore), and loading .cfg files."""

from __future__ import annotations

import numpy as np
import pytest

from live_pssr.errors import ConfigError
from live_pssr.mm.core import core_metadata, load_core, simulated_camera, simulated_core
from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope

CFG = MicroscopeConfig(height=64, width=64, seed=3)


@pytest.fixture
def core():
    return simulated_core(CFG, timing="fast", keep_checksums=True)


def snap(core) -> np.ndarray:
    core.snapImage()
    return np.array(core.getImage())


def test_snapped_frames_are_the_simulated_microscope_frames(core):
    mic = SimulatedMicroscope(CFG)
    frames = [snap(core) for _ in range(3)]
    for t, frame in enumerate(frames):
        assert frame.dtype == np.uint16 and frame.shape == (64, 64)
        np.testing.assert_array_equal(frame, mic.frame(t))
    cam = simulated_camera(core)
    assert [p.t for p in cam.log] == [0, 1, 2]
    assert cam.log[0].crc32 is not None


def test_exposure_scales_the_photon_budget(core):
    full = snap(core).astype(float) - CFG.offset
    core.setExposure(25.0)  # a quarter of the 100 ms reference
    core.setProperty("Cam", "TimeIndex", 0)
    quarter = snap(core).astype(float) - CFG.offset
    ratio = quarter.mean() / full.mean()
    assert 0.2 < ratio < 0.3


def test_laser_channel_group_changes_brightness(core):
    core.setConfig("Channel", "LowLaser")
    low = snap(core).astype(float).mean()
    core.setConfig("Channel", "HighLaser")
    high = snap(core).astype(float).mean()
    assert float(core.getProperty("Cam", "LaserPower")) == 1.0
    assert high > 5 * (low - CFG.offset) + CFG.offset


def test_roi_crops_and_binning_sums(core):
    full = snap(core)
    core.setProperty("Cam", "TimeIndex", 0)
    core.setROI(8, 16, 32, 24)  # x, y, w, h
    roi = snap(core)
    np.testing.assert_array_equal(roi, full[16:40, 8:40])
    assert core.getROI() == [8, 16, 32, 24]
    core.clearROI()
    core.setProperty("Cam", "Binning", 2)
    binned = snap(core)
    assert binned.shape == (32, 32)
    assert core.getPixelSizeUm() == pytest.approx(2 * CFG.pixel_size_um)
    # 4 pixels' charge per binned pixel: the signal above offset is ~4x the unbinned one
    assert (binned.astype(float) - CFG.offset).mean() > 3 * (full.astype(float) - CFG.offset).mean()


def test_bit_depth_8_gives_uint8_frames(core):
    core.setProperty("Cam", "BitDepth", 8)
    frame = snap(core)
    assert frame.dtype == np.uint8


def test_frame_bank_cycles_prerendered_frames():
    core = simulated_core(CFG, timing="fast", bank_size=2)
    a, b, c = snap(core), snap(core), snap(core)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def test_exposure_timing_paces_sequences():
    core = simulated_core(CFG, exposure_ms=20.0, timing="exposure")
    core.startSequenceAcquisition(6, 0, True)
    while core.isSequenceRunning() or core.getRemainingImageCount():
        if core.getRemainingImageCount():
            core.popNextImage()
    times = [p.time_s for p in simulated_camera(core).log]
    assert len(times) == 6
    assert np.mean(np.diff(times)) >= 0.018  # one frame per 20 ms exposure, never faster


def test_core_metadata_describes_the_acquisition(core):
    md = core_metadata(core)
    assert md["camera"] == "Cam"
    assert md["exposure_ms"] == 100.0
    assert md["pixel_size_um"] == pytest.approx(0.16)
    assert md["roi"] == [0, 0, 64, 64]
    assert md["binning"] == "1"
    assert md["versions"]["pymmcore-plus"] == "0.18.1"
    assert "MMCore" in md["mmcore"]


def test_load_core_from_a_config_file_with_python_devices(tmp_path):
    cfg = tmp_path / "sim.cfg"
    cfg.write_text(
        "# live-pssr simulated microscope\n"
        "#py pyDevice,Cam,live_pssr.mm.camera,SimulatedCamera\n"
        "#py Property,Cam,SensorHeight,48\n"
        "#py Property,Cam,SensorWidth,40\n"
        "#py Property,Cam,Timing,fast\n"
        "Property,Core,Initialize,1\n"
        "#py Property,Core,Camera,Cam\n"
    )
    core = load_core(cfg)
    assert type(core).__name__ == "UniMMCore"
    assert core.getCameraDevice() == "Cam"
    assert snap(core).shape == (48, 40)


def test_load_core_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="not found") as err:
        load_core(tmp_path / "missing.cfg")
    assert "--simulate" in err.value.hint
    bad = tmp_path / "bad.cfg"
    bad.write_text("Device,Camera,NoSuchAdapter,NoSuchCamera\n")
    with pytest.raises(ConfigError, match="could not load") as err:
        load_core(bad)
    assert str(bad) in err.value.message
    assert "--mm-path" in err.value.hint
