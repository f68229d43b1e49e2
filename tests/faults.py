"""Helpers for tests/test_fault_matrix.py: real faults, real processes, a zarr-only store reader.

Faults are real: a small tmpfs for a full disk, read-only bind remounts (root ignores ``chmod``),
signals to a real ``live-pssr`` process, a second writer on the same path. Everything a test sets
up is undone by :class:`Harness` (children killed by pid, sessions stopped, mounts unmounted in
reverse order), whatever the test did.

The reader here uses zarr alone (``zarr.open_group``): the contract is that any zarr v3 reader
can open a run store after any of these faults, not only live-pssr's own reader.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

REPO = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
STATUS_CODES = {0, 1, 2, 3, 4}  # pending, live, after, skipped, failed
ENHANCED_CODES = {1, 2}
FRAME_SHAPE = (64, 64)
TAG_B = 30000  # frames of a second writer carry tags from here (never confused with the first's)


def cli_command() -> list[str]:
    """The ``live-pssr`` console script of this checkout's venv (else ``python -m live_pssr.cli``)."""
    override = os.environ.get("LIVE_PSSR_CLI")
    if override:
        return [override]
    script = REPO / ".venv" / "bin" / "live-pssr"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "live_pssr.cli"]


def require_root() -> None:
    if not IS_ROOT:
        pytest.skip("needs root: faults are real mounts (tmpfs, read-only bind remounts)")


# ============================================================================ frames and metadata
def make_frame(tag: int, shape: tuple[int, int] = FRAME_SHAPE) -> np.ndarray:
    """A camera-like uint16 frame, unique per ``tag``; pixel [0, 0] holds the tag (identifies it)."""
    rng = np.random.default_rng(tag + 12345)
    img = rng.integers(100, 4000, shape).astype(np.uint16)
    img[0, 0] = tag
    return img


def pm_metadata(t: int, **axes: Any) -> dict[str, Any]:
    """Metadata shaped like pycromanager 1.0.2's for one frame (time axis ``t`` plus ``axes``)."""
    h, w = FRAME_SHAPE
    return {"Axes": {"time": t, **axes}, "ElapsedTime-ms": float(t * 5), "PixelSize_um": 0.1,
            "Binning": "1", "Camera": "Cam", "Height": str(h), "Width": str(w), "ImageNumber": str(t),
            "PixelType": "GRAY16", "ROI-X-start": "0", "ROI-Y-start": "0", "Exposure": 5.0,
            "TimeReceivedByCore": f"2026-01-01 12:{t // 60 % 60:02d}:{t % 60:02d}.{t % 1000:03d}000"}


@dataclass
class Fed:
    """One frame handed to the hook, and what the hook did with it."""

    tag: int
    stream: tuple  # the frame's non-time axes, e.g. (("z", 1),); () for a time-lapse
    image: np.ndarray
    returned: Any = None  # what the hook returned: None means "live-pssr owns this frame"
    same_objects: bool = True
    raised: BaseException | None = None


class Feeder:
    """Feeds frames to ``session.pycromanager_hook`` from its own thread, like an acquisition.

    ``axes(i)`` gives frame i's axes (time and more); ``before(i)`` runs on the feeding thread
    before frame i (to inject a fault at a known point).
    """

    def __init__(self, session: Any, tags: list[int], axes: Any, before: Any = None,
                 interval_s: float = 0.002) -> None:
        self.session, self.tags, self.axes, self.before = session, tags, axes, before
        self.interval_s = interval_s
        self.fed: list[Fed] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fault-feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for i, tag in enumerate(self.tags):
                if self.before is not None:
                    self.before(i)
                ax = self.axes(i)
                t = ax.pop("time")
                md = pm_metadata(t, **ax)
                img = make_frame(tag)
                keep = Fed(tag, tuple(sorted(ax.items())), img.copy())
                try:
                    out = self.session.pycromanager_hook(img, md)
                    keep.returned = out
                    keep.same_objects = out is None or (isinstance(out, tuple) and len(out) == 2
                                                        and out[0] is img and out[1] is md)
                except BaseException as err:  # the hook must never raise into the acquisition
                    keep.raised = err
                self.fed.append(keep)
                if self.interval_s:
                    time.sleep(self.interval_s)
        except BaseException as err:  # a fault injection failed (mount...): reported by join
            self.error = err

    def join(self, timeout_s: float = 90.0) -> list[Fed]:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            pytest.fail(f"the hook blocked: {len(self.fed)} of {len(self.tags)} frames fed "
                        f"after {timeout_s:.0f} s")
        if self.error is not None:
            if isinstance(self.error, pytest.skip.Exception):
                raise self.error
            raise self.error
        raised = [f for f in self.fed if f.raised is not None]
        assert not raised, f"the hook raised into the acquisition: {raised[0].raised!r}"
        assert all(f.same_objects for f in self.fed), "the hook returned other objects than it got"
        return self.fed


def call_with_timeout(fn: Any, timeout_s: float, what: str) -> Any:
    """Run ``fn()`` on a helper thread; fail the test (not hang it) if it does not return."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:
            box["error"] = err

    th = threading.Thread(target=run, name=f"fault-{what}", daemon=True)
    th.start()
    th.join(timeout_s)
    if th.is_alive():
        pytest.fail(f"{what} did not return within {timeout_s:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


# ============================================================================ harness
class Harness:
    """Mounts, child processes and sessions of one test, all undone at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.mounts: list[Path] = []
        self.procs: list[subprocess.Popen] = []
        self.sessions: list[Any] = []

    # ---------------------------------------------------------------- mounts
    def _mount(self, args: list[str], point: Path, what: str, skip: bool = True) -> None:
        try:
            res = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            pytest.skip("no mount command here: the disk faults need it")
        if res.returncode != 0:
            msg = f"cannot {what} at {point}: {res.stderr.strip() or res.returncode}"
            if skip:
                pytest.skip(msg)
            raise RuntimeError(msg)

    def tmpfs(self, point: Path, size_kb: int) -> Path:
        """A small tmpfs at ``point`` (a disk of ``size_kb`` KiB)."""
        require_root()
        point.mkdir(parents=True, exist_ok=True)
        self._mount(["-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(point)], point,
                    "mount a tmpfs")
        self.mounts.append(point)
        return point

    def read_only(self, point: Path) -> None:
        """Make folder ``point`` read-only now: a bind mount onto itself, remounted read-only.

        Works mid-run: the new mount has no writers (files already open stay on the old one), so
        every later lookup under ``point`` is read-only (EROFS), as on a disk remounted read-only.
        """
        require_root()
        self._mount(["--bind", str(point), str(point)], point, "bind-mount")
        self.mounts.append(point)
        for _ in range(50):  # a writer may hold a file open on the new mount for a moment (EBUSY)
            res = subprocess.run(["mount", "-o", "remount,bind,ro", str(point)], capture_output=True,
                                 text=True, timeout=30)
            if res.returncode == 0:
                return
            time.sleep(0.005)
        self._mount(["-o", "remount,bind,ro", str(point)], point, "remount read-only")

    def unmount_all(self) -> list[str]:
        """Unmount in reverse order; a busy mount (a file still open on it) is detached lazily."""
        problems = []
        for point in reversed(self.mounts):
            res = subprocess.run(["umount", str(point)], capture_output=True, text=True, timeout=30)
            if res.returncode == 0:
                continue
            held = open_files_under(point)
            lazy = subprocess.run(["umount", "-l", str(point)], capture_output=True, text=True, timeout=30)
            if lazy.returncode != 0:
                problems.append(f"umount {point}: {res.stderr.strip()}; lazy: {lazy.stderr.strip()}")
            else:
                warnings.warn(f"{point} was busy at teardown (detached lazily); this process still "
                              f"holds open: {held[:4]}", stacklevel=1)
        self.mounts.clear()
        return problems

    # ---------------------------------------------------------------- processes
    def spawn(self, args: list[str], name: str) -> Cli:
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200",
               "LIVE_PSSR_RESCUE_DIR": str(self.tmp / "rescue")}
        env.pop("DISPLAY", None)
        env.pop("WAYLAND_DISPLAY", None)
        out = open(self.logs / f"{name}.stdout", "w")  # noqa: SIM115 - closed in Cli.finish
        err = open(self.logs / f"{name}.stderr", "w")  # noqa: SIM115
        proc = subprocess.Popen([*cli_command(), *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                cwd=self.tmp, env=env, start_new_session=True)
        self.procs.append(proc)
        return Cli(proc, out, err, self.logs / f"{name}.stdout", self.logs / f"{name}.stderr")

    def run_cli(self, args: list[str], name: str, timeout_s: float = 90.0) -> Cli:
        cli = self.spawn(args, name)
        cli.wait(timeout_s)
        return cli

    # ---------------------------------------------------------------- sessions
    def session(self, **kwargs: Any) -> Any:
        """A LiveSession (imported the public way), stopped at teardown if the test did not."""
        from live_pssr import LiveSession

        kwargs.setdefault("rescue_dir", self.tmp / "rescue")  # rescued frames stay in the test's folder
        s = LiveSession(**kwargs)
        self.sessions.append(s)
        return s

    # ---------------------------------------------------------------- teardown
    def close(self) -> list[str]:
        problems = []
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.kill()  # by pid: only what this test started
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    problems.append(f"child {proc.pid} did not die")
        for s in self.sessions:
            th = threading.Thread(target=lambda s=s: _quiet_stop(s), daemon=True)
            th.start()
            th.join(30)
            if th.is_alive():
                problems.append("a LiveSession did not stop within 30 s at teardown")
        problems += self.unmount_all()
        return problems


def _quiet_stop(session: Any) -> None:
    try:
        session.stop()
    except Exception:
        pass


@dataclass
class Cli:
    """A running or finished ``live-pssr`` process with its output in files."""

    proc: subprocess.Popen
    _out: Any
    _err: Any
    out_path: Path
    err_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout_s: float) -> int:
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)
            self._close()
            pytest.fail(f"live-pssr did not exit within {timeout_s:.0f} s (killed)\n"
                        f"stderr tail:\n{self.stderr[-1500:]}")
        self._close()
        return self.proc.returncode

    def _close(self) -> None:
        for f in (self._out, self._err):
            if not f.closed:
                f.close()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def tail(self, n: int = 1200) -> str:
        return (self.stdout + self.stderr)[-n:]

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)


def open_files_under(folder: Path) -> list[str]:
    """Files this process holds open under ``folder`` (from /proc/self/fd)."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder) + "/"):
            held.append(target)
    return held


def committed_frames(store: Path) -> int:
    """Frames a reader sees right now: the smallest length over raw, enhanced and record columns.

    (Commits resize the columns, then raw, then enhanced; the reader's rule is the smallest.)
    Read from the arrays' zarr.json; 0 while any part is missing.
    """
    try:
        docs = [store / "0" / "0" / "zarr.json", store / "1" / "0" / "zarr.json"]
        docs += sorted((store / "frames").glob("*/zarr.json"))
        if len(docs) < 3:
            return 0
        return min(int(json.loads(p.read_text(encoding="utf-8"))["shape"][0]) for p in docs)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return 0


def series_committed(path: Path) -> int:
    """Frames committed over all streams of a series folder (0 if none yet)."""
    if not path.is_dir():
        return 0
    return sum(committed_frames(p) for p in path.iterdir() if p.is_dir())


def wait_until(pred: Any, timeout_s: float = 60.0, proc: Cli | None = None, step_s: float = 0.05) -> bool:
    """Poll ``pred()`` until true, the process ends, or the timeout (never an assertion on time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        if proc is not None and not proc.alive():
            return bool(pred())
        time.sleep(step_s)
    return bool(pred())


# ============================================================================ disk
def fill_disk(folder: Path) -> Path:
    """Fill the file system holding ``folder`` until ENOSPC (a user's big file); returns it."""
    filler = folder / "filler.bin"
    block = os.urandom(1 << 16)
    with open(filler, "ab", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    f.write(block[:size])
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    break
    return filler


def snapshot(folder: Path, exclude: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the top-level names in ``exclude``."""
    out = {}
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        if rel_root == Path("."):
            dirs[:] = [d for d in dirs if d not in exclude]
            files = [f for f in files if f not in exclude]
        for f in files:
            p = Path(root) / f
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
        for d in dirs:
            out[str((Path(root) / d).relative_to(folder)) + "/"] = "dir"
    return out


def user_files(folder: Path) -> dict[str, str]:
    """Put a user's file and folder into ``folder`` (beside the output); returns their snapshot."""
    (folder / "notes.txt").write_bytes(b"user data, not live-pssr's\n" + os.urandom(2000))
    (folder / "user-folder").mkdir(exist_ok=True)
    (folder / "user-folder" / "cells.tif").write_bytes(os.urandom(3000))
    return snapshot(folder, exclude=())


def user_folder_as_output(path: Path) -> dict[str, str]:
    """A user's own folder (no live-pssr metadata) that is about to be given as the output."""
    path.mkdir(parents=True)
    (path / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                                                "attributes": {"owner": "someone else"}}))
    (path / "data.bin").write_bytes(os.urandom(4000))
    (path / "sub").mkdir()
    (path / "sub" / "keep.txt").write_text("keep me")
    return snapshot(path, exclude=())


def assert_untouched(folder: Path, before: dict[str, str], exclude: tuple[str, ...]) -> None:
    after = snapshot(folder, exclude)
    before = {k: v for k, v in before.items() if k.split("/")[0] not in exclude}
    missing = sorted(set(before) - set(after))
    changed = sorted(k for k in before if k in after and after[k] != before[k])
    assert not missing and not changed, (f"files outside the output were touched: "
                                         f"deleted {missing[:5]}, changed {changed[:5]}")


# ============================================================================ zarr-only reader
@dataclass
class RunView:
    """A run store as zarr alone reads it, with the checks every fault must pass."""

    path: Path
    attrs: dict[str, Any]
    n: int  # frames every part holds (the reader's rule: the smallest length)
    lengths: dict[str, int]
    raw: np.ndarray  # (n, y, x)
    enhanced: np.ndarray  # (n, y*s, x*s)
    status: np.ndarray
    index: np.ndarray

    @property
    def run(self) -> dict[str, Any]:
        return self.attrs.get("live_pssr", {})

    @property
    def state(self) -> str | None:
        return self.run.get("state")

    def tags(self) -> list[int]:
        return [int(v) for v in self.raw[:, 0, 0]]


def open_run(path: Path) -> RunView:
    """Open a run store with zarr alone and check that its parts agree (see the module's contract)."""
    try:
        g = zarr.open_group(str(path), mode="r")
        attrs = g.attrs.asdict()
        raw_a, enh_a = g["0/0"], g["1/0"]
        frames = g["frames"]
        cols = {k: frames[k] for k in frames.array_keys()}
    except Exception as err:
        raise AssertionError(f"store {path} does not open with zarr: {type(err).__name__}: {err}") from None
    run = attrs.get("live_pssr")
    assert isinstance(run, dict), f"{path}: root attributes have no live_pssr run metadata"
    assert "index" in cols and "status" in cols, f"{path}: record columns {sorted(cols)} lack index/status"
    lengths = {"0/0": raw_a.shape[0], "1/0": enh_a.shape[0], **{f"frames/{k}": a.shape[0]
                                                                 for k, a in cols.items()}}
    n = min(lengths.values())
    if run.get("state") == "closed":
        assert len(set(lengths.values())) == 1, f"{path}: closed store, parts disagree on frames: {lengths}"
        if "frames" in run:
            assert run["frames"] == n, f"{path}: run metadata says {run['frames']} frames, arrays hold {n}"
    assert raw_a.ndim == 4 and raw_a.shape[1] == 1, f"{path}: raw array shape {raw_a.shape} is not (t,1,y,x)"
    up = int(run.get("upscale", 1))
    assert tuple(enh_a.shape[2:]) == (raw_a.shape[2] * up, raw_a.shape[3] * up), \
        f"{path}: enhanced {enh_a.shape} vs raw {raw_a.shape} x{up}"
    try:
        raw = np.asarray(raw_a[:n, 0])
        enh = np.asarray(enh_a[:n, 0])
        index = np.asarray(cols["index"][:n])
        status = np.asarray(cols["status"][:n])
        for a in cols.values():
            np.asarray(a[:n])
    except Exception as err:
        raise AssertionError(f"{path}: committed frames do not read back: "
                             f"{type(err).__name__}: {err}") from None
    bad = np.flatnonzero(index != np.arange(n))
    assert bad.size == 0, f"{path}: frames/index[t] != t at t={bad[:5].tolist()} (values {index[bad[:5]]})"
    odd = sorted(set(np.unique(status).tolist()) - STATUS_CODES)
    assert not odd, f"{path}: unknown status codes {odd}"
    for t in np.flatnonzero(np.isin(status, list(ENHANCED_CODES)))[:50]:
        assert enh[t].any(), f"{path}: frame {t} is recorded as enhanced but its enhanced frame is empty"
    return RunView(path, attrs, n, lengths, raw, enh, status, index)


@dataclass
class Output:
    """What a session or command left at its output path, read with zarr alone."""

    path: Path
    exists: bool
    kind: str  # "none", "empty" (no zarr.json: nothing was written), "run", "series"
    streams: dict[str, RunView] = field(default_factory=dict)  # name -> store
    axes: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> its constant axes
    index: dict[str, Any] = field(default_factory=dict)

    @property
    def n_total(self) -> int:
        return sum(v.n for v in self.streams.values())


def open_output(path: Path) -> Output:
    """Open a single run store or a series (the streams listed in ``live_pssr_series``)."""
    if not path.exists():
        return Output(path, False, "none")
    if not (path / "zarr.json").exists():
        leftovers = [p for p in path.rglob("*") if p.is_file() and p.name != ".live-pssr.lock"]
        assert not leftovers, (f"{path} holds files but no zarr.json (a half-made store): "
                               f"{[str(p.relative_to(path)) for p in leftovers[:5]]}")
        return Output(path, True, "empty")
    try:
        attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    except Exception as err:
        raise AssertionError(f"{path} does not open with zarr: {type(err).__name__}: {err}") from None
    if "live_pssr_series" in attrs:
        idx = attrs["live_pssr_series"]
        streams, axes = {}, {}
        for entry in idx.get("streams", []):
            streams[entry["name"]] = open_run(path / entry["path"])
            axes[entry["name"]] = dict(entry.get("axes", {}))
        if idx.get("state") == "closed":
            on_disk = {p.name for p in path.iterdir() if p.is_dir() and (p / "0" / "0").is_dir()}
            unlisted = sorted(on_disk - {e["path"] for e in idx.get("streams", [])})
            assert not unlisted, f"{path}: closed series does not list its stores {unlisted}"
        return Output(path, True, "series", streams, axes, idx)
    view = open_run(path)
    return Output(path, True, "run", {"run": view}, {"run": {}})


# ============================================================================ the contract
def summary_not_stored(summary: Any) -> dict[str, set[int]] | None:
    """``not_stored`` of a session summary (session-level or per stream) as {stream: {index}}, or None."""
    found: dict[str, set[int]] = {}
    have = False
    top = getattr(summary, "not_stored", None)
    if top is not None:
        have = True
        for item in top:
            if isinstance(item, tuple | list) and len(item) == 2:
                found.setdefault(str(item[0]), set()).add(int(item[1]))
            else:
                found.setdefault("run", set()).add(int(item))
    for name, s in (getattr(summary, "streams", None) or {}).items():
        per = getattr(s, "not_stored", None)
        if per is None:
            continue
        have = True
        for item in per:
            idx = item[1] if isinstance(item, tuple | list) else item
            found.setdefault(name, set()).add(int(idx))
    return found if have else None


def check_stored_frames(out: Output, fed: list[Fed]) -> dict[str, list[int]]:
    """Every stored frame is a fed frame of its stream, bit-exact, in arrival order; {stream: tags}."""
    by_tag = {f.tag: f for f in fed}
    stored: dict[str, list[int]] = {}
    for name, view in out.streams.items():
        want_axes = tuple(sorted(out.axes.get(name, {}).items()))
        tags = view.tags()
        for t, tag in enumerate(tags):
            f = by_tag.get(tag)
            assert f is not None, f"{view.path}: stored frame {t} (tag {tag}) is no frame that was fed"
            assert out.kind != "series" or f.stream == want_axes, \
                f"{view.path}: stored frame {t} has axes {f.stream}, the stream is {want_axes}"
            diff = int(np.count_nonzero(view.raw[t] != f.image))
            assert diff == 0, \
                f"{view.path}: stored frame {t} (tag {tag}) differs from the fed frame in {diff} px"
        assert tags == sorted(tags), f"{view.path}: frames not in arrival order: {tags[:10]}"
        stored[name] = tags
    return stored


def check_rescued_frames(summary: Any, fed: list[Fed]) -> set[int]:
    """Tags of the frames the summary says were rescued (rescue tifs, read with tifffile), bit-exact."""
    import tifffile

    by_tag = {f.tag: f for f in fed}
    tags: set[int] = set()
    for path in (getattr(summary, "rescued", None) or {}).values():
        data = tifffile.imread(path).reshape((-1, *next(iter(by_tag.values())).image.shape))
        for page in data:
            f = by_tag.get(int(page[0, 0]))
            assert f is not None, f"{path}: a rescued frame (tag {int(page[0, 0])}) is no frame that was fed"
            assert np.array_equal(page, f.image), f"{path}: rescued frame {f.tag} differs from the fed one"
            tags.add(f.tag)
    return tags


def check_session_contract(summary: Any, out: Output, fed: list[Fed], own_storage: bool,
                           fault: str | None) -> list[str]:
    """The data-safety contract for a session fed ``fed``; returns notes (not failures)."""
    notes: list[str] = []
    stored = check_stored_frames(out, fed)
    stored_tags = {t for tags in stored.values() for t in tags}
    rescued_tags = check_rescued_frames(summary, fed)
    n_fed = len(fed)
    # acknowledged frames are all in the store, or in a rescue file the summary names
    if own_storage:
        acked = [f.tag for f in fed if f.returned is None]
        lost = sorted(set(acked) - stored_tags - rescued_tags)
        assert not lost, (f"{len(lost)} frame(s) acknowledged with own_storage=True (hook returned None) "
                          f"are not in the store: tags {lost[:8]}; store holds {out.n_total} frames")
    # the summary agrees with the store
    assert summary.raw_written == out.n_total, \
        f"summary.raw_written = {summary.raw_written} but the store holds {out.n_total} raw frames"
    for name, view in out.streams.items():
        s = (summary.streams or {}).get(name)
        if s is not None:
            assert s.raw_written == view.n, \
                f"stream {name}: summary raw_written {s.raw_written}, store holds {view.n}"
    not_stored = summary_not_stored(summary)
    if not_stored is None:
        notes.append("summary has no not_stored attribute")
    ns_total = sum(len(v) for v in (not_stored or {}).values())
    for name, idx in (not_stored or {}).items():
        view = out.streams.get(name) if out.kind == "series" else out.streams.get("run")
        if view is not None:
            both = sorted(i for i in idx if i < view.n)
            assert not both, f"stream {name}: frames {both[:5]} listed as not stored but are in the store"
    rejected = int(summary.rejected)
    unaccounted = n_fed - out.n_total - rejected - len(rescued_tags)
    ok = unaccounted == 0 or (not_stored is not None and unaccounted == ns_total)
    assert ok, (f"{n_fed} frames fed = {out.n_total} stored + {rejected} rejected"
                + (f" + {ns_total} listed in not_stored" if not_stored is not None
                   else " (summary has no not_stored)")
                + f": {unaccounted - (ns_total if not_stored else 0)} frame(s) vanished unreported")
    if fault is not None and out.n_total < n_fed:
        said = " ".join(list(summary.errors) + list(summary.rejected_reasons))
        pattern = {"full": r"full|no space", "readonly": r"read-only|not writable|read only",
                   "exists": r"exist|recorded|locked|refus|another"}[fault]
        assert re.search(pattern, said, re.I), \
            f"frames were not stored but the summary does not say why ({fault}): {said[:300]!r}"
    return notes


def check_cli_clean(cli: Cli, expect_rc: tuple[int, ...], what: str) -> None:
    """A finished command: the expected exit status and a clear message (no Python traceback)."""
    both = cli.stdout + cli.stderr
    assert "Traceback" not in both, f"{what}: a traceback instead of a clear message:\n{cli.tail()}"
    assert cli.returncode in expect_rc, \
        f"{what}: exit status {cli.returncode}, expected {expect_rc[0]}\n{cli.tail(600)}"


def sim_frames(n: int, size: int, fps: float, seed: int = 0, upscale: int = 4,
               laser_power: float = 0.05) -> list[np.ndarray] | None:
    """The demo's simulated frames 0..n-1 (its source is seeded), or None if the simulator moved."""
    try:
        from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope
    except ImportError:
        return None
    mic = SimulatedMicroscope(MicroscopeConfig(height=size, width=size, upscale=upscale, fps=fps,
                                               laser_power=laser_power, seed=seed))
    return [mic.frame(t) for t in range(n)]


def signal_name(rc: int | None) -> str:
    if rc is not None and rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            pass
    return str(rc)
