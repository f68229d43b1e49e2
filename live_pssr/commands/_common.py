"""Options shared by the commands (``demo``, ``acquire``, ...); the live loop: :mod:`live_pssr.live.driver`.

Options with a fixed set of values are ``StrEnum`` options, so ``--help`` lists them
(``[preview|complete]``) and click names them when a value is wrong; ``--engine`` (a name plus
an optional ``:PRECISION``) lists its names as its metavar and :func:`check_engine` refuses a
bad one with a :class:`~live_pssr.errors.ConfigError` before the command starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
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
#: the ``--engine`` names (``live_pssr.engines.available_engines()`` plus ``auto``; checked by a test)
ENGINE_NAMES = ("auto", "torch", "compile", "onnxruntime", "openvino", "tensorrt")
#: the precisions an engine name may carry (``openvino:bf16``)
ENGINE_PRECISIONS = ("fp32", "fp16", "bf16")


def check_engine(value: str) -> str:
    """``--engine``: an engine name, optionally ``:PRECISION`` (``openvino:bf16``); ConfigError otherwise."""
    text = str(value).strip().lower()
    name, _, precision = text.partition(":")
    if name not in ENGINE_NAMES:
        raise ConfigError(f"--engine {value!r} is not an engine",
                          f"choose auto or one of {', '.join(ENGINE_NAMES[1:])} "
                          "(optionally with :fp32, :fp16 or :bf16, e.g. openvino:bf16)")
    if precision and precision not in ENGINE_PRECISIONS:
        raise ConfigError(f"--engine {value!r}: {precision!r} is not a precision",
                          f"use --engine {name}, or {name}:PRECISION with one of "
                          f"{', '.join(ENGINE_PRECISIONS)}")
    return text


EngineOpt = Annotated[str, typer.Option(
    "--engine", metavar=f"<{'|'.join(ENGINE_NAMES)}>[:{'|'.join(ENGINE_PRECISIONS)}]", callback=check_engine,
    help="auto (fastest correct here), or one backend; :PRECISION picks fp16/bf16 where it has them.")]
ScreenshotOpt = Annotated[Path | None, typer.Option(
    "--screenshot", help="Write a PNG of the viewer window (works without a display).")]
FsyncOpt = Annotated[str, typer.Option(
    "--fsync", metavar="<off|commit|SECONDS>",
    help="off: durable against crashes of live-pssr; commit: also against power loss "
    "(flush every commit); N: flush at most every N seconds.")]


def parse_fsync(text: str) -> str | float:
    """``--fsync`` value: ``off``, ``commit`` or seconds (ConfigError naming the option otherwise)."""
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
