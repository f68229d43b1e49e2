"""The live consistency check: records, the stored map (image 2), summary, info, bad input.

Real parts: the shipped default model on the simulated microscope, real run stores on disk,
zarr-python and yaozarrs reading them. The one test double is :class:`Planting`, an enhancer
that adds a fake bright spot to the real model's output (where the raw frame shows background):
it stands for a network that invents structure, beside the runs of the real model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from live_pssr.enhancer import build_enhancer
from live_pssr.errors import ConfigError
from live_pssr.frames import Frame
from live_pssr.pipeline import LivePipeline, StoreSpec
from live_pssr.pipeline.checking import ConsistencySpec, ConsistencyTally, consistency_spec
from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope
from live_pssr.store import FrameStatus, open_store

SIZE = 64


@pytest.fixture(scope="module")
def scope() -> SimulatedMicroscope:
    return SimulatedMicroscope(MicroscopeConfig(height=SIZE, width=SIZE, laser_power=0.1, seed=5,
                                                n_networks=30))


@pytest.fixture(scope="module")
def frames(scope) -> list[np.ndarray]:
    return [scope.frame(i) for i in range(8)]


@pytest.fixture(scope="module")
def enhancer():
    return build_enhancer("mito-sr4-fast", (SIZE, SIZE), "torch")


class Planting:
    """The real enhancer, plus a bright spot where the raw frame is darkest (an invented structure)."""

    def __init__(self, real) -> None:
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def enhance_window(self, window):
        out = np.array(self.real.enhance_window(window), dtype=np.float32)
        raw = window[-1].astype(np.float32)
        y, x = self.spot(raw)
        yy, xx = np.mgrid[: out.shape[0], : out.shape[1]]
        u = self.real.upscale
        out += 0.6 * float(out.max()) * np.exp(-((yy - (y + 0.5) * u) ** 2 + (xx - (x + 0.5) * u) ** 2)
                                                / (2 * 6.0**2))
        return out.astype(self.real.out_dtype) if hasattr(self.real, "out_dtype") else out

    def enhance_windows(self, windows):
        return [self.enhance_window(w) for w in windows]

    @staticmethod
    def spot(raw: np.ndarray) -> tuple[int, int]:
        from scipy import ndimage as ndi

        smooth = ndi.uniform_filter(raw, 9)[8:-8, 8:-8]
        y, x = np.unravel_index(int(np.argmin(smooth)), smooth.shape)
        return int(y) + 8, int(x) + 8


def _run(tmp_path, enhancer, frames, spec, name="r.ome.zarr", policy="complete"):
    p = LivePipeline(enhancer, StoreSpec(tmp_path / name, pixel_size_um=0.16), policy=policy,
                     consistency=spec, enhance_queue_size=len(frames))
    p.start()
    for i, img in enumerate(frames):
        p.submit(Frame(i, img, i * 50.0))
    return p, p.stop()


def test_every_frame_checked_and_stored(tmp_path, enhancer, frames, scope):
    spec = consistency_spec(True, camera=scope.camera)
    p, summary = _run(tmp_path, enhancer, frames, spec)
    r = open_store(tmp_path / "r.ome.zarr")
    assert r.n_frames == len(frames) and r.status_counts()["pending"] == 0
    scores = r.records["consistency"]
    assert scores.dtype == np.float32 and np.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all() and np.median(scores) > 0.9
    assert r.records["flagged"].sum() == 0  # the real model on the simulator: nothing invented
    # the map: image 2, float16, raw shape and scale, same axes
    assert r.consistency.shape == (len(frames), 1, SIZE, SIZE) and r.consistency.dtype == np.float16
    m = r.consistency_frame(3)
    assert m.dtype == np.float32 and m.shape == (SIZE, SIZE) and np.isfinite(m).all()
    np.testing.assert_allclose(np.abs(m).max(), r.records["consistency_max"][3], rtol=2e-3)
    root = tmp_path / "r.ome.zarr"
    attrs = [json.loads((root / k / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
             for k in ("0", "2")]
    assert attrs[1]["name"] == "consistency" and attrs[1]["axes"] == attrs[0]["axes"]
    assert attrs[1]["datasets"][0]["coordinateTransformations"] == attrs[0]["datasets"][0][
        "coordinateTransformations"]
    series = json.loads((root / "OME" / "zarr.json").read_text())["attributes"]["ome"]["series"]
    assert series == ["0", "1", "2"]
    assert zarr.open_array(str(root / "2" / "0"), mode="r").shape == r.consistency.shape
    assert "consistency" in (root / "OME" / "METADATA.ome.xml").read_text(encoding="utf-8")
    # settings in the run metadata, distribution in the summaries
    assert r.run["consistency"]["every"] == 1 and "gain" in r.run["consistency"]["noise"]
    assert r.run["consistency"]["threshold"] == pytest.approx(shown_threshold(p), abs=1e-3)
    info = r.summary()["consistency"]
    assert info["checked"] == len(frames) and info["flagged"] == 0
    assert summary.consistency["checked"] == len(frames) and summary.consistency["flagged"] == 0
    assert abs(summary.consistency["score_p50"] - float(np.median(scores))) < 2e-3
    assert "consistency p5/p50/p95" in summary.text()
    assert p.stats().frames_checked == len(frames) and p.stats().last_score is not None
    shown = p.latest()
    assert shown.consistency is not None and shown.consistency.shape == (SIZE, SIZE)
    assert shown.flagged is False and 0 <= shown.score <= 1 and shown.threshold > 3


def shown_threshold(p) -> float:
    return p.latest().threshold


def test_store_with_a_map_validates_as_ome_zarr(tmp_path, enhancer, frames, scope):
    yaozarrs = pytest.importorskip("yaozarrs")
    _run(tmp_path, enhancer, frames[:2], consistency_spec(True, camera=scope.camera))
    for key in ("0", "1", "2"):
        yaozarrs.validate_ome_json((tmp_path / "r.ome.zarr" / key / "zarr.json").read_text())


def test_invented_structure_is_flagged_where_it_is(tmp_path, enhancer, frames, scope):
    planted = Planting(enhancer)
    _, summary = _run(tmp_path, planted, frames, consistency_spec(True, camera=scope.camera))
    r = open_store(tmp_path / "r.ome.zarr")
    assert r.records["flagged"].tolist() == [1] * len(frames)
    assert summary.consistency["flagged"] == len(frames)
    assert summary.consistency["flagged_frames"] == f"0-{len(frames) - 1}"
    assert "FLAGGED" in summary.text()
    for t in (0, len(frames) - 1):
        m = r.consistency_frame(t)
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)  # > 0: light added by the "network"
        sy, sx = Planting.spot(frames[t].astype(np.float32))
        assert abs(y - sy) <= 2 and abs(x - sx) <= 2
    assert r.summary()["consistency"]["flagged_frames"] == f"0-{len(frames) - 1}"


def test_every_nth_frame(tmp_path, enhancer, frames, scope):
    _run(tmp_path, enhancer, frames, ConsistencySpec(every=3, camera=scope.camera))
    r = open_store(tmp_path / "r.ome.zarr")
    checked = np.isfinite(r.records["consistency"])
    assert checked.tolist() == [i % 3 == 0 for i in range(len(frames))]
    assert r.consistency_frame(1) is None and r.consistency_frame(3) is not None
    assert np.isnan(np.asarray(r.consistency[1, 0], dtype=np.float32)).all()  # never a "consistent" 0
    assert r.summary()["consistency"]["checked"] == 3


def test_constant_frame_keeps_its_enhancement_and_the_run_goes_on(tmp_path, enhancer, frames):
    bad = [*frames[:3], np.full_like(frames[0], 100), *frames[3:5]]
    p, summary = _run(tmp_path, enhancer, bad, consistency_spec(True))
    r = open_store(tmp_path / "r.ome.zarr")
    assert r.n_frames == len(bad) and r.status_counts()["failed"] == 0
    assert r.records["status"][3] in (FrameStatus.LIVE, FrameStatus.AFTER)  # the enhancement is kept
    assert np.isnan(r.records["consistency"][3]) and r.consistency_frame(3) is None
    assert np.isfinite(np.delete(r.records["consistency"], 3)).all()  # frames after it are checked
    assert summary.consistency["unavailable"] == 1
    assert any("consistency unavailable" in e and "constant" in e and "frame 3" in e for e in summary.errors)


def test_unavailable_reasons_of_one_kind_are_one_error_line(tmp_path, enhancer, frames):
    bad = [frames[0]] + [np.full_like(frames[0], v) for v in (100, 101, 102, 103)]
    _, summary = _run(tmp_path, enhancer, bad, consistency_spec(True))
    lines = [e for e in summary.errors if "consistency unavailable" in e]
    assert len(lines) == 1 and "x 4" in lines[0] and "first on frame 1" in lines[0]


def test_off_means_no_map_and_no_summary(tmp_path, enhancer, frames):
    _, summary = _run(tmp_path, enhancer, frames[:2], None)
    r = open_store(tmp_path / "r.ome.zarr")
    assert r.consistency is None and not (tmp_path / "r.ome.zarr" / "2").exists()
    assert summary.consistency is None and r.summary()["consistency"] is None
    assert np.isnan(r.records["consistency"]).all()


def test_a_store_without_the_columns_still_opens(tmp_path, enhancer, frames):
    """Stores written before the check existed lack its columns and image: they read as NaN / 0."""
    import shutil

    _run(tmp_path, enhancer, frames[:2], consistency_spec(True))
    root = tmp_path / "r.ome.zarr"
    for col in ("consistency", "consistency_max", "flagged"):
        shutil.rmtree(root / "frames" / col)
    shutil.rmtree(root / "2")
    r = open_store(root)
    assert r.n_frames == 2 and r.consistency is None and r.consistency_frame(0) is None
    assert np.isnan(r.records["consistency"]).all() and (r.records["flagged"] == 0).all()


@pytest.mark.parametrize("content", ["kind: camera\ngain: -1\noffset: 100\nread_noise: 1.5\n",
                                     "kind: pssr-fluo\n", "[unclosed\n"])
def test_a_calibration_that_does_not_validate_fails_before_the_run(tmp_path, content):
    from live_pssr.live import LiveSession

    bad = tmp_path / "calib.yaml"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        LiveSession(store=tmp_path / "run.ome.zarr", camera=bad)
    assert err.value.hint and not (tmp_path / "run.ome.zarr").exists()  # nothing claimed


def test_bad_settings_are_clear_errors():
    for every in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match="consistency_every"):
            ConsistencySpec(every=every)
    with pytest.raises(ConfigError, match="false_alarm"):
        ConsistencySpec(false_alarm=2.0)
    with pytest.raises(ConfigError, match="not a setting"):
        consistency_spec("yes")


def test_tally_is_bounded_and_its_percentiles_match(monkeypatch):
    import live_pssr.pipeline.checking as checking

    monkeypatch.setattr(checking, "MAX_RANGES", 3)

    class R:  # what the tally reads of a ConsistencyResult
        def __init__(self, score, flagged):
            self.score, self.flagged = score, flagged

    rng = np.random.default_rng(0)
    scores = rng.uniform(0.5, 1.0, 5000)
    tally = ConsistencyTally()
    for i, s in enumerate(scores):
        tally.add(i, R(s, flagged=i % 10 == 0))
    d = tally.as_dict()
    assert d["checked"] == 5000 and d["flagged"] == 500
    assert d["flagged_frames"] == "0, 10, 20 ..."  # ranges capped, the count is not
    for q in (5, 50, 95):
        assert abs(d[f"score_p{q}"] - np.percentile(scores, q)) < 2e-3


def test_demo_and_info_report_the_check(tmp_path):
    from live_pssr.cli import app

    out = tmp_path / "demo.ome.zarr"
    runner = CliRunner()
    res = runner.invoke(app, ["demo", "--headless", "--frames", "6", "--size", "32", "--engine", "torch",
                              "--out", str(out), "--consistency-every", "2"])
    assert res.exit_code == 0, res.output
    assert "consistency p5/p50/p95" in res.output
    r = open_store(out)
    assert np.isfinite(r.records["consistency"]).tolist() == [True, False] * 3
    assert "CameraModel" in r.run["consistency"]["noise"]  # the simulated camera's own noise model
    res = runner.invoke(app, ["info", str(out), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["consistency"]["checked"] == 3
    res = runner.invoke(app, ["demo", "--headless", "--frames", "3", "--size", "32", "--engine", "torch",
                              "--out", str(tmp_path / "off.ome.zarr"), "--no-consistency"])
    assert res.exit_code == 0, res.output
    assert open_store(tmp_path / "off.ome.zarr").consistency is None
