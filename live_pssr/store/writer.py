"""Writing a run: :class:`RunStore` appends raw frames, enhanced frames and records.

Threads: the pipeline's raw-writer thread calls :meth:`RunStore.append_raw`, its enhancer thread
:meth:`RunStore.write_enhanced`; each writes its own chunk files, records go to a locked in-memory
table. A raw frame's write is two steps, so that several frames can be written at once (a 4 MB
sCMOS frame's write is throttled by the kernel's writeback; parallel writes overlap that wait):
:meth:`RunStore.write_raw_chunk` (thread-safe, any order: encode and write the chunk file) and
:meth:`RunStore.mark_raw_appended` (in index order, one thread: the record, ``n_appended``).
Only marked frames are committed, so a frame whose write failed, and every frame after it, is
never made visible, even if its own chunk file was written.

:meth:`RunStore.commit` makes the new frames visible. It runs on the store's own committer thread
every ``commit_interval_s`` (metadata renames cost milliseconds on ext4: they must not sit on the
raw path) and on close, in an order that keeps the store consistent after a crash:

1. dirty record chunks are rewritten (rows of frames not yet committed are invisible anyway);
2. the ``frames/*`` columns, then ``0/0`` (raw), then ``1/0`` (enhanced), then ``2/0`` (the
   consistency map, when the run has one) get the new length ``n`` by atomic ``zarr.json``
   replacement.

A kill between two replacements leaves lengths that differ by the last batch; the reader takes
the smallest (all arrays agree on those frames). Enhanced chunks are written whenever they are
ready; a frame never enhanced reads as zeros and its record says why (pending/skipped/failed).

Consistency map (``create(consistency={...})``): the signed error map of
:mod:`live_pssr.consistency` at the raw frame's shape and scale, float16 (half the raw frame's
bytes at most; the map is in noise sigmas, where float16's 3 digits are plenty), one frame per
chunk like the others, fill NaN: a frame not checked (``every`` > 1, enhancement skipped, check
unavailable) reads as NaN, never as a "consistent" 0. Its record columns (``consistency``,
``consistency_max``, ``flagged``) are written with it.

Metadata (:mod:`live_pssr.store.layout`): built and validated (yaozarrs, ome-types) at create and
at close only. A commit rewrites the OME-XML's ``SizeT`` (cached ome-types text, microseconds).
:meth:`RunStore.close`, after its final commit, writes each image's ``zarr.json`` again (time
scale from the camera times, display windows from a few stored frames) and the OME-XML with
per-plane ``DeltaT``: all staged as temporary files first, then renamed, so a failure (full or
read-only disk) replaces nothing; it is logged and kept in the run's ``metadata_error``, and
costs no frame: they are all committed by then, and the store still closes.

Full disk: the reserve
----------------------
A frame that the pipeline has queued may already have been acknowledged to Micro-Manager (the
pycromanager hook returns ``None`` with ``own_storage=True``), so a full disk must not lose it.
:meth:`RunStore.create` therefore sets space aside: ``.live-pssr.reserve``, a file of
``reserve_bytes`` allocated with ``posix_fallocate``. The first ``ENOSPC`` (a raw chunk, a record
chunk or metadata) deletes it, sets :attr:`RunStore.disk_full`, and retries; the pipeline then
refuses new frames, stops writing enhanced ones, and writes the frames already queued into the
freed space before the final commit. The pipeline acknowledges only what fits the reserve
(:attr:`RunStore.ack_budget`), counted in file-system blocks. A disk too full for the reserve
fails at creation, before any frame is taken.

Durability: without ``fsync`` a frame is durable against a crash of live-pssr (``kill -9``, a
Python error) once committed, since the data are in the operating system's cache; against a
power loss or a kernel crash only after the OS wrote them back (seconds). ``fsync="commit"``
(every commit) or ``fsync=N`` (at most every N seconds) makes each commit flush its chunks,
records and metadata to the disk first.

Errors: a full or read-only disk raises :class:`~live_pssr.errors.StoreWriteError`; any other
failure of the committer thread is turned into one too (never a silent dead thread); everything
committed before stays readable (metadata is only ever replaced whole).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreWriteError
from ..frames import Frame
from . import layout
from .chunks import ChunkFileArray, fsync_dir, fsync_paths, write_json_atomic
from .claim import OutputClaim, claim_dir, os_error
from .records import COLUMNS, ROWS_PER_CHUNK, FrameStatus, RecordTable, fill_value

FORMAT = {"format": "live-pssr-run", "version": 1}
RESERVE_NAME = ".live-pssr.reserve"
BLOCK = 4096
#: space kept back in the reserve for the final commit's records and metadata
METADATA_MARGIN = 256 << 10

log = logging.getLogger("live_pssr.store")


def blocks(nbytes: int) -> int:
    """Disk space a file of ``nbytes`` takes, with its inode: whole blocks, plus one."""
    return (nbytes + BLOCK - 1) // BLOCK * BLOCK + BLOCK


def _write_error(err: OSError, path: Path) -> StoreWriteError:
    return os_error(err, path, "writing", "the store holds every frame committed before this")


class RunStore:
    """An OME-Zarr run store being written (see :mod:`live_pssr.store`)."""

    def __init__(self, path: Path, raw: ChunkFileArray, enhanced: ChunkFileArray,
                 columns: dict[str, ChunkFileArray], run: dict[str, Any],
                 commit_interval_s: float, t0: float | None = None, fsync: str | float = "off",
                 consistency: ChunkFileArray | None = None) -> None:
        self.path, self.raw, self.enhanced, self.columns = path, raw, enhanced, columns
        self.consistency = consistency  # the map's array, None when the run has no check
        self.run = run
        self.records = RecordTable(load=self._load_records)
        self.commit_interval_s = commit_interval_s
        self.t0 = time.perf_counter() if t0 is None else t0
        self.n_appended = 0  # raw chunks on disk
        self.n_committed = 0  # frames visible to readers
        self.bytes_written = 0
        self.closed = False
        self.disk_full = False  # set at the first ENOSPC: the reserve was released
        self.claim: OutputClaim | None = None  # the path's lock, held until close
        self.reserve_bytes = 0
        self._reserve: Path | None = None
        self.fsync = fsync_period(fsync)
        self._last_sync = time.monotonic()
        for arr in self._arrays():
            arr.fsync = self.fsync is not None
        self._commit_lock = threading.Lock()
        self._space_lock = threading.Lock()
        self._stop = threading.Event()
        self.commit_error: StoreWriteError | None = None
        self.metadata_error: str | None = None  # close could not write the final metadata (why)
        self._committer = threading.Thread(target=self._commit_loop, name="live-pssr-commit", daemon=True)

    def _arrays(self) -> list[ChunkFileArray]:
        images = [self.raw, self.enhanced] + ([self.consistency] if self.consistency is not None else [])
        return images + list(self.columns.values())

    def _load_records(self, chunk: int) -> dict[str, np.ndarray]:
        """A record chunk back from disk (the table keeps only recent chunks in memory)."""
        out = {}
        for k, arr in self.columns.items():
            data = arr.read_chunk((chunk,))
            out[k] = data if data is not None else np.full(ROWS_PER_CHUNK, fill_value(k), dtype=COLUMNS[k])
        return out

    def _commit_loop(self) -> None:
        while not self._stop.wait(self.commit_interval_s):
            try:
                self.commit()
            except StoreWriteError as err:  # reported by the next append and by close
                self.commit_error = err
                return
            except Exception as err:  # never a silent dead committer: the run stops and says why
                log.exception("the store's commit thread failed")
                self.commit_error = StoreWriteError(
                    f"committing frames to {self.path} failed: {type(err).__name__}: {err}",
                    "this is a bug in live-pssr: please report it with the log; "
                    "the store holds every frame committed before")
                return

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        path: str | Path,
        raw_shape: tuple[int, int],
        dtype: np.dtype | str,
        upscale: int,
        pixel_size_um: float = 1.0,
        frame_interval_s: float = 0.0,
        run_metadata: dict[str, Any] | None = None,
        overwrite: bool = False,
        codec: str = "lz4",
        commit_interval_s: float = 0.1,
        claim: OutputClaim | None = None,
        inputs: tuple[Path, ...] = (),
        reserve_bytes: int | None = None,
        fsync: str | float = "off",
        t0: float | None = None,
        consistency: dict[str, Any] | None = None,
    ) -> RunStore:
        """Create a new store at ``path``.

        ``claim``: the path already claimed by the caller (:func:`~live_pssr.store.claim.claim_dir`,
        e.g. at session start); otherwise it is claimed here, with ``overwrite`` and ``inputs``
        deciding whether an existing path may be replaced (only ever a live-pssr output).
        The store holds the claim's lock until :meth:`close`. ``reserve_bytes``: space set aside
        for frames queued when the disk fills (default: 16 raw frames, at least 1 MiB);
        ``fsync``: ``"off"``, ``"commit"`` or seconds between flushes (module docstring);
        ``t0``: ``time.perf_counter()`` at the run's start (the records' clock);
        ``consistency``: the check's settings (stored as ``live_pssr.consistency``): the store gets
        the consistency map image ``2`` (module docstring); None: no map.
        """
        path = Path(path)
        dtype = np.dtype(dtype)
        h, w = raw_shape
        period = fsync_period(fsync)  # validate before claiming anything
        if claim is None:
            claim = claim_dir(path, overwrite=overwrite, inputs=inputs)
        eh, ew = h * upscale, w * upscale
        run = {
            **FORMAT,
            "state": "recording",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "created_unix": time.time(),
            "upscale": upscale,
            "raw_shape": [h, w],
            "enhanced_shape": [eh, ew],
            "dtype": dtype.name,
            "pixel_size_um": pixel_size_um,
            "frame_interval_s": frame_interval_s,
            "fsync": "off" if period is None else ("commit" if period == 0 else period),
            "status_codes": {s.value: s.name.lower() for s in FrameStatus},
            **(run_metadata or {}),
            **({"consistency": dict(consistency)} if consistency is not None else {}),
        }
        frame_bytes = h * w * dtype.itemsize
        if reserve_bytes is None:
            reserve_bytes = max(16 * blocks(frame_bytes), 1 << 20)
        reserve_bytes = max(int(reserve_bytes), METADATA_MARGIN + blocks(frame_bytes))
        try:
            reserve = path / RESERVE_NAME
            _allocate(reserve, reserve_bytes)
            write_json_atomic(path / "zarr.json", _group(layout.root_attrs(run)))
            (path / "OME").mkdir()
            write_json_atomic(path / "OME" / "zarr.json",
                              _group(layout.series_attrs(consistency is not None)))
            names = [(layout.RAW, (h, w), dtype, 0), (layout.ENHANCED, (eh, ew), dtype, 0)]
            if consistency is not None:
                names.append((layout.CONSISTENCY, (h, w), np.dtype("<f2"), float("nan")))
            arrays = []
            for key, (yy, xx), dt, fill in names:
                (path / key).mkdir()
                write_json_atomic(path / key / "zarr.json",
                                  _group(_image_attrs(run, key, frame_interval_s)))
                arrays.append(ChunkFileArray(path / key / "0", (0, 1, yy, xx), (1, 1, yy, xx), dt,
                                             codec=codec, fill_value=fill,
                                             dimension_names=("t", "c", "y", "x")))
            (path / "frames").mkdir()
            write_json_atomic(path / "frames" / "zarr.json",
                              _group({"live_pssr": {"columns": list(COLUMNS), **FORMAT}}))
            columns = {
                k: ChunkFileArray(path / "frames" / k, (0,), (ROWS_PER_CHUNK,), d, codec="none",
                                  fill_value=fill_value(k), dimension_names=("t",))
                for k, d in COLUMNS.items()
            }
            store = cls(path, arrays[0], arrays[1], columns, run, commit_interval_s, t0=t0, fsync=fsync,
                        consistency=arrays[2] if consistency is not None else None)
            store._reserve, store.reserve_bytes = reserve, reserve_bytes
            store._write_ome_xml(0)
        except OSError as err:
            claim.release()
            raise _write_error(err, path) from err
        except Exception:
            claim.release()
            raise
        store.claim = claim
        if commit_interval_s > 0:
            store._committer.start()
        return store

    @property
    def ack_budget(self) -> int:
        """Bytes of queued frames (counted with :func:`blocks`) that the reserve can still take."""
        return 0 if self.disk_full else max(0, self.reserve_bytes - METADATA_MARGIN)

    # ------------------------------------------------------------------ space
    def _release_reserve(self) -> bool:
        """Free the reserve (first ENOSPC); True if there was one to free."""
        with self._space_lock:
            first = not self.disk_full
            self.disk_full = True
            reserve, self._reserve = self._reserve, None
        if reserve is not None:
            try:
                reserve.unlink(missing_ok=True)
            except OSError:
                return False
            if first:
                log.error("the disk is full: writing the frames already queued into the reserved "
                          "space (%d MB), then stopping", self.reserve_bytes >> 20)
            return True
        return False

    def _with_space(self, write: Any) -> Any:
        """Run ``write()``; on ENOSPC free the reserve (if not yet freed) and retry once.

        The retry also runs when another thread freed the reserve a moment before (parallel raw
        writes failing together); a disk still full after that raises the second ENOSPC.
        """
        try:
            return write()
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            self._release_reserve()
        return write()

    # ------------------------------------------------------------------ writing
    def now(self) -> float:
        """Seconds since the run started (the records' clock)."""
        return time.perf_counter() - self.t0

    def append_raw(self, frame: Frame, received_s: float | None = None) -> int:
        """Write the next raw frame (its index must be the next one); returns bytes written."""
        if frame.index != self.n_appended:
            raise ValueError(f"raw frames must arrive in order: got {frame.index}, "
                             f"expected {self.n_appended}")
        nbytes = self.write_raw_chunk(frame)
        self.mark_raw_appended(frame, nbytes, received_s)
        return nbytes

    def write_raw_chunk(self, frame: Frame) -> int:
        """Encode and write raw frame ``frame.index``'s chunk file; returns its bytes.

        Thread-safe and in any order (the pipeline's raw write pool); the frame is not appended
        (nor ever committed) until :meth:`mark_raw_appended`. Uses the reserve on a full disk.
        """
        if self.commit_error is not None:
            raise self.commit_error
        try:
            return self._with_space(lambda: self.raw.write_chunk((frame.index, 0, 0, 0), frame.image))
        except OSError as err:
            raise _write_error(err, self.path) from err

    def mark_raw_appended(self, frame: Frame, nbytes: int, received_s: float | None = None) -> None:
        """Append raw frame ``frame.index``, whose chunk :meth:`write_raw_chunk` wrote: its record,
        and ``n_appended`` (the next commit makes it visible). In index order, one thread."""
        if frame.index != self.n_appended:
            raise ValueError(f"raw frames must be appended in order: got {frame.index}, "
                             f"expected {self.n_appended}")
        self.bytes_written += nbytes
        self.records.set(frame.index, index=frame.index, camera_time_ms=frame.camera_time_ms,
                         raw_written_s=self.now(),
                         **({} if received_s is None else {"received_s": received_s}))
        self.n_appended += 1

    def read_raw(self, index: int) -> np.ndarray:
        """Read back a raw frame already written (for the backlog)."""
        chunk = self.raw.read_chunk((index, 0, 0, 0))
        if chunk is None:
            raise IndexError(f"raw frame {index} is not in the store")
        return chunk[0, 0]

    def write_enhanced(self, index: int, image: np.ndarray, status: FrameStatus,
                       enhance_start_s: float | None = None, received_s: float | None = None) -> None:
        """Write an enhanced frame and its record (any order, any thread).

        Never uses the reserve (it is kept for raw frames): on a full disk this raises
        :class:`~live_pssr.errors.DiskFullError` and sets :attr:`disk_full`.
        """
        try:
            self.bytes_written += self.enhanced.write_chunk((index, 0, 0, 0), image, atomic=True)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                self.disk_full = True
            raise _write_error(err, self.path) from err
        end = self.now()
        if received_s is None:
            received_s = self.records.get(index, "received_s")
        self.records.set(index, status=int(status), enhance_end_s=end,
                         latency_ms=(end - received_s) * 1e3 if np.isfinite(received_s) else np.nan,
                         **({} if enhance_start_s is None else {"enhance_start_s": enhance_start_s}))

    def write_consistency(self, index: int, result: Any) -> None:
        """Write frame ``index``'s consistency map and its record columns (the enhancer's thread).

        ``result``: a :class:`~live_pssr.consistency.ConsistencyResult` (its ``signed_map``,
        ``score``, ``flagged``). Like enhanced frames, never uses the reserve: on a full disk this
        raises :class:`~live_pssr.errors.DiskFullError` and sets :attr:`disk_full`.
        """
        signed = np.asarray(result.signed_map, dtype=np.float32)
        if self.consistency is not None:
            try:
                self.bytes_written += self.consistency.write_chunk(
                    (index, 0, 0, 0), signed.astype("<f2"), atomic=True)
            except OSError as err:
                if err.errno == errno.ENOSPC:
                    self.disk_full = True
                raise _write_error(err, self.path) from err
        self.records.set(index, consistency=float(result.score),
                         consistency_max=float(np.abs(signed).max()) if signed.size else np.nan,
                         flagged=int(bool(result.flagged)))

    def set_status(self, index: int, status: FrameStatus, **values: float) -> None:
        """Record a status without an image (skipped, failed)."""
        self.records.set(index, status=int(status), **values)

    def commit(self) -> int:
        """Make every appended frame and every record change visible; returns frames committed."""
        with self._commit_lock:
            n = self.n_appended
            chunks = self.records.take_dirty()
            try:
                self._with_space(lambda: self._commit(n, chunks))
            except OSError as err:
                self.records.not_written(list(chunks))
                raise _write_error(err, self.path) from err
            except Exception as err:  # not the disk: still a clear error, never a stray exception
                self.records.not_written(list(chunks))
                raise StoreWriteError(
                    f"committing frames to {self.path} failed: {type(err).__name__}: {err}",
                    "this is a bug in live-pssr: please report it with the log; "
                    "the store holds every frame committed before") from err
            self.records.written(list(chunks))
            self.n_committed = n
            return n

    def _commit(self, n: int, chunks: dict[int, dict[str, np.ndarray]]) -> None:
        for c, cols in chunks.items():
            for k, arr in self.columns.items():
                arr.write_chunk((c,), cols[k], atomic=True)
        due = self.fsync is not None and (time.monotonic() - self._last_sync >= self.fsync
                                          or self._stop.is_set())
        if due:
            paths = [p for arr in self._arrays() for p in arr.take_unsynced()]
            fsync_paths(paths)  # data first, then the metadata that makes them visible
            self._last_sync = time.monotonic()
        if n != self.n_committed:
            self._write_ome_xml(n)  # before the arrays grow: a failure here leaves them as they were
        for arr in self.columns.values():
            arr.resize((n,))
        self.raw.resize((n, *self.raw.shape[1:]))
        self.enhanced.resize((n, *self.enhanced.shape[1:]))
        if self.consistency is not None:
            self.consistency.resize((n, *self.consistency.shape[1:]))

    def _ome_images(self, n: int, time_increment_s: float | None,
                    delta_t_s: list[float] | None = None) -> list[dict[str, Any]]:
        """The per-series dicts of :func:`layout.ome_xml` (``n`` frames)."""
        h, w = self.run["raw_shape"]
        eh, ew = self.run["enhanced_shape"]
        px = self.run["pixel_size_um"]
        common = {"size_t": n, "time_increment_s": time_increment_s, "delta_t_s": delta_t_s}
        images = [
            {"name": "raw", "size_y": h, "size_x": w, "pixel_size_um": px, "dtype": self.run["dtype"],
             **common},
            {"name": "enhanced", "size_y": eh, "size_x": ew, "pixel_size_um": px / self.run["upscale"],
             "dtype": self.run["dtype"], **common},
        ]
        if self.consistency is not None:
            images.append({"name": "consistency", "size_y": h, "size_x": w, "pixel_size_um": px,
                           "dtype": "float16", **common})
        return images

    def _write_ome_xml(self, n: int) -> None:
        """The commits' OME-XML: ``SizeT`` = ``n``, the nominal TimeIncrement, no planes."""
        nominal = self.run["frame_interval_s"]
        xml = layout.ome_xml(self._ome_images(n, nominal if nominal and nominal > 0 else None))
        tmp = self.path / "OME" / ".METADATA.ome.xml.tmp"
        try:
            tmp.write_bytes(xml.encode("utf-8"))  # UTF-8 whatever the process locale ("µm")
            tmp.replace(self.path / "OME" / "METADATA.ome.xml")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _final_metadata(self) -> dict[Path, bytes]:
        """The metadata that close writes, from the committed frames: each image's ``zarr.json``
        (time scale from the camera times, windows from the data) and the OME-XML with planes."""
        n = self.n_committed
        rows = [self._load_records(c) for c in range(-(-n // ROWS_PER_CHUNK))]
        rec = {k: (np.concatenate([r[k] for r in rows])[:n] if rows else np.empty(0, COLUMNS[k]))
               for k in ("camera_time_ms", "status", "consistency")}
        nominal = float(self.run["frame_interval_s"] or 0.0)
        measured = layout.measured_interval_s(rec["camera_time_ms"])
        scale = layout.time_scale_s(rec["camera_time_ms"], nominal)
        self.run["frame_interval_measured_s"] = measured
        enhanced = np.flatnonzero(np.isin(rec["status"], (FrameStatus.LIVE, FrameStatus.AFTER)))
        checked = np.flatnonzero(np.isfinite(rec["consistency"]))
        sampled = {layout.RAW: (self.raw, np.arange(n), False),
                   layout.ENHANCED: (self.enhanced, enhanced, False)}
        if self.consistency is not None:
            sampled[layout.CONSISTENCY] = (self.consistency, checked, True)
        files: dict[Path, bytes] = {}
        for key, (arr, frames, symmetric) in sampled.items():
            window = layout.data_window(_sample_frames(arr, frames), arr.dtype, symmetric=symmetric)
            attrs = _image_attrs(self.run, key, scale, window)
            files[self.path / key / "zarr.json"] = json.dumps(_group(attrs), indent=2).encode("utf-8")
        # a disk that filled during the run: no planes (the XML stays ~2 kB, inside the reserve's margin)
        planes = None if self.disk_full else layout.delta_t_s(rec["camera_time_ms"])
        images = self._ome_images(n, measured if measured is not None else (nominal or None), planes)
        files[self.path / "OME" / "METADATA.ome.xml"] = layout.ome_xml(images).encode("utf-8")
        return files

    def _write_final_metadata(self) -> None:
        """Write :meth:`_final_metadata`; a failure leaves the metadata of the last commit (valid,
        nominal time scale) and is logged and kept in :attr:`metadata_error` and the run's
        ``metadata_error``: it never costs a frame nor blocks closing (frames are committed)."""
        try:
            _replace_all(self._final_metadata(), fsync=self.fsync is not None)
        except OSError as err:
            self.metadata_error = os_error(
                err, self.path, "writing the final metadata of",
                "every frame is committed; the store keeps the metadata of its last commit "
                "(nominal time scale, no per-plane times)").message
        except Exception as err:  # a bug: still reported, and the frames stay committed
            log.exception("building the final metadata of %s failed", self.path)
            self.metadata_error = f"final metadata not written: {type(err).__name__}: {err}"
        if self.metadata_error is not None:
            log.error("%s", self.metadata_error)
            self.run["metadata_error"] = self.metadata_error

    # ------------------------------------------------------------------ closing
    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Commit everything, record the run's summary and mark it closed; idempotent.

        The reserve is freed first, so the final commit finds room on a full disk. If that commit
        fails, the run is still marked closed at the frames committed before (the summary says
        what is missing) where the disk allows, and the commit's error is raised.
        """
        if self.closed:
            return
        self._stop_committer()
        failure: StoreWriteError | None = None
        try:
            try:
                self.commit()
            except StoreWriteError as err:
                failure = err
            self._write_final_metadata()
            self.run.update(state="closed", frames=self.n_committed, summary=summary or {},
                            closed=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            try:
                write_json_atomic(self.path / "zarr.json", _group(layout.root_attrs(self.run)),
                                  fsync=self.fsync is not None)
            except OSError as err:
                raise _write_error(err, self.path) from err
            except Exception as err:
                raise StoreWriteError(f"closing {self.path} failed: {type(err).__name__}: {err}",
                                      "this is a bug in live-pssr: please report it with the log; "
                                      "the store holds every frame committed before") from err
        finally:
            self.closed = True
            if self.claim is not None:
                self.claim.release()
        if failure is not None:
            raise failure

    def abort(self) -> None:
        """End a run that failed: make what was written visible if the disk allows, unlock.

        The run state stays ``recording`` (never ``closed``), so readers see an unfinished run.
        """
        if self.closed:
            return
        self._stop_committer()
        try:
            self.commit()
        except StoreWriteError as err:
            log.error("could not commit the last frames of %s: %s", self.path, err.message)
        finally:
            self.closed = True
            if self.claim is not None:
                self.claim.release()

    def _stop_committer(self) -> None:
        """Stop the committer thread and free the reserve (room for the last commit)."""
        self._stop.set()
        if self._committer.is_alive():
            self._committer.join()
        with self._space_lock:
            reserve, self._reserve = self._reserve, None
        if reserve is not None:
            try:
                reserve.unlink(missing_ok=True)
            except OSError as err:
                log.error("could not remove the disk reserve %s: %s", reserve, err)

    def update_run_metadata(self, **values: Any) -> None:
        """Add run metadata (e.g. the engine chosen after start)."""
        self.run.update(values)
        try:
            self._with_space(lambda: write_json_atomic(self.path / "zarr.json",
                                                       _group(layout.root_attrs(self.run))))
        except OSError as err:
            raise _write_error(err, self.path) from err


def fsync_period(fsync: str | float) -> float | None:
    """``"off"`` -> None, ``"commit"`` -> 0, seconds -> seconds (ConfigError otherwise)."""
    from ..errors import ConfigError

    if fsync in ("off", None, False):
        return None
    if fsync in ("commit", True):
        return 0.0
    try:
        period = float(fsync)
    except (TypeError, ValueError):
        period = -1.0
    if period < 0:
        raise ConfigError(f"fsync={fsync!r} is not a valid setting",
                          "use fsync='off', 'commit' (every commit) or a number of seconds between flushes")
    return period


def _allocate(path: Path, nbytes: int) -> None:
    """Create ``path`` with ``nbytes`` really allocated on the disk (ENOSPC now, not later)."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _image_attrs(run: dict[str, Any], key: str, time_scale_s: float,
                 window: dict[str, float] | None = None) -> dict[str, Any]:
    """Image ``key``'s NGFF attributes (validated by yaozarrs: create and close only)."""
    px, u = run["pixel_size_um"], run["upscale"]
    if key == layout.ENHANCED:
        return layout.image_attrs("enhanced", px / u, time_scale_s, layout.enhanced_translation(px, u),
                                  window, run["dtype"])
    if key == layout.CONSISTENCY:
        return layout.image_attrs("consistency", px, time_scale_s, 0.0, window or layout.map_window(),
                                  "<f2")
    return layout.image_attrs("raw", px, time_scale_s, 0.0, window, run["dtype"])


def _sample_frames(arr: ChunkFileArray, frames: np.ndarray, count: int = 3,
                   max_pixels: int = 1 << 18) -> list[np.ndarray]:
    """Up to ``count`` of ``frames`` (evenly spread) read back, strided to ``max_pixels`` each.

    For display windows only: an unreadable chunk is left out (the window falls back to the dtype's).
    """
    if not len(frames):
        return []
    spread = np.linspace(0, len(frames) - 1, min(count, len(frames))).astype(int)
    picks = sorted({int(frames[i]) for i in spread})
    out = []
    for t in picks:
        try:
            chunk = arr.read_chunk((t, 0, 0, 0))
        except (OSError, ValueError) as err:
            log.debug("frame %d of %s unreadable for the display window: %s", t, arr.path, err)
            continue
        if chunk is not None:
            img = chunk[0, 0]
            step = max(1, int(np.ceil(np.sqrt(img.size / max_pixels))))
            out.append(img[::step, ::step])
    return out


def _replace_all(files: dict[Path, bytes], fsync: bool = False) -> None:
    """Write ``files`` as temporary files first, then rename each into place.

    Space and permission failures (a full or read-only disk) happen while staging, before any
    file is replaced: the store then keeps all its previous metadata. Renames need no space.
    """
    staged: dict[Path, Path] = {}
    try:
        for path, data in files.items():
            tmp = path.with_name(f".{path.name}.final.tmp")
            staged[path] = tmp
            with open(tmp, "wb") as f:
                f.write(data)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
        for path, tmp in staged.items():
            os.replace(tmp, path)
    except BaseException:
        for tmp in staged.values():  # never leave a temporary file behind (a full disk needs the space)
            try:
                tmp.unlink(missing_ok=True)
            except OSError as err:  # the first error is the one to report
                log.error("could not remove the temporary file %s: %s", tmp, err)
        raise
    if fsync:
        for folder in {p.parent for p in files}:
            fsync_dir(folder)


def _group(attrs: dict[str, Any]) -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": attrs}
