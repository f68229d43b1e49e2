"""``live-pssr demo`` end to end: simulated microscope -> pipeline -> store, and ``info``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from live_pssr.cli import app
from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope
from live_pssr.store import open_store

runner = CliRunner()


def test_demo_end_to_end_bit_exact(tmp_path, tiny_model_path):
    out = tmp_path / "demo.ome.zarr"
    res = runner.invoke(app, ["demo", "--frames", "12", "--out", str(out), "--headless", "--policy",
                              "complete", "--model", str(tiny_model_path), "--engine", "torch",
                              "--size", "64", "--fps", "200", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "frames acquired" in res.output and "raw written" in res.output
    r = open_store(out)
    assert r.n_frames == 12 and r.closed_cleanly
    mic = SimulatedMicroscope(MicroscopeConfig(height=64, width=64, upscale=4, fps=200, seed=3))
    for t in range(12):
        np.testing.assert_array_equal(r.raw_frame(t), mic.frame(t))
        assert r.enhanced_frame(t).any()
    assert r.status_counts()["live"] + r.status_counts()["after"] == 12
    assert r.run["acquisition"]["microscope"]["seed"] == 3
    assert r.run["engine"].startswith("torch")
    assert r.run["pixel_size_um"] == mic.config.pixel_size_um
    # info prints a summary of any store
    info = runner.invoke(app, ["info", str(out), "--json"])
    assert info.exit_code == 0
    summary = json.loads(info.output)
    assert summary["frames"] == 12 and summary["status"]["pending"] == 0


def test_demo_refuses_existing_output(tmp_path, tiny_model_path):
    out = tmp_path / "demo.ome.zarr"
    out.mkdir()
    res = runner.invoke(app, ["demo", "--frames", "2", "--out", str(out), "--headless",
                              "--model", str(tiny_model_path), "--engine", "torch", "--size", "32"])
    assert res.exit_code != 0
    assert "already exists" in str(res.exception) or "already exists" in res.output


def test_demo_missing_model_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "live_pssr.cli", "demo", "--frames", "2", "--out",
                           str(tmp_path / "d.ome.zarr"), "--headless", "--model", "no-such-model"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no model named 'no-such-model'" in proc.stderr and "fix:" in proc.stderr


@pytest.mark.parametrize(("signals", "code"), [
    ((signal.SIGINT,), 130), ((signal.SIGTERM,), 143), ((signal.SIGHUP,), 129),
    ((signal.SIGINT, signal.SIGINT), 130),  # a second Ctrl-C while closing: backlog left, store closed
])
def test_ctrl_c_closes_the_store_consistently(tmp_path, tiny_model_path, signals, code):
    out = tmp_path / "demo.ome.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "live_pssr.cli", "demo", "--frames", "100000", "--out", str(out),
         "--headless", "--model", str(tiny_model_path), "--engine", "torch", "--size", "48",
         "--fps", "50", "--policy", "complete" if len(signals) > 1 else "preview"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if open_store(out).n_frames >= 10:
                break
        except Exception:
            pass
        time.sleep(0.1)
    for sig in signals:
        os.kill(proc.pid, sig)
        time.sleep(0.2)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == code, output
    assert "interrupted" in output and "Traceback" not in output and "terminate called" not in output
    r = open_store(out)
    assert r.closed_cleanly and r.n_frames >= 10
    assert r.run["summary"]["interrupted"] is True
    assert r.run["summary"]["raw_written"] == r.n_frames
    np.testing.assert_array_equal(r.records["index"], np.arange(r.n_frames))


def test_demo_replays_a_recording(tmp_path, tiny_model_path):
    import tifffile

    stack = (np.random.default_rng(0).poisson(200, (6, 40, 56)) + 100).astype(np.uint16)
    tifffile.imwrite(tmp_path / "rec.tif", stack, imagej=True, metadata={"axes": "TYX"})
    out = tmp_path / "replay.ome.zarr"
    res = runner.invoke(app, ["demo", "--replay", str(tmp_path / "rec.tif"), "--frames", "100", "--out",
                              str(out), "--headless", "--policy", "complete", "--model",
                              str(tiny_model_path), "--engine", "torch", "--fps", "100"])
    assert res.exit_code == 0, res.output
    r = open_store(out)
    assert r.n_frames == 6 and r.run["acquisition"]["source"] == "replay"
    for t in range(6):
        np.testing.assert_array_equal(r.raw_frame(t), stack[t])


@pytest.mark.parametrize(("args", "names"), [
    (["--policy", "bogus"], ["--policy", "preview", "complete"]),
    (["--size", "0"], ["--size"]),
    (["--fps", "0"], ["--fps"]),
    (["--laser-power", "0"], ["--laser-power"]),
    (["--fsync", "sometimes"], ["--fsync", "commit"]),
])
def test_bad_options_name_the_option_not_an_internal_field(tmp_path, tiny_model_path, args, names):
    proc = subprocess.run(
        [sys.executable, "-m", "live_pssr.cli", "demo", "--headless", "--frames", "3", "--out",
         str(tmp_path / "o.ome.zarr"), "--model", str(tiny_model_path), "--engine", "torch", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text and "MicroscopeConfig" not in text
    for name in names:
        assert name in text, (name, text)
    assert not (tmp_path / "o.ome.zarr").exists()  # nothing claimed for a run that cannot start
