"""Running an :class:`~live_pssr.offline.work.EnhanceJob`: in-process, on dask, or on a cluster.

The stack is cut into blocks of consecutive frames; every block is one call of
:func:`~live_pssr.offline.work.enhance_block`, which reads its frames, enhances them and writes
them to the output itself. Blocks are independent (a multi-frame model's block reads the few
neighbouring frames it needs), so:

- ``workers == 1``: a plain loop in this thread, no dask (the engine built for the run is reused);
- ``workers > 1``: one ``dask.delayed`` task per block, run by dask's ``threads`` scheduler
  (default: torch releases the GIL, the model is shared memory-wise per thread) or ``processes``
  scheduler; each worker thread/process builds its model and engine once and keeps them;
- ``scheduler`` = a ``tcp://host:port`` address: the same tasks on a dask.distributed cluster
  (needs the ``distributed`` package and paths every worker can reach; ``docs/dask.md``), whatever
  ``workers`` says (the cluster has its own). :func:`connect` opens the client before any output
  exists: an address that does not answer within ``CONNECT_TIMEOUT_S``, or a scheduler without
  workers, is a :class:`~live_pssr.errors.ConfigError` naming the fix. :func:`run_distributed`
  submits one future per block and feeds ``progress`` from ``as_completed`` (each block's
  :class:`~live_pssr.offline.work.BlockDone` as it arrives; a finished future is released at once,
  so a worker lost later never makes the scheduler recompute a block that is already written).

Failures on a cluster: a worker that dies (killed, out of memory, its batch job ended) loses the
blocks it was running; the scheduler runs them again on the other workers (a block writes fixed
frame positions, so a rerun is harmless) up to ``distributed.scheduler.allowed-failures`` times,
then the block fails with ``KilledWorker``, reported as a :class:`~live_pssr.errors.LivePSSRError`.
A task's own exception reaches the user as raised on the worker. Either way the remaining futures
are cancelled and the caller aborts the output (:mod:`.outputs`: never left looking complete).

Memory stays bounded: the data goes from the input file to the output file inside the task,
which returns only its frame count and the frames' small check records
(:class:`~live_pssr.offline.work.BlockDone`). Torch intra-op threads are set per worker (default:
cores / workers; on a cluster: 1 per worker process, the parallelism being the cluster's workers) so
workers do not oversubscribe the CPU; the in-process loop uses the same setting, which makes every
scheduler compute the same numbers (torch's CPU kernels round differently with different thread
counts: the same ``threads`` gives bit-identical output in-process and on any scheduler).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, LivePSSRError
from .work import (
    BlockDone,
    EnhanceJob,
    adopt_resources,
    enhance_block,
    release_job,
    release_resources,
    torch_threads,
)

LOCAL_SCHEDULERS = ("threads", "processes", "sync")
#: seconds to wait for a dask scheduler to answer, and for its first worker to join
CONNECT_TIMEOUT_S = 10.0
WORKER_WAIT_S = 60.0

#: called with each finished block (in completion order)
Progress = Callable[[BlockDone], None]


def plan_blocks(n_frames: int, block: int) -> list[tuple[int, int]]:
    """``(start, stop)`` blocks of at most ``block`` frames covering ``n_frames``."""
    block = max(1, int(block))
    return [(s, min(s + block, n_frames)) for s in range(0, n_frames, block)]


def is_cluster(scheduler: str) -> bool:
    """Whether ``scheduler`` names a dask.distributed scheduler (not a local one)."""
    return scheduler not in LOCAL_SCHEDULERS


def run_in_process(job: EnhanceJob, blocks: list[tuple[int, int]], progress: Progress,
                   enhancer: Any = None) -> None:
    """Enhance ``blocks`` one after the other in this thread."""
    with torch_threads(job.threads):
        if enhancer is not None:
            adopt_resources(job, enhancer)
        try:
            for start, stop in blocks:
                progress(enhance_block(job, start, stop))
        finally:
            release_resources(job)


def check_shared_target(kind: str, workers: int, scheduler: str) -> None:
    """A run store output (``kind`` ``ome-zarr``) is one object: refuse a scheduler of processes."""
    if kind == "ome-zarr" and (is_cluster(scheduler) or (workers > 1 and scheduler != "threads")):
        raise ConfigError(
            f"a run store output (.ome.zarr) is written by one process; scheduler {scheduler!r} "
            "cannot write it",
            "use --scheduler threads (the default), or write a .zarr/.tif output",
        )


def run_dask(job: EnhanceJob, blocks: list[tuple[int, int]], progress: Progress, workers: int,
             scheduler: str = "threads", client: Any = None) -> None:
    """Enhance ``blocks`` as dask tasks on ``workers`` threads/processes, or on ``client``'s cluster."""
    import dask

    if getattr(job.target, "shared", False):
        check_shared_target("ome-zarr", workers, "cluster" if client is not None else scheduler)
        _write_raw_first(job)
    job_node = dask.delayed(job, traverse=False)
    prefix = f"enhance-{job.token}-"
    tasks = [dask.delayed(enhance_block, pure=False)(job_node, a, b, dask_key_name=f"{prefix}{a}")
             for a, b in blocks]
    if client is not None:
        run_distributed(client, job, dict(zip(tasks, blocks, strict=True)), progress)
        return
    from dask.callbacks import Callback

    class _Progress(Callback):
        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if isinstance(key, str) and key.startswith(prefix):
                progress(result)

    with torch_threads(job.threads), _Progress():
        try:
            dask.compute(*tasks, scheduler=scheduler, num_workers=workers)
        finally:
            release_resources(job)


def _write_raw_first(job: EnhanceJob) -> None:
    """Run stores append raw frames in order: copy them all before the parallel enhancement."""
    src = job.source.clone()
    try:
        for start, stop in plan_blocks(src.n_frames, 16):
            job.target.write_raw(start, src.read(start, stop))
    finally:
        src.close()


def check_scheduler(scheduler: str) -> None:
    """Refuse a scheduler that cannot run here (before any work is done)."""
    if not is_cluster(scheduler):
        return
    if "://" not in scheduler and ":" not in scheduler:
        raise ConfigError(f"unknown scheduler {scheduler!r}",
                          "use threads, processes, or a dask.distributed address like tcp://host:8786")
    try:
        import distributed  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"--scheduler {scheduler} needs dask.distributed, which is not installed",
            "pip install distributed, or use --scheduler threads / processes on this machine",
        ) from err


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S, worker_wait_s: float = WORKER_WAIT_S) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` with at least one worker.

    Raises :class:`ConfigError` naming the fix when nothing answers within ``timeout_s``, or no
    worker joins within ``worker_wait_s``. The caller closes the client.
    """
    check_scheduler(address)
    from distributed import Client

    try:
        client = Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise ConfigError(
            f"no dask scheduler answers at {address} (waited {timeout_s:g} s: {err})",
            "start one there (`dask scheduler`, then `dask worker ADDRESS` on each machine, or a "
            "dask-jobqueue cluster: see docs/dask.md) and pass the address it prints, or run on this "
            "machine with --scheduler threads / processes",
        ) from err
    try:
        client.wait_for_workers(1, timeout=worker_wait_s)
    except (TimeoutError, OSError) as err:
        client.close()
        raise ConfigError(
            f"the dask scheduler at {address} has no workers (none joined within {worker_wait_s:g} s)",
            "start workers for it (`dask worker ADDRESS`, or cluster.scale(N) with dask-jobqueue and "
            "wait until the batch jobs run), then run the command again",
        ) from err
    return client


def dashboard(client: Any) -> str | None:
    """The cluster's dashboard address (None when its scheduler runs without one)."""
    try:
        return client.dashboard_link
    except (AttributeError, KeyError):
        return None


def run_distributed(client: Any, job: EnhanceJob, tasks: dict[Any, tuple[int, int]],
                    progress: Progress) -> None:
    """Run ``tasks`` (dask.delayed -> its block of frames) on ``client``'s cluster, calling
    ``progress`` as each block arrives.

    A worker's exception is re-raised as it was raised there; ``KilledWorker`` (a block whose
    workers all died) and a lost scheduler become a :class:`LivePSSRError`. The futures not done
    are cancelled before this returns, and every worker drops the job's cached resources.
    """
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    spans = {task.key: block for task, block in tasks.items()}

    def frames(key: Any) -> str:
        a, b = spans.get(key, (None, None))
        return str(key) if a is None else f"{a}-{b - 1}"

    pending = as_completed(client.compute(list(tasks)), loop=client.loop, with_results=True)  # only refs
    try:
        for future, result in pending:
            if not isinstance(result, BlockDone):  # cancelled: the scheduler went away
                raise LivePSSRError(
                    f"the dask job was cancelled before frames {frames(future.key)} were enhanced "
                    f"({result!r}); the output is not complete",
                    "check that the scheduler is still running, then run the command again "
                    "(with --overwrite)")
            progress(result)
    except KilledWorker as err:
        raise LivePSSRError(
            f"dask workers died while enhancing frames {frames(err.task)} ({err.allowed_failures + 1} "
            "attempt(s), distributed.scheduler.allowed-failures); the output is not complete",
            "check the workers' logs (memory limit, the batch job's time limit, a killed process), "
            "then run the command again (with --overwrite)") from err
    finally:
        left = list(pending.futures)
        pending.clear()
        if left:
            client.cancel(left)
        try:
            client.run(release_job, job.token, on_error="ignore")  # close the workers' file handles
        except Exception:  # noqa: BLE001 - the scheduler is gone: so are its workers' handles
            pass


__all__ = ["CONNECT_TIMEOUT_S", "LOCAL_SCHEDULERS", "WORKER_WAIT_S", "check_scheduler", "check_shared_target",
           "connect", "dashboard", "is_cluster", "plan_blocks", "run_dask", "run_distributed",
           "run_in_process"]
