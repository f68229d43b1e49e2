"""The training loop: AdamW, warmup + cosine, EMA, validation, checkpoints, resume, early stop, DDP.

:func:`train` takes a validated :class:`~live_pssr.train.config.Config` and writes one model file
(``modelio.save_model``) whose ``ModelSpec.training`` holds the config, the data summary, the
crappifiers, the training time and the validation scores. The model saved is the one with the best
validation loss (a time limit or early stop never loses the best weights).

Loss: ``train.loss`` (``train.losses.make_loss``: L1, MSE, L1 + SSIM, L1 + MS-SSIM). With
``train.ema`` an exponential moving average of the weights (decay ramped as
``min(ema, (1 + step) / (10 + step))`` so early averages do not hold the random start) is what
is validated, kept as the best model, checkpointed and saved; the raw weights keep training.

Checkpoints (``CKPT_DIR/last.safetensors`` + ``CKPT_DIR/last.state.pt``): the first is an ordinary
model file (loadable with ``modelio.load_model``, spec included); the second holds only tensors and
numbers (optimizer state, step, best weights, elapsed time) written by ``torch.save`` and read with
``torch.load(weights_only=True)``, so resuming never unpickles code. Samples are seeded by their
index (``data.PairDataset``), so a resumed run continues with exactly the samples it would have
seen next.

Speed: on CUDA, ``torch.autocast`` (fp16) with a ``GradScaler``; on CPU, fp32 (channels-last
memory format, which oneDNN runs 2-4x faster for these small convolutions).

Multi-GPU: run ``torchrun --nproc_per_node=N -m live_pssr.train --config C.yaml``; with
``WORLD_SIZE > 1`` each process joins the group (NCCL on CUDA, else gloo), wraps the network in
``DistributedDataParallel`` and reads its share of sample indices through a ``DistributedSampler``
(``batch`` is per process). Only rank 0 validates, shows progress and writes files.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelFileError
from ..modelio import ModelSpec, read_spec, save_model
from ..nets import build_net
from .config import Config
from .data import PairDataset, build_sources, fixed_batch
from .losses import make_loss


@dataclass
class TrainResult:
    """What a run produced."""

    out: Path
    steps: int
    best_step: int
    stopped: str  # "steps" | "time" | "early"
    train_time_s: float
    val: dict[str, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    #: one row per validation (step, time_s, lr, train_loss, loss, psnr, ssim)
    history: list[dict[str, float]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# metrics on normalised validation pairs


def psnr_batch(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean PSNR over a batch, each pair with the target's own range as data range."""
    p, t = pred.flatten(1).double(), target.flatten(1).double()
    rng = (t.max(1).values - t.min(1).values).clamp_min(1e-6)
    mse = ((p - t) ** 2).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(rng**2 / mse)).mean())


def ssim_batch(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM (``live_pssr.metrics.ssim``: 7x7 window) with the target's range as data range."""
    from ..metrics import ssim

    vals = []
    for p, t in zip(pred[:, 0].numpy(), target[:, 0].numpy(), strict=True):
        vals.append(ssim(p, t, data_range=float(t.max() - t.min()) or 1.0))
    return float(np.mean(vals))


def baseline_upscale(x: torch.Tensor, upscale: int, ref: int) -> torch.Tensor:
    """Bicubic upsampling of the reference input frame (the classical baseline)."""
    r = x[:, ref : ref + 1] if ref >= 0 else x[:, -1:]
    if upscale == 1:
        return r
    return F.interpolate(r, scale_factor=upscale, mode="bicubic", align_corners=False)


@torch.no_grad()
def evaluate_batch(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, chunk: int = 8
) -> tuple[torch.Tensor, float]:
    """Predict ``x`` in chunks; returns (predictions on CPU, mean L1 loss)."""
    net.eval()
    outs = []
    for i in range(0, x.shape[0], chunk):
        outs.append(net(x[i : i + chunk].to(device)).float().cpu())
    net.train()
    pred = torch.cat(outs)
    return pred, float(F.l1_loss(pred, y))


# ----------------------------------------------------------------------------------------------
# helpers


def channels_last_(net: nn.Module) -> nn.Module:
    """Put the 4-D *parameters* in channels-last (oneDNN's fast CPU layout), in place.

    Buffers stay as they are: a constant (N, 1, k, k) kernel in channels-last has strides torch
    reports as overlapping, which DDP's buffer broadcast refuses.
    """
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
    return net


def lr_at(step: int, cfg: Config, time_frac: float = 0.0) -> float:
    """Linear warmup, then cosine decay to 2 % of the peak.

    The decay follows whichever is further along: the steps (``step / steps``) or the time limit
    (``time_frac`` = elapsed / max_minutes), so a run cut by its time limit still ends annealed.
    """
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    frac = max((step - t.warmup_steps) / max(1, t.steps - t.warmup_steps), time_frac)
    return t.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def make_spec(cfg: Config, training: dict[str, Any] | None = None) -> ModelSpec:
    m = cfg.model
    return ModelSpec(
        name=cfg.name,
        arch=m.arch,
        arch_kwargs=m.net_kwargs(),
        upscale=m.upscale,
        in_frames=m.in_frames,
        target_frame=m.target_frame,
        norm_low=m.norm_low,
        norm_high=m.norm_high,
        training=training or {},
    )


def _state_path(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.name.removesuffix(".safetensors") + ".state.pt")


def _check_compatible(ckpt: Path, cfg: Config) -> None:
    spec = read_spec(ckpt)
    want = make_spec(cfg)
    if spec.arch != want.arch or spec.arch_kwargs != want.arch_kwargs:
        raise ModelFileError(
            f"checkpoint {ckpt} holds architecture {spec.arch} {spec.arch_kwargs}, but the config asks for "
            f"{want.arch} {want.arch_kwargs}",
            "resume with the config the checkpoint was trained with, or start without --resume",
        )


def save_checkpoint(
    ckpt: Path,
    net: nn.Module,
    cfg: Config,
    opt: torch.optim.Optimizer,
    step: int,
    best: dict[str, Any],
    elapsed: float,
    scaler: Any = None,
    ema: nn.Module | None = None,
) -> Path:
    """Write the resumable checkpoint pair (model file + tensors-only state; ``ema``: its weights too)."""
    save_model(ckpt, net, make_spec(cfg, {"config": cfg.model_dump(mode="json"), "step": step}))
    state: dict[str, Any] = {
        "optimizer": opt.state_dict(),
        "step": torch.tensor(step),
        "elapsed": torch.tensor(elapsed, dtype=torch.float64),
        "best_loss": torch.tensor(best["loss"], dtype=torch.float64),
        "best_step": torch.tensor(best["step"]),
        "bad_evals": torch.tensor(best["bad"]),
        "best_weights": best["weights"] or {},
        "best_val": {k: torch.tensor(float(v), dtype=torch.float64) for k, v in best.get("val", {}).items()},
    }
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    if ema is not None:
        state["ema"] = {k: v.detach().cpu().clone() for k, v in ema.state_dict().items()}
    tmp = _state_path(ckpt).with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, _state_path(ckpt))
    return ckpt


def load_checkpoint(ckpt: Path, net: nn.Module, cfg: Config) -> dict[str, Any]:
    """Load weights into ``net`` and return the training state (safe: safetensors + weights_only)."""
    from safetensors.torch import load_file

    ckpt = Path(ckpt)
    if ckpt.is_dir():
        ckpt = ckpt / "last.safetensors"
    if not ckpt.is_file():
        raise ModelFileError(
            f"checkpoint {ckpt} does not exist",
            "pass --resume CKPT_DIR/last.safetensors written by an earlier run",
        )
    _check_compatible(ckpt, cfg)
    try:
        net.load_state_dict(load_file(str(ckpt)), strict=True)
    except RuntimeError as err:
        raise ModelFileError(
            f"checkpoint {ckpt} does not fit the configured network: {str(err).splitlines()[0]}",
            "resume with the config the checkpoint was trained with",
        ) from err
    sp = _state_path(ckpt)
    if not sp.is_file():
        raise ModelFileError(
            f"checkpoint state {sp} is missing (needed to resume the optimizer)",
            "copy it beside the checkpoint, or start a fresh run",
        )
    try:
        state = torch.load(sp, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelFileError(
            f"checkpoint state {sp} is unreadable ({err})", "start a fresh run or restore the file"
        ) from err
    return state


def init_weights(net: nn.Module, cfg: Config, source: str) -> None:
    """Load the weights of model ``source`` (name or path, read safely) into ``net`` for fine-tuning."""
    from ..modelio import load_model

    loaded = load_model(source)
    want = make_spec(cfg)
    if loaded.spec.arch != want.arch or loaded.spec.arch_kwargs != want.arch_kwargs:
        raise ModelFileError(
            f"train.init model {source} is {loaded.spec.arch} {loaded.spec.arch_kwargs}, but the config "
            f"trains {want.arch} {want.arch_kwargs}",
            "initialise from a model of the same architecture and arch_kwargs, or drop train.init",
        )
    net.load_state_dict(loaded.net.state_dict(), strict=True)


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float, step: int) -> None:
    """``ema <- d * ema + (1 - d) * net``, ``d = min(decay, (1 + step) / (10 + step))``; buffers copied."""
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), net.parameters(), strict=True):
        e.lerp_(p.detach(), 1 - d)
    for e, b in zip(ema.buffers(), net.buffers(), strict=True):
        e.copy_(b)


def _describe_sources(cfg: Config, sources: list[Any], val: bool = False) -> list[dict[str, Any]]:
    out = []
    for scfg, src in zip(cfg.data.source_configs(val), sources, strict=True):
        d: dict[str, Any] = {"kind": scfg.kind, "weight": scfg.weight}
        if hasattr(src, "powers"):
            d.update(sequences=len(src.powers), laser_powers=[round(p, 4) for p in src.powers])
        if hasattr(src, "images"):
            d["images"] = len(src.images)
        if hasattr(src, "crap"):  # crappified still images (an FMD source's means too)
            d["crappifier"] = src.crap.config() if hasattr(src.crap, "config") else scfg.crappifier
        if scfg.kind == "fmd":
            d["fields"] = list(scfg.fields)
        if scfg.kind == "images":
            d["paths"] = [str(p) for p in scfg.paths]
        if scfg.kind in ("real", "mito") and scfg.files:
            d["files"] = list(scfg.files)
        out.append(d)
    return out


# ----------------------------------------------------------------------------------------------
# the loop


def train(
    cfg: Config,
    out: str | Path,
    resume: str | Path | None = None,
    max_minutes: float | None = None,
    ckpt_dir: str | Path | None = None,
    progress: bool = True,
    device: str | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train the network ``cfg`` describes and save it to ``out`` (``.safetensors``).

    Parameters
    ----------
    cfg : Config
        Validated training config.
    out : path
        Final model file.
    resume : path, optional
        ``last.safetensors`` (or its folder) of an earlier run with the same architecture.
    max_minutes : float, optional
        Wall-clock limit; overrides ``cfg.train.max_minutes``.
    ckpt_dir : path, optional
        Where checkpoints go (default ``checkpoints/NAME`` under the working directory).
    progress : bool
        Show a rich progress bar (rank 0 only).
    device : str, optional
        ``cpu``, ``cuda``, ``cuda:1``...; default CUDA when available.
    on_step : callable, optional
        ``on_step(step, loss)`` after every optimiser step (tests, logging).
    """
    t = cfg.train
    out = Path(out)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dist = None
    if world > 1:
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    main = rank == 0
    limit_s = 60 * (max_minutes or t.max_minutes) if (max_minutes or t.max_minutes) else math.inf
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else Path("checkpoints") / cfg.name
    ckpt = ckpt_dir / "last.safetensors"

    net = build_net(cfg.model.arch, **cfg.model.net_kwargs()).to(dev)
    start_step, elapsed0 = 0, 0.0
    best: dict[str, Any] = {"loss": math.inf, "step": 0, "bad": 0, "weights": None}
    state = load_checkpoint(Path(resume), net, cfg) if resume else None
    if state is None and t.init:
        init_weights(net, cfg, t.init)
    if dev.type == "cpu":
        channels_last_(net)

    sources, weights = build_sources(cfg)
    vsources, vweights = build_sources(cfg, val=True)
    vx, vy = fixed_batch(vsources, vweights, cfg.data.crop, cfg.data.val_samples, seed=t.seed + 99_991)

    opt = torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    use_amp = t.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start_step = int(state["step"])
        elapsed0 = float(state["elapsed"])
        best = {
            "loss": float(state["best_loss"]),
            "step": int(state["best_step"]),
            "bad": int(state["bad_evals"]),
            "weights": state["best_weights"] or None,
        }
        if state.get("best_val"):
            best["val"] = {k: float(v) for k, v in state["best_val"].items()}

    ema_net: nn.Module | None = None
    if t.ema is not None:
        ema_net = copy.deepcopy(net)
        ema_net.requires_grad_(False)
        if state is not None and state.get("ema"):
            ema_net.load_state_dict(state["ema"])
    judged = ema_net if ema_net is not None else net  # what is validated and saved

    model: nn.Module = net
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)

    remaining = max(0, t.steps - start_step)
    ds = PairDataset(
        sources,
        weights,
        cfg.data.crop,
        remaining * t.batch * world,
        seed=t.seed,
        augment=cfg.data.augment,
        min_foreground=cfg.data.min_foreground,
        offset=start_step * t.batch * world,
        contrast=(cfg.data.intensity.scale, cfg.data.intensity.shift) if cfg.data.intensity else None,
    )
    sampler = None
    if dist is not None:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=t.batch,
        sampler=sampler,
        shuffle=False,
        num_workers=t.workers,
        drop_last=True,
        pin_memory=dev.type == "cuda",
        persistent_workers=False,
    )
    loss_fn = make_loss(t.loss, t.ssim_weight)
    ref = cfg.model.in_frames - 1 if cfg.model.target_frame == "newest" else cfg.model.in_frames // 2
    base = baseline_upscale(vx, cfg.model.upscale, ref)
    val_base = {"psnr": psnr_batch(base, vy), "ssim": ssim_batch(base, vy)}
    val_last: dict[str, float] = {}
    losses: list[float] = []
    #: one row per validation: step, elapsed s, lr, smoothed training loss, validation scores
    history: list[dict[str, float]] = []
    stopped = "steps"
    t0 = time.perf_counter()

    def validate(step: int) -> None:
        nonlocal val_last
        pred, vloss = evaluate_batch(judged, vx, vy, dev)
        val_last = {"loss": vloss, "psnr": psnr_batch(pred, vy), "ssim": ssim_batch(pred, vy), "step": step}
        history.append({
            "step": step,
            "time_s": round(elapsed0 + time.perf_counter() - t0, 1),
            "lr": float(opt.param_groups[0]["lr"]),
            "train_loss": round(float(ema) if ema is not None else float("nan"), 5),
            **{k: round(float(v), 5) for k, v in val_last.items() if k != "step"},
        })
        if vloss < best["loss"] - 1e-6:
            best.update(
                loss=vloss,
                step=step,
                bad=0,
                weights={k: v.detach().cpu().clone() for k, v in judged.state_dict().items()},
            )
            best["val"] = dict(val_last)
        else:
            best["bad"] += 1

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn(f"[bold]{cfg.name}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not (progress and main),
        transient=False,
    )
    step = start_step
    ema: float | None = None  # smoothed training loss (display)
    with bar:
        task = bar.add_task("train", total=t.steps, completed=start_step, info="")
        model.train()
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if dev.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            time_frac = (elapsed0 + time.perf_counter() - t0) / limit_s
            if dist is not None:  # every rank must use rank 0's learning rate
                tf = torch.tensor([time_frac], dtype=torch.float64, device=dev)
                dist.broadcast(tf, 0)
                time_frac = float(tf.item())
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg, time_frac)
            with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                pred = model(x)
            loss = loss_fn(pred.float(), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            if ema_net is not None:
                ema_update(ema_net, net, t.ema, step)
            step += 1
            lv = float(loss.detach())
            losses.append(lv)
            ema = lv if ema is None else 0.98 * ema + 0.02 * lv
            if on_step:
                on_step(step, lv)
            stop_now = False
            if main:
                if step % t.val_every == 0 or step == t.steps:
                    validate(step)
                    if progress and not bar.console.is_terminal:  # logs: one line per validation
                        bar.console.print(
                            f"step {step}/{t.steps} loss {ema:.4f} val loss {val_last['loss']:.4f} "
                            f"PSNR {val_last['psnr']:.2f} dB SSIM {val_last['ssim']:.3f} "
                            f"({elapsed0 + time.perf_counter() - t0:.0f} s)",
                            highlight=False,
                        )
                    if t.patience and best["bad"] >= t.patience:
                        stopped, stop_now = "early", True
                if step % t.checkpoint_every == 0 and step < t.steps:
                    save_checkpoint(
                        ckpt, net, cfg, opt, step, best, elapsed0 + time.perf_counter() - t0, scaler, ema_net
                    )
                if elapsed0 + time.perf_counter() - t0 > limit_s:
                    stopped, stop_now = "time", True
                v = f" val {val_last['psnr']:.2f} dB / {val_last['ssim']:.3f}" if val_last else ""
                bar.update(task, completed=step, info=f"loss {ema:.4f}{v}")
            if dist is not None:
                flag = torch.tensor(int(stop_now), device=dev)
                dist.broadcast(flag, 0)
                stop_now = bool(flag.item())
            if stop_now:
                break

    elapsed = elapsed0 + time.perf_counter() - t0
    result_val: dict[str, float] = {}
    if main:
        if not val_last or val_last.get("step") != step:
            validate(step)
        save_checkpoint(ckpt, net, cfg, opt, step, best, elapsed, scaler, ema_net)
        if best["weights"] is not None:
            net.load_state_dict(best["weights"])
        elif ema_net is not None:
            net.load_state_dict(ema_net.state_dict())
        result_val = dict(best.get("val", val_last))
        training = {
            "config": cfg.model_dump(mode="json"),
            "data": _describe_sources(cfg, sources),
            "steps": step,
            "best_step": best["step"],
            "stopped": stopped,
            "train_time_s": round(elapsed, 1),
            "device": str(dev) + (f" x{world}" if world > 1 else ""),
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "val": {k: round(v, 4) for k, v in result_val.items()},
            "val_baseline_bicubic": {k: round(v, 4) for k, v in val_base.items()},
            "val_note": f"{cfg.data.val_samples} fixed crops "
            + ("of images kept out of training" if cfg.data.val_sources else "of the training sources")
            + ", normalised units, data range = target range",
            **({"val_data": _describe_sources(cfg, vsources, val=True)} if cfg.data.val_sources else {}),
            "loss": t.loss,
            "ema": t.ema,
            "history": history,
        }
        save_model(
            out,
            copy.deepcopy(net).to(memory_format=torch.contiguous_format).cpu(),
            make_spec(cfg, training),
            half=cfg.model.half,
        )
    if dist is not None:
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(
        out=out,
        steps=step,
        best_step=best["step"],
        stopped=stopped,
        train_time_s=elapsed,
        val={**result_val, **{f"bicubic_{k}": v for k, v in val_base.items()}},
        losses=losses,
        history=history,
    )


__all__ = [
    "TrainResult",
    "ema_update",
    "init_weights",
    "load_checkpoint",
    "lr_at",
    "make_spec",
    "save_checkpoint",
    "train",
]
