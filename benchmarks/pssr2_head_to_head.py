"""Head-to-head: PSSR2 (``pssr`` 2.4.0, its default ResUNet, trainer and crappifier) vs live-pssr.

Both are trained from scratch on the same high-quality images, for the same wall-clock budget, on
the same machine, one after the other with 1 thread each, then scored by the same metric code as
``live-pssr evaluate`` on the same held-out inputs. Prints a table and writes a JSON file::

    nice -n 19 .venv/bin/python benchmarks/pssr2_head_to_head.py --minutes 20
    nice -n 19 .venv/bin/python benchmarks/pssr2_head_to_head.py --minutes 1 --skip-install  # dry run

Method (``--task sr``, the default: 4x super-resolution scored on ``mito-holdout``):

* PSSR2 lives in its own venv, ``.cache/pssr2-venv`` (made here with ``python3.11 -m venv``;
  ``pip install pssr==2.4.0 torchvision==0.28.0`` with ``.cache/pssr2-constraints.txt`` pinning
  ``torch==2.13.0``; a pip dry run first refuses any CUDA torch or ``nvidia-*`` wheel). It is never
  a dependency of live-pssr. Its side runs as a subprocess, ``benchmarks/_pssr2_worker.py``, which
  uses PSSR2's own ``ResUNet`` (defaults: hidden 64-1024, depth 3; 59.9 M parameters),
  ``ImageDataset`` with the default ``Poisson()`` crappifier, ``train_paired`` with its CLI's
  settings (batch 16, ``hr_res`` 512, AdamW 1e-3, ``SSIMLoss(mix=0.8)``, ``ExponentialLR(0.7)``
  over 10 epochs) and ``predict_images``; the worker's docstring has the details (and a shim that
  lets PyPI's CUDA-built torchvision 0.28.0 import beside the CPU torch).
* Training images: exactly the real mitochondria images live-pssr's ``kind: mito`` source loads
  (:func:`live_pssr.datasets.mito_train_named`: ``BPAE_mito_bian.tif`` and the 4 brightest planes
  of each yeast stack, dark-subtracted), never the held-out ones. PSSR2 reads 8-bit images, so
  each is scaled by its maximum to 0-255 (uint8); images larger than ``hr_res`` on both sides are
  cut into ``hr_res`` tiles on the grid PSSR2's ``SlidingDataset`` uses (overlap 128), because its
  ``ImageDataset`` would use only the centre square of each file; smaller ones (the 200 px yeast
  planes) are passed whole and PSSR2 reflect-pads them to ``hr_res``.
* live-pssr trains its default model's config, ``configs/mito-sr4-fast.yaml``, with its own
  trainer (``python -m live_pssr.train ... --max-minutes B --threads 1``). Note that config's data:
  the same mito images (its ``mito`` source, PSSR's published crappifier), plus its simulated
  microscope, two other real high-SNR structures (BPAE actin, nuclei) and the FMD nuclei means of
  fields 1-10 (crappified the same way) -- its default recipe. The table in ``models/README.md``
  was measured with the round-4 recipe (no FMD means).
  It keeps the weights with the best validation loss. The shipped ``models/mito-sr4-fast`` is
  scored too, as a reference row (it was trained under its own budget, not this one).
* Scoring: ``live_pssr.evaluate.build_dataset("mito-holdout", upscale=4)`` (the held-out HeLa and
  MiNA mitochondria, crappified with PSSR's published crappifier, seed 0). live-pssr's models go
  through ``evaluate()`` itself (``consistency=False``). For PSSR2 each low-res input ``x`` is put
  into PSSR2's 8-bit convention as ``round(x * 255 / max(x))`` (uint8; the ``/ max`` rule is
  PSSR2's own for .czi sheets; its ResUNet then maps ``v / 128 - 1`` and applies a BatchNorm),
  reflect-padded at the bottom/right to a square whose side is a multiple of 16 (PSSR2's datasets
  centre-crop to squares; the U-Net pools 4 times), predicted by ``predict_images`` (uint8 output),
  cropped back and mapped to the input's units with ``* max(x) / 255`` -- as live-pssr's Enhancer
  maps outputs back with the input's range. Both are scored with
  ``live_pssr.evaluate.image_metrics`` against the same targets, beside the bicubic baseline
  ``live_pssr.evaluate.upsample_bicubic``, as ``evaluate()`` does: normalised (CSBDeep percentile
  + affine fit) and raw PSNR/SSIM, FRC; means over images and deltas over bicubic.

``--task denoise`` (1x, scored on ``fmd-holdout``): PSSR2's ``ResUNet(scale=1)`` (its documented
denoising set-up, ``lr_scale=1``) trained on the real FMD pairs of fields 1-10 with its
``PairedImageDataset`` (the raw 8-bit frames as they are, no crappifier), against
``configs/denoise-fast.yaml`` (FMD fields 1-10 plus still images degraded by FMD's calibrated
camera and simulated data; the table in ``models/README.md`` was measured with the round-5 recipe) and the
shipped ``denoise-fast``; inputs are already 8-bit, so no scaling; the baseline is the raw input.
One deviation from PSSR2's defaults there: ``hr_res`` 128 (non-overlapping tiles, 16 per field)
instead of 512, because at scale 1 the U-Net runs at full resolution: one 512 px sample takes
~54 s forward + backward on one thread and ~2 GB, so a default batch of 16 needs ~14 min and
~34 GB per step (more than this 23 GB machine). ``--pssr2-hr-res 512`` insists on the default.

Fairness rules: the same budget ``--minutes`` for both training loops (model building, data
loading, venv creation and prediction are outside it and recorded separately); a loop stops
after the step that passes the budget (live-pssr's rule; PSSR2's epochs are tied to the clock,
see the worker); 1 torch thread each (``OMP/MKL/OPENBLAS_NUM_THREADS=1``, no loader processes);
one after the other (PSSR2 first), never concurrently; the same evaluation inputs and metric
code; PSSR2 at its defaults (``--pssr2-hr-res``/``--pssr2-batch``/``--pssr2-epochs`` exist for
sensitivity runs and are recorded). Run it on a quiet machine: the JSON records the load
average before and after each side. CPU, steps/epochs, train seconds and parameter counts are in
the JSON.

Not equalised, by design (each tool's defaults; they are recorded under ``caveats``): the
``mito-holdout`` inputs are made with PSSR's *published* crappifier, which live-pssr's config
trains with and PSSR2's default ``Poisson()`` is not (its noise is milder: a domain gap for
PSSR2); live-pssr's config adds simulated and other real structures; its trainer keeps the best
validation weights and may stop at its config's step count before the budget; PSSR2's 60 M
parameter U-Net does about one step per minute here (batch 16 at 512 px), ours thousands.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
VENV = CACHE / "pssr2-venv"
CONSTRAINTS = CACHE / "pssr2-constraints.txt"
WORKER = Path(__file__).resolve().parent / "_pssr2_worker.py"
PSSR_REQ = ("pssr==2.4.0", "torchvision==0.28.0")
TORCH_PIN = "torch==2.13.0"
TMP_ROOT = Path("/tmp/pssr2-h2h")
#: PSSR2's SlidingDataset default tile overlap (pixels): the tiling grid for large training images
TILE_OVERLAP = 128

TASKS: dict[str, dict[str, Any]] = {
    "sr": {"data": "mito-holdout", "upscale": 4, "config": "configs/mito-sr4-fast.yaml",
           "shipped": "mito-sr4-fast", "baseline": "bicubic", "out": "pssr2_head_to_head.json",
           "hr_res": 512},
    "denoise": {"data": "fmd-holdout", "upscale": 1, "config": "configs/denoise-fast.yaml",
                "shipped": "denoise-fast", "baseline": "raw input", "out": "pssr2_head_to_head_denoise.json",
                "hr_res": 128},
}


def say(msg: str) -> None:
    print(msg, flush=True)


def one_thread_env(**extra: str) -> dict[str, str]:
    """The environment of both training subprocesses: one BLAS/OpenMP thread, unbuffered output."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               **extra)
    return env


def stream(cmd: list[str], tag: str, log: Path, env: dict[str, str], timeout_s: float) -> int:
    """Run ``cmd``, echoing its output line by line with ``[tag]`` and keeping it in ``log``."""
    deadline = time.monotonic() + timeout_s
    with log.open("w", encoding="utf-8") as fh, subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            say(f"[{tag}] {line.rstrip()}")
            if time.monotonic() > deadline:
                proc.kill()
                say(f"[{tag}] killed after {timeout_s:.0f} s")
                break
        return proc.wait()


# ----------------------------------------------------------------------------------------------
# the PSSR2 venv


def _pip(py: Path, *args: str) -> list[str]:
    return [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-c", str(CONSTRAINTS), *args]


def ensure_venv(skip_install: bool) -> dict[str, Any]:
    """Create/update ``.cache/pssr2-venv`` (or, with ``skip_install``, just check it); its versions."""
    py = VENV / "bin" / "python"
    t0 = time.perf_counter()
    if skip_install:
        if not py.exists():
            raise SystemExit(f"--skip-install: {VENV} does not exist; run once without --skip-install")
    else:
        CACHE.mkdir(exist_ok=True)
        if not py.exists():
            base = shutil.which("python3.11")
            if base is None:
                raise SystemExit("python3.11 is not on PATH: it is needed to create the PSSR2 venv")
            say(f"creating {VENV} ({base})")
            subprocess.run([base, "-m", "venv", str(VENV)], check=True)
        CONSTRAINTS.write_text(f"# written by benchmarks/pssr2_head_to_head.py: the CPU torch only\n"
                               f"{TORCH_PIN}\n", encoding="utf-8")
        report = CACHE / "pssr2-pip-report.json"
        say(f"pip dry run: {' '.join(PSSR_REQ)} with {TORCH_PIN}")
        subprocess.run(_pip(py, "--dry-run", "--quiet", "--report", str(report), *PSSR_REQ), check=True)
        plan = [(i["metadata"]["name"].lower(), i["metadata"]["version"])
                for i in json.loads(report.read_text(encoding="utf-8")).get("install", [])]
        cuda = [f"{n}=={v}" for n, v in plan
                if n.startswith("nvidia-") or n == "triton" or (n == "torch" and "+cpu" not in v)]
        if cuda:
            raise SystemExit(f"refusing to install CUDA packages into {VENV}: {', '.join(cuda)} "
                             f"(install torch==2.13.0+cpu there first, e.g. from the PyTorch CPU index)")
        if plan:
            say(f"installing {len(plan)} packages into {VENV}")
            subprocess.run(_pip(py, "--quiet", *PSSR_REQ), check=True)
    probe = ("import importlib.metadata as m, json, sys; "
             "print(json.dumps({p: m.version(p) for p in ('pssr', 'torch', 'torchvision')} | "
             "{'python': sys.version.split()[0]}))")
    versions = json.loads(subprocess.run([str(py), "-c", probe], capture_output=True, text=True,
                                         check=True).stdout)
    if versions["pssr"] != "2.4.0" or not versions["torch"].startswith("2.13.0"):
        raise SystemExit(f"{VENV} holds {versions}, not pssr 2.4.0 with torch 2.13.0")
    return {"venv": str(VENV), "python": str(py), "versions": versions,
            "setup_s": round(time.perf_counter() - t0, 1), "skip_install": skip_install}


# ----------------------------------------------------------------------------------------------
# data for the PSSR2 side


def to_uint8(img: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.round(np.asarray(img, np.float64) * scale), 0, 255).astype(np.uint8)


def tiles(shape: tuple[int, int], size: int) -> list[tuple[int, int]]:
    """Top-left corners of ``size`` tiles on SlidingDataset's grid; ``[(0, 0)]`` (whole image) if smaller.

    The overlap is SlidingDataset's default (128 px) for tiles above 256 px, none for smaller ones
    (SlidingDataset needs ``hr_res > overlap``).
    """
    h, w = shape
    if h < size or w < size:
        return [(0, 0)]
    stride = size - TILE_OVERLAP if size > 2 * TILE_OVERLAP else size
    return [(i, j) for i in range(0, h - size + 1, stride) for j in range(0, w - size + 1, stride)]


def write_training_images(task: str, folder: Path, hr_res: int) -> list[dict[str, Any]]:
    """The PSSR2 training files (uint8 tifs; ``hr/`` and, for paired data, ``lr/``); their manifest."""
    import tifffile

    from live_pssr import datasets

    (folder / "hr").mkdir(parents=True)
    manifest: list[dict[str, Any]] = []
    if task == "sr":
        held = {name for name, _ in datasets.mito_holdout_images()}
        for name, img in datasets.mito_train_named():
            assert name not in held
            img8 = to_uint8(img, 255.0 / float(img.max()))
            h, w = img8.shape
            for i, j in tiles((h, w), hr_res):
                part = img8 if (h < hr_res or w < hr_res) else img8[i:i + hr_res, j:j + hr_res]
                fname = f"hr{len(manifest):03d}.tif"
                tifffile.imwrite(folder / "hr" / fname, part)
                manifest.append({"file": fname, "source": name, "origin": [i, j], "shape": list(part.shape),
                                 "scale_to_8bit": 255.0 / float(img.max())})
    else:
        (folder / "lr").mkdir()
        for field, (raw, gt) in zip(datasets.FMD_TRAIN_FIELDS, datasets.fmd_pairs(datasets.FMD_TRAIN_FIELDS),
                                    strict=True):
            h, w = gt.shape
            for i, j in tiles((h, w), hr_res):
                sl = np.s_[i:i + hr_res, j:j + hr_res] if (h >= hr_res and w >= hr_res) else np.s_[:, :]
                fname = f"pair{len(manifest):03d}.tif"
                tifffile.imwrite(folder / "hr" / fname, to_uint8(gt[sl], 1.0))
                tifffile.imwrite(folder / "lr" / fname, to_uint8(raw[sl], 1.0))
                manifest.append({"file": fname, "source": f"fmd_field{field:02d}", "origin": [i, j],
                                 "shape": list(gt[sl].shape), "scale_to_8bit": 1.0})
    return manifest


def write_prediction_inputs(task: str, items: list[Any], folder: Path) -> list[dict[str, Any]]:
    """Each item's newest input as PSSR2 input: 8-bit, padded to a square (side a multiple of 16)."""
    import tifffile

    rows = []
    for k, item in enumerate(items):
        x = np.asarray(item.inputs[-1], np.float32)
        peak = float(x.max())
        scale = 255.0 / peak if task == "sr" and peak > 0 else 1.0  # FMD frames are 8-bit already
        h, w = x.shape
        side = 16 * math.ceil(max(h, w) / 16)
        x8 = np.pad(to_uint8(x, scale), ((0, side - h), (0, side - w)), mode="reflect")
        key = f"img{k:02d}"
        (folder / key).mkdir(parents=True)
        tifffile.imwrite(folder / key / f"{key}.tif", x8)
        rows.append({"key": key, "name": item.name, "shape": [h, w], "side": side, "scale_to_8bit": scale})
    return rows


# ----------------------------------------------------------------------------------------------
# scoring


def score_pssr2(items: list[Any], inputs: list[dict[str, Any]], pred_dir: Path, upscale: int) -> list[dict]:
    """Per-item metrics of the PSSR2 predictions (mapped back to the input's units) and the baseline."""
    from live_pssr.evaluate import image_metrics, upsample_bicubic

    rows = []
    for item, info in zip(items, inputs, strict=True):
        p8 = np.load(pred_dir / f"pred_{info['key']}.npy")
        h, w = item.target.shape
        pred = p8[:h, :w].astype(np.float32) / np.float32(info["scale_to_8bit"])
        if pred.shape != item.target.shape:
            raise SystemExit(f"PSSR2 prediction {info['key']} is {p8.shape}, target {item.target.shape}")
        base = upsample_bicubic(item.inputs[-1], upscale)
        rows.append({"name": item.name,
                     "model": image_metrics(pred, item.target, item.data_range, item.pixel_size_um),
                     "baseline": image_metrics(base, item.target, item.data_range, item.pixel_size_um)})
    return rows


def evaluate_live(model: str | Path, data: str) -> dict[str, Any]:
    from live_pssr.evaluate import evaluate
    from live_pssr.modelio import load_model

    loaded = load_model(model)
    res = evaluate(loaded, data, progress=False, consistency=False)
    t = loaded.spec.training or {}
    return {"model": res["model"], "path": res["model_path"], "summary": res["summary"],
            "items": [{k: r[k] for k in ("name", "model", "baseline")} for r in res["items"]],
            "params": sum(p.numel() for p in loaded.net.parameters()), "steps": t.get("steps"),
            "best_step": t.get("best_step"), "stopped": t.get("stopped"), "train_s": t.get("train_time_s"),
            "train_threads": t.get("threads"), "eval_s": res["time_s"]}


def print_table(doc: dict[str, Any]) -> None:
    cols = [("psnr_norm", "PSNRn", 2), ("ssim_norm", "SSIMn", 4), ("psnr", "PSNR", 2), ("ssim", "SSIM", 4)]

    def cell(summary: dict[str, Any], key: str, nd: int, who: str = "model") -> str:
        v, d = summary[who].get(key), summary["delta"].get(key)
        if v is None:
            return "-"
        return f"{v:.{nd}f}" if who == "baseline" else f"{v:.{nd}f} ({d:+.{nd}f})"

    head = f"{'model':<40}{'params':>9}{'steps':>7}{'train s':>9}"
    head += "".join(f"{name + ' (delta)':>20}" for _, name, _ in cols)
    say("")
    say(f"{doc['task']} on {doc['data']} ({doc['n_images']} images), budget {doc['budget_minutes']:g} min "
        f"per side, 1 thread, {doc['machine']['lscpu_model_name']}; deltas over {doc['baseline']}")
    say(head)
    say("-" * len(head))
    p2, ours, ship = doc["pssr2"], doc["ours"], doc["shipped"]
    base = p2["summary"]
    say(f"{doc['baseline']:<40}{'':>9}{'':>7}{'':>9}"
        + "".join(f"{cell(base, k, nd, 'baseline'):>20}" for k, _, nd in cols))
    for label, row in ((f"PSSR2 ResUNet ({p2['dataset']})", p2),
                       (f"live-pssr {ours['config_name']} (scratch)", ours),
                       (f"{ship['model']} (shipped)", ship)):
        steps = "-" if row.get("steps") is None else str(row["steps"])
        train = "-" if row.get("train_s") is None else f"{row['train_s']:.0f}"
        say(f"{label[:39]:<40}{row['params'] / 1e6:>8.2f}M{steps:>7}{train:>9}"
            + "".join(f"{cell(row['summary'], k, nd):>20}" for k, _, nd in cols))
    say(f"PSSR2: {p2['epochs']} epochs, {p2['passes_over_images']:.1f} passes over its "
        f"{p2['training_images']} images; live-pssr stopped by {ours.get('stopped')} "
        f"(best step {ours.get('best_step')}); "
        f"shipped model trained {ship.get('train_s')} s under its own budget")


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=20.0, help="training budget per side (wall clock)")
    p.add_argument("--task", choices=sorted(TASKS), default="sr",
                   help="sr: 4x on mito-holdout; denoise: 1x on fmd-holdout")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON result (default bench-results/pssr2_head_to_head.json; "
                   "pssr2_head_to_head_denoise.json for --task denoise)")
    p.add_argument("--skip-install", action="store_true", help="reuse .cache/pssr2-venv as it is")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (data, logs, models)")
    p.add_argument("--pssr2-hr-res", type=int, default=None,
                   help="PSSR2 hr_res (default: its default 512 for sr; 128 for denoise, see the docstring)")
    p.add_argument("--pssr2-batch", type=int, default=16, help="PSSR2 batch size (its CLI default 16)")
    p.add_argument("--pssr2-epochs", type=int, default=10,
                   help="PSSR2 epochs in the budget (its CLI default 10)")
    p.add_argument("--seed", type=int, default=0, help="PSSR2 seed (live-pssr: its config's seed)")
    args = p.parse_args(argv)
    if args.minutes <= 0:
        p.error("--minutes must be positive")
    spec = TASKS[args.task]
    if args.pssr2_hr_res is None:
        args.pssr2_hr_res = spec["hr_res"]
    out = args.out or REPO / "bench-results" / spec["out"]
    budget_s = 60.0 * args.minutes
    t_all = time.perf_counter()

    setup = ensure_venv(args.skip_install)
    say(f"PSSR2 venv: {setup['versions']} ({setup['setup_s']:.0f} s)")

    from live_pssr.engines.cache import machine_info
    from live_pssr.evaluate import build_dataset, json_safe, summarize
    from live_pssr.train.config import load_config

    TMP_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{args.task}-", dir=TMP_ROOT))
    say(f"temporary folder {tmp}")
    doc: dict[str, Any] = {}
    try:
        # ------------------------------------------------------------ data
        t_data = time.perf_counter()
        ds = build_dataset(spec["data"], upscale=spec["upscale"])
        train_manifest = write_training_images(args.task, tmp / "train", args.pssr2_hr_res)
        pred_inputs = write_prediction_inputs(args.task, ds.items, tmp / "pred_in")
        data_prep_s = time.perf_counter() - t_data
        say(f"{len(train_manifest)} PSSR2 training files, {len(pred_inputs)} {spec['data']} inputs "
            f"({data_prep_s:.1f} s)")

        # ------------------------------------------------------------ PSSR2
        job = {"task": args.task, "scale": spec["upscale"], "budget_s": budget_s, "hr_res": args.pssr2_hr_res,
               "batch": args.pssr2_batch, "epochs": args.pssr2_epochs, "lr": 1e-3, "gamma": 0.7, "mix": 0.8,
               "seed": args.seed, "train_hr_dir": str(tmp / "train" / "hr"),
               "train_lr_dir": str(tmp / "train" / "lr") if args.task == "denoise" else None,
               "pred_dir": str(tmp / "pred_in"), "pred_sides": {r["key"]: r["side"] for r in pred_inputs},
               "out_dir": str(tmp / "pssr2")}
        (tmp / "job.json").write_text(json.dumps(job, indent=2), encoding="utf-8")
        load_p2 = list(os.getloadavg())
        say(f"== PSSR2: training for {args.minutes:g} min (load average {load_p2[0]:.2f})")
        t = time.perf_counter()
        rc = stream([setup["python"], str(WORKER), str(tmp / "job.json")], "pssr2", tmp / "pssr2.log",
                    one_thread_env(TQDM_DISABLE="1"), budget_s + 3600)
        p2_wall = time.perf_counter() - t
        if rc != 0:
            raise SystemExit(f"the PSSR2 worker failed (exit {rc}); see {tmp / 'pssr2.log'} (kept)")
        p2 = json.loads((tmp / "pssr2" / "pssr2_result.json").read_text(encoding="utf-8"))
        p2_rows = score_pssr2(ds.items, pred_inputs, tmp / "pssr2", spec["upscale"])
        p2.update(summary=summarize(p2_rows), items=p2_rows, wall_s=round(p2_wall, 1),
                  load_average_start=load_p2)

        # ------------------------------------------------------------ live-pssr
        cfg = load_config(REPO / spec["config"])
        ours_path = tmp / "ours.safetensors"
        cmd = [sys.executable, "-m", "live_pssr.train", "--config", spec["config"], "--out", str(ours_path),
               "--checkpoint-dir", str(tmp / "ckpt"), "--max-minutes", f"{args.minutes:g}", "--threads", "1"]
        load_ours = list(os.getloadavg())
        say(f"== live-pssr: {' '.join(cmd[1:])} (load average {load_ours[0]:.2f})")
        t = time.perf_counter()
        rc = stream(cmd, "ours", tmp / "ours.log", one_thread_env(), budget_s + 3600)
        ours_wall = time.perf_counter() - t
        if rc != 0 or not ours_path.exists():
            raise SystemExit(f"live-pssr training failed (exit {rc}); see {tmp / 'ours.log'} (kept)")
        load_ours_end = list(os.getloadavg())
        say("scoring ...")
        ours = evaluate_live(ours_path, spec["data"])
        ours.update(config=spec["config"], config_name=cfg.name, wall_s=round(ours_wall, 1),
                    load_average_start=load_ours, load_average_end=load_ours_end,
                    command=" ".join(["python", *cmd[1:]]))
        shipped = evaluate_live(spec["shipped"], spec["data"])

        # the same inputs: our baseline numbers must be evaluate()'s
        same = all(
            (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-9)
            for a, b in ((p2["summary"]["baseline"][m], ours["summary"]["baseline"][m])
                         for m in p2["summary"]["baseline"]))
        if not same:
            raise SystemExit("the PSSR2 rows' baseline differs from evaluate()'s: not the same inputs")

        doc = {
            "benchmark": "pssr2_head_to_head", "task": args.task, "data": ds.name,
            "description": ds.description,
            "n_images": len(ds.items), "baseline": spec["baseline"], "crappifier": ds.crappifier,
            "budget_minutes": args.minutes, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": " ".join(["python", *sys.argv]) if argv is None else " ".join(argv),
            "machine": {**(m := machine_info()), "lscpu_model_name": m["cpu"]},
            "setup": {**setup, "data_prep_s": round(data_prep_s, 1)},
            "pssr2_training_files": train_manifest, "pssr2_inputs": pred_inputs,
            "pssr2_input_normalisation": (
                "x8 = round(x * 255 / max(x)) as uint8 (x: the low-res input in data units), reflect-padded "
                "bottom/right to a square of side 16*ceil(max(h, w)/16); prediction (uint8) cropped and "
                "mapped back with * max(x) / 255" if args.task == "sr" else
                "the raw 8-bit frame as it is (uint8); prediction used as it is"),
            "baseline_matches_evaluate": same,
            "pssr2": p2, "ours": ours, "shipped": shipped,
            "fairness": [
                f"the same training budget for both loops: {args.minutes:g} min wall clock; venv creation, "
                "data loading, model building and prediction are outside it (recorded)",
                "each loop stops after the step that passes the budget",
                "1 torch thread each, OMP/MKL/OpenBLAS 1 thread, no data-loader worker processes",
                "trained one after the other (PSSR2 first), never concurrently, on this machine",
                "PSSR2 at its defaults (ResUNet, Poisson crappifier / paired data, CLI trainer settings), "
                "its 10-epoch schedule spread over the budget",
                "the same evaluation inputs and live_pssr.evaluate.image_metrics for every row",
            ],
            "caveats": [
                f"{ds.name} inputs are made with {ds.crappifier}; live-pssr's config trains with PSSR's "
                "published crappifier, PSSR2 with its default Poisson()" if args.task == "sr" else
                "live-pssr's config adds simulated and camera-model data to the FMD pairs",
                "live-pssr's config also trains on other sources (see its config); PSSR2 on the listed files",
                "live-pssr keeps the best validation weights and may stop at its config's steps first",
                f"PSSR2 hr_res {args.pssr2_hr_res}, batch {args.pssr2_batch}, {args.pssr2_epochs} epochs "
                f"(its defaults: 512, 16, 10)",
            ],
            "total_s": round(time.perf_counter() - t_all, 1),
        }
        doc = json_safe(doc)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print_table(doc)
        say(f"wrote {out}")
    except BaseException:
        args.keep = True
        raise
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
