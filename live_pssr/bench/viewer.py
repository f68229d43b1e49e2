"""``live-pssr bench viewer``: how fast the viewer draws, and what it costs the pipeline.

Rows (512² raw frames, 2048² enhanced frames by default):

- ``display``: the real viewer window fed through a real pipeline's display slot with new raw and
  enhanced frames (simulated microscope: camera frames and 4x ground truth). ``camera`` feeds a
  thread at the camera rate (both streams new every frame, the worst case for the viewer);
  ``capacity`` puts new frames in the slot before every GUI tick with the timer at 1 ms, so the
  rate is what the viewer can draw at most. Reported: raw and enhanced redraws per second, and
  the GUI tick's own time (p50/p99; painting comes on top and is inside the rates), and the GUI
  thread's CPU use in % of one core (ticks, painting, status bar).
- ``pipeline``: the real pipeline (model, engine, store) fed at the camera rate in preview
  policy, headless and with the viewer, alternating ``--repeats`` times. Reported: camera and
  enhancement fps over the measuring window (after a warm-up), latency p50/p99, and the viewer's
  cost in enhancement throughput (``1 - with_viewer / headless``, medians), and what the
  acquisition thread pays per frame (``submit`` p50/p99: the viewer must not slow it).

Runs offscreen (Qt's ``offscreen`` platform) when there is no display; the row says which
platform drew. Frames come from a list made before timing (the simulator is slower than a camera).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer


def sample_frames(size: int, upscale: int, n: int = 12, n_truth: int = 4) -> tuple[list, list]:
    """``n`` simulated camera frames and ``n_truth`` matching enhanced-size images (uint16)."""
    from ..sim import MicroscopeConfig, SimulatedMicroscope

    mic = SimulatedMicroscope(MicroscopeConfig(height=size, width=size, upscale=upscale, seed=0))
    raw = [mic.frame(t) for t in range(n)]
    enh = []
    for t in range(n_truth):
        g = mic.ground_truth(t)
        enh.append((100 + 4000 * g / max(float(g.max()), 1e-6)).astype(np.uint16))
    return raw, enh


class LoopSource:
    """A frame source cycling pre-made frames at ``fps`` (the bench's camera)."""

    def __init__(self, frames: list[np.ndarray], fps: float, pixel_size_um: float = 0.16) -> None:
        self._frames, self.fps, self.pixel_size_um = frames, fps, pixel_size_um
        self.shape = frames[0].shape
        self.dtype = frames[0].dtype

    def frames(self, n: int | None = None, paced: bool = True) -> Iterator[Any]:
        from ..frames import Frame

        t0 = time.perf_counter()
        i = 0
        while n is None or i < n:
            if paced:
                time.sleep(max(0.0, t0 + i / self.fps - time.perf_counter()))
            yield Frame(i, self._frames[i % len(self._frames)].copy(), i * 1e3 / self.fps, {})
            i += 1


def _percentiles(ms: list[float]) -> tuple[float | None, float | None]:
    if not ms:
        return None, None
    a = np.array(ms)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def _timed_tick(window: Any, before: Callable[[], None] | None = None) -> list[float]:
    """Re-wire the window's timer to time each tick (optionally feeding frames first)."""
    times: list[float] = []
    window.timer.timeout.disconnect()

    def tick() -> None:
        if before is not None:
            before()
        s = time.perf_counter()
        window.tick()
        times.append((time.perf_counter() - s) * 1e3)

    window.timer.timeout.connect(tick)
    return times


def _run_qt(seconds: float, poll: Callable[[], bool] | None = None) -> None:
    """Run the Qt event loop for ``seconds`` (or until ``poll()`` is True)."""
    from qtpy import QtCore

    loop = QtCore.QEventLoop()
    end = time.perf_counter() + seconds
    timer = QtCore.QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: loop.quit() if (time.perf_counter() >= end or (poll and poll()))
                          else None)
    timer.start()
    loop.exec()
    timer.stop()


def bench_display(folder: Path, raw: list, enh: list, seconds: float, mode: str, camera_fps: float,
                  upscale: int) -> dict[str, Any]:
    """Draw rates of the real window fed through a real display slot (no model, no store)."""
    from qtpy import QtGui

    from ..pipeline import LivePipeline, StoreSpec
    from ..viewer.window import ViewerWindow

    pipeline = LivePipeline(None, StoreSpec(folder / f"display-{mode}.ome.zarr", overwrite=True))
    window = ViewerWindow(pipeline=pipeline, runner=None, upscale=upscale,
                          refresh_hz=1000.0 if mode == "capacity" else 60.0)
    window.show()
    count = [0]

    def put() -> None:
        i = count[0]
        r = raw[i % len(raw)]
        pipeline.display.put_raw(i, r)
        pipeline.display.put_enhanced(i, r, enh[i % len(enh)])
        count[0] += 1

    stop = threading.Event()
    if mode == "capacity":
        times = _timed_tick(window, before=put)
    else:
        times = _timed_tick(window)

        def feed() -> None:
            t0 = time.perf_counter()
            while not stop.is_set():
                put()
                time.sleep(max(0.0, t0 + count[0] / camera_fps - time.perf_counter()))

        threading.Thread(target=feed, daemon=True).start()
    _run_qt(1.0)  # warm-up: first paint, fit, histograms
    times.clear()
    r0, e0, t0 = window.raw_drawn.total, window.enh_drawn.total, time.perf_counter()
    c0 = time.thread_time()
    _run_qt(seconds)
    dt = time.perf_counter() - t0
    gui_cpu = (time.thread_time() - c0) / dt * 100
    r1, e1 = window.raw_drawn.total, window.enh_drawn.total
    stop.set()
    window.close()
    window.deleteLater()
    p50, p99 = _percentiles(times)
    return {
        "test": "display", "mode": mode, "platform": QtGui.QGuiApplication.platformName(),
        "raw": "x".join(map(str, raw[0].shape)), "enhanced": "x".join(map(str, enh[0].shape)),
        "fed_fps": camera_fps if mode == "camera" else None,
        "raw_display_fps": (r1 - r0) / dt, "enhanced_display_fps": (e1 - e0) / dt,
        "tick_p50_ms": p50, "tick_p99_ms": p99, "gui_cpu_pct": gui_cpu,
    }


def bench_pipeline_arm(folder: Path, enhancer: Any, raw: list, camera_fps: float, seconds: float,
                       warmup_s: float, with_viewer: bool, tag: str) -> dict[str, Any]:
    """One run of the real pipeline at the camera rate, headless or with the viewer."""
    from ..live.runners import SourceRunner
    from ..pipeline import LivePipeline, StoreSpec

    out = folder / f"pipe-{tag}.ome.zarr"
    pipeline = LivePipeline(enhancer, StoreSpec(out, overwrite=True), policy="preview")
    submit_ms: list[float] = []
    real_submit = pipeline.submit

    def timed_submit(frame: Any) -> None:  # what acquisition pays per frame
        s = time.perf_counter()
        real_submit(frame)
        if "t0" in marks:
            submit_ms.append((time.perf_counter() - s) * 1e3)

    pipeline.submit = timed_submit
    marks: dict[str, Any] = {}
    runner = SourceRunner(LoopSource(raw, camera_fps), pipeline, None).start()
    window = None
    if with_viewer:
        from ..viewer.window import ViewerWindow

        window = ViewerWindow(pipeline=pipeline, runner=runner)
        window.show()
    start = time.perf_counter()

    def poll() -> bool:
        now, st = time.perf_counter(), pipeline.stats()
        draws = (window.raw_drawn.total, window.enh_drawn.total) if window is not None else (0, 0)
        if "t0" not in marks:
            if st.enhanced_live >= 2 and now - start >= warmup_s:
                marks["t0"] = (now, st, draws)
                marks["cpu0"] = time.thread_time()
            return False
        if now - marks["t0"][0] >= seconds:
            marks["t1"] = (now, st, draws)
            marks["cpu1"] = time.thread_time()
            return True
        return False

    try:
        limit = warmup_s + seconds + 120.0
        if window is not None:
            _run_qt(limit, poll)
        else:
            while not poll() and time.perf_counter() - start < limit:
                time.sleep(0.05)
    finally:
        runner.stop()
        runner.done.wait(30)
        if window is not None:
            window.close()
            window.deleteLater()
        pipeline.stop(finish_backlog=False)
        shutil.rmtree(out, ignore_errors=True)
    if "t1" not in marks:
        raise RuntimeError("the pipeline enhanced fewer than 2 frames in the time allowed")
    (t0, s0, d0), (t1, s1, d1) = marks["t0"], marks["t1"]
    dt = t1 - t0
    sub50, sub99 = _percentiles(submit_ms)
    return {
        "test": "pipeline", "mode": "viewer" if with_viewer else "headless",
        "raw": "x".join(map(str, raw[0].shape)), "fed_fps": camera_fps,
        "camera_fps": (s1.frames_acquired - s0.frames_acquired) / dt,
        "enhance_fps": (s1.enhanced_live - s0.enhanced_live) / dt,
        "latency_p50_ms": s1.latency_p50_ms, "latency_p99_ms": s1.latency_p99_ms,
        "submit_p50_ms": sub50, "submit_p99_ms": sub99,
        "gui_cpu_pct": (marks["cpu1"] - marks["cpu0"]) / dt * 100,
        "raw_display_fps": (d1[0] - d0[0]) / dt if window is not None else None,
        "enhanced_display_fps": (d1[1] - d0[1]) / dt if window is not None else None,
        "engine": s1.engine, "model": s1.model,
    }


def command(
    json_path: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = Path(
        "bench-results/viewer.json"),
    size: Annotated[int, typer.Option(
        min=16, help="Raw frame size (square); enhanced is size x upscale.")] = 512,
    model: Annotated[str, typer.Option(help="Model for the pipeline rows.")] = "mito-sr4-fast",
    engine: Annotated[str, typer.Option(help="Engine for the pipeline rows.")] = "auto",
    camera_fps: Annotated[float, typer.Option("--fps", help="Camera rate for viewer and pipeline.")] = 30.0,
    seconds: Annotated[float, typer.Option(help="Measuring window per run.")] = 8.0,
    repeats: Annotated[int, typer.Option(min=1, help="Headless/viewer pairs (alternating).")] = 2,
    quick: Annotated[bool, typer.Option("--quick", help="Short runs (a smoke test).")] = False,
) -> None:
    """Viewer draw rate at 512² raw / 2048² enhanced, and its cost in pipeline throughput."""
    from ..enhancer import build_enhancer
    from ..live.driver import has_display
    from ..viewer.app import ensure_app
    from .report import check_engine_name, check_json_path, positive, report

    positive(camera_fps, "--fps", "30")
    positive(seconds, "--seconds", "8")
    check_engine_name(engine)
    check_json_path(json_path)
    if quick:
        seconds, repeats = 2.0, 1
    ensure_app(offscreen=not has_display())
    enhancer = build_enhancer(model, (size, size), engine)
    raw, enh = sample_frames(size, enhancer.upscale)
    enhancer.enhance_window([raw[0]])  # compile / warm up outside the timing
    folder = Path(tempfile.mkdtemp(prefix="live-pssr-bench-viewer-"))
    rows: list[dict[str, Any]] = []
    try:
        for mode in ("camera", "capacity"):
            rows.append(bench_display(folder, raw, enh, seconds, mode, camera_fps, enhancer.upscale))
        arms: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for rep in range(repeats):
            for with_viewer in (False, True):
                row = bench_pipeline_arm(folder, enhancer, raw, camera_fps, seconds, warmup_s=2.0,
                                         with_viewer=with_viewer, tag=f"{rep}-{int(with_viewer)}")
                arms[with_viewer].append(row)
                rows.append(row)
        headless = statistics.median(r["enhance_fps"] for r in arms[False])
        viewer = statistics.median(r["enhance_fps"] for r in arms[True])
        rows.append({
            "test": "viewer-cost", "mode": f"median of {repeats}",
            "camera_fps": statistics.median(r["camera_fps"] for r in arms[True]),
            "enhance_fps": viewer, "headless_enhance_fps": headless,
            "cost_pct": 100.0 * (1.0 - viewer / headless) if headless > 0 else None,
            "headless_camera_fps": statistics.median(r["camera_fps"] for r in arms[False]),
            "gui_cpu_pct": statistics.median(r["gui_cpu_pct"] for r in arms[True]),
            "submit_p99_ms": statistics.median(r["submit_p99_ms"] or 0.0 for r in arms[True]),
            "headless_submit_p99_ms": statistics.median(r["submit_p99_ms"] or 0.0 for r in arms[False]),
            "engine": arms[True][0]["engine"], "model": arms[True][0]["model"],
        })
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report("viewer", rows, json_path, columns=[
        "test", "mode", "platform", "raw", "enhanced", "fed_fps", "raw_display_fps",
        "enhanced_display_fps", "tick_p50_ms", "tick_p99_ms", "camera_fps", "enhance_fps",
        "headless_enhance_fps", "cost_pct", "gui_cpu_pct", "latency_p50_ms", "latency_p99_ms",
        "submit_p99_ms", "engine"])
