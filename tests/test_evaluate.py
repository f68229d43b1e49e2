"""Data registry and image loading, then evaluation (library and `live-pssr evaluate`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from live_pssr import datasets
from live_pssr.datasets import DataError, DataMissingError, load_image_folder, load_image_stack

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REPO = Path(__file__).resolve().parents[1]
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data folder {REAL} absent")


def _image(shape=(40, 48), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 1000).astype(np.uint16)


# ----------------------------------------------------------------------------------------------
# loading


def test_load_tif_npy_and_zarr_variants(tmp_path):
    import zarr

    img = _image()
    stack = np.stack([img, img + 1, img + 2])
    tifffile.imwrite(tmp_path / "a.tif", stack, photometric="minisblack")
    np.save(tmp_path / "b.npy", img.astype(np.float32))
    zarr.create_array(str(tmp_path / "c.zarr"), data=img)
    g = zarr.open_group(str(tmp_path / "d.ome.zarr"), mode="w")  # OME-Zarr image: level "0"
    g.create_array("0", data=stack[:, None])  # (t, c, y, x)
    coll = zarr.open_group(str(tmp_path / "run.ome.zarr"), mode="w")  # bioformats2raw: image "0", level "0"
    coll.create_group("0").create_array("0", data=stack[:, None])

    np.testing.assert_array_equal(load_image_stack(tmp_path / "a.tif"), stack)
    assert load_image_stack(tmp_path / "b.npy").dtype == np.float32
    np.testing.assert_array_equal(load_image_stack(tmp_path / "c.zarr"), img)
    np.testing.assert_array_equal(load_image_stack(tmp_path / "d.ome.zarr"), stack)
    np.testing.assert_array_equal(load_image_stack(tmp_path / "run.ome.zarr"), stack)

    named = load_image_folder(tmp_path)
    assert [n for n, _ in named][:4] == ["a[0]", "a[1]", "a[2]", "b"]
    assert all(im.ndim == 2 and im.dtype == np.float32 for _, im in named)


def _write(path: Path, arr: np.ndarray | None) -> Path:
    if arr is None:
        return path
    if path.suffix == ".npy":
        np.save(path, arr)
    elif path.suffix == ".tif":
        tifffile.imwrite(path, arr)
    else:
        path.write_bytes(b"\x89PNG not really")
    return path


RGB = np.zeros((32, 32, 3), np.uint8) + np.arange(3, dtype=np.uint8)


@pytest.mark.parametrize(
    "name, arr, needle",
    [
        ("missing.tif", None, "does not exist"),
        ("x.png", np.zeros(1), "not a supported image"),
        ("n.npy", np.full((16, 16), np.nan), "NaN or Inf"),
        ("i.npy", np.array([[1.0, np.inf] * 8] * 16), "NaN or Inf"),
        ("k.tif", np.full((16, 16), 7, np.uint16), "constant"),
        ("r.tif", RGB, "channels last"),
        ("v.npy", np.arange(100.0), "1 dimensions"),
        ("f.npy", np.random.default_rng(0).random((2, 3, 16, 16)), "4 dimensions"),
        ("c.npy", np.ones((16, 16), complex), "not a numeric image"),
    ],
)
def test_bad_images_raise_errors_naming_the_file(tmp_path, name, arr, needle):
    path = _write(tmp_path / name, arr)
    with pytest.raises(DataError, match=needle) as info:
        load_image_stack(path)
    assert str(path) in info.value.message and info.value.hint


def test_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no usable images"):
        load_image_folder(tmp_path)
    with pytest.raises(DataMissingError):
        load_image_folder(tmp_path / "nope")


def test_real_data_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.REAL_DATA_ENV, str(tmp_path))
    assert datasets.real_data_dir() == tmp_path
    datasets._read_real.cache_clear()
    with pytest.raises(DataMissingError, match="missing") as info:
        datasets.fmd_pairs([1])
    assert "README" in info.value.hint
    monkeypatch.setenv(datasets.REAL_DATA_ENV, str(tmp_path / "absent"))
    assert datasets.real_data_dir() is None
    with pytest.raises(DataMissingError, match="not available"):
        datasets.mito_holdout_images()
    datasets._read_real.cache_clear()


# ----------------------------------------------------------------------------------------------
# the real-data registry


@needs_real
def test_mito_split_holds_out_whole_images():
    train = datasets.mito_train_named()
    holdout = datasets.mito_holdout_images()
    assert len(train) == 1 + 2 * datasets.YEAST_PLANES and len(holdout) == 2
    train_sources = {n.split("[")[0] for n, _ in train}
    assert not train_sources & {n for n, _ in holdout}
    assert not any("hela" in n or "mina" in n for n in train_sources)
    for _, img in train + holdout:
        assert img.dtype == np.float32 and img.ndim == 2 and img.min() == 0 and img.max() > 100
    hela = dict(holdout)["hela-cells_mito"]
    assert hela.shape == (datasets.HELA_ROWS, 672)
    # the text patch (zeros from row 476) is gone: the bottom right corner is not black
    assert np.count_nonzero(hela[-4:, 500:] == 0) < 0.5 * hela[-4:, 500:].size
    assert datasets.pixel_size_um("mito_mina_test_image") == 0.1


@needs_real
def test_fmd_pairs_are_real_pairs():
    train = datasets.fmd_pairs(datasets.FMD_TRAIN_FIELDS)
    hold = datasets.fmd_pairs(datasets.FMD_HOLDOUT_FIELDS)
    assert len(train) == len(hold) == 10
    raw, gt = hold[0]
    assert raw.shape == gt.shape == (512, 512) and raw.dtype == np.float32
    # the 50-frame mean is the raw frame's expectation: close, not equal
    assert 0 < np.abs(raw - gt).mean() < 10
    with pytest.raises(DataError, match="do not exist"):
        datasets.fmd_pairs([0, 21])


# ----------------------------------------------------------------------------------------------
# evaluation


def _tiny_model(path: Path, upscale: int, identity: bool = False, in_frames: int = 1) -> Path:
    import torch

    from live_pssr.modelio import ModelSpec, save_model
    from live_pssr.nets.fast_sr import FastSRNet

    torch.manual_seed(0)
    net = FastSRNet(in_frames=in_frames, upscale=upscale, width=4)
    if identity:  # zero last layer: output = the global residual (bilinear upsampling of the input)
        torch.nn.init.zeros_(net.tail.weight)
        torch.nn.init.zeros_(net.tail.bias)
    spec = ModelSpec(name=path.stem, arch="fast-sr",
                     arch_kwargs={"in_frames": in_frames, "upscale": upscale, "width": 4},
                     upscale=upscale, in_frames=in_frames)
    return save_model(path, net.eval(), spec)


def _hq_folder(folder: Path, n: int = 2, shape=(64, 80)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for i in range(n):
        rng = np.random.default_rng(i)
        img = np.zeros(shape)
        for _ in range(12):
            cy, cx, s = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(1.5, 3)
            img += rng.uniform(100, 1000) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        tifffile.imwrite(folder / f"img{i}.tif", img.astype(np.float32))
    (folder / "README.txt").write_text("ignored")
    return folder


def test_image_metrics_known_values():
    from live_pssr.evaluate import image_metrics, upsample_bicubic

    t = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    m = image_metrics(t, t, 1.0, 0.1)
    assert m["psnr"] == np.inf and m["ssim"] == pytest.approx(1.0)
    assert m["frc_px"] == pytest.approx(2.0) and m["frc_um"] == pytest.approx(0.2)
    up = upsample_bicubic(np.full((8, 8), 3.0, np.float32), 4)
    assert up.shape == (32, 32) and np.allclose(up, 3.0)


def test_evaluate_folder_recomputes_exactly(tmp_path):
    """Library result equals an independent recomputation of inputs, outputs and metrics."""
    from live_pssr import metrics
    from live_pssr.crappify import PSSRFluoCrappifier
    from live_pssr.enhancer import Enhancer
    from live_pssr.evaluate import evaluate, upsample_bicubic
    from live_pssr.modelio import load_model

    model = _tiny_model(tmp_path / "tiny.safetensors", 4)
    folder = _hq_folder(tmp_path / "hq")
    res = evaluate(str(model), folder, seed=3, progress=False)
    assert res["n_images"] == 2 and res["baseline"] == "bicubic" and res["upscale"] == 4
    assert res["crappifier"]["kind"] == "pssr-fluo" and res["crappifier"]["scale"] == 4
    enh = Enhancer(load_model(str(model)), out_dtype=np.float32)
    for i, (row, name) in enumerate(zip(res["items"], ["img0", "img1"], strict=True)):
        hi = tifffile.imread(folder / f"{name}.tif")
        lr = PSSRFluoCrappifier(4)(hi, np.random.default_rng([3, i]))
        pred, base = enh.enhance(lr), upsample_bicubic(lr, 4)
        assert row["name"] == name
        assert row["model"]["psnr"] == pytest.approx(metrics.psnr(pred, hi), abs=1e-6)
        assert row["baseline"]["ssim_norm"] == pytest.approx(metrics.normalized_ssim(base, hi), abs=1e-9)
    psnrs = [r["model"]["psnr"] for r in res["items"]]
    assert res["summary"]["model"]["psnr"] == pytest.approx(np.mean(psnrs))
    assert res["summary"]["delta"]["psnr"] == pytest.approx(
        res["summary"]["model"]["psnr"] - res["summary"]["baseline"]["psnr"])
    assert res["summary"]["model"]["frc_um"] is None  # pixel size unknown
    # deterministic: same seed, same numbers; another seed, other inputs
    assert evaluate(str(model), folder, seed=3, progress=False)["summary"] == res["summary"]
    assert evaluate(str(model), folder, seed=4, progress=False)["summary"] != res["summary"]


def test_identity_denoiser_scores_exactly_as_the_raw_input(tmp_path):
    from live_pssr.evaluate import evaluate

    model = _tiny_model(tmp_path / "ident.safetensors", 1, identity=True)
    res = evaluate(str(model), _hq_folder(tmp_path / "hq"), crappifier={"kind": "camera", "scale": 1},
                   progress=False)
    assert res["baseline"] == "raw input"
    for m in ("psnr", "ssim", "psnr_norm", "ssim_norm"):
        assert res["summary"]["delta"][m] == pytest.approx(0.0, abs=1e-3)


def test_sim_timelapse_reports_flicker_and_multi_frame_models_run(tmp_path):
    from live_pssr.evaluate import evaluate

    model = _tiny_model(tmp_path / "mf.safetensors", 2, in_frames=3)
    res = evaluate(str(model), "sim-timelapse", n_frames=4, size=32, progress=False)
    assert res["n_images"] == 4 and res["in_frames"] == 3 and res["sim_config"]["upscale"] == 2
    assert res["flicker"]["baseline"] > 1.5  # raw noise flickers far more than the truth moves
    assert res["flicker"]["model"] > 0
    assert res["summary"]["baseline"]["frc_um"] is not None  # the simulator knows its pixel size


def test_evaluate_bad_inputs(tmp_path):
    from live_pssr.errors import ConfigError
    from live_pssr.evaluate import evaluate

    sr = _tiny_model(tmp_path / "sr.safetensors", 4)
    with pytest.raises(ConfigError, match="1x denoising"):
        evaluate(str(sr), "fmd-holdout", progress=False)
    with pytest.raises(DataMissingError, match="neither a built-in"):
        evaluate(str(sr), "mito-holdin", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no usable images"):
        evaluate(str(sr), empty, progress=False)
    with pytest.raises(ConfigError, match="downsamples 2x"):
        evaluate(str(sr), _hq_folder(tmp_path / "hq"), crappifier={"kind": "pssr-fluo", "scale": 2},
                 progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "nan.npy", np.full((32, 32), np.nan))
    with pytest.raises(DataError, match="NaN"):
        evaluate(str(sr), bad, progress=False)


def test_evaluate_command_end_to_end(tmp_path):
    import json

    from typer.testing import CliRunner

    from live_pssr.cli import app

    model = _tiny_model(tmp_path / "tiny.safetensors", 4)
    folder = _hq_folder(tmp_path / "hq")
    out = tmp_path / "eval" / "result.json"
    result = CliRunner().invoke(app, ["evaluate", "--model", str(model), "--data", str(folder),
                                      "--crappifier", "{kind: camera, photons: 30}", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "PSNR normalised" in result.output and "bicubic" in result.output and "FRC" in result.output
    doc = json.loads(out.read_text())
    assert doc["crappifier"]["kind"] == "camera" and doc["crappifier"]["photons"] == 30
    assert set(doc["summary"]) == {"model", "baseline", "delta"} and doc["machine"]["cores"]
    assert len(doc["items"]) == 2
    bad = CliRunner().invoke(app, ["evaluate", "--model", str(model), "--data", str(tmp_path / "nope")])
    assert bad.exit_code != 0 and "neither a built-in" in str(bad.exception)


@needs_real
def test_fmd_holdout_raw_input_scores(tmp_path):
    """The raw-input baseline on FMD fields 11-13 equals PSNR of raw vs 50-frame mean (8-bit range)."""
    from live_pssr import metrics
    from live_pssr.evaluate import evaluate

    model = _tiny_model(tmp_path / "dn.safetensors", 1)
    res = evaluate(str(model), "fmd-holdout", max_images=3, progress=False)
    pairs = datasets.fmd_pairs([11, 12, 13])
    expected = [metrics.psnr(raw, gt, 255) for raw, gt in pairs]
    assert [r["baseline"]["psnr"] for r in res["items"]] == pytest.approx(expected)
    assert all(31 < p < 36 for p in expected)


# ----------------------------------------------------------------------------------------------
# trust signals: the consistency check and TTA judged against the truth (issue 10)


def test_tile_rank_correlation_known_values():
    from live_pssr.metrics import tile_rank_correlation

    rng = np.random.default_rng(0)
    error = rng.random((64, 96))
    coarse = error.reshape(16, 4, 24, 4).mean(axis=(1, 3))  # the same regions, 4x coarser
    assert tile_rank_correlation(coarse, error, 4, 4) == pytest.approx(1.0)
    assert tile_rank_correlation(-coarse, error, 4, 4) == pytest.approx(-1.0)
    assert tile_rank_correlation(error, error, 8) == pytest.approx(1.0)
    assert np.isnan(tile_rank_correlation(np.ones((16, 24)), error, 4, 4))  # a flat map ranks nothing
    assert np.isnan(tile_rank_correlation(coarse, error, 12, 4))  # 2 tiles: too few
    with pytest.raises(ValueError, match="scale"):
        tile_rank_correlation(coarse, error, 4, 2)


def _independent_rank_corr(score_map, pred, target, tile, scale):
    from scipy import stats

    from live_pssr.metrics import normalize_pair

    p, t = normalize_pair(pred, target)
    err = np.abs(p - t)
    ny, nx = score_map.shape[0] // tile, score_map.shape[1] // tile
    a = [score_map[j * tile:(j + 1) * tile, i * tile:(i + 1) * tile].mean()
         for j in range(ny) for i in range(nx)]
    T = tile * scale
    b = [err[j * T:(j + 1) * T, i * T:(i + 1) * T].mean() for j in range(ny) for i in range(nx)]
    return stats.spearmanr(a, b).statistic


def test_evaluate_reports_the_trust_signals(tmp_path):
    """Flag rates of model, baseline and truth; the error map's and TTA spread's tile rank correlation
    with |pred' - truth'|, recomputed independently; the data's physics (the simulator's camera)."""
    from live_pssr.consistency import check_consistency, tta_disagreement
    from live_pssr.enhancer import Enhancer
    from live_pssr.evaluate import build_dataset, evaluate
    from live_pssr.modelio import load_model

    model = _tiny_model(tmp_path / "tiny.safetensors", 4)
    res = evaluate(str(model), "sim-timelapse", n_frames=3, size=48, progress=False, tta=True, tile_px=8)
    c = res["consistency"]
    assert c["psf_sigma_px"] == 0.0 and "simulator" in c["psf_source"]
    assert c["noise"].startswith("CameraModel")
    assert c["tile_px"] == 8 and c["truth"]["flag_rate"] == 0.0 and c["truth"]["checked"] == 3
    ds = build_dataset("sim-timelapse", 4, n_frames=3, size=48)
    enh = Enhancer(load_model(str(model)), out_dtype=np.float32)
    flags = []
    for item, row in zip(ds.items, res["items"], strict=True):
        raw = item.inputs[-1]
        out = enh.enhance(raw)
        r = check_consistency(raw, out, 4, 0.0, ds.camera)
        got = row["consistency"]["model"]
        assert got["flagged"] == r.flagged and got["score"] == pytest.approx(r.score)
        assert got["rank_corr"] == pytest.approx(_independent_rank_corr(r.error_map, out, item.target, 8, 4))
        assert row["consistency"]["truth"]["available"] and "rank_corr" not in row["consistency"]["truth"]
        t = tta_disagreement(enh.enhance_window, [raw], 8)
        assert row["tta"]["disagreement"] == pytest.approx(t.disagreement, rel=1e-4)
        assert row["tta"]["rank_corr"] == pytest.approx(
            _independent_rank_corr(t.spread, out, item.target, 32, 1), abs=1e-6)
        flags.append(r.flagged)
    assert c["model"]["flag_rate"] == pytest.approx(np.mean(flags))
    assert c["model"]["rank_corr"] == pytest.approx(np.mean([r["consistency"]["model"]["rank_corr"]
                                                             for r in res["items"]]))
    assert res["tta"]["transforms"] == [8]
    # a crappified folder: the crappifier's blur (PSSR's: sqrt(1.25) px at 4x); off on request
    folder = evaluate(str(model), _hq_folder(tmp_path / "hq"), progress=False)
    assert folder["consistency"]["psf_sigma_px"] == pytest.approx(math.sqrt(1.25))
    assert "pssr-fluo" in folder["consistency"]["psf_source"] and "tta" not in folder
    off = evaluate(str(model), _hq_folder(tmp_path / "hq"), progress=False, consistency=False)
    assert "consistency" not in off and "consistency" not in off["items"][0]
    assert off["summary"] == folder["summary"]


def test_trust_signal_settings_that_cannot_work(tmp_path):
    from live_pssr.errors import ConfigError
    from live_pssr.evaluate import evaluate

    model = _tiny_model(tmp_path / "tiny.safetensors", 4)
    bad = tmp_path / "cam.yaml"
    bad.write_text("kind: camera\nscale: 4\ngain: -2.0\noffset: 100\nread_noise: 1.5\n")
    for kw, words in (({"psf_sigma_px": -1.0}, "psf_sigma_px"), ({"camera": str(bad)}, "gain"),
                      ({"tile_px": 1}, "tile_px")):
        with pytest.raises(ConfigError, match=words) as err:
            evaluate(str(model), "sim-timelapse", n_frames=2, size=32, progress=False, **kw)
        assert err.value.hint


def test_evaluate_command_shows_the_trust_signals(tmp_path):
    from typer.testing import CliRunner

    from live_pssr.cli import app

    model = _tiny_model(tmp_path / "tiny.safetensors", 4)
    args = ["evaluate", "--model", str(model), "--data", "sim-timelapse", "--frames", "2", "--size", "32"]
    result = CliRunner().invoke(app, [*args, "--tta", "--tile-px", "8"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "consistency: flag rate" in out and "error map ~ true error" in out and "TTA spread" in out
    assert "the truth itself is flagged in 0 % of 2 image(s)" in out and "8x8 camera-pixel tiles" in out
    quiet = CliRunner().invoke(app, [*args, "--no-consistency"])
    assert quiet.exit_code == 0 and "consistency" not in quiet.output
    missing = CliRunner().invoke(app, [*args, "--camera", str(tmp_path / "nope.yaml")])
    assert missing.exit_code != 0 and "does not exist" in str(missing.exception)


def test_shipped_model_trust_signals_on_the_simulator():
    """The default model's output on the simulator: the truth is never flagged, the rank correlations
    are reported; TTA's spread ranks tiles by the true error (the consistency map only sees what the
    camera shows above its noise, which for this model is little: see its model card)."""
    from live_pssr.evaluate import evaluate

    res = evaluate("mito-sr4-fast", "sim-timelapse", n_frames=3, size=64, progress=False, tta=True)
    c = res["consistency"]
    assert c["truth"]["flag_rate"] == 0.0 and c["model"]["checked"] == 3
    assert -1 <= c["model"]["rank_corr"] <= 1 and -1 <= c["baseline"]["rank_corr"] <= 1
    assert res["tta"]["rank_corr"] > 0.3


def test_model_card_trust_section_and_kept_notes(tmp_path):
    from live_pssr.train.card import card_notes, render_card, trust_rows

    results = {"sim-timelapse": {
        "consistency": {"model": {"checked": 4, "flag_rate": 0.25, "score": 0.99, "rank_corr": 0.1},
                        "baseline": {"checked": 4, "flag_rate": 0.0, "score": 1.0, "rank_corr": 0.3},
                        "truth": {"checked": 4, "flag_rate": 0.0, "score": 0.995}},
        "tta": {"disagreement": 0.05, "rank_corr": 0.8}}}
    rows = trust_rows(results)
    assert rows["sim-timelapse"]["flag rate model / baseline / truth"] == "0.25 / 0.0 / 0.0 (4 images)"
    card = render_card(REPO / "models" / "mito-sr4-fast.safetensors", trust=rows)
    assert "## How far the output can be trusted" in card and "| sim-timelapse | 0.25 / 0.0 / 0.0" in card
    notes = card_notes(REPO / "models" / "mito-sr4-fast.md")
    assert notes.startswith("## Notes") and "## Limits" not in notes
    assert card_notes(tmp_path / "none.md") == ""


def test_class_holdout_scores_each_image_class(real_data, tiny_model_path, capsys, monkeypatch):
    """``class-holdout``: lysosomes and nuclei never seen in training, a summary per class."""
    from live_pssr import datasets
    from live_pssr.evaluate import evaluate

    from .test_cli_errors import run_cli

    found = datasets.class_holdout_images()
    assert {c for c, _, _ in found} == {"lysosomes", "nuclei"}
    trained = {name for name, _ in datasets.mito_train_named()} | set(datasets.MITO_TRAIN_FILES)
    assert not {n for _, n, _ in found} & trained
    assert set(datasets.CLASS_HOLDOUT_FMD_FIELDS) <= set(datasets.FMD_HOLDOUT_FIELDS)
    res = evaluate(tiny_model_path, "class-holdout", progress=False, consistency=False, max_images=3)
    assert [r["class"] for r in res["items"]] == ["lysosomes", "nuclei", "nuclei"]
    assert res["by_class"]["lysosomes"]["n_images"] == 1 and res["by_class"]["nuclei"]["n_images"] == 2
    nuc = [r for r in res["items"] if r["class"] == "nuclei"]
    mean = sum(r["model"]["psnr_norm"] for r in nuc) / 2
    assert abs(res["by_class"]["nuclei"]["model"]["psnr_norm"] - mean) < 1e-9
    code, text = run_cli(capsys, monkeypatch, "evaluate", "-m", tiny_model_path, "-d", "class-holdout",
                         "--no-consistency", "--max-images", "2")
    assert code == 0 and "lysosomes (1): PSNR normalised" in text and "nuclei (1)" in text


def test_card_rows_carry_each_image_class():
    """A result with ``by_class`` gives the card one row per class and metric."""
    from live_pssr.train.card import evaluation_rows

    part = {"n_images": 2, "model": {"psnr": 28.0, "psnr_norm": 30.0, "ssim_norm": 0.9},
            "baseline": {"psnr": 27.5, "psnr_norm": 27.0, "ssim_norm": 0.7},
            "delta": {"psnr": 0.5, "psnr_norm": 3.0, "ssim_norm": 0.2}}
    res = {"baseline": "bicubic", "summary": {"model": {}, "baseline": {}, "delta": {}},
           "by_class": {"nuclei": part}}
    rows = evaluation_rows("unused", ["class-holdout"], results={"class-holdout": res})
    assert rows["class-holdout: nuclei (2) psnr_norm"] == {"model": 30.0, "bicubic": 27.0, "delta": 3.0}
    assert rows["class-holdout: nuclei (2) ssim_norm"]["delta"] == 0.2
    assert rows["class-holdout: nuclei (2) psnr"] == {"model": 28.0, "bicubic": 27.5, "delta": 0.5}  # raw too
    assert "class-holdout: nuclei (2) ssim" not in rows  # a metric the result lacks gets no row
