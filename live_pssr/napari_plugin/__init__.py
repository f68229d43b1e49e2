"""live-pssr in napari: a reader for run stores and two dock widgets (npe2 manifest ``napari.yaml``).

* :mod:`._reader` -- opens a run store (or a series root of several streams) as layers ``raw``,
  ``enhanced`` and, when the run had the consistency check, ``consistency``, lazily (dask over
  the zarr arrays), overlaid exactly in world coordinates (:mod:`._geometry`: napari puts pixel
  centres at ``index * scale + translate``), with the time axis at the real frame interval and
  contrast limits from the data. It claims only live-pssr stores (root attributes
  ``live_pssr`` / ``live_pssr_series``); napari's builtin reader keeps every other zarr store.
* :mod:`._enhance_widget` -- enhance an image layer with a chosen model and engine on a napari
  ``thread_worker`` (progress, cancel); the result is added with the finer scale and translation.
* :mod:`._live_widget` -- attach a :class:`~live_pssr.live.LiveSession` to the pymmcore-plus core
  that napari-micromanager / pymmcore-widgets drive and show its enhanced stream, refreshed by a
  GUI-thread ``QTimer`` from the session's one-slot display (never on the acquisition thread).

Only :mod:`._reader` and :mod:`._geometry` import without Qt; napari itself is the ``[napari]``
extra. Make live-pssr napari's preferred reader for run stores: :func:`prefer_for_run_stores`
(or napari's Preferences > Plugins, docs/napari.md).
"""

from __future__ import annotations

from ._geometry import enhanced_translate, finer_geometry
from ._reader import frame_interval_s, get_reader, read_run, root_kind

#: the plugin's name in napari (``viewer.open(path, plugin=PLUGIN)``)
PLUGIN = "live-pssr"
#: napari matches folders with a trailing separator: this pattern covers ``*.ome.zarr`` run stores
RUN_STORE_PATTERN = "*.ome.zarr/"


def prefer_for_run_stores(pattern: str = RUN_STORE_PATTERN) -> None:
    """Make live-pssr the reader napari uses for folders matching ``pattern`` (saved in its settings).

    napari's builtin reader also claims ``*.zarr`` folders; without a preference napari asks
    which reader to use. The preference is napari's ``settings.plugins.extension2reader``.
    """
    from napari.settings import get_settings

    plugins = get_settings().plugins
    plugins.extension2reader = {**plugins.extension2reader, pattern: PLUGIN}


__all__ = ["PLUGIN", "RUN_STORE_PATTERN", "enhanced_translate", "finer_geometry", "frame_interval_s",
           "get_reader", "prefer_for_run_stores", "read_run", "root_kind"]
