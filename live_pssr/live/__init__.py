"""The live path: frames from a microscope, stored and enhanced while they are acquired.

Read top to bottom:

* :mod:`~live_pssr.live.session` -- :class:`LiveSession`: the Micro-Manager hooks (pycromanager
  ``image_process_fn``, pymmcore-plus ``frameReady``); the acquisition thread only validates,
  copies and enqueues.
* :mod:`~live_pssr.live.streams`, :mod:`~live_pssr.live.stream` -- the layout (one store or a
  series) and one pipeline per stream, started off the acquisition thread.
* :mod:`~live_pssr.live.frame_info` -- what is kept of Micro-Manager's metadata.
* :mod:`~live_pssr.live.summary` -- the session's counters and its end summary.
* :mod:`~live_pssr.live.shared_enhancer` -- one enhancer for all streams, built in the background.
* :mod:`~live_pssr.live.runners` -- what produces frames on a thread: a frame source or an MDA.
* :mod:`~live_pssr.live.driver` -- the commands' loop: viewer or progress, signals, stop, summary.
* :mod:`~live_pssr.live.protocols` -- the seams (runner, live run, enhancer) as Protocols.

Below it: :mod:`live_pssr.pipeline` (threads and policies of one store), :mod:`live_pssr.store`
(the run store, path claims, series), :mod:`live_pssr.mm` (devices, cores, pycromanager bridge).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LiveSession": "session",
    "SessionSummary": "summary",
    "SourceRunner": "runners",
    "MDARunner": "runners",
    "drive_run": "driver",
    "run_live": "driver",
    "Runner": "protocols",
    "LiveRun": "protocols",
    "LiveEnhancer": "protocols",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
