"""Known failure modes: each class's worst tile against bicubic, its picture and the card section."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from live_pssr.evaluate import EvalItem, EvalSet
from live_pssr.train.failures import draw, find_failures, worst_tiles

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "mito-sr4-fast.safetensors"


def _structure(size: int, seed: int) -> np.ndarray:
    """Filaments and spots on a dark background (float32, a few hundred counts)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    for _ in range(40):
        y, x = rng.integers(0, size, 2)
        img[y, max(0, x - 6): x + 6] += 400
    img[rng.integers(0, size, 30), rng.integers(0, size, 30)] += 800
    return gaussian_filter(img, 1.5) + 20


def test_worst_tile_is_where_the_model_loses_to_bicubic() -> None:
    rng = np.random.default_rng(0)
    truth = _structure(128, 0)
    truth[:32, :32] = 20.0  # one background tile: never ranked
    base = truth + rng.normal(0, 10, truth.shape).astype(np.float32)
    pred = truth + rng.normal(0, 2, truth.shape).astype(np.float32)
    pred[32:64, 64:96] += rng.normal(0, 40, (32, 32)).astype(np.float32)  # the model's failure
    ranked = worst_tiles(pred, base, truth, 32)
    ratio, y, x, psnr_model, psnr_base = ranked[0]
    assert (y, x) == (32, 64) and ratio > 1 and psnr_model < psnr_base
    assert (0, 0) not in {(r[1], r[2]) for r in ranked} and len(ranked) == 15
    assert all(r[0] < 1 for r in ranked[1:])  # elsewhere the model beats bicubic
    assert worst_tiles(pred[:16, :16], base[:16, :16], truth[:16, :16], 32) == []


def _eval_set() -> EvalSet:
    """Two classes of synthetic images, 4x area-downsampled with Poisson noise."""
    items = []
    for i, cls in enumerate(["filaments", "filaments", "spots"]):
        hi = _structure(256, i)
        lo = hi.reshape(64, 4, 64, 4).mean(axis=(1, 3))
        noisy = np.random.default_rng(i).poisson(lo).astype(np.float32)
        items.append(EvalItem(f"img{i}", [noisy], hi, image_class=cls))
    return EvalSet("synthetic", "test images", items)


def test_failure_figure_draws_each_class_worst_tile(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    from live_pssr.evaluate import evaluate, upsample_bicubic
    from live_pssr.modelio import load_model

    model = load_model(MODEL)
    ds = _eval_set()
    failures = find_failures(model, [ds], tile_px=64)
    assert [(f.data, f.image_class) for f in failures] == [("synthetic", "filaments"), ("synthetic", "spots")]
    outs: dict[str, np.ndarray] = {}
    evaluate(model, ds, progress=False, consistency=False, on_item=lambda it, o: outs.__setitem__(it.name, o))
    for f in failures:
        assert f.size == 64 and f.baseline == "bicubic"
        assert list(f.crops) == ["raw input", "bicubic", "model", "truth", "|model - truth|"]
        assert all(c.shape == (64, 64) for c in f.crops.values())
        # the reported tile is the worst over every image of its class
        mine = [it for it in ds.items if it.image_class == f.image_class]
        gaps = {it.name: worst_tiles(outs[it.name], upsample_bicubic(it.inputs[-1], 4), it.target, 64)[0]
                for it in mine}
        name, top = min(gaps.items(), key=lambda kv: kv[1][3] - kv[1][4])
        assert (f.image, f.y, f.x) == (name, top[1], top[2])
        assert f.gap_db == pytest.approx(top[3] - top[4])
        row = f.row()
        assert row["model - bicubic (dB)"] == round(f.gap_db, 2) and isinstance(row["PSNR model"], float)
    png = draw(failures, tmp_path / "f.png", "title")
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300
    with pytest.raises(ValueError, match="no failures"):
        draw([], tmp_path / "none.png")


@pytest.mark.skipif(not (REPO.parent / "shared" / "data" / "real").is_dir(), reason="real data absent")
def test_card_cli_adds_the_failure_section_and_picture(tmp_path: Path) -> None:
    from live_pssr.train.card import main

    model = tmp_path / "mito-sr4-fast.safetensors"
    shutil.copy(MODEL, model)
    main([str(model), "--failures", "mito-holdout"])
    card = model.with_suffix(".md").read_text()
    png = tmp_path / "mito-sr4-fast-failures.png"
    assert png.is_file() and png.stat().st_size > 10_000
    assert "## Known failure modes" in card
    assert "![worst tile per held-out class](mito-sr4-fast-failures.png)" in card
    assert "| mito-holdout | mitochondria |" in card and "model - bicubic (dB)" in card


def test_no_failure_when_every_image_is_smaller_than_a_tile(tmp_path: Path) -> None:
    from live_pssr.train.failures import failure_figure

    hi = _structure(96, 0)
    lo = np.random.default_rng(0).poisson(hi.reshape(24, 4, 24, 4).mean(axis=(1, 3))).astype(np.float32)
    ds = EvalSet("small", "24x24 inputs", [EvalItem("s", [lo], hi, image_class="spots")])
    assert failure_figure(MODEL, [ds], tmp_path / "f.png") == []  # 128-px tiles do not fit
    assert not (tmp_path / "f.png").exists()
    assert len(failure_figure(MODEL, [ds], tmp_path / "g.png", tile_px=32)) == 1


def test_denoising_model_failures_compare_with_the_raw_frame(tmp_path: Path) -> None:
    """A 1x model's baseline is the raw frame: no bicubic column, and the card says so."""
    from live_pssr.train.card import render_card

    hi = _structure(128, 3)
    noisy = np.random.default_rng(3).poisson(hi).astype(np.float32)
    ds = EvalSet("noisy", "1x", [EvalItem("n", [noisy], hi)])  # no image class: one "all" row
    denoise = REPO / "models" / "denoise-fast.safetensors"
    (f,) = find_failures(denoise, [ds])
    assert f.baseline == "raw input" and f.image_class == "all" and f.size == 128
    assert list(f.crops) == ["raw input", "model", "truth", "|model - truth|"]
    assert "model - raw input (dB)" in f.row()
    card = render_card(denoise, failures=[f.row()], failures_png="x.png")
    assert "does worst against the raw input" in card and "raw input, model, truth and" in card
    assert "bicubic" not in card.split("## Known failure modes")[1].split("##")[0]
