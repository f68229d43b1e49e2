"""The napari plugin: reader, enhance widget and live widget, in a real napari.

Real parts: run stores written by the live pipeline and LiveSession on the simulated microscope,
napari's own ``make_napari_viewer`` (a Qt viewer with a vispy canvas) and ``ViewerModel``, the
plugin registered from its npe2 manifest (npe2's ``npe2pm`` fixture), the shipped model, a real
MMCore (pymmcore-plus UniMMCore) running an MDA for the live widget.

napari's canvas needs OpenGL: Qt's ``offscreen`` platform (the suite's default) has none, so the
canvas tests skip there with the reason; run them under a virtual X server::

    QT_QPA_PLATFORM=xcb xvfb-run -a .venv/bin/pytest tests/test_napari_plugin.py

The reader tests on ``ViewerModel`` need no canvas and run everywhere napari is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="napari not installed (the [napari] extra)")
pytest.importorskip("pytestqt", reason="pytest-qt not installed")

if os.environ.get("QT_QPA_PLATFORM", "").startswith("xcb") and not os.environ.get("DISPLAY"):
    pytest.skip("QT_QPA_PLATFORM=xcb without a DISPLAY: run under `xvfb-run -a`", allow_module_level=True)

import dask.array as da  # noqa: E402
import useq  # noqa: E402
import zarr  # noqa: E402

import live_pssr.napari_plugin as plugin_pkg  # noqa: E402
from live_pssr.enhancer import build_enhancer  # noqa: E402
from live_pssr.errors import StoreFormatError  # noqa: E402
from live_pssr.frames import Frame  # noqa: E402
from live_pssr.live import LiveSession  # noqa: E402
from live_pssr.napari_plugin import enhanced_translate, get_reader, prefer_for_run_stores, read_run  # noqa: E402
from live_pssr.napari_plugin._enhance_widget import EnhanceWidget  # noqa: E402
from live_pssr.napari_plugin._live_widget import LAYER_NAME, LiveWidget  # noqa: E402
from live_pssr.pipeline import LivePipeline, StoreSpec  # noqa: E402
from live_pssr.pipeline.checking import consistency_spec  # noqa: E402
from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope  # noqa: E402
from live_pssr.store import open_store  # noqa: E402

MANIFEST = Path(plugin_pkg.__file__).parent / "napari.yaml"
SIZE, PX, FRAMES, STEP_MS, U = 32, 0.16, 5, 50.0, 4


# ---------------------------------------------------------------- fixtures
def _gl_problem() -> str | None:
    """Why napari's canvas cannot work here (None when an OpenGL context can be made current)."""
    from qtpy.QtGui import QOffscreenSurface, QOpenGLContext
    from qtpy.QtWidgets import QApplication

    platform = QApplication.instance().platformName()
    how = "run `QT_QPA_PLATFORM=xcb xvfb-run -a pytest tests/test_napari_plugin.py`"
    ctx = QOpenGLContext()
    if not ctx.create():
        return f"napari needs OpenGL and Qt's {platform!r} platform has no OpenGL context here; {how}"
    surface = QOffscreenSurface()
    surface.setFormat(ctx.format())
    surface.create()
    try:
        if not ctx.makeCurrent(surface):
            return f"no OpenGL context can be made current on Qt's {platform!r} platform; {how}"
        version = ctx.functions().glGetString(0x1F02)  # GL_VERSION
        ctx.doneCurrent()
    finally:
        surface.destroy()
    return None if version else f"OpenGL reports no version on Qt's {platform!r} platform; {how}"


@pytest.fixture(scope="session")
def gl_reason(qapp) -> str | None:
    return _gl_problem()


@pytest.fixture(autouse=True)
def _own_settings(tmp_path, monkeypatch):
    """napari's settings in this test's folder (reader preferences never touch the user's)."""
    import napari.settings as ns

    monkeypatch.setattr(ns, "_SETTINGS", ns.NapariSettings(config_path=tmp_path / "napari-settings.yaml"))


@pytest.fixture
def plugin(npe2pm):
    """live-pssr registered from its manifest (npe2 discovery blocked: only what the test adds)."""
    with npe2pm.tmp_plugin(manifest=str(MANIFEST)):
        yield npe2pm


@pytest.fixture
def viewer(request, gl_reason, plugin):
    """A napari Viewer from napari's ``make_napari_viewer`` (set up only where OpenGL works)."""
    if gl_reason:
        pytest.skip(gl_reason)
    return request.getfixturevalue("make_napari_viewer")()


@pytest.fixture(params=["ViewerModel", "Viewer"])
def any_viewer(request, plugin):
    """napari's model (no canvas, runs everywhere) and its Qt viewer (needs OpenGL)."""
    if request.param == "ViewerModel":
        return napari.components.ViewerModel()
    return request.getfixturevalue("viewer")


@pytest.fixture(scope="module")
def scope() -> SimulatedMicroscope:
    return SimulatedMicroscope(MicroscopeConfig(height=SIZE, width=SIZE, laser_power=0.1, seed=3,
                                                n_networks=8))


@pytest.fixture(scope="module")
def enhancer():
    return build_enhancer("mito-sr4-fast", (SIZE, SIZE), "torch")


def make_run(path: Path, enhancer, scope, *, consistency: bool = False, times=None,
             frame_interval_s: float = 0.0) -> Path:
    """A run store written by the live pipeline (policy complete: every frame enhanced)."""
    spec = consistency_spec(True, camera=scope.camera) if consistency else None
    p = LivePipeline(enhancer, StoreSpec(path, pixel_size_um=PX, frame_interval_s=frame_interval_s),
                     policy="complete", consistency=spec, enhance_queue_size=FRAMES)
    p.start()
    for i in range(FRAMES):
        p.submit(Frame(i, scope.frame(i), i * STEP_MS if times is None else times[i]))
    p.stop()
    return path


@pytest.fixture(scope="module")
def run_store(tmp_path_factory, enhancer, scope) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "run.ome.zarr", enhancer, scope)


@pytest.fixture(scope="module")
def checked_store(tmp_path_factory, enhancer, scope) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "checked.ome.zarr", enhancer, scope, consistency=True)


def centres(layer, axis: int, idx: np.ndarray) -> np.ndarray:
    """World coordinates (on ``axis``) of the pixel centres / edges at data indices ``idx``."""
    out = []
    for i in idx:
        point = [0.0] * layer.ndim
        point[axis] = float(i)
        out.append(layer.data_to_world(point)[axis])
    return np.array(out)


# ---------------------------------------------------------------- reader
def test_reader_claims_only_live_pssr_stores(tmp_path, run_store):
    other = zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    other.create_array("0", shape=(2, 8, 8), dtype="uint16")
    (tmp_path / "frame.tif").write_bytes(b"II*\x00")
    assert get_reader(str(tmp_path / "other.zarr")) is None
    assert get_reader(str(run_store / "0")) is None  # one image inside a run: napari's builtin reads it
    assert get_reader(str(tmp_path / "frame.tif")) is None
    assert get_reader(str(tmp_path / "missing.zarr")) is None
    assert get_reader([str(run_store), str(tmp_path / "other.zarr")]) is None
    assert get_reader(str(run_store)) is read_run and get_reader([str(run_store)]) is read_run


def test_preferred_reader_setting_picks_live_pssr_over_naparis_builtin(plugin, tmp_path, run_store):
    """What File > Open / drag and drop do (``plugin=None``): without a preference napari asks."""
    from napari.errors import MultipleReaderError, ReaderPluginError
    from napari.plugins import _npe2
    from npe2 import PluginManifest

    plugin.register(PluginManifest.from_distribution("napari"))
    assert set(_npe2.get_readers(str(run_store))) == {"napari", "live-pssr"}
    model = napari.components.ViewerModel()
    with pytest.raises(MultipleReaderError):
        model.open(str(run_store), plugin=None)  # the GUI shows its reader chooser here
    prefer_for_run_stores()
    assert napari.settings.get_settings().plugins.extension2reader == {"*.ome.zarr/": "live-pssr"}
    model.open(str(run_store), plugin=None)
    assert [layer.name for layer in model.layers] == ["raw", "enhanced"]
    # another OME-Zarr folder: live-pssr declines it (the GUI then offers the other readers)
    other = zarr.open_group(str(tmp_path / "other.ome.zarr"), mode="w")
    other.create_array("0", shape=(8, 8), dtype="uint16")
    with pytest.raises(ReaderPluginError, match="live-pssr"):
        model.open(str(tmp_path / "other.ome.zarr"), plugin=None)
    # a preference for the folder where runs are written leaves every other folder to napari
    napari.settings.get_settings().plugins.extension2reader = {}
    prefer_for_run_stores(f"{run_store.parent}{os.sep}*")
    model.layers.clear()
    model.open(str(run_store), plugin=None)
    assert [layer.name for layer in model.layers] == ["raw", "enhanced"]
    with pytest.raises(MultipleReaderError):
        model.open(str(tmp_path / "other.ome.zarr"), plugin=None)


def test_run_store_layers_overlay_exactly(any_viewer, run_store):
    layers = any_viewer.open(str(run_store), plugin="live-pssr")
    assert [layer.name for layer in layers] == ["raw", "enhanced"] and len(any_viewer.layers) == 2
    raw, enh = layers
    dt = STEP_MS / 1e3  # the store's NGFF time scale is 1 s (no interval given): the records win
    np.testing.assert_allclose(raw.scale, [dt, PX, PX])
    np.testing.assert_allclose(enh.scale, [dt, PX / U, PX / U])
    np.testing.assert_allclose(raw.translate, [0, 0, 0])
    shift = -(PX / 2) * (1 - 1 / U)
    np.testing.assert_allclose(enh.translate, [0, shift, shift])
    assert raw.axis_labels == ("t", "y", "x") and str(raw.units[0]) == "second"
    for axis in (1, 2):
        i = np.arange(SIZE)
        # the u x u enhanced pixels of raw pixel i: their centres average to its centre ...
        block = centres(enh, axis, (U * i[:, None] + np.arange(U)).ravel()).reshape(SIZE, U)
        np.testing.assert_allclose(block.mean(axis=1), centres(raw, axis, i), atol=1e-12)
        # ... and their outer edges are its edges
        np.testing.assert_allclose(centres(enh, axis, U * i - 0.5), centres(raw, axis, i - 0.5), atol=1e-12)
        np.testing.assert_allclose(centres(enh, axis, U * i + U - 0.5), centres(raw, axis, i + 0.5),
                                   atol=1e-12)
    np.testing.assert_allclose(centres(raw, 0, np.arange(FRAMES)), np.arange(FRAMES) * dt)
    np.testing.assert_allclose(centres(enh, 0, np.arange(FRAMES)), np.arange(FRAMES) * dt)
    # lazy, and the store's own frames
    reader = open_store(run_store)
    assert isinstance(raw.data, da.Array) and isinstance(enh.data, da.Array)
    assert raw.data.shape == (FRAMES, SIZE, SIZE) and enh.data.shape == (FRAMES, SIZE * U, SIZE * U)
    np.testing.assert_array_equal(np.asarray(raw.data[3]), reader.raw_frame(3))
    np.testing.assert_array_equal(np.asarray(enh.data[3]), reader.enhanced_frame(3))
    # contrast from the data: inside the frame's range, far from uint16's
    for layer, frame in ((raw, reader.raw_frame(FRAMES - 1)), (enh, reader.enhanced_frame(FRAMES - 1))):
        lo, hi = layer.contrast_limits
        assert frame.min() <= lo < hi <= frame.max() < 65535


def test_time_scale_falls_back_to_the_stores_interval_without_camera_times(tmp_path, plugin, enhancer, scope):
    path = make_run(tmp_path / "no-times.ome.zarr", enhancer, scope, times=[np.nan] * FRAMES,
                    frame_interval_s=0.2)
    model = napari.components.ViewerModel()
    raw, enh = model.open(str(path), plugin="live-pssr")
    assert raw.scale[0] == pytest.approx(0.2) and enh.scale[0] == pytest.approx(0.2)


def test_consistency_map_is_a_third_diverging_layer(any_viewer, checked_store):
    layers = any_viewer.open(str(checked_store), plugin="live-pssr")
    assert [layer.name for layer in layers] == ["raw", "enhanced", "consistency"]
    raw, _, cons = layers
    reader = open_store(checked_store)
    assert cons.data.shape == raw.data.shape and cons.data.dtype == np.float32
    np.testing.assert_allclose(cons.scale, raw.scale)
    np.testing.assert_allclose(cons.translate, raw.translate)
    stored = zarr.open_array(str(checked_store / "2" / "0"), mode="r")
    np.testing.assert_array_equal(np.asarray(cons.data[2]), np.asarray(stored[2, 0], np.float32))
    lo, hi = cons.contrast_limits
    assert lo == -hi and 0 < hi <= float(np.nanmax(np.abs(np.asarray(cons.data))))
    assert cons.opacity == 0.5 and cons.blending == "translucent"
    rgba = cons.colormap.map(np.array([0.0, 0.5, 1.0]))
    assert rgba[1, 3] == 0 and rgba[0, 3] == 1 and rgba[2, 3] == 1  # 0 is see-through, +-limit opaque
    assert rgba[0, 2] > rgba[0, 0] and rgba[2, 0] > rgba[2, 2]  # negative blue, positive red
    assert reader.n_frames == FRAMES


def test_series_root_opens_every_stream_named(tmp_path, plugin):
    from .test_session import frame, pm_metadata

    session = LiveSession(store=tmp_path / "zs.ome.zarr", enhance=False)
    for t in range(3):
        for z in (0, 1):
            session.pycromanager_hook(frame(10 * t + z), pm_metadata(t, z=z))
    session.close()
    model = napari.components.ViewerModel()
    layers = model.open(str(tmp_path / "zs.ome.zarr"), plugin="live-pssr")
    assert [layer.name for layer in layers] == ["raw z-0", "enhanced z-0", "raw z-1", "enhanced z-1"]
    raw0 = layers[0]
    assert raw0.data.shape == (3, 32, 32)
    np.testing.assert_array_equal(np.asarray(layers[2].data[1]), frame(11))
    # one stream of the series opens alone, with plain names
    assert [ly[1]["name"] for ly in read_run(str(tmp_path / "zs.ome.zarr" / "z-1"))] == ["raw", "enhanced"]


def test_a_store_without_frames_is_a_clear_error(tmp_path):
    from live_pssr.store.series import write_series_index

    write_series_index(tmp_path / "empty.ome.zarr", [], {}, "recording")
    assert get_reader(str(tmp_path / "empty.ome.zarr")) is read_run
    with pytest.raises(StoreFormatError) as err:
        read_run(str(tmp_path / "empty.ome.zarr"))
    assert "no stream written yet" in err.value.message and err.value.hint


# ---------------------------------------------------------------- enhance widget
def _finish(qtbot, widget) -> None:
    """Process Qt events until the widget's worker has finished (its ``finished`` slot ran)."""
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)


def test_enhance_widget_adds_an_exactly_overlaid_layer(viewer, qtbot, run_store):
    raw, stored = viewer.open(str(run_store), plugin="live-pssr")
    widget = EnhanceWidget(viewer)
    assert widget.layer_box.findText("raw") >= 0 and widget.model_box.currentText() == "mito-sr4-fast"
    widget.layer_box.setCurrentText("raw")
    widget.engine_box.setCurrentText("torch")
    widget.run_button.click()
    worker = widget.worker
    assert worker is not None and not widget.run_button.isEnabled()
    _finish(qtbot, widget)
    out = widget.result_layer
    assert out.name == "raw enhanced" and len(viewer.layers) == 3
    np.testing.assert_allclose(out.scale, stored.scale)
    np.testing.assert_allclose(out.translate, stored.translate)
    assert widget.progress.value() == FRAMES and widget.run_button.isEnabled()
    expect = build_enhancer("mito-sr4-fast", (SIZE, SIZE), "torch")
    reader = open_store(run_store)
    for t in range(FRAMES):
        np.testing.assert_array_equal(out.data[t], expect.enhance(reader.raw_frame(t)))
    assert out.metadata["live_pssr"]["engine"] == "torch:cpu:fp32"


def test_enhance_widget_frame_on_screen_only(viewer, qtbot, run_store):
    raw, stored = viewer.open(str(run_store), plugin="live-pssr")
    viewer.dims.set_current_step(0, 3)
    widget = EnhanceWidget(viewer)
    widget.layer_box.setCurrentText("raw")
    widget.engine_box.setCurrentText("torch")
    widget.shown_only.setChecked(True)
    widget.run()
    _finish(qtbot, widget)
    out = widget.result_layer
    assert out.name == "raw enhanced [3]" and out.data.shape == (SIZE * U, SIZE * U)
    np.testing.assert_allclose(out.scale, stored.scale[1:])
    np.testing.assert_allclose(out.translate, stored.translate[1:])
    expect = build_enhancer("mito-sr4-fast", (SIZE, SIZE), "torch")
    np.testing.assert_array_equal(out.data, expect.enhance(open_store(run_store).raw_frame(3)))


def test_enhance_widget_cancel_adds_nothing(viewer, qtbot, scope):
    viewer.add_image(np.stack([scope.frame(i) for i in range(64)]), name="stack", scale=(1, PX, PX))
    widget = EnhanceWidget(viewer)
    widget.engine_box.setCurrentText("torch")
    worker = widget.run()
    aborted = []
    worker.aborted.connect(lambda: aborted.append(True))
    widget.cancel_button.click()  # before the model is even loaded: stops at the first frame
    _finish(qtbot, widget)
    assert aborted == [True] and widget.result_layer is None and len(viewer.layers) == 1
    assert "cancelled" in widget.status.text() and "nothing added" in widget.status.text()


def test_enhance_widget_shows_a_failure(viewer, qtbot, scope):
    viewer.add_image(scope.frame(0), name="one")
    widget = EnhanceWidget(viewer)
    widget.model_box.setCurrentText("no-such-model")
    assert widget.run() is not None
    _finish(qtbot, widget)
    assert "no-such-model" in widget.status.text() and "fix:" in widget.status.text()
    assert widget.result_layer is None and len(viewer.layers) == 1 and widget.run_button.isEnabled()


def test_enhance_widget_refuses_rgb(viewer, scope):
    viewer.add_image(np.zeros((8, 8, 3), np.uint8), name="rgb", rgb=True)
    widget = EnhanceWidget(viewer)
    widget.layer_box.setCurrentText("rgb")
    assert widget.run() is None and "RGB" in widget.status.text() and "fix:" in widget.status.text()


# ---------------------------------------------------------------- live widget
def test_live_widget_shows_the_enhanced_stream_of_a_real_mda(viewer, qtbot, tmp_path, monkeypatch):
    from live_pssr.mm.core import simulated_core

    monkeypatch.setenv("PYMM_SIGNALS_BACKEND", "qt")  # as napari-micromanager's core: Qt signals
    core = simulated_core(MicroscopeConfig(height=SIZE, width=SIZE, pixel_size_um=PX, seed=4),
                          exposure_ms=5.0, timing="fast")
    widget = LiveWidget(viewer, core=core)
    widget.engine_box.setCurrentText("torch")
    widget.policy_box.setCurrentText("complete")
    widget.store_edit.setText(str(tmp_path / "live.ome.zarr"))
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget.session is not None, timeout=120_000)
    assert widget.timer.isActive() and not widget.start_button.isEnabled()
    core.run_mda(useq.MDASequence(time_plan={"interval": 0.05, "loops": 8}))
    qtbot.waitUntil(lambda: widget.summary is not None, timeout=120_000)
    reader = open_store(tmp_path / "live.ome.zarr")
    assert reader.n_frames == 8 and reader.status_counts()["pending"] == 0
    layer = viewer.layers[LAYER_NAME]
    shift = enhanced_translate(PX, U)
    np.testing.assert_allclose(layer.scale, [PX / U, PX / U])
    np.testing.assert_allclose(layer.translate, [shift, shift])
    assert widget.frames_shown >= 1 and widget.shown_index is not None
    np.testing.assert_array_equal(layer.data, reader.enhanced_frame(widget.shown_index))
    assert "8" in widget.status.text() and widget.start_button.isEnabled() and not widget.timer.isActive()
