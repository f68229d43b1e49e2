"""``live-pssr view STORE``: open a run store (finished, crashed or still being written) in the viewer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..store.claim import check_output_file
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
    from ..viewer import MODES, run_review_viewer  # MODES: Qt is checked here (the viewer extra)

    open_store(store)  # a clear error for a path that is not a run store, before any window
    if mode not in MODES:
        raise LivePSSRError(f"unknown display mode {mode!r}", f"use one of {', '.join(MODES)}")
    if screenshot is not None:
        check_output_file(screenshot, "--screenshot", "view.png")
    if screenshot is None and not has_display():
        raise LivePSSRError(
            "no display to show the viewer on",
            "run it on a desktop session, under `xvfb-run`, or pass --screenshot PATH",
        )
    run_review_viewer(store, frame=frame, screenshot=screenshot, mode=mode)
    if screenshot is not None:
        typer.echo(f"screenshot written: {screenshot}")


