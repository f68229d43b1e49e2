"""``live-pssr train``: train a model from a YAML config (see ``configs/`` and ``live_pssr/train``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def command(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="training config YAML (e.g. configs/mito-sr4-fast.yaml)")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="model file to write (default models/NAME.safetensors)")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="checkpoint (last.safetensors or its folder) to continue")
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option("--max-minutes", help="stop after this many minutes, keeping the best model"),
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="override train.steps")] = None,
    checkpoint_dir: Annotated[
        Path | None, typer.Option("--checkpoint-dir", help="default checkpoints/NAME")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: CUDA if available)")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads (override train.threads)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> None:
    """Train a model from a YAML config: crappified images, the simulator, real pairs.

    Multi-GPU: torchrun --nproc_per_node=N -m live_pssr train --config C.yaml (batch is per GPU).
    """
    from rich.console import Console

    from ..train import load_config, parse_config, train

    cfg = load_config(config)
    if steps is not None or threads is not None:
        data = cfg.model_dump(mode="json")
        if steps is not None:
            data["train"]["steps"] = steps
            data["train"]["warmup_steps"] = min(data["train"]["warmup_steps"], max(0, steps - 1))
        if threads is not None:
            data["train"]["threads"] = threads
        cfg = parse_config(data, f"{config} (with command-line overrides)")
    out = out or Path("models") / f"{cfg.name}.safetensors"
    res = train(
        cfg,
        out,
        resume=resume,
        max_minutes=max_minutes,
        ckpt_dir=checkpoint_dir,
        progress=not quiet,
        device=device,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 reports
        return
    v = res.val
    Console().print(
        f"[green]wrote {res.out}[/] after {res.steps} steps ({res.stopped}), "
        f"{res.train_time_s / 60:.1f} min; "
        f"best step {res.best_step}: val PSNR {v.get('psnr', float('nan')):.2f} dB "
        f"(bicubic {v.get('bicubic_psnr', float('nan')):.2f}), SSIM {v.get('ssim', float('nan')):.3f} "
        f"(bicubic {v.get('bicubic_ssim', float('nan')):.3f})"
    )
