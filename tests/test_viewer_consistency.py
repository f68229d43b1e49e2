"""The viewer's consistency overlay, status warning and review of stored maps (offscreen Qt, real parts).

Frames come from the simulator, enhanced by the shipped default model; their maps are real
:func:`~live_pssr.consistency.check_consistency` results (a planted tube makes a flagged frame).
Runs are real pipelines over the simulated camera writing real stores.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")

from qtpy import QtCore, QtGui  # noqa: E402

from live_pssr.consistency import check_consistency  # noqa: E402
from live_pssr.enhancer import build_enhancer  # noqa: E402
from live_pssr.live.runners import SourceRunner  # noqa: E402
from live_pssr.pipeline import DisplayFrame, LivePipeline, StoreSpec  # noqa: E402
from live_pssr.pipeline.checking import ConsistencySpec  # noqa: E402
from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope  # noqa: E402
from live_pssr.sources import SimulatedSource  # noqa: E402
from live_pssr.store import open_store  # noqa: E402
from live_pssr.viewer.contrast import DIVERGING, signed_limit, signed_rgba  # noqa: E402
from live_pssr.viewer.snapshot import blend_over  # noqa: E402
from live_pssr.viewer.status import CONSISTENCY_STYLES, consistency_status  # noqa: E402
from live_pssr.viewer.window import ViewerWindow  # noqa: E402

SIZE = 64
UP = 4
CONFIG = MicroscopeConfig(height=SIZE, width=SIZE, laser_power=0.1, seed=7, n_networks=40, fps=50)


@pytest.fixture(scope="module")
def mic() -> SimulatedMicroscope:
    return SimulatedMicroscope(CONFIG)


@pytest.fixture(scope="module")
def enhancer():
    return build_enhancer("mito-sr4-fast", (SIZE, SIZE), "torch")


def _tube_where_raw_is_dark(out: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """A bright horizontal tube (Gaussian profile, 40 enhanced px long) over the darkest 16² block."""
    blocks = out.reshape(out.shape[0] // 16, 16, out.shape[1] // 16, 16).mean((1, 3))
    by, bx = np.unravel_index(int(np.argmin(blocks)), blocks.shape)
    cy, cx = int(by) * 16 + 8, int(bx) * 16 + 8
    yy, xx = np.mgrid[: out.shape[0], : out.shape[1]]
    amp = float(np.percentile(out, 99.5) - np.median(out))
    return (amp * np.exp(-((yy - cy) ** 2) / 8.0) * (np.abs(xx - cx) < 20)).astype(np.float32), (cy, cx)


@pytest.fixture(scope="module")
def frames(mic, enhancer):
    """Frame 0 as the model made it (consistent) and frame 1 with a planted tube (flagged)."""
    out = []
    for t in (0, 1):
        raw = mic.frame(t)
        enh = enhancer.enhance(raw).astype(np.float32)
        where = None
        if t == 1:
            tube, where = _tube_where_raw_is_dark(enh)
            enh = enh + tube
        r = check_consistency(raw, enh, UP, camera=mic.camera, model=enhancer.model)
        out.append((raw, enh, r, where))
    assert not out[0][2].flagged and out[1][2].flagged  # the premise of the tests below
    return out


def _display(seq: int, index: int, raw, enh, result, with_map: bool = True) -> DisplayFrame:
    """The DisplayFrame the pipeline makes for an enhanced frame and its check."""
    return DisplayFrame(seq, index, raw, index, enh, raw,
                        consistency=result.signed_map if with_map else None,
                        score=result.score if with_map else None,
                        flagged=result.flagged if with_map else None,
                        threshold=result.threshold if with_map else None)


@pytest.fixture
def window(qtbot, tmp_path, enhancer, mic):
    """A live window on a real pipeline with the check on; frames are handed to it one by one."""
    pipeline = LivePipeline(enhancer, StoreSpec(tmp_path / "run.ome.zarr"),
                            consistency=ConsistencySpec(camera=mic.camera))
    w = ViewerWindow(pipeline=pipeline)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()
    pipeline.stop()


def _item_rgba(item) -> np.ndarray:
    """What pyqtgraph rendered for an image item, (h, w, 4) uint8 RGBA."""
    item.render()
    img = item.qimage.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    return np.frombuffer(img.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)[:, : 4 * w] \
        .reshape(h, w, 4).copy()


def _grab(widget) -> np.ndarray:
    img = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    return np.frombuffer(img.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)[:, : 3 * w] \
        .reshape(h, w, 3).copy()


def _view_pixels(panel, rect: QtCore.QRectF) -> np.ndarray:
    """The screen pixels of ``panel``'s view that show ``rect`` (view units: enhanced pixels)."""
    shot = _grab(panel.graphics)
    scene = panel.view.mapViewToScene(rect).boundingRect()
    at = panel.graphics.mapFromScene(scene.topLeft()), panel.graphics.mapFromScene(scene.bottomRight())
    ratio = panel.graphics.devicePixelRatioF() or 1.0
    (x0, y0), (x1, y1) = ((int(p.x() * ratio), int(p.y() * ratio)) for p in at)
    return shot[max(y0, 0): y1, max(x0, 0): x1]


# ------------------------------------------------------------------ colours and text (no window)
def test_signed_lut_is_diverging_centred_at_zero_and_symmetric():
    limit = 5.0
    ramp = np.linspace(-2 * limit, 2 * limit, 81, dtype=np.float32)[None, :]
    rgba = signed_rgba(np.concatenate([ramp, [[np.nan] * 81]]).astype(np.float32), limit).astype(int)
    row = rgba[0]
    centre = 40  # value 0
    assert row[centre, 3] <= 2  # 0 = consistent: the image below shows unchanged
    assert (row[:centre, 3] == row[:centre:-1, 3]).all()  # opacity symmetric in the sign
    np.testing.assert_array_equal(row[:21], np.repeat(row[20:21], 21, 0))  # clipped at -limit
    np.testing.assert_array_equal(row[60:], np.repeat(row[60:61], 21, 0))  # and at +limit
    assert row[60, 3] > 200 and row[60, 0] > 150 > row[60, 2]  # +limit: red (added)
    assert row[20, 3] > 200 and row[20, 2] > 150 > row[20, 0]  # -limit: blue (removed)
    assert np.all(np.diff(row[40:61, 3]) >= 0)  # opacity grows with |value|
    assert (rgba[1, :, 3] == 0).all()  # NaN (not checked): transparent
    assert DIVERGING.startswith("CET-D")
    m = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    assert signed_limit(m, 5.3) == 5.3  # the flag threshold when known
    assert signed_limit(m, None) == 3.0  # noise alone: the floor
    m[10:20, 10:20] = -9.0
    assert signed_limit(m, None) == pytest.approx(9.0)  # else the robust maximum of |map|
    with pytest.raises(ValueError, match="limit"):
        signed_rgba(m, 0.0)


def test_consistency_status_text_and_levels():
    off = consistency_status(0, 0, enabled=False)
    assert off.level == "off" and off.text == "consistency off" and "consistency check on" in off.tip
    ok = consistency_status(40, 0, frame=12, frame_score=0.9512, frame_flagged=False, last_score=0.93)
    assert ok.level == "ok"
    assert ok.text == "consistency 0 of 40 flagged | #12 score 0.951 | last 0.930"
    warn = consistency_status(40, 3, frame=12, frame_score=0.95, frame_flagged=False)
    assert warn.level == "warn" and warn.text.startswith("\u26a0 3 of 40 flagged")
    bad = consistency_status(40, 3, frame=13, frame_score=0.71, frame_flagged=True, frame_max=8.1,
                             threshold=5.8)
    assert bad.level == "flagged" and bad.text.startswith("\u26a0 FLAGGED #13: score 0.710, max 8.1")
    assert "5.8" in bad.text and "3 of 40" in bad.text
    assert consistency_status(5, 0, frame=2, frame_score=None).text.endswith("#2 not checked")
    assert CONSISTENCY_STYLES["flagged"] != CONSISTENCY_STYLES["ok"] != CONSISTENCY_STYLES["warn"]


# ------------------------------------------------------------------ live window, frames handed in
def test_overlay_shows_the_signed_map_over_the_enhanced_panel_at_the_raw_field(qtbot, window, frames):
    w = window
    raw, enh, r, (cy, cx) = frames[1]
    w.show_frame(_display(1, 1, raw, enh, r))
    w.tick()
    assert w.cons_box.isEnabled() and not w.consistency.shown  # the mode starts off
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=5000)
    qtbot.keyClick(w, QtCore.Qt.Key.Key_C)
    assert w.consistency_on and w.cons_box.isChecked() and w.consistency.shown
    assert "consistency" in w.enh_panel.title_label.text()
    # the map lies exactly on the raw panel's field: raw pixel (i, j) covers enhanced [4i, 4i+4)
    field = w.consistency.field()
    raw_field = w.raw_panel.item.mapRectToParent(w.raw_panel.item.boundingRect())
    assert (field.x(), field.y(), field.width(), field.height()) == (0, 0, SIZE * UP, SIZE * UP)
    assert field == raw_field
    # drawn with the symmetric limits of the flag threshold, as the LUT says, pixel for pixel
    assert w.consistency.limit == pytest.approx(r.threshold)
    drawn = _item_rgba(w.consistency.item)
    np.testing.assert_array_equal(drawn, signed_rgba(r.signed_map, r.threshold))
    assert drawn[..., 3].max() > 200 and (drawn[..., 3] < 40).mean() > 0.5  # mostly see-through
    # on screen: the planted tube turns red over the enhanced image; elsewhere the image shows
    tube = QtCore.QRectF(cx - 12, cy - 2, 24, 4)
    w.fit()
    w.tick()
    on = _view_pixels(w.enh_panel, tube).astype(int)
    qtbot.keyClick(w, QtCore.Qt.Key.Key_C)
    assert not w.consistency_on and not w.consistency.shown
    off = _view_pixels(w.enh_panel, tube).astype(int)
    assert off.size and on.shape == off.shape
    assert (on[..., 0] - on[..., 2]).mean() > 60 and abs((off[..., 0] - off[..., 2]).mean()) < 5
    # the cursor readout names the map's value under the mouse
    qtbot.keyClick(w, QtCore.Qt.Key.Key_C)
    py, px = r.peak
    pos = w.enh_panel.view.mapViewToScene(QtCore.QPointF(px * UP + 2, py * UP + 2))
    w._cursor(w.enh_panel, pos)
    assert f"consistency {r.signed_map[py, px]:+.1f}" in w.status_labels["cursor"].text()


def test_a_flagged_frame_turns_the_status_bar_red(qtbot, window, frames):
    w = window
    label = w.status_labels["consistency"]
    raw, enh, r, _ = frames[0]
    w.show_frame(_display(1, 0, raw, enh, r))
    qtbot.waitUntil(lambda: "#0 score" in label.text(), timeout=5000)
    assert w.consistency_state.level == "ok" and label.styleSheet() == ""
    assert f"#0 score {r.score:.3f}" in label.text() and not w.enh_panel.note_label.isVisible()
    calm = _grab(label).astype(int)
    raw, enh, r, _ = frames[1]
    w.show_frame(_display(2, 1, raw, enh, r))
    qtbot.waitUntil(lambda: "FLAGGED" in label.text(), timeout=5000)
    assert w.consistency_state.level == "flagged" and label.styleSheet() == CONSISTENCY_STYLES["flagged"]
    assert label.text().startswith(f"\u26a0 FLAGGED #1: score {r.score:.3f}, max {r.error_map.max():.1f}")
    assert f"> {r.threshold:.1f}" in label.text()
    red = _grab(label).astype(int)
    assert (red[..., 0] - red[..., 2]).mean() > 80 and abs((calm[..., 0] - calm[..., 2]).mean()) < 10
    note = w.enh_panel.note_label
    assert note.isVisible() and "FLAGGED" in note.text() and "#1" in note.text()
    # the next consistent frame clears the warning
    raw, enh, r, _ = frames[0]
    w.show_frame(_display(3, 2, raw, enh, r))
    qtbot.waitUntil(lambda: "#2 score" in label.text(), timeout=5000)
    assert w.consistency_state.level == "ok" and not note.isVisible()


def test_a_frame_without_a_map_shows_none(qtbot, window, frames):
    """Checked every Nth frame: an unchecked frame shows no map, never the previous frame's."""
    w = window
    w.set_consistency(True)
    raw, enh, r, _ = frames[1]
    w.show_frame(_display(1, 4, raw, enh, r))
    assert w.consistency.shown and w.consistency.index == 4
    raw, enh, r, _ = frames[0]
    w.show_frame(_display(2, 5, raw, enh, r, with_map=False))
    assert w.consistency_on and not w.consistency.shown and w.consistency.map is None
    assert w.enh_panel.note_label.text() == "#5 not checked: no map"
    qtbot.waitUntil(lambda: "#5 not checked" in w.status_labels["consistency"].text(), timeout=5000)


def test_snapshot_blends_the_overlay_into_the_enhanced_half(window, frames, tmp_path):
    w = window
    raw, enh, r, _ = frames[1]
    w.show_frame(_display(1, 1, raw, enh, r))
    plain = _read_png(w.snapshot(tmp_path / "plain.png"))
    w.set_consistency(True)
    over = _read_png(w.snapshot(tmp_path / "over.png"))
    half = SIZE * UP
    np.testing.assert_array_equal(over[:, :half], plain[:, :half])  # the raw half is untouched
    expect = blend_over(plain[:, -half:], signed_rgba(r.signed_map, r.threshold), UP)
    np.testing.assert_array_equal(over[:, -half:], expect)
    assert not np.array_equal(over[:, -half:], plain[:, -half:])


def _read_png(path) -> np.ndarray:
    img = QtGui.QImage(str(path)).convertToFormat(QtGui.QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    return np.frombuffer(img.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)[:, : 3 * w] \
        .reshape(h, w, 3).copy()


# ------------------------------------------------------------------ a real live run with the check on
def test_live_run_overlays_the_map_of_the_shown_frame_and_counts_checks(qtbot, tmp_path, enhancer, mic):
    pipeline = LivePipeline(enhancer, StoreSpec(tmp_path / "live.ome.zarr"),
                            consistency=ConsistencySpec(camera=mic.camera))
    runner = SourceRunner(SimulatedSource(CONFIG), pipeline, None).start()
    w = ViewerWindow(pipeline=pipeline, runner=runner)
    qtbot.addWidget(w)
    try:
        w.show()
        assert w.cons_box.isEnabled()  # the run checks frames: the mode is there from the start
        w.set_consistency(True)
        qtbot.waitUntil(lambda: w.consistency.shown and pipeline.stats().frames_checked >= 3, timeout=30000)
        runner.stop()  # the run ends (every frame enhanced and checked, store closed): nothing moves now
        assert runner.done.wait(10)
        pipeline.stop()
        w.tick()
        d = pipeline.latest()
        # the overlay is the pipeline's map of the enhanced frame on screen, and that map is what
        # the check says about that frame and the raw frame it came from
        assert w.enh_panel.image is d.enhanced and w.consistency.map is d.consistency
        assert w.consistency.index == d.enhanced_index == w.enh_panel.index
        again = check_consistency(d.enhanced_raw, d.enhanced, UP, camera=mic.camera, model=enhancer.model)
        np.testing.assert_allclose(w.consistency.map, again.signed_map, atol=1e-4)
        np.testing.assert_array_equal(_item_rgba(w.consistency.item), signed_rgba(d.consistency, d.threshold))
        st = pipeline.stats()
        label = w.status_labels["consistency"]
        qtbot.waitUntil(lambda: f"{st.frames_flagged} of {st.frames_checked} flagged" in label.text()
                        and f"#{d.enhanced_index}" in label.text(), timeout=5000)
        text = label.text()
        assert st.frames_checked >= 3
        if d.flagged:  # the shown frame: the warning state, whatever the others were
            assert text.startswith(f"\u26a0 FLAGGED #{d.enhanced_index}: score {d.score:.3f}")
            assert w.consistency_state.level == "flagged" and "FLAGGED" in w.enh_panel.note_label.text()
        else:
            assert f"#{d.enhanced_index} score {d.score:.3f}" in text and f"last {st.last_score:.3f}" in text
            assert w.consistency_state.level == ("warn" if st.frames_flagged else "ok")
    finally:
        runner.stop()
        runner.done.wait(10)
        w.close()
        pipeline.stop(finish_backlog=False)


# ------------------------------------------------------------------ review of stored runs
@pytest.fixture(scope="module")
def checked_store(tmp_path_factory, enhancer, mic):
    """A real run (simulated camera, shipped model) checking every 2nd frame, stored and closed."""
    path = tmp_path_factory.mktemp("runs") / "checked.ome.zarr"
    pipeline = LivePipeline(enhancer, StoreSpec(path), policy="complete",
                            consistency=ConsistencySpec(every=2, camera=mic.camera))
    runner = SourceRunner(SimulatedSource(CONFIG), pipeline, 8, paced=False).start()
    assert runner.done.wait(60)
    pipeline.stop()
    return path


def test_review_shows_the_stored_map_of_each_checked_frame(qtbot, checked_store):
    r = open_store(checked_store)
    checked = np.flatnonzero(np.isfinite(r.records["consistency"]))
    assert checked.tolist() == [0, 2, 4, 6]
    w = ViewerWindow(store=checked_store)
    qtbot.addWidget(w)
    w.show()
    assert w.cons_box.isEnabled() and "unavailable" not in w.cons_box.toolTip()
    w.review(2)
    w.tick()
    w.set_consistency(True)
    stored = r.consistency_frame(2)
    assert w.consistency.shown and w.consistency.index == 2
    np.testing.assert_array_equal(w.consistency.map, stored)
    assert w.consistency.field() == w.raw_panel.item.mapRectToParent(w.raw_panel.item.boundingRect())
    limit = signed_limit(stored, r.run["consistency"].get("threshold"))  # the flag level, where stored
    assert w.consistency.limit == pytest.approx(limit)
    np.testing.assert_array_equal(_item_rgba(w.consistency.item), signed_rgba(stored, limit))
    label = w.status_labels["consistency"]
    assert label.text() == (f"consistency 0 of 4 flagged | #2 score "
                            f"{r.records['consistency'][2]:.3f}")
    assert f"consistency {r.records['consistency'][2]:.3f}" in w.record_label.text()
    w.review(3)  # not checked: no map (NaN on disk), never frame 2's
    w.tick()
    assert w.consistency_on and not w.consistency.shown and w.consistency.map is None
    assert "#3 not checked" in label.text() and w.enh_panel.note_label.text() == "#3 not checked: no map"


@pytest.fixture
def flagged_store(tmp_path, frames):
    """A store written by the run store's own writer: frame 0 consistent, frame 1 flagged (planted tube)."""
    from live_pssr.frames import Frame
    from live_pssr.store import FrameStatus
    from live_pssr.store.writer import RunStore

    path = tmp_path / "flagged.ome.zarr"
    threshold = frames[1][2].threshold
    store = RunStore.create(path, (SIZE, SIZE), np.uint16, UP,
                            consistency={"every": 1, "threshold": threshold})
    for i, (raw, enh, result, _) in enumerate(frames):
        store.append_raw(Frame(i, raw, 20.0 * i))
        store.write_enhanced(i, np.clip(enh, 0, 65535).astype(np.uint16), FrameStatus.LIVE)
        store.write_consistency(i, result)
    store.close()
    return path


def test_review_of_a_flagged_frame_warns_and_counts(qtbot, flagged_store, frames):
    w = ViewerWindow(store=flagged_store)
    qtbot.addWidget(w)
    w.show()
    label = w.status_labels["consistency"]
    w.review(0)
    w.tick()
    assert w.consistency_state.level == "warn"  # this frame is fine, but the run has a flagged one
    assert label.text().startswith("\u26a0 1 of 2 flagged | #0 score")
    w.review(1)
    w.tick()
    r = frames[1][2]
    assert w.consistency_state.level == "flagged" and label.styleSheet() == CONSISTENCY_STYLES["flagged"]
    assert label.text().startswith(f"\u26a0 FLAGGED #1: score {r.score:.3f}")
    assert "FLAGGED" in w.record_label.text() and "FLAGGED" in w.enh_panel.note_label.text()
    w.set_consistency(True)
    np.testing.assert_allclose(w.consistency.map, r.signed_map, atol=0.02 * np.abs(r.signed_map).max())
    assert w.consistency.limit == pytest.approx(r.threshold)  # the stored flag level
    assert f"max {r.error_map.max():.1f}\u03c3 > {r.threshold:.1f}\u03c3" in label.text()


def test_review_of_a_run_without_maps_disables_the_mode_and_says_why(qtbot, tmp_path, enhancer):
    path = tmp_path / "plain.ome.zarr"
    pipeline = LivePipeline(enhancer, StoreSpec(path), policy="complete")  # the check off
    runner = SourceRunner(SimulatedSource(CONFIG), pipeline, 3, paced=False).start()
    assert runner.done.wait(60)
    pipeline.stop()
    w = ViewerWindow(store=path)
    qtbot.addWidget(w)
    w.show()
    w.review(1)
    w.tick()
    assert not w.cons_box.isEnabled()
    assert "no consistency map" in w.cons_box.toolTip() and "without the data-consistency check" in \
        w.cons_box.toolTip()
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=5000)
    qtbot.keyClick(w, QtCore.Qt.Key.Key_C)  # the shortcut only says why
    assert not w.consistency_on and not w.consistency.shown
    assert "consistency overlay unavailable" in w.statusBar().currentMessage()
    assert w.status_labels["consistency"].text() == "consistency off"
    assert w.consistency_state.level == "off" and w.raw_panel.index == 1  # review itself goes on


def test_live_run_without_the_check_disables_the_mode(qtbot, tmp_path, enhancer):
    pipeline = LivePipeline(enhancer, StoreSpec(tmp_path / "off.ome.zarr"))
    w = ViewerWindow(pipeline=pipeline)
    qtbot.addWidget(w)
    try:
        assert not w.cons_box.isEnabled() and "does not check its frames" in w.cons_box.toolTip()
        w.set_consistency(True)
        assert not w.consistency_on
    finally:
        w.close()
        pipeline.stop()


def test_review_entry_point_screenshots_with_the_overlay(qtbot, checked_store, tmp_path):
    """``run_review_viewer(consistency=True)`` (what ``live-pssr view`` calls) draws the map; a
    store without maps opens without it, no error."""
    from live_pssr.viewer import run_review_viewer

    with_map, plain = tmp_path / "with.png", tmp_path / "plain.png"
    run_review_viewer(checked_store, frame=2, screenshot=with_map, consistency=True)
    run_review_viewer(checked_store, frame=2, screenshot=plain)
    a, b = _read_png(with_map).astype(int), _read_png(plain).astype(int)
    assert a.shape == b.shape and a.shape[1] > 800
    a, b = a[60:-120], b[60:-120]  # the image views (not the toolbar, headers, histograms, status)
    changed = np.abs(a - b).sum(axis=2) > 30
    cols = np.flatnonzero(changed.any(axis=0))
    assert changed.sum() > 1000 and cols.min() > a.shape[1] // 3  # only the enhanced view changed
    # red or blue where the map is strong; no frame of this run is flagged, so its map stays below
    # the flag threshold (the stored full-colour level) and tints, not saturates
    tinted = changed & ((a[..., 0] - a[..., 2] > 20) | (a[..., 2] - a[..., 0] > 20))
    assert tinted.sum() > 500
