"""Data safety of ``live-pssr enhance`` and replay, with real faults and real processes.

* ``--overwrite`` replaces only a live-pssr output (recognised by its own metadata), never a user's
  folder or file, never the input (nor a folder holding it);
* a full disk (a real small tmpfs) during ``enhance`` to every output kind (.tif, .ome.tif, .zarr,
  .ome.zarr run store; in-process and on dask workers) fails cleanly: exit 2, the problem and the
  fix, no traceback, no SIGBUS, and no output that looks complete;
* damaged or odd inputs (a truncated tif, a corrupt zarr chunk, a run store's root, a store of 0
  frames, int16 input to a run store, big-endian uint16) give a clear error or just work, through
  the CLI, for ``enhance`` and for ``demo --replay``.

CLI runs are subprocesses of ``python -m live_pssr.cli`` (what the console script runs), so a
crash (SIGBUS) or a traceback is seen as the user would see it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from live_pssr.offline import enhance_array, open_input
from live_pssr.store.claim import output_kind

from .conftest import camera_frames

FRAMES, SIDE = 40, 64  # enhanced x4: 40 x 256 x 256 uint16 = 5.2 MB (tif), ~2-3 MB compressed (zarr)


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "live_pssr.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})


def enhance(inp: Path, out: Path, model: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli("enhance", str(inp), "-o", str(out), "-m", str(model), "--engine", "torch", *extra)


def replay(rec: Path, out: Path, model: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli("demo", "--replay", str(rec), "--out", str(out), "--headless", "--model", str(model),
               "--engine", "torch", "--fps", "200", *extra)


def assert_clean_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 (a LivePSSRError), the problem and the fix on stderr, no traceback."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{text}"
    assert "Traceback" not in text, text
    assert "error:" in proc.stderr and "fix:" in proc.stderr, proc.stderr
    for w in words:
        assert w in proc.stderr, f"{w!r} not in\n{proc.stderr}"


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or the file itself) with its bytes."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".live-pssr.lock")


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return np.stack(camera_frames(FRAMES, (SIDE, SIDE), seed=11))


@pytest.fixture
def rec(tmp_path, stack) -> Path:
    path = tmp_path / "rec.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TYX"})
    return path


@pytest.fixture
def small_disk(tmp_path, request):
    """A real 2 MB tmpfs (or ``request.param``, e.g. "7m"): enhanced output of ``stack`` does not fit."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a real full disk)")
    point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    point.mkdir()
    size = getattr(request, "param", "2m")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield point
    finally:
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


# ------------------------------------------------------------------------------------ --overwrite
@pytest.mark.parametrize("name", ["mine.zarr", "mine.ome.zarr", "mine.tif"])
def test_overwrite_never_replaces_a_user_folder_or_file(tmp_path, rec, tiny_model_path, name):
    out = tmp_path / name
    if name.endswith(".tif"):  # a tif the user made (no live-pssr metadata)
        tifffile.imwrite(out, np.zeros((8, 8), np.uint16), imagej=True, metadata={"Info": "my data"})
    else:  # a folder of the user's files, some nested
        (out / "notes").mkdir(parents=True)
        (out / "notes" / "a.txt").write_text("keep me")
        (out / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    before = tree(out)
    proc = enhance(rec, out, tiny_model_path, "--overwrite")
    assert_clean_error(proc, "refusing to overwrite", "did not write")
    assert tree(out) == before  # untouched
    assert hidden_leftovers(tmp_path) == []


def test_overwrite_replaces_previous_outputs_of_every_kind(tmp_path, tiny_model_path, stack):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    tifffile.imwrite(a, stack[:3], imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(b, stack[3:5], imagej=True, metadata={"axes": "TYX"})
    expected = enhance_array(stack[3:5], tiny_model_path)
    for name, kind in [("o.tif", "tif"), ("o.ome.tif", "tif"), ("o.zarr", "zarr"), ("o.ome.zarr", "run")]:
        out = tmp_path / name
        assert enhance(a, out, tiny_model_path).returncode == 0
        assert output_kind(out) == kind  # every output kind carries live-pssr's mark
        again = enhance(a, out, tiny_model_path)
        assert_clean_error(again, "already exists", "--overwrite")
        proc = enhance(b, out, tiny_model_path, "--overwrite")
        assert proc.returncode == 0, proc.stderr
        assert output_kind(out) == kind
        if kind == "tif":
            got = tifffile.imread(out)
        elif kind == "zarr":
            assert zarr.open_array(str(out), mode="r").attrs["live_pssr"]["state"] == "complete"
            got = zarr.open_array(str(out), mode="r")[:]
        else:
            from live_pssr.store import open_store

            st = open_store(out)
            assert st.closed_cleanly
            got = st.enhanced[:, 0]
        np.testing.assert_array_equal(got, expected)
        assert hidden_leftovers(tmp_path) == []  # no temporary or replaced copies left


def test_overwrite_never_replaces_the_input(tmp_path, tiny_model_path, stack):
    prev = tmp_path / "prev.tif"
    tifffile.imwrite(tmp_path / "in.tif", stack[:3], imagej=True, metadata={"axes": "TYX"})
    assert enhance(tmp_path / "in.tif", prev, tiny_model_path).returncode == 0
    # a live-pssr output is replaceable, but not when it is this run's input
    before = tree(prev)
    assert_clean_error(enhance(prev, prev, tiny_model_path, "--overwrite"), "is the input")
    assert tree(prev) == before
    # a live-pssr output folder that holds the input
    folder = tmp_path / "prev.zarr"
    assert enhance(tmp_path / "in.tif", folder, tiny_model_path).returncode == 0
    shutil.copy(tmp_path / "in.tif", folder / "inside.tif")
    before = tree(folder)
    assert_clean_error(enhance(folder / "inside.tif", folder, tiny_model_path, "--overwrite"), "input")
    assert tree(folder) == before


# ------------------------------------------------------------------------------------ full disk
CASES = [("o.tif", ()), ("o.tif", ("-w", "2", "--scheduler", "processes")), ("o.ome.tif", ()),
         ("o.zarr", ()), ("o.zarr", ("-w", "2", "--scheduler", "processes")), ("o.ome.zarr", ()),
         ("o.ome.zarr", ("-w", "2", "--scheduler", "threads"))]


@pytest.mark.parametrize(("name", "workers"), CASES, ids=[f"{n}{'-' + w[3] if w else ''}" for n, w in CASES])
def test_full_disk_fails_cleanly_without_a_complete_looking_output(small_disk, rec, tiny_model_path,
                                                                   name, workers):
    out = small_disk / name
    proc = enhance(rec, out, tiny_model_path, "--threads", "1", *workers)
    assert_clean_error(proc, "disk is full", "free space")
    assert str(out) in proc.stderr and "(--out)" not in proc.stderr  # enhance's options, not demo's
    if name.endswith(".tif"):
        assert not out.exists()  # never a tif at the output path that is zeros past some frame
        assert list(small_disk.iterdir()) == []  # the temporary file is gone too
        return
    assert out.is_dir()
    assert output_kind(out) is not None  # still recognisable: --overwrite may replace it
    if name == "o.ome.zarr":
        from live_pssr.store import open_store

        st = open_store(out)
        assert not st.closed_cleanly and st.run["state"] == "recording"  # never "closed"
        assert st.status_counts()["after"] < FRAMES
        assert "unfinished" in proc.stderr and "--overwrite" in proc.stderr  # what is left, what to do
    else:
        assert zarr.open_array(str(out), mode="r").attrs["live_pssr"]["state"] == "partial"
        assert "partial" in proc.stderr
        from live_pssr.errors import FrameFormatError

        with pytest.raises(FrameFormatError, match="incomplete live-pssr output"):
            open_input(out)  # live-pssr's reader (enhance and replay) tells


@pytest.mark.parametrize("small_disk", ["7m"], indirect=True)
def test_full_disk_for_the_checks_maps_leaves_nothing(small_disk, rec, tiny_model_path):
    """The output fits, its TTA maps do not (a tif's space is reserved up front): refused before any
    work, and neither the output nor any of the files beside it is left."""
    out = small_disk / "o.tif"
    proc = enhance(rec, out, tiny_model_path, "--threads", "1", "--consistency", "--tta")
    assert_clean_error(proc, "disk is full", "o.tta.tif")
    assert list(small_disk.iterdir()) == []


def test_full_disk_mid_run_with_checks_leaves_no_report(small_disk, rec, tiny_model_path):
    """A zarr output with --consistency fills the disk mid-run: the output and its maps stay marked
    partial, and no report (which would say the run was checked) is left, not even its temporary."""
    out = small_disk / "o.zarr"
    proc = enhance(rec, out, tiny_model_path, "--threads", "1", "--consistency")
    assert_clean_error(proc, "disk is full", "free space")
    assert zarr.open_array(str(out), mode="r").attrs["live_pssr"]["state"] == "partial"
    maps = small_disk / "o.consistency.zarr"
    assert zarr.open_array(str(maps), mode="r").attrs["live_pssr"]["state"] == "partial"
    assert not (small_disk / "o.consistency.json").exists() and hidden_leftovers(small_disk) == []


# ------------------------------------------------------------------------------------ damaged input
def _truncated(tmp_path: Path, stack: np.ndarray) -> Path:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, stack[:6], imagej=True, metadata={"axes": "TYX"})
    os.truncate(path, path.stat().st_size // 2)  # an interrupted copy
    return path


def _corrupt_zarr(tmp_path: Path, stack: np.ndarray) -> Path:
    path = tmp_path / "bad.zarr"
    zarr.create_array(str(path), data=stack[:6], chunks=(1, SIDE, SIDE), dimension_names=("t", "y", "x"))
    (path / "c" / "3" / "0" / "0").write_bytes(b"this is not a zstd frame")
    return path


def test_truncated_tif_is_a_clear_error(tmp_path, tiny_model_path, stack):
    cut = _truncated(tmp_path, stack)
    assert_clean_error(enhance(cut, tmp_path / "o.tif", tiny_model_path), "truncated", str(cut))
    assert not (tmp_path / "o.tif").exists()
    assert_clean_error(replay(cut, tmp_path / "r.ome.zarr", tiny_model_path), "truncated", str(cut))


def test_corrupt_zarr_chunk_is_a_clear_error(tmp_path, tiny_model_path, stack):
    bad = _corrupt_zarr(tmp_path, stack)
    proc = enhance(bad, tmp_path / "o.tif", tiny_model_path)
    assert_clean_error(proc, "cannot read frame", "damaged", str(bad))
    assert not (tmp_path / "o.tif").exists()
    assert hidden_leftovers(tmp_path) == []
    assert_clean_error(replay(bad, tmp_path / "r.ome.zarr", tiny_model_path), "cannot read frame 3",
                       str(bad))


def test_replay_of_a_run_store_root_replays_its_raw_frames(tmp_path, tiny_model_path, stack):
    from live_pssr.store import open_store

    tifffile.imwrite(tmp_path / "in.tif", stack[:5], imagej=True, metadata={"axes": "TYX"})
    run = tmp_path / "run.ome.zarr"
    assert enhance(tmp_path / "in.tif", run, tiny_model_path).returncode == 0
    out = tmp_path / "again.ome.zarr"
    proc = replay(run, out, tiny_model_path, "--policy", "complete")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = open_store(out)
    assert st.n_frames == 5
    np.testing.assert_array_equal(st.raw[:, 0], stack[:5])


def test_store_of_zero_frames_is_a_clear_error(tmp_path, tiny_model_path):
    from live_pssr.store import RunStore

    empty = tmp_path / "empty.ome.zarr"
    RunStore.create(empty, (SIDE, SIDE), "uint16", 4).close()
    assert_clean_error(enhance(empty, tmp_path / "o.tif", tiny_model_path), "holds no frames")
    assert_clean_error(replay(empty, tmp_path / "r.ome.zarr", tiny_model_path), "holds no frames")
    assert not (tmp_path / "o.tif").exists() and not (tmp_path / "r.ome.zarr").exists()


def test_run_store_dtype_message_says_what_is_true(tmp_path, tiny_model_path, stack):
    inp = tmp_path / "i16.tif"
    tifffile.imwrite(inp, stack[:3].astype(np.int16), photometric="minisblack")
    proc = enhance(inp, tmp_path / "o.ome.zarr", tiny_model_path)
    assert_clean_error(proc, "int16", "float32", ".tif or .zarr")
    assert "--out-dtype" not in proc.stderr  # never passed: not the thing to drop
    proc = enhance(inp, tmp_path / "o.ome.zarr", tiny_model_path, "--out-dtype", "uint16")
    assert_clean_error(proc, "drop --out-dtype")


def test_big_endian_uint16_is_read_as_uint16(tmp_path, tiny_model_path, stack):
    data = stack[:4]
    be_tif = tmp_path / "be.tif"
    tifffile.imwrite(be_tif, data.astype(">u2"), byteorder=">", photometric="minisblack")
    be_zarr = tmp_path / "be.zarr"  # zarr v2 keeps the byte order in its dtype
    arr = zarr.create_array(str(be_zarr), shape=data.shape, dtype=">u2", chunks=(1, SIDE, SIDE),
                            zarr_format=2)
    arr[:] = data
    expected = enhance_array(data, tiny_model_path)
    for src in (be_tif, be_zarr):
        out = tmp_path / f"{src.name}.ome.zarr"
        proc = enhance(src, out, tiny_model_path)
        assert proc.returncode == 0, proc.stderr
        from live_pssr.store import open_store

        st = open_store(out)
        assert st.raw.dtype == np.uint16 and st.enhanced.dtype == np.uint16
        np.testing.assert_array_equal(st.raw[:, 0], data)
        np.testing.assert_array_equal(st.enhanced[:, 0], expected)
        proc = replay(src, tmp_path / f"{src.name}-replay.ome.zarr", tiny_model_path)
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_array_equal(open_store(tmp_path / f"{src.name}-replay.ome.zarr").raw[:, 0], data)
