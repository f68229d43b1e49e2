"""The live viewer: raw and enhanced side by side, at the camera's rate, never slowing acquisition.

Three stages, as in napari-micromanager and pyqtgraph's VideoSpeedTest::

    acquisition thread --submit--> LivePipeline --> display slot (one newest raw + enhanced frame)
                                                         ^
    GUI thread: QTimer 60 Hz --latest()-----------------'  --> setImage(autoLevels=False) per panel
                QTimer  4 Hz --stats()-------------------------> status bar

The pipeline never calls Qt and never waits for the viewer: a slow redraw only means the viewer
sees fewer frames. Each panel has one image item created once; per frame only ``setImage`` runs,
on a strided view when zoomed out (see :mod:`.contrast`). Review reads frames back from the run's
store (:mod:`.review`), also while the run is being written.

Modules: :mod:`.contrast` (levels, histograms, LUTs; no Qt), :mod:`.status` (status text; no Qt),
:mod:`.review` (store reading; no Qt), :mod:`.snapshot` (PNG of both panels), :mod:`.panel` (one
image panel), :mod:`.overlay` (split/blend), :mod:`.window` (the window), :mod:`.app` (entry
points). Importing this package does not import Qt; the entry points do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_live_viewer(pipeline: Any, runner: Any, screenshot: Path | None = None,
                    screenshot_after: int = 30) -> None:
    """Show the live viewer (main thread); see :func:`live_pssr.viewer.app.run_live_viewer`."""
    from .app import run_live_viewer as run

    run(pipeline, runner, screenshot=screenshot, screenshot_after=screenshot_after)


def run_review_viewer(store: str | Path, frame: int = 0, screenshot: Path | None = None,
                      mode: str = "side") -> None:
    """Open a run store for review; see :func:`live_pssr.viewer.app.run_review_viewer`."""
    from .app import run_review_viewer as run

    run(store, frame=frame, screenshot=screenshot, mode=mode)


__all__ = ["run_live_viewer", "run_review_viewer"]
