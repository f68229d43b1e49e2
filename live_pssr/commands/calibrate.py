"""``live-pssr calibrate FRAMES``: fit the camera model to real low-laser frames of the user's microscope.

Reads a (T, Y, X) stack (tif, zarr/OME-Zarr, npy; ideally 8+ repeats of a static field at the
laser power used live), fits gain, offset and read noise by photon transfer
(:mod:`live_pssr.calibrate`), checks the fit by re-synthesising the stack, and writes the camera
crappifier config YAML (train with ``crappifier: {kind: file, path: calibration.yaml}``) and a PNG
plot of the mean-variance curve.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError
from ..store.claim import check_output_file


class Method(enum.StrEnum):
    """``--method``: the photon-transfer fits of :func:`live_pssr.calibrate.fit_photon_transfer`."""

    AUTO = "auto"
    TEMPORAL = "temporal"
    SPATIAL = "spatial"


def command(
    frames: Annotated[Path, typer.Argument(help="Real low-laser camera frames: tif stack / zarr (T, Y, X).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Crappifier config YAML to write.")] = Path(
        "calibration.yaml"),
    plot: Annotated[Path | None, typer.Option(help="Plot PNG (default: OUT with .png).")] = None,
    method: Annotated[Method, typer.Option(
        case_sensitive=False,
        help="temporal: repeats of a static field; spatial: local statistics of the frames; auto: temporal "
        "with enough still frames, else spatial.")] = Method.AUTO,
    dark: Annotated[Path | None, typer.Option(help="Dark frames (shutter closed), if any.")] = None,
    offset: Annotated[float | None, typer.Option(min=0.0, help="Known camera offset in ADU.")] = None,
    read_noise: Annotated[float | None, typer.Option(min=0.0, help="Known read noise in electrons.")] = None,
    bit_depth: Annotated[int | None, typer.Option(
        min=1, max=32, help="Camera bit depth (default: from the data).")] = None,
    scale: Annotated[int, typer.Option(help="Super-resolution factor written to the config.")] = 4,
    psf_sigma_px: Annotated[float, typer.Option(help="Extra PSF blur (high-res px) for the config.")] = 0.0,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the validation synthesis.")] = 0,
) -> None:
    """Fit gain, offset and read noise from real frames; write a camera crappifier config and a plot."""
    from rich.console import Console
    from rich.table import Table

    from ..calibrate import fit_photon_transfer, plot_fit, validate_fit, write_config
    from ..crappify import make_crappifier
    from ..datasets import load_image_stack

    console = Console()
    plot = plot if plot is not None else out.with_suffix(".png")
    check_output_file(out, "--out", "calibration.yaml")
    check_output_file(plot, "--plot", "calibration.png")
    stack = _frames(load_image_stack(frames), frames, "FRAMES")
    dark_stack = _frames(load_image_stack(dark), dark, "--dark") if dark is not None else None
    with console.status(f"fitting photon transfer on {stack.shape} frames"):
        fit = fit_photon_transfer(stack, method=str(method), dark=dark_stack, offset=offset,
                                  read_noise=read_noise, bit_depth=bit_depth)
        validation = validate_fit(stack, fit, seed=seed) if fit.method == "temporal" else None
    write_config(fit, out, scale=scale, psf_sigma_px=psf_sigma_px, source=str(frames), validation=validation)
    make_crappifier({"kind": "file", "path": str(out)})  # the file we wrote must load
    plot_fit(fit, plot, validation, title=f"{Path(frames).name}: photon transfer")

    table = Table(title=f"camera calibration: {frames}", show_header=False)
    rows = [
        ("method", f"{fit.method} ({fit.n_frames} frames, {fit.curve_mean.size} bins)"),
        ("gain", f"{fit.gain:.4f} ADU/e-"),
        ("offset", f"{fit.offset:.3f} ADU  [{fit.offset_source}]"),
        ("read noise", f"{fit.read_noise:.3f} e-"),
        ("R^2", f"{fit.r2:.5f}"),
        ("photons", f"{fit.photons:.3f} e-/pixel (mean over the field)"),
        ("bit depth", str(fit.bit_depth)),
    ]
    if fit.motion is not None:
        rows.append(("motion check", f"lag-1 autocorrelation {fit.motion:.3f} (static < 0.2)"))
    if validation is not None:
        rows.append(("re-synthesis", f"variance error median {validation['median_abs_rel_err']:.2%}, "
                     f"max {validation['max_abs_rel_err']:.2%}, "
                     f"{validation['frac_bins_within_5pct']:.0%} of bins within 5 %"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    for note in fit.notes:
        console.print(f"[yellow]note: {note}[/yellow]")
    console.print(f"wrote {out} (crappifier config: train with crappifier {{kind: file, path: {out}}})")
    console.print(f"wrote {plot}")


def _frames(stack: Any, path: Path, option: str) -> Any:
    """A stack with at least one frame (an empty one cannot be fitted: say so, not a numpy error)."""
    if stack.ndim < 2 or stack.shape[0] == 0 or stack.size == 0:
        raise ConfigError(f"{option} {path} holds no frames (shape {tuple(stack.shape)})",
                          "pass a stack of real camera frames: ideally 20-50 repeats of a still field")
    return stack


