"""``live-pssr acquire`` on a real MMCore: --simulate, --mm-config, settings and their errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from live_pssr.cli import app
from live_pssr.store import open_store

pytestmark = pytest.mark.filterwarnings("ignore:No-op in MMCore:DeprecationWarning")


def acquire(*args: str):
    return CliRunner().invoke(app, ["acquire", *args], catch_exceptions=False)


def common(tiny_model_path, out) -> list[str]:
    return ["--model", str(tiny_model_path), "--engine", "torch", "--out", str(out), "--headless"]


def test_simulated_time_lapse_with_roi_and_exposure(tiny_model_path, tmp_path):
    out = tmp_path / "run.ome.zarr"
    res = acquire("--simulate", "--size", "64", "--frames", "6", "--exposure", "5", "--roi", "8,0,48,32",
                  "--policy", "complete", *common(tiny_model_path, out))
    assert res.exit_code == 0, res.output
    assert "raw written" in res.output and "hook cost" in res.output
    reader = open_store(out)
    assert reader.n_frames == 6 and reader.raw.shape[-2:] == (32, 48)
    assert reader.enhanced.shape[-2:] == (128, 192)
    assert reader.status_counts()["live"] + reader.status_counts()["after"] == 6
    run = reader.run
    assert run["acquisition"]["exposure_ms"] == 5.0 and run["acquisition"]["roi"] == [8, 0, 48, 32]
    assert run["command"]["system"] == "simulated" and run["frame_interval_s"] == pytest.approx(0.005)
    assert np.all(np.diff(reader.records["camera_time_ms"]) > 0)


def test_timed_interval_binning_and_preset(tiny_model_path, tmp_path):
    out = tmp_path / "run.ome.zarr"
    res = acquire("--simulate", "--size", "64", "--frames", "3", "--interval", "0.02",
                  "--binning", "2", "--preset", "Channel=HighLaser", *common(tiny_model_path, out))
    assert res.exit_code == 0, res.output
    reader = open_store(out)
    assert reader.n_frames == 3 and reader.raw.shape[-2:] == (32, 32)
    assert reader.run["pixel_size_um"] == pytest.approx(0.32)
    assert reader.raw_frame(0).mean() > 400  # high laser


def test_mm_config_file(tiny_model_path, tmp_path):
    cfg = tmp_path / "sim.cfg"
    cfg.write_text("#py pyDevice,Cam,live_pssr.mm.camera,SimulatedCamera\n"
                   "#py Property,Cam,SensorHeight,32\n#py Property,Cam,SensorWidth,32\n"
                   "Property,Core,Initialize,1\n#py Property,Core,Camera,Cam\n")
    out = tmp_path / "run.ome.zarr"
    res = acquire("--mm-config", str(cfg), "--frames", "4", "--exposure", "1", *common(tiny_model_path, out))
    assert res.exit_code == 0, res.output
    reader = open_store(out)
    assert reader.n_frames == 4 and reader.run["command"]["config_file"] == str(cfg.resolve())


@pytest.mark.parametrize("args, message", [
    ([], "--simulate or --mm-config"),
    (["--simulate", "--mm-config", "x.cfg"], "exactly one"),
    (["--mm-config", "missing.cfg"], "not found"),
    (["--simulate", "--roi", "1,2,3"], "X,Y,WIDTH,HEIGHT"),
    (["--simulate", "--size", "64", "--roi", "0,0,128,16"], "does not fit"),
    (["--simulate", "--binning", "3"], "binning 3"),
    (["--simulate", "--preset", "Channel=UV"], "--preset"),
])
def test_bad_settings_fail_before_acquiring_with_a_fix(tiny_model_path, tmp_path, monkeypatch, capsys,
                                                      args, message):
    from live_pssr.cli import main

    out = tmp_path / "run.ome.zarr"
    monkeypatch.setattr(sys, "argv", ["live-pssr", "acquire", *args, *common(tiny_model_path, out)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err and "fix:" in err
    assert not out.exists()


def test_existing_output_is_refused(tiny_model_path, tmp_path):
    out = tmp_path / "run.ome.zarr"
    out.mkdir()
    res = CliRunner().invoke(app, ["acquire", "--simulate", "--size", "32", "--frames", "1",
                                   *common(tiny_model_path, out)])
    assert res.exit_code != 0 and "already exists" in str(res.exception)


def test_viewer_screenshot(tiny_model_path, tmp_path):
    pytest.importorskip("pyqtgraph")
    out, png = tmp_path / "run.ome.zarr", tmp_path / "view.png"
    res = acquire("--simulate", "--size", "64", "--frames", "8", "--exposure", "5", "--screenshot", str(png),
                  "--model", str(tiny_model_path), "--engine", "torch", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert png.stat().st_size > 1000 and open_store(out).n_frames >= 1
