"""Options and the run loop shared by the live commands (``demo``, ``acquire``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ..pipeline import Policy

log = logging.getLogger("live_pssr")

HeadlessOpt = Annotated[bool, typer.Option("--headless", help="No viewer window.")]
PolicyOpt = Annotated[
    str, typer.Option("--policy", help="preview: enhance the newest frame, skip stale ones; "
                      "complete: enhance every frame (backlog worked off after acquisition).")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Shipped model name or .safetensors path.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output store.")]
EngineOpt = Annotated[str, typer.Option(
    "--engine", help="auto (fastest correct), torch, compile, onnxruntime, openvino, tensorrt.")]
ScreenshotOpt = Annotated[Path | None, typer.Option(
    "--screenshot", help="Write a PNG of the viewer window (works without a display).")]


def has_display() -> bool:
    """True where a Qt window can be shown to a person."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt"


def build_enhancer(model: Any, frame_shape: tuple[int, int], engine: str) -> Any:
    """Load ``model`` (name, path or LoadedModel) and pick its engine for ``frame_shape``."""
    from ..engines import select_engine
    from ..enhancer import Enhancer
    from ..modelio import LoadedModel, load_model

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    return Enhancer(loaded, select_engine(loaded, frame_shape, name=engine))


def run_live(
    *, source: Any, model: Any, engine: str, out: Path, overwrite: bool, policy: str,
    frames: int | None, headless: bool, screenshot: Path | None, acquisition: dict[str, Any],
) -> None:
    """Source -> pipeline -> store (+ viewer), with a progress line and the end summary."""
    from rich.console import Console

    from ..pipeline import LivePipeline, StoreSpec
    from ..runner import SourceRunner

    console = Console(stderr=True)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pol = Policy(policy)
    enhancer = build_enhancer(model, source.shape, engine)
    console.print(f"model {enhancer.model.model_id} (x{enhancer.upscale}, {enhancer.in_frames} frame(s)), "
                  f"engine {enhancer.engine_name}, policy {pol.value}")
    pipeline = LivePipeline(
        enhancer,
        StoreSpec(out, overwrite=overwrite, pixel_size_um=source.pixel_size_um,
                  frame_interval_s=1.0 / source.fps if source.fps else 0.0,
                  run_metadata={"acquisition": acquisition}),
        policy=pol,
    )
    runner = SourceRunner(source, pipeline, frames).start()
    drive_run(pipeline, runner, headless=headless, screenshot=screenshot, console=console)
    if runner.error is not None:
        raise runner.error
    if pipeline.failed:
        raise pipeline._error  # noqa: SLF001 - surfaced once, after the store is closed


def drive_run(run: Any, runner: Any, *, headless: bool, screenshot: Path | None, console: Any) -> Any:
    """Show the viewer (or a progress line) until ``runner`` is done, then stop ``run``.

    ``run`` is a LivePipeline or a LiveSession (``latest``/``stats``/``stop``); ``runner`` follows
    the runner protocol (``done``, ``stop``, ``pause``). Whatever happens in the viewer or the
    loop, acquisition is stopped and the store closed; returns the run's summary.
    """
    use_viewer = not headless and (has_display() or screenshot is not None)
    if not headless and not use_viewer:
        console.print("no display found: running headless (use --screenshot PATH to render the viewer)")
    interrupted = False
    try:
        if use_viewer:
            from ..viewer import run_live_viewer

            run_live_viewer(run, runner, screenshot=screenshot)
        else:
            _progress_loop(runner, console)
    except KeyboardInterrupt:
        interrupted = True
        console.print("\ninterrupted: stopping acquisition, closing the store")
    finally:  # whatever happened in the viewer or the loop: stop acquiring, close the store
        runner.stop()
        runner.done.wait()
        summary = _stop_with_progress(run, console, interrupted)
        console.print(summary.text())
    return summary


def _progress_loop(runner: Any, console: Any) -> None:
    from rich.live import Live

    with Live(console=console, refresh_per_second=4, transient=False) as live:
        runner.wait(lambda st: live.update(st.line()), interval_s=0.25)


def _stop_with_progress(pipeline: Any, console: Any, interrupted: bool) -> Any:
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = None

        def progress(done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task("enhancing the backlog from disk (Ctrl-C leaves it for later)",
                                    total=total)
            bar.update(task, completed=done)

        return pipeline.stop(progress=progress, interrupted=interrupted)
