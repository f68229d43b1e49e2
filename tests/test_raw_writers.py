"""The raw writer's pool: frames written in parallel, appended and committed in order.

Real stores on disk; the failure is a real OS error for one frame (its chunk path is a folder, so
``open`` fails with EISDIR) while the frames after it write fine: the store must stop at that
frame, and every frame from there on must be rescued from memory, none lost, none shown twice.
The full and read-only disks with the pool's default width run in tests/test_fault_matrix.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from live_pssr.errors import ConfigError, StoreWriteError
from live_pssr.frames import Frame
from live_pssr.pipeline import LivePipeline, StoreSpec
from live_pssr.store import open_store
from live_pssr.store.rescue import read_rescued

from .conftest import camera_frames


def _tagged(n: int, shape: tuple[int, int] = (96, 128)) -> list[np.ndarray]:
    frames = camera_frames(n, shape)
    for i, f in enumerate(frames):
        f[0, 0] = i  # the frame's index in its own pixels: order is checked on the data
    return frames


@pytest.mark.parametrize("writers", [1, 4, 8])
def test_every_frame_stored_in_order(tmp_path, tiny_model, writers):
    from live_pssr.enhancer import Enhancer

    frames = _tagged(60)
    p = LivePipeline(Enhancer(tiny_model), StoreSpec(tmp_path / "r.ome.zarr", raw_writers=writers),
                     policy="preview")
    p.start(frames[0].shape, frames[0].dtype)
    for i, img in enumerate(frames):
        p.submit(Frame(i, img, i * 10.0))
    s = p.stop()
    r = open_store(tmp_path / "r.ome.zarr")
    assert s.raw_written == r.n_frames == 60 and not s.not_stored and not s.errors
    for i in range(60):
        np.testing.assert_array_equal(r.raw_frame(i), frames[i])
    rec = r.records
    np.testing.assert_array_equal(rec["index"], np.arange(60))
    np.testing.assert_array_equal(rec["camera_time_ms"], np.arange(60) * 10.0)
    assert np.all(np.diff(rec["raw_written_s"]) >= 0)  # appended in order


def test_a_failed_write_stops_the_store_at_that_frame_and_rescues_the_rest(tmp_path):
    frames = _tagged(40)
    rescue = tmp_path / "rescue"
    p = LivePipeline(None, StoreSpec(tmp_path / "r.ome.zarr", raw_writers=4, rescue_dir=rescue))
    store = p.open_store(frames[0].shape, frames[0].dtype)
    bad = 7
    store.raw.chunk_path((bad, 0, 0, 0)).mkdir()  # frame 7's file cannot be opened: EISDIR
    for i, img in enumerate(frames):  # all queued before the writer starts: the pool runs ahead
        p.submit(Frame(i, img, i * 10.0))
    p.start()
    s = p.stop()
    with pytest.raises(StoreWriteError):  # the failed run refuses frames
        p.submit(Frame(40, frames[0], 400.0))
    taken = 40
    r = open_store(tmp_path / "r.ome.zarr")
    assert r.n_frames == s.raw_written == bad  # frames 0-6, nothing after the failed one
    for i in range(bad):
        np.testing.assert_array_equal(r.raw_frame(i), frames[i])
    indices, data = read_rescued(s.rescue_path)
    assert indices == list(range(bad, taken)) == s.rescued and not s.not_stored
    for k, i in enumerate(indices):
        np.testing.assert_array_equal(data[k], frames[i])
    assert any("Is a directory" in e or "directory" in e.lower() for e in s.errors), s.errors


@pytest.mark.parametrize("bad", [0, 33, True, "4"])
def test_bad_writer_count_refused_before_the_path_is_claimed(tmp_path, bad):
    with pytest.raises(ConfigError, match="raw_writers"):
        LivePipeline(None, StoreSpec(tmp_path / "r.ome.zarr", raw_writers=bad))
    assert not (tmp_path / "r.ome.zarr").exists()


def test_scmos_frames_at_100_fps_keep_memory_bounded(tmp_path):
    """120 full sCMOS frames (2048² uint16, 1 GB) handed over at 100 fps through the default pool.

    Peak traced memory (numpy's buffers included) stays within the raw queue's bound plus the
    frames in the writers' hands: the pool holds frames only while they are queued, never more.
    Every frame reaches the store intact. (The rate is measured by ``bench pipeline``, not here.)
    """
    import tracemalloc

    bound = 64 << 20
    frame_bytes = 2048 * 2048 * 2
    p = LivePipeline(None, StoreSpec(tmp_path / "r.ome.zarr"), max_raw_queue_bytes=bound).start()
    base = camera_frames(1, (2048, 2048))[0]
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        for i in range(120):
            img = base.copy()  # a fresh camera buffer per frame
            img[0, 0] = i
            p.submit(Frame(i, img, i * 10.0))
            del img
            wait = t0 + (i + 1) / 100.0 - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        _, peak = tracemalloc.get_traced_memory()
        print(f"peak traced {peak / 2**20:.0f} MiB for {120 * frame_bytes / 2**20:.0f} MiB handed over")
    finally:
        tracemalloc.stop()
        s = p.stop()
    assert s.raw_written == 120 and not s.not_stored and not s.errors
    # queue bound + the frame being handed over + an encoded buffer per writer + slack
    writers = StoreSpec(tmp_path).raw_writers
    assert peak < bound + (2 + writers) * frame_bytes + (16 << 20), f"peak {peak / 2**20:.0f} MiB"
    r = open_store(tmp_path / "r.ome.zarr")
    assert [int(r.raw_frame(i)[0, 0]) for i in (0, 59, 119)] == [0, 59, 119]


def test_fsync_on_commit_with_the_pool_flushes_every_committed_frame(tmp_path, monkeypatch):
    """``fsync="commit"``: each frame's chunk file is flushed before a commit makes it visible,
    also when four writes run at once (a write registers its file before its frame is appended)."""
    import os

    synced: list[str] = []
    real_fsync = os.fsync

    def counting(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting)
    frames = _tagged(24)
    p = LivePipeline(None, StoreSpec(tmp_path / "r.ome.zarr", fsync="commit", raw_writers=4))
    p.start(frames[0].shape, frames[0].dtype)
    for i, img in enumerate(frames):
        p.submit(Frame(i, img, i * 10.0))
    s = p.stop()
    assert s.raw_written == 24
    raw_files = {Path(f).name for f in synced if "/0/0/c." in f}
    assert raw_files == {f"c.{i}.0.0.0" for i in range(24)}
