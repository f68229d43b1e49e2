"""pymmcore-plus MDA runs on a real MMCore feeding a LiveSession (connect, output handler, runner)."""

from __future__ import annotations

import time
import zlib

import numpy as np
import pytest
import useq

from live_pssr import LiveSession
from live_pssr.live.runners import MDARunner
from live_pssr.mm.core import simulated_camera, simulated_core
from live_pssr.sim import MicroscopeConfig
from live_pssr.store import open_store
from live_pssr.store.series import open_series, read_frame_axes

CFG = MicroscopeConfig(height=64, width=64, seed=7)


@pytest.fixture
def core():
    return simulated_core(CFG, exposure_ms=5.0, timing="fast", keep_checksums=True)


def crcs(reader) -> list[int]:
    return [zlib.crc32(np.ascontiguousarray(reader.raw_frame(i))) for i in range(reader.n_frames)]


def wait_for(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.002)
    assert cond()


def test_connected_session_stores_every_mda_frame(core, tiny_model, tmp_path):
    cam = simulated_camera(core)
    core.setROI(0, 0, 48, 64)
    with LiveSession(model=tiny_model, store=tmp_path / "run.ome.zarr", policy="complete",
                     engine="torch") as session:
        session.connect(core)  # also builds the enhancer for the core's 64 x 48 frames
        assert session.enhancer.ready
        core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 10}))
    reader = open_store(tmp_path / "run.ome.zarr")
    assert reader.n_frames == len(cam.log) == 10
    assert crcs(reader) == [p.crc32 for p in cam.log]
    counts = reader.status_counts()
    assert counts["live"] + counts["after"] == 10
    acq = reader.run["acquisition"]
    assert acq["source"] == "pymmcore-plus"
    assert acq["roi"] == [0, 0, 48, 64] and acq["image_shape"] == [64, 48]
    assert acq["mmcore"].startswith("MMCore") and acq["versions"]["useq-schema"]
    assert acq["mda_sequence"]["sizes"]["t"] == 10
    assert reader.run["engine"] == "torch:cpu:fp32"
    assert read_frame_axes(reader.path) == {"time": list(range(10))}
    # frames after the session closed are left alone (no error, not stored)
    core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 2}))
    assert open_store(tmp_path / "run.ome.zarr").n_frames == 10


def test_session_as_a_pymmcore_plus_output_handler(core, tmp_path):
    cam = simulated_camera(core)
    with LiveSession(store=tmp_path / "run.ome.zarr", enhance=False) as session:
        core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 8}), output=session)
    reader = open_store(tmp_path / "run.ome.zarr")
    assert crcs(reader) == [p.crc32 for p in cam.log] and reader.n_frames == 8


def test_multi_d_sequence_splits_into_streams_by_axes_with_more_than_one_value(core, tiny_model, tmp_path):
    seq = useq.MDASequence(time_plan={"interval": 0, "loops": 2}, z_plan={"range": 1, "step": 1},
                           channels=["LowLaser"], axis_order="tpcz")
    with LiveSession(model=tiny_model, store=tmp_path / "zs.ome.zarr", engine="torch") as session:
        session.connect(core)
        core.mda.run(seq)
    series = open_series(tmp_path / "zs.ome.zarr")
    assert session.summary.layout == "series"
    assert sorted(series.streams) == ["z-0", "z-1"]  # one channel: not a split axis
    for name, reader in series.streams.items():
        axes = read_frame_axes(reader.path)
        assert reader.n_frames == 2 and axes["time"] == [0, 1]
        assert axes["channel"] == ["LowLaser", "LowLaser"] and axes["z"] == [series.axes[name]["z"]] * 2
    assert series.index["session"]["split_axes"] == ["z"]


def test_runner_pause_and_cancel_mid_run(core, tmp_path):
    cam = simulated_camera(core)
    core.setProperty("Cam", "Timing", "exposure")
    session = LiveSession(store=tmp_path / "run.ome.zarr", enhance=False).connect(core)
    # timed events (not hardware-sequenced) can be paused between frames
    runner = MDARunner(core, useq.MDASequence(time_plan={"interval": 0.01, "loops": 500}), session).start()
    wait_for(lambda: session.frames_received >= 5)
    assert runner.pause(True)
    wait_for(lambda: runner.paused)
    # paused = the camera stops producing; pymmcore-plus holds between events, so a burst the
    # engine already started finishes first: wait (bounded) for the camera to go quiet
    deadline = time.monotonic() + 10
    while True:
        n_paused = len(cam.log)
        time.sleep(0.15)
        if len(cam.log) == n_paused or time.monotonic() > deadline:
            break
    assert len(cam.log) == n_paused and len(cam.log) < 500
    runner.pause(False)
    wait_for(lambda: len(cam.log) >= n_paused + 5)
    runner.stop()
    assert runner.done.wait(30)
    assert runner.canceled and runner.error is None
    ticks = []
    runner.wait(ticks.append, interval_s=0.01)
    assert ticks and ticks[-1].frames_acquired == session.frames_received
    summary = session.close()
    reader = open_store(tmp_path / "run.ome.zarr")
    assert summary.frames_received < 500
    assert reader.n_frames == summary.frames_received
    assert crcs(reader) == [p.crc32 for p in cam.log][: reader.n_frames]


def test_runner_cancels_a_hardware_sequence(core, tmp_path):
    core.setProperty("Cam", "Timing", "exposure")
    session = LiveSession(store=tmp_path / "run.ome.zarr", enhance=False).connect(core)
    runner = MDARunner(core, useq.MDASequence(time_plan={"interval": 0, "loops": 2000}), session).start()
    wait_for(lambda: session.frames_received >= 10)
    runner.stop()
    assert runner.done.wait(30) and runner.canceled
    summary = session.close()
    assert 10 <= summary.frames_received < 2000
    assert open_store(tmp_path / "run.ome.zarr").n_frames == summary.frames_received


def test_runner_stopped_before_it_starts_acquires_nothing(core, tmp_path):
    runner = MDARunner(core, useq.MDASequence(time_plan={"interval": 0, "loops": 50}))
    runner.stop()
    runner.start()
    assert runner.done.wait(30) and runner.canceled
    assert len(simulated_camera(core).log) == 0


def test_binning_change_between_events_is_rejected_not_raised(core, tmp_path):
    def on_event(event):
        if event.index.get("t") == 3:
            core.setProperty("Cam", "Binning", 2)

    core.mda.events.eventStarted.connect(on_event)
    with LiveSession(store=tmp_path / "run.ome.zarr", enhance=False) as session:
        session.connect(core)
        core.mda.run(useq.MDASequence(time_plan={"interval": 0.001, "loops": 6}))
    core.mda.events.eventStarted.disconnect(on_event)
    assert session.summary.frames_received == 6 and session.summary.rejected == 3
    assert open_store(tmp_path / "run.ome.zarr").n_frames == 3


def test_positions_become_streams_and_keep_their_stage_coordinates(core, tmp_path):
    seq = useq.MDASequence(time_plan={"interval": 0, "loops": 2},
                           stage_positions=[(0.0, 0.0, 0.0), (120.0, -40.0, 0.0)], axis_order="tpcz")
    with LiveSession(store=tmp_path / "xy.ome.zarr", enhance=False) as session:
        session.connect(core)
        core.mda.run(seq)
    series = open_series(tmp_path / "xy.ome.zarr")
    assert sorted(series.streams) == ["position-0", "position-1"]
    first = series.streams["position-1"].run["acquisition"]["first_frame"]
    assert first["position_um"]["x"] == pytest.approx(120.0)
    assert first["position_um"]["y"] == pytest.approx(-40.0)
    assert core.getXYPosition() == pytest.approx((120.0, -40.0))


def test_frames_reach_the_session_while_a_qt_application_exists(qapp, tmp_path):
    """With a QApplication alive (the viewer, napari), pymmcore-plus would pick Qt signals and
    queue frames to a GUI loop that is not running here: live-pssr's cores deliver directly."""
    core = simulated_core(CFG, exposure_ms=5.0, timing="fast")
    session = LiveSession(store=tmp_path / "run.ome.zarr", enhance=False).connect(core)
    runner = MDARunner(core, useq.MDASequence(time_plan={"interval": 0, "loops": 8}), session).start()
    wait_for(lambda: runner.done.is_set(), timeout=60)
    session.close()
    assert open_store(tmp_path / "run.ome.zarr").n_frames == 8
