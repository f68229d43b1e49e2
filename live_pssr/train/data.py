"""Training pairs: (low-quality input frames, high-quality target), made on the fly.

Sources (one class each, chosen by the config's ``kind``):

- :class:`SimPairs`: the simulated microscope. A few specimens (seeds) at log-uniform laser powers
  are rendered once; a sample is ``frame(t-F+1..t)`` (or centred on ``t``) with ``ground_truth(t)``.
- :class:`StillPairs`: high-quality still images (the real mito set, other real high-SNR files, or
  the user's folders) degraded on the fly by a crappifier (``crappify.make_crappifier``). PSSR's
  crappifiers are not local (they scale by the image maximum), so whole images are crappified
  into a small pool of copies that is renewed every ``refresh`` samples, and crops are cut from
  it; a multi-frame input takes ``in_frames`` independent copies (the older ones optionally
  shifted by a sub-pixel amount).
- :class:`FMDPairs`: real raw/avg50 pairs (denoising). An FMD source with a crappifier is a
  :class:`StillPairs` of the 50-frame means instead.

Normalisation is what inference does: each input frame is normalised with the percentile range
``(lo, hi)`` of its *whole* frame (not of the crop: a crop of background would blow the noise up).
The target (``data.target_norm: input``, the default) is first put into the input's intensity
units by a least-squares fit ``input ~ alpha * downsample(target) + beta`` over the whole image
(the simulator's and camera models' offset and gain; for PSSR's crappifier ~1 and the positive
bias its clipped noise adds to dark areas; FMD's raw and mean share units and are used as they
are), then normalised with the *input's* ``(lo, hi)``: of the newest frame for multi-frame
inputs, as the Enhancer maps outputs back with the newest frame's range. So every source asks
the same thing of the network -- the noise-free image as this input's camera/degradation would
record it -- and enhanced images come out in the data's units. (Targets that instead drop the
PSSR crappifier's dark bias teach the network to darken backgrounds, which then darkens unbiased
camera data: measured, normalised PSNR on the simulator fell from 34 to 27 dB.)
``target_norm: own`` normalises the target by its own percentiles instead (scale-free, CSBDeep
style).

Augmentation (``data.augment``, ``data.intensity``, ``data.zoom``): flips and 90-degree rotations
of the pair; a resampling of each still image to a coarser pixel size, a gamma and out-of-focus
haze (per refresh period, before crappification, so noise follows the new sampling, contrast and
background); an affine ``a * v + b`` on the normalised input and target together. Crappifier
randomisation is the crappifier's own (``crappify.RandomizedCrappifier``): every degraded copy
draws its parameters from the copy's seeded generator.

:class:`PairDataset` is map-style: sample ``i`` is drawn from ``np.random.default_rng((seed, i))``,
so a run is reproducible, a resumed run continues with the very samples it would have seen, and
``DistributedSampler`` can split indices across GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..normalize import percentile_range
from .config import (
    Config,
    CrappifiedSourceBase,
    FMDSourceConfig,
    ImagesSourceConfig,
    MitoSourceConfig,
    RealSourceConfig,
    SimSourceConfig,
)

Pair = tuple[np.ndarray, np.ndarray]  # x: (F, h, w) float32, y: (1, h*s, w*s) float32


class PairSource(Protocol):
    """Anything that draws normalised training pairs."""

    name: str

    def sample(self, rng: np.random.Generator, crop: int, index: int = 0) -> Pair:
        """A normalised pair; ``index`` (the sample's number) lets sources refresh data over time."""
        ...


def normalize_frame(frame: np.ndarray, norm: tuple[float, float]) -> tuple[np.ndarray, float, float]:
    """A whole input frame normalised by its own percentiles, as the live Enhancer does."""
    lo, hi = percentile_range(frame, *norm)
    return ((frame.astype(np.float32) - lo) / (hi - lo)).astype(np.float32), lo, hi


def area_downsample(img: np.ndarray, s: int) -> np.ndarray:
    """Mean over ``s x s`` blocks (crops to a multiple of ``s``)."""
    if s == 1:
        return img
    h, w = img.shape[0] // s, img.shape[1] // s
    return img[: h * s, : w * s].reshape(h, s, w, s).mean(axis=(1, 3))


def fit_intensity(frame: np.ndarray, target: np.ndarray, s: int) -> tuple[float, float]:
    """``(alpha, beta)`` with ``frame ~ alpha * area_downsample(target) + beta`` (least squares).

    The noise-free target is the regressor, so noise in the frame does not bias the slope. This
    maps the target into the input's units: a camera frame's offset and gain for the simulator,
    ~(1, 0) for crappifiers that keep the image's units.
    """
    d = area_downsample(np.asarray(target, np.float64), s)
    f = np.asarray(frame, np.float64)[: d.shape[0], : d.shape[1]]
    d = d[: f.shape[0], : f.shape[1]]
    dm, fm = d.mean(), f.mean()
    var = float(((d - dm) ** 2).mean())
    alpha = float(((d - dm) * (f - fm)).mean()) / var if var > 0 else 0.0
    if not math.isfinite(alpha) or alpha <= 0:  # no usable relation: match the percentile ranges
        flo, fhi = np.percentile(f, (1, 99.8))
        tlo, thi = np.percentile(d, (1, 99.8))
        alpha = float((fhi - flo) / max(thi - tlo, 1e-12))
        return alpha, float(flo - alpha * tlo)
    return alpha, float(fm - alpha * dm)


def target_affine(
    mode: str,
    target: np.ndarray,
    in_range: tuple[float, float],
    fit: tuple[float, float],
    norm: tuple[float, float],
) -> tuple[float, float]:
    """``(a, b)`` so that ``a * target + b`` is the normalised training target.

    ``mode="input"``: the target in the input's units (``alpha * target + beta``) normalised with
    the input frame's ``(lo, hi)`` -- the network's output, mapped back with the input's range
    like the Enhancer does, then lands in the target's intensity scale. ``mode="own"``: the target
    normalised by its own percentiles (scale-free, CSBDeep style).
    """
    if mode == "own":
        tlo, thi = percentile_range(target, *norm)
        return 1.0 / (thi - tlo), -tlo / (thi - tlo)
    lo, hi = in_range
    alpha, beta = fit
    return alpha / (hi - lo), (beta - lo) / (hi - lo)


def window_indices(t: int, in_frames: int, target_frame: str) -> list[int]:
    """Frame indices of the input window whose output belongs to frame ``t``."""
    if target_frame == "newest":
        return list(range(t - in_frames + 1, t + 1))
    half = in_frames // 2
    return list(range(t - half, t + half + 1))


def to_unit(img: np.ndarray) -> np.ndarray:
    """Scale a high-quality image to [0, 1] by its maximum (after lifting negatives to 0), float32.

    PSSR's crappifier sets its noise relative to the image maximum (its 8-bit data / 255); no
    clipping here, so the noise level is exactly what crappifying the raw image gives (as the
    ``mito-holdout`` evaluation does).
    """
    img = np.asarray(img, dtype=np.float32)
    lo = min(0.0, float(img.min()))
    hi = float(img.max()) - lo
    return ((img - lo) / (hi if hi > 0 else 1.0)).astype(np.float32)


class SimPairs:
    """Pairs from the simulated microscope (pre-rendered specimens, whole-frame normalisation)."""

    def __init__(
        self,
        cfg: SimSourceConfig,
        upscale: int,
        in_frames: int,
        target_frame: str,
        norm: tuple[float, float],
        target_norm: str = "input",
        seed_offset: int = 0,
        sequences: int | None = None,
    ) -> None:
        from ..sim import MicroscopeConfig, SimulatedMicroscope

        self.name = "sim"
        self.s, self.f, self.target_frame, self.target_norm = upscale, in_frames, target_frame, target_norm
        n_seq = sequences or cfg.sequences
        rng = np.random.default_rng(cfg.seed + seed_offset)
        lo_p, hi_p = cfg.laser_power
        self.frames: list[np.ndarray] = []  # (T_all, h, w) normalised inputs
        self.ranges: list[list[tuple[float, float]]] = []  # (lo, hi) of every frame
        self.truths: list[np.ndarray] = []  # (T, H, W) raw ground truth for the T target times
        self.fits: list[list[tuple[float, float]]] = []  # frame ~ alpha * down(truth) + beta per target
        self.powers: list[float] = []
        pad_before = in_frames - 1 if target_frame == "newest" else in_frames // 2
        pad_after = 0 if target_frame == "newest" else in_frames // 2
        self.offset = pad_before
        for k in range(n_seq):
            power = float(math.exp(rng.uniform(math.log(lo_p), math.log(hi_p))))
            mc = MicroscopeConfig(
                height=cfg.height,
                width=cfg.width,
                upscale=upscale,
                laser_power=power,
                seed=cfg.seed + seed_offset + k,
                **cfg.microscope,
            )
            mic = SimulatedMicroscope(mc)
            frames, ranges, truths, fits = [], [], [], []
            for t in range(pad_before + cfg.timepoints + pad_after):
                if pad_before <= t < pad_before + cfg.timepoints:
                    frame, truth = mic.acquire(t)
                    truths.append(truth.astype(np.float32))
                    fits.append(fit_intensity(frame, truth, upscale))
                else:
                    frame = mic.frame(t)
                x, lo, hi = normalize_frame(frame, norm)
                frames.append(x)
                ranges.append((lo, hi))
            self.frames.append(np.stack(frames))
            self.ranges.append(ranges)
            self.truths.append(np.stack(truths))
            self.fits.append(fits)
            self.powers.append(power)
        self.norm = norm

    def sample(self, rng: np.random.Generator, crop: int, index: int = 0) -> Pair:
        k = int(rng.integers(len(self.frames)))
        t = int(rng.integers(self.truths[k].shape[0]))
        frames, truth = self.frames[k], self.truths[k][t]
        h, w = frames.shape[1:]
        c = min(crop, h, w)
        i, j = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
        idx = [self.offset + n for n in window_indices(t, self.f, self.target_frame)]
        x = frames[idx, i : i + c, j : j + c]
        s = self.s
        a, b = target_affine(self.target_norm, truth, self.ranges[k][idx[-1]], self.fits[k][t], self.norm)
        y = truth[None, i * s : (i + c) * s, j * s : (j + c) * s] * a + b
        return x, y.astype(np.float32)


class StillPairs:
    """High-quality still images crappified on the fly, through a small refreshed pool.

    PSSR's crappifiers are not local (they rescale by the image maximum), so each whole image is
    crappified, never a crop: per image and *period* (``refresh`` samples) ``versions``
    independently degraded copies are made (seeded by ``(seed, image, version, period)``, memoised)
    and crops are cut from them. Every period brings fresh noise; each copy is normalised with its
    own whole-frame percentiles, exactly as a live frame is. Multi-frame inputs take ``in_frames``
    distinct copies (the non-target ones optionally shifted by up to ``mf_shift`` low-res pixels).
    """

    def __init__(
        self,
        name: str,
        images: Sequence[np.ndarray],
        crappifier_cfg: dict,
        upscale: int,
        in_frames: int,
        target_frame: str,
        norm: tuple[float, float],
        target_norm: str = "input",
        mf_shift: float = 0.0,
        seed: int = 0,
        refresh: int = 2048,
        intensity: str = "fit",
        gamma: tuple[float, float] = (1.0, 1.0),
        zoom: tuple[float, float] = (1.0, 1.0),
        haze: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        from ..crappify import make_crappifier

        self.name = name
        self.crap = make_crappifier(dict(crappifier_cfg))
        self.intensity = intensity
        if self.crap.scale != upscale:
            raise ConfigError(
                f"source {name}: crappifier scale {self.crap.scale} differs from upscale {upscale}",
                "set the crappifier's scale (or the calibration's) to model.upscale",
            )
        self.s, self.f, self.target_frame, self.mf_shift = upscale, in_frames, target_frame, mf_shift
        self.norm, self.target_norm, self.seed, self.refresh = norm, target_norm, seed, refresh
        self.versions = max(4, in_frames + 2)
        self.gamma = (float(gamma[0]), float(gamma[1]))
        self.zoom = (float(zoom[0]), float(zoom[1]))
        self.haze = (float(haze[0]), float(haze[1]))
        self._image_memo: dict[tuple[int, int], np.ndarray] = {}
        self.images: list[np.ndarray] = []
        for img in images:
            img = to_unit(img)
            h, w = img.shape
            h, w = h - h % upscale, w - w % upscale
            if min(h, w) < 4 * upscale:
                continue
            self.images.append(np.ascontiguousarray(img[:h, :w]))
        if not self.images:
            raise ConfigError(
                f"source {name}: no usable 2-D images (all smaller than {4 * upscale} px)",
                "point the source at larger high-quality images",
            )
        areas = np.array([im.size for im in self.images], dtype=np.float64)
        self.p = areas / areas.sum()
        self._memo: dict[
            tuple[int, int, int], tuple[np.ndarray, tuple[float, float], tuple[float, float]]
        ] = {}
        self._period = -1

    def image(self, k: int, period: int) -> np.ndarray:
        """High-quality image ``k`` as seen in ``period``: resampled, gamma'd, hazed (seeded) if asked."""
        (g_lo, g_hi), (z_lo, z_hi), (h_lo, h_hi) = self.gamma, self.zoom, self.haze
        if g_lo == g_hi == 1.0 and z_lo == z_hi == 1.0 and h_lo == h_hi == 0.0:
            return self.images[k]
        key = (k, period)
        if key not in self._image_memo:
            if len(self._image_memo) > 4 * len(self.images):
                self._image_memo.clear()
            img = self.images[k]
            if not z_lo == z_hi == 1.0:
                u = np.random.default_rng((self.seed, k, period, 78)).uniform(np.log(z_lo), np.log(z_hi))
                img = zoom_out(img, float(np.exp(u)), self.s)
            if not g_lo == g_hi == 1.0:
                u = np.random.default_rng((self.seed, k, period, 77)).uniform(np.log(g_lo), np.log(g_hi))
                img = (img ** float(np.exp(u))).astype(np.float32)
            if not h_lo == h_hi == 0.0:
                f = np.random.default_rng((self.seed, k, period, 79)).uniform(h_lo, h_hi)
                img = add_haze(img, float(f))
            self._image_memo[key] = img
        return self._image_memo[key]

    def _copy(
        self, k: int, v: int, period: int
    ) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
        """Degraded copy ``v`` of image ``k`` in ``period``: (normalised, (lo, hi), intensity fit)."""
        if period != self._period:
            self._memo.clear()
            self._period = period
        key = (k, v, period)
        if key not in self._memo:
            rng = np.random.default_rng((self.seed, k, v, period))
            hi_img = self.image(k, period)
            if v > 0 and self.mf_shift > 0:  # copy 0 is the unshifted (target-aligned) one
                from scipy.ndimage import shift as nd_shift

                d = rng.uniform(-self.mf_shift, self.mf_shift, 2) * self.s
                hi_img = nd_shift(hi_img, tuple(d), order=1, mode="reflect")
            lo_img = np.asarray(self.crap(hi_img, rng), dtype=np.float32)
            x, lo, hi = normalize_frame(lo_img, self.norm)
            fit = (1.0, 0.0)
            if self.intensity == "fit":
                fit = fit_intensity(lo_img, self.image(k, period), self.s)
            self._memo[key] = (x, (lo, hi), fit)
        return self._memo[key]

    def sample(self, rng: np.random.Generator, crop: int, index: int = 0) -> Pair:
        period = index // self.refresh
        k = int(rng.choice(len(self.images), p=self.p))
        s = self.s
        img = self.image(k, period)
        h, w = img.shape[0] // s, img.shape[1] // s
        c = min(crop, h, w)
        i, j = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
        target_pos = self.f - 1 if self.target_frame == "newest" else self.f // 2
        if self.mf_shift > 0:  # target frame: an unshifted copy; the others: shifted copies
            others = rng.choice(np.arange(1, self.versions), size=self.f - 1, replace=False)
            picks = [int(v) for v in others]
            picks.insert(target_pos, 0)
        else:
            picks = [int(v) for v in rng.choice(self.versions, size=self.f, replace=False)]
        copies = [self._copy(k, v, period) for v in picks]
        x = np.stack([cp[0][i : i + c, j : j + c] for cp in copies])
        newest = copies[-1]  # the live Enhancer maps the output back with the newest frame's range
        fit = copies[target_pos][2]
        a, b = target_affine(self.target_norm, img, newest[1], fit, self.norm)
        y = img[None, i * s : (i + c) * s, j * s : (j + c) * s] * a + b
        return x, y.astype(np.float32)


def zoom_out(img: np.ndarray, factor: float, multiple: int) -> np.ndarray:
    """``img`` resampled to ``factor`` (<= 1) of its size, anti-aliased, sides a multiple of ``multiple``.

    Structures then sit at a coarser pixel size, as on another microscope; the Gaussian prefilter
    before linear interpolation keeps the high-quality image free of aliasing. Never below
    ``4 * multiple`` pixels a side.
    """
    from skimage.transform import resize

    h, w = img.shape
    nh = max(4 * multiple, round(h * factor) // multiple * multiple)
    nw = max(4 * multiple, round(w * factor) // multiple * multiple)
    if (nh, nw) == (h, w):
        return img
    out = resize(img, (nh, nw), order=1, anti_aliasing=True, preserve_range=True)
    return np.ascontiguousarray(out, dtype=np.float32)


def add_haze(img: np.ndarray, fraction: float, sigma: float = 16.0) -> np.ndarray:
    """``img`` plus out-of-focus light: its own wide blur, peaking at ``fraction`` of its maximum."""
    from scipy.ndimage import gaussian_filter

    if fraction <= 0:
        return img
    blur = gaussian_filter(img.astype(np.float32), sigma, mode="nearest")
    peak = float(blur.max())
    if peak <= 0:
        return img
    return (img + blur * np.float32(fraction * float(img.max()) / peak)).astype(np.float32)


class FMDPairs:
    """Real FMD raw frame -> 50-frame mean pairs (same size).

    ``raw_repeats``: fields 1 and 2 (where in ``fields``) add each of their 50 raw repeats as an
    input against the same mean: the field is drawn as often as before, its noise draw at random.
    """

    def __init__(
        self, fields: tuple[int, int], norm: tuple[float, float], target_norm: str = "input",
        raw_repeats: bool = False,
    ) -> None:
        from .. import datasets

        self.name = "fmd"
        numbers = list(range(fields[0], fields[1] + 1))
        pairs = datasets.fmd_pairs(numbers)
        self.x, self.y = [], []  # per field: the list of inputs, and the target
        for field, (raw, gt) in zip(numbers, pairs, strict=True):
            gt = np.asarray(gt, np.float32)
            raws = [np.asarray(raw, np.float32)]
            if raw_repeats and field in (1, 2):
                raws = [np.asarray(r, np.float32) for r in datasets.fmd_raw50(field)]
            xs = []
            for r in raws:
                x, lo, hi = normalize_frame(r, norm)
                a, b = target_affine(target_norm, gt, (lo, hi), (1.0, 0.0), norm)  # same 8-bit units
                xs.append((x, a, b))
            self.x.append(xs)
            self.y.append(gt)

    def sample(self, rng: np.random.Generator, crop: int, index: int = 0) -> Pair:
        k = int(rng.integers(len(self.x)))
        draws = self.x[k]
        x, a, b = draws[int(rng.integers(len(draws)))] if len(draws) > 1 else draws[0]
        h, w = x.shape
        c = min(crop, h, w)
        i, j = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
        y = self.y[k][i : i + c, j : j + c] * np.float32(a) + np.float32(b)
        return x[None, i : i + c, j : j + c], y[None].astype(np.float32)


def load_still_images(paths: Sequence[Path], min_side: int = 16) -> list[np.ndarray]:
    """Every 2-D plane (float32) of the image files/folders in ``paths`` (tif, zarr/OME-Zarr, npy).

    Reading and validation are ``datasets.load_image_folder``'s (errors name the file and the fix);
    planes smaller than ``min_side`` are skipped; no usable plane at all is a ``ConfigError``.
    """
    from .. import datasets

    images: list[np.ndarray] = []
    for p in paths:
        images += [img for _, img in datasets.load_image_folder(p) if min(img.shape) >= min_side]
    if not images:
        where = ", ".join(str(p) for p in paths)
        raise ConfigError(
            f"no usable training images in {where}",
            f"give folders/files of 2-D images or stacks ({', '.join(datasets.IMAGE_SUFFIXES)}) "
            f"with planes of at least {min_side}x{min_side} pixels",
        )
    return images


def build_sources(cfg: Config, val: bool = False) -> tuple[list[PairSource], list[float]]:
    """Instantiate the config's sources; ``val`` builds the validation variant.

    Validation reads ``data.val_sources`` when the config has them (whole images kept out of
    training), else the training sources with unseen sim specimens and other crops and noise.
    """
    m = cfg.model
    norm = (m.norm_low, m.norm_high)
    sources: list[PairSource] = []
    weights: list[float] = []
    for src in cfg.data.source_configs(val):
        if isinstance(src, SimSourceConfig):
            sources.append(
                SimPairs(
                    src,
                    m.upscale,
                    m.in_frames,
                    m.target_frame,
                    norm,
                    cfg.data.target_norm,
                    seed_offset=100_000 if val else 0,
                    sequences=max(1, min(2, src.sequences)) if val else None,
                )
            )
        elif isinstance(src, CrappifiedSourceBase) or (isinstance(src, FMDSourceConfig) and src.crappifier):
            if isinstance(src, MitoSourceConfig):
                from .. import datasets

                images = [np.asarray(im, np.float32) for im in datasets.mito_train_images(src.files)]
                if not images:
                    raise ConfigError(
                        "no real mito training images found",
                        "put the real data in ../shared/data/real or set $LIVE_PSSR_REAL_DATA, "
                        "or drop the mito source",
                    )
                name = "mito"
            elif isinstance(src, RealSourceConfig):
                from .. import datasets

                images = []
                for fname in src.files:
                    arr = datasets.load_image_stack(datasets.real_data_file(fname)).astype(np.float32)
                    if arr.ndim == 3 and src.average > 1:  # means of consecutive planes
                        n = arr.shape[0] // src.average
                        arr = arr[: n * src.average].reshape(n, src.average, *arr.shape[1:]).mean(1)
                    planes = [arr] if arr.ndim == 2 else list(arr)
                    images += [datasets.dark_subtracted(p) for p in planes]
                name = "real"
            elif isinstance(src, FMDSourceConfig):  # the 50-frame means as high-quality images
                from .. import datasets

                fields = range(src.fields[0], src.fields[1] + 1)
                images = [datasets.dark_subtracted(gt) for _, gt in datasets.fmd_pairs(fields)]
                name = "fmd-means"
            else:
                assert isinstance(src, ImagesSourceConfig)
                images = load_still_images(src.paths)
                name = "images"
            sources.append(
                StillPairs(
                    name,
                    images,
                    src.crappifier,
                    m.upscale,
                    m.in_frames,
                    m.target_frame,
                    norm,
                    cfg.data.target_norm,
                    mf_shift=src.mf_shift,
                    seed=cfg.train.seed + (7 if val else 0),
                    intensity=src.intensity,
                    gamma=cfg.data.intensity.gamma if (cfg.data.intensity and not val) else (1.0, 1.0),
                    zoom=cfg.data.zoom if not val else (1.0, 1.0),
                    haze=cfg.data.intensity.haze if (cfg.data.intensity and not val) else (0.0, 0.0),
                )
            )
        elif isinstance(src, FMDSourceConfig):
            sources.append(FMDPairs(src.fields, norm, cfg.data.target_norm, src.raw_repeats))
        weights.append(src.weight)
    return sources, weights


def augment_pair(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Pair:
    """Same random flip / 90-degree rotation of input and target (last two axes)."""
    k = int(rng.integers(4))
    if k:
        x, y = np.rot90(x, k, axes=(-2, -1)), np.rot90(y, k, axes=(-2, -1))
    if rng.random() < 0.5:
        x, y = x[..., ::-1], y[..., ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def pad_to(x: np.ndarray, y: np.ndarray, crop: int) -> Pair:
    """Reflect-pad a pair from an image smaller than the crop, so every sample has one size."""
    h, w = x.shape[-2:]
    if h >= crop and w >= crop:
        return x, y
    s = y.shape[-1] // w
    ph, pw = max(0, crop - h), max(0, crop - w)
    x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect")
    y = np.pad(y, ((0, 0), (0, ph * s), (0, pw * s)), mode="reflect")
    return x, y


class PairDataset(Dataset):
    """Map-style dataset: item ``i`` is a deterministic random pair (seeded by ``(seed, i)``)."""

    def __init__(
        self,
        sources: Sequence[PairSource],
        weights: Sequence[float],
        crop: int,
        length: int,
        seed: int = 0,
        augment: bool = True,
        min_foreground: float = 0.0,
        offset: int = 0,
        contrast: tuple[tuple[float, float], tuple[float, float]] | None = None,
    ) -> None:
        self.sources = list(sources)
        #: ((scale low, high), (shift low, high)) of the affine on normalised pairs, or None
        self.contrast = contrast
        w = np.asarray(weights, dtype=np.float64)
        self.p = w / w.sum()
        self.crop, self.length, self.seed = crop, length, seed
        self.augment, self.min_foreground = augment, min_foreground
        #: index of the first sample (a resumed run skips the samples it has already trained on)
        self.offset = offset

    def __len__(self) -> int:
        return self.length

    def draw(self, rng: np.random.Generator, index: int = 0) -> Pair:
        src = self.sources[int(rng.choice(len(self.sources), p=self.p))]
        for _ in range(8):
            x, y = src.sample(rng, self.crop, index)
            if self.min_foreground <= 0:
                break
            lo, hi = np.percentile(y, (1, 99))
            if hi - lo >= self.min_foreground:
                break
        x, y = pad_to(x, y, self.crop)
        if self.augment:
            x, y = augment_pair(x, y, rng)
        if self.contrast is not None:
            (a0, a1), (b0, b1) = self.contrast
            a, b = float(rng.uniform(a0, a1)), float(rng.uniform(b0, b1))
            x, y = (x * a + b).astype(np.float32), (y * a + b).astype(np.float32)
        return x, y

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.offset + int(i)
        x, y = self.draw(np.random.default_rng((self.seed, n)), n)
        return torch.from_numpy(x), torch.from_numpy(y)


def fixed_batch(
    sources: Sequence[PairSource], weights: Sequence[float], crop: int, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` validation pairs drawn once with a fixed seed (no augmentation)."""
    ds = PairDataset(sources, weights, crop, n, seed=seed, augment=False)
    xs, ys = zip(*(ds[i] for i in range(n)), strict=True)
    return torch.stack(xs), torch.stack(ys)


__all__ = [
    "FMDPairs",
    "PairDataset",
    "PairSource",
    "SimPairs",
    "StillPairs",
    "augment_pair",
    "build_sources",
    "fixed_batch",
    "load_still_images",
    "pad_to",
    "to_unit",
    "window_indices",
]
