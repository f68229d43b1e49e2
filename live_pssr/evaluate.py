"""Evaluate a model against ground truth, always next to a baseline: ``evaluate(model, data) -> dict``.

Data sets (``data``):

* ``mito-holdout``: the held-out real mitochondria images (:func:`live_pssr.datasets.mito_holdout_images`,
  never used in training) crappified with PSSR's published fluorescence crappifier at the model's
  scale, seeded per image (``seed``), so every model sees the same inputs. For 4x models.
* ``class-holdout``: held-out images of other structures (:func:`live_pssr.datasets.class_holdout_images`:
  HeLa lysosomes and nuclei, FMD nuclei means), crappified like ``mito-holdout``; the result adds
  ``by_class``, the summary per image class (for any data set whose images have more than one
  class; each image's row names its ``class``). For 4x models.
* ``fmd-holdout``: FMD fields 11-20, one real noisy confocal frame against the 50-frame mean
  (``data_range`` 255, the 8-bit range, as the FMD benchmark reports). For 1x denoising models;
  the raw frame scores about 33.3 dB.
* ``sim-timelapse``: ``n_frames`` consecutive frames of the simulated microscope (camera frames
  vs noise-free ground truth, camera ``size`` x ``size`` at the model's scale). The ground truth
  is mapped into the camera's ADU units (``offset + gain * laser_power * upscale**2 * truth``) so
  raw PSNR/SSIM compare like with like; the flicker score is reported too.
* a path to an image file, stack or folder of high-quality images (tif, zarr, npy), crappified
  with ``crappifier`` (a config dict; default PSSR's published fluorescence crappifier at the
  model's scale).

Models run through :class:`~live_pssr.enhancer.Enhancer` exactly as live (percentile
normalisation of each input, engine, mapping back to the input's units). Multi-frame models get
``in_frames`` independent crappifications of a still image (the newest is the baseline's input),
and the running window on timelapses. The baseline is bicubic upsampling of the newest input for
``upscale > 1`` (pixel-centre aligned, like the crappifiers' downsampling) and the raw input for
1x models.

Per image: PSNR and SSIM in the data's units (``psnr``, ``ssim``), the same after CSBDeep's
percentile normalisation and affine fit (``psnr_norm``, ``ssim_norm``), and the FRC resolution
of the output against the ground truth (``frc_px``, and ``frc_um`` where the pixel size is known).
The summary averages images (FRC: the finite values).

**Trust signals** (``consistency``, on by default; ``tta``, on request), judged against the truth:

* the data-consistency check (:func:`live_pssr.consistency.check_consistency`) of the raw input
  against the model's output, the baseline's, and the ground truth itself (a control: how often
  the check flags a perfect answer on this data). Reported per image and summarised: the flag
  rate, the mean score, and ``rank_corr``, how well the error map predicts where the output is
  wrong: Spearman's correlation over ``tile_px`` x ``tile_px`` camera-pixel tiles
  (:func:`live_pssr.metrics.tile_rank_correlation`) between the map's tile means and those of the
  true error ``|pred' - truth'|`` (after the same CSBDeep normalisation as ``psnr_norm``). The
  forward model and noise follow the data where they are known: the simulator's camera (its
  truth carries the PSF), the crappifier's blur (and its camera for a ``camera`` crappifier),
  else the model's training provenance and a noise estimate from each frame; ``camera`` /
  ``psf_sigma_px`` override them.
* test-time augmentation (:func:`live_pssr.consistency.tta_disagreement`; 8 flips/rotations for
  square inputs, the 4 shape-preserving ones otherwise): the disagreement per image and the same
  tile rank correlation between the spread and the true error. Costs 4-8 extra enhancements per
  image.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import datasets, metrics
from .errors import ConfigError
from .offline.checks import FrameChecks, check_frame, tta_transforms

BUILTIN = ("mito-holdout", "class-holdout", "fmd-holdout", "sim-timelapse")
METRICS = ("psnr", "ssim", "psnr_norm", "ssim_norm", "frc_px", "frc_um")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "psnr_norm": True, "ssim_norm": True,
                    "frc_px": False, "frc_um": False, "flicker": None}


@dataclass
class EvalItem:
    """One prediction: its input frames (oldest first; the last is *the* frame) and its target."""

    name: str
    inputs: list[np.ndarray]
    target: np.ndarray
    data_range: float | None = None
    pixel_size_um: float | None = None
    #: what the image shows (mitochondria, nuclei, ...): the result's ``by_class`` groups by it
    image_class: str | None = None


@dataclass
class EvalSet:
    """A named list of items; a ``timelapse`` is fed to the model as one stream, in order."""

    name: str
    description: str
    items: list[EvalItem]
    timelapse: bool = False
    crappifier: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: where known: the camera that made the inputs and the blur (enhanced pixels) from the truth to
    #: them beyond area integration, with where it comes from (the consistency check's physics)
    camera: Any = None
    psf_sigma_px: float | None = None
    psf_source: str = ""


# ----------------------------------------------------------------------------------------------
# data sets


def _crop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape
    return img[: h - h % scale, : w - w % scale]


def _crappified_set(name: str, description: str, images: list[tuple[str, np.ndarray]], crap_cfg: dict,
                    upscale: int, in_frames: int, seed: int,
                    classes: list[str | None] | None = None) -> EvalSet:
    from .consistency import psf_sigma_from_crappifier
    from .crappify import make_crappifier

    crap = make_crappifier(crap_cfg)
    if crap.scale != upscale:
        raise ConfigError(f"the crappifier downsamples {crap.scale}x but the model upscales {upscale}x",
                          f"use a crappifier with scale {upscale} "
                          f"(e.g. {{kind: pssr-fluo, scale: {upscale}}})")
    items = []
    for i, (img_name, hi) in enumerate(images):
        hi = _crop(np.asarray(hi, dtype=np.float32), upscale)
        rng = np.random.default_rng([seed, i])
        inputs = [np.asarray(crap(hi, rng), dtype=np.float32) for _ in range(in_frames)]
        items.append(EvalItem(img_name, inputs, hi, None, datasets.pixel_size_um(img_name),
                              classes[i] if classes is not None else None))
    cfg = crap.config() if hasattr(crap, "config") else dict(crap_cfg)
    return EvalSet(name, description, items, crappifier=cfg,
                   camera=crap if cfg.get("kind") == "camera" else None,
                   psf_sigma_px=psf_sigma_from_crappifier(cfg),
                   psf_source=f"the data's {cfg.get('kind')} crappifier")


def mito_holdout_set(upscale: int, in_frames: int = 1, seed: int = 0) -> EvalSet:
    """Held-out real mitochondria, crappified with PSSR's published fluorescence crappifier."""
    return _crappified_set(
        "mito-holdout", "held-out real mitochondria (HeLa, MiNA), PSSR published fluorescence crappifier",
        datasets.mito_holdout_images(), {"kind": "pssr-fluo", "scale": upscale, "order": "published"},
        upscale, in_frames, seed, classes=["mitochondria"] * len(datasets.MITO_HOLDOUT_FILES))


def class_holdout_set(upscale: int, in_frames: int = 1, seed: int = 0) -> EvalSet:
    """Held-out real images of other structures (lysosomes, nuclei), crappified like ``mito-holdout``."""
    found = datasets.class_holdout_images()
    return _crappified_set(
        "class-holdout", "held-out real lysosomes and nuclei (HeLa sample, FMD 50-frame means), "
        "PSSR published fluorescence crappifier", [(n, img) for _, n, img in found],
        {"kind": "pssr-fluo", "scale": upscale, "order": "published"}, upscale, in_frames, seed,
        classes=[c for c, _, _ in found])


def fmd_holdout_set(upscale: int) -> EvalSet:
    """FMD fields 11-20: real raw frame vs 50-frame mean (1x models only)."""
    if upscale != 1:
        raise ConfigError(f"fmd-holdout is a 1x denoising set, but the model upscales {upscale}x",
                          "evaluate super-resolution models on mito-holdout, sim-timelapse or your images")
    pairs = datasets.fmd_pairs(datasets.FMD_HOLDOUT_FIELDS)
    items = [EvalItem(f"fmd_field{f:02d}", [raw], gt, 255.0, None)
             for f, (raw, gt) in zip(datasets.FMD_HOLDOUT_FIELDS, pairs, strict=True)]
    return EvalSet("fmd-holdout", "FMD confocal BPAE nuclei fields 11-20: raw frame vs 50-frame mean", items,
                   psf_sigma_px=0.0, psf_source="real pairs: the truth is the raw frames' mean")


def sim_timelapse_set(upscale: int, n_frames: int = 16, size: int = 128, seed: int = 0,
                      **config: Any) -> EvalSet:
    """``n_frames`` frames of the simulated microscope with ground truth in camera units."""
    from .sim import MicroscopeConfig, SimulatedMicroscope

    if n_frames < 2:
        raise ConfigError(f"sim-timelapse needs at least 2 frames for flicker, got {n_frames}",
                          "use --frames 8 or more")
    cfg = MicroscopeConfig(height=size, width=size, upscale=upscale, seed=seed, **config)
    mic = SimulatedMicroscope(cfg)
    scale = cfg.gain * cfg.laser_power * upscale**2
    items = []
    for t in range(n_frames):
        frame, truth = mic.acquire(t)
        target = (truth.astype(np.float32) * np.float32(scale) + np.float32(cfg.offset))
        items.append(EvalItem(f"t{t:03d}", [frame], target, None, cfg.truth_pixel_size_um))
    return EvalSet("sim-timelapse", f"simulated microscope, {n_frames} frames of {size}x{size} px, "
                   f"laser power {cfg.laser_power}, seed {seed}", items, timelapse=True,
                   extra={"sim_config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}},
                   camera=mic.camera, psf_sigma_px=0.0, psf_source="the simulator: its truth carries the PSF")


def build_dataset(
    data: str | Path, upscale: int, in_frames: int = 1, crappifier: dict | None = None,
    seed: int = 0, n_frames: int = 16, size: int = 128, max_images: int | None = None,
) -> EvalSet:
    """The :class:`EvalSet` for a built-in name or a path (see the module docstring)."""
    key = str(data)
    if key == "mito-holdout":
        ds = mito_holdout_set(upscale, in_frames, seed)
    elif key == "class-holdout":
        ds = class_holdout_set(upscale, in_frames, seed)
    elif key == "fmd-holdout":
        ds = fmd_holdout_set(upscale)
    elif key == "sim-timelapse":
        ds = sim_timelapse_set(upscale, n_frames, size, seed)
    else:
        path = Path(data)
        if not path.exists():
            raise datasets.DataMissingError(
                f"{key!r} is neither a built-in data set nor an existing path",
                f"use one of {', '.join(BUILTIN)}, or a folder/stack of high-quality images")
        images = datasets.load_image_folder(path)
        cfg = crappifier or {"kind": "pssr-fluo", "scale": upscale}
        ds = _crappified_set(path.name, f"high-quality images from {path}, crappified", images, cfg,
                             upscale, in_frames, seed)
    if max_images is not None:
        ds.items = ds.items[: max(int(max_images), 2 if ds.timelapse else 1)]
    return ds


# ----------------------------------------------------------------------------------------------
# metrics


def upsample_bicubic(image: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upsampling, pixel-centre aligned (torch ``align_corners=False``); float32."""
    img = np.asarray(image, dtype=np.float32)
    if scale == 1:
        return img.copy()
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(img))[None, None]
        return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)[0, 0].numpy()


def image_metrics(pred: np.ndarray, target: np.ndarray, data_range: float | None = None,
                  pixel_size_um: float | None = None) -> dict[str, float | None]:
    """PSNR/SSIM raw and normalised, FRC resolution of ``pred`` against ``target``."""
    frc = metrics.frc_resolution(pred, target) if min(target.shape) >= 16 else float("nan")
    return {
        "psnr": metrics.psnr(pred, target, data_range),
        "ssim": metrics.ssim(pred, target, data_range),
        "psnr_norm": metrics.normalized_psnr(pred, target),
        "ssim_norm": metrics.normalized_ssim(pred, target),
        "frc_px": frc,
        "frc_um": frc * pixel_size_um if pixel_size_um is not None else None,
    }


def _mean(values: list[float | None]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Means over images of each metric: ``model``, ``baseline`` and their ``delta``."""
    out: dict[str, dict[str, float | None]] = {"model": {}, "baseline": {}, "delta": {}}
    for m in METRICS:
        a, b = _mean([r["model"][m] for r in rows]), _mean([r["baseline"][m] for r in rows])
        out["model"][m], out["baseline"][m] = a, b
        out["delta"][m] = a - b if a is not None and b is not None else None
    return out


def json_safe(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats -> None, numpy scalars -> Python, keys -> str."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ----------------------------------------------------------------------------------------------
# trust signals: the consistency check and TTA, judged against the truth

#: default tile side (camera pixels) of the rank correlations
TILE_PX = 16


def check_settings(ds: EvalSet, spec: Any, consistency: bool = True, tta: bool = False, camera: Any = None,
                   psf_sigma_px: float | None = None) -> FrameChecks:
    """The checks of ``ds``: blur and noise given, else the data's (where known), else the model's."""
    if psf_sigma_px is not None:
        psf, source = psf_sigma_px, "given"
    else:
        psf, source = ds.psf_sigma_px, ds.psf_source or "given"
    return FrameChecks(consistency, tta, psf, source, ds.camera if camera is None else camera).resolve(spec)


def _check(checks: FrameChecks, raw: np.ndarray, image: np.ndarray, upscale: int, error: np.ndarray | None,
           tile_px: int) -> dict[str, Any]:
    """One consistency check's record, and its error map's tile rank correlation with ``error``."""
    done = check_frame(checks, 0, raw, image, upscale)
    out = {k: v for k, v in done.record.items() if k != "frame"}
    if out["available"] and error is not None:
        out["rank_corr"] = metrics.tile_rank_correlation(np.abs(done.signed_map), error, tile_px, upscale)
    return out


def true_error(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``|pred' - target'|`` after CSBDeep's normalisation (the error ``psnr_norm`` measures)."""
    p, t = metrics.normalize_pair(pred, target)
    return np.abs(p - t)


def _rate(rows: list[dict[str, Any]], key: str) -> float | None:
    done = [r for r in rows if r.get("available")]
    return sum(bool(r[key]) for r in done) / len(done) if done else None


def _summarize_checks(checks: list[dict[str, Any]], settings: FrameChecks, tile_px: int) -> dict[str, Any]:
    """Flag rates, mean scores and mean rank correlations of the per-image checks."""
    out: dict[str, Any] = {**settings.settings(), "tile_px": tile_px}
    for who in ("model", "baseline", "truth"):
        rows = [c[who] for c in checks]
        done = [r for r in rows if r.get("available")]
        part: dict[str, Any] = {"checked": len(done), "unavailable": len(rows) - len(done),
                                "flag_rate": _rate(rows, "flagged"), "added_rate": _rate(rows, "added"),
                                "removed_rate": _rate(rows, "removed"),
                                "score": _mean([r["score"] for r in done])}
        if who != "truth":
            part["rank_corr"] = _mean([r.get("rank_corr") for r in done])
        out[who] = part
    return out


# ----------------------------------------------------------------------------------------------
# evaluation


def evaluate(
    model: Any,
    data: str | Path | EvalSet,
    *,
    crappifier: dict[str, Any] | None = None,
    engine: str = "torch",
    seed: int = 0,
    n_frames: int = 16,
    size: int = 128,
    max_images: int | None = None,
    progress: bool = True,
    on_item: Callable[[EvalItem, np.ndarray], None] | None = None,
    consistency: bool = True,
    tta: bool = False,
    camera: Any = None,
    psf_sigma_px: float | None = None,
    tile_px: int = TILE_PX,
) -> dict[str, Any]:
    """Evaluate ``model`` (name, path or LoadedModel) on ``data``; returns a JSON-safe dict.

    Keys: ``model``, ``data``, ``baseline`` (its name), ``summary`` (``model``/``baseline``/``delta``
    metric means), ``flicker`` (timelapses), ``items`` (per image), ``engine``, ``time_s`` and the
    data set's provenance (crappifier, seed, simulator config); ``consistency`` and ``tta`` (the
    trust signals' summaries, see the module docstring; per image under the same keys).
    ``camera`` (a calibration YAML or camera object) and ``psf_sigma_px`` override the
    consistency check's noise model and forward blur; ``tile_px``: tile side of the rank
    correlations, camera pixels.
    """
    from .enhancer import Enhancer
    from .modelio import load_model

    t0 = time.perf_counter()
    loaded = load_model(model) if isinstance(model, str | Path) else model
    spec = loaded.spec
    ds = data if isinstance(data, EvalSet) else build_dataset(
        data, spec.upscale, spec.in_frames, crappifier, seed, n_frames, size, max_images)
    if not ds.items:
        raise datasets.DataError(f"data set {ds.name} has no images", "check the data path")
    if isinstance(tile_px, bool) or not isinstance(tile_px, int) or tile_px < 2:
        raise ConfigError(f"tile_px={tile_px!r} must be a whole number >= 2", "e.g. --tile-px 16")
    settings = check_settings(ds, spec, consistency, tta, camera, psf_sigma_px)
    enhancer = Enhancer(loaded, engine=engine, out_dtype=np.float32)
    baseline_name = "bicubic" if spec.upscale > 1 else "raw input"
    rows, preds, bases, checks = [], [], [], []
    window: deque[np.ndarray] = deque(maxlen=spec.in_frames)  # the model's input window (for TTA)

    def run_item(item: EvalItem) -> None:
        if not ds.timelapse:
            enhancer.reset()
            window.clear()
        for frame in item.inputs:
            out = enhancer.enhance(frame)
            window.append(frame)
        base = upsample_bicubic(item.inputs[-1], spec.upscale)
        if out.shape != item.target.shape or base.shape != item.target.shape:
            raise ConfigError(f"{ds.name}/{item.name}: output {out.shape} does not match the target "
                              f"{item.target.shape}", "the model's upscale must match the data's scale")
        row: dict[str, Any] = {
            "name": item.name, **({"class": item.image_class} if item.image_class else {}),
            "model": image_metrics(out, item.target, item.data_range, item.pixel_size_um),
            "baseline": image_metrics(base, item.target, item.data_range, item.pixel_size_um)}
        raw, up = item.inputs[-1], spec.upscale
        err = true_error(out, item.target) if settings.any else None
        if settings.consistency:
            one = replace(settings, tta=False)
            row["consistency"] = {
                "model": _check(one, raw, out, up, err, tile_px),
                "baseline": _check(one, raw, base, up, true_error(base, item.target), tile_px),
                "truth": _check(one, raw, item.target, up, None, tile_px)}
            checks.append(row["consistency"])
        if settings.tta:
            t = check_frame(replace(settings, consistency=False), 0, raw, out, up, enhancer.enhance_window,
                            list(window))
            row["tta"] = {"disagreement": t.record["tta_disagreement"],
                          "transforms": tta_transforms(raw.shape),
                          "rank_corr": metrics.tile_rank_correlation(t.spread, err, tile_px * up)}
        rows.append(row)
        if ds.timelapse:
            preds.append(out)
            bases.append(base)
        if on_item is not None:
            on_item(item, out)

    if ds.timelapse:
        enhancer.reset()
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"evaluating on {ds.name}", total=len(ds.items))
            for item in ds.items:
                run_item(item)
                bar.advance(task)
    else:
        for item in ds.items:
            run_item(item)

    summary = summarize(rows)
    by_class: dict[str, dict[str, Any]] = {}
    for cls in sorted({r["class"] for r in rows if "class" in r}):
        mine = [r for r in rows if r.get("class") == cls]
        by_class[cls] = {"n_images": len(mine), **summarize(mine)}
    result: dict[str, Any] = {
        "model": loaded.model_id, "model_path": str(loaded.path), "upscale": spec.upscale,
        "in_frames": spec.in_frames, "engine": enhancer.engine_name,
        "data": ds.name, "description": ds.description, "n_images": len(rows), "seed": seed,
        "baseline": baseline_name, "crappifier": ds.crappifier, **ds.extra,
        "summary": summary, "items": rows, **({"by_class": by_class} if len(by_class) > 1 else {}),
    }
    if ds.timelapse:
        targets = np.stack([it.target for it in ds.items])
        fm, fb = metrics.flicker(np.stack(preds), targets), metrics.flicker(np.stack(bases), targets)
        result["flicker"] = {"model": fm, "baseline": fb, "delta": fm - fb}
    if settings.consistency:
        result["consistency"] = _summarize_checks(checks, settings, tile_px)
    if settings.tta:
        result["tta"] = {"tile_px": tile_px, "transforms": sorted({r["tta"]["transforms"] for r in rows}),
                         "disagreement": _mean([r["tta"]["disagreement"] for r in rows]),
                         "rank_corr": _mean([r["tta"]["rank_corr"] for r in rows])}
    result["time_s"] = round(time.perf_counter() - t0, 3)
    return json_safe(result)
