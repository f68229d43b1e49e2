"""Offline enhancement of recorded data: a file in, the enhanced file out (or arrays in memory).

:func:`enhance_file` is ``live-pssr enhance``: it opens the input lazily
(:func:`~live_pssr.stacks.open_input`), checks the output path, loads the model, decides
the tiling (frames larger than ``tile`` go through :class:`~live_pssr.engines.AutoTileEngine`; the
default overlap is the exact one, twice the model's measured receptive field), picks the output
dtype mapping, builds the engine once (``auto`` is resolved here, so every worker runs the same
engine), creates the output with its final shape and runs the blocks
(:mod:`~live_pssr.offline.schedule`). :func:`enhance_array` does the same on a numpy stack in
memory (for evaluation and notebooks). With ``consistency`` / ``tta`` every frame is also checked
(:mod:`~live_pssr.offline.checks`): the maps and a JSON report go beside the output (a run
store keeps its consistency maps inside, as image ``2``, like a live run), completed after it
(the report last), removed or left marked partial with it when the run fails.

Output dtype (``out_dtype``, default: the input's if it is uint8, uint16 or float32, else
float32): float32 keeps the enhanced values in the input's units. An integer output keeps them
too when the input is integer-valued and fits its range; otherwise (float or out-of-range input)
values are rescaled affinely so the input's range (sampled on up to 16 frames) plus 1/8 headroom
on each side spans the integer range; the mapping is recorded with the data
(``value = stored / gain + offset``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, LivePSSRError
from ..modelio import DEFAULT_MODEL, LoadedModel, load_model
from ..stacks import InputStack, check_frame_values, open_input, path_kind
from .checks import REPORT_FORMAT, REPORT_VERSION, FrameChecks, summarize
from .outputs import OutputSpec, ReportTarget, check_output_path, create_output, sidecar_path
from .schedule import (
    CONNECT_TIMEOUT_S,
    check_scheduler,
    check_shared_target,
    connect,
    dashboard,
    is_cluster,
    plan_blocks,
    run_dask,
    run_in_process,
)
from .work import BlockDone, EnhanceJob, IntensityMap, build_enhancer, make_job_engine

DEFAULT_TILE = 1024
DEFAULT_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
HEADROOM = 1 / 8

#: progress callback: (frames done so far, total frames)
ProgressFn = Callable[[int, int], None]


@dataclass
class EnhanceResult:
    """What :func:`enhance_file` wrote."""

    output: Path
    kind: str
    frames: int
    shape: tuple[int, ...]
    dtype: str
    pixel_size_um: float | None
    model: str
    engine: str
    tile: int | None
    overlap: int | None
    workers: int
    scheduler: str
    seconds: float
    #: with checks: ``report``, ``consistency_maps``, ``tta_maps`` (paths or None) and ``summary``
    checks: dict[str, Any] | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        checks = None if self.checks is None else {
            k: (str(v) if isinstance(v, Path) else v) for k, v in self.checks.items()}
        return {**asdict(self), "output": str(self.output), "fps": self.fps, "checks": checks}


# ------------------------------------------------------------------------------------ decisions
def exact_overlap(model: LoadedModel) -> tuple[int, int]:
    """``(overlap, align)`` that make tiling exact for ``model`` (the engine layer's, cached per model)."""
    from ..engines.tiled import model_overlap

    return model_overlap(model)


def tiling_for(model: LoadedModel, frame_shape: tuple[int, int], tile: int | None,
               overlap: int | None) -> tuple[int | None, int, int]:
    """``(tile or None, overlap, align)`` for frames of ``frame_shape``; validates the plan."""
    from ..tiling import net_alignment, plan_tiles

    if not tile or max(frame_shape) <= tile:
        return None, 0, net_alignment(model.net)
    if overlap is None:
        overlap, align = exact_overlap(model)
    else:
        align = net_alignment(model.net)
    try:
        plan_tiles(frame_shape, tile, overlap, model.spec.upscale, align)
    except ValueError as err:
        raise ConfigError(f"tiling {frame_shape} frames: {err}",
                          f"use a larger --tile (at least {overlap + align}) or a smaller --overlap") from err
    return tile, overlap, align


def sample_frames(src: Any, n: int = 16) -> list[np.ndarray]:
    """Up to ``n`` frames evenly spread over the stack (checked for NaN/Inf and constant)."""
    idx = sorted({int(i) for i in np.linspace(0, src.n_frames - 1, min(n, src.n_frames))})
    frames = [src.read(i, i + 1)[0] for i in idx]
    for i, f in zip(idx, frames, strict=True):
        check_frame_values(f, src.path, i)
    return frames


def choose_intensity(src_dtype: np.dtype, samples: list[np.ndarray], out_dtype: Any = None) -> IntensityMap:
    """The output dtype and value mapping (see the module docstring)."""
    src_dtype = np.dtype(src_dtype)
    if out_dtype is None:
        dtype = src_dtype if src_dtype in DEFAULT_DTYPES else np.dtype(np.float32)
    else:
        try:
            dtype = np.dtype(out_dtype)
        except TypeError as err:
            raise ConfigError(f"unknown output dtype {out_dtype!r}", "use float32 or uint16") from err
        if dtype not in DEFAULT_DTYPES:
            raise ConfigError(f"output dtype {dtype} is not supported", "use float32, uint16 or uint8")
    if dtype.kind == "f":
        return IntensityMap(dtype)
    info = np.iinfo(dtype)
    if src_dtype.kind in "ui" and np.iinfo(src_dtype).min >= info.min and np.iinfo(src_dtype).max <= info.max:
        return IntensityMap(dtype)
    lo = float(min(f.min() for f in samples))
    hi = float(max(f.max() for f in samples))
    integral = all(np.array_equal(f, np.round(f)) for f in samples)
    if integral and lo >= info.min and hi <= info.max:
        return IntensityMap(dtype)
    span = max(hi - lo, 1e-12)
    offset = lo - HEADROOM * span
    gain = (float(info.max) - float(info.min)) / ((1 + 2 * HEADROOM) * span)
    return IntensityMap(dtype, offset, gain)  # unsigned dtypes only: stored 0 = offset


def check_run_store_dtype(src: Any, dtype: np.dtype, out_dtype: Any) -> None:
    """A run store keeps raw and enhanced frames in one dtype: refuse a mismatch, saying why."""
    raw, enh = np.dtype(src.dtype), np.dtype(dtype)
    if raw == enh:
        return
    if out_dtype is not None:
        raise ConfigError(
            f"a run store (.ome.zarr) keeps raw and enhanced frames in one dtype, but the input "
            f"{src.path} is {raw.name} and --out-dtype asked for {enh.name}",
            f"drop --out-dtype (the enhanced frames are then {raw.name}), or write a .tif/.zarr output")
    raise ConfigError(
        f"a run store (.ome.zarr) keeps raw and enhanced frames in one dtype, but the input {src.path} "
        f"is {raw.name}, which is enhanced to {enh.name} (live-pssr writes uint8, uint16 or float32)",
        "write a .tif or .zarr output instead, or convert the input to uint16 (or float32) first")


def describe_engine(engine: Any) -> str:
    return f"{engine.name}:{engine.device}:{engine.precision}"


def _engine_name(engine: Any) -> str:
    """The name a worker rebuilds ``engine`` from: ``base[:precision]``."""
    return f"{str(engine.name).split('+')[0]}:{engine.precision}"


# ------------------------------------------------------------------------------------ the runs
def enhance_file(
    input_path: str | Path,
    output_path: str | Path,
    model: str | Path | LoadedModel = DEFAULT_MODEL,
    engine: str = "auto",
    device: str | None = None,
    tile: int | None = DEFAULT_TILE,
    overlap: int | None = None,
    out_dtype: str | None = None,
    channel: int | None = None,
    workers: int = 1,
    scheduler: str = "threads",
    overwrite: bool = False,
    threads: int | None = None,
    block: int | None = None,
    progress: ProgressFn | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    consistency: bool = False,
    tta: bool = False,
    camera: str | Path | None = None,
    psf_sigma_px: float | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> EnhanceResult:
    """Enhance a recorded tif / zarr / OME-Zarr into ``output_path``.

    Parameters
    ----------
    input_path, output_path
        Input file; output ``.tif``/``.tiff`` (ImageJ), ``.ome.tif`` (OME-TIFF), ``.zarr``
        (zarr array, or an OME-Zarr image for OME-Zarr input) or ``.ome.zarr`` (a run store with
        raw + enhanced).
    model
        Model name, ``.safetensors`` path or a loaded model.
    engine, device
        Engine name (``auto``, ``torch``, ``onnxruntime``, ...) and device (default: the engine's).
    tile, overlap
        Frames larger than ``tile`` pixels are tiled; ``overlap`` defaults to the exact one.
        ``tile=None`` never tiles.
    out_dtype
        ``float32``, ``uint16`` or ``uint8`` (default: see the module docstring).
    channel
        The channel to enhance in multi-channel data.
    workers, scheduler
        ``workers=1``: in this thread; more: dask with ``threads``/``processes``. A
        dask.distributed address (``tcp://host:8786``) runs on that cluster's workers, whatever
        ``workers`` says (:mod:`live_pssr.offline.schedule`, ``docs/dask.md``).
    threads
        Torch threads per worker (default: cores / workers; on a cluster 1 per worker process).
        The same ``threads`` gives bit-identical output on every scheduler.
    block
        Frames per task (default: 4, or the zarr input's frame chunk up to 32).
    progress
        Called with ``(frames done, total)`` as blocks finish.
    on_start
        Called once with a description of the run (model, engine, tiling, output) before work.
    consistency, tta
        Check every frame (:mod:`live_pssr.offline.checks`): the data-consistency map and/or the
        test-time-augmentation spread, written beside the output with a JSON report.
    camera, psf_sigma_px
        For ``consistency``: a calibration YAML from ``live-pssr calibrate`` (default: the noise
        is estimated from each frame) and the forward blur in enhanced pixels (default: from the
        model's training provenance).
    connect_timeout_s
        With a cluster: how long to wait for its scheduler to answer (ConfigError after that).
    """
    import os

    t0 = time.perf_counter()
    output_path = Path(output_path)
    out_kind = path_kind(output_path)
    cluster = is_cluster(scheduler)
    src = open_input(input_path, channel)
    check_output_path(output_path, overwrite, (src.path,))  # before any work; claimed at creation
    checks = FrameChecks(consistency, tta, psf_sigma_px, camera=None if camera is None else str(camera))
    sidecars = _Sidecars.plan(output_path, out_kind, checks, overwrite, src.path)
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}", "use --workers 1 to run in-process")
    if workers > 1 or cluster:
        check_scheduler(scheduler)
        check_shared_target(out_kind, workers, scheduler)
    client = connect(scheduler, connect_timeout_s) if cluster else None  # fails fast, before any output
    try:
        if client is not None:
            workers = len(client.nthreads())
        threads = threads or (1 if cluster else max(1, (os.cpu_count() or 1) // workers))
        return _enhance(src, output_path, out_kind, model, engine, device, tile, overlap, out_dtype, channel,
                        workers, scheduler if workers > 1 or cluster else "in-process", client, overwrite,
                        threads, block, progress, on_start, checks, sidecars, t0)
    finally:
        if client is not None:
            client.close()


def _enhance(src: InputStack, output_path: Path, out_kind: str, model: str | Path | LoadedModel, engine: str,
             device: str | None, tile: int | None, overlap: int | None, out_dtype: str | None,
             channel: int | None, workers: int, scheduler: str, client: Any, overwrite: bool, threads: int,
             block: int | None, progress: ProgressFn | None,
             on_start: Callable[[dict[str, Any]], None] | None, checks: FrameChecks, sidecars: _Sidecars,
             t0: float) -> EnhanceResult:
    """:func:`enhance_file` once its arguments are checked (and a cluster's client connected)."""
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    spec = loaded.spec
    samples = sample_frames(src)
    intensity = choose_intensity(src.dtype, samples, out_dtype)
    if out_kind == "ome-zarr":
        check_run_store_dtype(src, intensity.dtype, out_dtype)
    tile_, overlap_, align = tiling_for(loaded, src.frame_shape, tile, overlap)
    checks = checks.resolve(loaded)
    job = EnhanceJob(source=src, target=None, model_path=loaded.path, engine=engine, device=device,
                     intensity=intensity, tile=tile_, overlap=overlap_, align=align, threads=threads,
                     checks=checks if checks.any else None)
    eng = make_job_engine(loaded, job)
    job.engine, job.device = _engine_name(eng), eng.device
    enhancer = build_enhancer(job, loaded, eng)
    s = spec.upscale
    n, h, w = src.shape
    meta = {
        "source": str(src.path), "source_kind": src.kind, "source_axes": src.axes, "channel": channel,
        "model": loaded.model_id, "model_file": loaded.path.name, "upscale": s,
        "in_frames": spec.in_frames, "target_frame": spec.target_frame,
        "engine": enhancer.engine_name, "tile": tile_, "overlap": overlap_ if tile_ else None,
        "intensity": intensity.describe(), "live_pssr_version": _version(),
    }
    if checks.any:
        meta["checks"] = {**checks.settings(), **sidecars.names()}
    out_spec = OutputSpec(
        path=output_path, kind=out_kind, axes=src.axes, shape=(n, h * s, w * s), dtype=intensity.dtype,
        upscale=s, pixel_size_um=src.pixel_size_um / s if src.pixel_size_um else None,
        frame_interval_s=src.frame_interval_s, ome=src.kind == "ome-zarr", frame_axis=src.frame_axis,
        metadata=meta, raw_dtype=src.dtype,
        consistency=sidecars.store_settings(checks, spec.target_frame),
    )
    if on_start is not None:
        on_start({**meta, "input_shape": src.shape, "output": str(output_path),
                  "output_shape": out_spec.shape, "dtype": np.dtype(intensity.dtype).name, "workers": workers,
                  "scheduler": scheduler,
                  "dashboard": dashboard(client) if client is not None else None})
    job.target = create_output(out_spec, overwrite=overwrite, inputs=(src.path,))
    try:
        sidecars.create(job, out_spec, src, meta)
    except BaseException:
        job.target.abort()
        src.close()
        raise
    blocks = plan_blocks(n, block or _default_block(src, spec.in_frames))
    done = 0
    records: list[dict[str, Any]] = []

    def advance(block_done: BlockDone) -> None:
        nonlocal done
        done += block_done.frames
        records.extend(block_done.records)
        if progress is not None:
            progress(done, n)

    try:
        try:
            if scheduler == "in-process":
                run_in_process(job, blocks, advance, enhancer)
            else:
                run_dask(job, blocks, advance, workers, scheduler, client)
        finally:
            src.close()
        if done != n:  # every block reported back, or the run raised: never a silently short output
            raise LivePSSRError(f"only {done} of {n} frames were enhanced; the output is not complete",
                                "run the command again (with --overwrite)")
        seconds = time.perf_counter() - t0
        job.target.finish({"frames": n, "seconds": seconds, "engine": enhancer.engine_name})
    except BaseException:
        job.target.abort()  # tif: temporary file removed; zarr: left marked partial; run store: unfinished
        sidecars.abort(job)
        raise
    check_info = sidecars.finish(job, records, meta) if checks.any else None
    return EnhanceResult(
        output=output_path, kind=out_kind, frames=n,
        shape=(h * s, w * s) if src.axes == "YX" else (n, h * s, w * s),
        dtype=np.dtype(intensity.dtype).name, pixel_size_um=out_spec.pixel_size_um,
        model=loaded.model_id, engine=enhancer.engine_name, tile=tile_, overlap=overlap_ if tile_ else None,
        workers=workers, scheduler=scheduler, seconds=seconds, checks=check_info,
    )


@dataclass
class _Sidecars:
    """The files the checks write beside the output (maps and the JSON report; see :mod:`.checks`).

    A run store output keeps its consistency maps inside, as its image ``2`` (``in_store``), like a
    live run's; its TTA maps and the report still go beside it.
    """

    overwrite: bool
    inputs: tuple[Path, ...]
    maps: tuple[Path, str] | None = None
    tta: tuple[Path, str] | None = None
    report_path: Path | None = None
    report: ReportTarget | None = None
    in_store: Path | None = None

    @classmethod
    def plan(cls, output: Path, out_kind: str, checks: FrameChecks, overwrite: bool,
             source: Path) -> _Sidecars:
        """Name the files and refuse, before any work, paths that may not be written."""
        plan = cls(overwrite, (source,))
        if not checks.any:
            return plan
        if checks.consistency:
            if out_kind == "ome-zarr":
                from ..store.layout import CONSISTENCY

                plan.in_store = output / CONSISTENCY
            else:
                plan.maps = sidecar_path(output, "consistency", out_kind)
        if checks.tta:
            plan.tta = sidecar_path(output, "tta", out_kind)
        plan.report_path = sidecar_path(output, "consistency", "json")[0]
        for path in plan._paths():  # never the output itself: its suffix is replaced by .WHAT.suffix
            check_output_path(path, overwrite, plan.inputs)
        return plan

    def _paths(self) -> list[Path]:
        return [f[0] for f in (self.maps, self.tta) if f is not None] + (
            [self.report_path] if self.report_path is not None else [])

    def names(self) -> dict[str, str]:
        out = {"report": self.report_path.name} if self.report_path is not None else {}
        if self.maps is not None:
            out["consistency_maps"] = self.maps[0].name
        if self.in_store is not None:
            out["consistency_maps"] = f"{self.in_store.parent.name}/{self.in_store.name}"
        if self.tta is not None:
            out["tta_maps"] = self.tta[0].name
        return out

    def store_settings(self, checks: FrameChecks, target_frame: str) -> dict[str, Any] | None:
        """The run store's ``consistency`` settings (as a live run's), or None: no map in the store."""
        if self.in_store is None:
            return None
        return {**checks.settings(), "every": 1, "map": STORE_MAP_MEANING, "target_frame": target_frame}

    def create(self, job: EnhanceJob, out_spec: OutputSpec, src: InputStack, meta: dict[str, Any]) -> None:
        """Create the map outputs (final shape, like the output) and claim the report's path."""
        n, h, w = src.shape
        ome = out_spec.ome or out_spec.kind == "ome-zarr"
        common = {"axes": src.axes, "dtype": np.dtype(np.float32), "frame_interval_s": src.frame_interval_s,
                  "ome": ome, "frame_axis": src.frame_axis}
        try:
            if self.in_store is not None:
                job.map_target = job.target.consistency_maps()
            if self.maps is not None:
                job.map_target = create_output(OutputSpec(
                    path=self.maps[0], kind=self.maps[1], shape=(n, h, w), upscale=1,
                    pixel_size_um=src.pixel_size_um,
                    metadata={**meta, "content": "consistency-map", "meaning": MAP_MEANING}, **common),
                    overwrite=self.overwrite, inputs=self.inputs)
            if self.tta is not None:
                job.tta_target = create_output(OutputSpec(
                    path=self.tta[0], kind=self.tta[1], shape=out_spec.shape, upscale=1,
                    pixel_size_um=out_spec.pixel_size_um,
                    metadata={**meta, "content": "tta-spread", "meaning": TTA_MEANING}, **common),
                    overwrite=self.overwrite, inputs=self.inputs)
            if self.report_path is not None:
                self.report = ReportTarget.create(self.report_path, self.overwrite, self.inputs)
        except BaseException:
            self.abort(job)
            raise

    def finish(self, job: EnhanceJob, records: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
        """The output is complete: complete the maps, then write the report (last: it indexes them)."""
        summary = summarize(records)
        try:
            for target in (job.map_target, job.tta_target):
                if target is not None:
                    target.finish({"frames": len(records), "summary": summary})
            assert self.report is not None and self.report_path is not None
            self.report.finish({  # meta["checks"]: the settings and the files' names
                "live_pssr": {"format": REPORT_FORMAT, "version": REPORT_VERSION, **meta},
                "summary": summary, "frames": sorted(records, key=lambda r: r["frame"]),
            })
        except BaseException as err:
            self.abort(job)
            if isinstance(err, LivePSSRError):
                raise type(err)(f"{err.message} (the enhanced output itself is complete)", err.hint) from err
            raise
        return {"report": self.report_path,
                "consistency_maps": self.maps[0] if self.maps else self.in_store,
                "tta_maps": self.tta[0] if self.tta else None, "summary": summary}

    def abort(self, job: EnhanceJob) -> None:
        for target in (job.map_target, job.tta_target, self.report):
            if target is not None:
                target.abort()


STORE_MAP_MEANING = "signed, noise sigmas: > 0 structure added by the network, < 0 structure removed"
#: what the values of the written maps mean (recorded in their metadata)
MAP_MEANING = ("signed consistency map at the raw frame's size, noise units: > 0 where the enhanced frame "
               "puts light the raw frame does not show (structure added), < 0 where the raw frame holds "
               "light the enhanced frame lacks (structure removed); |value| = error map; NaN: not checked")
TTA_MEANING = ("per-pixel standard deviation of the model's outputs under flips/rotations of its input "
               "(de-augmented), the enhanced frame's value units")


def _default_block(src: InputStack, in_frames: int) -> int:
    chunk = src.chunk_frames if src.kind in ("zarr", "ome-zarr") else 1
    return max(4, in_frames, min(chunk, 32))


def _version() -> str:
    from .. import __version__

    return __version__


class _ArrayStack:
    """An in-memory ``(n, h, w)`` stack with the :class:`InputStack` reading interface."""

    kind, axes = "array", "TYX"

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.path = data, Path("<array>")
        self.shape, self.dtype = data.shape, data.dtype

    n_frames = property(lambda self: self.shape[0])
    frame_shape = property(lambda self: (self.shape[1], self.shape[2]))

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.data[start:stop]

    def clone(self) -> _ArrayStack:
        return self

    def close(self) -> None:
        pass


class _ArrayTarget:
    """Collects enhanced frames in a numpy array."""

    shared = False

    def __init__(self, shape: tuple[int, int, int], dtype: np.dtype) -> None:
        self.data = np.zeros(shape, dtype)

    def write(self, start: int, enhanced: np.ndarray, raw: np.ndarray | None = None) -> None:
        self.data[start:start + len(enhanced)] = enhanced

    def clone(self) -> _ArrayTarget:
        return self

    def close(self, summary: dict[str, Any] | None = None) -> None:
        pass


def enhance_array(
    stack: np.ndarray,
    model: str | Path | LoadedModel = DEFAULT_MODEL,
    engine: Any = "torch",
    tile: int | None = DEFAULT_TILE,
    overlap: int | None = None,
    out_dtype: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> np.ndarray:
    """Enhance a ``(h, w)`` image or ``(n, h, w)`` stack in memory, exactly as :func:`enhance_file`.

    ``engine`` is a name or an already built engine. Returns ``(h*s, w*s)`` or ``(n, h*s, w*s)``.
    """
    data = np.asarray(stack)
    if data.ndim not in (2, 3):
        from ..errors import FrameFormatError

        raise FrameFormatError(f"enhance_array takes a 2-D image or a 3-D stack, got shape {data.shape}",
                               "pass one channel as (h, w) or (frames, h, w)")
    single = data.ndim == 2
    src = _ArrayStack(data[None] if single else data)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    intensity = choose_intensity(src.dtype, sample_frames(src), out_dtype)
    tile_, overlap_, align = tiling_for(loaded, src.frame_shape, tile, overlap)
    s = loaded.spec.upscale
    target = _ArrayTarget((src.n_frames, src.shape[1] * s, src.shape[2] * s), intensity.dtype)
    job = EnhanceJob(source=src, target=target, model_path=loaded.path,  # type: ignore[arg-type]
                     engine=engine if isinstance(engine, str) else "torch", device=device,
                     intensity=intensity, tile=tile_, overlap=overlap_, align=align, threads=threads)
    eng = make_job_engine(loaded, job) if isinstance(engine, str) else engine
    enhancer = build_enhancer(job, loaded, eng)
    run_in_process(job, plan_blocks(src.n_frames, max(4, loaded.spec.in_frames)), lambda done: None, enhancer)
    return target.data[0] if single else target.data


__all__ = ["DEFAULT_TILE", "EnhanceResult", "check_run_store_dtype", "choose_intensity", "enhance_array",
           "enhance_file", "exact_overlap", "tiling_for"]
