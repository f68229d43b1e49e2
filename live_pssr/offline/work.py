"""What one worker does: enhance a block of consecutive frames and write them to the output.

An :class:`EnhanceJob` is the picklable description of a whole offline run (input view, output
target, model file, resolved engine, tiling, intensity mapping, threads). :func:`enhance_block`
is the unit of work for every scheduler (the in-process loop, dask threads/processes, a
dask.distributed cluster): it reads frames ``start:stop`` (plus the neighbours a multi-frame model
needs), enhances each and writes them (with ``checks``: also checks each, :mod:`.checks`, and
writes its maps), and returns a :class:`BlockDone` (frames done, their check records). Workers cache
their model, engine and file handles per thread (:func:`worker_resources`), so the model is
loaded once per worker, not per block.

A dask nanny starts its worker processes with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``). Setting it switches off glibc's dynamic mmap threshold,
so every buffer above 128 KiB (each activation of the network: 6 MB at 256² and width 24) is a
fresh ``mmap`` whose pages fault in on every call (and a heap top above 64 KiB is handed back
at once). :func:`tune_worker_allocator` (once per worker process, when that variable is set and
``MALLOC_MMAP_THRESHOLD_`` is not) raises the mmap threshold to 32 MiB, glibc's largest, and the
trim threshold to 128 MiB, so such buffers are reused from the heap (a worker keeps at most
128 MiB of freed memory for that).

Per frame, enhancement is :class:`~live_pssr.enhancer.Enhancer`'s: percentile normalisation of
every input frame, the engine (wrapped in :class:`~live_pssr.engines.AutoTileEngine` for frames larger
than the tile), and mapping back with the *target* frame's range. Multi-frame models get the
window of ``in_frames`` frames ending at (``target_frame="newest"``) or centred on (``"centre"``)
each frame, the stack's edges padded by repeating the first/last frame.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..stacks import InputStack, check_frame_values
from .checks import FrameCheck, FrameChecks, check_frame
from .outputs import StoreMapTarget


@dataclass(frozen=True)
class IntensityMap:
    """How enhanced float32 values (in the input's units) become the output dtype.

    ``stored = (value - offset) * gain``, rounded and clipped for integer dtypes; the identity
    (offset 0, gain 1) keeps the input's units.
    """

    dtype: np.dtype
    offset: float = 0.0
    gain: float = 1.0

    @property
    def identity(self) -> bool:
        return self.offset == 0.0 and self.gain == 1.0

    def apply(self, values: np.ndarray) -> np.ndarray:
        from ..normalize import denormalize

        if self.identity:
            return values.astype(self.dtype, copy=False)
        # denormalize(x, lo, hi) = x * (hi - lo) + lo, rounded/clipped to the dtype
        lo = -self.offset * self.gain
        return denormalize(values, lo, lo + self.gain, self.dtype)

    def describe(self) -> dict[str, Any]:
        return {"dtype": np.dtype(self.dtype).name, "offset": self.offset, "gain": self.gain,
                "meaning": "value = stored / gain + offset"}


def window_indices(t: int, n: int, in_frames: int, target_frame: str) -> tuple[list[int], int]:
    """Frames of the window whose output belongs to frame ``t`` (edges repeat), and ``t``'s position."""
    if target_frame == "newest":
        first, ref = t - in_frames + 1, in_frames - 1
    elif target_frame == "centre":
        first, ref = t - in_frames // 2, in_frames // 2
    else:
        raise ConfigError(f"unknown target_frame {target_frame!r} in the model spec",
                          "the model file is from a newer live-pssr; upgrade")
    return [min(max(first + i, 0), n - 1) for i in range(in_frames)], ref


@dataclass
class EnhanceJob:
    """A whole offline run, as every worker needs it (picklable)."""

    source: InputStack
    target: Any
    model_path: Path
    engine: str
    device: str | None
    intensity: IntensityMap
    tile: int | None = None
    overlap: int = 0
    align: int = 4
    threads: int | None = None
    #: per-frame checks (consistency, TTA) and the targets of their maps (see :mod:`.checks`)
    checks: FrameChecks | None = None
    map_target: Any = None
    tta_target: Any = None
    token: str = field(default_factory=lambda: os.urandom(6).hex())

    def tiling(self) -> bool:
        return self.tile is not None and max(self.source.frame_shape) > self.tile


# ----------------------------------------------------------------------------- worker resources
_cache: dict[tuple[str, int], WorkerResources] = {}
_cache_lock = threading.Lock()


@dataclass
class WorkerResources:
    enhancer: Any
    source: InputStack
    target: Any
    map_target: Any = None
    tta_target: Any = None


def _resources(job: EnhanceJob, enhancer: Any) -> WorkerResources:
    def clone(target: Any) -> Any:
        return None if target is None else target.clone()

    return WorkerResources(enhancer, job.source.clone(), job.target.clone(), clone(job.map_target),
                           clone(job.tta_target))


def build_enhancer(job: EnhanceJob, model: Any = None, engine: Any = None) -> Any:
    """The per-worker :class:`Enhancer` of ``job`` (``model``/``engine`` reused when given)."""
    from ..engines import AutoTileEngine
    from ..enhancer import Enhancer
    from ..modelio import load_model

    model = load_model(job.model_path) if model is None else model
    if engine is None:
        engine = make_job_engine(model, job)
    if job.tiling() and not isinstance(engine, AutoTileEngine):
        engine = AutoTileEngine(engine, model, tile=job.tile, overlap=job.overlap)
    out = None if job.intensity.identity else np.float32
    return Enhancer(model, engine=engine, out_dtype=out if out is not None else job.intensity.dtype)


def engine_shape(job: EnhanceJob) -> tuple[int, int]:
    """The frame shape the engine is built for (the tile when tiling)."""
    h, w = job.source.frame_shape
    return (min(h, job.tile), min(w, job.tile)) if job.tiling() else (h, w)  # type: ignore[type-var]


def make_job_engine(model: Any, job: EnhanceJob) -> Any:
    """Build (and for named engines: gate) the engine ``job.engine`` on ``job.device``."""
    try:
        from ..engines import select_engine
    except ImportError:  # engine selection not part of this build: build by name
        from ..engines import make_engine

        return make_engine(job.engine, model, device=job.device or "cpu")
    return select_engine(model, engine_shape(job), name=job.engine, device=job.device)


#: glibc's mallopt parameters: the mmap threshold (at most HEAP_MAX_SIZE / 2 on 64-bit Linux)
#: and how much free memory at the heap's top is kept rather than returned to the system
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX, WORKER_TRIM_THRESHOLD = 32 << 20, 128 << 20
_allocator_tuned: bool | None = None


def tune_worker_allocator() -> bool:
    """Raise glibc's mmap threshold where a dask nanny's ``MALLOC_TRIM_THRESHOLD_`` froze it
    (module docstring); True when it was raised (once per process; a no-op elsewhere)."""
    global _allocator_tuned
    if _allocator_tuned is None:
        _allocator_tuned = False
        if "MALLOC_TRIM_THRESHOLD_" in os.environ and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            try:
                import ctypes

                libc = ctypes.CDLL(None)
                _allocator_tuned = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
                                        and libc.mallopt(M_TRIM_THRESHOLD, WORKER_TRIM_THRESHOLD))
            except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
                pass
    return _allocator_tuned


def worker_resources(job: EnhanceJob) -> WorkerResources:
    """This thread's enhancer, input handle and output handle for ``job`` (built once per thread)."""
    key = (job.token, threading.get_ident())
    res = _cache.get(key)
    if res is None:
        tune_worker_allocator()
        _quiet_zarr_leftovers()
        if job.threads is not None:  # dask process workers start with torch's default
            import torch

            if torch.get_num_threads() != job.threads:
                torch.set_num_threads(job.threads)
        res = _resources(job, build_enhancer(job))
        with _cache_lock:
            for old in [k for k in _cache if k[1] == key[1]]:  # one job per thread at a time
                _drop(old)
            _cache[key] = res
    return res


def _quiet_zarr_leftovers() -> None:
    """In a worker process: no asyncio noise from zarr writes cut short by the job's failure.

    zarr-python writes a frame's chunks as asyncio tasks; when one fails (a full disk) the error
    reaches the job (and the user, as a clear error), but its sibling tasks are destroyed when
    the worker process ends, and asyncio prints each as "Future exception was never retrieved"
    with a traceback. Only worker processes are quieted; the user's own process is left alone.
    """
    import logging
    import multiprocessing

    if multiprocessing.current_process().name != "MainProcess":
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def adopt_resources(job: EnhanceJob, enhancer: Any) -> None:
    """Use ``enhancer`` (already built in this thread) for ``job`` in this thread."""
    with _cache_lock:
        _cache[(job.token, threading.get_ident())] = _resources(job, enhancer)


def release_resources(job: EnhanceJob) -> None:
    """Drop every thread's cached resources of ``job`` in this process (closing file handles)."""
    release_job(job.token)


def release_job(token: str) -> int:
    """Drop every thread's cached resources of the job ``token`` in this process; how many there were.

    Run on every worker of a cluster at the end of a job (``Client.run``), which cannot be
    done with the job itself: the job object stays on one worker.
    """
    with _cache_lock:
        keys = [k for k in _cache if k[0] == token]
        for key in keys:
            _drop(key)
    return len(keys)


def _drop(key: tuple[str, int]) -> None:
    res = _cache.pop(key)
    res.source.close()
    for target in (res.target, res.map_target, res.tta_target):
        if target is not None and not getattr(target, "shared", False):
            target.close()


@contextmanager
def torch_threads(n: int | None):
    """Set torch's intra-op threads for a block of code (restored after)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- the unit of work
def enhance_frames(enhancer: Any, frames: np.ndarray, first: int, n_total: int, start: int, stop: int,
                   intensity: IntensityMap, path: Path | str,
                   checks: FrameChecks | None = None) -> tuple[np.ndarray, list[FrameCheck]]:
    """Enhance frames ``start:stop`` of a stack given ``frames`` = stack[first:first+len(frames)].

    Returns the enhanced frames in the output's dtype and, with ``checks``, each frame's
    :class:`~live_pssr.offline.checks.FrameCheck` (made on the enhancer's float values).
    """
    spec = enhancer.model.spec
    checked: set[int] = set()
    out, results = [], []
    for t in range(start, stop):
        idx, ref = window_indices(t, n_total, spec.in_frames, spec.target_frame)
        for i in idx:
            if i not in checked:
                check_frame_values(frames[i - first], path, i)
                checked.add(i)
        window = [frames[i - first] for i in idx]
        enhanced = enhance_window(enhancer, window, ref)
        if checks is not None and checks.any:
            results.append(check_frame(checks, t, frames[t - first], enhanced, spec.upscale,
                                       lambda w, ref=ref: enhance_window(enhancer, w, ref), window))
        out.append(intensity.apply(enhanced))
    return np.stack(out), results


def enhance_window(enhancer: Any, window: list[np.ndarray], ref: int) -> np.ndarray:
    """Enhance a full window, mapping the output back with frame ``ref``'s intensity range
    (the frame the output belongs to: the newest, or the centre for centre-target models)."""
    return enhancer.enhance_window(window, ref=ref)


def block_range(spec: Any, n: int, start: int, stop: int) -> tuple[int, int]:
    """Input frames needed to enhance ``start:stop`` of ``n`` with a ``spec`` model (clipped)."""
    lo = window_indices(start, n, spec.in_frames, spec.target_frame)[0][0]
    hi = window_indices(stop - 1, n, spec.in_frames, spec.target_frame)[0][-1]
    return lo, hi + 1


@dataclass
class BlockDone:
    """What one block of work reports back: its frames and their check records (small, picklable)."""

    start: int
    frames: int
    records: list[dict[str, Any]] = field(default_factory=list)


def enhance_block(job: EnhanceJob, start: int, stop: int) -> BlockDone:
    """Read, enhance (and check) frames ``start:stop`` of ``job`` and write them (and their maps)."""
    res = worker_resources(job)
    first, last = block_range(res.enhancer.model.spec, job.source.n_frames, start, stop)
    frames = res.source.read(first, last)
    out, checks = enhance_frames(res.enhancer, frames, first, job.source.n_frames, start, stop,
                                 job.intensity, job.source.path, job.checks)
    res.target.write(start, out, frames[start - first:stop - first])
    if isinstance(res.map_target, StoreMapTarget):  # a run store's image 2 and its record columns
        res.map_target.write_checks(start, checks)
    elif res.map_target is not None:
        res.map_target.write(start, np.stack([c.signed_map for c in checks]))
    if res.tta_target is not None:
        res.tta_target.write(start, np.stack([c.spread for c in checks]))
    return BlockDone(start, stop - start, [c.record for c in checks])


__all__ = [
    "BlockDone",
    "EnhanceJob",
    "IntensityMap",
    "adopt_resources",
    "block_range",
    "build_enhancer",
    "enhance_block",
    "enhance_frames",
    "enhance_window",
    "release_job",
    "release_resources",
    "torch_threads",
    "tune_worker_allocator",
    "window_indices",
    "worker_resources",
]
