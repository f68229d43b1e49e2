"""Frame sources: simulated microscope, TIFF / zarr replay, pacing, errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from live_pssr.errors import ConfigError, FrameFormatError
from live_pssr.frames import Frame
from live_pssr.sim import MicroscopeConfig
from live_pssr.sources import FrameSource, ReplaySource, SimulatedSource, open_source

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
SMALL = MicroscopeConfig(height=32, width=48, n_networks=100, fps=50.0, seed=3)


def _stack(t: int = 6, h: int = 24, w: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, (t, h, w), dtype=np.uint16)


def test_simulated_source_frames() -> None:
    src = SimulatedSource(SMALL)
    assert isinstance(src, FrameSource)
    assert src.shape == (32, 48) and src.dtype == np.uint16 and src.n_frames is None
    assert src.fps == 50.0 and src.pixel_size_um == SMALL.pixel_size_um
    frames = list(src.frames(4, paced=False))
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert all(isinstance(f, Frame) for f in frames)
    assert [f.camera_time_ms for f in frames] == pytest.approx([0.0, 20.0, 40.0, 60.0])
    np.testing.assert_array_equal(frames[2].image, src.microscope.frame(2))
    meta = frames[0].metadata
    assert meta["source"] == "simulated" and meta["seed"] == 3 and meta["laser_power"] == 0.05
    # a new run starts again at index 0 with the same frames
    np.testing.assert_array_equal(next(iter(src.frames(1, paced=False))).image, frames[0].image)


def test_paced_delivery_holds_the_schedule() -> None:
    src = SimulatedSource(SMALL)
    start = time.perf_counter()
    stamps = [f.camera_time_ms for f in src.frames(6, paced=True)]
    elapsed = time.perf_counter() - start
    assert stamps[0] == 0.0
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    # frame i is never delivered before t0 + i / fps
    assert all(s >= i * 20.0 - 0.5 for i, s in enumerate(stamps))
    assert elapsed >= 5 / 50.0 - 0.005


def test_unpaced_is_fast(tmp_path: Path) -> None:
    path = tmp_path / "slow.tif"
    tifffile.imwrite(path, _stack(t=10))
    src = ReplaySource(path, fps=2.0)  # paced this would take 4.5 s
    start = time.perf_counter()
    frames = list(src.frames(paced=False))
    assert time.perf_counter() - start < 2.0
    assert len(frames) == 10 and frames[-1].camera_time_ms == pytest.approx(4500.0)


def test_replay_tiff_stack(tmp_path: Path) -> None:
    data = _stack()
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path, data, imagej=True, resolution=(1 / 0.2, 1 / 0.2), metadata={"axes": "TYX", "unit": "um"}
    )
    src = ReplaySource(path, fps=25.0)
    assert isinstance(src, FrameSource)
    assert src.shape == (24, 20) and src.dtype == np.uint16
    assert src.n_frames == 6 and src.n_recorded == 6
    assert src.pixel_size_um == pytest.approx(0.2) and src.pixel_size_known
    frames = list(src.frames(paced=False))
    assert len(frames) == 6
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(f.image, data[i])
        assert f.image.flags.c_contiguous and f.metadata["recorded_index"] == i
    assert len(list(src.frames(3, paced=False))) == 3
    assert len(list(src.frames(50, paced=False))) == 6  # no loop: stops at the end


def test_replay_loops(tmp_path: Path) -> None:
    data = _stack(t=4).astype(np.uint8)
    path = tmp_path / "loop.tif"
    tifffile.imwrite(path, data, photometric="minisblack", compression="zlib")  # in memory
    src = ReplaySource(path, loop=True, pixel_size_um=0.1)
    assert src.n_frames is None and src.dtype == np.uint8 and src.pixel_size_um == 0.1
    frames = list(src.frames(10, paced=False))
    assert [f.index for f in frames] == list(range(10))
    assert [f.metadata["recorded_index"] for f in frames] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    np.testing.assert_array_equal(frames[9].image, data[1])


def test_replay_single_image_and_channels(tmp_path: Path) -> None:
    single = tmp_path / "single.tif"
    tifffile.imwrite(single, _stack(t=1)[0])
    src = ReplaySource(single)
    assert src.n_frames == 1 and src.shape == (24, 20) and not src.pixel_size_known

    rgb = np.random.default_rng(1).integers(0, 60000, (24, 20, 3), dtype=np.uint16)
    path = tmp_path / "yxc.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    with pytest.raises(ConfigError, match="channel"):
        ReplaySource(path)
    frame = next(iter(ReplaySource(path, channel=1).frames(paced=False)))
    np.testing.assert_array_equal(frame.image, rgb[..., 1])
    assert frame.metadata["channel"] == 1

    tcyx = np.random.default_rng(2).integers(0, 60000, (5, 2, 24, 20), dtype=np.uint16)
    path = tmp_path / "tcyx.tif"
    tifffile.imwrite(path, tcyx, imagej=True, metadata={"axes": "TCYX"})
    with pytest.raises(ConfigError, match="channel"):
        ReplaySource(path)
    with pytest.raises(ConfigError, match="out of range"):
        ReplaySource(path, channel=2)
    src = ReplaySource(path, channel=1)
    assert src.n_frames == 5
    np.testing.assert_array_equal(src.read(3), tcyx[3, 1])


def test_replay_bad_dtype_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, _stack().astype(np.float32))
    with pytest.raises(FrameFormatError, match="float32") as err:
        ReplaySource(path)
    assert "uint16" in str(err.value) and "astype" in err.value.hint


def test_replay_zarr_array(tmp_path: Path) -> None:
    data = np.random.default_rng(4).integers(0, 4000, (5, 2, 16, 12), dtype=np.uint16)
    path = tmp_path / "tcyx.zarr"
    arr = zarr.create_array(store=str(path), shape=data.shape, dtype="uint16", chunks=(1, 1, 16, 12))
    arr[:] = data
    src = ReplaySource(path, fps=5.0, channel=0)
    assert src.shape == (16, 12) and src.n_frames == 5 and src.dtype == np.uint16
    frames = list(src.frames(paced=False))
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(f.image, data[i, 0])
    with pytest.raises(ConfigError, match="channel"):
        ReplaySource(path)


def test_replay_ome_zarr_group(tmp_path: Path) -> None:
    data = _stack(t=3, h=16, w=16)
    path = tmp_path / "movie.ome.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("0", shape=data.shape, dtype="uint16", chunks=(1, 16, 16))[:] = data
    space = {"type": "space", "unit": "micrometer"}
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [{"name": "t", "type": "time"}, {"name": "y", **space}, {"name": "x", **space}],
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.11, 0.11]}]}
                ],
            }
        ],
    }
    src = ReplaySource(path)
    assert src.n_frames == 3 and src.pixel_size_um == pytest.approx(0.11)
    np.testing.assert_array_equal(src.read(2), data[2])


def test_open_source(tmp_path: Path) -> None:
    sim = open_source("sim", height=16, width=16, seed=5, fps=30.0, channel=None)
    assert isinstance(sim, SimulatedSource)
    assert sim.shape == (16, 16) and sim.fps == 30.0 and sim.microscope.config.seed == 5
    with pytest.raises(ConfigError, match="bogus"):
        open_source("sim", bogus=1)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, _stack(t=2))
    replay = open_source(str(path), fps=7.0)
    assert isinstance(replay, ReplaySource) and replay.fps == 7.0 and replay.n_frames == 2
    with pytest.raises(FileNotFoundError):
        open_source(str(tmp_path / "missing.tif"))


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real data folder {REAL} not present")
def test_replay_real_live_timelapse() -> None:
    path = REAL / "lyso_hela_live_TYX_bohuang_crop1.tif"
    if not path.exists():
        pytest.skip(f"{path.name} not in {REAL}")
    src = ReplaySource(path, fps=10.0)
    assert src.shape == (128, 128) and src.dtype == np.uint16 and src.n_frames == 50
    assert src.pixel_size_um == pytest.approx(0.129, abs=1e-3)
    frames = list(src.frames(3, paced=False))
    np.testing.assert_array_equal(frames[1].image, tifffile.imread(path, key=1))


def test_replay_damaged_empty_and_partial_recordings_are_clear_errors(tmp_path: Path) -> None:
    """Replay reads through the one stack reader: damage and odd stores are FrameFormatErrors."""
    data = _stack(t=6, h=32, w=32)
    cut = tmp_path / "cut.tif"
    tifffile.imwrite(cut, data, imagej=True, metadata={"axes": "TYX"})
    os.truncate(cut, cut.stat().st_size // 2)
    with pytest.raises(FrameFormatError, match="truncated") as err:
        ReplaySource(cut)
    assert "copy it again" in err.value.hint

    bad = tmp_path / "bad.zarr"
    zarr.create_array(str(bad), data=data, chunks=(1, 32, 32), dimension_names=("t", "y", "x"))
    (bad / "c" / "3" / "0" / "0").write_bytes(b"not a zstd frame")
    src = ReplaySource(bad)  # frame 0 is fine
    assert src.path == bad  # the recording's path: writers pass it as an input to their claim
    with pytest.raises(FrameFormatError, match="cannot read frame 3"):
        list(src.frames(paced=False))

    from live_pssr.store import RunStore

    empty = tmp_path / "empty.ome.zarr"
    RunStore.create(empty, (32, 32), "uint16", 4).close()
    with pytest.raises(FrameFormatError, match="holds no frames"):
        ReplaySource(empty)

    partial = tmp_path / "partial.zarr"
    arr = zarr.create_array(str(partial), data=data, chunks=(1, 32, 32), dimension_names=("t", "y", "x"))
    arr.attrs["live_pssr"] = {"state": "partial"}  # an enhance output whose run stopped early
    with pytest.raises(FrameFormatError, match="incomplete live-pssr output"):
        ReplaySource(partial)


def test_replay_run_store_root_and_big_endian(tmp_path: Path) -> None:
    from live_pssr.frames import Frame as F
    from live_pssr.store import RunStore

    data = _stack(t=4, h=16, w=16)
    run = tmp_path / "run.ome.zarr"
    store = RunStore.create(run, (16, 16), "uint16", 4, pixel_size_um=0.25)
    for i, img in enumerate(data):
        store.append_raw(F(i, img, i * 10.0, {}))
    store.close()
    for path in (run, run / "0", run / "0" / "0"):  # the root means its raw stream
        src = ReplaySource(path)
        assert src.n_frames == 4 and src.shape == (16, 16)
        np.testing.assert_array_equal(np.stack([f.image for f in src.frames(paced=False)]), data)
    assert ReplaySource(run).pixel_size_um == pytest.approx(0.25)

    be = tmp_path / "be.zarr"
    zarr.create_array(str(be), shape=data.shape, dtype=">u2", chunks=(1, 16, 16), zarr_format=2)[:] = data
    src = ReplaySource(be)
    assert src.dtype == np.uint16 and src.dtype.isnative
    np.testing.assert_array_equal(src.read(2), data[2])
