"""PSSR2 side of ``benchmarks/pssr2_head_to_head.py``: train PSSR2's ResUNet, then predict.

Runs in the separate PSSR2 venv (``.cache/pssr2-venv``, ``pssr==2.4.0``), never in live-pssr's::

    .cache/pssr2-venv/bin/python benchmarks/_pssr2_worker.py JOB.json

``JOB.json`` (written by the benchmark) names the folders and settings; everything here is PSSR2's
own code with its defaults, except what the benchmark's fairness rules need (see its docstring):

* model ``pssr.models.ResUNet(channels=1, scale=S)`` (default hidden ``[64, 128, 256, 512, 1024]``,
  depth 3, no dilations/PSP pooling); data ``pssr.data.ImageDataset`` with the default
  ``pssr.crappifiers.Poisson()`` crappifier (super-resolution) or ``pssr.data.PairedImageDataset``
  of real noisy/clean pairs (denoising); trainer ``pssr.train.train_paired`` with the settings of
  PSSR2's own CLI (``pssr --train``): AdamW lr 1e-3, ``SSIMLoss(mix=0.8)`` (MS-SSIM + Gaussian-weighted
  L1) with the CLI's window rule, ``ExponentialLR(gamma=0.7)`` stepped once per epoch, 10 epochs,
  batch 16.
* the budget: ``train_paired`` has no time limit and an epoch is one pass over the images (here a
  handful: one optimiser step), so the budget is cut into the CLI's 10 epochs of equal wall-clock
  time; each is one ``train_paired(epochs=1)`` call over the images repeated, stopped by a
  per-batch callback when its time is up, followed by the scheduler step ``train_paired`` would
  make. The 10-epoch schedule thus ends with the budget (as live-pssr's own trainer anneals to its
  time limit). Training stops after the step that passes the budget (the same rule as live-pssr).
* every training image trains: PSSR2 holds out ``max(1, 10 %)`` of the images for its end-of-epoch
  validation; the dataset is wrapped so that validation index is a copy of a training item (it is
  never reached: epochs end by time).
* 1 thread (``torch.set_num_threads(1)``, ``num_workers=0`` instead of the CLI's 4 loader processes).
* prediction: ``pssr.predict.predict_images`` on an ``ImageDataset`` in LR mode (``lr_scale=-1``),
  one image per dataset (each padded to its own square by the benchmark: PSSR2 centre-crops every
  image to a square). Outputs are PSSR2's: clipped to [0, 255] and cast to uint8.

torchvision: ``pssr.models`` imports ``timm``, which imports torchvision. PyPI's torchvision 0.28.0
is the CUDA 13.0 build; its ``_C.so`` links ``libtorch_cuda.so`` and does not load beside the CPU
torch 2.13.0, and torchvision 0.28.0 then fails at import (``RuntimeError: operator
torchvision::nms does not exist``: two unguarded ``register_fake`` calls). :func:`torchvision_shim`
declares the two op schemas first so the import succeeds; no torchvision op is ever run (ResUNet,
the loss and the data pipeline are plain torch/numpy/PIL/skimage).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any


def log(msg: str) -> None:
    """A progress line on the real stdout (PSSR2's prints are silenced around its calls)."""
    print(msg, file=sys.__stdout__, flush=True)


def torchvision_shim() -> bool:
    """Let ``import torchvision`` succeed without its C++ ops (see the module docstring).

    Returns True when the shim was needed (``_C`` did not load), False when torchvision's ops load.
    """
    import importlib.util

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    lib = next(Path(spec.origin).parent.glob("_C*.so"), None)
    if lib is not None:
        try:
            torch.ops.load_library(str(lib))
            return False
        except OSError:
            pass
    shim = torch.library.Library("torchvision", "DEF")  # kept alive by the module global below
    shim.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    shim.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_TORCHVISION_SHIM"] = shim
    return True


def max_ssim_win(hr_res: int) -> int:
    """``pssr.__main__._max_ssim_win`` (the CLI's SSIM window rule), copied: importing ``pssr.__main__``
    appends ``..`` to ``sys.path``."""
    size = (hr_res - 1) // 16
    return size + 1 if size % 2 == 0 else size


def main(job_path: str) -> int:
    job: dict[str, Any] = json.loads(Path(job_path).read_text(encoding="utf-8"))
    out = Path(job["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    import warnings

    import numpy as np
    import torch

    # pssr.util.pixel_metric calls math.sqrt on a grad-carrying tensor (its progress display only)
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    shimmed = torchvision_shim()

    import pssr
    import torchvision
    from pssr.crappifiers import Poisson
    from pssr.data import ImageDataset, PairedImageDataset
    from pssr.models import ResUNet
    from pssr.predict import predict_images
    from pssr.train import train_paired
    from pssr.util import SSIMLoss

    import_s = time.perf_counter() - t_start
    seed = int(job["seed"])
    random.seed(seed)  # PSSR2 draws rotations with `random` and crappifier noise with np.random
    np.random.seed(seed)
    torch.manual_seed(seed)

    # ---------------------------------------------------------------- data
    t_data = time.perf_counter()
    scale, hr_res, batch = int(job["scale"]), int(job["hr_res"]), int(job["batch"])
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        if job["train_lr_dir"]:  # real pairs (denoising): PSSR2's paired dataset, no crappifier
            base = PairedImageDataset(job["train_hr_dir"], job["train_lr_dir"], hr_res=hr_res, lr_scale=scale,
                                      extension="tif")
        else:
            base = ImageDataset(job["train_hr_dir"], hr_res=hr_res, lr_scale=scale, crappifier=Poisson(),
                                extension="tif")
    if getattr(base, "is_lr", False):
        raise SystemExit(f"PSSR2 put the training set in LR mode (images <= {hr_res // scale} px)")
    held_out = list(base.val_idx)
    base.val_idx = []  # every image trains (PSSR2 would hold out max(1, 10 %) of them)
    n_files = len(base)

    class Repeated(torch.utils.data.Dataset):
        """``base``'s items repeated (an epoch here ends by time, not after one pass), plus one
        validation index that is a copy of item 0 (train_paired excludes its val_idx from training)."""

        def __init__(self, reps: int) -> None:
            self.length = n_files * reps
            self.val_idx = [self.length]
            self.extra_hr_files = None
            for name in ("hr_res", "lr_scale", "crop_res", "n_frames", "is_lr"):
                setattr(self, name, getattr(base, name, None))

        def __len__(self) -> int:
            return self.length + 1

        def __getitem__(self, i: int):
            return base[i % n_files]

    data = Repeated(max(1, 20_000 // n_files))
    model = ResUNet(channels=1, scale=scale)
    params = sum(p.numel() for p in model.parameters())
    loss_fn = SSIMLoss(channels=1, mix=float(job["mix"]), win_size=min(max_ssim_win(hr_res), 11))
    optim = torch.optim.AdamW(model.parameters(), lr=float(job["lr"]))
    sched = torch.optim.lr_scheduler.ExponentialLR(optim, float(job["gamma"]))
    data_s = time.perf_counter() - t_data
    log(f"PSSR2 {pssr.__version__} (torch {torch.__version__}, torchvision {torchvision.__version__}"
        f"{', shimmed' if shimmed else ''}): ResUNet {params / 1e6:.1f} M parameters, {n_files} training "
        f"images of {hr_res} px, batch {batch}, budget {job['budget_s']:.0f} s in {job['epochs']} epochs")

    # ---------------------------------------------------------------- training
    class SliceDone(Exception):
        pass

    budget, epochs = float(job["budget_s"]), int(job["epochs"])
    state: dict[str, Any] = {"steps": 0, "slice_end": 0.0, "last_log": -1e9}
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()

    def on_batch(loc: dict[str, Any]) -> None:
        """After every optimiser step (PSSR2 passes its locals() to one-argument callbacks)."""
        state["steps"] += 1
        now = time.perf_counter() - t0
        loss = float(loc["loss"].detach())
        history.append({"step": state["steps"], "time_s": round(now, 2), "loss": round(loss, 5),
                        "lr": float(optim.param_groups[0]["lr"])})
        if now - state["last_log"] >= 10 or now >= budget:
            state["last_log"] = now
            log(f"step {state['steps']} epoch {state['epoch']} loss {loss:.4f} "
                f"lr {optim.param_groups[0]['lr']:.2e} ({now:.0f}/{budget:.0f} s)")
        if now >= state["slice_end"]:
            raise SliceDone

    epochs_done = 0
    for epoch in range(epochs):
        state["epoch"] = epoch
        state["slice_end"] = budget * (epoch + 1) / epochs
        while time.perf_counter() - t0 < state["slice_end"]:
            try:
                with contextlib.redirect_stdout(quiet):
                    train_paired(model=model, dataset=data, batch_size=batch, loss_fn=loss_fn, optim=optim,
                                 epochs=1, device="cpu", scheduler=None,
                                 dataloader_kwargs={"num_workers": 0}, callbacks=[on_batch])
            except SliceDone:
                pass
        sched.step()  # what train_paired does at the end of each epoch
        epochs_done += 1
    train_s = time.perf_counter() - t0
    torch.save(model.state_dict(), out / "pssr2_resunet.pth")
    log(f"trained {state['steps']} steps ({state['steps'] * batch} samples, "
        f"{state['steps'] * batch / n_files:.1f} passes over the images) in {train_s:.0f} s")

    # ---------------------------------------------------------------- prediction
    t_pred = time.perf_counter()
    preds: dict[str, Any] = {}
    for folder in sorted(Path(job["pred_dir"]).iterdir()):
        side = int(job["pred_sides"][folder.name])
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(io.StringIO()):
            ds = ImageDataset(folder, hr_res=side, lr_scale=-1, val_split=1, rotation=False, extension="tif")
            got = predict_images(model, ds, device="cpu", out_dir=None)
        (name, img), = got.items()
        np.save(out / f"pred_{folder.name}.npy", np.asarray(img)[0])
        preds[folder.name] = {"dataset_name": name, "shape": list(np.asarray(img).shape),
                              "dtype": str(img.dtype)}
    predict_s = time.perf_counter() - t_pred
    log(f"predicted {len(preds)} images in {predict_s:.1f} s")

    result = {
        "pssr_version": pssr.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "torchvision_shim": shimmed, "threads": torch.get_num_threads(),
        "model": "pssr.models.ResUNet", "model_repr": model.extra_repr(), "params": params,
        "hidden": [64, 128, 256, 512, 1024], "depth": 3, "scale": scale,
        "dataset": type(base).__name__,
        "crappifier": None if job["train_lr_dir"] else "pssr.crappifiers.Poisson()",
        "hr_res": hr_res, "batch": batch, "lr": float(job["lr"]), "gamma": float(job["gamma"]),
        "loss": f"SSIMLoss(mix={job['mix']}, ms=True, win_size={min(max_ssim_win(hr_res), 11)})",
        "training_images": n_files, "pssr_default_val_idx": held_out,
        "steps": state["steps"], "samples": state["steps"] * batch, "epochs": epochs_done,
        "passes_over_images": state["steps"] * batch / n_files,
        "final_lr": float(optim.param_groups[0]["lr"]),
        "train_s": round(train_s, 2), "import_s": round(import_s, 2), "data_s": round(data_s, 2),
        "predict_s": round(predict_s, 2), "history": history, "predictions": preds,
        "load_average_end": list(os.getloadavg()),
    }
    (out / "pssr2_result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
