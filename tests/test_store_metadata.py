"""The run store's metadata read by the real clients: ome-types (schema), yaozarrs, zarr-python.

Stores are made by the real pipeline (:class:`LivePipeline`, the shipped ``mito-sr4-fast`` model on
the simulated microscope, 64 x 64 frames), with and without the consistency map. Their camera
times are 20 ms apart with one late frame (the median differs from the mean), while the nominal
``frame_interval_s`` is 0 (an interval-0 MDA) or 0.05 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaozarrs
import zarr
from ome_types import from_xml, to_xml
from yaozarrs import v05

from live_pssr.enhancer import build_enhancer
from live_pssr.frames import Frame
from live_pssr.pipeline import LivePipeline, StoreSpec
from live_pssr.pipeline.checking import consistency_spec
from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope
from live_pssr.store import RunStore, layout, open_store

SIZE, PX = 64, 0.16
#: camera times (ms): 20 ms apart, frame 5 late by 30 ms -> median 20 ms, mean 24.3 ms
CAMERA_MS = [0.0, 20.0, 40.0, 60.0, 80.0, 130.0, 150.0, 170.0]
IMAGES = {"0": "raw", "1": "enhanced", "2": "consistency"}


@pytest.fixture(scope="module")
def scope() -> SimulatedMicroscope:
    return SimulatedMicroscope(MicroscopeConfig(height=SIZE, width=SIZE, laser_power=0.1, seed=5,
                                                n_networks=30))


@pytest.fixture(scope="module")
def stores(tmp_path_factory, scope) -> dict[str, Path]:
    """Two closed runs of the real pipeline: ``map`` (check on, interval 0), ``plain`` (off, 0.05 s)."""
    enhancer = build_enhancer("mito-sr4-fast", (SIZE, SIZE), "torch")
    frames = [scope.frame(i) for i in range(len(CAMERA_MS))]
    out = {}
    for name, spec, nominal in (("map", consistency_spec(True, camera=scope.camera), 0.0),
                                ("plain", None, 0.05)):
        path = tmp_path_factory.mktemp(name) / "r.ome.zarr"
        p = LivePipeline(enhancer, StoreSpec(path, pixel_size_um=PX, frame_interval_s=nominal),
                         policy="complete", consistency=spec, enhance_queue_size=len(frames))
        p.start()
        for i, (img, t) in enumerate(zip(frames, CAMERA_MS, strict=True)):
            p.submit(Frame(i, img, t))
        summary = p.stop()
        assert not summary.errors, summary.errors
        out[name] = path
    return out


def _attrs(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text(encoding="utf-8"))["attributes"]


def _transforms(path: Path, key: str) -> tuple[list[float], list[float]]:
    """(scale, translation) of image ``key`` (translation 0 when none is written)."""
    ct = _attrs(path / key)["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    scale = next(t["scale"] for t in ct if t["type"] == "scale")
    shift = next((t["translation"] for t in ct if t["type"] == "translation"), [0.0] * len(scale))
    return scale, shift


def _keys(path: Path) -> list[str]:
    return [k for k in IMAGES if (path / k / "zarr.json").is_file()]


def _validate_all(path: Path) -> None:
    """Every group of the store by yaozarrs' v0.5 models, and the store itself (arrays included)."""
    assert isinstance(yaozarrs.validate_ome_json((path / "zarr.json").read_bytes(), v05.OMEZarrGroupJSON)
                      .attributes.ome, v05.Bf2Raw)
    series = yaozarrs.validate_ome_json((path / "OME" / "zarr.json").read_bytes(), v05.OMEZarrGroupJSON)
    assert series.attributes.ome.series == _keys(path)
    for key in _keys(path):
        doc = yaozarrs.validate_ome_json((path / key / "zarr.json").read_bytes(), v05.OMEZarrGroupJSON)
        assert isinstance(doc.attributes.ome, v05.Image)
    yaozarrs.validate_zarr_store(str(path))


# ============================================================================ OME-XML
@pytest.mark.parametrize("name", ["map", "plain"])
def test_ome_xml_is_valid_utf8_with_names_types_and_sizes(stores, name):
    path = stores[name]
    raw_bytes = (path / "OME" / "METADATA.ome.xml").read_bytes()
    text = raw_bytes.decode("utf-8")  # UTF-8, and says so
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>') and "µm" in text
    doc = from_xml(path / "OME" / "METADATA.ome.xml", validate=True)  # the OME 2016-06 schema
    keys = _keys(path)
    assert [im.name for im in doc.images] == [IMAGES[k] for k in keys]
    assert [im.pixels.channels[0].name for im in doc.images] == [IMAGES[k] for k in keys]
    types = [im.pixels.type.value for im in doc.images]
    assert types == ["uint16", "uint16", "float"][: len(keys)]  # the float16 map: OME float
    n = open_store(path).n_frames
    for key, im in zip(keys, doc.images, strict=True):
        px = im.pixels
        assert px.metadata_only is not None and px.size_t == n == len(CAMERA_MS)
        arr = zarr.open_array(str(path / key / "0"), mode="r")
        assert (px.size_y, px.size_x) == arr.shape[2:]
        expect = PX / 4 if key == "1" else PX
        assert px.physical_size_x == pytest.approx(expect) and px.physical_size_y == pytest.approx(expect)
        assert px.physical_size_x_unit.value == "µm" and px.physical_size_y_unit.value == "µm"
    assert ("2" in keys) == (name == "map")


@pytest.mark.parametrize("name", ["map", "plain"])
def test_time_increment_and_delta_t_match_the_records(stores, name):
    path = stores[name]
    cam = open_store(path).records["camera_time_ms"]
    np.testing.assert_array_equal(cam, CAMERA_MS)
    doc = from_xml(path / "OME" / "METADATA.ome.xml", validate=True)
    for im in doc.images:
        px = im.pixels
        assert px.time_increment == pytest.approx(float(np.median(np.diff(cam))) / 1e3)
        assert px.time_increment == pytest.approx(0.02) and px.time_increment_unit.value == "s"
        assert [p.the_t for p in px.planes] == list(range(len(cam)))
        assert [p.delta_t for p in px.planes] == pytest.approx(list((cam - cam[0]) / 1e3))
        assert {p.delta_t_unit.value for p in px.planes} == {"s"}


def test_long_runs_get_time_increment_but_no_planes():
    cam = np.arange(layout.MAX_PLANES + 1) * 10.0
    assert layout.delta_t_s(cam) is None and layout.delta_t_s(cam[:-1]) is not None
    images = [{"name": "raw", "size_t": cam.size, "size_y": 4, "size_x": 4, "pixel_size_um": 1.0,
               "dtype": "uint16", "time_increment_s": layout.measured_interval_s(cam),
               "delta_t_s": layout.delta_t_s(cam)}]
    doc = from_xml(layout.ome_xml(images), validate=True)
    assert doc.images[0].pixels.time_increment == pytest.approx(0.01) and not doc.images[0].pixels.planes


def test_commit_xml_is_what_ome_types_writes_for_each_size():
    """The commits reuse ome-types' text and put in SizeT: the same text, every time."""
    images = [{"name": "raw", "size_y": 48, "size_x": 64, "pixel_size_um": 0.16, "dtype": "uint16",
               "time_increment_s": 0.05},
              {"name": "consistency", "size_y": 48, "size_x": 64, "pixel_size_um": 0.16,
               "dtype": "float16", "time_increment_s": 0.05}]
    for n in (3, 7, 1000, 3):
        sized = [{**im, "size_t": n} for im in images]
        assert layout.ome_xml(sized) == ('<?xml version="1.0" encoding="UTF-8"?>\n'
                                         + to_xml(layout.ome_model(sized)) + "\n")
        assert [im.pixels.size_t for im in from_xml(layout.ome_xml(sized), validate=True).images] == [n, n]


# ============================================================================ NGFF
@pytest.mark.parametrize("name", ["map", "plain"])
def test_every_group_validates_with_yaozarrs(stores, name):
    _validate_all(stores[name])


@pytest.mark.parametrize("name", ["map", "plain"])
def test_time_scale_is_the_median_camera_interval(stores, name):
    """Nominal interval 0 (an interval-0 MDA; 1 s was written before) or 0.05 s: frames were 20 ms apart."""
    path = stores[name]
    for key in _keys(path):
        scale, _ = _transforms(path, key)
        assert scale[0] == pytest.approx(0.02), (key, scale)
        axes = _attrs(path / key)["ome"]["multiscales"][0]["axes"]
        assert [(a["name"], a.get("unit")) for a in axes] == [
            ("t", "second"), ("c", None), ("y", "micrometer"), ("x", "micrometer")]
    run = open_store(path).run
    assert run["frame_interval_measured_s"] == pytest.approx(0.02)
    assert run["frame_interval_s"] == (0.0 if name == "map" else 0.05) and "metadata_error" not in run


@pytest.mark.parametrize("name", ["map", "plain"])
def test_enhanced_pixel_centres_fall_on_the_raw_pixels_they_tile(stores, name):
    path = stores[name]
    r = open_store(path)
    u = r.run["upscale"]
    (s_raw, t_raw), (s_enh, t_enh) = _transforms(path, "0"), _transforms(path, "1")
    assert t_raw == [0.0, 0.0, 0.0, 0.0] and s_enh[2] == pytest.approx(s_raw[2] / u)
    for ax in (2, 3):  # y, x: world = index * scale + translation (a pixel's centre)
        s, se, te = s_raw[ax], s_enh[ax], t_enh[ax]
        n = r.raw.shape[ax]
        raw_centres = np.arange(n) * s + t_raw[ax]
        enh_centres = (np.arange(n * u) * se + te).reshape(n, u)
        np.testing.assert_allclose(enh_centres.mean(axis=1), raw_centres, atol=1e-12)
        # edges: the u enhanced pixels of raw pixel i span exactly [centre - s/2, centre + s/2]
        np.testing.assert_allclose(enh_centres[:, 0] - se / 2, raw_centres - s / 2, atol=1e-12)
        np.testing.assert_allclose(enh_centres[:, -1] + se / 2, raw_centres + s / 2, atol=1e-12)
    if "2" in _keys(path):
        assert _transforms(path, "2") == (s_raw, t_raw)  # the map lies on the raw pixels


@pytest.mark.parametrize("name", ["map", "plain"])
def test_omero_block_names_channels_and_windows_from_the_data(stores, name):
    path = stores[name]
    r = open_store(path)
    for key in _keys(path):
        omero = _attrs(path / key)["ome"]["omero"]
        (ch,) = omero["channels"]
        assert ch["label"] == IMAGES[key] and len(ch["color"]) == 6
        w = ch["window"]
        assert w["min"] <= w["start"] < w["end"] <= w["max"]
        if key == "2":
            assert (w["min"], w["max"]) == (-65504.0, 65504.0) and w["start"] == -w["end"]
            data = np.abs(np.asarray(r.consistency[:], dtype=np.float64))
            assert 0 < w["end"] <= np.nanmax(data)
            continue
        assert (w["min"], w["max"]) == (0.0, 65535.0)  # uint16
        data = np.asarray((r.raw if key == "0" else r.enhanced)[:])
        assert data.min() <= w["start"] and w["end"] <= data.max()  # from the data, not the dtype


# ============================================================================ crash, failure
def test_a_crash_shaped_store_is_valid(tmp_path, scope):
    """Never closed (what ``kill -9`` leaves after a commit): every reader still accepts it."""
    path = tmp_path / "crash.ome.zarr"
    store = RunStore.create(path, (SIZE, SIZE), np.uint16, 4, pixel_size_um=PX, commit_interval_s=0,
                            consistency={"every": 1})
    try:
        doc = from_xml(path / "OME" / "METADATA.ome.xml", validate=True)  # 0 frames: SizeT 1
        assert [im.pixels.size_t for im in doc.images] == [1, 1, 1]
        _validate_all(path)
        for i in range(5):
            store.append_raw(Frame(i, scope.frame(i), 20.0 * i), received_s=store.now())
            if i == 2:
                store.commit()
        doc = from_xml(path / "OME" / "METADATA.ome.xml", validate=True)
        assert [im.pixels.size_t for im in doc.images] == [3, 3, 3]
        assert doc.images[2].pixels.type.value == "float"
        _validate_all(path)
        r = open_store(path)
        assert r.n_frames == 3 and not r.closed_cleanly
        assert _transforms(path, "0")[0][0] == 1.0  # nominal interval 0: 1 s until close measures
    finally:
        store.claim.release()  # the process that held it is "dead": leave the folder unlocked


def test_a_failing_final_metadata_write_keeps_every_frame_and_says_so(tmp_path, scope):
    """A real OSError at close (a folder where the OME-XML's temporary file goes): the frames stay
    committed, the store is closed (it holds them all), its metadata is the last commit's (valid),
    and the failure is in the log's place, ``metadata_error``."""
    path = tmp_path / "r.ome.zarr"
    store = RunStore.create(path, (SIZE, SIZE), np.uint16, 4, pixel_size_um=PX, commit_interval_s=0)
    frames = [scope.frame(i) for i in range(4)]
    for i, img in enumerate(frames):
        store.append_raw(Frame(i, img, 20.0 * i), received_s=store.now())
    blocker = path / "OME" / ".METADATA.ome.xml.final.tmp"
    blocker.mkdir()
    store.close()
    r = open_store(path)
    assert r.closed_cleanly and r.n_frames == 4
    for i, img in enumerate(frames):
        np.testing.assert_array_equal(r.raw_frame(i), img)
    assert store.metadata_error and "final metadata" in store.metadata_error
    assert r.run["metadata_error"] == store.metadata_error
    assert _transforms(path, "0")[0][0] == 1.0  # nothing of the final set was replaced
    assert from_xml(path / "OME" / "METADATA.ome.xml", validate=True).images[0].pixels.size_t == 4
    _validate_all(path)
    leftovers = [p for p in path.rglob("*.final.tmp") if p != blocker]
    assert not leftovers, leftovers


def test_close_xml_with_planes_is_what_ome_types_writes():
    """Close puts the planes into the cached text in ome-types' own format: the same bytes."""
    times = [0.0, 1e-05, 123456.789, float("nan"), 0.1 + 0.2, 1e20, 2.5e-7, *np.linspace(0.02, 9.9, 40)]
    images = [{"name": name, "size_t": len(times), "size_y": 8, "size_x": 8, "pixel_size_um": 0.1,
               "dtype": dtype, "time_increment_s": 0.01, "delta_t_s": dts}
              for name, dtype, dts in (("raw", "uint16", times), ("enhanced", "float32", times[:5]),
                                       ("consistency", "float16", None))]
    text = layout.ome_xml(images)
    assert text == '<?xml version="1.0" encoding="UTF-8"?>\n' + to_xml(layout.ome_model(images)) + "\n"
    doc = from_xml(text, validate=True)
    assert [len(im.pixels.planes) for im in doc.images] == [len(times) - 1, 4, 0]
