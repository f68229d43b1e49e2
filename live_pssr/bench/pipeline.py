"""``live-pssr bench pipeline``: raw write throughput, pipeline overhead, end-to-end live fps.

Rows:
- ``disk``: the disk's own sequential write speed (O_DIRECT, 8 MiB blocks; buffered + fsync if
  the file system refuses O_DIRECT), measured in the same run, in the output folder.
- ``raw-write``: the pipeline with no model (raw only) at 512² and 2048² uint16, camera-like
  frames submitted as fast as possible; frames/s and MB/s of raw data including the final
  commit and ``sync`` (median of interleaved repeats: the page cache makes single runs noisy);
  ratio to the disk speed.
- ``raw-sustain``: 2048² frames handed over at 100 fps (a camera's pace): written fps, the
  deepest raw queue, and how long the last frames took to land after the last hand-over.
- ``overhead``: cost of ``submit`` on the acquisition thread (p50/p99), and pipeline time per frame
  minus the store's own append time per frame (what the threads and queues add).
- ``live``: the shipped model end to end at 256² input: frames paced at the camera rate (preview,
  with the consistency check on, as live runs have it by default) and as fast as possible
  (complete, without and with the check: ``consistency`` column; the ratio of the two is the
  check's cost to the live path's throughput): enhanced fps, p50/p99 latency from submit to
  enhanced on disk.
"""

from __future__ import annotations

import mmap
import os
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

MB = 1e6


def disk_write_speed(folder: Path, total_mb: int = 512) -> tuple[float, str]:
    """Sequential write speed of the disk under ``folder`` in MB/s, and the method used."""
    block = 8 << 20
    buf = mmap.mmap(-1, block)
    buf.write(np.random.default_rng(0).integers(0, 255, block, dtype=np.uint8).tobytes())
    path = folder / ".disk-speed.bin"
    n = max(1, int(total_mb * MB) // block)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_DIRECT", 0), 0o644)
        method = "O_DIRECT"
    except OSError:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        method = "buffered+fsync"
    try:
        t0 = time.perf_counter()
        try:
            for _ in range(n):
                os.write(fd, buf)
        except OSError:  # O_DIRECT accepted at open but not at write (e.g. tmpfs)
            os.close(fd)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            method = "buffered+fsync"
            t0 = time.perf_counter()
            for _ in range(n):
                os.write(fd, buf)
        os.fsync(fd)
        dt = time.perf_counter() - t0
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return n * block / MB / dt, method


def camera_like_frames(shape: tuple[int, int], n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Offset + Poisson noise on a smooth structure: compresses like real camera frames."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    base = 200 + 150 * (np.sin(xx / 37.0) * np.cos(yy / 23.0)) ** 2
    return [(100 + rng.poisson(base)).astype(np.uint16) for _ in range(n)]


def _timed_pipeline(out: Path, frames: list[np.ndarray], n_frames: int, codec: str) -> tuple[float, list]:
    from ..frames import Frame
    from ..pipeline import LivePipeline, StoreSpec

    p = LivePipeline(None, StoreSpec(out, overwrite=True, codec=codec)).start()
    submit = []
    t0 = time.perf_counter()
    for i in range(n_frames):
        img = frames[i % len(frames)].copy()  # a fresh buffer per frame, as a camera hands over
        s = time.perf_counter()
        p.submit(Frame(i, img, i * 1.0))
        submit.append(time.perf_counter() - s)
    p.stop()
    os.sync()
    return time.perf_counter() - t0, submit


def _timed_store(out: Path, frames: list[np.ndarray], n_frames: int, codec: str) -> float:
    from ..frames import Frame
    from ..store import RunStore

    store = RunStore.create(out, frames[0].shape, np.uint16, 1, overwrite=True, codec=codec)
    t0 = time.perf_counter()
    for i in range(n_frames):
        store.append_raw(Frame(i, frames[i % len(frames)].copy(), i * 1.0))
    store.close()
    os.sync()
    return time.perf_counter() - t0


def bench_raw(folder: Path, shape: tuple[int, int], n_frames: int, codec: str, repeats: int = 3) -> dict:
    """Pipeline (raw only) vs the store alone, interleaved ``repeats`` times; medians reported.

    Both sides get a fresh copy of each frame (what a camera hands over), include the final
    commit and ``sync``; the difference is what the pipeline's threads and queues add.
    """
    frames = camera_like_frames(shape)
    out = folder / f"raw-{shape[0]}.ome.zarr"
    pipe_dt, store_dt, submit = [], [], []
    for _ in range(repeats):
        dt, sub = _timed_pipeline(out, frames, n_frames, codec)
        pipe_dt.append(dt)
        submit += sub
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        shutil.rmtree(out)
        store_dt.append(_timed_store(out, frames, n_frames, codec))
        shutil.rmtree(out)
    dt, sdt = float(np.median(pipe_dt)), float(np.median(store_dt))
    mb = n_frames * frames[0].nbytes / MB
    sub = np.array(submit) * 1e3
    return {
        "shape": f"{shape[0]}x{shape[1]}", "frames": n_frames, "codec": codec, "repeats": repeats,
        "fps": n_frames / dt, "fps_min": n_frames / max(pipe_dt), "fps_max": n_frames / min(pipe_dt),
        "MB_s": mb / dt, "compression": n_frames * frames[0].nbytes / size,
        "submit_p50_ms": float(np.percentile(sub, 50)), "submit_p99_ms": float(np.percentile(sub, 99)),
        "store_only_fps": n_frames / sdt,
        "overhead_ms_per_frame": (dt - sdt) / n_frames * 1e3,
    }


def bench_sustain(folder: Path, shape: tuple[int, int], n_frames: int, codec: str, target_fps: float) -> dict:
    """Frames handed over at ``target_fps`` (a camera's pace): does the raw path keep up?

    Reports the rate the frames were written at (until the last one is on disk), the largest
    raw-queue depth seen, and how far the last write lagged behind the last hand-over.
    """
    from ..frames import Frame
    from ..pipeline import LivePipeline, StoreSpec

    frames = camera_like_frames(shape)
    out = folder / f"sustain-{shape[0]}.ome.zarr"
    p = LivePipeline(None, StoreSpec(out, overwrite=True, codec=codec)).start()
    max_queue = 0
    t0 = time.perf_counter()
    for i in range(n_frames):
        time.sleep(max(0.0, t0 + i / target_fps - time.perf_counter()))
        p.submit(Frame(i, frames[i % len(frames)].copy(), i * 1e3 / target_fps))
        max_queue = max(max_queue, p.stats().raw_queue)
    handed = time.perf_counter() - t0
    p.stop()
    done = time.perf_counter() - t0
    shutil.rmtree(out)
    return {"shape": f"{shape[0]}x{shape[1]}", "frames": n_frames, "codec": codec, "target_fps": target_fps,
            "camera_fps": (n_frames - 1) / handed, "fps": n_frames / done,
            "MB_s": n_frames * frames[0].nbytes / MB / done, "max_raw_queue": max_queue,
            "drain_ms": (done - handed) * 1e3}


def run_live_frames(enhancer: Any, frames: list[np.ndarray], n_frames: int, policy: str,
                    paced_fps: float | None, out: Path, consistency: bool = False) -> tuple[Any, float]:
    """``n_frames`` of ``frames`` (cycled) through a live pipeline into ``out`` (removed after).

    Paced at ``paced_fps`` (None: as fast as ``submit`` takes them); ``consistency``: with the live
    consistency check (noise estimated from each frame). Returns the summary and the wall time
    from the first frame to the closed store.
    """
    from ..frames import Frame
    from ..pipeline import LivePipeline, StoreSpec
    from ..pipeline.checking import consistency_spec

    p = LivePipeline(enhancer, StoreSpec(out, overwrite=True), policy=policy,
                     consistency=consistency_spec(consistency)).start()
    t0 = time.perf_counter()
    for i in range(n_frames):
        if paced_fps:
            time.sleep(max(0.0, t0 + i / paced_fps - time.perf_counter()))
        p.submit(Frame(i, frames[i % len(frames)], i * 1e3 / (paced_fps or 1e3)))
    s = p.stop()
    dt = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return s, dt


def bench_live(folder: Path, model: str, engine: str, size: int, n_frames: int, policy: str,
               paced_fps: float | None, consistency: bool = False) -> dict:
    from ..enhancer import build_enhancer
    from ..sim import MicroscopeConfig, SimulatedMicroscope

    enhancer = build_enhancer(model, (size, size), engine)
    mic = SimulatedMicroscope(MicroscopeConfig(height=size, width=size, upscale=enhancer.upscale))
    frames = [mic.frame(t) for t in range(min(n_frames, 50))]
    enhancer.enhance_window([frames[0]])  # warm-up outside the timing
    s, dt = run_live_frames(enhancer, frames, n_frames, policy, paced_fps, folder / f"live-{policy}.ome.zarr",
                            consistency=consistency)
    done = s.enhanced_live + s.enhanced_after
    return {
        "policy": policy, "consistency": consistency, "camera_fps": s.acquisition_fps,
        "input": f"{size}x{size}",
        "engine": s.engine, "model": s.model, "frames": n_frames, "enhanced": done,
        "skipped": s.skipped, "enhanced_fps": done / dt if policy == "complete" else s.enhance_fps,
        "latency_p50_ms": s.latency_p50_ms, "latency_p99_ms": s.latency_p99_ms,
    }


def command(
    json_path: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = Path(
        "bench-results/pipeline.json"),
    out_dir: Annotated[Path | None, typer.Option(
        "--dir", help="Folder on the disk to test (created when missing; default: the temp folder).")] = None,
    frames_512: Annotated[int, typer.Option(min=2, help="Frames for the 512² raw test.")] = 1000,
    frames_2048: Annotated[int, typer.Option(min=2, help="Frames for the 2048² raw test.")] = 300,
    codec: Annotated[str, typer.Option(help="lz4, zstd or none.")] = "lz4",
    model: Annotated[str, typer.Option(help="Model for the live rows.")] = "mito-sr4-fast",
    engine: Annotated[str, typer.Option(help="Engine for the live rows.")] = "auto",
    live_frames: Annotated[int, typer.Option(min=2, help="Frames for the live rows.")] = 100,
    disk_mb: Annotated[int, typer.Option(min=8, help="MB written to measure the disk's own speed.")] = 512,
    quick: Annotated[bool, typer.Option("--quick", help="Few frames (a smoke run).")] = False,
) -> None:
    """Raw write throughput vs the disk, pipeline overhead, end-to-end live fps and latency."""
    from ..modelio import resolve_model
    from ..store.chunks import check_codec
    from .report import check_engine_name, check_json_path, report, scratch_dir

    check_codec(codec)
    check_engine_name(engine)
    check_json_path(json_path)
    resolve_model(model)  # the live rows come last: a bad name fails now, not after the raw tests
    if quick:
        frames_512, frames_2048, live_frames = 50, 10, 20
    folder = scratch_dir(out_dir, "live-pssr-bench-")
    try:
        disk, method = disk_write_speed(folder, disk_mb)
        rows: list[dict] = [{"test": "disk", "MB_s": disk, "method": method}]
        for shape, n in (((512, 512), frames_512), ((2048, 2048), frames_2048)):
            r = bench_raw(folder, shape, n, codec)
            r["ratio_to_disk"] = r["MB_s"] / disk
            rows.append({"test": "raw-write", **r})
        r = bench_sustain(folder, (2048, 2048), frames_2048, codec, target_fps=100.0)
        rows.append({"test": "raw-sustain", **r, "ratio_to_disk": r["MB_s"] / disk})
        rows.append({"test": "live", **bench_live(folder, model, engine, 256, live_frames, "preview", 20.0,
                                                  consistency=True)})
        for check in (False, True):
            rows.append({"test": "live", **bench_live(folder, model, engine, 256, live_frames, "complete",
                                                      None, consistency=check)})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report("pipeline", rows, json_path, columns=[
        "test", "shape", "input", "policy", "consistency", "target_fps", "fps", "MB_s", "ratio_to_disk",
        "max_raw_queue",
        "submit_p50_ms", "submit_p99_ms", "overhead_ms_per_frame", "store_only_fps", "camera_fps",
        "enhanced_fps", "latency_p50_ms", "latency_p99_ms", "skipped", "engine"])
