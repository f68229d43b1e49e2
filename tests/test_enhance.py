"""Offline enhancement: files in and out (tif, zarr, OME-Zarr, run store), tiling, multi-frame
models, dask workers, the CLI's progress, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from typer.testing import CliRunner

from live_pssr.cli import app
from live_pssr.engines import make_engine
from live_pssr.enhancer import Enhancer
from live_pssr.errors import ConfigError, FrameFormatError, LivePSSRError, StoreExistsError
from live_pssr.modelio import ModelSpec, load_model, save_model
from live_pssr.nets import FastSRNet
from live_pssr.normalize import denormalize, normalize, percentile_range
from live_pssr.offline import enhance_array, enhance_file, open_input

from .conftest import REPO, camera_frames

PX = 0.2


def _tif(path: Path, data: np.ndarray, axes: str, px: float | None = PX, **meta) -> Path:
    kw = {"resolution": (1 / px, 1 / px)} if px else {}
    meta = {"axes": axes, **({"unit": "um"} if px else {}), **meta}
    tifffile.imwrite(path, data, imagej=True, metadata=meta, **kw)
    return path


def _model(path: Path, in_frames: int = 1, target: str = "newest", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    ref = -1 if target == "newest" else in_frames // 2
    net = FastSRNet(in_frames=in_frames, width=4, ref_frame=ref)
    kwargs = {"in_frames": in_frames, "width": 4, "ref_frame": ref}
    spec = ModelSpec(f"mf{in_frames}-{target}", "fast-sr", kwargs, upscale=4, in_frames=in_frames,
                     target_frame=target)
    return save_model(path, net, spec)


def _run(inp: Path, out: Path, model: Path, **kw):
    kw.setdefault("engine", "torch")
    return enhance_file(inp, out, model=model, **kw)


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return np.stack(camera_frames(5, (36, 44), seed=3))


# ------------------------------------------------------------------------------------ tiling
def test_tiled_equals_untiled_saved_model(tiny_model_path):
    """Default overlap (measured receptive field) makes tiles invisible."""
    frames = np.stack(camera_frames(1, (150, 130), seed=1))
    whole = enhance_array(frames, tiny_model_path, tile=None, out_dtype="float32")
    tiled = enhance_array(frames, tiny_model_path, tile=96, out_dtype="float32")
    assert whole.shape == (1, 600, 520) and whole.dtype == np.float32
    # 1e-5 in the network's normalised units, i.e. relative to the frames' intensity range
    lo, hi = percentile_range(frames[0])
    np.testing.assert_allclose(tiled, whole, atol=1e-5 * (hi - lo), rtol=0)


def test_tiled_equals_untiled_fast_net_width24(tmp_path):
    torch.manual_seed(5)
    path = save_model(tmp_path / "w24.safetensors", FastSRNet(width=24),
                      ModelSpec("w24", "fast-sr", {"width": 24}, upscale=4))
    frame = camera_frames(1, (120, 100), seed=2)[0]
    whole = enhance_array(frame, path, tile=None, out_dtype="float32")
    tiled = enhance_array(frame, path, tile=96, overlap=56, out_dtype="float32")
    lo, hi = percentile_range(frame)
    assert np.abs(tiled - whole).max() <= 1e-5 * (hi - lo)


def test_enhance_array_matches_live_enhancer(tiny_model, stack):
    """Offline per-frame results are the live Enhancer's (same normalisation, same engine)."""
    live = Enhancer(tiny_model, engine="torch")
    expected = np.stack([live.enhance(f) for f in stack])
    np.testing.assert_array_equal(enhance_array(stack, tiny_model, engine="torch"), expected)


# ------------------------------------------------------------------------------------ formats
def test_2d_tif_in_tif_out(tmp_path, tiny_model_path):
    img = camera_frames(1, (36, 44))[0]
    inp = _tif(tmp_path / "one.tif", img, "YX")
    res = _run(inp, tmp_path / "one_x4.tif", tiny_model_path)
    out = tifffile.imread(res.output)
    assert out.shape == (144, 176) and out.dtype == np.uint16
    np.testing.assert_array_equal(out, enhance_array(img, tiny_model_path))
    info = open_input(res.output)
    assert info.axes == "YX" and info.pixel_size_um == pytest.approx(PX / 4)
    with tifffile.TiffFile(res.output) as tf:
        meta = json.loads(tf.imagej_metadata["Info"])["live_pssr"]
    assert meta["model"].startswith("tiny-sr4@") and meta["upscale"] == 4


def test_tyx_tif_in_tif_out_float32(tmp_path, tiny_model_path, stack):
    inp = _tif(tmp_path / "t.tif", stack, "TYX", finterval=0.25)
    res = _run(inp, tmp_path / "t_x4.tif", tiny_model_path, out_dtype="float32")
    out = tifffile.imread(res.output)
    assert out.shape == (5, 144, 176) and out.dtype == np.float32
    np.testing.assert_array_equal(out, enhance_array(stack, tiny_model_path, out_dtype="float32"))
    # values stay in the input's units: the enhanced frame's mean follows the raw frame's
    assert abs(out[0].mean() - stack[0].mean()) < 0.5 * stack[0].std() + 1e-3 * stack[0].mean() + 50
    info = open_input(res.output)
    assert info.pixel_size_um == pytest.approx(PX / 4) and info.frame_interval_s == pytest.approx(0.25)


def test_zarr_in_zarr_out(tmp_path, tiny_model_path, stack):
    zarr.create_array(str(tmp_path / "in.zarr"), data=stack, chunks=(2, 36, 44),
                      dimension_names=("t", "y", "x"), attributes={"pixel_size_um": PX})
    res = _run(tmp_path / "in.zarr", tmp_path / "out.zarr", tiny_model_path)
    out = zarr.open_array(str(res.output), mode="r")
    assert out.shape == (5, 144, 176) and out.dtype == np.uint16
    assert out.attrs["pixel_size_um"] == pytest.approx(PX / 4)
    assert tuple(out.metadata.dimension_names) == ("t", "y", "x")
    np.testing.assert_array_equal(out[:], enhance_array(stack, tiny_model_path))


def test_ome_zarr_in_ome_zarr_out(tmp_path, tiny_model_path, stack):
    """An OME-Zarr image (t, c, y, x; 0.4-style v2 would work the same) keeps OME metadata, scale / 4."""
    g = zarr.open_group(str(tmp_path / "img.zarr"), mode="w", zarr_format=3)
    axes = [{"name": "t", "type": "time", "unit": "second"}, {"name": "c", "type": "channel"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}]
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [2.0, 1.0, PX, PX]}]}]}]}
    g.create_array("0", data=np.stack([stack, stack // 2], axis=1), chunks=(1, 1, 36, 44))
    with pytest.raises(FrameFormatError, match="channel"):
        _run(tmp_path / "img.zarr", tmp_path / "bad.zarr", tiny_model_path)
    res = _run(tmp_path / "img.zarr", tmp_path / "out.zarr", tiny_model_path, channel=1)
    ome = zarr.open_group(str(res.output), mode="r").attrs["ome"]
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == pytest.approx([2.0, PX / 4, PX / 4])
    out = zarr.open_array(str(res.output / "0"), mode="r")
    np.testing.assert_array_equal(out[:], enhance_array(stack // 2, tiny_model_path))
    back = open_input(res.output)
    assert back.pixel_size_um == pytest.approx(PX / 4) and back.frame_interval_s == pytest.approx(2.0)


def test_ome_zarr_v04_zarr2_input(tmp_path, tiny_model_path, stack):
    """OME-Zarr 0.4 (zarr v2, metadata at the top level) reads the same; the output is 0.5."""
    g = zarr.open_group(str(tmp_path / "v04.zarr"), mode="w", zarr_format=2)
    axes = [{"name": "t", "type": "time"}, {"name": "y", "type": "space", "unit": "nanometer"},
            {"name": "x", "type": "space", "unit": "nanometer"}]
    g.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 200.0, 200.0]}]}]}]
    g.create_array("0", data=stack, chunks=(1, 36, 44))
    src = open_input(tmp_path / "v04.zarr")
    assert src.shape == (5, 36, 44) and src.pixel_size_um == pytest.approx(PX)
    res = _run(tmp_path / "v04.zarr", tmp_path / "out.zarr", tiny_model_path)
    np.testing.assert_array_equal(zarr.open_array(str(res.output / "0"), mode="r")[:],
                                  enhance_array(stack, tiny_model_path))
    assert zarr.open_group(str(res.output), mode="r").attrs["ome"]["version"] == "0.5"


def test_ome_tif_in_ome_tif_out(tmp_path, tiny_model_path, stack):
    inp = tmp_path / "s.ome.tif"
    tifffile.imwrite(inp, stack, metadata={"axes": "TYX", "PhysicalSizeX": PX, "PhysicalSizeY": PX,
                                           "TimeIncrement": 3.0})
    res = _run(inp, tmp_path / "o.ome.tif", tiny_model_path)
    back = open_input(res.output)
    assert back.kind == "ome-tif" and back.shape == (5, 144, 176)
    assert back.pixel_size_um == pytest.approx(PX / 4) and back.frame_interval_s == pytest.approx(3.0)
    np.testing.assert_array_equal(tifffile.imread(res.output), enhance_array(stack, tiny_model_path))


def test_run_store_out_holds_raw_and_enhanced(tmp_path, tiny_model_path, stack):
    from live_pssr.store import open_store

    inp = _tif(tmp_path / "t.tif", stack, "TYX", finterval=0.5)
    res = _run(inp, tmp_path / "run.ome.zarr", tiny_model_path, workers=2, threads=1)
    st = open_store(res.output)
    assert st.n_frames == 5 and st.closed_cleanly
    np.testing.assert_array_equal(st.raw[:, 0], stack)
    np.testing.assert_array_equal(st.enhanced[:, 0], enhance_array(stack, tiny_model_path, threads=1))
    assert st.summary()["pixel_size_um"] == pytest.approx(PX)
    assert set(st.status_counts().items()) >= {("after", 5)}
    assert st.run["model"].startswith("tiny-sr4@")
    # a run store is also an input: its raw image (t, c=1, y, x) is read back
    again = _run(res.output, tmp_path / "again.tif", tiny_model_path)
    np.testing.assert_array_equal(tifffile.imread(again.output), st.enhanced[:, 0])


def test_channel_of_a_tcyx_tif(tmp_path, tiny_model_path, stack):
    data = np.stack([stack, stack[::-1]], axis=1)
    inp = _tif(tmp_path / "tc.tif", data, "TCYX")
    with pytest.raises(FrameFormatError, match="--channel"):
        _run(inp, tmp_path / "x.tif", tiny_model_path)
    res = _run(inp, tmp_path / "c1.tif", tiny_model_path, channel=1)
    np.testing.assert_array_equal(tifffile.imread(res.output), enhance_array(stack[::-1], tiny_model_path))


def test_float_input_rescaled_to_uint16(tmp_path, tiny_model_path):
    img = camera_frames(1, (36, 44))[0].astype(np.float32) / 1000.0  # values ~0.1-0.9, not integers
    inp = tmp_path / "f.tif"
    tifffile.imwrite(inp, img)
    res = _run(inp, tmp_path / "f16.tif", tiny_model_path, out_dtype="uint16")
    ref = enhance_array(img, tiny_model_path, out_dtype="float32")
    with tifffile.TiffFile(res.output) as tf:
        out = tf.asarray()
        intensity = json.loads(tf.imagej_metadata["Info"])["live_pssr"]["intensity"]
    assert out.dtype == np.uint16 and intensity["gain"] > 1000
    back = out / intensity["gain"] + intensity["offset"]
    inside = (out > 0) & (out < 65535)
    assert inside.mean() > 0.9
    np.testing.assert_allclose(back[inside], ref[inside], atol=1 / intensity["gain"])


# ------------------------------------------------------------------------------------ multi-frame
def _reference_window(enhancer: Enhancer, frames: np.ndarray, t: int, target: str) -> np.ndarray:
    """Independent reference: normalise each frame, run the engine, map back with frame t's range."""
    f, n = enhancer.in_frames, len(frames)
    first = t - f + 1 if target == "newest" else t - f // 2
    idx = [min(max(first + i, 0), n - 1) for i in range(f)]
    ranges = [percentile_range(frames[i]) for i in idx]
    x = np.stack([normalize(frames[i], *r) for i, r in zip(idx, ranges, strict=True)])[None]
    y = enhancer.engine.run(x)[0, 0]
    return denormalize(y, *percentile_range(frames[t]), np.float32)


@pytest.mark.parametrize("target", ["newest", "centre"])
def test_multi_frame_model(tmp_path, stack, target):
    path = _model(tmp_path / f"mf-{target}.safetensors", 3, target)
    inp = _tif(tmp_path / "t.tif", stack, "TYX")
    res = _run(inp, tmp_path / "mf.tif", path, out_dtype="float32", block=2)
    out = tifffile.imread(res.output)
    model = load_model(path)
    enh = Enhancer(model, engine=make_engine("torch", model), out_dtype="float32")
    for t in range(len(stack)):
        np.testing.assert_allclose(out[t], _reference_window(enh, stack, t, target), rtol=0, atol=1e-3)
    if target == "newest":  # newest-frame models: offline equals the live stream exactly
        live = Enhancer(model, engine="torch", out_dtype="float32")
        np.testing.assert_array_equal(out, np.stack([live.enhance(f) for f in stack]))


# ------------------------------------------------------------------------------------ dask
@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_dask_workers_equal_in_process(tmp_path, stack, scheduler):
    path = _model(tmp_path / "mf.safetensors", 3, "centre", seed=4)
    inp = _tif(tmp_path / "t.tif", stack, "TYX")
    one = _run(inp, tmp_path / "one.zarr", path, out_dtype="float32", threads=1, block=2)
    two = _run(inp, tmp_path / "two.zarr", path, out_dtype="float32", threads=1, block=2, workers=2,
               scheduler=scheduler)
    assert two.scheduler == scheduler and two.workers == 2
    a = zarr.open_array(str(one.output), mode="r")[:]
    b = zarr.open_array(str(two.output), mode="r")[:]
    assert np.array_equal(a, b) and np.abs(a).max() > 0


def test_distributed_without_package_is_a_clear_error(tmp_path, tiny_model_path, stack):
    pytest.importorskip("dask")
    try:
        import distributed  # noqa: F401

        pytest.skip("distributed is installed")
    except ImportError:
        pass
    inp = _tif(tmp_path / "t.tif", stack, "TYX")
    with pytest.raises(ConfigError, match="distributed"):
        _run(inp, tmp_path / "o.zarr", tiny_model_path, workers=2, scheduler="tcp://127.0.0.1:8786")


# ------------------------------------------------------------------------------------ CLI
def test_cli_shows_progress_and_summary(tmp_path, tiny_model_path, stack):
    inp = _tif(tmp_path / "t.tif", stack, "TYX")
    args = ["enhance", str(inp), "-o", str(tmp_path / "o.tif"), "--model", str(tiny_model_path),
            "--engine", "torch", "--tile", "32", "--overlap", "16"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "enhancing" in result.output and "5/5" in result.output and "frames" in result.output
    assert "tiles of 32 px, overlap 16" in result.output and "wrote" in result.output
    assert tifffile.imread(tmp_path / "o.tif").shape == (5, 144, 176)
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, StoreExistsError) and "--overwrite" in again.exception.hint
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


# ------------------------------------------------------------------------------------ bad input
def test_bad_inputs(tmp_path, tiny_model_path, stack):
    out = tmp_path / "o.tif"
    cases = []
    nan = stack.astype(np.float32)
    nan[2, 3, 4] = np.nan
    cases.append((_tif(tmp_path / "nan.tif", nan, "TYX"), "NaN or Inf", "nan_to_num"))
    inf = stack[0].astype(np.float32)
    inf[0, 0] = np.inf
    cases.append((_tif(tmp_path / "inf.tif", inf, "YX"), "NaN or Inf", "nan_to_num"))
    cases.append((_tif(tmp_path / "flat.tif", np.full((36, 44), 7, np.uint16), "YX"), "constant", "blank"))
    tzyx = np.stack([stack, stack], axis=1)
    cases.append((_tif(tmp_path / "tzyx.tif", tzyx, "TZYX"), "more than one frame axis", "one axis"))
    cases.append((tmp_path / "missing.tif", "does not exist", "check the path"))
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    cases.append((tmp_path / "img.png", "unsupported file type", ".tif"))
    for path, problem, fix in cases:
        with pytest.raises(LivePSSRError) as err:
            _run(path, out, tiny_model_path)
        assert problem in err.value.message and str(path) in err.value.message, err.value
        assert fix in err.value.hint
        assert not out.exists()
    good = _tif(tmp_path / "good.tif", stack, "TYX")
    with pytest.raises(FrameFormatError, match="unsupported file type"):
        _run(good, tmp_path / "o.png", tiny_model_path)
    with pytest.raises(StoreExistsError, match="is the input"):
        _run(good, good, tiny_model_path, overwrite=True)
    with pytest.raises(ConfigError, match="tile"):
        _run(good, out, tiny_model_path, tile=20, overlap=56)
    with pytest.raises(ConfigError, match="one dtype"):
        _run(good, tmp_path / "r.ome.zarr", tiny_model_path, out_dtype="float32")


def test_bad_input_via_cli_exits_2(tmp_path, tiny_model_path, stack, monkeypatch, capsys):
    from live_pssr.cli import main

    tcyx = _tif(tmp_path / "tcyx.tif", np.stack([stack, stack], axis=1), "TCYX")
    monkeypatch.setattr("sys.argv", ["live-pssr", "enhance", str(tcyx), "-o", str(tmp_path / "o.tif"),
                                     "-m", str(tiny_model_path), "--engine", "torch"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "has 2 channels" in err and "fix: pass --channel" in err


# ------------------------------------------------------------------------------------ real data / model
def test_real_files_axes_and_pixel_sizes(real_data, tmp_path, tiny_model_path):
    lyso = open_input(real_data / "lyso_hela_live_TYX_bohuang_crop1.tif")
    assert lyso.shape == (50, 128, 128) and lyso.axes == "TYX"
    assert lyso.pixel_size_um == pytest.approx(0.1292, 1e-3)
    yeast = open_input(real_data / "mito_yeast_ZYX_mitographtools_BuddingYeastGlucose01.tif")
    assert yeast.axes == "ZYX" and yeast.shape == (44, 200, 200)
    with pytest.raises(FrameFormatError, match="3 channels"):
        open_input(real_data / "hela-cells_lyso-mito-nuclei_imagej-sample_bian.tif")
    hela = open_input(real_data / "hela-cells_lyso-mito-nuclei_imagej-sample_bian.tif", channel=1)
    assert hela.axes == "YX" and hela.pixel_size_um == pytest.approx(0.0515, 1e-3)
    res = _run(real_data / "mito_mina_test_image.tif", tmp_path / "mina.zarr", tiny_model_path)
    out = zarr.open_array(str(res.output), mode="r")
    assert out.shape == (296 * 4, 502 * 4) and out.dtype == np.uint8
    assert out.attrs["pixel_size_um"] == pytest.approx(0.1 / 4)


def test_shipped_model_if_present(tmp_path):
    path = REPO / "models" / "mito-sr4-fast.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} not trained yet")
    frame = camera_frames(1, (64, 64))[0]
    out = enhance_array(frame, path, engine="torch", out_dtype="float32")
    assert out.shape == (256, 256) and np.isfinite(out).all()
    # a trained model keeps the image's content: it correlates with the upsampled input
    up = np.kron(frame.astype(np.float32), np.ones((4, 4), np.float32))
    assert np.corrcoef(out.ravel(), up.ravel())[0, 1] > 0.5


def test_run_store_parts_and_unnamed_arrays_as_inputs(tmp_path, tiny_model_path, stack):
    """Any part of a run store names its raw frames; unnamed arrays get replay's axis guess."""
    inp = _tif(tmp_path / "t.tif", stack, "TYX")
    run = _run(inp, tmp_path / "run.ome.zarr", tiny_model_path).output
    for path in (run, run / "0", run / "0" / "0"):
        src = open_input(path)
        assert src.shape == (5, 36, 44) and src.axes == "TYX"
        np.testing.assert_array_equal(src.read(0, 5), stack)
    tcyx = tmp_path / "tcyx.zarr"  # no dimension names: (T, C, Y, X)
    zarr.create_array(str(tcyx), data=np.stack([stack, stack // 2], axis=1), chunks=(1, 1, 36, 44))
    with pytest.raises(FrameFormatError, match="2 channels"):
        open_input(tcyx)
    np.testing.assert_array_equal(open_input(tcyx, channel=1).read(0, 5), stack // 2)
