"""Batches: a behind enhancer takes waiting frames as one engine call, with the same outputs.

Real parts: the shipped default model, the eager torch engine (made slower than the camera on
purpose, or failing on one marked frame: subclasses of the real engine), real stores on disk.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from live_pssr.engines import TorchEngine
from live_pssr.enhancer import Enhancer
from live_pssr.errors import ConfigError
from live_pssr.frames import Frame
from live_pssr.modelio import load_model
from live_pssr.pipeline import LivePipeline, StoreSpec
from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope
from live_pssr.store import FrameStatus, open_store

SIZE = 48


@pytest.fixture(scope="module")
def model():
    return load_model("mito-sr4-fast")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    mic = SimulatedMicroscope(MicroscopeConfig(height=SIZE, width=SIZE, seed=4, laser_power=0.1))
    return [mic.frame(i) for i in range(24)]


class RecordingEngine(TorchEngine):
    """The real eager engine, slower than the camera, remembering each call's batch size."""

    def __init__(self, model, delay_s: float = 0.0) -> None:
        super().__init__(model)
        self.delay_s, self.batches = delay_s, []

    def run(self, batch):
        self.batches.append(batch.shape[0])
        time.sleep(self.delay_s)
        return super().run(batch)


class MarkedNaNEngine(RecordingEngine):
    """Returns NaN for any input row that is constant (the frame marked bad by the test)."""

    def run(self, batch):
        out = super().run(batch)
        flat = batch.reshape(batch.shape[0], -1)
        out[flat.max(axis=1) == flat.min(axis=1)] = np.nan
        return out


def test_enhance_windows_equals_one_by_one(model, frames):
    enhancer = Enhancer(model, "torch", out_dtype="float32")
    windows = [[f] for f in frames[:4]]
    batched = enhancer.enhance_windows(windows)
    for w, b in zip(windows, batched, strict=True):
        one = enhancer.enhance_window(w)
        np.testing.assert_allclose(b, one, rtol=1e-4, atol=1e-3 * float(np.abs(one).max()))


def test_behind_enhancer_batches_and_works_off_everything(tmp_path, model, frames):
    engine = RecordingEngine(model, delay_s=0.05)
    p = LivePipeline(Enhancer(model, engine), StoreSpec(tmp_path / "r.ome.zarr"), policy="complete",
                     enhance_queue_size=8, max_batch=4).start()
    for i, img in enumerate(frames):
        p.submit(Frame(i, img, i * 2.0))
        time.sleep(0.002)  # a camera far faster than the (slowed) model
    s = p.stop()
    r = open_store(tmp_path / "r.ome.zarr")
    assert s.raw_written == len(frames) and r.status_counts()["pending"] == 0
    assert s.enhanced_live + s.enhanced_after == len(frames) and s.failed == 0
    assert max(engine.batches) == 4 and len(engine.batches) < len(frames)
    assert set(engine.batches) <= {1, 2, 3, 4}
    reference = Enhancer(model, "torch")
    for i in (0, 5, len(frames) - 1):
        one = reference.enhance_window([frames[i]]).astype(np.float32)
        got = r.enhanced_frame(i).astype(np.float32)
        assert np.abs(got - one).max() <= 1.0 + 1e-3 * float(one.max())  # uint16 rounding


def test_one_bad_frame_fails_alone_in_its_batch(tmp_path, model, frames):
    bad = list(frames[:12])
    bad[6] = np.full_like(frames[0], 120)  # constant: the engine gives NaN for it
    engine = MarkedNaNEngine(model, delay_s=0.05)
    p = LivePipeline(Enhancer(model, engine), StoreSpec(tmp_path / "r.ome.zarr"), policy="complete",
                     enhance_queue_size=12, max_batch=4).start()
    for i, img in enumerate(bad):
        p.submit(Frame(i, img, i * 2.0))
    s = p.stop()
    r = open_store(tmp_path / "r.ome.zarr")
    status = r.records["status"]
    assert status[6] == FrameStatus.FAILED and s.failed == 1
    assert all(status[i] in (FrameStatus.LIVE, FrameStatus.AFTER) for i in range(12) if i != 6)
    assert max(engine.batches) > 1  # it was a batch, redone frame by frame
    assert any("NaN" in e and "frame 6" in e for e in s.errors)


def test_preview_never_batches(tmp_path, model, frames):
    engine = RecordingEngine(model, delay_s=0.03)
    p = LivePipeline(Enhancer(model, engine), StoreSpec(tmp_path / "r.ome.zarr"), policy="preview",
                     max_batch=4).start()
    for i, img in enumerate(frames[:12]):
        p.submit(Frame(i, img, i * 2.0))
    p.stop()
    assert set(engine.batches) == {1}


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_batch_setting(tmp_path, model, bad):
    with pytest.raises(ConfigError, match="max_batch"):
        LivePipeline(Enhancer(model, "torch"), StoreSpec(tmp_path / "r.ome.zarr"), max_batch=bad)
    assert not (tmp_path / "r.ome.zarr").exists()
