"""Claiming an output path: the one place that decides whether live-pssr may write or replace it.

Every writer of a live-pssr output (a run store, a series of run stores, an offline ``enhance``
output) claims its path here before writing anything, so one rule holds everywhere:

* **A new path** is claimed by creating it exclusively (``os.mkdir`` for a folder, ``O_EXCL`` for a
  file): the existence check and the claim are one atomic step, so of two writers racing for one
  path exactly one wins and the other gets :class:`~live_pssr.errors.StoreExistsError`.
* **An existing path** is replaced only when overwriting was asked for *and* it is a live-pssr
  output (recognised by its own metadata: :func:`output_kind`) *and* no process is recording it
  (its lock, below) *and* it is not, does not contain and is not inside an input of this run.
  Anything else is refused with what the path is and what to do; nothing is deleted.
* **Replacing** renames the old output aside (``.NAME.replaced-PID``, same folder: atomic), claims
  the path anew, then deletes the renamed copy, while holding the old output's lock: a crash
  in between leaves the old output whole under the hidden name, never half-deleted in place.
* **The lock**: a claimed folder holds ``.live-pssr.lock`` (pid, host, time), locked with
  ``flock`` for as long as its writer runs (:meth:`OutputClaim.release` at close). ``flock``
  belongs to an open file description, so two writers in one process exclude each other as two
  processes do, and the kernel drops it when a process dies (``kill -9`` leaves no stale lock).

A claimed folder that was never written to (a session that received no frame) is removed again by
:meth:`OutputClaim.abandon`: only when it holds nothing but the lock file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path

from ..errors import DiskFullError, StoreExistsError, StoreWriteError

LOCK_NAME = ".live-pssr.lock"
#: root attribute keys that mark a zarr group as written by live-pssr
_MARKERS = ("live_pssr", "live_pssr_series")
#: text every tif written by live-pssr carries in its description (ImageJ Info / OME Description)
TIF_MARKERS = ("live_pssr", "live-pssr")


def os_error(err: OSError, path: Path, doing: str, note: str = "") -> StoreWriteError:
    """A clear :class:`StoreWriteError` for an ``OSError`` raised while ``doing`` something at ``path``.

    A full disk gives :class:`DiskFullError`; ``note`` is added to the message (what is still safe).
    """
    tail = f"; {note}" if note else ""
    if err.errno == errno.ENOSPC:
        return DiskFullError(f"the disk is full while {doing} {path}{tail}",
                             "free space or write to another disk")
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        what, fix = "the folder is not writable", "choose a writable folder"
    elif err.errno in (errno.ENOTDIR, errno.EEXIST):
        what, fix = "a file is in the way (a part of the path is a file, not a folder)", \
            "choose an output path inside a folder"
    else:
        what, fix = f"{err.strerror or err}", "check the disk and the path"
    return StoreWriteError(f"{what} while {doing} {path}{tail}", fix)


# ---------------------------------------------------------------------------- recognising outputs
def output_kind(path: str | Path) -> str | None:
    """What live-pssr output ``path`` is (``run``, ``series``, ``zarr``, ``tif``, ``json``), or None.

    Recognised by live-pssr's own metadata only: a zarr group or array whose ``zarr.json``
    attributes carry ``live_pssr`` / ``live_pssr_series``, a tif whose description names
    live-pssr, or a JSON report (``enhance --consistency``) whose top-level object holds a
    ``live_pssr`` object with a ``format``. A folder or file without that mark is never treated
    as replaceable.
    """
    path = Path(path)
    if path.is_dir():
        try:
            doc = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        attrs = doc.get("attributes", {}) if isinstance(doc, dict) else {}
        if not isinstance(attrs, dict):
            return None
        if "live_pssr_series" in attrs:
            return "series"
        run = attrs.get("live_pssr")
        if isinstance(run, dict) and run.get("format") == "live-pssr-run":
            return "run"
        return "zarr" if run is not None else None
    if path.is_file() and path.suffix.lower() in (".tif", ".tiff"):
        return "tif" if _tif_is_ours(path) else None
    if path.is_file() and path.suffix.lower() == ".json":
        return "json" if _json_is_ours(path) else None
    return None


def _json_is_ours(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    mark = doc.get("live_pssr") if isinstance(doc, dict) else None
    return isinstance(mark, dict) and isinstance(mark.get("format"), str)


def _tif_is_ours(path: Path) -> bool:
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            text = " ".join(str(t.value) for t in page.tags.values()
                            if t.name in ("ImageDescription", "Software"))
            info = (tif.imagej_metadata or {}).get("Info", "")
            return any(m in text or m in str(info) for m in TIF_MARKERS)
    except Exception:  # not a readable tif: not ours
        return False


def _holder(lock_path: Path) -> str:
    try:
        return lock_path.read_text(encoding="utf-8").strip() or "another writer"
    except OSError:
        return "another writer"


def _lock(lock_path: Path, create: bool) -> int | None:
    """Open and ``flock`` ``lock_path`` without waiting; the fd, or None when someone holds it.

    The lock file is held open read-only (``flock`` needs no write access), so a held lock does
    not keep its file system from being remounted read-only.
    """
    if create and not lock_path.exists():
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_holder(lock_path: Path) -> None:
    """Say who holds the lock (best effort: a full disk must not stop a claim that succeeded)."""
    text = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n"
    try:
        lock_path.write_text(text, encoding="utf-8")
    except OSError:
        pass


def input_related(path: Path, inputs: tuple[Path, ...]) -> Path | None:
    """The input that ``path`` is, contains, or lies inside (None when none)."""
    target = path.resolve()
    for inp in inputs:
        src = Path(inp).resolve()
        if target == src or target in src.parents or src in target.parents:
            return Path(inp)
    return None


def check_output_file(path: str | Path, option: str, example: str, what: str = "a file") -> None:
    """An output *file* option (``--json``, ``--plot``, ``--screenshot``...): checked before any work.

    Refuses a folder, a file standing where one of its folders must be, and a folder that is not
    writable; ``example`` is a file name to suggest (``report.json``), ``what`` what is expected.
    """
    from ..errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder, not {what}",
                          f"pass a file name, e.g. {option} {path / example}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {path}: {parent} is a file, not a folder",
                                  "choose an output path inside a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{option} {path}: the folder {parent} is not writable",
                                  "choose a writable folder")
            return


# ---------------------------------------------------------------------------- claims
class OutputClaim:
    """A path this process has claimed (a folder with its lock held, or a new empty file)."""

    def __init__(self, path: Path, lock_fd: int | None, is_dir: bool) -> None:
        self.path = path
        self.is_dir = is_dir
        self._fd = lock_fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (the writer is done; the lock file stays, unlocked). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def abandon(self) -> bool:
        """Remove the claimed folder if nothing but the lock was written to it; True if removed."""
        if not self.is_dir:
            self.release()
            return False
        try:
            left = [p.name for p in self.path.iterdir() if p.name != LOCK_NAME]
        except OSError:
            left = ["?"]
        if left:
            self.release()
            return False
        try:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            self.release()
            self.path.rmdir()
            return True
        except OSError:
            self.release()
            return False

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_replaceable(path: str | Path, inputs: tuple[Path, ...] = ()) -> str:
    """Raise unless ``path`` is a live-pssr output that may be replaced now; returns its kind."""
    path = Path(path)
    rel = input_related(path, tuple(inputs))
    if rel is not None:
        raise StoreExistsError(
            f"refusing to overwrite {path}: it is (or holds, or lies inside) the input {rel}",
            "write the output to another path; live-pssr never replaces its own input")
    kind = output_kind(path)
    if kind is None:
        what = "folder" if path.is_dir() else "file"
        raise StoreExistsError(
            f"refusing to overwrite {path}: it is a {what} that live-pssr did not write "
            "(no live-pssr metadata), so --overwrite cannot replace it",
            "choose another output path; remove it yourself if you really mean to")
    lock = path / LOCK_NAME
    if path.is_dir() and lock.exists():
        fd = _lock(lock, create=False)
        if fd is None:
            raise StoreExistsError(
                f"refusing to overwrite {path}: it is being recorded right now ({_holder(lock)})",
                "wait for that run to end, or write to another path")
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return kind


def claim_dir(path: str | Path, overwrite: bool = False, inputs: tuple[Path, ...] = ()) -> OutputClaim:
    """Claim ``path`` as a new output folder (see the module docstring); holds its lock.

    Raises :class:`StoreExistsError` when the path exists and may not be replaced, and
    :class:`StoreWriteError` when it cannot be created (read-only, full, missing permissions).
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise StoreExistsError(f"output {path} already exists",
                                   "choose another output path, or pass --overwrite to replace it")
        _replace_aside(path, inputs)
    elif (rel := input_related(path, tuple(inputs))) is not None:
        raise StoreExistsError(f"refusing to write {path} inside the input {rel}",
                               "write the output to another path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise os_error(err, path.parent, "creating the folder") from err
    try:
        os.mkdir(path)
    except FileExistsError:
        raise StoreExistsError(f"output {path} was created by another writer just now",
                               "each run needs its own output path") from None
    except OSError as err:
        raise os_error(err, path, "creating") from err
    try:
        fd = _lock(path / LOCK_NAME, create=True)
    except OSError as err:  # e.g. no space even for the empty lock file: leave nothing behind
        _remove_empty(path)
        raise os_error(err, path, "creating") from err
    if fd is None:  # cannot happen for a folder we just made, unless another writer races in
        raise StoreExistsError(f"output {path} is locked by {_holder(path / LOCK_NAME)}",
                               "each run needs its own output path")
    _write_holder(path / LOCK_NAME)
    return OutputClaim(path, fd, is_dir=True)


def _remove_empty(path: Path) -> None:
    """Remove a folder this process just created, if it holds nothing but an empty lock file."""
    try:
        lock = path / LOCK_NAME
        if lock.exists() and lock.stat().st_size == 0 and len(list(path.iterdir())) == 1:
            lock.unlink()
        path.rmdir()
    except OSError:
        pass


def claim_file(path: str | Path, overwrite: bool = False, inputs: tuple[Path, ...] = ()) -> Path:
    """Check that ``path`` may become an output file; returns the temporary name to write first.

    The caller writes the temporary file (a hidden name beside ``path``) and calls
    :func:`commit_file` when it is complete: a failed write never leaves a file at ``path`` that
    looks complete. An existing ``path`` is only replaced (at commit) when it is a live-pssr
    output and ``overwrite`` was asked for.
    """
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise StoreExistsError(f"output {path} already exists",
                                   "choose another output path, or pass --overwrite to replace it")
        if path.is_dir():
            raise StoreExistsError(f"refusing to overwrite {path}: it is a folder, the output is a file",
                                   "choose another output path")
        check_replaceable(path, inputs)
    elif input_related(path, tuple(inputs)) is not None:
        raise StoreExistsError(f"refusing to write {path}: it is the input", "choose another output path")
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
    except FileExistsError:
        raise StoreExistsError(f"{tmp} exists: another writer is producing {path}",
                               "wait for it, or choose another output path") from None
    except OSError as err:
        raise os_error(err, path, "creating") from err
    return tmp


def commit_file(tmp: Path, path: Path, overwrite: bool = False) -> None:
    """Move a completely written temporary output into place (atomic).

    Without ``overwrite`` the path must still be free: a hard link claims it exclusively (a
    writer that raced in meanwhile keeps its file, and this one gets StoreExistsError). With
    ``overwrite`` the old output (checked by :func:`claim_file`) is replaced by a rename.
    """
    path = Path(path)
    try:
        if overwrite and path.exists():
            check_replaceable(path)
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise StoreExistsError(f"output {path} was written by another writer meanwhile",
                                   f"the finished output is kept as {tmp}; move it yourself") from None
        os.unlink(tmp)
    except StoreExistsError:
        raise
    except OSError as err:
        raise os_error(err, path, "finishing") from err


def _replace_aside(path: Path, inputs: tuple[Path, ...]) -> None:
    """Move an existing live-pssr output out of the way and delete it (holding its lock)."""
    check_replaceable(path, inputs)
    if not path.is_dir():  # a live-pssr tif where a folder goes
        try:
            path.unlink()
        except OSError as err:
            raise os_error(err, path, "replacing") from err
        return
    try:
        fd = _lock(path / LOCK_NAME, create=True)
    except OSError as err:
        raise os_error(err, path, "replacing") from err
    if fd is None:
        raise StoreExistsError(f"refusing to overwrite {path}: it is being recorded right now "
                               f"({_holder(path / LOCK_NAME)})",
                               "wait for that run to end, or write elsewhere")
    aside = path.with_name(f".{path.name}.replaced-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(path, aside)
    except OSError as err:
        os.close(fd)
        raise os_error(err, path, "replacing") from err
    try:
        shutil.rmtree(aside)
    except OSError as err:
        raise os_error(err, aside, "deleting the replaced output") from err
    finally:
        os.close(fd)
