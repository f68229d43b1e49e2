"""``live-pssr export``: write a model as a BioImage Model Zoo (bioimage.io) package.

``--format bioimageio`` builds the package with bioimageio.spec (:mod:`live_pssr.bioimageio.export`),
reporting each step; ``--test`` (default) then runs bioimageio.core's ``test_model`` on it, offline.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class ExportFormat(StrEnum):
    bioimageio = "bioimageio"


def command(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Shipped model name or .safetensors path.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The package to write (MODEL.zip).")],
    format: Annotated[
        ExportFormat,
        typer.Option(  # noqa: A002 - the option's name
            "--format", case_sensitive=False, help="Package format."
        ),
    ] = ExportFormat.bioimageio,
    test_size: Annotated[
        int,
        typer.Option(
            "--test-size", min=8, max=63, help="Test tensors: simulated frames of this many pixels."
        ),
    ] = 48,
    test: Annotated[
        bool,
        typer.Option(
            "--test/--no-test",
            help="Run bioimageio.core's test_model on the package (needs bioimageio.core).",
        ),
    ] = True,
) -> None:
    """Export a model to the BioImage Model Zoo format (ONNX + PyTorch weights, test tensors, cover, card)."""
    from rich.console import Console

    from ..bioimageio import export_package
    from ..bioimageio.importer import check_package

    console = Console(stderr=True, soft_wrap=True)
    with console.status("exporting") as status:

        def progress(step: str) -> None:
            console.print(f"  {step}")
            status.update(step)

        result = export_package(model, output, test_size=test_size, progress=progress)
        for note in result.notes:
            console.print(f"[yellow]note: {note}[/yellow]")
        console.print(
            f"wrote {result.path} ({result.model_id}; weights {', '.join(result.weights)}; test "
            f"{'x'.join(map(str, result.test_input_shape))} -> "
            f"{'x'.join(map(str, result.test_output_shape))}; ONNX max relative error "
            f"{result.onnx_max_rel_err:.2g})"
        )
        if test:
            status.update("bioimageio.core test_model")
            console.print("  bioimageio.core test_model (every weight format, test tensors and sizes)")
            check_package(result.path)
            console.print(f"bioimageio test passed: {result.path}")
