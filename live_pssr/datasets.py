"""Real data in one place: where it lives, which images train and which are held out, and loading.

The real fluorescence images used to develop, train and evaluate live-pssr sit in
``../shared/data/real`` beside the repository (or ``$LIVE_PSSR_REAL_DATA``); a user's clone has
none of it, so :func:`real_data_dir` returns None there and the accessors raise
:class:`DataMissingError` with the fix. Nothing else in the package needs this folder.

Splits (whole images are held out, so no crop of a held-out image is ever seen in training):

* mitochondria, high SNR, for crappify-and-restore training and the ``mito-holdout`` evaluation:
  train = ``BPAE_mito_bian.tif`` (680x1100 widefield) and the 4 brightest, at least 3 planes
  (0.6 um) apart, planes of each yeast spinning-disk z-stack ``mito_yeast_*0{1,2}.tif``;
  held out = the HeLa mitochondria channel (``hela-cells...tif[..., 1]``, cropped to rows
  ``:472`` to drop the black text patch at the bottom right) and ``mito_mina_test_image.tif``.
  ``class-holdout`` (other structures, for per-class scores): the HeLa sample's lysosome and
  nuclei channels and the 50-frame means of FMD fields 11, 14, 17 and 20 (held out above).
  Each image is returned as float32 with its dark level (1st percentile) subtracted and clipped
  at 0, so zero means "no fluorescence" whatever the camera offset was (the yeast stacks sit on an
  offset of ~1800 ADU, which PSSR's max-normalised crappifier would otherwise read as signal).
* FMD confocal BPAE nuclei (Zhang et al. 2019): 20 fields, one raw frame and the 50-frame mean
  each; fields 1-10 train, 11-20 held out (``fmd-holdout``). Returned as float32 in the
  original 8-bit units (no background subtraction: the pair must keep its intensity relation).

:func:`load_image_stack` is the one reader for user images (tif, OME-Zarr/zarr v3, npy) with
errors that name the file and the fix; :func:`load_image_folder` turns a file or folder into a list
of named 2-D images (planes of stacks included).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import LivePSSRError

REAL_DATA_ENV = "LIVE_PSSR_REAL_DATA"

MITO_TRAIN_FILES = (
    "BPAE_mito_bian.tif",
    "mito_yeast_ZYX_mitographtools_BuddingYeastGlucose01.tif",
    "mito_yeast_ZYX_mitographtools_BuddingYeastGlucose02.tif",
)
HELA_FILE = "hela-cells_lyso-mito-nuclei_imagej-sample_bian.tif"
MITO_HOLDOUT_FILES = (HELA_FILE, "mito_mina_test_image.tif")
#: HeLa rows kept (the text patch starts at row 476); 472 is a multiple of 4 and 8.
HELA_ROWS = 472
YEAST_PLANES, YEAST_MIN_SPACING = 4, 3

FMD_RAW = "fmd_confocal_bpae_nuclei_raw_frame0_20fov.tif"
FMD_GT = "fmd_confocal_bpae_nuclei_gt_avg50_20fov.tif"
FMD_RAW50 = "fmd_confocal_bpae_nuclei_fov{field:02d}_raw50.tif"
FMD_TRAIN_FIELDS = tuple(range(1, 11))
FMD_HOLDOUT_FIELDS = tuple(range(11, 21))

#: pixel sizes (um) where the source documents them (image names as returned by the accessors).
PIXEL_SIZE_UM: dict[str, float] = {
    "mito_mina_test_image": 0.1,
    "mito_yeast_ZYX_mitographtools_BuddingYeastGlucose01": 0.056,
    "mito_yeast_ZYX_mitographtools_BuddingYeastGlucose02": 0.056,
    "lyso_hela_live_TYX_bohuang": 0.129,
}

IMAGE_SUFFIXES = (".tif", ".tiff", ".zarr", ".npy")


class DataError(LivePSSRError, ValueError):
    """An image file or folder cannot be used (format, dimensionality, values)."""


class DataMissingError(DataError, FileNotFoundError):
    """A data file or the real-data folder is not there."""


# ----------------------------------------------------------------------------------------------
# the real-data folder


def real_data_dir() -> Path | None:
    """The real-data folder: ``$LIVE_PSSR_REAL_DATA`` or ``../shared/data/real``; None if absent."""
    env = os.environ.get(REAL_DATA_ENV)
    cand = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
    return cand if cand.is_dir() else None


def real_data_file(name: str) -> Path:
    """Path of one file of the real-data folder (raises :class:`DataMissingError` when absent)."""
    root = real_data_dir()
    if root is None:
        raise DataMissingError(
            "the real-data folder is not available (looked at $LIVE_PSSR_REAL_DATA and ../shared/data/real)",
            f"set {REAL_DATA_ENV} to the folder holding the real images, or use your own data "
            "(a folder of tif/zarr images) instead of the built-in data sets",
        )
    path = root / name
    if not path.is_file():
        raise DataMissingError(f"real-data file {path} is missing",
                               f"restore {name} into {root} (see its README.md)")
    return path


@functools.lru_cache(maxsize=16)
def _read_real(name: str) -> np.ndarray:
    import tifffile

    arr = tifffile.imread(real_data_file(name))
    arr.flags.writeable = False
    return arr


def dark_subtracted(image: np.ndarray, percentile: float = 1.0) -> np.ndarray:
    """float32 copy with the ``percentile`` dark level subtracted and negatives clipped to 0."""
    img = np.asarray(image, dtype=np.float32)
    return np.maximum(img - np.float32(np.percentile(img, percentile)), 0, dtype=np.float32)


def brightest_planes(stack: np.ndarray, n: int = YEAST_PLANES, spacing: int = YEAST_MIN_SPACING) -> list[int]:
    """Indices of the ``n`` planes with most signal (99.9th percentile - median), ``spacing`` apart."""
    flat = stack.reshape(stack.shape[0], -1).astype(np.float64)
    signal = np.percentile(flat, 99.9, axis=1) - np.median(flat, axis=1)
    chosen: list[int] = []
    for z in np.argsort(signal)[::-1]:
        if all(abs(int(z) - c) >= spacing for c in chosen):
            chosen.append(int(z))
        if len(chosen) == n:
            break
    return sorted(chosen)


def mito_train_named(files: Iterable[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """Training mitochondria images with names (``file`` or ``file[z=..]``), dark-subtracted float32.

    ``files``: a subset of :data:`MITO_TRAIN_FILES` (None = all); stacks give their brightest planes.
    """
    wanted = MITO_TRAIN_FILES if files is None else tuple(files)
    unknown = [f for f in wanted if f not in MITO_TRAIN_FILES]
    if unknown:
        raise DataError(f"{unknown} are not mito training files", f"choose from {list(MITO_TRAIN_FILES)}")
    out: list[tuple[str, np.ndarray]] = []
    for name in wanted:
        arr = _read_real(name)
        if arr.ndim == 2:
            out.append((Path(name).stem, dark_subtracted(arr)))
        else:
            out += [(f"{Path(name).stem}[z={z}]", dark_subtracted(arr[z])) for z in brightest_planes(arr)]
    return out


def mito_train_images(files: Iterable[str] | None = None) -> list[np.ndarray]:
    """float32 high-SNR mitochondria images for training (never the held-out ones); see above."""
    return [img for _, img in mito_train_named(files)]


def mito_holdout_images() -> list[tuple[str, np.ndarray]]:
    """``(name, image)`` of the held-out mitochondria images (float32, dark-subtracted)."""
    hela = _read_real(HELA_FILE)[:HELA_ROWS, :, 1]
    return [
        ("hela-cells_mito", dark_subtracted(hela)),
        ("mito_mina_test_image", dark_subtracted(_read_real(MITO_HOLDOUT_FILES[1]))),
    ]


#: ``class-holdout``: image classes other than mitochondria, never in any training source: the
#: HeLa sample's lysosome and nuclei channels and FMD's held-out nuclei fields (their 50-frame means)
CLASS_HOLDOUT_FMD_FIELDS = (11, 14, 17, 20)


def class_holdout_images() -> list[tuple[str, str, np.ndarray]]:
    """``(image class, name, image)`` of held-out non-mitochondria images (float32, dark-subtracted).

    The HeLa sample's other two channels (cropped like its mitochondria channel) and the 50-frame
    means of four held-out FMD nuclei fields (8-bit units, dark-subtracted like the others).
    """
    hela = _read_real(HELA_FILE)[:HELA_ROWS]
    out = [("lysosomes", "hela-cells_lysosomes", dark_subtracted(hela[:, :, 0])),
           ("nuclei", "hela-cells_nuclei", dark_subtracted(hela[:, :, 2]))]
    gt = _read_real(FMD_GT)
    out += [("nuclei", f"fmd_nuclei_field{f:02d}", dark_subtracted(gt[f - 1].astype(np.float32)))
            for f in CLASS_HOLDOUT_FMD_FIELDS]
    return out


def pixel_size_um(name: str) -> float | None:
    """Documented pixel size (um) of a real image by its name (None when unknown)."""
    base = name.split("[")[0]
    for key, size in PIXEL_SIZE_UM.items():
        if base.startswith(key):
            return size
    return None


def _check_fields(fields: Iterable[int]) -> list[int]:
    out = [int(f) for f in fields]
    bad = [f for f in out if not 1 <= f <= 20]
    if bad:
        raise DataError(f"FMD field(s) {bad} do not exist", "fields are numbered 1-20 "
                        f"(train: {FMD_TRAIN_FIELDS[0]}-{FMD_TRAIN_FIELDS[-1]}, "
                        f"held out: {FMD_HOLDOUT_FIELDS[0]}-{FMD_HOLDOUT_FIELDS[-1]})")
    return out


def fmd_pairs(fields: Iterable[int] = FMD_TRAIN_FIELDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(raw_frame, avg50)`` float32 pairs (8-bit units) of FMD fields (1-based)."""
    raw, gt = _read_real(FMD_RAW), _read_real(FMD_GT)
    return [(raw[f - 1].astype(np.float32), gt[f - 1].astype(np.float32)) for f in _check_fields(fields)]


def fmd_raw50(field: int) -> np.ndarray:
    """All 50 raw uint8 repeats (T, Y, X) of FMD field 1 or 2 (a static sample: noise only)."""
    if field not in (1, 2):
        raise DataError(f"FMD field {field} has no 50-frame stack here", "use field 1 or 2")
    return _read_real(FMD_RAW50.format(field=field))


# ----------------------------------------------------------------------------------------------
# reading user images


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or any((path / m).exists() for m in ("zarr.json", ".zarray", ".zgroup"))


def _read_zarr(path: Path) -> np.ndarray:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
        trail = []
        while not hasattr(node, "dtype"):  # a group: OME-Zarr image -> level "0"; collection -> image "0"
            keys = sorted(node.keys())
            if "0" not in keys:
                raise DataError(f"zarr group {path}/{'/'.join(trail)} has no array '0' (holds: {keys})",
                                "pass the path of the image array itself, e.g. STORE/0/0")
            trail.append("0")
            node = node["0"]
        return np.asarray(node[...])
    except DataError:
        raise
    except Exception as err:  # zarr raises many types for corrupt/unknown stores
        raise DataError(f"cannot read zarr store {path} ({type(err).__name__}: {err})",
                        "check it is a zarr v2/v3 array or OME-Zarr image (open it with zarr.open)") from err


def load_image_stack(path: str | Path, ndim: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """Read an image or stack from tif, zarr/OME-Zarr or npy, validated.

    Singleton axes in front of the last two (OME-Zarr's t/c/z of size 1) are dropped. Raises
    :class:`DataMissingError` for a missing file and :class:`DataError` for an unsupported kind,
    non-numeric data, NaN/Inf values, an all-constant array or a dimensionality outside ``ndim``.
    """
    path = Path(path)
    if not path.exists():
        raise DataMissingError(f"image file {path} does not exist",
                               "check the path (and the working directory)")
    suffix = path.suffix.lower()
    if path.is_dir() and _is_zarr(path) or suffix == ".zarr":
        arr = _read_zarr(path)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        try:
            arr = tifffile.imread(path)
        except Exception as err:
            raise DataError(f"cannot read TIFF {path} ({err})",
                            "re-export the image as a TIFF stack") from err
    elif suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise DataError(f"cannot read {path} as a plain numpy array ({err})",
                            "save numeric arrays only (np.save without objects)") from err
    else:
        raise DataError(f"{path} is not a supported image ({suffix or 'folder'})",
                        "use TIFF (.tif/.tiff), zarr/OME-Zarr (.zarr) or numpy (.npy) files")
    return check_image_array(arr, path, ndim)


def check_image_array(arr: np.ndarray, path: str | Path, ndim: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """Validate an image array read from ``path`` (see :func:`load_image_stack`); returns it squeezed."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "uif":
        raise DataError(f"{path} holds {arr.dtype} data, not a numeric image",
                        "save the image as integer or floating-point pixels")
    while arr.ndim > 2 and arr.ndim > min(ndim) and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 4 and 1 in arr.shape[:2]:
        arr = arr.reshape(-1, *arr.shape[-2:])
    if arr.ndim not in ndim:
        rgb = arr.ndim == 3 and arr.shape[-1] <= 4 < min(arr.shape[:2])
        want = " or ".join({2: "2-D (Y, X)", 3: "3-D (T or Z, Y, X)"}.get(n, f"{n}-D") for n in ndim)
        raise DataError(
            f"{path} has {arr.ndim} dimensions {arr.shape}; expected {want}",
            "this looks like a multi-channel (channels-last) image: save one channel per file"
            if rgb else "save one channel as a single image or a T/Z stack",
        )
    if arr.ndim == 3 and arr.shape[-1] <= 4 < min(arr.shape[:2]):
        raise DataError(f"{path} has shape {arr.shape}: channels last (RGB?), not a stack of planes",
                        "save one channel per file (e.g. tifffile.imwrite(out, img[..., 1]))")
    if min(arr.shape[-2:]) < 8:
        raise DataError(f"{path} is only {arr.shape[-2:]} pixels", "use images of at least 8x8 pixels")
    if arr.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise DataError(f"{path} contains {bad} NaN or Inf pixel(s)",
                            "replace them (e.g. np.nan_to_num) or crop them out, then save again")
    if arr.size and arr.min() == arr.max():
        raise DataError(f"{path} is constant (every pixel is {arr.flat[0]})",
                        "this is not an image of a sample: check the export (blank channel? wrong plane?)")
    return arr


def load_image_folder(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """Named float32 2-D images from a file (planes of a stack) or a folder of files.

    A folder is read in name order; non-image files are ignored; constant planes of a stack are
    reported as errors (they cannot be normalised). Raises :class:`DataError` for a folder with no
    usable images.
    """
    path = Path(path)
    if not path.exists():
        raise DataMissingError(f"data path {path} does not exist",
                               "pass a folder of images, an image file, or a built-in data set name")
    if path.is_dir() and not _is_zarr(path):
        files = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise DataError(f"folder {path} holds no usable images",
                            f"put {', '.join(IMAGE_SUFFIXES)} images of the sample (2-D or stacks) in it")
    else:
        files = [path]
    out: list[tuple[str, np.ndarray]] = []
    for f in files:
        arr = load_image_stack(f).astype(np.float32)
        planes = [(f.stem, arr)] if arr.ndim == 2 else [(f"{f.stem}[{i}]", p) for i, p in enumerate(arr)]
        for name, plane in planes:
            if plane.min() == plane.max():
                raise DataError(f"{f} plane {name} is constant", "remove blank planes from the stack")
            out.append((name, plane))
    return out
