"""``live-pssr demo``: simulated microscope -> live pipeline -> OME-Zarr store (+ viewer)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from ..pipeline import Policy
from ._common import (
    EngineOpt,
    FsyncOpt,
    HeadlessOpt,
    ModelOpt,
    OverwriteOpt,
    PolicyOpt,
    ScreenshotOpt,
    exit_with,
    parse_fsync,
)
from ._consistency import CalibrationOpt, ConsistencyEveryOpt, ConsistencyOpt


def command(
    frames: Annotated[int, typer.Option("--frames", "-n", min=1, help="Frames to acquire.")] = 200,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output OME-Zarr store.")] = Path(
        "runs/demo.ome.zarr"),
    headless: HeadlessOpt = False,
    policy: PolicyOpt = Policy.PREVIEW,
    model: ModelOpt = "mito-sr4-fast",
    overwrite: OverwriteOpt = False,
    engine: EngineOpt = "auto",
    size: Annotated[int, typer.Option(min=8, help="Camera frame size (square, pixels).")] = 256,
    fps: Annotated[float, typer.Option(min=0.01, help="Camera frame rate (simulated, or replay pace).")
                   ] = 20.0,
    laser_power: Annotated[float, typer.Option(
        min=1e-4, help="Relative laser power (1 = high laser).")] = 0.05,
    seed: Annotated[int, typer.Option(min=0, help="Scene and noise seed.")] = 0,
    screenshot: ScreenshotOpt = None,
    replay: Annotated[Path | None, typer.Option(
        "--replay", help="Replay a recorded timelapse (tif stack or zarr) instead of simulating.")] = None,
    channel: Annotated[int | None, typer.Option(min=0, help="Channel to replay from multi-channel data.")
                       ] = None,
    fsync: FsyncOpt = "off",
    consistency: ConsistencyOpt = True,
    consistency_every: ConsistencyEveryOpt = 1,
    calibration: CalibrationOpt = None,
) -> None:
    """Run the live pipeline on the simulated microscope (low-laser mitochondria), or replay a recording.

    The consistency check uses the simulated camera's own noise model (or ``--calibration``).
    """
    from ..live.driver import run_live
    from ..modelio import load_model
    from ..sim import MicroscopeConfig
    from ..sources import ReplaySource, SimulatedSource

    fsync_setting = parse_fsync(fsync)
    if screenshot is not None:
        from ..store.claim import check_output_file

        check_output_file(screenshot, "--screenshot", "viewer.png")
    loaded = load_model(model)
    if replay is not None:
        source = ReplaySource(replay, fps=fps, channel=channel)
        acquisition = {"source": "replay", "path": str(replay), "channel": channel, "fps": fps}
        frames = min(frames, source.n_frames) if source.n_frames else frames
    else:
        config = MicroscopeConfig(height=size, width=size, upscale=loaded.spec.upscale, fps=fps,
                                  laser_power=laser_power, seed=seed)
        source = SimulatedSource(config)
        acquisition = {"source": "simulated", "microscope": asdict(config)}
    outcome = run_live(
        source=source, model=loaded, engine=engine, out=out, overwrite=overwrite, policy=policy,
        frames=frames, headless=headless, screenshot=screenshot, acquisition=acquisition,
        inputs=(replay,) if replay is not None else (), fsync=fsync_setting,
        consistency=consistency, consistency_every=consistency_every,
        camera=calibration if calibration is not None or replay is not None else source.microscope.camera,
    )
    exit_with(outcome.exit_code)
