"""The fault matrix: every entry point against every real fault, checked with zarr alone.

Entry points: the ``live-pssr demo --headless`` / ``live-pssr acquire --simulate`` commands (real
processes) and the Python API (``LiveSession`` fed through ``pycromanager_hook`` from a thread,
a time-lapse (one store) and a z series (one store per stream)). Faults: a full disk (a small
tmpfs) and a read-only folder (a read-only bind remount), each at start and mid-run; ``kill -9``,
SIGTERM and SIGINT of a recording command; a second writer (session or process) on a path being
recorded, with and without overwrite; a user's folder given as the output with overwrite; a
slowed chunk writer under ``policy="complete"`` with the multi-frame model.

After each fault the output is reopened with ``zarr.open_group`` alone and the data-safety
contract is checked (see ``tests/faults.py``): the store opens and its parts agree,
``frames/index[t] == t``, every acknowledged frame is there bit-exact, the summary accounts for
every frame (stored, ``not_stored`` or ``rejected``), nothing outside the output is touched, a
second writer is refused, a command ends with a clear message and the right exit status.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from .faults import (
    TAG_B,
    Feeder,
    Harness,
    assert_untouched,
    call_with_timeout,
    check_cli_clean,
    check_session_contract,
    committed_frames,
    fill_disk,
    open_output,
    require_root,
    series_committed,
    signal_name,
    sim_frames,
    snapshot,
    summary_not_stored,
    user_files,
    user_folder_as_output,
    wait_until,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LAYOUTS = ["single", "series"]
OWN = [pytest.param(True, id="own"), pytest.param(False, id="passon")]
N_FRAMES = 36
FAULT_AT = 14  # mid-run faults happen before this frame is fed
SIZE = 64
FPS = 50.0
STORE = "run.ome.zarr"


@pytest.fixture(scope="module", autouse=True)
def no_leftover_mounts(tmp_path_factory):
    """After the module: no mount under this run's temporary folders is left behind."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    with open("/proc/mounts") as f:
        left = [line.split()[1] for line in f if line.split()[1].startswith(base)]
    for point in reversed(left):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
    assert not left, f"mounts left behind: {left}"


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path)
    yield harness
    problems = harness.close()
    if problems:
        pytest.fail("teardown: " + "; ".join(problems))


def axes_for(layout: str):
    if layout == "single":
        return lambda i: {"time": i}
    return lambda i: {"time": i, "z": i % 3}


def committed(path: Path, layout: str) -> int:
    return committed_frames(path) if layout == "single" else series_committed(path)


def session_kwargs(store: Path, layout: str, own: bool, enhance: bool, **extra):
    kw = dict(store=store, own_storage=own, layout=layout, enhance=enhance, engine="torch")
    if enhance:
        kw.update(model="mito-sr4-fast", frame_shape=(SIZE, SIZE))
    return {**kw, **extra}


def open_session_or_error(h: Harness, **kw):
    """A session, or the LivePSSRError its construction/start raised (a clear refusal)."""
    from live_pssr.errors import LivePSSRError

    try:
        s = h.session(**kw)
        s.start()
        return s, None
    except LivePSSRError as err:
        return None, err


def run_and_check(h: Harness, session, layout: str, own: bool, fault: str | None, before=None,
                  n: int = N_FRAMES, tags=None):
    fed = Feeder(session, tags or list(range(n)), axes_for(layout), before=before).start().join()
    summary = call_with_timeout(session.stop, 90, "session.stop()")
    out = open_output(Path(session.store_path))
    notes = check_session_contract(summary, out, fed, own, fault)
    return summary, out, fed, notes


# ============================================================================ API: full disk / read-only
@pytest.mark.parametrize("own", OWN)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_api_full_disk_at_start(h, tmp_path, layout, own):
    disk = h.tmpfs(tmp_path / "disk", 1024)
    before = user_files(disk)
    fill_disk(disk)
    store = disk / STORE
    session, err = open_session_or_error(h, **session_kwargs(store, layout, own, enhance=False))
    if err is not None:
        assert re.search(r"full|no space", err.message, re.I), f"unclear refusal: {err}"
    else:
        summary, out, fed, _ = run_and_check(h, session, layout, own, "full", n=10)
        assert out.n_total == 0
    assert_untouched(disk, before, exclude=(STORE, "filler.bin"))


@pytest.mark.parametrize("own", OWN)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_api_read_only_at_start(h, tmp_path, layout, own):
    require_root()
    disk = tmp_path / "disk"
    disk.mkdir()
    before = user_files(disk)
    h.read_only(disk)
    store = disk / STORE
    session, err = open_session_or_error(h, **session_kwargs(store, layout, own, enhance=False))
    if err is not None:
        assert re.search(r"read-only|not writable|read only", err.message, re.I), f"unclear refusal: {err}"
    else:
        summary, out, fed, _ = run_and_check(h, session, layout, own, "readonly", n=10)
        assert out.n_total == 0
    assert_untouched(disk, before, exclude=(STORE,))


def mid_run_fault(h: Harness, disk: Path, store: Path, layout: str, kind: str, seen: dict):
    """``before(i)`` for the feeder: at FAULT_AT, wait for some committed frames, then break the disk."""

    def before(i: int) -> None:
        if i != FAULT_AT:
            return
        wait_until(lambda: committed(store, layout) >= FAULT_AT // 2, timeout_s=30)
        seen["committed"] = committed(store, layout)
        if kind == "full":
            fill_disk(disk)
        else:
            h.read_only(disk)

    return before


MID_CASES = [pytest.param("single", True, False, id="single-own"),
             pytest.param("single", False, False, id="single-passon"),
             pytest.param("series", True, False, id="series-own"),
             pytest.param("series", False, False, id="series-passon"),
             pytest.param("single", True, True, id="single-own-enhance")]


@pytest.mark.parametrize("layout,own,enhance", MID_CASES)
def test_api_full_disk_mid_run(h, tmp_path, layout, own, enhance):
    disk = h.tmpfs(tmp_path / "disk", 8192 if enhance else 4096)
    before = user_files(disk)
    store = disk / STORE
    session = h.session(**session_kwargs(store, layout, own, enhance))
    seen: dict = {}
    summary, out, fed, _ = run_and_check(h, session, layout, own, "full",
                                         before=mid_run_fault(h, disk, store, layout, "full", seen))
    assert out.n_total >= seen["committed"], \
        f"the store lost committed frames: {seen['committed']} before the fault, {out.n_total} after"
    assert_untouched(disk, before, exclude=(STORE, "filler.bin"))


@pytest.mark.parametrize("layout,own,enhance", MID_CASES)
def test_api_read_only_mid_run(h, tmp_path, layout, own, enhance):
    require_root()
    disk = tmp_path / "disk"
    disk.mkdir()
    before = user_files(disk)
    store = disk / STORE
    session = h.session(**session_kwargs(store, layout, own, enhance))
    seen: dict = {}
    summary, out, fed, _ = run_and_check(h, session, layout, own, "readonly",
                                         before=mid_run_fault(h, disk, store, layout, "readonly", seen))
    assert out.n_total >= seen["committed"], \
        f"the store lost committed frames: {seen['committed']} before the fault, {out.n_total} after"
    assert_untouched(disk, before, exclude=(STORE,))


# ============================================================================ API: a second writer
@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_api_second_session_same_path(h, tmp_path, layout, overwrite):
    from live_pssr.errors import StoreExistsError

    disk = tmp_path / "disk"
    disk.mkdir()
    before = user_files(disk)
    store = disk / STORE
    first = h.session(**session_kwargs(store, layout, True, enhance=False))
    fed = Feeder(first, list(range(12)), axes_for(layout)).start().join()
    wait_until(lambda: committed(store, layout) >= 6, timeout_s=30)
    second, err = open_session_or_error(h, **session_kwargs(store, layout, True, enhance=False,
                                                            overwrite=overwrite))
    second_fed = []
    if second is not None:  # not refused: feed it anyway, to see what it does to the first's store
        second_fed = Feeder(second, [TAG_B + i for i in range(6)], axes_for(layout)).start().join()
        call_with_timeout(second.stop, 60, "second session stop()")
    fed += Feeder(first, list(range(12, 24)), lambda i: axes_for(layout)(i + 12)).start().join()
    summary = call_with_timeout(first.stop, 60, "session.stop()")
    out = open_output(store)
    check_session_contract(summary, out, fed, True, None)
    assert out.n_total == 24, f"the first session's store holds {out.n_total} of its 24 frames"
    assert_untouched(disk, before, exclude=(STORE,))
    assert second is None, (f"a second LiveSession on a path being recorded was not refused "
                            f"(overwrite={overwrite}); its hook returned None for "
                            f"{sum(f.returned is None for f in second_fed)} of {len(second_fed)} frames")
    assert isinstance(err, StoreExistsError), \
        f"refused with {type(err).__name__}, not StoreExistsError: {err}"


@pytest.mark.parametrize("layout", ["series"])  # a single store's lock: test_cli_second_process_same_path
def test_api_second_process_on_session_path(h, tmp_path, layout):
    disk = tmp_path / "disk"
    disk.mkdir()
    before = user_files(disk)
    store = disk / STORE
    first = h.session(**session_kwargs(store, layout, True, enhance=False))
    fed = Feeder(first, list(range(12)), axes_for(layout)).start().join()
    wait_until(lambda: committed(store, layout) >= 6, timeout_s=30)
    cli = h.run_cli(["demo", "--headless", "--frames", "5", "--size", str(SIZE), "--engine", "torch",
                     "--out", str(store), "--overwrite"], "second", timeout_s=90)
    fed += Feeder(first, list(range(12, 24)), lambda i: axes_for(layout)(i + 12)).start().join()
    summary = call_with_timeout(first.stop, 60, "session.stop()")
    out = open_output(store)
    check_session_contract(summary, out, fed, True, None)
    assert out.n_total == 24, f"the session's store holds {out.n_total} of its 24 frames"
    assert_untouched(disk, before, exclude=(STORE,))
    check_cli_clean(cli, (2,), "demo --overwrite on a path a session is recording")
    assert re.search(r"exist|recorded|locked|refus", cli.stderr, re.I), cli.tail(600)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_api_user_folder_as_output_with_overwrite(h, tmp_path, layout):
    from live_pssr.errors import StoreExistsError

    disk = tmp_path / "disk"
    disk.mkdir()
    before = user_files(disk)
    store = disk / "my-data"
    mine = user_folder_as_output(store)
    session, err = open_session_or_error(h, **session_kwargs(store, layout, True, enhance=False,
                                                             overwrite=True))
    if session is not None:
        fed = Feeder(session, list(range(6)), axes_for(layout)).start().join()
        summary = call_with_timeout(session.stop, 60, "session.stop()")
        acked = sum(f.returned is None for f in fed)
    assert snapshot(store, exclude=()) == mine, \
        "a user's folder given as the output with overwrite=True was changed or deleted"
    assert_untouched(disk, before, exclude=("my-data",))
    if session is not None:
        assert acked == 0, f"{acked} frames acknowledged as stored in a folder live-pssr may not replace"
        assert summary.rejected == len(fed), f"{len(fed)} frames fed, {summary.rejected} rejected"
        said = " ".join(list(summary.errors) + list(summary.rejected_reasons))
        assert re.search(r"exist|refus|not write|did not write", said, re.I), said[:300]
    else:
        assert isinstance(err, StoreExistsError), f"{type(err).__name__}: {err}"


# ============================================================================ API: slowed writer
@pytest.mark.parametrize("raw_queue", [pytest.param(None, id="queue-default"),
                                       pytest.param(4 * SIZE * SIZE * 2, id="queue-4-frames")])
def test_api_slowed_writer_complete_multiframe(h, tmp_path, monkeypatch, raw_queue):
    try:
        from live_pssr.store.chunks import ChunkFileArray
    except ImportError as err:
        pytest.fail(f"live_pssr.store.chunks.ChunkFileArray moved: {err}")
    from live_pssr import Enhancer, load_model

    write_chunk = ChunkFileArray.write_chunk

    def slowed(self, *args, **kwargs):  # a slow disk: every chunk write takes 15 ms longer
        time.sleep(0.015)
        return write_chunk(self, *args, **kwargs)

    monkeypatch.setattr(ChunkFileArray, "write_chunk", slowed)
    store = tmp_path / STORE
    extra = {} if raw_queue is None else {"max_raw_queue_bytes": raw_queue}
    session = h.session(store=store, model="mito-sr4-mf", engine="torch", policy="complete",
                        own_storage=True, frame_shape=(SIZE, SIZE), **extra)
    n = 30
    summary, out, fed, _ = run_and_check(h, session, "single", True, None, n=n)
    view = out.streams["run"]
    assert view.n == n and summary.raw_written == n
    not_enhanced = np.flatnonzero(~np.isin(view.status, [1, 2])).tolist()
    assert not not_enhanced, f"policy complete: frames {not_enhanced[:8]} not enhanced (status {view.status})"
    assert summary.enhanced == n and summary.pending == 0
    # the enhanced frames are the model's output on the right window of raw frames: checked for the
    # first frames (window padding), the frames enhanced afterwards from disk, and the last one
    ref = Enhancer(load_model("mito-sr4-mf"), "torch")
    images = [f.image for f in fed]
    after = np.flatnonzero(view.status == 2).tolist()
    for t in sorted({0, 1, 2, 3, 4, *after[:6], n - 1}):
        want = ref.enhance_window(images[max(0, t - ref.in_frames + 1):t + 1])
        diff = int(np.abs(view.enhanced[t].astype(np.int64) - want.astype(np.int64)).max())
        assert diff <= 2, f"enhanced frame {t} is not the model's output on frames {max(0, t - 4)}..{t} " \
                          f"(max difference {diff})"


def test_api_summary_reports_not_stored(h, tmp_path):
    """The summary's ``not_stored`` exists (empty on a clean run) on the session or on every stream."""
    session = h.session(**session_kwargs(tmp_path / STORE, "single", True, enhance=False))
    summary, out, fed, notes = run_and_check(h, session, "single", True, None, n=5)
    found = summary_not_stored(summary)
    assert found is not None, "summary has no not_stored attribute (neither the session nor its streams)"
    assert sum(len(v) for v in found.values()) == 0, f"clean run, but not_stored = {found}"


# ============================================================================ CLI
#: frames of a recording command: finite (the command ends by itself if a fault does not end it)
RUN_FRAMES = {"demo": 400, "acquire": 200}


def cli_args(command: str, store: Path, frames: int, *extra: str, fps: float = FPS) -> list[str]:
    common = ["--headless", "--frames", str(frames), "--size", str(SIZE), "--engine", "torch",
              "--model", "mito-sr4-fast", "--out", str(store), *extra]
    if command == "demo":
        return ["demo", *common, "--fps", str(fps), "--seed", "0"]
    return ["acquire", "--simulate", "--exposure", "20", *common]


def check_cli_store(store: Path, command: str, at_least: int, closed: bool | None = None,
                    fps: float = FPS):
    """The command's store reopens with zarr alone, every committed frame intact."""
    out = open_output(store)
    assert out.kind == "run", f"{store}: expected a run store, found {out.kind}"
    view = out.streams["run"]
    assert view.n >= at_least, (f"the store lost committed frames: {at_least} seen during the run, "
                                f"{view.n} after (lengths {view.lengths}, state {view.state!r})")
    if command == "demo":
        ref = sim_frames(view.n, SIZE, fps)
        if ref is not None:  # every frame of short runs; of long ones every 5th and the last 5
            check = range(view.n) if view.n <= 100 else sorted({*range(0, view.n, 5),
                                                                *range(max(0, view.n - 5), view.n)})
            bad = [t for t in check if not np.array_equal(view.raw[t], ref[t])]
            assert not bad, f"raw frames {bad[:8]} differ from the seeded simulator's"
    if closed is True:
        assert view.state == "closed", f"run state is {view.state!r}, not 'closed' (not closed cleanly)"
        summ = view.run.get("summary") or {}
        assert summ.get("raw_written") == view.n, \
            f"stored summary raw_written {summ.get('raw_written')} but the store holds {view.n}"
    return view


@pytest.fixture(scope="module")
def at_start(tmp_path_factory):
    """The at-start CLI faults, run side by side (each a short demo that must refuse at once)."""
    root = tmp_path_factory.mktemp("cli-at-start")
    h = Harness(root)
    try:
        full = h.tmpfs(root / "full", 1024)
        runs = {"full": {"disk": full, "before": user_files(full)}}
        fill_disk(full)
        ro = root / "readonly"
        ro.mkdir()
        runs["readonly"] = {"disk": ro, "before": user_files(ro)}
        h.read_only(ro)
        mine = root / "userfolder"
        mine.mkdir()
        runs["userfolder"] = {"disk": mine, "before": user_files(mine),
                              "folder": user_folder_as_output(mine / "my-data")}
        args = {"full": cli_args("demo", full / STORE, 5), "readonly": cli_args("demo", ro / STORE, 5),
                "userfolder": cli_args("demo", mine / "my-data", 3, "--overwrite")}
        for name, a in args.items():
            runs[name]["cli"] = h.spawn(a, name)
        for r in runs.values():
            r["cli"].wait(120)
        yield runs
    finally:
        problems = h.close()
        assert not problems, "teardown: " + "; ".join(problems)


def test_cli_full_disk_at_start(at_start):
    r = at_start["full"]
    cli, disk = r["cli"], r["disk"]
    check_cli_clean(cli, (2,), "demo on a full disk")
    assert re.search(r"full|no space", cli.stderr, re.I), cli.tail(600)
    out = open_output(disk / STORE)
    assert out.n_total == 0
    assert_untouched(disk, r["before"], exclude=(STORE, "filler.bin"))


def test_cli_read_only_at_start(at_start):
    r = at_start["readonly"]
    cli, disk = r["cli"], r["disk"]
    check_cli_clean(cli, (2,), "demo into a read-only folder")
    assert re.search(r"read-only|not writable|read only", cli.stderr, re.I), cli.tail(600)
    assert not (disk / STORE).exists()
    assert_untouched(disk, r["before"], exclude=(STORE,))


def test_cli_user_folder_as_output_with_overwrite(at_start):
    r = at_start["userfolder"]
    cli, disk = r["cli"], r["disk"]
    assert snapshot(disk / "my-data", exclude=()) == r["folder"], \
        "a user's folder given as --out with --overwrite was changed"
    assert_untouched(disk, r["before"], exclude=("my-data",))
    check_cli_clean(cli, (2,), "demo --overwrite onto a user's folder")
    assert re.search(r"refus|did not write|not .*live-pssr", cli.stderr, re.I), cli.tail(600)


def start_recording(h: Harness, command: str, store: Path, min_frames: int = 8):
    cli = h.spawn(cli_args(command, store, RUN_FRAMES[command]), f"{command}-main")
    ok = wait_until(lambda: committed_frames(store) >= min_frames, timeout_s=90, proc=cli)
    if not ok:
        pytest.fail(f"{command} never committed {min_frames} frames (exit {cli.returncode}):\n{cli.tail()}")
    return cli, committed_frames(store)


@pytest.mark.parametrize("command", ["demo", "acquire"])
def test_cli_full_disk_mid_run(h, tmp_path, command):
    disk = h.tmpfs(tmp_path / "disk", 16384)
    before = user_files(disk)
    store = disk / STORE
    cli, seen = start_recording(h, command, store)
    fill_disk(disk)
    cli.wait(60)
    check_cli_clean(cli, (2,), f"{command} when the disk fills up")
    assert re.search(r"full|no space", cli.stderr, re.I), cli.tail(600)
    check_cli_store(store, command, seen)
    assert_untouched(disk, before, exclude=(STORE, "filler.bin"))


@pytest.mark.parametrize("command", ["demo"])
def test_cli_read_only_mid_run(h, tmp_path, command):
    require_root()
    disk = tmp_path / "disk"
    disk.mkdir()
    before = user_files(disk)
    store = disk / STORE
    cli, seen = start_recording(h, command, store)
    h.read_only(disk)
    cli.wait(60)
    check_cli_clean(cli, (2,), f"{command} when the folder turns read-only")
    assert re.search(r"read-only|not writable|read only", cli.stderr, re.I), cli.tail(600)
    check_cli_store(store, command, seen)
    assert_untouched(disk, before, exclude=(STORE,))


@pytest.mark.parametrize("command", ["demo"])
def test_cli_kill9_mid_run(h, tmp_path, command):
    disk = tmp_path / "disk"
    disk.mkdir()
    before = user_files(disk)
    store = disk / STORE
    cli, seen = start_recording(h, command, store)
    cli.signal(signal.SIGKILL)
    cli.wait(30)
    assert cli.returncode == -signal.SIGKILL
    check_cli_store(store, command, seen)
    assert_untouched(disk, before, exclude=(STORE,))


SIGNALS = [pytest.param("demo", signal.SIGTERM, id="demo-SIGTERM"),
           pytest.param("acquire", signal.SIGTERM, id="acquire-SIGTERM"),
           pytest.param("demo", signal.SIGINT, id="demo-SIGINT")]


@pytest.mark.parametrize("command,sig", SIGNALS)
def test_cli_signal_mid_run_closes_cleanly(h, tmp_path, command, sig):
    disk = tmp_path / "disk"
    disk.mkdir()
    before = user_files(disk)
    store = disk / STORE
    cli, seen = start_recording(h, command, store)
    cli.signal(sig)
    cli.wait(90)
    name = signal.Signals(sig).name
    view = check_cli_store(store, command, seen)  # every committed frame, whatever else went wrong
    assert_untouched(disk, before, exclude=(STORE,))
    both = cli.stdout + cli.stderr
    # 128 + signal number, as a shell reports it (a process that re-raises the signal reads as -sig)
    problems = [f"exit status {signal_name(cli.returncode)}, expected {128 + sig}"
                ] if cli.returncode not in (128 + sig, -sig) else []
    if "Traceback" in both:
        problems.append("a traceback in its output")
    if "raw written" not in both:
        problems.append("no summary printed")
    if view.state != "closed":
        problems.append(f"run state {view.state!r}, not 'closed'")
    elif (view.run.get("summary") or {}).get("raw_written") != view.n:
        problems.append(f"stored summary raw_written {(view.run.get('summary') or {}).get('raw_written')}"
                        f" but the store holds {view.n}")
    assert not problems, f"{command} after {name}: " + "; ".join(problems) + f"\n{cli.tail(500)}"


def test_cli_second_process_same_path(h, tmp_path):
    """Two more demos on the path of a recording demo (one with --overwrite), started together.

    Both are refused (exit 2, a clear message) while the first goes on recording; the first is then
    ended with kill -9 and its store must hold every frame it committed.
    """
    disk = tmp_path / "disk"
    disk.mkdir()
    before = user_files(disk)
    store = disk / STORE
    first = h.spawn(cli_args("demo", store, 100000), "first")
    ok = wait_until(lambda: committed_frames(store) >= 5, timeout_s=90, proc=first)
    assert ok and first.alive(), f"the first run did not get going:\n{first.tail()}"
    plain = h.spawn(cli_args("demo", store, 5), "second-plain")
    over = h.spawn(cli_args("demo", store, 5, "--overwrite"), "second-overwrite")
    plain.wait(90)
    over.wait(90)
    was_recording = first.alive()
    seen = committed_frames(store)
    grew = wait_until(lambda: committed_frames(store) >= seen + 5, timeout_s=30, proc=first)
    seen = max(seen, committed_frames(store))
    first.signal(signal.SIGKILL)
    first.wait(30)
    assert was_recording, f"the first run ended (exit {first.returncode}) while the second ones ran:\n" \
                          f"{first.tail()}"
    check_cli_store(store, "demo", seen)
    assert grew, "the first run stopped committing frames after the second ones ran"
    assert_untouched(disk, before, exclude=(STORE,))
    for cli, what in ((plain, "without"), (over, "with")):
        check_cli_clean(cli, (2,), f"a second demo on the same path, {what} --overwrite")
        assert re.search(r"exist|recorded|locked|refus", cli.stderr, re.I), cli.tail(600)
