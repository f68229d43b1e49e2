"""Safety of the live path: faults that used to lose frames, hang, grow memory or touch files.

Each test drives the public API (``LiveSession``, ``LivePipeline``, the ``live-pssr`` command)
into a real fault -- a C locale, a full disk (a small tmpfs), a raw queue smaller than a frame,
malformed pycromanager metadata, a model that outputs NaN, many rejection reasons, an overwrite
over the replayed input -- and checks what a user relies on: the frames are in the store (read
back with zarr or the store reader), the run ends with a clear error, memory stays bounded and
the acquisition thread never creates, deletes or opens a file for writing.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zarr

import live_pssr
from live_pssr import LiveSession
from live_pssr.engines import TorchEngine
from live_pssr.enhancer import Enhancer
from live_pssr.errors import StoreWriteError
from live_pssr.frames import Frame
from live_pssr.pipeline import LivePipeline, StoreSpec
from live_pssr.store import FrameStatus, open_store

from .conftest import camera_frames

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

#: the folder that holds the live_pssr package under test (subprocesses import the same code)
PKG_ROOT = str(Path(live_pssr.__file__).resolve().parents[1])
MiB = 1 << 20


def wait_for(cond, timeout: float = 30.0) -> None:
    """Poll ``cond()`` until it holds; fails when it never does (conftest's, kept here so this module
    also runs against older trees whose conftest lacks it)."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.002)
    assert cond()


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", **extra}
    env["PYTHONPATH"] = os.pathsep.join([PKG_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _md(t: int) -> dict:
    return {"Axes": {"time": t}, "PixelSize_um": 0.2}


def _noise(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, shape).astype(np.uint16)


# ============================================================================ 1. UTF-8, any locale
def test_store_metadata_is_utf8_under_the_c_locale(tmp_path):
    """OpenVINO sets the C locale at runtime: the OME-XML ("µm") must still be written (as UTF-8)."""
    store = tmp_path / "run.ome.zarr"
    script = textwrap.dedent("""
        import locale, sys, time
        locale.setlocale(locale.LC_ALL, "C")  # what OpenVINO does when it loads
        import numpy as np
        from live_pssr.frames import Frame
        from live_pssr.pipeline import LivePipeline, StoreSpec

        p = LivePipeline(None, StoreSpec(sys.argv[1])).start()
        rng = np.random.default_rng(0)
        for i in range(30):
            p.submit(Frame(i, rng.integers(0, 4000, (16, 16)).astype(np.uint16), float(i)))
            time.sleep(0.01)  # the committer runs during the acquisition
        s = p.stop()
        print("written", s.raw_written, "errors", s.errors)
    """)
    env = _env(PYTHONUTF8="0", LC_ALL="C", PYTHONCOERCECLOCALE="0", LANG="C")
    res = subprocess.run([sys.executable, "-c", script, str(store)], env=env, capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    xml = (store / "OME" / "METADATA.ome.xml").read_bytes().decode("utf-8")
    assert "µm" in xml and 'SizeT="30"' in xml
    assert zarr.open_group(str(store), mode="r")["0/0"].shape[0] == 30


@pytest.mark.parametrize("persistent", [False, True], ids=["fails-once", "fails-from-then-on"])
def test_committer_failure_stops_the_run_with_a_clear_error(tmp_path, monkeypatch, persistent):
    """Beside the real fault above: any exception in the commit thread ends the run, said clearly.

    The OME-XML writer raises from its 4th call on (``persistent``) or on its 4th call only.
    """
    from live_pssr.store import layout

    real, calls = layout.ome_xml, []

    def ome_xml_failing_after_three(images):
        calls.append(images[0]["size_t"])
        if len(calls) == 4 or (persistent and len(calls) > 4):
            raise RuntimeError("injected OME-XML failure")
        return real(images)

    monkeypatch.setattr(layout, "ome_xml", ome_xml_failing_after_three)
    p = LivePipeline(None, StoreSpec(tmp_path / "run.ome.zarr")).start()
    refused = None
    for i in range(3000):  # bounded: the committer runs every 0.1 s
        try:
            p.submit(Frame(i, _noise((16, 16), i), float(i)))
        except StoreWriteError as err:
            refused = err
            break
        time.sleep(0.002)
    summary = p.stop()  # must not raise: the failure is in the summary
    text = " ".join([str(refused or "")] + summary.errors)
    assert refused is not None or summary.errors, "the store froze silently"
    assert "injected OME-XML failure" in text and "RuntimeError" in text
    if refused is not None:
        assert "injected OME-XML failure" in refused.message and refused.hint
    r = open_store(tmp_path / "run.ome.zarr")  # what was committed stays readable, the store is closed
    assert r.n_frames >= 1 and r.closed_cleanly
    np.testing.assert_array_equal(r.raw_frame(0), _noise((16, 16), 0))


# ============================================================================ 2. full disk: no leak
@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size_kb)`` -> a fresh tmpfs of that size (unmounted after the test)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the full disk is a real tmpfs mount")
    points: list[Path] = []

    def make(size_kb: int) -> Path:
        point = tmp_path / f"disk{len(points)}"
        point.mkdir()
        try:
            res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(point)],
                                 capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            pytest.skip("no mount command here")
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
        points.append(point)
        return point

    yield make
    for point in reversed(points):
        if subprocess.run(["umount", str(point)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


def _traced_after_gc() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.parametrize("size_kb", [600, 12 * 1024], ids=["full-at-start", "full-mid-run"])
def test_frames_refused_after_a_full_disk_are_not_kept_in_memory(small_disk, size_kb):
    disk = small_disk(size_kb)
    session = LiveSession(store=disk / "run.ome.zarr", enhance=False)
    base = _noise((512, 512), 0)  # 512 KiB a frame
    try:
        refused_in_a_row, i = 0, 0
        while refused_in_a_row < 3:  # until the session refuses frames (the disk is full)
            assert i < 400, f"the session never refused a frame on a {size_kb} KiB disk"
            before = session.rejected
            img, md = base.copy(), _md(i)
            out = session.pycromanager_hook(img, md)
            assert out[0] is img and out[1] is md
            refused_in_a_row = refused_in_a_row + 1 if session.rejected > before else 0
            i += 1
            time.sleep(0.005)  # the writer meets the full disk
        rejected = session.rejected
        tracemalloc.start()
        try:
            m0 = _traced_after_gc()
            for j in range(200):
                session.pycromanager_hook(base.copy(), _md(i + j))
            grown = _traced_after_gc() - m0
        finally:
            tracemalloc.stop()
        assert session.rejected == rejected + 200
        assert grown < 20 * MiB, f"200 refused frames kept {grown / MiB:.0f} MiB alive"
    finally:
        summary = session.close()
    assert summary.rejected >= 203 and summary.rejected_reasons and not summary.not_stored
    if size_kb > 1024:  # the store was made and filled mid-run: what it took is all there
        assert summary.raw_written > 0
        assert open_store(disk / "run.ome.zarr").n_frames == summary.raw_written
    else:  # no room for the store's reserve: refused from the first frame, nothing half-made
        assert summary.raw_written == 0


# ============================================================================ 3. tiny raw queue bound
def test_raw_queue_bound_smaller_than_one_frame_does_not_hang(tmp_path):
    store = tmp_path / "run.ome.zarr"
    frames = [_noise((64, 64), i) for i in range(20)]  # 8 KiB each, bound 1000 bytes
    done: dict = {}

    def acquire() -> None:
        session = LiveSession(store=store, enhance=False, max_raw_queue_bytes=1000)
        for i, img in enumerate(frames):
            session.pycromanager_hook(img, _md(i))
        done["summary"] = session.close()

    t = threading.Thread(target=acquire, name="acq-tiny-queue", daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "feeding 20 frames and closing hung (raw queue bound < one frame)"
    assert done["summary"].rejected == 0
    r = open_store(store)
    assert r.n_frames == 20
    for i, img in enumerate(frames):
        np.testing.assert_array_equal(r.raw_frame(i), img)


# ============================================================================ 4. odd metadata
ODD_METADATA = [None, {"Axes": "not a dict"}, {"Axes": None}]


def test_odd_pycromanager_metadata_still_stores_every_frame(tmp_path):
    """Metadata ``None``, ``Axes`` not a dict, ``Axes`` None (in turn): every frame stored, none refused."""
    store = tmp_path / "run.ome.zarr"
    session = LiveSession(store=store, enhance=False, own_storage=False)
    frames = [_noise((32, 32), i) for i in range(9)]
    for i, img in enumerate(frames):
        odd = ODD_METADATA[i % 3]
        md = None if odd is None else dict(odd)
        out = session.pycromanager_hook(img, md)
        assert out is not None and out[0] is img and out[1] is md  # unchanged, same objects
    summary = session.close()
    assert summary.rejected == 0 and summary.frames_received == 9, summary.errors
    r = open_store(store)
    assert r.n_frames == 9
    for i, img in enumerate(frames):
        np.testing.assert_array_equal(r.raw_frame(i), img)


# ============================================================================ 5. NaN output
class NaNTorchEngine(TorchEngine):
    """The real eager engine; its output gets NaN in a few pixels (a broken kernel or fp16 overflow)."""

    def run(self, batch):
        out = np.array(super().run(batch), copy=True)
        out[..., :2, :3] = np.nan
        return out


def test_nan_output_marks_frames_failed_and_disables_enhancement(tmp_path, tiny_model):
    frames = camera_frames(16, (32, 32))
    p = LivePipeline(Enhancer(tiny_model, NaNTorchEngine(tiny_model)), StoreSpec(tmp_path / "r.ome.zarr"),
                     policy="complete").start()
    for i, img in enumerate(frames):
        p.submit(Frame(i, img, i * 10.0))
        time.sleep(0.002)
    s = p.stop()
    r = open_store(tmp_path / "r.ome.zarr")
    assert r.n_frames == 16 and s.raw_written == 16
    status = np.asarray(r.records["status"])
    assert not (status == FrameStatus.LIVE).any() and not (status == FrameStatus.AFTER).any()
    assert s.enhanced_live == 0 and s.enhanced_after == 0
    assert (status == FrameStatus.FAILED).sum() >= 10 and s.failed >= 10
    assert any("NaN" in e for e in s.errors), s.errors
    for i in range(16):  # nothing was written as if it were enhanced
        assert not r.enhanced_frame(i).any()
    assert s.enhancement_disabled and "10 failures in a row" in s.enhancement_disabled
    assert "enhancement" in s.text() and "NaN" in s.text()


# ============================================================================ 6. every reason listed
def test_summary_text_lists_every_distinct_rejection_reason(tmp_path):
    session = LiveSession(store=tmp_path / "run.ome.zarr", enhance=False)
    good = _noise((32, 32), 0)
    session.pycromanager_hook(good, _md(0))
    bad = [good.astype(np.float32), np.stack([good, good]), [[1, 2], [3, 4]], _noise((16, 32), 1),
           good.astype(np.uint8)]
    for i, img in enumerate(bad):
        session.pycromanager_hook(img, _md(i + 1))
    summary = session.close()
    assert summary.rejected == 5 and summary.raw_written == 1
    reasons = list(summary.rejected_reasons)
    assert len(reasons) == 5, reasons
    text = summary.text()
    missing = [r for r in reasons if r not in text]
    assert not missing, f"summary.text() leaves out {missing}:\n{text}"


# ============================================================================ 7. acquisition thread: no files
_AUDIT_ON = False
_AUDIT_EVENTS: list[tuple[str, str, str]] = []
_AUDIT_INSTALLED = False
FILE_CHANGES = {"os.mkdir", "os.rename", "os.remove", "shutil.rmtree", "os.unlink", "os.rmdir",
                "os.truncate", "os.link", "os.symlink", "shutil.move", "shutil.copyfile"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit(event: str, args: tuple) -> None:
    if not _AUDIT_ON:
        return
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, 0))[:3]
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
        if not writes:
            return
    elif event not in FILE_CHANGES:
        return
    _AUDIT_EVENTS.append((threading.current_thread().name, event, str(args[0]) if args else ""))


def _install_audit_hook() -> None:
    global _AUDIT_INSTALLED
    if not _AUDIT_INSTALLED:  # audit hooks cannot be removed: one per process, off unless _AUDIT_ON
        sys.addaudithook(_audit)
        _AUDIT_INSTALLED = True


def _feed_on_acq_thread(session: LiveSession, frames: list[np.ndarray], t0: int = 0) -> None:
    def acquire() -> None:
        for i, img in enumerate(frames):
            session.pycromanager_hook(img, _md(t0 + i))
            time.sleep(0.002)

    t = threading.Thread(target=acquire, name="acq", daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive()


@pytest.mark.parametrize("overwrite", [False, True], ids=["new-store", "overwrite"])
def test_acquisition_thread_never_touches_files(tmp_path, overwrite):
    """30 frames in 6 sessions of 5, fed from a thread named "acq" like pycromanager's.

    The frames have a real sCMOS size (2048 x 2048): copying one takes milliseconds with the GIL
    released, the time in which a store would be made on the acquisition thread if it were made
    wherever the first frame happens to be. ``overwrite``: each session replaces the live-pssr
    store that the session before it wrote.
    """
    global _AUDIT_ON
    _install_audit_hook()
    # warm up on this thread: lazy imports (and their bytecode caches) happen here, not on "acq"
    warm = LiveSession(store=tmp_path / "warm.ome.zarr", enhance=False)
    warm.pycromanager_hook(_noise((16, 16), 0), _md(0))
    warm.close()
    base = np.zeros((2048, 2048), np.uint16)
    if overwrite:  # the store the first session replaces, made by a previous session
        old = LiveSession(store=tmp_path / "run.ome.zarr", enhance=False)
        old.pycromanager_hook(base + 7, _md(0))
        old.close()
        assert open_store(tmp_path / "run.ome.zarr").n_frames == 1
    _AUDIT_EVENTS.clear()
    for k in range(6):
        store = tmp_path / ("run.ome.zarr" if overwrite else f"run-{k}.ome.zarr")
        frames = []
        for i in range(5):
            img = base.copy()
            img[0, :4] = (k, i, 1, 2)
            frames.append(img)
        _AUDIT_ON = True
        try:
            session = LiveSession(store=store, enhance=False, overwrite=overwrite)
            _feed_on_acq_thread(session, frames)
            summary = session.close()
        finally:
            _AUDIT_ON = False
        assert summary.rejected == 0
        r = open_store(store)
        assert r.n_frames == 5
        np.testing.assert_array_equal(r.raw_frame(4), frames[4])
    events = list(_AUDIT_EVENTS)
    on_acq = [e for e in events if e[0] == "acq"]
    assert not on_acq, f"the acquisition thread changed files: {on_acq[:10]}"
    assert any(e[0] != "acq" for e in events)  # the audit hook saw the stores being written elsewhere


# ============================================================================ 8. engine gate
def test_session_engine_goes_through_selection_and_its_gate(tmp_path, tiny_model, caplog):
    caplog.set_level(logging.INFO, logger="live_pssr")
    session = LiveSession(model=tiny_model, store=tmp_path / "run.ome.zarr", engine="torch")
    try:
        session.prepare((32, 32))
    finally:
        session.close()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("live_pssr")]
    gate = [m for m in messages if re.search(r"engine \S*torch\S* ready for .*max rel err", m)]
    assert gate, f"no correctness-gate line for engine='torch' in the log: {messages}"
    assert "torch" in session.enhancer.engine_name


# ============================================================================ 9. memory per frame
def _intern_filters() -> list[tracemalloc.Filter]:
    """Leave out the interpreter's interned-string table (pathlib interns each path part, <= 3.11).

    Every chunk file name passes through it and dies again; once enough dead entries piled up,
    CPython rebuilds the table at the same size: tracemalloc then sees a new multi-MiB block (the
    old one predates tracing), a one-off artefact that depends on what the process imported.
    Strings kept alive would still count (they are allocated where they are made, not here).
    """
    import inspect
    import pathlib

    lines = [i + 1 for i, text in enumerate(inspect.getsourcelines(pathlib)[0]) if "sys.intern(" in text]
    return [tracemalloc.Filter(False, pathlib.__file__, lineno=n) for n in lines]


def _retained_bytes() -> int:
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(_intern_filters())
    return sum(trace.size for trace in snapshot.traces)


def test_memory_per_frame_stays_bounded(tmp_path):
    """20 000 tiny frames: what is retained per frame (the record table) stays under 100 bytes.

    The rate windows (last 5 s of arrivals) are bounded by time, not frames: both measurements are
    taken after they emptied, so the number below is the per-frame cost alone.
    """
    p = LivePipeline(None, StoreSpec(tmp_path / "r.ome.zarr")).start()
    img = np.zeros((16, 16), np.uint8)

    def settle(n: int) -> int:
        wait_for(lambda: p.stats().raw_written == n, timeout=120)  # the writer drained the queue
        time.sleep(5.2)  # the 5 s rate windows forget the arrivals
        p.stats()  # (trimmed when read)
        return _retained_bytes()

    tracemalloc.start()
    try:
        for i in range(20_000):
            if i == 5_000:
                m5 = settle(5_000)
            p.submit(Frame(i, img.copy(), float(i)))
        m20 = settle(20_000)
    finally:
        tracemalloc.stop()
        summary = p.stop()
    per_frame = (m20 - m5) / 15_000
    print(f"retained per frame between frame 5000 and 20000: {per_frame:.1f} bytes")
    assert summary.raw_written == 20_000
    assert per_frame < 100, f"{per_frame:.0f} bytes retained per frame"


# ============================================================================ 10. demo: never its input
def _demo(tmp_path: Path, model: Path, replay: Path, out: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("live-pssr")
    cmd = [str(exe), "demo", "--headless", "--replay", str(replay), "--model", str(model),
           "--engine", "torch", "--frames", "5", "--out", str(out), "--overwrite"]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180, cwd=tmp_path)


def _write_tif(path: Path) -> None:
    import tifffile

    tifffile.imwrite(path, np.stack(camera_frames(5, (32, 32))))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_demo_refuses_an_output_folder_that_holds_the_replayed_file(tmp_path, tiny_model_path):
    user = tmp_path / "X"
    user.mkdir()
    _write_tif(user / "rec.tif")
    (user / "notes.txt").write_text("my notes\n")
    before = _snapshot(user)
    res = _demo(tmp_path, tiny_model_path, user / "rec.tif", user)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert re.search(r"refusing|input", res.stderr), res.stderr
    assert _snapshot(user) == before  # rec.tif and notes.txt byte-identical, nothing added


def test_demo_refuses_a_live_pssr_store_that_holds_the_replayed_file(tmp_path, tiny_model_path):
    store = tmp_path / "old.ome.zarr"
    p = LivePipeline(None, StoreSpec(store)).start()
    for i, img in enumerate(camera_frames(3, (32, 32))):
        p.submit(Frame(i, img, float(i)))
    p.stop()
    assert open_store(store).n_frames == 3  # a real, closed live-pssr store
    _write_tif(store / "rec.tif")
    before = _snapshot(store)
    res = _demo(tmp_path, tiny_model_path, store / "rec.tif", store)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert re.search(r"refusing|input", res.stderr), res.stderr
    assert _snapshot(store) == before
    assert open_store(store).n_frames == 3
