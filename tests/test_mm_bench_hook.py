"""``live-pssr bench hook`` runs end to end (a smoke run: tiny frames, no timing asserted)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from live_pssr.cli import app

pytestmark = pytest.mark.filterwarnings("ignore:No-op in MMCore:DeprecationWarning")


def test_bench_hook_reports_rates_costs_and_no_lost_frames(tmp_path, tiny_model_path):
    out = tmp_path / "hook.json"
    res = CliRunner().invoke(app, [
        "bench", "hook", "--json", str(out), "--sizes", "48", "--frames", "12", "--exposure", "2",
        "--repeats", "1", "--model", str(tiny_model_path), "--engine", "torch", "--threads", "2",
        "--dir", str(tmp_path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["backend"] for r in rows] == ["pycromanager", "mda"]
    for r in rows:
        assert r["size"] == "48x48" and r["delivered"] == r["stored"] == 12 and r["lost"] == 0
        assert r["acq_fps_baseline"] > 0 and r["acq_fps_hook"] > 0 and r["fps_ratio"] > 0
        assert 0 < r["hook_cpu_ms"] <= r["hook_mean_ms"] <= r["hook_max_ms"]
    assert list(tmp_path.glob("live-pssr-bench-hook-*")) == []  # stores cleaned up
