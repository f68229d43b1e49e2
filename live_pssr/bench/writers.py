"""Peer writers for ``bench pipeline``: the same camera frames written by tensorstore and acquire-zarr.

Each writes ``n`` frames of one shape as a zarr v3 array of one frame per chunk, with the codec
live-pssr uses (blosc-lz4 or -zstd, byte shuffle; or none), as fast as it takes them, then
``sync`` (as the raw-write row does), so the rates compare like for like:

- tensorstore: ``zarr3`` driver on the local file system, writes issued asynchronously (up to
  16 in flight; tensorstore's own thread pool encodes and writes);
- acquire-zarr: ``ZarrStream.append`` per frame (its C++ thread pool encodes and writes).

A writer whose package is not installed gives ``None`` and the reason (``pip install
"live-pssr[bench]"`` installs both).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _blosc_name(codec: str) -> str | None:
    return None if codec == "none" else codec


def _timed(write_all: Callable[[], None], path: Path, n: int, keep: bool) -> float:
    """Frames per second of ``write_all()`` plus ``sync``; ``path`` removed after unless ``keep``."""
    t0 = time.perf_counter()
    write_all()
    os.sync()
    dt = time.perf_counter() - t0
    if not keep:
        shutil.rmtree(path, ignore_errors=True)
    return n / dt


def tensorstore_fps(folder: Path, frames: list[np.ndarray], n: int, codec: str,
                    keep: bool = False) -> tuple[float | None, str]:
    """Frames per second tensorstore writes (None and why when it is not installed).

    The array is at ``folder / "peer-tensorstore.zarr"`` (removed unless ``keep``).
    """
    try:
        import tensorstore as ts
    except ImportError:
        return None, "tensorstore is not installed (pip install \"live-pssr[bench]\")"
    h, w = frames[0].shape
    path = folder / "peer-tensorstore.zarr"
    codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    name = _blosc_name(codec)
    if name is not None:
        codecs.append({"name": "blosc", "configuration": {
            "cname": name, "clevel": 1 if name == "zstd" else 5, "shuffle": "shuffle", "typesize": 2}})
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)},
            "metadata": {"shape": [n, 1, h, w], "data_type": "uint16",
                         "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 1, h, w]}},
                         "codecs": codecs}}
    arr = ts.open(spec, create=True, delete_existing=True).result()

    def write_all() -> None:
        pending = []
        for i in range(n):
            pending.append(arr[i, 0].write(frames[i % len(frames)].copy()))
            if len(pending) >= 16:
                pending.pop(0).result()
        for f in pending:
            f.result()

    return _timed(write_all, path, n, keep), "zarr3, 16 writes in flight"


def acquire_zarr_fps(folder: Path, frames: list[np.ndarray], n: int, codec: str,
                     keep: bool = False) -> tuple[float | None, str]:
    """Frames per second acquire-zarr streams (None and why when it is not installed).

    The array is at ``folder / "peer-acquire.zarr"`` (removed unless ``keep``).
    """
    try:
        import acquire_zarr as az
    except ImportError:
        return None, "acquire-zarr is not installed (pip install \"live-pssr[bench]\")"
    h, w = frames[0].shape
    path = folder / "peer-acquire.zarr"
    name = _blosc_name(codec)
    compression = None if name is None else az.CompressionSettings(
        compressor=az.Compressor.BLOSC1,
        codec=az.CompressionCodec.BLOSC_LZ4 if name == "lz4" else az.CompressionCodec.BLOSC_ZSTD,
        level=1 if name == "zstd" else 5, shuffle=1)
    kinds = az.DimensionType
    dims = [az.Dimension(name=name, kind=kind, array_size_px=size, chunk_size_px=chunk, shard_size_chunks=1)
            for name, kind, size, chunk in (("t", kinds.TIME, 0, 1), ("c", kinds.CHANNEL, 1, 1),
                                            ("y", kinds.SPACE, h, h), ("x", kinds.SPACE, w, w))]
    settings = az.StreamSettings(store_path=str(path), overwrite=True, arrays=[az.ArraySettings(
        dimensions=dims, data_type=np.uint16, compression=compression)])
    stream = az.ZarrStream(settings)

    def write_all() -> None:
        for i in range(n):
            stream.append(frames[i % len(frames)].copy())
        stream.close()

    return _timed(write_all, path, n, keep), "one frame per chunk and shard"
