"""``live-pssr bench hook``: what live-pssr's Micro-Manager hook costs the acquisition.

For each frame size (512² and 2048² by default) a real MMCore (pymmcore-plus unicore) runs the
simulated camera: 8 pre-rendered frames of the simulated microscope cycled (so rendering is not
what is measured), one frame per exposure time like a real camera (``--timing fast``: as fast as
the core can copy). Each repeat acquires ``N`` frames twice, interleaved:

* ``baseline``: pycromanager's ``Acquisition`` (Python backend, frames kept by pycromanager in
  RAM) with no ``image_process_fn`` -- or, with ``--backend mda``, ``core.mda.run`` with no
  listener;
* ``hook``: the same with ``LiveSession.pycromanager_hook`` (or ``session.connect(core)``):
  every frame copied into the live pipeline, written to a run store and enhanced (preview policy,
  the model built before the acquisition starts; the backlog is not awaited).

Reported per size and backend (medians over repeats): ``camera_fps`` (the camera's own clock),
``acq_fps`` of both runs -- frames per second through the whole acquisition, from the camera's
first frame to the last frame coming out of it (pycromanager's ``image_saved_fn`` after its
storage; the MDA's ``frameReady`` after every listener) -- and their ratio (target >= 0.98);
``end_lag_ms`` (how far behind the camera the acquisition ends); the
hook's cost per call: wall time (mean/p50/p99/max) and its own CPU time (target < 1 ms; wall minus
CPU is time other threads held the cores or the GIL); frames delivered, stored, lost; the peak
raw-queue depth (frames waiting for the disk). The model uses all cores but one (``--threads``);
the 1-minute load average before and after shows what else ran on the machine.
"""

from __future__ import annotations

import gc
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer


def rate(times: list[float]) -> float:
    """Frames per second over a list of timestamps (first to last)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


class QueueWatch:
    """Peak of the session's raw queue (frames waiting for the disk) while a run goes on."""

    def __init__(self, session: Any) -> None:
        self.session, self.peak = session, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.session.stats().raw_queue)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_once(core: Any, backend: str, n: int, session: Any | None) -> list[float]:
    """Acquire ``n`` frames through ``backend`` (with the session's hook, or none).

    Returns when each frame came out of the acquisition: pycromanager's ``image_saved_fn``
    (after its own storage), or pymmcore-plus's ``frameReady`` after every other listener.
    """
    out: list[float] = []
    if backend == "pycromanager":
        from pycromanager import Acquisition, multi_d_acquisition_events

        def saved(axes: Any, dataset: Any) -> None:
            out.append(time.perf_counter())

        hook = session.pycromanager_hook if session is not None else None
        with Acquisition(directory=None, image_process_fn=hook, image_saved_fn=saved) as acq:
            acq.acquire(multi_d_acquisition_events(num_time_points=n))
        del acq
    else:
        import useq

        def ready(*args: Any) -> None:
            out.append(time.perf_counter())

        if session is not None:
            session.connect(core, warm_up=False)
        core.mda.events.frameReady.connect(ready)  # after the session's listener
        try:
            core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": n}))
        finally:
            core.mda.events.frameReady.disconnect(ready)
            if session is not None:
                session.disconnect()
    gc.collect()
    return out


def bench_size(size: int, n: int, exposure_ms: float, timing: str, backends: list[str], repeats: int,
               folder: Path, model: Any, engine: str, policy: str, enhance: bool,
               say: Any = print) -> list[dict]:
    """Rows for one frame size: baseline vs hook, interleaved ``repeats`` times per backend."""
    from ..live.session import LiveSession
    from ..mm.core import simulated_camera, simulated_core
    from ..mm.pycromanager_bridge import SnakeUniMMCore, pycromanager_backend
    from ..sim import MicroscopeConfig

    config = MicroscopeConfig(height=size, width=size, upscale=1, seed=0)
    core = simulated_core(config, exposure_ms=exposure_ms, reference_exposure_ms=exposure_ms,
                          timing=timing, bank_size=8, core_class=SnakeUniMMCore)
    core.setCircularBufferMemoryFootprint(max(1024, int(n * size * size * 2 / 2**20 * 1.2)))
    cam = simulated_camera(core)
    cam.prerender()
    rows = []
    with pycromanager_backend(core):
        for backend in backends:
            runs: list[dict] = []
            for r in range(repeats):
                one: dict[str, Any] = {}
                for mode in ("baseline", "hook"):
                    session = None
                    if mode == "hook":
                        store = folder / f"{backend}-{size}-{r}.ome.zarr"
                        session = LiveSession(model=model, store=store, policy=policy, engine=engine,
                                              enhance=enhance, frame_shape=(size, size)).start()
                        watch = QueueWatch(session)
                    start = len(cam.log)
                    out = run_once(core, backend, n, session)
                    delivered = [p.time_s for p in list(cam.log)[start:]]
                    span = out[-1] - delivered[0] if out and delivered else 0.0
                    one[mode] = {"camera_fps": rate(delivered), "frames": len(out),
                                 "acq_fps": (len(out) - 1) / span if span > 0 else 0.0,
                                 "lag_ms": (out[-1] - delivered[-1]) * 1e3 if out and delivered else None}
                    if session is not None:
                        one["peak"] = watch.stop()
                        one["summary"] = session.stop(finish_backlog=False)
                        shutil.rmtree(store, ignore_errors=True)
                    say(f"{backend} {size}x{size} repeat {r + 1}/{repeats} {mode}: camera "
                        f"{one[mode]['camera_fps']:.1f} fps, acquisition {one[mode]['acq_fps']:.1f} fps")
                runs.append(one)
            rows.append(_row(backend, size, n, exposure_ms, timing, runs))
    return rows


def _row(backend: str, size: int, n: int, exposure_ms: float, timing: str, runs: list[dict]) -> dict:
    def med(mode: str, key: str) -> float:
        return float(np.median([r[mode][key] for r in runs]))

    ratios = [r["hook"]["acq_fps"] / r["baseline"]["acq_fps"] for r in runs if r["baseline"]["acq_fps"]]
    hooks = [r["summary"].hook for r in runs]
    last = runs[-1]["summary"]
    return {
        "backend": backend, "size": f"{size}x{size}", "frames": n, "exposure_ms": exposure_ms,
        "timing": timing, "repeats": len(runs),
        "camera_fps": med("hook", "camera_fps"),
        "acq_fps_baseline": med("baseline", "acq_fps"), "acq_fps_hook": med("hook", "acq_fps"),
        "fps_ratio": float(np.median(ratios)), "fps_ratio_min": float(np.min(ratios)),
        "end_lag_ms_baseline": med("baseline", "lag_ms"), "end_lag_ms_hook": med("hook", "lag_ms"),
        "hook_mean_ms": float(np.mean([h["mean_ms"] for h in hooks])),
        "hook_cpu_ms": float(np.mean([h["cpu_mean_ms"] for h in hooks])),
        "hook_p50_ms": float(np.median([h["p50_ms"] for h in hooks])),
        "hook_p99_ms": float(np.median([h["p99_ms"] for h in hooks])),
        "hook_max_ms": float(np.max([h["max_ms"] for h in hooks])),
        "delivered": runs[-1]["hook"]["frames"], "stored": last.raw_written,
        "lost": sum(r["hook"]["frames"] - r["summary"].raw_written - r["summary"].rejected for r in runs),
        "enhanced": last.enhanced, "raw_queue_peak": max(r["peak"] for r in runs), "engine": last.engine,
    }


def command(
    json_path: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = Path(
        "bench-results/hook.json"),
    sizes: Annotated[str, typer.Option(help="Frame sizes (square), comma-separated.")] = "512,2048",
    frames: Annotated[str, typer.Option(help="Frames per run for each size.")] = "300,100",
    exposure: Annotated[str, typer.Option(help="Exposure (ms) for each size: the camera rate.")] = "5,40",
    timing: Annotated[str, typer.Option(help="exposure (camera pacing) or fast (free run).")] = "exposure",
    backend: Annotated[str, typer.Option(help="pycromanager, mda or both.")] = "both",
    repeats: Annotated[int, typer.Option(min=1, help="Interleaved baseline/hook pairs per row.")] = 2,
    model: Annotated[str, typer.Option(help="Model enhancing in the background.")] = "mito-sr4-fast",
    threads: Annotated[int | None, typer.Option(
        min=1, help="torch threads for the model (default: all cores but one, leaving one to acquire).")
    ] = None,
    engine: Annotated[str, typer.Option(help="Engine for the model.")] = "torch",
    policy: Annotated[str, typer.Option(help="preview or complete.")] = "preview",
    enhance: Annotated[bool, typer.Option("--enhance/--no-enhance", help="Run the model.")] = True,
    out_dir: Annotated[Path | None, typer.Option(
        "--dir", help="Folder for the run stores (created when missing; default: the temp folder).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Few frames (a smoke run).")] = False,
) -> None:
    """Acquisition frame rate with and without live-pssr's hook, and the hook's cost per frame."""
    from ..errors import ConfigError
    from ..modelio import load_model
    from .report import check_engine_name, check_json_path, number_list, one_of, report, scratch_dir

    size_list = number_list(sizes, "--sizes", int, 16, "512,2048")
    frame_list = number_list(frames, "--frames", int, 2, "300,100")
    exposure_list = number_list(exposure, "--exposure", float, 0.001, "5,40")
    one_of(timing, "--timing", ("exposure", "fast"))
    one_of(backend, "--backend", ("both", "pycromanager", "mda"))
    one_of(policy, "--policy", ("preview", "complete"))
    check_engine_name(engine)
    check_json_path(json_path)
    if not (len(size_list) == len(frame_list) == len(exposure_list)):
        raise ConfigError("--sizes, --frames and --exposure need one value per size",
                          "e.g. --sizes 512,2048 --frames 300,100 --exposure 5,40")
    backends = ["pycromanager", "mda"] if backend == "both" else [backend]
    if quick:
        frame_list, repeats = [min(f, 30) for f in frame_list], 1
    import torch
    from rich.console import Console

    if enhance:
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) - 1))
    console = Console(stderr=True)
    loaded = load_model(model) if enhance else None
    folder = scratch_dir(out_dir, "live-pssr-bench-hook-")
    rows: list[dict] = []
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    try:
        for size, n, exp in zip(size_list, frame_list, exposure_list, strict=True):
            rows += bench_size(size, n, exp, timing, backends, repeats, folder, loaded, engine, policy,
                               enhance, say=console.print)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for row in rows:  # other work on the machine at the time (1-minute load average)
        row["load_avg_before"], row["load_avg_after"] = load_before, os.getloadavg()[0]
    report("hook", rows, json_path, columns=[  # the JSON rows hold every field
        "backend", "size", "camera_fps", "acq_fps_baseline", "acq_fps_hook", "fps_ratio",
        "hook_cpu_ms", "hook_p50_ms", "hook_p99_ms", "stored", "lost"])
    typer.echo(f"({time.perf_counter() - t0:.0f} s)")
