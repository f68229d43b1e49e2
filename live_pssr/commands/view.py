"""``live-pssr view STORE``: open a run store (finished, crashed or still being written) in the viewer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import ScreenshotOpt, has_display


def command(
    store: Annotated[Path, typer.Argument(help="Run store written by demo/acquire/enhance (.ome.zarr).")],
    frame: Annotated[int, typer.Option("--frame", "-t", min=0, help="Frame to show first.")] = 0,
    mode: Annotated[str, typer.Option(help="side, split, blend or enhanced.")] = "side",
    screenshot: ScreenshotOpt = None,
) -> None:
    """Review a run: raw and enhanced side by side, a time slider, each frame's record."""
    from ..errors import LivePSSRError
    from ..store import open_store
    from ..viewer import run_review_viewer
    from ..viewer.window import MODES

    open_store(store)  # a clear error for a path that is not a run store, before any window
    if mode not in MODES:
        raise LivePSSRError(f"unknown display mode {mode!r}", f"use one of {', '.join(MODES)}")
    if screenshot is not None:
        check_screenshot_path(screenshot)
    if screenshot is None and not has_display():
        raise LivePSSRError(
            "no display to show the viewer on",
            "run it on a desktop session, under `xvfb-run`, or pass --screenshot PATH",
        )
    run_review_viewer(store, frame=frame, screenshot=screenshot, mode=mode)
    if screenshot is not None:
        typer.echo(f"screenshot written: {screenshot}")


def check_screenshot_path(path: Path) -> None:
    """``--screenshot``: a file name (not a folder) in a folder that exists or can be made, writable."""
    import os

    from ..errors import ConfigError

    if path.is_dir():
        raise ConfigError(f"--screenshot {path} is a folder, not a file",
                          f"pass a PNG file name, e.g. --screenshot {path / 'view.png'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--screenshot {path}: {parent} is a file, not a folder",
                                  "choose a path inside a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"--screenshot {path}: the folder {parent} is not writable",
                                  "choose a writable folder")
            return
