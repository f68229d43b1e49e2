"""``live-pssr acquire``: a time-lapse on a Micro-Manager core -> live pipeline -> store (+ viewer).

The core is a real system (``--mm-config FILE``: pymmcore-plus loads the hardware configuration)
or a real MMCore with live-pssr's simulated microscope as a Python camera (``--simulate``). The
acquisition is a pymmcore-plus MDA (``--frames`` time points, ``--interval`` seconds apart; 0 runs
the camera's hardware sequence at its own rate; or ``--sequence FILE``: a useq-schema
``MDASequence`` in YAML or JSON, as ``mmcore run`` takes, whose channels, z, positions make a
series of stores, one per stream) on a background thread
(:class:`~live_pssr.live.runners.MDARunner`); a :class:`~live_pssr.live.session.LiveSession`
connected to the core stores and enhances every frame; the main thread shows the viewer or a
progress line, then the summary.
"""

from __future__ import annotations

import json
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
from ._consistency import CalibrationOpt, ConsistencyEveryOpt, ConsistencyOpt


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


SEQUENCE_SUFFIXES = (".yaml", ".yml", ".json")
SEQUENCE_HINT = ("write a useq-schema MDASequence as YAML or JSON, e.g. "
                 "'time_plan: {interval: 0, loops: 10}' and 'channels: [LowLaser]' "
                 "(fields: https://pymmcore-plus.github.io/useq-schema/)")


def load_sequence(path: Path) -> Any:
    """A useq-schema ``MDASequence`` from a ``.yaml``/``.yml``/``.json`` file (ConfigError: the problem)."""
    import pydantic
    import useq
    import yaml

    option = f"--sequence {path}"
    if not path.is_file():
        raise ConfigError(f"{option}: {'a folder, not a file' if path.is_dir() else 'no such file'}",
                          f"pass a sequence file ({', '.join(SEQUENCE_SUFFIXES)}); {SEQUENCE_HINT}")
    if path.suffix.lower() not in SEQUENCE_SUFFIXES:
        raise ConfigError(f"{option}: {path.suffix or 'no suffix'} is not a sequence file type",
                          f"save the sequence as YAML (.yaml, .yml) or JSON (.json); {SEQUENCE_HINT}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise ConfigError(f"{option} is not readable {kind}: {' '.join(str(err).split())}",
                          f"fix the file at the place named; {SEQUENCE_HINT}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{option} holds {type(data).__name__ if data is not None else 'nothing'}, "
                          "not an MDASequence mapping", SEQUENCE_HINT)
    fields = set(useq.MDASequence.model_fields)
    unknown = sorted(map(str, set(data) - fields))
    if unknown:  # useq ignores unknown fields: a typo would silently drop a whole plan
        raise ConfigError(f"{option}: unknown field(s) {', '.join(unknown)}",
                          f"use the MDASequence fields: {', '.join(sorted(fields))}")
    try:
        sequence = useq.MDASequence.model_validate(data)
    except pydantic.ValidationError as err:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise ConfigError(f"{option} is not a valid MDASequence: {'; '.join(problems[:4])}{more}",
                          f"fix the field(s) named; {SEQUENCE_HINT}") from None
    if not any(True for _ in sequence):
        raise ConfigError(f"{option} describes no images (no plan in it acquires anything)", SEQUENCE_HINT)
    return sequence


def check_sequence_options(ctx: typer.Context, sequence: Any, path: Path, exposure: float | None,
                           presets: list[str]) -> None:
    """Options that say the same as the sequence file cannot be given with it (ConfigError)."""
    given = [f"--{name}" for name in ("frames", "interval")  # typed (or from the environment)
             if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")]
    if given:
        raise ConfigError(f"{' and '.join(given)} cannot be combined with --sequence {path}: the file's "
                          "time_plan sets the time points",
                          f"leave out {' and '.join(given)}, or edit time_plan in {path} "
                          "(e.g. time_plan: {interval: 0.5, loops: 20})")
    if exposure is not None and any(ch.exposure is not None for ch in sequence.channels):
        raise ConfigError(f"--exposure {exposure:g} conflicts with --sequence {path}: its channels set "
                          "their own exposure", f"leave out --exposure, or remove 'exposure' from the "
                          f"channels in {path}")
    groups = {ch.group for ch in sequence.channels}
    for item in presets:
        if item.partition("=")[0] in groups:
            raise ConfigError(f"--preset {item} conflicts with --sequence {path}: its channels set the "
                              f"{item.partition('=')[0]} group",
                              f"leave out --preset {item}, or list the channels you want in {path}")


def check_sequence_devices(core: Any, sequence: Any, path: Path) -> None:
    """The sequence's channels, stages and focus exist on ``core`` (ConfigError before anything starts)."""
    for ch in sequence.channels:
        if not core.isConfigDefined(ch.group, ch.config):
            presets = {g: list(core.getAvailableConfigs(g)) for g in core.getAvailableConfigGroups()}
            raise ConfigError(f"--sequence {path}: channel {ch.config!r} of group {ch.group!r} is not "
                              "defined on this microscope",
                              f"use one of {presets or 'no groups defined'} (group: channels' 'group')")
    needs_xy = any(p.x is not None or p.y is not None for p in sequence.stage_positions) or (
        sequence.grid_plan is not None)
    needs_z = sequence.z_plan is not None or any(p.z is not None for p in sequence.stage_positions)
    for needed, device, what in (
        (needs_xy, core.getXYStageDevice(), "an XY stage (stage_positions x/y, grid_plan)"),
        (needs_z, core.getFocusDevice(), "a focus drive (z_plan, z)"),
    ):
        if needed and not device:
            raise ConfigError(f"--sequence {path} needs {what}, and this microscope has none",
                              f"remove those plans from {path}, or load a configuration with the device")


def command(
    ctx: typer.Context,
    simulate: Annotated[bool, typer.Option(
        "--simulate", help="A real MMCore with live-pssr's simulated microscope as its camera.")] = False,
    mm_config: Annotated[Path | None, typer.Option(
        "--mm-config", help="Micro-Manager hardware configuration (.cfg) of a real system.")] = None,
    mm_path: Annotated[Path | None, typer.Option(
        "--mm-path", help="Micro-Manager installation folder (device adapters) for --mm-config.")] = None,
    frames: Annotated[int, typer.Option("--frames", "-n", min=1, help="Time points to acquire.")] = 100,
    interval: Annotated[float, typer.Option(
        min=0.0, help="Seconds between time points (0: the camera's own rate, hardware-sequenced).")] = 0.0,
    sequence_file: Annotated[Path | None, typer.Option(
        "--sequence", metavar="FILE.yaml|json",
        help="A useq-schema MDASequence (YAML/JSON, as `mmcore run` takes) instead of --frames/--interval: "
        "channels, z, positions each become a stream (a store in --out).")] = None,
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
    consistency: ConsistencyOpt = True,
    consistency_every: ConsistencyEveryOpt = 1,
    calibration: CalibrationOpt = None,
) -> None:
    """Acquire a time-lapse (or a useq-schema sequence) through Micro-Manager with live enhancement."""
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
    if sequence_file is not None:
        sequence = load_sequence(sequence_file)
        check_sequence_options(ctx, sequence, sequence_file, exposure, preset or [])
    else:
        sequence = useq.MDASequence(time_plan={"interval": interval, "loops": frames})
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
        from ..sim import MicroscopeConfig, SimulatedMicroscope

        config = MicroscopeConfig(height=size, width=size, upscale=loaded.spec.upscale,
                                  laser_power=laser_power, seed=seed)
        core = simulated_core(config, exposure_ms=50.0, reference_exposure_ms=50.0)
        system = {"system": "simulated", "microscope": asdict(config)}
        sim_camera = SimulatedMicroscope(config).camera  # the consistency check's noise model
    else:
        from ..mm.core import load_core

        core = load_core(mm_config, mm_path)
        system = {"system": "micro-manager", "config_file": str(Path(mm_config).resolve())}
    apply_settings(core, exposure, binning, roi_box, preset or [])
    shape = (int(core.getImageHeight()), int(core.getImageWidth()))
    exposure_ms = float(core.getExposure())
    plan: dict[str, Any] = {"frames": frames, "interval_s": interval}
    if sequence_file is not None:
        check_sequence_devices(core, sequence, sequence_file)
        step = getattr(sequence.time_plan, "interval", None)
        interval = step.total_seconds() if step is not None else 0.0
        frames = sum(1 for _ in sequence)
        plan = {"frames": frames, "interval_s": interval, "sequence_file": str(sequence_file.resolve()),
                "sequence": sequence.model_dump(mode="json", exclude_unset=True)}
    session = LiveSession(
        model=loaded, store=out, policy=policy, engine=engine, overwrite=overwrite,
        frame_interval_s=interval or exposure_ms / 1e3, fsync=fsync_setting,
        consistency=consistency, consistency_every=consistency_every,
        camera=calibration if calibration is not None or not simulate else sim_camera,
        run_metadata={"command": {"name": "acquire", **plan, **system}},
    )
    try:
        with console.status(f"preparing the model for {shape[1]} x {shape[0]} frames (engine {engine})"):
            session.prepare(shape)
    except BaseException:
        session.stop()  # releases (and removes, still empty) the claimed store path
        raise
    session.connect(core, warm_up=False)
    what = (f"{frames} frames every {interval:g} s" if sequence_file is None else
            f"sequence {sequence_file.name}: {frames} frames ({_sizes(sequence)})")
    console.print(f"camera {core.getCameraDevice()} {shape[1]} x {shape[0]} px, exposure {exposure_ms:g} ms, "
                  f"{what} | model {loaded.model_id} (x{loaded.spec.upscale}), "
                  f"engine {session.enhancer.engine_name}, policy {policy}")
    runner = MDARunner(core, sequence, stats_source=session).start()
    outcome = drive_run(session, runner, headless=headless, screenshot=screenshot, console=console)
    if runner.error is not None:
        raise runner.error
    if session.failed:
        summary = outcome.summary
        raise StoreWriteError(summary.errors[0] if summary.errors else "the run store failed",
                              "free disk space or choose another --out; frames committed before are kept")
    exit_with(outcome.exit_code)


def _sizes(sequence: Any) -> str:
    """``t=3, c=2`` (the axes a sequence acquires along)."""
    return ", ".join(f"{axis}={n}" for axis, n in sequence.sizes.items() if n) or "one image"
