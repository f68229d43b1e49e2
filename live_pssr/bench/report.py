"""Benchmark output: a table on the terminal and JSON rows with the machine they ran on.

Also the checks every benchmark runs on its options before it starts (lists of sizes, rates,
choices, engine names, the ``--json`` path, the ``--dir`` scratch folder), so that a bad value
is a clear error at once instead of a traceback minutes into a run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..engines.cache import atomic_write, machine_info


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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(doc, indent=2, default=str))
        except OSError as err:
            from ..errors import StoreWriteError

            raise StoreWriteError(f"could not write --json {path}: {err.strerror or err}",
                                  "choose a writable path with free space (the table above is the result)"
                                  ) from err
        console.print(f"wrote {path}")
    return doc


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


# ------------------------------------------------------------------ checking benchmark options up front
def number_list(text: str, option: str, kind: type = int, minimum: float = 1, example: str = "") -> list:
    """``"512,2048"`` -> numbers of ``kind``, each >= ``minimum``; ConfigError naming ``option`` otherwise."""
    from ..errors import ConfigError

    try:
        values = [kind(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values or any(not (v >= minimum) or v != v for v in values):  # v != v: NaN
        raise ConfigError(f"{option} {text!r} is not a comma-separated list of numbers >= {minimum:g}",
                          f"e.g. {option} {example or '512,2048'}")
    return values


def positive(value: float, option: str, example: str) -> float:
    """A number that must be > 0 (a rate, a duration)."""
    from ..errors import ConfigError

    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{option} {value:g} must be a number above 0", f"e.g. {option} {example}")
    return value


def one_of(value: str, option: str, allowed: tuple[str, ...] | list[str]) -> str:
    """``value`` must be one of ``allowed`` (checked before minutes of benchmarking, not after)."""
    from ..errors import ConfigError

    if value not in allowed:
        raise ConfigError(f"{option} {value!r} is not one of {', '.join(allowed)}",
                          f"use {option} with one of: {', '.join(allowed)}")
    return value


def check_engine_name(name: str, option: str = "--engine") -> str:
    """An engine name ``run``/``select_engine`` will accept: auto or a registered backend[:precision]."""
    from ..engines import available_engines
    from ..engines.base import parse_engine_name
    from ..errors import ConfigError

    base = parse_engine_name(name)[0]
    if base != "auto" and base not in available_engines():
        raise ConfigError(f"{option} {name!r} is not an engine",
                          f"choose auto or one of {', '.join(available_engines())}")
    return name


def check_json_path(path: Path | None) -> None:
    """``--json``: a file name, not a folder, with no file where its folder must be."""
    from ..store.claim import check_output_file

    if path is not None:
        check_output_file(path, "--json", "bench.json")


def scratch_dir(out_dir: Path | None, prefix: str) -> Path:
    """A fresh temporary folder inside ``--dir`` (created when missing: it is an output folder)."""
    import tempfile

    from ..errors import ConfigError

    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--dir {out_dir} is a file, not a folder",
                              "pass a folder on the disk to test (it is created when missing)")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"--dir {out_dir} cannot be created ({err.strerror or err})",
                              "pass a writable folder on the disk to test") from err
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=out_dir))
    except OSError as err:
        raise ConfigError(f"cannot write in {out_dir or tempfile.gettempdir()} ({err.strerror or err})",
                          "pass --dir with a writable folder") from err
