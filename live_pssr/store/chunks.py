"""Direct zarr v3 array writing: metadata made by zarr-python, chunks encoded and written here.

zarr-python's per-call write path (async codec pipeline) costs milliseconds per frame; a camera
at 100 fps needs the chunk encoded and written in one step. :class:`ChunkFileArray` creates the
array with zarr-python (so ``zarr.json`` is exactly what zarr writes), then writes each chunk as
the file zarr would write: key ``c.<i>.<j>...`` (the default encoding with a "." separator: one
flat folder, no directories to create per frame), codecs ``bytes`` + optional ``blosc``. A new
shape is committed by rewriting ``zarr.json`` atomically (temporary file + ``os.replace``), so
any reader sees either the old or the new shape, never a torn file. numcodecs' Blosc releases
the GIL, so encoding overlaps with the other pipeline threads.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec

#: codec name -> (zarr codec for the metadata, numcodecs encoder or None)
CODECS = ("lz4", "zstd", "none")


def check_codec(name: str) -> None:
    """Raise a clear ConfigError for a codec name the store does not know."""
    if name not in CODECS:
        from ..errors import ConfigError

        raise ConfigError(f"unknown codec {name!r}", f"use one of {', '.join(CODECS)}")


def _codec(name: str, itemsize: int) -> tuple[Any, Any]:
    check_codec(name)
    if name == "none":
        return None, None
    clevel = 1 if name == "zstd" else 5
    meta = BloscCodec(cname=name, clevel=clevel, shuffle="shuffle", typesize=itemsize)
    enc = numcodecs.Blosc(cname=name, clevel=clevel, shuffle=numcodecs.Blosc.SHUFFLE)
    return meta, enc


def write_json_atomic(path: Path, doc: dict[str, Any], fsync: bool = False) -> None:
    """Write JSON (UTF-8) to ``path`` via a temporary file and an atomic rename.

    ``fsync``: the file's data reach the disk before the rename, and the rename before return.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # one per writer
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, allow_nan=True)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a temporary file behind (a full disk needs the space)
        raise
    if fsync:
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make the entries (new files, renames) of ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_paths(paths: list[Path]) -> None:
    """fsync each file of ``paths`` (written since the last sync) and their folders."""
    for folder in {p.parent for p in paths}:
        for p in paths:
            if p.parent == folder:
                try:
                    fd = os.open(p, os.O_RDONLY)
                except FileNotFoundError:  # replaced by a newer version since (atomic rewrite)
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(folder)


class ChunkFileArray:
    """A zarr v3 array on the local file system, written chunk by chunk."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        dtype: np.dtype,
        codec: str = "lz4",
        fill_value: float | int = 0,
        dimension_names: tuple[str, ...] | None = None,
    ) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.chunks = tuple(chunks)
        self._chunk_size = int(np.prod(chunks))
        meta, self._encoder = _codec(codec, self.dtype.itemsize)
        zarr.create_array(
            store=str(self.path),
            shape=shape,
            chunks=chunks,
            dtype=self.dtype,
            fill_value=fill_value,
            compressors=meta if meta is not None else None,
            dimension_names=dimension_names,
            chunk_key_encoding={"name": "default", "separator": "."},
            zarr_format=3,
            overwrite=True,
        )
        self._meta_path = self.path / "zarr.json"
        self.fsync = False  # True: remember written chunks for the next sync (see take_unsynced)
        self._unsynced: list[Path] = []
        self._unsynced_lock = threading.Lock()
        self._meta = json.loads(self._meta_path.read_text(encoding="utf-8"))
        self.shape = tuple(shape)

    def encode(self, chunk: np.ndarray) -> bytes | memoryview:
        """Encode one full chunk exactly as zarr's codec chain does (bytes-like)."""
        data = np.ascontiguousarray(chunk, dtype=self.dtype.newbyteorder("<"))
        if data.size != self._chunk_size:
            raise ValueError(f"chunk of shape {data.shape} does not fill chunks {self.chunks}")
        return memoryview(data).cast("B") if self._encoder is None else self._encoder.encode(data)

    def chunk_path(self, coords: tuple[int, ...]) -> Path:
        return self.path / ".".join(("c", *map(str, coords)))

    def write_chunk(self, coords: tuple[int, ...], chunk: np.ndarray, atomic: bool = False) -> int:
        """Encode and write the chunk at grid ``coords``; returns bytes written.

        ``atomic`` writes a temporary file and renames it into place, so a reader of a store that
        is being written never sees a half-written chunk: needed for chunks that may already be
        visible (rewritten record chunks, enhanced frames arriving after their commit). Raw
        frames are written before the commit that makes them visible and need no rename.
        """
        blob = self.encode(chunk)
        path = self.chunk_path(coords)
        target = path.with_name(f".{path.name}.tmp") if atomic else path
        try:
            with open(target, "wb") as f:
                f.write(blob)
            if atomic:
                os.replace(target, path)
        except BaseException:
            target.unlink(missing_ok=True)  # no torn chunk left behind (it would read as corrupt)
            raise
        if self.fsync:
            with self._unsynced_lock:
                self._unsynced.append(path)
        return len(blob)

    def take_unsynced(self) -> list[Path]:
        """Chunk files written since the last call (with ``fsync`` on)."""
        with self._unsynced_lock:
            out, self._unsynced = self._unsynced, []
        return out

    def read_chunk(self, coords: tuple[int, ...]) -> np.ndarray | None:
        """Decode the chunk at ``coords`` (None if it was never written)."""
        p = self.chunk_path(coords)
        try:
            blob = p.read_bytes()
        except FileNotFoundError:
            return None
        raw = blob if self._encoder is None else self._encoder.decode(blob)
        return np.frombuffer(raw, dtype=self.dtype.newbyteorder("<")).reshape(self.chunks)

    def resize(self, shape: tuple[int, ...]) -> None:
        """Commit a new shape (atomic metadata rewrite)."""
        if tuple(shape) == self.shape:
            return
        self._meta["shape"] = list(shape)
        write_json_atomic(self._meta_path, self._meta, fsync=self.fsync)
        self.shape = tuple(shape)
