"""The run store: raw and enhanced streams together in one OME-Zarr v0.5 (zarr v3) store.

Layout (a ``bioformats2raw.layout`` collection, which napari's OME-Zarr reader opens as separate
images; raw and enhanced differ in size, so they cannot share a channel axis)::

    RUN.ome.zarr/
      zarr.json            group: ome.version 0.5, bioformats2raw.layout 3, live_pssr run metadata
      OME/zarr.json        group: ome.series ["0", "1"]
      OME/METADATA.ome.xml two OME Images (raw, enhanced) with physical sizes
      0/zarr.json          image "raw": multiscales, axes t,c,y,x (s, -, um, um)
      0/0/                 array (T, 1, H, W), one frame per chunk, blosc-lz4
      1/zarr.json          image "enhanced": scale = raw scale / upscale on y, x
      1/0/                 array (T, 1, H*s, W*s)
      frames/<column>      per-frame records, 1-D column arrays (index, times, latency, status)

Writing (:class:`RunStore`) encodes chunks itself and writes them as files (no per-frame codec
pipeline or event loop), and commits metadata by atomic rename, so a ``kill -9`` leaves a store
that opens and holds every committed frame. Reading (:func:`open_store`) uses zarr-python.
"""

from .reader import StoreReader, open_store
from .records import STATUS, FrameStatus
from .writer import RunStore

__all__ = ["STATUS", "FrameStatus", "RunStore", "StoreReader", "open_store"]
