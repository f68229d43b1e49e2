"""``live-pssr train``: train a model from a YAML config (see ``configs/`` and ``live_pssr/train``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError, EngineUnavailableError


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
        str | None, typer.Option("--device", metavar="<cpu|cuda|cuda:N>",
                                 help="Training device (default: CUDA if available)")
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

    check_config_path(config)
    if max_minutes is not None and not 0 < max_minutes < float("inf"):
        raise ConfigError(f"--max-minutes {max_minutes:g} is not a positive time",
                          "give the training time limit in minutes, e.g. --max-minutes 30 (or leave it out)")
    check_device(device)
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
    check_model_out(out)
    if checkpoint_dir is not None and checkpoint_dir.exists() and not checkpoint_dir.is_dir():
        raise ConfigError(f"--checkpoint-dir {checkpoint_dir} is a file, not a folder",
                          "pass a folder for the checkpoints (it is created when missing)")
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


def check_config_path(config: Path) -> None:
    """A folder given as --config: say so and name the YAML files in it (a missing file: load_config)."""
    if config.is_dir():
        found = sorted(str(p) for p in config.glob("*.y*ml"))[:10]
        raise ConfigError(f"--config {config} is a folder, not a training config file",
                          f"pass one YAML file: {', '.join(found)}" if found
                          else "pass a YAML file, e.g. --config configs/mito-sr4-fast.yaml")


def check_model_out(out: Path) -> None:
    """The model file to write: a ``.safetensors`` file that is not a folder (checked before training)."""
    from ..store.claim import check_output_file

    check_output_file(out, "--out", "my-model.safetensors", what="a model file")
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out {out}: model files end in .safetensors",
                          f"use --out {out.with_suffix('.safetensors')}")


def check_device(device: str | None) -> None:
    """``--device``: cpu, cuda or cuda:N that exists here (torch raises otherwise, mid-way)."""
    if device is None or int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun assigns the GPUs
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a device name",
                          "use cpu, cuda or cuda:N (or leave it out: CUDA when available)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: training runs on cpu or cuda",
                          "use cpu, cuda or cuda:N (or leave it out: CUDA when available)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineUnavailableError(
                f"--device {device}: no CUDA GPU is usable here (torch {torch.__version__})",
                "use --device cpu, or install the CUDA build of torch on a GPU machine (docs/gpu.md)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)",
                              f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
