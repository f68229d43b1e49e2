"""``live-pssr info STORE``: what a run store holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def command(
    store: Annotated[Path, typer.Argument(help="A run store (.ome.zarr folder).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Summarise a store: frames, shapes, model, statuses, latency, size."""
    from rich.console import Console
    from rich.table import Table

    from ..store import open_store

    summary = open_store(store).summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    table = Table(title=str(store), show_header=False)
    for key, value in summary.items():
        if key in ("run_summary", "path"):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(key, "" if value is None else str(value))
    Console().print(table)
    if not summary["closed_cleanly"]:
        Console().print(f"[yellow]the run did not close cleanly (crash or kill); {summary['frames']} "
                        "frames were committed and are readable[/yellow]")
