"""``live-pssr acquire``: a time-lapse on a Micro-Manager core -> live pipeline -> store (+ viewer).

The core is a real system (``--mm-config FILE``: pymmcore-plus loads the hardware configuration)
or a real MMCore with live-pssr's simulated microscope as a Python camera (``--simulate``). The
time-lapse is a pymmcore-plus MDA (``--frames`` time points, ``--interval`` seconds apart; 0 runs
the camera's hardware sequence at its own rate) on a background thread
(:class:`~live_pssr.live.runners.MDARunner`); a :class:`~live_pssr.live.session.LiveSession`
connected to the core stores and enhances every frame; the main thread shows the viewer or a
progress line, then the summary.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError, StoreWriteError
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


def parse_roi(text: str) -> tuple[int, int, int, int]:
    """``"X,Y,W,H"`` -> ints (ConfigError otherwise)."""
    try:
        x, y, w, h = (int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise ConfigError(f"--roi {text!r} is not X,Y,WIDTH,HEIGHT",
                          "give four integers in camera pixels, e.g. --roi 0,0,512,512") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ConfigError(f"--roi {text!r} has a negative origin or an empty size",
                          "give X,Y >= 0 and WIDTH,HEIGHT > 0")
    return x, y, w, h


def apply_settings(core: Any, exposure_ms: float | None, binning: int | None,
                   roi: tuple[int, int, int, int] | None, presets: list[str]) -> None:
    """Set presets, binning, ROI and exposure on ``core``; Micro-Manager errors -> ConfigError."""
    camera = core.getCameraDevice()
    for item in presets:
        group, _, preset = item.partition("=")
        try:
            core.setConfig(group, preset)
        except Exception as err:
            groups = {g: list(core.getAvailableConfigs(g)) for g in core.getAvailableConfigGroups()}
            raise ConfigError(f"--preset {item!r}: {err}",
                              f"use GROUP=PRESET with one of {groups or 'no groups defined'}") from None
    if binning is not None:
        try:
            core.setProperty(camera, "Binning", binning)
        except Exception:
            allowed = list(core.getAllowedPropertyValues(camera, "Binning"))
            raise ConfigError(f"camera {camera} does not support binning {binning}",
                              f"use one of {allowed or ['1']}") from None
    if roi is not None:
        try:
            core.setROI(*roi)
        except Exception as err:
            raise ConfigError(f"--roi {roi} does not fit camera {camera} "
                              f"({core.getImageWidth()} x {core.getImageHeight()} px): {err}",
                              "give X,Y,WIDTH,HEIGHT inside the sensor (binned pixels)") from None
    if exposure_ms is not None:
        core.setExposure(float(exposure_ms))


def command(
    simulate: Annotated[bool, typer.Option(
        "--simulate", help="A real MMCore with live-pssr's simulated microscope as its camera.")] = False,
    mm_config: Annotated[Path | None, typer.Option(
        "--mm-config", help="Micro-Manager hardware configuration (.cfg) of a real system.")] = None,
    mm_path: Annotated[Path | None, typer.Option(
        "--mm-path", help="Micro-Manager installation folder (device adapters) for --mm-config.")] = None,
    frames: Annotated[int, typer.Option("--frames", "-n", min=1, help="Time points to acquire.")] = 100,
    interval: Annotated[float, typer.Option(
        min=0.0, help="Seconds between time points (0: the camera's own rate, hardware-sequenced).")] = 0.0,
    exposure: Annotated[float | None, typer.Option(
        min=0.001, help="Exposure (ms). Default: the camera's (simulated: 50 ms).")] = None,
    roi: Annotated[str | None, typer.Option(help="Camera ROI X,Y,WIDTH,HEIGHT (pixels).")] = None,
    binning: Annotated[int | None, typer.Option(min=1, help="Camera binning.")] = None,
    preset: Annotated[list[str] | None, typer.Option(
        help="Config preset GROUP=PRESET to set before acquiring (repeatable).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output OME-Zarr store.")] = Path(
        "runs/acquire.ome.zarr"),
    headless: HeadlessOpt = False,
    policy: PolicyOpt = Policy.PREVIEW,
    model: ModelOpt = "mito-sr4-fast",
    overwrite: OverwriteOpt = False,
    engine: EngineOpt = "auto",
    screenshot: ScreenshotOpt = None,
    size: Annotated[int, typer.Option(min=8, help="--simulate: sensor size (square, pixels).")] = 256,
    laser_power: Annotated[float, typer.Option(
        min=1e-4, help="--simulate: relative laser power at 50 ms (1 = high laser).")] = 0.05,
    seed: Annotated[int, typer.Option(min=0, help="--simulate: scene and noise seed.")] = 0,
    fsync: FsyncOpt = "off",
) -> None:
    """Acquire a time-lapse through Micro-Manager with live enhancement (real system or simulated)."""
    import useq
    from rich.console import Console

    from ..live.driver import drive_run
    from ..live.runners import MDARunner
    from ..live.session import LiveSession
    from ..modelio import load_model

    if simulate == (mm_config is not None):
        raise ConfigError("choose the microscope: --simulate or --mm-config FILE (exactly one)",
                          "live-pssr acquire --simulate, or live-pssr acquire --mm-config MMConfig.cfg")
    fsync_setting = parse_fsync(fsync)
    if screenshot is not None:
        from ..store.claim import check_output_file

        check_output_file(screenshot, "--screenshot", "viewer.png")
    from ..live.driver import use_viewer

    use_viewer(headless, screenshot)  # a --screenshot without Qt fails before the microscope starts
    console = Console(stderr=True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    loaded = load_model(model)
    roi_box = parse_roi(roi) if roi else None
    if simulate:
        from ..mm.core import simulated_core
        from ..sim import MicroscopeConfig

        config = MicroscopeConfig(height=size, width=size, upscale=loaded.spec.upscale,
                                  laser_power=laser_power, seed=seed)
        core = simulated_core(config, exposure_ms=50.0, reference_exposure_ms=50.0)
        system = {"system": "simulated", "microscope": asdict(config)}
    else:
        from ..mm.core import load_core

        core = load_core(mm_config, mm_path)
        system = {"system": "micro-manager", "config_file": str(Path(mm_config).resolve())}
    apply_settings(core, exposure, binning, roi_box, preset or [])
    shape = (int(core.getImageHeight()), int(core.getImageWidth()))
    exposure_ms = float(core.getExposure())
    session = LiveSession(
        model=loaded, store=out, policy=policy, engine=engine, overwrite=overwrite,
        frame_interval_s=interval or exposure_ms / 1e3, fsync=fsync_setting,
        run_metadata={"command": {"name": "acquire", "frames": frames, "interval_s": interval, **system}},
    )
    try:
        with console.status(f"preparing the model for {shape[1]} x {shape[0]} frames (engine {engine})"):
            session.prepare(shape)
    except BaseException:
        session.stop()  # releases (and removes, still empty) the claimed store path
        raise
    session.connect(core, warm_up=False)
    console.print(f"camera {core.getCameraDevice()} {shape[1]} x {shape[0]} px, exposure {exposure_ms:g} ms, "
                  f"{frames} frames every {interval:g} s | model {loaded.model_id} (x{loaded.spec.upscale}), "
                  f"engine {session.enhancer.engine_name}, policy {policy}")
    sequence = useq.MDASequence(time_plan={"interval": interval, "loops": frames})
    runner = MDARunner(core, sequence, stats_source=session).start()
    outcome = drive_run(session, runner, headless=headless, screenshot=screenshot, console=console)
    if runner.error is not None:
        raise runner.error
    if session.failed:
        summary = outcome.summary
        raise StoreWriteError(summary.errors[0] if summary.errors else "the run store failed",
                              "free disk space or choose another --out; frames committed before are kept")
    exit_with(outcome.exit_code)
