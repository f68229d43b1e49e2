"""``live-pssr enhance --scheduler tcp://HOST:PORT`` on a real ``distributed.LocalCluster`` of worker
processes: the output is bit-identical to the in-process run, the progress bar follows the cluster's
blocks, a worker killed mid-job (a real SIGKILL) either has its blocks run again on the other worker
(identical output) or fails the job with a clear error and no output left looking complete, a worker's
own error reaches the user, and an address nothing answers at is a clear error within the timeout.

The clusters are real: 2 worker processes of 1 thread each, started by a nanny. One is shared by the
module; each killed-worker test has its own, so its workers are fresh (their first block also imports
torch and builds the engine, which takes far longer than the kill: it lands mid-task, and the
scheduler's ``remove-worker`` event proves it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

from live_pssr.cli import app
from live_pssr.errors import ConfigError, FrameFormatError, LivePSSRError
from live_pssr.offline import enhance_file

from .conftest import camera_frames
from .test_enhance import _model, _tif

distributed = pytest.importorskip("distributed")

N = 12
BLOCK = 1


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return np.stack(camera_frames(N, (40, 48), seed=11))


@pytest.fixture(scope="module")
def mf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-frame centre-target model: every block also reads its neighbours' frames."""
    return _model(tmp_path_factory.mktemp("models") / "mf3.safetensors", 3, "centre", seed=7)


def _start(**config: object) -> tuple[object, object]:
    import dask

    with dask.config.set(config):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
    return cluster, distributed.Client(cluster, set_as_default=False)


@pytest.fixture
def fresh_cluster(request: pytest.FixtureRequest) -> Iterator[tuple[object, object]]:
    cluster, client = _start(**getattr(request, "param", {}))
    try:
        yield cluster, client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[tuple[object, object]]:
    cluster, client = _start()
    try:
        yield cluster, client
    finally:
        client.close()
        cluster.close()


def _reference(tmp_path: Path, inp: Path, model: Path) -> np.ndarray:
    """The in-process run (1 torch thread, as the cluster's workers use)."""
    res = enhance_file(inp, tmp_path / "ref.zarr", model=model, engine="torch", threads=1,
                       out_dtype="float32")
    assert res.scheduler == "in-process"
    return zarr.open_array(str(res.output), mode="r")[:]


def _run_in_thread(**kw: object) -> tuple[threading.Thread, dict[str, object]]:
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = enhance_file(**kw)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _kill_a_busy_worker(client: object, thread: threading.Thread) -> str:
    """SIGKILL the process of the first worker seen running a block of the job; its address."""
    pids = client.run(os.getpid)  # {worker address: its process}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and thread.is_alive():
        busy = [addr for addr, keys in client.processing().items()
                if any(str(k).startswith("enhance-") for k in keys)]
        if busy:
            pid = pids[busy[0]]
            assert pid != os.getpid()
            os.kill(pid, signal.SIGKILL)
            return busy[0]
        time.sleep(0.002)
    pytest.fail("no worker was seen running a block of the job")


def _lost_blocks(client: object, addr: str) -> set[str]:
    """The job's blocks the scheduler saw processing on ``addr`` when it lost that worker."""
    removed = [msg for _, msg in client.get_events(addr) if msg.get("action") == "remove-worker"]
    assert removed, f"the scheduler never removed {addr}"
    return {str(k) for k in removed[-1]["processing-tasks"] if str(k).startswith("enhance-")}


# ------------------------------------------------------------------------------------ same output
def test_cluster_output_is_identical_to_in_process(tmp_path, stack, mf_model, shared_cluster):
    cluster, _ = shared_cluster
    inp = _tif(tmp_path / "in.tif", stack, "TYX")
    ref = _reference(tmp_path, inp, mf_model)
    seen: list[tuple[int, int]] = []
    res = enhance_file(inp, tmp_path / "o.zarr", model=mf_model, engine="torch", threads=1,
                       out_dtype="float32", block=BLOCK, scheduler=cluster.scheduler_address,
                       progress=lambda d, n: seen.append((d, n)))
    assert res.scheduler == cluster.scheduler_address and res.workers == 2
    out = zarr.open_array(str(res.output), mode="r")
    assert out.attrs["live_pssr"]["state"] == "complete"
    np.testing.assert_array_equal(out[:], ref)
    assert np.abs(ref).max() > 0
    # the progress came from the cluster's futures, one call per block, up to every frame
    assert [d for d, _ in seen] == list(range(1, N + 1)) and {n for _, n in seen} == {N}


def test_cluster_tif_output_and_the_cli_progress_bar(tmp_path, stack, tiny_model_path, shared_cluster):
    cluster, _ = shared_cluster
    inp = _tif(tmp_path / "in.tif", stack, "TYX")
    args = ["enhance", str(inp), "-o", str(tmp_path / "o.tif"), "--model", str(tiny_model_path),
            "--engine", "torch", "--threads", "1", "--scheduler", cluster.scheduler_address]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"2 worker(s) ({cluster.scheduler_address})" in text
    assert "enhancing" in text and f"{N}/{N}" in text and "frames" in text and "wrote" in text
    ref = enhance_file(inp, tmp_path / "ref.tif", model=tiny_model_path, engine="torch", threads=1)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o.tif"), tifffile.imread(ref.output))


# ------------------------------------------------------------------------------------ a worker dies
def test_a_killed_worker_has_its_blocks_run_again_on_the_other(tmp_path, stack, mf_model, fresh_cluster):
    cluster, client = fresh_cluster
    inp = _tif(tmp_path / "in.tif", stack, "TYX")
    ref = _reference(tmp_path, inp, mf_model)
    thread, box = _run_in_thread(input_path=inp, output_path=tmp_path / "o.zarr", model=mf_model,
                                 engine="torch", threads=1, out_dtype="float32", block=BLOCK,
                                 scheduler=cluster.scheduler_address)
    killed = _kill_a_busy_worker(client, thread)
    thread.join(180)
    assert not thread.is_alive()
    assert "error" not in box, box.get("error")
    assert _lost_blocks(client, killed)  # the kill landed mid-block: that block had to run again
    out = zarr.open_array(str(tmp_path / "o.zarr"), mode="r")
    assert out.attrs["live_pssr"]["state"] == "complete"
    np.testing.assert_array_equal(out[:], ref)


@pytest.mark.parametrize("fresh_cluster", [{"distributed.scheduler.allowed-failures": 0}], indirect=True)
def test_a_killed_worker_without_retries_fails_clearly_and_leaves_no_output(tmp_path, stack, tiny_model_path,
                                                                          fresh_cluster):
    cluster, client = fresh_cluster
    inp = _tif(tmp_path / "in.tif", stack, "TYX")
    out = tmp_path / "o.tif"
    thread, box = _run_in_thread(input_path=inp, output_path=out, model=tiny_model_path, engine="torch",
                                 threads=1, block=BLOCK, scheduler=cluster.scheduler_address)
    killed = _kill_a_busy_worker(client, thread)
    thread.join(180)
    assert not thread.is_alive()
    lost = _lost_blocks(client, killed)
    assert lost
    err = box.get("error")
    assert isinstance(err, LivePSSRError) and not isinstance(err, ConfigError), box
    assert "workers died while enhancing frames" in err.message and "not complete" in err.message
    assert "logs" in err.hint and "again" in err.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]  # no tif, not even its temporary


# ------------------------------------------------------------------------------------ errors
def test_a_workers_own_error_reaches_the_user(tmp_path, tiny_model_path, shared_cluster):
    """A damaged chunk that only a worker reads (the sampled frames skip it): the worker's
    LivePSSRError, message and fix, is what the user gets; the output is removed."""
    cluster, _ = shared_cluster
    data = np.stack(camera_frames(20, (32, 32), seed=2))
    bad = tmp_path / "bad.zarr"
    zarr.create_array(str(bad), data=data, chunks=(1, 32, 32), dimension_names=("t", "y", "x"))
    (bad / "c" / "9" / "0" / "0").write_bytes(b"this is not a zstd frame")  # frame 9 is not sampled
    with pytest.raises(FrameFormatError, match=r"cannot read frames 8\.\.9: the file is damaged") as info:
        enhance_file(bad, tmp_path / "o.tif", model=tiny_model_path, engine="torch", threads=1, block=2,
                     scheduler=cluster.scheduler_address)
    assert "copy the file again" in info.value.hint and str(bad) in info.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zarr"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nothing_answers_at_is_a_clear_error_before_any_output(tmp_path, stack, tiny_model_path):
    inp = _tif(tmp_path / "in.tif", stack, "TYX")
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(ConfigError, match="no dask scheduler answers at") as info:
        enhance_file(inp, tmp_path / "o.tif", model=tiny_model_path, engine="torch", scheduler=address,
                     connect_timeout_s=1)
    assert address in info.value.message and "waited 1 s" in info.value.message
    assert "dask scheduler" in info.value.hint and "docs/dask.md" in info.value.hint
    assert "--scheduler threads" in info.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_a_run_store_output_is_refused_for_a_cluster_before_connecting(tmp_path, stack, tiny_model_path):
    inp = _tif(tmp_path / "in.tif", stack, "TYX")
    with pytest.raises(ConfigError, match="written by one process"):
        enhance_file(inp, tmp_path / "o.ome.zarr", model=tiny_model_path, engine="torch",
                     scheduler=f"tcp://127.0.0.1:{_free_port()}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


# ------------------------------------------------------------------------- the workers' allocator
def _tuned_on_worker() -> tuple[bool | None, str | None]:
    from live_pssr.offline import work

    return work._allocator_tuned, os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_cluster_workers_get_the_mmap_threshold_back(tmp_path, stack, tiny_model_path, shared_cluster):
    """A nanny starts workers with MALLOC_TRIM_THRESHOLD_ set; their first block raises the mmap
    threshold it froze (and the in-process run, without that variable, is left alone)."""
    cluster, client = shared_cluster
    inp = _tif(tmp_path / "in.tif", stack, "TYX")
    enhance_file(inp, tmp_path / "out.zarr", model=tiny_model_path, engine="torch", block=BLOCK,
                 scheduler=cluster.scheduler_address)
    states = client.run(_tuned_on_worker)
    assert states and all(env is not None for _, env in states.values())  # dask's own setting
    assert any(tuned is True for tuned, _ in states.values())  # every worker that ran a block
    assert all(tuned in (True, None) for tuned, _ in states.values())


ALLOC_PROBE = """
import resource
import torch
from live_pssr.offline.work import tune_worker_allocator

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(100):
        a = torch.ones(6 << 18)  # 6 MB, as a 256x256x24 activation
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

untuned = faults()
tuned = tune_worker_allocator()
print(untuned, faults(), tuned)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_raised_mmap_threshold_stops_page_faults_on_every_buffer(tmp_path):
    """The real effect, in a fresh process as a nanny starts it: with MALLOC_TRIM_THRESHOLD_ set,
    every 6 MB buffer faults its pages in again; after tuning they are reused from the heap."""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", ALLOC_PROBE], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    untuned, tuned_faults, tuned = int(out[0]), int(out[1]), out[2]
    assert tuned == "True"
    assert untuned > 20 * 1000, untuned  # ~1500 page faults per buffer
    assert tuned_faults < untuned / 5, (untuned, tuned_faults)  # mostly the first buffer's pages
    # without the nanny's variable (or with the user's own mmap threshold) nothing is changed
    for extra in ({}, {"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "1048576"}):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | extra
        out = subprocess.run([sys.executable, "-c", ALLOC_PROBE], env=env, capture_output=True,
                             text=True, timeout=120, check=True).stdout.split()
        assert out[2] == "False"
