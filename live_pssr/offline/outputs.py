"""Writing enhanced stacks: tif, zarr / OME-Zarr image, or a live-pssr run store (raw + enhanced).

Every target is created once, up front, with its final shape (so workers only fill regions) and
then takes ``write(start, enhanced, raw)`` for consecutive frames ``start, start+1, ...``; the run
ends with :meth:`finish` (the output is complete) or :meth:`abort` (it failed):

- :class:`TifTarget` (``.tif``: ImageJ hyperstack; ``.ome.tif``: OME-TIFF): an uncompressed,
  contiguous tif laid out by tifffile under the hidden temporary name of
  :func:`~live_pssr.store.claim.claim_file`, its whole size reserved up front
  (``posix_fallocate``: a full disk is an error before any work, not a sparse file that fills
  later), filled with ``os.pwrite`` at each frame's offset (any process, any order; a write error
  is an ``OSError``, never the ``SIGBUS`` of a memory map) and renamed into place by
  :func:`~live_pssr.store.claim.commit_file` when complete. A failed run removes the temporary
  file: no tif that looks complete but holds zeros is ever left at the output path.
- :class:`ZarrTarget` (``.zarr``): a zarr v3 array, one chunk per frame (tiled in y/x beyond 2048
  pixels), so concurrent writers never share a chunk. An OME-Zarr input gives an OME-Zarr 0.5
  image (multiscales, axes and units, ``scale`` divided by the upscale on y and x), else a plain
  array with ``dimension_names`` and ``pixel_size_um``/``frame_interval_s`` attributes. Its
  ``live_pssr`` attributes say ``state: "partial"`` until the last frame is written, then
  ``"complete"`` (atomic ``zarr.json`` replacement); live-pssr's readers refuse a partial output.
- :class:`RunStoreTarget` (``.ome.zarr``): a :class:`~live_pssr.store.RunStore` holding the raw
  frames and the enhanced ones with per-frame records (status ``after``: enhanced from recorded
  data); its run state stays ``recording`` unless the run completes (``closed``). The store is
  one object, so it takes frames from threads only (not processes).

With per-frame checks (``enhance --consistency / --tta``, :mod:`.checks`) the maps are outputs of
the same kinds beside the output (:func:`sidecar_path`: ``OUT.consistency.tif``, ``OUT.tta.zarr``
...), except a run store's consistency maps: they go into the store as its image ``2``, with
their record columns, like a live run's (:class:`StoreMapTarget`); and :class:`ReportTarget`
writes the JSON report ``OUT.consistency.json`` the same way as a tif: under a claimed temporary
name, renamed into place when complete.

Paths are claimed through :mod:`live_pssr.store.claim` only: an existing output is replaced (with
``overwrite``) only when it is a live-pssr output, recognised by its own metadata, and never when
it is, holds or lies inside the input. Anything else is refused and left untouched.

Pixel size and frame interval are the input's (pixel size divided by the upscale); the
provenance (source, model, engine, tiling, intensity mapping) goes into the tif's ImageJ ``Info``
/ OME ``Description``, the zarr attributes (``live_pssr``), or the run store's run metadata.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, StoreExistsError, StoreWriteError
from ..store.claim import (
    OutputClaim,
    check_replaceable,
    claim_dir,
    claim_file,
    commit_file,
    input_related,
    os_error,
)

MAX_CHUNK_XY = 2048
#: ``live_pssr.state`` of a zarr output being written / written completely
PARTIAL, COMPLETE = "partial", "complete"


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
    consistency : dict or None
        Run stores: the consistency check's settings; the store gets the maps as its image ``2``.
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
    consistency: dict[str, Any] | None = None

    @property
    def single_image(self) -> bool:
        return self.axes == "YX"


def check_output_path(path: Path, overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse, before any work, an output path that :func:`create_output` would refuse.

    Never the input (nor a path holding it or inside it); an existing path only with ``overwrite``
    and only when it is a live-pssr output (:func:`~live_pssr.store.claim.check_replaceable`).
    Nothing is deleted here; :func:`create_output` claims the path (race-free) later.
    """
    rel = input_related(path, inputs)
    if rel is not None:
        what = "is the input" if path.resolve() == rel.resolve() else "is, holds or lies inside the input"
        raise StoreExistsError(f"output {path} {what} {rel}",
                               "write the enhanced data to another path; live-pssr never replaces its input")
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise StoreExistsError(f"output {path} already exists",
                                   "choose another output path, or pass --overwrite to replace it")
        check_replaceable(path, inputs)


def create_output(spec: OutputSpec, overwrite: bool = False, inputs: tuple[Path, ...] = ()) -> Any:
    """Claim ``spec.path`` and create the target for ``spec`` (see the module docstring).

    Raises :class:`StoreExistsError` for a path that may not be written or replaced and
    :class:`StoreWriteError` when the output cannot be created (full or read-only disk).
    """
    if spec.kind not in ("tif", "ome-tif", "zarr", "ome-zarr"):
        raise ConfigError(f"unknown output kind {spec.kind!r}", "write .tif, .zarr or .ome.zarr")
    check_output_path(spec.path, overwrite, inputs)
    if spec.kind == "ome-zarr":
        return RunStoreTarget.create(spec, overwrite, inputs)
    if spec.kind == "zarr":
        claim = claim_dir(spec.path, overwrite=overwrite, inputs=inputs)
        try:
            return ZarrTarget.create(spec, claim)
        except BaseException as err:
            claim.release()
            shutil.rmtree(spec.path, ignore_errors=True)  # the folder claim_dir just made
            if isinstance(err, OSError) and not isinstance(err, StoreWriteError):
                raise os_error(err, spec.path, "creating") from err
            raise
    tmp = claim_file(spec.path, overwrite=overwrite, inputs=inputs)
    try:
        target = TifTarget.create(spec, tmp)
        target.overwrite = overwrite  # at the end: replace a live-pssr output, or claim a free path
        return target
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, StoreWriteError):
            raise os_error(err, spec.path, "creating") from err
        raise


def _write_failed(err: OSError, path: Path, left: str) -> StoreWriteError:
    """A :class:`StoreWriteError` for a failed write to the output ``path``; ``left``: what remains."""
    base = os_error(err, path, "writing")
    again = "then run the command again" + (" with --overwrite" if "partial" in left else "")
    return StoreWriteError(f"{base.message}: enhancement stopped, {left}", f"{base.hint}, {again}")


def _reserve(fd: int, size: int, path: Path) -> None:
    """Allocate ``size`` bytes of ``fd`` now, so a full disk fails here rather than mid-run."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return  # file system without allocation: pwrite still reports a full disk as an error
        raise os_error(err, path, "reserving space for") from err


class TifTarget:
    """An uncompressed, contiguous tif (ImageJ or OME): a temporary file filled with ``pwrite``.

    ``path`` is the temporary file being written, ``final`` the output path it is renamed to by
    :meth:`finish`; frame ``t`` lies at byte ``offset + t * frame_nbytes``.
    """

    shared = False
    overwrite = False  #: an existing live-pssr output at the path may be replaced at the end

    def __init__(self, path: Path, final: Path, single: bool, offset: int, frame_shape: tuple[int, int],
                 dtype: np.dtype) -> None:
        self.path, self.final, self.single = path, final, single
        self.offset, self.frame_shape, self.dtype = offset, frame_shape, np.dtype(dtype)
        self.frame_nbytes = int(np.prod(frame_shape)) * self.dtype.itemsize
        self._fd: int | None = None

    @classmethod
    def create(cls, spec: OutputSpec, tmp: Path) -> TifTarget:
        """Lay out the tif at ``tmp`` (metadata, IFDs; pixel data reserved, not yet written)."""
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
        dtype = np.dtype(spec.dtype).newbyteorder("=")
        with warnings.catch_warnings():  # ImageJ files > 4 GB: one IFD, read as contiguous data (fine)
            warnings.filterwarnings("ignore", message=".*truncating ImageJ file")
            offset, _ = tifffile.imwrite(tmp, shape=shape, dtype=dtype, metadata=meta, returnoffset=True,
                                         byteorder="=", **kw)
        fd = os.open(tmp, os.O_RDWR)
        try:
            _reserve(fd, os.fstat(fd).st_size, spec.path)
        finally:
            os.close(fd)
        return cls(tmp, spec.path, spec.single_image, int(offset), (h, w), dtype)

    def _handle(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_WRONLY)
            except OSError as err:
                raise _write_failed(err, self.final, "nothing was written to the output") from err
        return self._fd

    def write(self, start: int, enhanced: np.ndarray, raw: np.ndarray | None = None) -> None:
        fd = self._handle()
        frames = [enhanced[0]] if self.single else enhanced
        for i, image in enumerate(frames):
            data = np.ascontiguousarray(image, dtype=self.dtype)
            if data.shape != self.frame_shape:
                raise ValueError(f"frame of shape {data.shape} written to a tif of {self.frame_shape} frames")
            view, pos = memoryview(data).cast("B"), self.offset + (start + i) * self.frame_nbytes
            try:
                while view:
                    k = os.pwrite(fd, view, pos)
                    view, pos = view[k:], pos + k
            except OSError as err:
                raise _write_failed(err, self.final, "nothing was written to the output") from err

    def clone(self) -> TifTarget:
        return TifTarget(self.path, self.final, self.single, self.offset, self.frame_shape, self.dtype)

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Close this handle's file descriptor (the file stays where it is)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        """Every frame is written: flush to disk and rename the tif into place."""
        try:
            fd = self._handle()
            os.fsync(fd)
        except OSError as err:
            self.abort()
            raise _write_failed(err, self.final, "nothing was written to the output") from err
        self.close()
        try:
            commit_file(self.path, self.final, overwrite=self.overwrite)
        except StoreWriteError:
            self.abort()
            raise

    def abort(self) -> None:
        """The run failed: remove the temporary file (the output path is left as it was)."""
        self.close()
        self.path.unlink(missing_ok=True)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}


def _update_attrs(zarr_json: Path, key: str, values: dict[str, Any]) -> None:
    """Merge ``values`` into ``attributes[key]`` of a zarr v3 ``zarr.json`` (atomic replace)."""
    doc = json.loads(zarr_json.read_text(encoding="utf-8"))
    doc.setdefault("attributes", {}).setdefault(key, {}).update(values)
    tmp = zarr_json.with_name(f".{zarr_json.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, zarr_json)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ZarrTarget:
    """A zarr v3 array (plain, or level ``0`` of an OME-Zarr image), one chunk per frame.

    ``root`` is the output (its ``zarr.json`` carries ``live_pssr.state``), ``array_path`` the
    array written; ``claim`` (only on the object :func:`create_output` returns, never pickled)
    holds the output's lock until :meth:`finish` / :meth:`abort`.
    """

    shared = False

    def __init__(self, array_path: Path, single: bool, root: Path | None = None,
                 claim: OutputClaim | None = None) -> None:
        self.array_path, self.single = array_path, single
        self.root = root if root is not None else array_path
        self.claim = claim
        self._arr: Any = None

    @classmethod
    def create(cls, spec: OutputSpec, claim: OutputClaim | None = None) -> ZarrTarget:
        """Create the array in ``spec.path`` (a folder already claimed by :func:`claim_dir`)."""
        import zarr

        n, h, w = spec.shape
        single = spec.single_image
        shape = (h, w) if single else (n, h, w)
        chunks = (min(h, MAX_CHUNK_XY), min(w, MAX_CHUNK_XY))
        chunks = chunks if single else (1, *chunks)
        fname = (spec.frame_axis or {}).get("name", spec.axes[0].lower())
        names = ("y", "x") if single else (fname, "y", "x")
        marker = {**spec.metadata, "state": PARTIAL}
        if spec.ome:
            axes = [{"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"}]
            px = spec.pixel_size_um or 1.0
            scale = [px, px]
            if not single:
                axes.insert(0, spec.frame_axis or {"name": fname})
                scale.insert(0, spec.frame_interval_s if fname == "t" and spec.frame_interval_s else 1.0)
            attrs = {
                "ome": {"version": "0.5", "multiscales": [{
                    "name": spec.path.name.removesuffix(".zarr"),
                    "axes": axes,
                    "datasets": [{"path": "0",
                                  "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
                }]},
                "live_pssr": marker,
            }
            # create_group (not open_group mode="w"): the claimed folder keeps its lock file
            group = zarr.create_group(str(spec.path), zarr_format=3, attributes=attrs)
            group.create_array("0", shape=shape, chunks=chunks, dtype=spec.dtype, dimension_names=names,
                               fill_value=0)
            return cls(spec.path / "0", single, spec.path, claim)
        zarr.create_array(str(spec.path), shape=shape, chunks=chunks, dtype=spec.dtype, dimension_names=names,
                          fill_value=0,
                          attributes={"pixel_size_um": spec.pixel_size_um,
                                      "frame_interval_s": spec.frame_interval_s, "live_pssr": marker})
        return cls(spec.path, single, spec.path, claim)

    def write(self, start: int, enhanced: np.ndarray, raw: np.ndarray | None = None) -> None:
        try:
            if self._arr is None:
                import zarr

                self._arr = zarr.open_array(str(self.array_path), mode="r+")
            if self.single:
                self._arr[...] = enhanced[0]
            else:
                self._arr[start:start + len(enhanced)] = enhanced
        except OSError as err:
            raise _write_failed(err, self.root, f"{self.root} is left marked incomplete "
                                f"(live_pssr state {PARTIAL!r})") from err

    def clone(self) -> ZarrTarget:
        return ZarrTarget(self.array_path, self.single, self.root)

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Drop this handle's array (the output stays as it is)."""
        self._arr = None

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        """Every frame is written: mark the output complete and release its lock."""
        self.close()
        try:
            _update_attrs(self.root / "zarr.json", "live_pssr", {"state": COMPLETE, "summary": summary or {}})
        except OSError as err:
            raise _write_failed(err, self.root, f"{self.root} is left marked incomplete "
                                f"(live_pssr state {PARTIAL!r})") from err
        finally:
            self.release()

    def abort(self) -> None:
        """The run failed: the output stays marked partial; release its lock."""
        self.close()
        self.release()

    def release(self) -> None:
        claim, self.claim = self.claim, None
        if claim is not None:
            claim.release()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arr": None, "claim": None}


class RunStoreTarget:
    """A live-pssr run store: raw frames, enhanced frames, per-frame records (threads only)."""

    shared = True

    def __init__(self, store: Any, frame_interval_s: float) -> None:
        self.store, self.dt = store, frame_interval_s
        self._lock = threading.Lock()

    @classmethod
    def create(cls, spec: OutputSpec, overwrite: bool = False,
               inputs: tuple[Path, ...] = ()) -> RunStoreTarget:
        from ..store import RunStore

        if spec.raw_dtype is not None and np.dtype(spec.raw_dtype) != np.dtype(spec.dtype):
            raise ConfigError(
                f"a run store (.ome.zarr) keeps raw and enhanced frames in one dtype, but the input is "
                f"{np.dtype(spec.raw_dtype).name} and the enhanced frames are {np.dtype(spec.dtype).name}",
                "write a .tif or .zarr output instead (they keep any input dtype)",
            )
        _, h, w = spec.shape
        s = spec.upscale
        dt = spec.frame_interval_s or 0.0
        store = RunStore.create(spec.path, (h // s, w // s), spec.dtype, s,
                                pixel_size_um=(spec.pixel_size_um or 1.0 / s) * s, frame_interval_s=dt,
                                run_metadata={"offline": spec.metadata, **_run_fields(spec.metadata)},
                                overwrite=overwrite, inputs=tuple(inputs), consistency=spec.consistency)
        return cls(store, dt)

    def consistency_maps(self) -> StoreMapTarget:
        """The target of the consistency maps, kept in this store (created with ``consistency``)."""
        if self.store.consistency is None:
            raise ValueError("this run store was created without a consistency map")
        return StoreMapTarget(self)

    def _failed(self, err: StoreWriteError) -> StoreWriteError:
        """``err`` (same type: a DiskFullError stays one) with what is left and enhance's fix."""
        fix = ("free space or write to another disk" if "disk is full" in err.message
               else err.hint or "check the disk and the path")
        return type(err)(f"{err.message}; enhancement stopped, the run store is left unfinished "
                         "(state 'recording')", f"{fix}, then run the command again with --overwrite")

    def write_raw(self, start: int, raw: np.ndarray) -> None:
        """Append raw frames ``start, start+1, ...`` (in order) unless already there."""
        from ..frames import Frame

        with self._lock:
            for i, image in enumerate(raw):
                t = start + i
                if t == self.store.n_appended:
                    try:
                        self.store.append_raw(Frame(t, np.ascontiguousarray(image), t * self.dt * 1e3, {}))
                    except StoreWriteError as err:
                        raise self._failed(err) from err

    def write(self, start: int, enhanced: np.ndarray, raw: np.ndarray | None = None) -> None:
        from ..store import FrameStatus

        if raw is not None:
            self.write_raw(start, raw)
        for i, image in enumerate(enhanced):
            try:
                self.store.write_enhanced(start + i, image, FrameStatus.AFTER)
            except StoreWriteError as err:
                raise self._failed(err) from err

    def clone(self) -> RunStoreTarget:
        return self

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Nothing per handle: the store is shared (see :meth:`finish`)."""

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        """Every frame is written: commit and close the store (run state ``closed``)."""
        try:
            self.store.close(summary or {})
        except StoreWriteError as err:
            raise self._failed(err) from err

    def abort(self) -> None:
        """The run failed: stop committing, make what was written visible if possible, unlock.

        The run state stays ``recording`` (never ``closed``), so readers see an unfinished run.
        """
        self.store.abort()

    def __getstate__(self) -> dict[str, Any]:
        raise ConfigError("a run store output (.ome.zarr) cannot be written from other processes",
                          "use --scheduler threads, or write a .zarr/.tif output")


class StoreMapTarget:
    """The consistency maps of a run store output: its image ``2`` and record columns, as a live run's.

    Takes the frames' :class:`~live_pssr.offline.checks.FrameCheck` (:meth:`write_checks`): a
    checked frame's map (float16 in the store) with its ``consistency``, ``consistency_max`` and
    ``flagged`` columns (:meth:`RunStore.write_consistency`); a frame the check could not judge is
    not written, so it reads NaN. The first checked frame's flag level goes into the run's
    ``consistency`` metadata. Completed and aborted with the store (:class:`RunStoreTarget`).
    """

    shared = True

    def __init__(self, owner: RunStoreTarget) -> None:
        self.owner, self._described = owner, False

    def write_checks(self, start: int, checks: list[Any]) -> None:
        store = self.owner.store
        for i, check in enumerate(checks):
            result = check.result
            if result is None:
                continue
            try:
                store.write_consistency(start + i, result)
                with self.owner._lock:
                    if not self._described:
                        self._described = True
                        store.update_run_metadata(consistency={
                            **store.run.get("consistency", {}), "threshold": round(result.threshold, 4),
                            "smooth_sigma_px": result.smooth_sigma_px})
            except StoreWriteError as err:
                raise self.owner._failed(err) from err

    def clone(self) -> StoreMapTarget:
        return self

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Nothing per handle (the store is shared)."""

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        """Nothing to do: the maps were committed with the store (:meth:`RunStoreTarget.finish`)."""

    def abort(self) -> None:
        """Nothing to do: :meth:`RunStoreTarget.abort` leaves the whole store unfinished."""


# ----------------------------------------------------------------------------- files beside the output
#: the output kinds' suffixes, longest first (the part of the name a sidecar replaces)
_SUFFIXES = (".ome.zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".zarr")


def sidecar_path(output: Path, what: str, kind: str) -> tuple[Path, str]:
    """``(path, kind)`` of the ``what`` file beside ``output`` (``what``: e.g. ``consistency``).

    ``OUT.tif`` -> ``OUT.WHAT.tif``, ``OUT.ome.tif`` -> ``OUT.WHAT.ome.tif``, ``OUT.zarr`` and a run
    store ``OUT.ome.zarr`` -> ``OUT.WHAT.zarr`` (a run store holds one run; its maps are an image);
    ``kind="json"`` -> ``OUT.WHAT.json``.
    """
    name = output.name.rstrip("/")
    low = name.lower()
    base = next((name[: -len(s)] for s in _SUFFIXES if low.endswith(s)), output.stem)
    if kind == "json":
        return output.with_name(f"{base}.{what}.json"), "json"
    if kind in ("zarr", "ome-zarr"):
        return output.with_name(f"{base}.{what}.zarr"), "zarr"
    suffix = name[len(base):]
    return output.with_name(f"{base}.{what}{suffix}"), kind


class ReportTarget:
    """A JSON report written once, at the end, under a claimed temporary name (like a tif).

    :meth:`create` claims the path (refusing what :func:`check_output_path` refuses);
    :meth:`finish` writes the document (its ``live_pssr`` object marks it as live-pssr's, so a
    later ``--overwrite`` may replace it) and renames it into place; :meth:`abort` removes the
    temporary file.
    """

    def __init__(self, path: Path, tmp: Path, overwrite: bool) -> None:
        self.path, self.tmp, self.overwrite = path, tmp, overwrite

    @classmethod
    def create(cls, path: Path, overwrite: bool = False, inputs: tuple[Path, ...] = ()) -> ReportTarget:
        check_output_path(path, overwrite, inputs)
        return cls(path, claim_file(path, overwrite=overwrite, inputs=inputs), overwrite)

    def finish(self, doc: dict[str, Any]) -> None:
        if not isinstance(doc.get("live_pssr"), dict) or "format" not in doc["live_pssr"]:
            raise ValueError("a live-pssr JSON report needs a live_pssr object with its format")
        try:
            with open(self.tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, allow_nan=False)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            self.abort()
            raise _write_failed(err, self.path, "nothing was written to the report") from err
        try:
            commit_file(self.tmp, self.path, overwrite=self.overwrite)
        except StoreWriteError:
            self.abort()
            raise

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)


def _run_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """The run-store fields ``live-pssr info`` shows (model, engine)."""
    return {k: meta[k] for k in ("model", "engine") if k in meta}


__all__ = ["COMPLETE", "PARTIAL", "OutputSpec", "ReportTarget", "RunStoreTarget", "StoreMapTarget",
           "TifTarget", "ZarrTarget", "check_output_path", "create_output", "sidecar_path"]
