"""Writing enhanced stacks: tif, zarr / OME-Zarr image, or a live-pssr run store (raw + enhanced).

Every target is created once, up front, with its final shape (so workers only fill regions) and
then takes ``write(start, enhanced, raw)`` for consecutive frames ``start, start+1, ...``:

- :class:`TifTarget` (``.tif``: ImageJ hyperstack; ``.ome.tif``: OME-TIFF): an uncompressed tif
  laid out by ``tifffile.memmap``; writers map it and fill their frames (any process, any order).
- :class:`ZarrTarget` (``.zarr``): a zarr v3 array, one chunk per frame (tiled in y/x beyond 2048
  pixels), so concurrent writers never share a chunk. An OME-Zarr input gives an OME-Zarr 0.5
  image (multiscales, axes and units, ``scale`` divided by the upscale on y and x), else a plain
  array with ``dimension_names`` and ``pixel_size_um``/``frame_interval_s`` attributes.
- :class:`RunStoreTarget` (``.ome.zarr``): a :class:`~live_pssr.store.RunStore` holding the raw
  frames and the enhanced ones with per-frame records (status ``after``: enhanced from recorded
  data). The store is one object, so it takes frames from threads only (not processes).

Pixel size and frame interval are the input's (pixel size divided by the upscale); the
provenance (source, model, engine, tiling, intensity mapping) goes into the tif's ImageJ ``Info``
/ OME ``Description``, the zarr attributes (``live_pssr``), or the run store's run metadata.
"""

from __future__ import annotations

import json
import shutil
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, StoreExistsError, StoreWriteError

MAX_CHUNK_XY = 2048


@dataclass
class OutputSpec:
    """What an output holds.

    Attributes
    ----------
    path : Path
    kind : str
        ``tif``, ``ome-tif``, ``zarr`` or ``ome-zarr`` (run store).
    axes : str
        ``"YX"`` or a frame letter + ``"YX"`` (as the input's).
    shape : (int, int, int)
        ``(n_frames, H, W)`` of the enhanced frames.
    dtype : np.dtype
    upscale : int
    pixel_size_um, frame_interval_s : float or None
        The *output's* pixel size (input's / upscale) and the frame interval.
    ome : bool
        For ``zarr``: write an OME-Zarr image rather than a plain array.
    frame_axis : dict or None
        OME-NGFF description of the frame axis.
    metadata : dict
        Provenance recorded with the data.
    raw_dtype : np.dtype or None
        The input's dtype (run stores keep the raw frames).
    """

    path: Path
    kind: str
    axes: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    upscale: int
    pixel_size_um: float | None
    frame_interval_s: float | None
    ome: bool = False
    frame_axis: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    raw_dtype: np.dtype | None = None

    @property
    def single_image(self) -> bool:
        return self.axes == "YX"


def prepare_path(path: Path, overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse an existing ``path`` unless ``overwrite`` (then remove it); never the input itself."""
    if any(path.resolve() == p.resolve() for p in inputs):
        raise StoreExistsError(f"output {path} is the input file",
                               "write the enhanced data to another path")
    if path.exists():
        if not overwrite:
            raise StoreExistsError(f"output {path} already exists",
                                   "choose another output path, or pass --overwrite to replace it")
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)


def create_output(spec: OutputSpec, overwrite: bool = False, inputs: tuple[Path, ...] = ()) -> Any:
    """Create the target for ``spec`` (see the module docstring)."""
    prepare_path(spec.path, overwrite, inputs)
    try:
        if spec.kind in ("tif", "ome-tif"):
            return TifTarget.create(spec)
        if spec.kind == "zarr":
            return ZarrTarget.create(spec)
        if spec.kind == "ome-zarr":
            return RunStoreTarget.create(spec)
    except OSError as err:
        raise StoreWriteError(f"cannot create {spec.path} ({err.strerror or err})",
                              "check that the folder is writable and the disk has space") from err
    raise ConfigError(f"unknown output kind {spec.kind!r}", "write .tif, .zarr or .ome.zarr")


class TifTarget:
    """An uncompressed tif (ImageJ or OME) written through memory maps."""

    shared = False

    def __init__(self, path: Path, single: bool) -> None:
        self.path, self.single = path, single
        self._mm: np.memmap | None = None

    @classmethod
    def create(cls, spec: OutputSpec) -> TifTarget:
        import tifffile

        n, h, w = spec.shape
        shape = (h, w) if spec.single_image else (n, h, w)
        info = json.dumps({"live_pssr": spec.metadata})
        px, dt = spec.pixel_size_um, spec.frame_interval_s
        if spec.kind == "ome-tif":
            meta: dict[str, Any] = {"axes": spec.axes, "Description": info}
            kw: dict[str, Any] = {"ome": True, "photometric": "minisblack"}
            if px:
                meta.update(PhysicalSizeX=px, PhysicalSizeY=px, PhysicalSizeXUnit="µm",
                            PhysicalSizeYUnit="µm")
                kw.update(resolution=(1e4 / px, 1e4 / px), resolutionunit="CENTIMETER")
            if dt:
                meta.update(TimeIncrement=dt, TimeIncrementUnit="s")
        else:
            axes = spec.axes if spec.axes[0] in "TZYX" else "T" + spec.axes[1:]
            meta = {"axes": axes, "Info": info}
            kw = {"imagej": True}
            if px:
                meta["unit"] = "um"
                kw["resolution"] = (1.0 / px, 1.0 / px)
            if dt and axes[0] == "T":
                meta["finterval"] = dt
        with warnings.catch_warnings():  # ImageJ files > 4 GB: one IFD, read as contiguous data (fine)
            warnings.filterwarnings("ignore", message=".*truncating ImageJ file")
            mm = tifffile.memmap(spec.path, shape=shape, dtype=spec.dtype, metadata=meta, **kw)
        del mm
        return cls(spec.path, spec.single_image)

    def _map(self) -> np.memmap:
        if self._mm is None:
            import tifffile

            self._mm = tifffile.memmap(self.path, mode="r+")
        return self._mm

    def write(self, start: int, enhanced: np.ndarray, raw: np.ndarray | None = None) -> None:
        mm = self._map()
        if self.single:
            mm[...] = enhanced[0]
        else:
            mm[start:start + len(enhanced)] = enhanced
        mm.flush()

    def clone(self) -> TifTarget:
        return TifTarget(self.path, self.single)

    def close(self, summary: dict[str, Any] | None = None) -> None:
        if self._mm is not None:
            self._mm.flush()
        self._mm = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_mm": None}


class ZarrTarget:
    """A zarr v3 array (plain, or level ``0`` of an OME-Zarr image), one chunk per frame."""

    shared = False

    def __init__(self, array_path: Path, single: bool) -> None:
        self.array_path, self.single = array_path, single
        self._arr: Any = None

    @classmethod
    def create(cls, spec: OutputSpec) -> ZarrTarget:
        import zarr

        n, h, w = spec.shape
        single = spec.single_image
        shape = (h, w) if single else (n, h, w)
        chunks = (min(h, MAX_CHUNK_XY), min(w, MAX_CHUNK_XY))
        chunks = chunks if single else (1, *chunks)
        fname = (spec.frame_axis or {}).get("name", spec.axes[0].lower())
        names = ("y", "x") if single else (fname, "y", "x")
        if spec.ome:
            axes = [{"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"}]
            px = spec.pixel_size_um or 1.0
            scale = [px, px]
            if not single:
                axes.insert(0, spec.frame_axis or {"name": fname})
                scale.insert(0, spec.frame_interval_s if fname == "t" and spec.frame_interval_s else 1.0)
            group = zarr.open_group(str(spec.path), mode="w", zarr_format=3)
            group.attrs.update({
                "ome": {"version": "0.5", "multiscales": [{
                    "name": spec.path.name.removesuffix(".zarr"),
                    "axes": axes,
                    "datasets": [{"path": "0",
                                  "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
                }]},
                "live_pssr": spec.metadata,
            })
            group.create_array("0", shape=shape, chunks=chunks, dtype=spec.dtype, dimension_names=names,
                               fill_value=0)
            return cls(spec.path / "0", single)
        zarr.create_array(str(spec.path), shape=shape, chunks=chunks, dtype=spec.dtype, dimension_names=names,
                          fill_value=0,
                          attributes={"pixel_size_um": spec.pixel_size_um,
                                      "frame_interval_s": spec.frame_interval_s, "live_pssr": spec.metadata})
        return cls(spec.path, single)

    def write(self, start: int, enhanced: np.ndarray, raw: np.ndarray | None = None) -> None:
        if self._arr is None:
            import zarr

            self._arr = zarr.open_array(str(self.array_path), mode="r+")
        if self.single:
            self._arr[...] = enhanced[0]
        else:
            self._arr[start:start + len(enhanced)] = enhanced

    def clone(self) -> ZarrTarget:
        return ZarrTarget(self.array_path, self.single)

    def close(self, summary: dict[str, Any] | None = None) -> None:
        self._arr = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arr": None}


class RunStoreTarget:
    """A live-pssr run store: raw frames, enhanced frames, per-frame records (threads only)."""

    shared = True

    def __init__(self, store: Any, frame_interval_s: float) -> None:
        self.store, self.dt = store, frame_interval_s
        self._lock = threading.Lock()

    @classmethod
    def create(cls, spec: OutputSpec) -> RunStoreTarget:
        from ..store import RunStore

        if spec.raw_dtype is not None and np.dtype(spec.raw_dtype) != np.dtype(spec.dtype):
            raise ConfigError(
                f"a run store keeps raw and enhanced frames in one dtype, but the input is "
                f"{spec.raw_dtype} and the output was asked as {spec.dtype}",
                "drop --out-dtype for .ome.zarr outputs, or write a .tif/.zarr instead",
            )
        _, h, w = spec.shape
        s = spec.upscale
        dt = spec.frame_interval_s or 0.0
        store = RunStore.create(spec.path, (h // s, w // s), spec.dtype, s,
                                pixel_size_um=(spec.pixel_size_um or 1.0 / s) * s, frame_interval_s=dt,
                                run_metadata={"offline": spec.metadata, **_run_fields(spec.metadata)},
                                overwrite=True)
        return cls(store, dt)

    def write_raw(self, start: int, raw: np.ndarray) -> None:
        """Append raw frames ``start, start+1, ...`` (in order) unless already there."""
        from ..frames import Frame

        with self._lock:
            for i, image in enumerate(raw):
                t = start + i
                if t == self.store.n_appended:
                    self.store.append_raw(Frame(t, np.ascontiguousarray(image), t * self.dt * 1e3, {}))

    def write(self, start: int, enhanced: np.ndarray, raw: np.ndarray | None = None) -> None:
        from ..store import FrameStatus

        if raw is not None:
            self.write_raw(start, raw)
        for i, image in enumerate(enhanced):
            self.store.write_enhanced(start + i, image, FrameStatus.AFTER)

    def clone(self) -> RunStoreTarget:
        return self

    def close(self, summary: dict[str, Any] | None = None) -> None:
        self.store.close(summary or {})

    def __getstate__(self) -> dict[str, Any]:
        raise ConfigError("a run store output (.ome.zarr) cannot be written from other processes",
                          "use --scheduler threads, or write a .zarr/.tif output")


def _run_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """The run-store fields ``live-pssr info`` shows (model, engine)."""
    return {k: meta[k] for k in ("model", "engine") if k in meta}


__all__ = ["OutputSpec", "RunStoreTarget", "TifTarget", "ZarrTarget", "create_output", "prepare_path"]
