"""``live-pssr enhance --consistency / --tta`` (issue 10, offline): the maps and the report written beside
the output (a run store's maps inside it), the same numbers as the library check, every scheduler,
frames the check cannot judge, and settings or paths that cannot work (refused before any work)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

from live_pssr.cli import app
from live_pssr.consistency import check_consistency, tta_disagreement
from live_pssr.enhancer import Enhancer
from live_pssr.errors import ConfigError, StoreExistsError
from live_pssr.modelio import load_model
from live_pssr.offline import enhance_array, enhance_file
from live_pssr.offline.checks import REPORT_FORMAT, describe, summarize
from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope
from live_pssr.store import open_store
from live_pssr.store.claim import output_kind

N = 4


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Simulated camera frames (uint16, 40x40) with their structure moving, frame 2 almost all saturated."""
    mic = SimulatedMicroscope(MicroscopeConfig(height=40, width=40, laser_power=0.1, seed=5, n_networks=40))
    stack = np.stack([mic.frame(t) for t in range(N)])
    stack[2] = np.where(np.arange(40 * 40).reshape(40, 40) % 97 == 0, 7, 65535)
    return stack


def _tif(path: Path, data: np.ndarray) -> Path:
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TYX", "unit": "um"},
                     resolution=(1 / 0.2, 1 / 0.2))
    return path


def _run(inp: Path, out: Path, model: Path, **kw):
    kw.setdefault("engine", "torch")
    kw.setdefault("threads", 1)
    return enhance_file(inp, out, model=model, **kw)


def _report(path: Path) -> dict:
    return json.loads(path.read_text())


def test_tif_output_gets_maps_and_report_with_the_library_numbers(tmp_path, tiny_model_path, frames):
    inp = _tif(tmp_path / "in.tif", frames)
    res = _run(inp, tmp_path / "out.tif", tiny_model_path, consistency=True, tta=True)
    maps, spread, report = (tmp_path / "out.consistency.tif", tmp_path / "out.tta.tif",
                            tmp_path / "out.consistency.json")
    assert res.checks["consistency_maps"] == maps and res.checks["tta_maps"] == spread
    assert res.checks["report"] == report
    # the enhanced output is the same as without the checks
    plain = enhance_array(frames, tiny_model_path, threads=1)
    np.testing.assert_array_equal(tifffile.imread(res.output), plain)

    m = tifffile.imread(maps)
    s = tifffile.imread(spread)
    assert m.shape == (N, 40, 40) and m.dtype == np.float32
    assert s.shape == (N, 160, 160) and s.dtype == np.float32
    with tifffile.TiffFile(maps) as t:
        info = json.loads(t.imagej_metadata["Info"])["live_pssr"]
        assert info["content"] == "consistency-map" and "structure added" in info["meaning"]
        assert t.pages[0].tags["XResolution"].value == (5, 1)  # the raw frame's pixel size (0.2 um)

    doc = _report(report)
    assert doc["live_pssr"]["format"] == REPORT_FORMAT and output_kind(report) == "json"
    settings = doc["live_pssr"]["checks"]
    assert settings["psf_sigma_px"] == 0.0 and settings["camera"] is None
    assert settings["noise"] == "estimated from each frame"
    assert settings["consistency_maps"] == maps.name
    records = doc["frames"]
    assert [r["frame"] for r in records] == list(range(N))

    enhancer = Enhancer(load_model(tiny_model_path), "torch")  # uint16 in, uint16 out: what is written
    for t in (0, 1, 3):
        out = enhancer.enhance_window([frames[t]])
        r = check_consistency(frames[t], out, 4, 0.0)
        rec = records[t]
        assert rec["available"] and rec["flagged"] == r.flagged and rec["score"] == round(r.score, 5)
        assert rec["peak"] == list(r.peak)
        np.testing.assert_allclose(m[t], r.signed_map, atol=1e-4)
        tta = tta_disagreement(lambda w: enhancer.enhance_window(w), [frames[t]], 8)
        np.testing.assert_allclose(s[t], tta.spread, rtol=1e-4, atol=1e-3)
        assert rec["tta_disagreement"] == pytest.approx(tta.disagreement, abs=1e-5)
    # frame 2 (clipped almost everywhere) cannot be judged: kept enhanced, marked unavailable, map NaN
    assert records[2]["available"] is False and "clipped" in records[2]["reason"]
    assert np.isnan(m[2]).all() and np.isfinite(m[[0, 1, 3]]).all()
    summary = doc["summary"]
    assert summary["checked"] == 3 and summary["unavailable"] == 1
    assert summary["unavailable_frames"][0]["frame"] == 2
    assert summary == res.checks["summary"] and summary["score"]["min"] <= summary["score"]["max"]


def test_zarr_and_run_store_outputs_and_dask_threads(tmp_path, tiny_model_path, frames):
    inp = _tif(tmp_path / "in.tif", frames)
    one = _run(inp, tmp_path / "one.zarr", tiny_model_path, consistency=True)
    two = _run(inp, tmp_path / "run.ome.zarr", tiny_model_path, consistency=True, workers=2, block=1)
    a = zarr.open_array(str(tmp_path / "one.consistency.zarr"), mode="r")
    attrs = dict(a.attrs)["live_pssr"]
    assert attrs["state"] == "complete" and attrs["summary"]["summary"]["checked"] == 3
    assert a.shape == (N, 40, 40) and dict(a.attrs)["pixel_size_um"] == pytest.approx(0.2)
    # a run store keeps its maps inside (image 2), not beside it; the report stays beside
    assert two.checks["consistency_maps"] == tmp_path / "run.ome.zarr" / "2"
    assert not (tmp_path / "run.consistency.zarr").exists() and two.checks["report"].is_file()
    store = open_store(two.output)
    b = np.asarray(store.consistency[:, 0], np.float32)
    np.testing.assert_array_equal(np.isnan(a[:]), np.isnan(b))
    np.testing.assert_allclose(a[:][[0, 1, 3]], b[[0, 1, 3]], rtol=2e-3, atol=2e-3)  # float16, threads
    ra, rb = _report(one.checks["report"]), _report(two.checks["report"])
    assert [r["flagged"] for r in ra["frames"] if r["available"]] == \
        [r["flagged"] for r in rb["frames"] if r["available"]]
    assert store.consistency_summary()["checked"] == 3


def test_run_store_keeps_the_maps_the_tif_path_writes(tmp_path, tiny_model_path, frames):
    """``-o OUT.ome.zarr --consistency``: the store's image 2 is the tif path's map (in the store's
    float16), NaN for the frame the check cannot judge, with the records' columns filled like a live run's."""
    inp = _tif(tmp_path / "in.tif", frames)
    tif = _run(inp, tmp_path / "o.tif", tiny_model_path, consistency=True)
    run = _run(inp, tmp_path / "run.ome.zarr", tiny_model_path, consistency=True)
    ref = tifffile.imread(tif.checks["consistency_maps"])
    report = _report(run.checks["report"])
    assert report["live_pssr"]["checks"]["consistency_maps"] == "run.ome.zarr/2"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.tif", "o.consistency.json", "o.consistency.tif", "o.tif", "run.consistency.json", "run.ome.zarr"]
    store = open_store(run.output)
    assert store.run["state"] == "closed" and store.run["consistency"]["every"] == 1
    assert store.run["consistency"]["psf_sigma_px"] == 0.0 and store.run["consistency"]["threshold"] > 0
    rec = store.records
    for t in range(N):
        r = report["frames"][t]
        if t == 2:  # unavailable: not checked, NaN in the store
            assert store.consistency_frame(t) is None and np.isnan(store.consistency[t, 0]).all()
            assert np.isnan(rec["consistency"][t]) and not r["available"]
            continue
        m = store.consistency_frame(t)
        np.testing.assert_array_equal(m, ref[t].astype(np.float16).astype(np.float32))
        assert rec["consistency"][t] == pytest.approx(r["score"], abs=1e-5)
        assert rec["flagged"][t] == int(r["flagged"])
        assert rec["consistency_max"][t] == pytest.approx(np.abs(ref[t]).max(), rel=1e-6)
    assert store.consistency_summary()["checked"] == 3
    np.testing.assert_array_equal(np.asarray(store.enhanced[:, 0]), tifffile.imread(tif.output))


def test_dask_processes_bring_the_records_back(tmp_path, tiny_model_path, frames):
    inp = _tif(tmp_path / "in.tif", frames)
    one = _run(inp, tmp_path / "one.zarr", tiny_model_path, consistency=True)
    two = _run(inp, tmp_path / "two.zarr", tiny_model_path, consistency=True, workers=2, block=2,
               scheduler="processes")
    assert _report(one.checks["report"])["frames"] == _report(two.checks["report"])["frames"]


def test_a_calibration_and_a_blur_are_used(tmp_path, tiny_model_path, frames):
    from live_pssr.calibrate import fit_photon_transfer, write_config

    mic = SimulatedMicroscope(MicroscopeConfig(height=40, width=40, laser_power=0.2, seed=5, n_networks=40))
    mean_e = mic.expected_electrons(mic.ground_truth(0))
    rng = np.random.default_rng(0)
    calib = write_config(fit_photon_transfer(np.stack([mic.camera.record(mean_e, rng) for _ in range(20)])),
                         tmp_path / "cam.yaml")
    inp = _tif(tmp_path / "in.tif", frames[[0, 1]])
    res = _run(inp, tmp_path / "o.tif", tiny_model_path, consistency=True, camera=calib, psf_sigma_px=1.0)
    settings = _report(res.checks["report"])["live_pssr"]["checks"]
    assert settings["camera"] == str(calib) and settings["psf_sigma_px"] == 1.0
    assert settings["noise"].startswith(f"calibration {calib}")
    assert settings["psf_source"] == "given"
    out = Enhancer(load_model(tiny_model_path), "torch").enhance_window([frames[0]])
    expected = check_consistency(frames[0], out, 4, 1.0, calib)
    maps = tifffile.imread(res.checks["consistency_maps"])
    np.testing.assert_allclose(maps[0], expected.signed_map, atol=1e-4)


BAD_SETTINGS = {
    "calibration-missing": ({"camera": "nope.yaml"}, "does not exist"),
    "calibration-invalid": ({"camera": "bad.yaml"}, "gain"),
    "psf-negative": ({"psf_sigma_px": -1.0}, "psf"),
    "psf-nan": ({"psf_sigma_px": float("nan")}, "psf"),
}


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_settings_that_cannot_work_are_refused_before_any_work(tmp_path, tiny_model_path, frames, case):
    (tmp_path / "bad.yaml").write_text("kind: camera\nscale: 4\ngain: -2.0\noffset: 100\nread_noise: 1.5\n")
    kw, words = BAD_SETTINGS[case]
    if "camera" in kw:
        kw = {"camera": tmp_path / kw["camera"]}
    inp = _tif(tmp_path / "in.tif", frames)
    with pytest.raises(ConfigError) as err:
        _run(inp, tmp_path / "o.tif", tiny_model_path, consistency=True, **kw)
    assert words in err.value.message and err.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "in.tif"]


def test_paths_beside_the_output_follow_the_overwrite_rules(tmp_path, tiny_model_path, frames):
    inp = _tif(tmp_path / "in.tif", frames[:2])
    foreign = tmp_path / "o.consistency.json"
    foreign.write_text('{"mine": true}')
    with pytest.raises(StoreExistsError, match="already exists"):
        _run(inp, tmp_path / "o.tif", tiny_model_path, consistency=True)
    with pytest.raises(StoreExistsError, match="did not write"):
        _run(inp, tmp_path / "o.tif", tiny_model_path, consistency=True, overwrite=True)
    assert not (tmp_path / "o.tif").exists() and foreign.read_text() == '{"mine": true}'
    foreign.unlink()
    _run(inp, tmp_path / "o.tif", tiny_model_path, consistency=True)
    with pytest.raises(StoreExistsError, match="already exists"):
        _run(inp, tmp_path / "o.tif", tiny_model_path, consistency=True)
    again = _run(inp, tmp_path / "o.tif", tiny_model_path, consistency=True, overwrite=True)
    assert _report(again.checks["report"])["summary"]["checked"] == 2
    plain = _run(inp, tmp_path / "o2.tif", tiny_model_path)  # no checks asked: nothing beside it
    assert plain.checks is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.tif", "o.consistency.json", "o.consistency.tif", "o.tif", "o2.tif"]


def test_a_failed_run_leaves_no_report(tmp_path, tiny_model_path, frames, monkeypatch):
    from live_pssr.offline import work

    inp = _tif(tmp_path / "in.tif", frames)
    calls = {"n": 0}
    real = work.enhance_window

    def fail_third(enhancer, window, ref):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("engine died")
        return real(enhancer, window, ref)

    monkeypatch.setattr(work, "enhance_window", fail_third)
    with pytest.raises(RuntimeError, match="engine died"):
        _run(inp, tmp_path / "o.tif", tiny_model_path, consistency=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_cli_writes_and_reports_the_checks(tmp_path, tiny_model_path, frames):
    inp = _tif(tmp_path / "in.tif", frames)
    result = CliRunner().invoke(app, ["enhance", str(inp), "-o", str(tmp_path / "o.tif"), "-m",
                                      str(tiny_model_path), "--engine", "torch", "--consistency", "--tta"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "consistency: 3 of 4 frame(s) checked" in out and "could not be checked (frame 2" in out
    assert "TTA disagreement" in out and "o.consistency.json" in out and "o.tta.tif" in out


def test_summary_and_its_line():
    records = [{"frame": 1, "available": True, "score": 0.9, "flagged": True, "added": True,
                "removed": False, "max_error": 7.0},
               {"frame": 0, "available": True, "score": 1.0, "flagged": False, "added": False,
                "removed": False, "max_error": 3.0},
               {"frame": 2, "available": False, "reason": "the raw frame is constant"}]
    s = summarize(records)
    assert s["flagged_frames"] == [1] and s["flag_rate"] == 0.5 and s["added"] == 1 and s["removed"] == 0
    assert s["score"]["median"] == pytest.approx(0.95) and s["unavailable_frames"][0]["frame"] == 2
    line = describe(s)
    assert "2 of 3 frame(s) checked" in line and "1 flagged (frame 1)" in line and "constant" in line
    json.dumps(s)
