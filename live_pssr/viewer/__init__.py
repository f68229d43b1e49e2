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
image panel), :mod:`.overlay` (split/blend), :mod:`.consistency_layer` (the consistency
check's map over the enhanced image), :mod:`.window` (the window), :mod:`.app` (entry points).
Importing this package does not import Qt; the entry points do, after :func:`require_qt` (Qt,
qtpy and pyqtgraph come with the ``viewer`` extra: without them the entry points raise
:class:`~live_pssr.engines.capabilities.MissingExtraError` naming ``pip install
"live-pssr[viewer]"``). ``MODES`` (the display modes) is looked up the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def require_qt(what: str = "the viewer") -> None:
    """Raise a clear error (``pip install "live-pssr[viewer]"``) unless Qt, qtpy and pyqtgraph load."""
    from ..engines.capabilities import require_extra

    require_extra("viewer", what)


def __getattr__(name: str) -> Any:
    if name == "MODES":
        require_qt()
        from .window import MODES

        return MODES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_live_viewer(pipeline: Any, runner: Any, screenshot: Path | None = None,
                    screenshot_after: int = 30) -> None:
    """Show the live viewer (main thread); see :func:`live_pssr.viewer.app.run_live_viewer`."""
    require_qt("the live viewer")
    from .app import run_live_viewer as run

    run(pipeline, runner, screenshot=screenshot, screenshot_after=screenshot_after)


def run_review_viewer(store: str | Path, frame: int = 0, screenshot: Path | None = None,
                      mode: str = "side", consistency: bool = False) -> None:
    """Open a run store for review; see :func:`live_pssr.viewer.app.run_review_viewer`."""
    require_qt("live-pssr view")
    from .app import run_review_viewer as run

    run(store, frame=frame, screenshot=screenshot, mode=mode, consistency=consistency)


__all__ = ["MODES", "require_qt", "run_live_viewer", "run_review_viewer"]
