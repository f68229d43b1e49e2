"""Options shared by the live commands (``demo``, ``acquire``); their loop: :mod:`live_pssr.live.driver`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..live.driver import has_display  # noqa: F401 - for view
from ..pipeline import Policy

HeadlessOpt = Annotated[bool, typer.Option("--headless", help="No viewer window.")]
PolicyOpt = Annotated[
    Policy, typer.Option("--policy", case_sensitive=False,
                         help="preview: enhance the newest frame, skip stale ones; "
                         "complete: enhance every frame (backlog worked off after acquisition).")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Shipped model name or .safetensors path.")]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Replace an existing output store (only a live-pssr store not being recorded).")]
EngineOpt = Annotated[str, typer.Option(
    "--engine", help="auto (fastest correct), torch, compile, onnxruntime, openvino, tensorrt.")]
ScreenshotOpt = Annotated[Path | None, typer.Option(
    "--screenshot", help="Write a PNG of the viewer window (works without a display).")]
FsyncOpt = Annotated[str, typer.Option(
    "--fsync", help="off: durable against crashes of live-pssr; commit: also against power loss "
    "(flush every commit); N: flush at most every N seconds.")]


def parse_fsync(text: str) -> str | float:
    """``--fsync`` value: ``off``, ``commit`` or seconds (ConfigError naming the option otherwise)."""
    from ..errors import ConfigError

    if text in ("off", "commit"):
        return text
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ConfigError(f"--fsync {text!r} is not off, commit or a number of seconds",
                          "use --fsync off (default), --fsync commit (every commit) or e.g. --fsync 5")
    return seconds


def exit_with(code: int) -> None:
    """End the command with ``code`` (130/143/129 after a signal) once everything is closed."""
    if code:
        raise typer.Exit(code)
