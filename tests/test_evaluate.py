"""Data registry and image loading, then evaluation (library and `live-pssr evaluate`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from live_pssr import datasets
from live_pssr.datasets import DataError, DataMissingError, load_image_folder, load_image_stack

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
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
