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

    from ..errors import ModelFileError
    from ..modelio import available_models, read_spec, resolve_model

    console = Console()
    if name is not None:
        path = resolve_model(name)
        spec = read_spec(path)  # a damaged header is an error here, even with a card beside it
        card = path.with_suffix(".md")
        console.print(Markdown(card.read_text(encoding="utf-8")) if card.is_file() else spec.to_json())
        return
    table = Table(title="models")
    for col in ("name", "architecture", "upscale", "frames", "size", "path"):
        table.add_column(col)
    broken = []
    for model in available_models():
        path = resolve_model(model)
        try:
            spec = read_spec(path)
        except ModelFileError as err:  # one damaged file in $LIVE_PSSR_MODELS: list it, list the rest
            broken.append(err)
            table.add_row(model, "[red]unusable[/red]", "-", "-", f"{path.stat().st_size / 1e6:.1f} MB",
                          str(path))
            continue
        table.add_row(model, spec.arch, f"x{spec.upscale}", str(spec.in_frames),
                      f"{path.stat().st_size / 1e6:.1f} MB", str(path))
    console.print(table)
    for err in broken:
        console.print(f"[yellow]unusable: {err.message}[/yellow]", soft_wrap=True)
