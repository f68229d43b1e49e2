"""LiveSession's own contract: construction errors, the hook on bad input, layouts, lifecycle.

Acquisitions through pycromanager and pymmcore-plus are in tests/test_mm_*.py; here the hook is
called the way pycromanager calls it, with metadata shaped like a real frame's.
"""

from __future__ import annotations

import numpy as np
import pytest
import useq

from live_pssr import LiveSession
from live_pssr.errors import ConfigError, ModelFileError, StoreExistsError, StoreWriteError
from live_pssr.live.frame_info import from_mda, from_pycromanager, stream_name
from live_pssr.store import open_store
from live_pssr.store.series import open_series, read_frame_axes

from .conftest import wait_for


def pm_metadata(t: int, **axes) -> dict:
    """Metadata as pycromanager 1.0.2 hands it to image_process_fn (from a real frame)."""
    return {"Binning": "1", "Camera": "Cam", "ElapsedTime-ms": float(t * 10), "Height": "32",
            "ImageNumber": str(t), "PixelType": "GRAY16", "ROI-X-start": "0", "ROI-Y-start": "0",
            "TimeReceivedByCore": f"2026-01-01 12:00:{t:02d}.250000", "Width": "32",
            "PixelSize_um": 0.16, "Time": "2026-01-01 12:00:00 -", "Axes": {"time": t, **axes},
            "Exposure": 10.0}


def frame(t: int, shape=(32, 32), dtype=np.uint16) -> np.ndarray:
    rng = np.random.default_rng(t)
    return rng.integers(100, 400, shape).astype(dtype)


def test_construction_errors_name_the_problem(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="policy"):
        LiveSession(model=tiny_model, store=tmp_path / "a.zarr", policy="fastest")
    with pytest.raises(ConfigError, match="layout"):
        LiveSession(model=tiny_model, store=tmp_path / "a.zarr", layout="nested")
    (tmp_path / "taken.zarr").mkdir()
    with pytest.raises(StoreExistsError) as err:
        LiveSession(model=tiny_model, store=tmp_path / "taken.zarr")
    assert "overwrite" in err.value.hint
    with pytest.raises(ModelFileError):
        LiveSession(model=tmp_path / "no-model.safetensors", store=tmp_path / "b.zarr")


def test_hook_passes_bad_frames_on_untouched_and_never_raises(tmp_path, tiny_model):
    session = LiveSession(model=tiny_model, store=tmp_path / "run.zarr", engine="torch", own_storage=True)
    good = frame(0)
    first = pm_metadata(0)
    # the first frame arrives while its store is being created: not durable yet, so Micro-Manager keeps it
    assert session.pycromanager_hook(good, first)[1] is first
    wait_for(lambda: all(s.ready for s in session.router.streams.values()))
    assert session.pycromanager_hook(good, pm_metadata(0)) is None  # durable: live-pssr owns it
    for bad in (good.astype(np.float32), np.stack([good, good]), [[1, 2], [3, 4]], frame(1, (16, 32))):
        md = pm_metadata(1)
        out = session.pycromanager_hook(bad, md)
        assert out[0] is bad and out[1] is md  # same dtype back (pycromanager's Java backend rule)
    summary = session.close()
    assert summary.frames_received == 6 and summary.rejected == 4 and summary.raw_written == 2
    assert any("dtype" in r for r in summary.rejected_reasons)
    assert any("size changed" in r for r in summary.rejected_reasons)
    # after close: passed on, counted, nothing raised; close is idempotent
    md = pm_metadata(2)
    out = session.pycromanager_hook(good, md)
    assert out[0] is good and out[1] is md
    assert session.close() is summary and session.after_close == 1


def test_single_layout_keeps_every_frames_axes(tmp_path):
    session = LiveSession(store=tmp_path / "run.zarr", enhance=False, layout="single")
    for t in range(3):
        for z in (0, 1):
            session.pycromanager_hook(frame(10 * t + z), pm_metadata(t, z=z, channel="GFP"))
    session.close()
    reader = open_store(tmp_path / "run.zarr")
    assert reader.n_frames == 6
    np.testing.assert_array_equal(reader.raw_frame(3), frame(11))
    assert read_frame_axes(reader.path) == {"time": [0, 0, 1, 1, 2, 2], "z": [0, 1, 0, 1, 0, 1],
                                            "channel": ["GFP"] * 6}
    assert reader.records["camera_time_ms"][:3].tolist() == [0.0, 0.0, 1000.0]  # TimeReceivedByCore


def test_auto_layout_splits_by_axes_and_series_of_one_is_possible(tmp_path):
    session = LiveSession(store=tmp_path / "ch.zarr", enhance=False)
    for t in range(2):
        for ch in ("DAPI", "GFP/cy"):
            session.pycromanager_hook(frame(t), pm_metadata(t, channel=ch))
    session.close()
    series = open_series(tmp_path / "ch.zarr")
    assert sorted(series.streams) == ["channel-DAPI", "channel-GFP-cy"]
    assert series.axes["channel-GFP-cy"] == {"channel": "GFP/cy"}
    assert series.index["state"] == "closed"
    assert series.index["streams"][0]["summary"]["raw_written"] == 2

    forced = LiveSession(store=tmp_path / "one.zarr", enhance=False, layout="series")
    forced.pycromanager_hook(frame(0), pm_metadata(0))
    forced.close()
    assert list(open_series(tmp_path / "one.zarr").streams) == ["run"]


def test_stream_names_are_unique_and_safe():
    assert stream_name(()) == "run"
    assert stream_name((("z", 2), ("channel", "GFP 488/525"))) == "z-2_channel-GFP-488-525"


def test_overwrite_replaces_an_old_store(tmp_path):
    path = tmp_path / "run.zarr"
    for n in (3, 1):
        with LiveSession(store=path, enhance=False, overwrite=True) as session:
            for t in range(n):
                session.pycromanager_hook(frame(t), pm_metadata(t))
        assert open_store(path).n_frames == n


def test_engine_chosen_in_the_background_is_recorded(tmp_path, tiny_model):
    session = LiveSession(model=tiny_model, store=tmp_path / "run.zarr", engine="torch", policy="complete")
    assert session.stats().state == "waiting" and session.latest() is None
    assert session.spec.path == tmp_path / "run.zarr"
    for t in range(4):
        session.pycromanager_hook(frame(t), pm_metadata(t))
    summary = session.close()
    reader = open_store(tmp_path / "run.zarr")
    assert reader.run["engine"] == "torch:cpu:fp32" == summary.engine
    assert reader.status_counts()["live"] + reader.status_counts()["after"] == 4
    assert session.latest().enhanced.shape == (128, 128)
    st = session.stats()
    assert st.frames_acquired == 4 and st.raw_written == 4


def test_prepare_builds_before_the_first_frame(tmp_path, tiny_model):
    session = LiveSession(model=tiny_model, store=tmp_path / "run.zarr", engine="torch",
                          frame_shape=(32, 32))
    with session:
        assert session.enhancer.ready and session.enhancer.engine_name == "torch:cpu:fp32"
        session.pycromanager_hook(frame(0), pm_metadata(0))
    assert open_store(tmp_path / "run.zarr").run["engine"] == "torch:cpu:fp32"


def test_an_engine_that_cannot_be_built_fails_frames_not_the_acquisition(tmp_path, tiny_model):
    session = LiveSession(model=tiny_model, store=tmp_path / "run.zarr", engine="no-such-engine",
                          policy="complete")
    for t in range(12):
        md = pm_metadata(t)
        assert session.pycromanager_hook(frame(t), md)[1] is md
    summary = session.close()
    reader = open_store(tmp_path / "run.zarr")
    assert reader.n_frames == 12  # raw frames all saved
    assert summary.failed > 0 and summary.enhanced == 0
    assert session.enhancer.error is not None
    assert any("enhancement disabled" in e for e in summary.errors)
    with pytest.raises(Exception, match="no-such-engine"):
        session.prepare((32, 32))


def test_frame_info_from_pymmcore_plus_metadata():
    event = useq.MDAEvent(index={"t": 2, "c": 1, "z": 0, "p": 3}, channel={"config": "GFP"})
    meta = {"format": "frame-dict", "runner_time_ms": 12.5, "camera_device": "Cam", "exposure_ms": 7.0,
            "pixel_size_um": 0.2, "position": {"z": -1.0},
            "camera_metadata": {"Binning": "2", "ROI-X-start": "4", "ROI-Y-start": "8", "Width": "16",
                                "Height": "12", "TimeReceivedByCore": "2026-01-01 12:00:00.500000"}}
    info = from_mda(event, meta)
    assert info.axes == {"time": 2, "channel": "GFP", "z": 0, "position": 3}
    assert info.metadata["roi"] == [4, 8, 16, 12] and info.metadata["binning"] == 2
    assert info.metadata["exposure_ms"] == 7.0 and info.metadata["position_um"] == {"z": -1.0}
    snap_mode = from_pycromanager({"Axes": {"time": 0}, "Camera": "Cam"}, arrival_s=5.0)
    assert snap_mode.timestamp_s == 5.0 and snap_mode.metadata["camera"] == "Cam"


@pytest.mark.parametrize("layout", ["single", "series"])
def test_a_store_that_cannot_be_created_is_reported_and_frames_pass_on(tmp_path, layout):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreWriteError, match="a file is in the way"):  # claimed at start: before frames
        LiveSession(store=blocker / "run.zarr", enhance=False, layout=layout)
    assert blocker.read_text() == "not a folder"
    # a store that fails after the claim (its disk reserve cannot be allocated): frames pass on, counted
    session = LiveSession(store=tmp_path / "run.zarr", enhance=False, layout=layout, reserve_bytes=1 << 50)
    blocker = tmp_path / "run.zarr"
    for t in range(5):
        md = pm_metadata(t)
        out = session.pycromanager_hook(frame(t), md)
        assert out is not None and out[1] is md
    session.streams  # noqa: B018 - reading it must not fail either
    summary = session.close()
    assert summary.raw_written == 0 and summary.frames_received == 5 and summary.rejected == 5
    assert any(str(blocker) in e for e in summary.errors)
    assert session.failed
