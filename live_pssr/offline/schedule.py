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
  (needs the ``distributed`` package and paths every worker can reach).

Memory stays bounded: the data goes from the input file to the output file inside the task,
which returns only its frame count and the frames' small check records
(:class:`~live_pssr.offline.work.BlockDone`). Torch intra-op threads are set per worker (default:
cores / workers) so workers do not oversubscribe the CPU; the in-process loop uses the same setting, which
makes every scheduler compute the same numbers (torch's CPU kernels round differently with
different thread counts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .work import BlockDone, EnhanceJob, adopt_resources, enhance_block, release_resources, torch_threads

LOCAL_SCHEDULERS = ("threads", "processes", "sync")

#: called with each finished block (in completion order)
Progress = Callable[[BlockDone], None]


def plan_blocks(n_frames: int, block: int) -> list[tuple[int, int]]:
    """``(start, stop)`` blocks of at most ``block`` frames covering ``n_frames``."""
    block = max(1, int(block))
    return [(s, min(s + block, n_frames)) for s in range(0, n_frames, block)]


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


def run_dask(job: EnhanceJob, blocks: list[tuple[int, int]], progress: Progress, workers: int,
             scheduler: str = "threads") -> None:
    """Enhance ``blocks`` as dask tasks on ``workers`` threads/processes or a cluster at ``scheduler``."""
    import dask

    local = scheduler in LOCAL_SCHEDULERS
    if getattr(job.target, "shared", False):
        if scheduler != "threads":
            raise ConfigError(
                f"a run store output (.ome.zarr) is written by one process; scheduler {scheduler!r} "
                "cannot write it",
                "use --scheduler threads (the default), or write a .zarr/.tif output",
            )
        _write_raw_first(job)
    job_node = dask.delayed(job, traverse=False)
    prefix = f"enhance-{job.token}-"
    tasks = [dask.delayed(enhance_block, pure=False)(job_node, a, b, dask_key_name=f"{prefix}{a}")
             for a, b in blocks]
    if not local:
        _run_distributed(tasks, scheduler, progress)
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
    if scheduler in LOCAL_SCHEDULERS:
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


def _run_distributed(tasks: list[Any], address: str, progress: Progress) -> None:
    check_scheduler(address)
    from distributed import Client, as_completed

    with Client(address) as client:
        futures = client.compute(tasks)
        for fut in as_completed(futures):
            progress(fut.result())


__all__ = ["LOCAL_SCHEDULERS", "check_scheduler", "plan_blocks", "run_dask", "run_in_process"]
