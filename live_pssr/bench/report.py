"""Benchmark output: a table on the terminal and JSON rows with the machine they ran on."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..engines.cache import machine_info


def report(title: str, rows: list[dict[str, Any]], json_path: str | Path | None,
           columns: list[str] | None = None) -> dict[str, Any]:
    """Print ``rows`` as a table and write ``{"benchmark", "machine", "time", "rows"}`` JSON."""
    from rich.console import Console
    from rich.table import Table

    machine = machine_info()
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    table = Table(title=f"{title} — {machine['cpu']}, {machine['cores']} cores, gpu={machine['gpu']}")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[_fmt(r.get(c)) for c in columns])
    console = Console(width=max(160, Console().width))  # wide tables stay readable in logs/pipes
    console.print(table)
    doc = {"benchmark": title, "machine": machine, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "rows": rows}
    if json_path:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, default=str))
        console.print(f"wrote {path}")
    return doc


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
