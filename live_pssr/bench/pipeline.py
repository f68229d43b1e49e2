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
- ``raw-peers``: the same 2048² frames through live-pssr's raw path (its default pool of 8 writes,
  and one write at a time: ``one_writer_fps``), tensorstore and acquire-zarr
  (:mod:`live_pssr.bench.writers`), interleaved; ours as a ratio to each.
- ``raw-sustain+enhance``: 2048² at 100 fps while the model enhances them in ``preview`` (it may
  skip; the raw path may not fall behind).
- ``live``: the shipped model at 256² and 512² input: the engine alone (median ``enhance_window``),
  ``complete`` end to end without and with the consistency check (``ratio_to_engine``), and
  ``preview`` with the check at 80 % of the engine's rate and at 80 % of what the pipeline with
  its check sustained (latency p50/p99 against the engine's time: ``latency_minus_compute_ms``).
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


def _timed_pipeline(out: Path, frames: list[np.ndarray], n_frames: int, codec: str,
                    raw_writers: int | None = None) -> tuple[float, list]:
    from ..frames import Frame
    from ..pipeline import LivePipeline, StoreSpec

    spec = StoreSpec(out, overwrite=True, codec=codec)
    if raw_writers is not None:  # None: the pipeline's default
        spec.raw_writers = raw_writers
    p = LivePipeline(None, spec).start()
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


def hand_over_paced(p: Any, frames: list[np.ndarray], n_frames: int, target_fps: float
                    ) -> tuple[float, float, int]:
    """Submit ``n_frames`` (fresh copies, cycled) at ``target_fps``: (start, seconds, deepest raw queue)."""
    from ..frames import Frame

    max_queue = 0
    t0 = time.perf_counter()
    for i in range(n_frames):
        time.sleep(max(0.0, t0 + i / target_fps - time.perf_counter()))
        p.submit(Frame(i, frames[i % len(frames)].copy(), i * 1e3 / target_fps))
        max_queue = max(max_queue, p.stats().raw_queue)
    return t0, time.perf_counter() - t0, max_queue


def bench_sustain(folder: Path, shape: tuple[int, int], n_frames: int, codec: str, target_fps: float) -> dict:
    """Frames handed over at ``target_fps`` (a camera's pace): does the raw path keep up?

    Reports the rate the frames were written at (until the last one is on disk), the largest
    raw-queue depth seen, and how far the last write lagged behind the last hand-over.
    """
    from ..pipeline import LivePipeline, StoreSpec

    frames = camera_like_frames(shape)
    out = folder / f"sustain-{shape[0]}.ome.zarr"
    p = LivePipeline(None, StoreSpec(out, overwrite=True, codec=codec)).start()
    t0, handed, max_queue = hand_over_paced(p, frames, n_frames, target_fps)
    p.stop()
    done = time.perf_counter() - t0
    shutil.rmtree(out)
    return {"shape": f"{shape[0]}x{shape[1]}", "frames": n_frames, "codec": codec, "target_fps": target_fps,
            "camera_fps": (n_frames - 1) / handed, "fps": n_frames / done,
            "MB_s": n_frames * frames[0].nbytes / MB / done, "max_raw_queue": max_queue,
            "drain_ms": (done - handed) * 1e3}


def run_live_frames(enhancer: Any, frames: list[np.ndarray], n_frames: int, policy: str,
                    paced_fps: float | None, out: Path, consistency: bool = False
                    ) -> tuple[Any, float, dict[str, float | None]]:
    """``n_frames`` of ``frames`` (cycled) through a live pipeline into ``out`` (removed after).

    Paced at ``paced_fps`` (None: as fast as ``submit`` takes them); ``consistency``: with the live
    consistency check (noise estimated from each frame). Returns the summary, the wall time
    from the first frame to the closed store and :func:`enhancer_timing`.
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
    timing = enhancer_timing(out)
    shutil.rmtree(out, ignore_errors=True)
    return s, dt, timing


def enhancer_timing(store: Path) -> dict[str, float | None]:
    """Medians over a run's live-enhanced frames (from its records): ``wait_ms`` (arrival to the
    enhancer taking the frame) and ``service_ms`` (taking it to its enhanced frame written)."""
    from ..store import FrameStatus, open_store

    rec = open_store(store).records
    live = rec["status"] == int(FrameStatus.LIVE)
    wait = (rec["enhance_start_s"] - rec["received_s"])[live] * 1e3
    service = (rec["enhance_end_s"] - rec["enhance_start_s"])[live] * 1e3
    wait, service = wait[np.isfinite(wait)], service[np.isfinite(service)]
    return {"wait_ms": float(np.median(wait)) if wait.size else None,
            "service_ms": float(np.median(service)) if service.size else None}


def engine_ms(enhancer: Any, frames: list[np.ndarray], repeats: int = 20, warm_up: int = 5) -> float:
    """Median milliseconds of one ``enhance_window`` (the engine with its normalisation), warmed up."""
    for i in range(warm_up):  # the engine's threads, caches and (OpenVINO) first-inference work
        enhancer.enhance_window([frames[i % len(frames)]])
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        enhancer.enhance_window([frames[i % len(frames)]])
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def bench_live(folder: Path, model: str, engine: str, size: int, n_frames: int) -> list[dict]:
    """The engine alone, then the pipeline end to end at ``size``² input (one enhancer, one run).

    Rows: ``engine`` (median ``enhance_window`` time: the rate the model allows);
    ``complete`` without and with the consistency check, frames submitted as fast as ``submit``
    takes them (``ratio_to_engine`` = enhanced fps / engine fps); ``preview`` with the check on,
    paced at 80 % of the engine's rate and at 80 % of the rate the pipeline with its check
    sustained (``paced_by``): latency p50/p99 against the engine's time
    (``latency_minus_compute_ms``). A frame waits in the slot only while the enhancer is still
    on the previous one, so the first shows what the check and the writes add to each frame.
    """
    from ..enhancer import build_enhancer
    from ..sim import MicroscopeConfig, SimulatedMicroscope

    enhancer = build_enhancer(model, (size, size), engine)
    mic = SimulatedMicroscope(MicroscopeConfig(height=size, width=size, upscale=enhancer.upscale))
    frames = [mic.frame(t) for t in range(min(n_frames, 50))]
    compute = engine_ms(enhancer, frames)
    engine_fps = 1e3 / compute
    base = {"test": "live", "input": f"{size}x{size}", "engine": enhancer.engine_name,
            "model": enhancer.model.model_id}
    rows = [{**base, "policy": "engine only", "enhanced_fps": engine_fps, "compute_ms": compute}]
    out = folder / f"live-{size}.ome.zarr"
    for check in (False, True):
        s, dt, _ = run_live_frames(enhancer, frames, n_frames, "complete", None, out, consistency=check)
        fps = (s.enhanced_live + s.enhanced_after) / dt
        rows.append({**base, "policy": "complete", "consistency": check, "frames": n_frames,
                     "camera_fps": s.acquisition_fps, "enhanced_fps": fps,
                     "ratio_to_engine": fps / engine_fps,
                     "latency_p50_ms": s.latency_p50_ms, "latency_p99_ms": s.latency_p99_ms})
    checked_fps = rows[-1]["enhanced_fps"]  # what the pipeline with its check sustains
    for paced_by, cam in (("engine", 0.8 * engine_fps), ("pipeline", 0.8 * checked_fps)):
        s, dt, timing = run_live_frames(enhancer, frames, n_frames, "preview", cam, out, consistency=True)
        rows.append({**base, "policy": "preview", "consistency": True, "paced_by": paced_by,
                     "frames": n_frames, "target_fps": cam,
                     "camera_fps": s.acquisition_fps, "enhanced_fps": s.enhance_fps,
                     "ratio_to_engine": s.enhance_fps / engine_fps, "compute_ms": compute,
                     "latency_p50_ms": s.latency_p50_ms, "latency_p99_ms": s.latency_p99_ms,
                     "latency_minus_compute_ms": (s.latency_p50_ms - compute) if s.latency_p50_ms else None,
                     "wait_p50_ms": timing["wait_ms"], "service_p50_ms": timing["service_ms"],
                     "skipped": s.skipped})
    return rows


def bench_peers(folder: Path, shape: tuple[int, int], n_frames: int, codec: str, repeats: int = 3) -> dict:
    """live-pssr's raw path against tensorstore and acquire-zarr on the same frames, interleaved.

    ``ratio_to_tensorstore``: the median over rounds of ours / tensorstore in that round (and each
    round's ratio); ``fps`` and the peers' rates are medians over the rounds.
    """
    from .writers import acquire_zarr_fps, tensorstore_fps

    frames = camera_like_frames(shape)
    ours, serial, ts_fps, az_fps, notes = [], [], [], [], {}
    per_round: list[float] = []  # ours / tensorstore in the same round
    out = folder / "peers-ours.ome.zarr"
    for _ in range(repeats):
        for writers, acc in ((None, ours), (1, serial)):  # the default pool, and one write at a time
            dt, _ = _timed_pipeline(out, frames, n_frames, codec, raw_writers=writers)
            shutil.rmtree(out)
            acc.append(n_frames / dt)
        for name, fn, acc in (("tensorstore", tensorstore_fps, ts_fps),
                              ("acquire-zarr", acquire_zarr_fps, az_fps)):
            fps, note = fn(folder, frames, n_frames, codec)
            notes[name] = note
            if fps is not None:
                acc.append(fps)
                if name == "tensorstore":
                    per_round.append(ours[-1] / fps)
    o = float(np.median(ours))
    t = float(np.median(ts_fps)) if ts_fps else None
    a = float(np.median(az_fps)) if az_fps else None
    # the disk's rate drifts between rounds: the median of each round's ratio is steadier than a
    # ratio of medians
    return {"shape": f"{shape[0]}x{shape[1]}", "frames": n_frames, "codec": codec, "repeats": repeats,
            "fps": o, "one_writer_fps": float(np.median(serial)), "tensorstore_fps": t, "acquire_zarr_fps": a,
            "ratio_to_tensorstore": float(np.median(per_round)) if per_round else None,
            "ratio_to_tensorstore_rounds": [round(r, 3) for r in per_round],
            "ratio_to_acquire_zarr": o / a if a else None,
            "peers": notes}


def bench_sustain_enhancing(folder: Path, shape: tuple[int, int], n_frames: int, codec: str,
                            target_fps: float, model: str, engine: str) -> dict:
    """Raw frames handed over at ``target_fps`` while the model enhances in ``preview`` beside them.

    The enhancer may skip (preview); the raw path may not fall behind: the rate until the last
    raw frame is in the store (appended; committed at the close), the deepest raw queue and how
    long the last frames took to land, as ``raw-sustain`` reports them alone.
    """
    from ..enhancer import build_enhancer
    from ..pipeline import LivePipeline, StoreSpec
    from ..pipeline.checking import consistency_spec

    frames = camera_like_frames(shape)
    enhancer = build_enhancer(model, shape, engine)
    out = folder / f"sustain-enh-{shape[0]}.ome.zarr"
    p = LivePipeline(enhancer, StoreSpec(out, overwrite=True, codec=codec), policy="preview",
                     consistency=consistency_spec(True)).start()
    t0, handed, max_queue = hand_over_paced(p, frames, n_frames, target_fps)
    deadline = time.perf_counter() + 120.0
    while p.stats().raw_written < n_frames and not p.failed and time.perf_counter() < deadline:
        time.sleep(0.002)  # the raw frames landing (the enhancer may still be on its frame)
    landed = time.perf_counter() - t0
    p.abandon_backlog()
    s = p.stop()
    shutil.rmtree(out, ignore_errors=True)
    return {"shape": f"{shape[0]}x{shape[1]}", "frames": n_frames, "codec": codec, "target_fps": target_fps,
            "camera_fps": (n_frames - 1) / handed, "fps": n_frames / landed,
            "MB_s": n_frames * frames[0].nbytes / MB / landed, "max_raw_queue": max_queue,
            "drain_ms": (landed - handed) * 1e3, "raw_written": s.raw_written,
            "enhanced": s.enhanced_live, "skipped": s.skipped, "engine": s.engine,
            "policy": "preview", "consistency": True}


def command(
    json_path: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = Path(
        "bench-results/pipeline.json"),
    out_dir: Annotated[Path | None, typer.Option(
        "--dir", help="Folder on the disk to test (created when missing; default: the temp folder).")] = None,
    frames_512: Annotated[int, typer.Option(min=2, help="Frames for the 512² raw test.")] = 1000,
    frames_2048: Annotated[int, typer.Option(min=2, help="Frames for the --big (2048²) raw tests.")] = 300,
    codec: Annotated[str, typer.Option(help="lz4, zstd or none.")] = "lz4",
    model: Annotated[str, typer.Option(help="Model for the live rows.")] = "mito-sr4-fast",
    engine: Annotated[str, typer.Option(help="Engine for the live rows.")] = "auto",
    live_frames: Annotated[int, typer.Option(min=2, help="Frames for the live rows.")] = 100,
    disk_mb: Annotated[int, typer.Option(min=8, help="MB written to measure the disk's own speed.")] = 512,
    big: Annotated[int, typer.Option(
        "--big", min=16, help="Side of the sCMOS-size frames (raw-write, peers, sustain rows).")] = 2048,
    live_sizes: Annotated[str, typer.Option(
        "--live-sizes", help="Input sizes of the live rows, comma-separated.")] = "256,512",
    quick: Annotated[bool, typer.Option("--quick", help="Few frames (a smoke run).")] = False,
) -> None:
    """Raw write throughput vs the disk, pipeline overhead, end-to-end live fps and latency."""
    from ..modelio import resolve_model
    from ..store.chunks import check_codec
    from .report import check_engine_name, check_json_path, number_list, report, scratch_dir

    check_codec(codec)
    check_engine_name(engine)
    check_json_path(json_path)
    resolve_model(model)  # the live rows come last: a bad name fails now, not after the raw tests
    sizes = number_list(live_sizes, "--live-sizes", minimum=8, example="256,512")
    if quick:
        frames_512, frames_2048, live_frames = 50, 10, 20
    folder = scratch_dir(out_dir, "live-pssr-bench-")
    try:
        disk, method = disk_write_speed(folder, disk_mb)
        rows: list[dict] = [{"test": "disk", "MB_s": disk, "method": method}]
        for shape, n in (((512, 512), frames_512), ((big, big), frames_2048)):
            r = bench_raw(folder, shape, n, codec)
            r["ratio_to_disk"] = r["MB_s"] / disk
            rows.append({"test": "raw-write", **r})
        rows.append({"test": "raw-peers", **bench_peers(folder, (big, big), frames_2048, codec,
                                                        repeats=2 if quick else 5)})
        r = bench_sustain(folder, (big, big), frames_2048, codec, target_fps=100.0)
        rows.append({"test": "raw-sustain", **r, "ratio_to_disk": r["MB_s"] / disk})
        r = bench_sustain_enhancing(folder, (big, big), frames_2048, codec, 100.0, model, engine)
        rows.append({"test": "raw-sustain+enhance", **r, "ratio_to_disk": r["MB_s"] / disk})
        for size in sizes:
            rows += bench_live(folder, model, engine, size, live_frames)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report("pipeline", rows, json_path, columns=[
        "test", "shape", "input", "policy", "consistency", "paced_by", "target_fps", "fps", "one_writer_fps",
        "MB_s", "ratio_to_disk",
        "tensorstore_fps", "acquire_zarr_fps", "ratio_to_tensorstore", "max_raw_queue", "drain_ms",
        "submit_p50_ms", "submit_p99_ms", "overhead_ms_per_frame", "camera_fps", "enhanced_fps",
        "ratio_to_engine", "compute_ms", "latency_p50_ms", "latency_p99_ms", "latency_minus_compute_ms",
        "wait_p50_ms", "service_p50_ms", "skipped"])
