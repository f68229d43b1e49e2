"""The live viewer with a real pipeline (tiny model, simulated 64x64 camera), offscreen Qt."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pg = pytest.importorskip("pyqtgraph")

from qtpy import QtCore, QtGui  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from live_pssr.cli import app  # noqa: E402
from live_pssr.enhancer import Enhancer  # noqa: E402
from live_pssr.live.runners import SourceRunner  # noqa: E402
from live_pssr.pipeline import LivePipeline, StoreSpec  # noqa: E402
from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope  # noqa: E402
from live_pssr.sources import SimulatedSource  # noqa: E402
from live_pssr.store import STATUS, open_store  # noqa: E402
from live_pssr.viewer.contrast import auto_levels, display_stride, lut_table, render_rgb  # noqa: E402
from live_pssr.viewer.window import ViewerWindow  # noqa: E402

SIZE = 64
CONFIG = MicroscopeConfig(height=SIZE, width=SIZE, fps=50, seed=1)


@pytest.fixture
def live(tmp_path, tiny_model):
    """A running pipeline + runner over the simulated camera (endless until stopped)."""
    pipeline = LivePipeline(Enhancer(tiny_model, engine="torch"),
                            StoreSpec(tmp_path / "run.ome.zarr", pixel_size_um=0.16))
    runner = SourceRunner(SimulatedSource(CONFIG), pipeline, None).start()
    yield pipeline, runner
    runner.stop()
    runner.done.wait(10)
    pipeline.stop(finish_backlog=False)


@pytest.fixture
def window(qtbot, live):
    pipeline, runner = live
    w = ViewerWindow(pipeline=pipeline, runner=runner)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.enhanced_shown >= 3 and (w.raw_panel.index or 0) >= 3, timeout=20000)
    return w


def _qimage_array(path) -> np.ndarray:
    img = QtGui.QImage(str(path)).convertToFormat(QtGui.QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)
    return buf[:, : 3 * w].reshape(h, w, 3)


# ------------------------------------------------------------------ contrast (no Qt)
def test_auto_levels_and_rendering():
    img = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)
    lo, hi = auto_levels(img, 1, 99)
    assert abs(lo - 0.01 * img.max()) < 0.02 * img.max() and abs(hi - 0.99 * img.max()) < 0.02 * img.max()
    assert auto_levels(np.full((8, 8), 7, np.uint16)) == (7.0, 8.0)
    rgb = render_rgb(np.array([[0, 50, 100]], np.uint16), (0, 100), "green")
    assert rgb.shape == (1, 3, 3) and rgb[0, :, 1].tolist() == [0, 127, 255] and not rgb[..., 0].any()
    assert not np.array_equal(lut_table("magma"), lut_table("grey"))
    assert display_stride(1.0) == 1 and display_stride(3.4) == 3 and display_stride(100) == 8
    with pytest.raises(ValueError, match="unknown lookup table"):
        lut_table("rainbow")


# ------------------------------------------------------------------ live window
def test_frames_arrive_and_both_panels_update(qtbot, window):
    w = window
    assert w.raw_panel.image.shape == (SIZE, SIZE)
    assert w.enh_panel.image.shape == (SIZE * 4, SIZE * 4)
    first_raw, first_enh = w.raw_panel.index, w.enh_panel.index
    qtbot.waitUntil(lambda: w.raw_panel.index > first_raw + 3 and w.enh_panel.index > first_enh,
                    timeout=20000)
    # the panel shows exactly the camera frame (raw) with that index
    mic = SimulatedMicroscope(CONFIG)
    np.testing.assert_array_equal(w.raw_panel.image, mic.frame(w.raw_panel.index))
    # both image items draw something
    assert w.raw_panel.rendered_rgb().any() and w.enh_panel.rendered_rgb().any()


def test_linked_zoom_and_same_field(window):
    w = window
    raw_vb, enh_vb = w.raw_panel.view, w.enh_panel.view
    # the raw image spans the enhanced field (raw pixels scaled by the upscale factor)
    rect = w.raw_panel.item.mapRectToParent(w.raw_panel.item.boundingRect())
    assert (rect.width(), rect.height()) == (SIZE * 4, SIZE * 4)
    enh_vb.setRange(QtCore.QRectF(40, 60, 64, 64), padding=0)
    for a, b in zip(raw_vb.viewRange(), enh_vb.viewRange(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    raw_vb.scaleBy((0.5, 0.5))  # zoom in on the raw panel: the enhanced one follows
    raw_vb.translateBy(x=5, y=-7)
    for a, b in zip(raw_vb.viewRange(), enh_vb.viewRange(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert enh_vb.viewRange()[0][1] - enh_vb.viewRange()[0][0] < 64


def test_contrast_and_lut_change_the_rendered_image(window):
    w = window
    w.pause()  # hold the frame still
    panel = w.enh_panel
    before = panel.rendered_rgb()
    panel.set_lut("magma")
    magma = panel.rendered_rgb()
    assert not np.array_equal(before, magma)
    assert not np.array_equal(magma[..., 0], magma[..., 2])  # coloured now
    lo, hi = panel.levels
    panel.set_levels(lo, lo + (hi - lo) / 4)
    assert not panel.auto and not w.enh_panel.auto_box.isChecked()
    brighter = panel.rendered_rgb()
    assert brighter.astype(int).sum() > magma.astype(int).sum()
    # what the panel shows is what a snapshot writes: the same levels and table
    np.testing.assert_array_equal(brighter, render_rgb(panel.image, panel.levels, "magma"))
    # auto switches back on and follows the frame again
    w.auto_contrast()
    assert panel.auto and panel.levels == auto_levels(panel.image)


def test_counters_and_status_bar_update(qtbot, window):
    w = window
    qtbot.waitUntil(lambda: "camera 0.0" not in w.status_labels["camera"].text(), timeout=10000)
    labels = {k: lab.text() for k, lab in w.status_labels.items()}
    assert labels["state"] == "live"
    assert float(labels["camera"].split()[1]) > 5
    assert labels["enhance"].startswith("enhance ") and labels["latency"].startswith("latency p50/p99")
    assert labels["skipped"].startswith("skipped") and labels["queue"].startswith("queue")
    assert "torch" in labels["engine"] and "tiny-sr4" in labels["engine"]
    assert "run.ome.zarr" in labels["store"] and ("KB" in labels["store"] or "MB" in labels["store"])
    n = w.pipeline.stats().frames_acquired
    qtbot.waitUntil(lambda: w.time_slider.maximum() > n, timeout=10000)  # slider follows the run


def test_modes_shortcuts_pause_and_snapshot(qtbot, window, tmp_path):
    w = window
    qtbot.keyClick(w, QtCore.Qt.Key.Key_2)
    assert w.mode == "split" and not w.raw_panel.isVisible() and w.overlay.clip.isVisible()
    assert w.overlay.clip.rect().width() == pytest.approx(0.5 * SIZE * 4)
    w.mix_slider.setValue(250)
    assert w.overlay.clip.rect().width() == pytest.approx(0.25 * SIZE * 4)
    qtbot.waitUntil(lambda: w.overlay.item.image is not None, timeout=5000)
    assert w.raw_panel.index == w.enh_panel.index  # the overlay pairs raw with its enhanced frame
    qtbot.keyClick(w, QtCore.Qt.Key.Key_3)
    assert w.mode == "blend" and w.overlay.item.opacity() == pytest.approx(0.5)
    w.mix_slider.setValue(900)
    assert w.overlay.item.opacity() == pytest.approx(0.1)
    qtbot.keyClick(w, QtCore.Qt.Key.Key_4)
    assert w.mode == "enhanced" and not w.overlay.clip.isVisible() and not w.raw_panel.isVisible()
    qtbot.keyClick(w, QtCore.Qt.Key.Key_1)
    assert w.mode == "side" and w.raw_panel.isVisible()
    # Space pauses: no new frames; Space again resumes
    qtbot.keyClick(w, QtCore.Qt.Key.Key_Space)
    assert w.runner.paused
    qtbot.wait(150)
    n = w.pipeline.stats().frames_acquired
    qtbot.wait(300)
    assert w.pipeline.stats().frames_acquired <= n + 1
    qtbot.keyClick(w, QtCore.Qt.Key.Key_Space)
    assert not w.runner.paused
    qtbot.waitUntil(lambda: w.pipeline.stats().frames_acquired > n + 3, timeout=10000)
    # snapshot: both panels, full resolution, side by side
    path = w.snapshot(tmp_path / "snap.png")
    arr = _qimage_array(path)
    assert arr.shape == (SIZE * 4, 2 * SIZE * 4 + 16, 3) and arr[:, : SIZE * 4].any()
    auto = w.snapshot()
    assert auto.parent == tmp_path and auto.name.startswith("run_snap_") and auto.exists()


def test_review_while_acquisition_goes_on(qtbot, window):
    w = window
    qtbot.waitUntil(lambda: w.pipeline.stats().raw_written > 10, timeout=10000)
    w.review(4)
    qtbot.waitUntil(lambda: w.raw_panel.index == 4, timeout=5000)
    np.testing.assert_array_equal(w.raw_panel.image, SimulatedMicroscope(CONFIG).frame(4))
    assert "frame 4" in w.record_label.text() and "status" in w.record_label.text()
    assert "reviewing frame 4" in w.state_text(w.pipeline.stats())
    n = w.pipeline.stats().frames_acquired
    qtbot.waitUntil(lambda: w.pipeline.stats().frames_acquired > n + 5, timeout=10000)
    assert w.raw_panel.index == 4  # acquisition goes on, the review frame stays
    qtbot.keyClick(w, QtCore.Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: w.raw_panel.index == 5, timeout=5000)
    qtbot.keyClick(w, QtCore.Qt.Key.Key_End)
    qtbot.waitUntil(lambda: w.raw_panel.index > n, timeout=10000)


def test_closing_mid_run_stops_cleanly(qtbot, live):
    pipeline, runner = live
    w = ViewerWindow(pipeline=pipeline, runner=runner)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.enhanced_shown >= 2, timeout=20000)
    with qtbot.waitSignal(w.closed, timeout=2000):
        w.close()
    assert runner.done.wait(10) and runner.error is None
    summary = pipeline.stop()
    r = open_store(summary.store_path)
    assert r.closed_cleanly and r.n_frames == summary.frames_acquired == summary.raw_written
    mic = SimulatedMicroscope(CONFIG)
    np.testing.assert_array_equal(r.raw_frame(r.n_frames - 1), mic.frame(r.n_frames - 1))


def test_run_live_viewer_screenshot_returns(qtbot, live, tmp_path):
    from live_pssr.viewer import run_live_viewer

    pipeline, runner = live
    shot = tmp_path / "shot.png"
    run_live_viewer(pipeline, runner, screenshot=shot, screenshot_after=3)
    assert runner.done.wait(10)
    arr = _qimage_array(shot)
    assert arr.shape[0] > 400 and arr.shape[1] > 800 and arr.std() > 5
    assert pipeline.stats().enhanced_live >= 3


# ------------------------------------------------------------------ review of a finished store
@pytest.fixture
def saved_store(tmp_path, tiny_model):
    path = tmp_path / "done.ome.zarr"
    pipeline = LivePipeline(Enhancer(tiny_model, engine="torch"), StoreSpec(path), policy="complete")
    runner = SourceRunner(SimulatedSource(CONFIG), pipeline, 8, paced=False).start()
    runner.done.wait(30)
    pipeline.stop()
    return path


def test_review_window_of_a_finished_store(qtbot, saved_store):
    w = ViewerWindow(store=saved_store)
    qtbot.addWidget(w)
    w.show()
    r = open_store(saved_store)
    w.review(5)
    w.tick()
    assert w.time_slider.maximum() == r.n_frames - 1 == 7
    np.testing.assert_array_equal(w.raw_panel.image, r.raw_frame(5))
    np.testing.assert_array_equal(w.enh_panel.image, r.enhanced_frame(5))
    text = w.record_label.text()
    status = STATUS[int(r.records["status"][5])]
    assert status in ("live", "after")  # complete policy: every frame enhanced
    assert "frame 5" in text and f"status {status}" in text and "latency" in text
    assert w.status_labels["state"].text() == "review (closed)"
    w.time_slider.setValue(2)  # the slider scrubs
    w.tick()
    assert w.raw_panel.index == 2
    w.activateWindow()  # shortcuts go to the active window
    qtbot.waitUntil(w.isActiveWindow, timeout=5000)
    qtbot.keyClick(w, QtCore.Qt.Key.Key_Escape, QtCore.Qt.KeyboardModifier.ShiftModifier)  # no run
    qtbot.keyClick(w, QtCore.Qt.Key.Key_Space)
    qtbot.keyClick(w, QtCore.Qt.Key.Key_Left)
    w.tick()
    assert w.raw_panel.index == 1 and w.isVisible()


def test_view_command_screenshot(qtbot, saved_store, tmp_path):
    shot = tmp_path / "view.png"
    res = CliRunner().invoke(app, ["view", str(saved_store), "--frame", "3", "--screenshot", str(shot)])
    assert res.exit_code == 0, res.output
    arr = _qimage_array(shot)
    assert arr.shape[1] > 800 and arr.std() > 5


def test_view_command_rejects_a_non_store(tmp_path):
    res = CliRunner().invoke(app, ["view", str(tmp_path), "--screenshot", str(tmp_path / "x.png")])
    assert res.exit_code != 0
    assert "not a zarr v3 store" in str(res.exception)


def test_demo_renders_the_viewer_screenshot(qtbot, tmp_path, tiny_model_path):
    out, shot = tmp_path / "demo.ome.zarr", tmp_path / "demo.png"
    res = CliRunner().invoke(app, ["demo", "--frames", "20", "--out", str(out), "--model",
                                   str(tiny_model_path), "--engine", "torch", "--size", "64", "--fps",
                                   "50", "--screenshot", str(shot)])
    assert res.exit_code == 0, res.output
    arr = _qimage_array(shot)
    assert arr.shape[1] > 800 and arr.std() > 5
    r = open_store(out)
    assert r.closed_cleanly and 1 <= r.n_frames <= 20


def test_qt_platform_problem_is_found_before_qt_aborts(monkeypatch):
    import ctypes.util

    from live_pssr.viewer.app import qt_platform_problem

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert qt_platform_problem() is None  # offscreen needs no X libraries
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    real = ctypes.util.find_library
    monkeypatch.setattr(ctypes.util, "find_library", lambda n: None if n == "xcb-cursor" else real(n))
    problem = qt_platform_problem()
    assert problem is not None and "libxcb" in problem


def test_live_viewer_without_a_usable_platform_keeps_the_run_going(monkeypatch, tmp_path, tiny_model):
    from live_pssr.viewer import app as viewer_app

    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr(viewer_app, "_has_display", lambda: True)
    monkeypatch.setattr(viewer_app, "qt_platform_problem", lambda: "no X11 libraries (test)")
    pipeline = LivePipeline(Enhancer(tiny_model, engine="torch"), StoreSpec(tmp_path / "r.ome.zarr"))
    runner = SourceRunner(SimulatedSource(CONFIG), pipeline, 10).start()
    viewer_app.run_live_viewer(pipeline, runner)  # returns when the source is done, no window
    assert runner.done.is_set()
    summary = pipeline.stop()
    assert summary.frames_acquired == 10 and open_store(tmp_path / "r.ome.zarr").closed_cleanly


def test_qt_reference_guard_survives_many_signals(qapp):
    import sys

    from live_pssr.viewer import qt_refcount

    leaky = qt_refcount.binding_leaks_references()
    assert qt_refcount.guard() == (leaky and qt_refcount._can_patch())

    class Probe(QtCore.QObject):
        sig = QtCore.Signal()

    p = Probe()
    for _ in range(100_000):  # without the guard a leaky binding aborts the interpreter here
        p.sig.emit()
    assert sys.getrefcount(True) > 0 and sys.getrefcount(None) > 0


def test_view_of_a_store_being_written_follows_new_frames(qtbot, live):
    pipeline, runner = live
    qtbot.waitUntil(lambda: pipeline.store is not None and pipeline.store.n_committed >= 3, timeout=20000)
    w = ViewerWindow(store=pipeline.spec.path)
    qtbot.addWidget(w)
    w.show()
    n0 = w.browser.n_frames
    qtbot.waitUntil(lambda: w.time_slider.maximum() > n0 + 5, timeout=10000)
    assert w.status_labels["state"].text() == "review (recording)"
