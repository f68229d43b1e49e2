"""``live-pssr view STORE``: open a run store (finished, crashed or still being written) in the viewer."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from ..store.claim import check_output_file
from ._common import ScreenshotOpt, has_display


class DisplayMode(enum.StrEnum):
    """The review viewer's display modes (``live_pssr.viewer.MODES``, which needs Qt; a test checks them)."""

    SIDE = "side"
    SPLIT = "split"
    BLEND = "blend"
    ENHANCED = "enhanced"


def command(
    store: Annotated[Path, typer.Argument(help="Run store written by demo/acquire/enhance (.ome.zarr).")],
    frame: Annotated[int, typer.Option("--frame", "-t", min=0, help="Frame to show first.")] = 0,
    mode: Annotated[DisplayMode, typer.Option(
        case_sensitive=False, help="Side by side, split, blend, or the enhanced image only.")
    ] = DisplayMode.SIDE,
    screenshot: ScreenshotOpt = None,
    consistency: Annotated[bool, typer.Option(
        "--consistency/--no-consistency",
        help="Start with the consistency overlay on (runs recorded with the check; key C toggles it).")
    ] = False,
) -> None:
    """Review a run: raw and enhanced side by side, a time slider, each frame's record."""
    from ..errors import LivePSSRError
    from ..store import open_store
    from ..viewer import MODES as VIEWER_MODES  # Qt is checked here (the viewer extra)
    from ..viewer import run_review_viewer

    open_store(store)  # a clear error for a path that is not a run store, before any window
    if mode not in VIEWER_MODES:
        raise LivePSSRError(f"unknown display mode {mode!r}", f"use one of {', '.join(VIEWER_MODES)}")
    if screenshot is not None:
        check_output_file(screenshot, "--screenshot", "view.png")
    if screenshot is None and not has_display():
        raise LivePSSRError(
            "no display to show the viewer on",
            "run it on a desktop session, under `xvfb-run`, or pass --screenshot PATH",
        )
    run_review_viewer(store, frame=frame, screenshot=screenshot, mode=str(mode), consistency=consistency)
    if screenshot is not None:
        typer.echo(f"screenshot written: {screenshot}")


