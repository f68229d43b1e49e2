"""``live-pssr enhance``: enhance a recorded tif / zarr / OME-Zarr file offline (optionally on dask).

``--consistency`` / ``--tta`` check every frame and write the maps and a JSON report beside the
output (a run store keeps its consistency maps inside; :mod:`live_pssr.offline.checks`).
``--scheduler tcp://HOST:PORT`` runs on a dask.distributed cluster (``docs/dask.md``); the
progress bar follows its blocks as they complete, as it does in-process.

Errors (bad input, a damaged file, an output path that may not be replaced, a full disk) are
:class:`~live_pssr.errors.LivePSSRError` errors: the CLI prints the problem and the fix and exits 2; a
failed run leaves no output that looks complete (see :mod:`live_pssr.offline.outputs`).
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from ._common import EngineOpt


class OutDtype(enum.StrEnum):
    """``--out-dtype``: the dtypes of an enhanced output (:func:`~live_pssr.offline.enhance_file`)."""

    FLOAT32 = "float32"
    UINT16 = "uint16"
    UINT8 = "uint8"


def command(
    input_path: Annotated[Path, typer.Argument(
        metavar="INPUT",
        help="A 2-D or T,Y,X tif (ImageJ/OME), a zarr array, an OME-Zarr image or a run store.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Output: .tif/.tiff (ImageJ), .ome.tif, .zarr (same layout as a zarr input), "
        "or .ome.zarr (a run store with raw + enhanced).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Shipped model name or .safetensors path.")
                     ] = "mito-sr4-fast",
    engine: EngineOpt = "auto",
    device: Annotated[str | None, typer.Option(
        "--device", metavar="<cpu|cuda>", help="Device of the engine (default: the engine's).")] = None,
    tile: Annotated[int, typer.Option(
        "--tile", min=0, help="Frames larger than this (pixels) are enhanced in tiles; 0: never tile.")
    ] = 1024,
    overlap: Annotated[int | None, typer.Option(
        "--overlap", min=0, help="Tile overlap in input pixels (default: exact, 2x the receptive field).")
    ] = None,
    out_dtype: Annotated[OutDtype | None, typer.Option(
        "--out-dtype", case_sensitive=False, help="float32 (values in input units), uint16 or uint8 "
        "(rescaled when needed); default: the input's dtype.")] = None,
    channel: Annotated[int | None, typer.Option(
        "--channel", "-c", min=0, help="Channel to enhance in multi-channel data (0-based).")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", "-w", min=1, help="Parallel workers on this machine; 1 runs in-process without dask.")
    ] = 1,
    scheduler: Annotated[str, typer.Option(
        "--scheduler", metavar="<threads|processes|tcp://HOST:PORT>",
        help="With --workers > 1: dask threads or processes. A dask.distributed scheduler's address runs on "
        "that cluster's workers (every worker must see the input, output and model paths; docs/dask.md).")
    ] = "threads",
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="Torch threads per worker (default: cores / workers; on a cluster 1). "
        "The same value gives identical output on every scheduler.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing live-pssr output (recognised by its metadata); never "
        "another file or folder, never the input.")] = False,
    consistency: Annotated[bool, typer.Option(
        "--consistency", help="Check every frame against its raw frame: signed consistency maps "
        "(OUT.consistency.tif/.zarr, raw size) and per-frame scores and flags (OUT.consistency.json).")
    ] = False,
    tta: Annotated[bool, typer.Option(
        "--tta", help="Also the model's disagreement with itself under flips/rotations "
        "(OUT.tta.tif/.zarr, enhanced size; 4-8 extra enhancements per frame).")] = False,
    camera: Annotated[Path | None, typer.Option(
        "--camera", help="--consistency: the camera's noise from a `live-pssr calibrate` YAML "
        "(default: estimated from each frame).")] = None,
    psf_sigma: Annotated[float | None, typer.Option(
        "--psf-sigma", help="--consistency: forward blur in enhanced pixels (default: from the model's "
        "training data).")] = None,
) -> None:
    """Enhance recorded data offline: any frame size (tiled without seams), single- or multi-frame models."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..offline import enhance_file

    console = Console(stderr=True, soft_wrap=True)
    bar = Progress(TextColumn("enhancing"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    task = bar.add_task("enhance", total=None)

    def started(info: dict) -> None:
        n, h, w = info["input_shape"]
        _, oh, ow = info["output_shape"]
        tiling = (f"tiles of {info['tile']} px, overlap {info['overlap']}" if info["tile"]
                  else "whole frames")
        console.print(f"{input_path} ({info['source_axes']}, {n} x {h} x {w}) -> {output} "
                      f"({n} x {oh} x {ow} {info['dtype']})")
        console.print(f"model {info['model']} (x{info['upscale']}, {info['in_frames']} frame(s)), "
                      f"engine {info['engine']}, {tiling}, {info['workers']} worker(s) ({info['scheduler']})")
        if info.get("dashboard"):
            console.print(f"dask dashboard: {info['dashboard']}")
        bar.update(task, total=n)
        bar.start()

    def progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    try:
        result = enhance_file(
            input_path, output, model=model, engine=engine, device=device, tile=tile or None,
            overlap=overlap, out_dtype=None if out_dtype is None else str(out_dtype), channel=channel,
            workers=workers, scheduler=scheduler, overwrite=overwrite, threads=threads, progress=progress,
            on_start=started,
            consistency=consistency, tta=tta, camera=camera, psf_sigma_px=psf_sigma,
        )
    finally:
        bar.stop()
    px = f", {result.pixel_size_um:.4g} um/pixel" if result.pixel_size_um else ""
    console.print(f"wrote {result.output} ({result.kind}, {result.dtype}{px}): {result.frames} frame(s) "
                  f"in {result.seconds:.1f} s ({result.fps:.2f} frames/s)")
    if result.checks is not None:
        from ..offline.checks import describe

        c = result.checks
        console.print(describe(c["summary"]))
        maps = ", ".join(str(p) for p in (c["consistency_maps"], c["tta_maps"]) if p is not None)
        console.print(f"wrote {maps} and {c['report']}")
