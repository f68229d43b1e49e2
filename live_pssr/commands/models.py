"""``live-pssr models``: the models this installation can use, with what each is for."""

from __future__ import annotations

from typing import Annotated

import typer


def command(
    name: Annotated[str | None, typer.Argument(help="Show this model's card.")] = None,
) -> None:
    """List shipped and user models (``$LIVE_PSSR_MODELS``), or print one model's card."""
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.table import Table

    from ..modelio import available_models, read_spec, resolve_model

    console = Console()
    if name is not None:
        path = resolve_model(name)
        card = path.with_suffix(".md")
        console.print(Markdown(card.read_text()) if card.is_file() else read_spec(path).to_json())
        return
    table = Table(title="models")
    for col in ("name", "architecture", "upscale", "frames", "size", "path"):
        table.add_column(col)
    for model in available_models():
        path = resolve_model(model)
        spec = read_spec(path)
        table.add_row(model, spec.arch, f"x{spec.upscale}", str(spec.in_frames),
                      f"{path.stat().st_size / 1e6:.1f} MB", str(path))
    console.print(table)
