"""The run store: OME-Zarr layout, bit-exact frames, records, crash consistency, disk errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from live_pssr.errors import StoreExistsError, StoreFormatError
from live_pssr.frames import Frame
from live_pssr.store import FrameStatus, RunStore, open_store
from live_pssr.store.chunks import ChunkFileArray

from .conftest import camera_frames


@pytest.mark.parametrize("codec", ["lz4", "zstd", "none"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_chunk_files_read_back_with_zarr(tmp_path, codec, dtype):
    arr = ChunkFileArray(tmp_path / "a", (0, 1, 8, 6), (1, 1, 8, 6), dtype, codec=codec)
    data = (np.random.default_rng(1).random((3, 1, 8, 6)) * 200).astype(dtype)
    for t in range(3):
        arr.write_chunk((t, 0, 0, 0), data[t])
    assert zarr.open_array(str(tmp_path / "a"), mode="r").shape == (0, 1, 8, 6)  # not yet committed
    arr.resize((3, 1, 8, 6))
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "a"), mode="r")[:], data)
    np.testing.assert_array_equal(arr.read_chunk((1, 0, 0, 0)), data[1:2])


def _write_run(path, frames, upscale=4, enhance=True):
    store = RunStore.create(path, frames[0].shape, frames[0].dtype, upscale, pixel_size_um=0.16,
                            frame_interval_s=0.05, run_metadata={"model": "test@0"})
    for i, img in enumerate(frames):
        store.append_raw(Frame(i, img, i * 50.0, {}), received_s=store.now())
        if enhance and i % 2 == 0:
            big = np.kron(img, np.ones((upscale, upscale), img.dtype))
            store.write_enhanced(i, big, FrameStatus.LIVE, enhance_start_s=store.now())
        elif enhance:
            store.set_status(i, FrameStatus.SKIPPED)
    return store


def test_store_layout_and_contents(tmp_path):
    frames = camera_frames(7)
    store = _write_run(tmp_path / "run.ome.zarr", frames)
    store.close({"frames_acquired": 7})
    r = open_store(tmp_path / "run.ome.zarr")
    assert r.n_frames == 7 and r.closed_cleanly
    assert r.raw.shape == (7, 1, 48, 64) and r.enhanced.shape == (7, 1, 192, 256)
    for i, img in enumerate(frames):
        np.testing.assert_array_equal(r.raw_frame(i), img)
    np.testing.assert_array_equal(r.enhanced_frame(2), np.kron(frames[2], np.ones((4, 4), np.uint16)))
    assert not r.enhanced_frame(1).any()  # skipped: fill value
    np.testing.assert_array_equal(r.records["index"], np.arange(7))
    np.testing.assert_array_equal(r.records["camera_time_ms"], np.arange(7) * 50.0)
    assert r.status_counts() == {"pending": 0, "live": 4, "after": 0, "skipped": 3, "failed": 0}
    assert np.isfinite(r.records["latency_ms"][::2]).all() and np.isnan(r.records["latency_ms"][1::2]).all()
    # OME-Zarr 0.5: bioformats2raw collection, axes, scales that overlay raw and enhanced
    root = json.loads((tmp_path / "run.ome.zarr" / "zarr.json").read_text())["attributes"]
    assert root["ome"] == {"version": "0.5", "bioformats2raw.layout": 3}
    assert root["live_pssr"]["summary"] == {"frames_acquired": 7}
    series = json.loads((tmp_path / "run.ome.zarr" / "OME" / "zarr.json").read_text())["attributes"]
    assert series["ome"]["series"] == ["0", "1"]
    assert 'SizeT="7"' in (tmp_path / "run.ome.zarr" / "OME" / "METADATA.ome.xml").read_text()
    scales = []
    for key in ("0", "1"):
        attrs = json.loads((tmp_path / "run.ome.zarr" / key / "zarr.json").read_text())["attributes"]
        ms = attrs["ome"]["multiscales"][0]
        assert [a["name"] for a in ms["axes"]] == ["t", "c", "y", "x"]
        scales.append(ms["datasets"][0]["coordinateTransformations"][0]["scale"])
    assert scales[0][2] == pytest.approx(scales[1][2] * 4) and scales[0][0] == 0.05
    assert zarr.open_array(str(tmp_path / "run.ome.zarr" / "0" / "0"), mode="r").metadata.dimension_names \
        == ("t", "c", "y", "x")


def test_store_validates_as_ome_zarr(tmp_path):
    yaozarrs = pytest.importorskip("yaozarrs")
    store = _write_run(tmp_path / "run.ome.zarr", camera_frames(3))
    store.close()
    for key in ("0", "1"):
        doc = json.loads((tmp_path / "run.ome.zarr" / key / "zarr.json").read_text())
        yaozarrs.validate_ome_json(json.dumps(doc))


def test_uncommitted_frames_invisible_then_visible(tmp_path):
    frames = camera_frames(3)
    store = RunStore.create(tmp_path / "r.ome.zarr", (48, 64), np.uint16, 4, commit_interval_s=3600)
    store.append_raw(Frame(0, frames[0], 0.0))
    store.commit()
    store.append_raw(Frame(1, frames[1], 1.0))
    assert open_store(tmp_path / "r.ome.zarr").n_frames == 1
    assert not open_store(tmp_path / "r.ome.zarr").closed_cleanly
    store.close()
    assert open_store(tmp_path / "r.ome.zarr").n_frames == 2


def test_existing_store_refused_unless_overwrite(tmp_path):
    _write_run(tmp_path / "r.ome.zarr", camera_frames(1)).close()
    with pytest.raises(StoreExistsError, match="--overwrite"):
        RunStore.create(tmp_path / "r.ome.zarr", (48, 64), np.uint16, 4)
    RunStore.create(tmp_path / "r.ome.zarr", (48, 64), np.uint16, 4, overwrite=True).close()
    assert open_store(tmp_path / "r.ome.zarr").n_frames == 0


def test_open_store_rejects_other_folders(tmp_path):
    with pytest.raises(StoreFormatError, match="not a zarr v3 store"):
        open_store(tmp_path)
    zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    with pytest.raises(StoreFormatError):
        open_store(tmp_path / "g.zarr")


def test_frames_must_arrive_in_order(tmp_path):
    store = RunStore.create(tmp_path / "r.ome.zarr", (48, 64), np.uint16, 4)
    with pytest.raises(ValueError, match="in order"):
        store.append_raw(Frame(3, camera_frames(1)[0], 0.0))


@pytest.mark.parametrize("fsync", ["commit", 0.05])
def test_fsync_flushes_chunks_before_the_metadata_that_shows_them(tmp_path, monkeypatch, fsync):
    import os

    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd):  # the real flush, counted
        synced.append(fd)
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    frames = camera_frames(12)
    store = RunStore.create(tmp_path / "r.ome.zarr", frames[0].shape, np.uint16, 1, fsync=fsync,
                            commit_interval_s=0)
    for i, img in enumerate(frames):
        store.append_raw(Frame(i, img, float(i)))
        if i % 4 == 3:
            n = len(synced)
            store.commit()
            assert len(synced) > n or fsync != "commit"  # every commit flushes with fsync="commit"
    store.close()
    assert synced  # chunks, records, metadata and folders were flushed
    r = open_store(tmp_path / "r.ome.zarr")
    assert r.n_frames == 12 and r.run["fsync"] == (fsync if fsync == "commit" else 0.05)


def test_fsync_setting_is_checked(tmp_path):
    from live_pssr.errors import ConfigError

    with pytest.raises(ConfigError, match="fsync"):
        RunStore.create(tmp_path / "r.ome.zarr", (8, 8), np.uint16, 1, fsync="sometimes")
    assert not (tmp_path / "r.ome.zarr").exists()  # refused before the path was claimed
