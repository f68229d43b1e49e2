"""``live-pssr info STORE``: what a run store holds.

``STORE`` is one run store (``demo``, ``acquire``, ``enhance`` to OME-Zarr, a time-lapse
``LiveSession``), or the root of a series run (a multi-dimensional ``LiveSession``: a zarr group
whose ``live_pssr_series`` attributes index one run store per stream). For a series, ``info``
shows the session and one row per stream (its axes, frames, statuses, path) and points to the
stream stores, which ``info`` and ``view`` open one at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def command(
    store: Annotated[Path, typer.Argument(help="A run store (.ome.zarr folder) or a series run's folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Summarise a store: frames, shapes, model, statuses, latency, size (or each stream of a series)."""
    from rich.console import Console
    from rich.table import Table

    from ..store import open_store
    from ..store.reader import series_streams

    if (store / "zarr.json").is_file() and series_streams(store) is not None:
        _series(store, as_json)
        return
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
    check = summary.get("consistency")
    if check and check.get("flagged"):
        Console().print(f"[yellow]{check['flagged']} of {check['checked']} checked frame(s) hold structure "
                        f"the raw frames do not support (flagged: {check['flagged_frames']}); see the "
                        "consistency map (image 2, `live-pssr view`)[/yellow]")
    if not summary["closed_cleanly"]:
        Console().print(f"[yellow]the run did not close cleanly (crash or kill); {summary['frames']} "
                        "frames were committed and are readable[/yellow]")


def series_summary(path: Path) -> dict[str, Any]:
    """A series run's root: its state and session, and each stream's store summary (or why not)."""
    from ..errors import StoreFormatError
    from ..store import open_store
    from ..store.reader import series_streams

    index = json.loads((path / "zarr.json").read_text(encoding="utf-8"))["attributes"]["live_pssr_series"]
    entries = {str(s.get("path") or s.get("name")): s
               for s in index.get("streams", []) if isinstance(s, dict)}
    streams = []
    for rel in series_streams(path) or []:
        entry = entries.get(rel, {})
        row: dict[str, Any] = {"name": entry.get("name", rel), "path": str(path / rel),
                               "axes": entry.get("axes", {}), "indexed": rel in entries}
        try:
            row["store"] = open_store(path / rel).summary()
        except StoreFormatError as err:
            row["error"] = err.message
        streams.append(row)
    return {"path": str(path), "kind": "series", "state": index.get("state", "unknown"),
            "session": index.get("session", {}), "streams": streams}


def _series(path: Path, as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    doc = series_summary(path)
    if as_json:
        typer.echo(json.dumps(doc, indent=2, default=str))
        return
    console = Console(soft_wrap=True)  # paths stay whole, to copy
    session = doc["session"]
    split = ", ".join(session.get("split_axes", [])) or "-"
    console.print(f"[bold]{path}[/bold]: a series run of {len(doc['streams'])} stream(s) split by {split}, "
                  f"state {doc['state']}; {session.get('frames_received', '?')} frames received, "
                  f"{session.get('rejected', 0)} rejected")
    table = Table(title=f"streams: one run store each, in {path}")
    for col in ("stream", "axes", "frames", "raw -> enhanced", "status", "closed"):
        table.add_column(col, overflow="fold")
    for s in doc["streams"]:
        axes = ", ".join(f"{k}={v}" for k, v in s["axes"].items()) or "-"
        name = Path(s["path"]).name
        if "error" in s:
            table.add_row(name, axes, "-", "-", f"[red]unreadable: {s['error']}[/red]", "-")
            continue
        st = s["store"]
        status = ", ".join(f"{k}={v}" for k, v in st["status"].items() if v)
        sizes = " -> ".join("x".join(map(str, st[k]["shape"][-2:])) for k in ("raw", "enhanced"))
        table.add_row(name, axes, str(st["frames"]), sizes, status or "-",
                      "yes" if st["closed_cleanly"] else "no")
    console.print(table)
    if doc["streams"]:
        first = doc["streams"][0]["path"]
        console.print(f"one stream in detail: live-pssr info {first}  |  review it: live-pssr view {first}")
    else:
        console.print("[yellow]no stream has been written yet[/yellow]")
    if doc["state"] != "closed":
        console.print("[yellow]the session did not close cleanly (crash or kill); each stream keeps its "
                      "committed frames[/yellow]")
    if any(not s["indexed"] for s in doc["streams"]):
        console.print("[yellow]some streams are missing from the series index (the session did not close); "
                      "they were found on disk[/yellow]")
