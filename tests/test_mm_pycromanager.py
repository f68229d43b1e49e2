"""pycromanager's real Acquisition with LiveSession.pycromanager_hook on a real MMCore.

The camera is live-pssr's simulated microscope as a Python device of pymmcore-plus's UniMMCore;
pycromanager runs its Python backend on that core (live_pssr.mm.pycromanager_bridge). Nothing
of pycromanager or pymmcore-plus is mocked. The camera logs a CRC-32 of every frame it
delivered, so "every frame is in the store bit-exact" is checked against what it produced.
"""

from __future__ import annotations

import threading
import time
import zlib

import numpy as np
import pytest

from live_pssr import LiveSession
from live_pssr.enhancer import Enhancer
from live_pssr.mm.core import simulated_camera, simulated_core
from live_pssr.mm.pycromanager_bridge import SnakeUniMMCore, pycromanager_backend
from live_pssr.sim import MicroscopeConfig
from live_pssr.store import open_store
from live_pssr.store.series import open_series, read_frame_axes

pycromanager = pytest.importorskip("pycromanager")
Acquisition, events = pycromanager.Acquisition, pycromanager.multi_d_acquisition_events

CFG = MicroscopeConfig(height=64, width=64, seed=5)
# pycromanager's engine calls an MMCore method that pymmcore deprecates (a no-op)
pytestmark = pytest.mark.filterwarnings("ignore:No-op in MMCore:DeprecationWarning")


@pytest.fixture
def core():
    core = simulated_core(CFG, exposure_ms=5.0, timing="fast", keep_checksums=True,
                          core_class=SnakeUniMMCore)
    with pycromanager_backend(core):
        yield core


def crcs(reader) -> list[int]:
    return [zlib.crc32(np.ascontiguousarray(reader.raw_frame(i))) for i in range(reader.n_frames)]


def test_every_frame_stored_bit_exact_enhanced_and_described(core, tiny_model, tmp_path):
    cam = simulated_camera(core)
    with LiveSession(model=tiny_model, store=tmp_path / "run.ome.zarr", policy="complete",
                     engine="torch") as session:
        session.record_settings(core)
        with Acquisition(directory=None, image_process_fn=session.pycromanager_hook) as acq:
            acq.acquire(events(num_time_points=12))
    summary = session.summary
    reader = open_store(tmp_path / "run.ome.zarr")
    produced = [p.crc32 for p in cam.log]
    assert len(produced) == reader.n_frames == summary.raw_written == 12
    assert crcs(reader) == produced
    np.testing.assert_array_equal(reader.raw_frame(3), cam.render(3))  # re-rendered: deterministic
    # enhanced frames for every index, none skipped or failed
    counts = reader.status_counts()
    assert counts["live"] + counts["after"] == 12
    assert all(reader.enhanced_frame(i).any() for i in range(12))
    assert reader.enhanced.shape[-2:] == (256, 256)
    # metadata carried: acquisition settings, first frame, per-frame axes and times
    acq_md = reader.run["acquisition"]
    assert acq_md["source"] == "pycromanager"
    assert acq_md["camera"] == "Cam" and acq_md["exposure_ms"] == 5.0
    assert acq_md["versions"]["pycromanager"] == "1.0.2"
    first = acq_md["first_frame"]
    assert first["roi"] == [0, 0, 64, 64] and first["binning"] == 1 and first["exposure_ms"] == 5.0
    assert reader.run["pixel_size_um"] == pytest.approx(0.16)
    assert read_frame_axes(reader.path) == {"time": list(range(12))}
    assert np.all(np.diff(reader.records["camera_time_ms"]) >= 0)
    assert reader.run["live_pssr_session"]["hook"]["calls"] == 12
    # Micro-Manager's own storage got every frame back, unchanged
    dataset = acq.get_dataset()
    for t in (0, 11):
        np.testing.assert_array_equal(dataset.read_image(time=t), reader.raw_frame(t))
    assert summary.rejected == 0 and summary.errors == []


def test_hook_returns_the_same_objects_or_none_when_owning_storage(core, tiny_model, tmp_path):
    returned: list = []
    with LiveSession(store=tmp_path / "own.ome.zarr", enhance=False, own_storage=True) as session:

        def hook(image, metadata):  # records what the real hook returns to pycromanager
            out = session.pycromanager_hook(image, metadata)
            returned.append((out, image, metadata))
            return out

        with Acquisition(directory=None, image_process_fn=hook) as acq:
            acq.acquire(events(num_time_points=40))
    # acknowledged (None) only once durable: the frames that arrived while the store was being
    # created went back to Micro-Manager too; every frame is in live-pssr's store either way
    outs = [out for out, _, _ in returned]
    n_back = sum(out is not None for out in outs)
    assert outs[n_back:] == [None] * (40 - n_back) and n_back < 40
    assert all(out[0] is image and out[1] is md for out, image, md in returned[:n_back])
    assert open_store(tmp_path / "own.ome.zarr").n_frames == 40
    assert len(list(acq.get_dataset().get_image_coordinates_list())) == n_back

    passed = []
    with LiveSession(store=tmp_path / "pass.ome.zarr", enhance=False) as session:
        def hook2(image, metadata):
            out = session.pycromanager_hook(image, metadata)
            passed.append((out, image, metadata))
            return out

        with Acquisition(directory=None, image_process_fn=hook2) as acq:
            acq.acquire(events(num_time_points=5))
    for out, image, metadata in passed:  # untouched: same array (same dtype), same dict
        assert out[0] is image and out[1] is metadata and out[0].dtype == np.uint16


@pytest.mark.parametrize("change", ["roi", "binning", "bit_depth"])
def test_size_or_dtype_change_mid_run_is_passed_on_and_reported(core, tmp_path, change):
    def pre_hardware(event):
        if event.get("axes", {}).get("time") == 4:
            if change == "roi":
                core.setROI(0, 0, 32, 48)
            elif change == "binning":
                core.setProperty("Cam", "Binning", 2)
            else:
                core.setProperty("Cam", "BitDepth", 8)
        return event

    with LiveSession(store=tmp_path / "run.ome.zarr", enhance=False) as session:
        with Acquisition(directory=None, image_process_fn=session.pycromanager_hook,
                         pre_hardware_hook_fn=pre_hardware) as acq:
            acq.acquire(events(num_time_points=8, time_interval_s=0.005))
    summary = session.summary
    assert summary.frames_received == 8 and summary.rejected == 4
    reason = next(iter(summary.rejected_reasons))
    assert ("dtype changed" in reason) if change == "bit_depth" else ("size changed" in reason)
    assert open_store(tmp_path / "run.ome.zarr").n_frames == 4
    dataset = acq.get_dataset()  # Micro-Manager's storage still got all 8
    assert dataset.read_image(time=7).shape == ((64, 64) if change == "bit_depth" else
                                                (48, 32) if change == "roi" else (32, 32))


def test_abort_mid_run_keeps_every_frame_received(core, tiny_model, tmp_path):
    cam = simulated_camera(core)
    core.setProperty("Cam", "Timing", "exposure")  # 5 ms per frame
    session = LiveSession(model=tiny_model, store=tmp_path / "run.ome.zarr", engine="torch")
    with Acquisition(directory=None, image_process_fn=session.pycromanager_hook) as acq:
        acq.acquire(events(num_time_points=400))
        deadline = time.monotonic() + 30
        while session.frames_received < 15 and time.monotonic() < deadline:
            time.sleep(0.002)
        acq.abort()
    summary = session.close()
    reader = open_store(tmp_path / "run.ome.zarr")
    assert 15 <= summary.frames_received < 400
    assert reader.n_frames == summary.frames_received == summary.raw_written
    assert crcs(reader) == [p.crc32 for p in cam.log][: reader.n_frames]
    assert reader.closed_cleanly


def test_multi_dimensional_events_become_a_series_of_stores(core, tiny_model, tmp_path):
    cam = simulated_camera(core)
    with LiveSession(model=tiny_model, store=tmp_path / "mda.ome.zarr", engine="torch",
                     policy="complete") as session:
        with Acquisition(directory=None, image_process_fn=session.pycromanager_hook) as acq:
            acq.acquire(events(num_time_points=3, z_start=0, z_end=1, z_step=1, channel_group="Channel",
                               channels=["LowLaser", "HighLaser"], order="tcz"))
    series = open_series(tmp_path / "mda.ome.zarr")
    assert session.summary.layout == "series"
    assert sorted(series.streams) == sorted(f"z-{z}_channel-{c}" for z in (0, 1)
                                            for c in ("LowLaser", "HighLaser"))
    by_crc = {p.crc32 for p in cam.log}
    for name, reader in series.streams.items():
        assert reader.n_frames == 3
        assert set(crcs(reader)) <= by_crc
        axes = read_frame_axes(reader.path)
        assert axes["time"] == [0, 1, 2]
        assert {axes["channel"][0]} == {series.axes[name]["channel"]}
        assert reader.status_counts()["live"] + reader.status_counts()["after"] == 3
    assert sum(r.n_frames for r in series.streams.values()) == len(cam.log) == 12
    high = series.streams["z-0_channel-HighLaser"].raw_frame(0).mean()
    low = series.streams["z-0_channel-LowLaser"].raw_frame(0).mean()
    assert high > low  # the channel preset really changed the laser power


class FlakyEngine:
    """A real torch engine that fails on every third frame (an exception inside the model)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.name, self.device, self.precision = "flaky", inner.device, inner.precision

    def prepare(self, shape):
        self.inner.prepare(shape)

    def run(self, batch):
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("simulated CUDA error")
        return self.inner.run(batch)


class SlowEngine(FlakyEngine):
    """A real torch engine made slower than the camera (sleeps before each frame)."""

    def __init__(self, inner, delay_s):
        super().__init__(inner)
        self.name, self.delay_s = "slow", delay_s

    def run(self, batch):
        time.sleep(self.delay_s)
        return self.inner.run(batch)


def torch_engine(model):
    from live_pssr.engines import make_engine

    return make_engine("torch", model)


def test_enhancer_exception_during_acquisition_keeps_raw_frames(core, tiny_model, tmp_path):
    enhancer = Enhancer(tiny_model, FlakyEngine(torch_engine(tiny_model)))
    # frame by frame: the engine fails on every third call, i.e. every third frame
    with LiveSession(model=enhancer, store=tmp_path / "run.ome.zarr", policy="complete",
                     max_batch=1) as session:
        with Acquisition(directory=None, image_process_fn=session.pycromanager_hook) as acq:
            acq.acquire(events(num_time_points=15))
    reader = open_store(tmp_path / "run.ome.zarr")
    counts = reader.status_counts()
    assert reader.n_frames == 15
    assert counts["failed"] == session.summary.failed >= 4
    assert counts["live"] + counts["after"] + counts["failed"] == 15
    assert acq.get_dataset().read_image(time=14) is not None  # the acquisition was not disturbed


def test_slow_model_500_frames_at_full_camera_rate_loses_nothing(core, tiny_model, tmp_path):
    cam = simulated_camera(core)
    enhancer = Enhancer(tiny_model, SlowEngine(torch_engine(tiny_model), delay_s=0.01))
    frame_bytes = 64 * 64 * 2
    session = LiveSession(model=enhancer, store=tmp_path / "run.ome.zarr", policy="complete",
                          enhance_queue_size=4, max_raw_queue_bytes=32 * frame_bytes,
                          frame_shape=(64, 64)).start()
    peak = {"raw": 0, "enhance": 0, "backlog": 0}
    done = threading.Event()

    def watch():  # frames held in memory by live-pssr while the run goes on
        while not done.is_set():
            st = session.stats()
            for key, value in (("raw", st.raw_queue), ("enhance", st.enhance_queue), ("backlog", st.backlog)):
                peak[key] = max(peak[key], value)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with Acquisition(directory=None, image_process_fn=session.pycromanager_hook) as acq:
        acq.acquire(events(num_time_points=500))
    done.set()
    watcher.join()
    # leave the backlog for later (`live-pssr enhance`): this test is about the acquisition
    summary = session.stop(finish_backlog=False)
    reader = open_store(tmp_path / "run.ome.zarr")
    assert len(cam.log) == reader.n_frames == summary.raw_written == 500
    assert crcs(reader) == [p.crc32 for p in cam.log]
    counts = reader.status_counts()
    assert counts["live"] + counts["after"] + counts["pending"] == 500 and counts["failed"] == 0
    assert counts["pending"] > 0 and peak["backlog"] > 0  # the model fell behind: backlog on disk...
    assert peak["enhance"] <= 4 and peak["raw"] <= 32  # ...while the frames in memory stayed bounded
    assert summary.rejected == 0 and summary.errors == []


def test_bridge_refuses_versions_it_was_not_verified_with(monkeypatch):
    from live_pssr.errors import ConfigError
    from live_pssr.mm import pycromanager_bridge

    pycromanager_bridge.check_versions()  # the installed, pinned versions pass
    monkeypatch.setattr(pycromanager_bridge, "package_versions",
                        lambda: {"pycromanager": "0.34.0", "pymmcore-plus": "0.18.1"})
    with pytest.raises(ConfigError, match="pycromanager 0.34.0") as err:
        pycromanager_bridge.check_versions()
    assert "pycromanager==1.0.2" in err.value.hint


def test_xy_positions_become_streams(core, tmp_path):
    with LiveSession(store=tmp_path / "xy.ome.zarr", enhance=False) as session:
        with Acquisition(directory=None, image_process_fn=session.pycromanager_hook) as acq:
            acq.acquire(events(num_time_points=2, xy_positions=[[0, 0], [50, 25]]))
    series = open_series(tmp_path / "xy.ome.zarr")
    assert sorted(series.streams) == ["position-0", "position-1"]
    assert all(r.n_frames == 2 for r in series.streams.values())
    assert core.getXYPosition() == pytest.approx((50.0, 25.0))
