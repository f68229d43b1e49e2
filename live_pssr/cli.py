"""The ``live-pssr`` command: a thin typer layer over the library.

Each command lives in ``live_pssr/commands/<name>.py`` as a function ``command`` (typer options
in its signature, heavy imports inside the body so ``--help`` is instant); ``bench`` is a group
whose sub-commands live in ``live_pssr/bench/<name>.py`` the same way. Errors derived from
:class:`~live_pssr.errors.LivePSSRError` print the problem and the fix and exit with status 2.
``live-pssr --version`` prints the installed versions (package metadata, nothing imported).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from .errors import LivePSSRError

COMMANDS = ["demo", "acquire", "info", "view", "enhance", "train", "evaluate", "calibrate", "models",
            "export"]
BENCHES = ["pipeline", "engines", "hook", "viewer", "consistency"]

app = typer.Typer(
    name="live-pssr",
    help="Live PSSR: enhance low-light microscopy frames while they are acquired.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
#: what ``--version`` reports beside live-pssr: (distribution, label)
VERSION_PACKAGES = (("torch", "torch"), ("onnxruntime", "onnxruntime"), ("openvino", "openvino"),
                    ("torch-tensorrt", "torch-tensorrt"), ("pymmcore-plus", "pymmcore-plus"),
                    ("pycromanager", "pycromanager"))


def version_text() -> str:
    """``live-pssr 0.1.0 (Python 3.11.9; torch 2.13.0, ...)``: installed versions, from package metadata."""
    import platform
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    engines = [f"{label} {v}" for dist, label in VERSION_PACKAGES if (v := version(dist))]
    return (f"live-pssr {version('live-pssr') or 'unknown (not installed)'} "
            f"(Python {platform.python_version()}; {', '.join(engines) or 'no engine packages'})")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the versions of live-pssr, Python and its engines, then exit.")] = False,
) -> None:
    """Live PSSR: enhance low-light microscopy frames while they are acquired."""


bench_app = typer.Typer(help="Benchmarks: print a table and write JSON.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _register(target: typer.Typer, package: str, names: list[str]) -> None:
    for name in names:
        modname = f"live_pssr.{package}.{name}"
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as err:
            if err.name == modname:
                continue  # command not part of this build
            raise
        target.command(name)(module.command)


_register(app, "commands", COMMANDS)
_register(bench_app, "bench", BENCHES)


def run_reporting_errors(entry: Callable[[], object]) -> None:
    """Run a CLI entry point; a LivePSSRError prints the problem and the fix and exits 2.

    So does an ImportError of an optional package (Qt, OpenVINO, Micro-Manager): the fix names the
    ``pip install "live-pssr[EXTRA]"`` that brings it.
    """
    try:
        try:
            entry()
        except ImportError as err:
            from .engines.capabilities import missing_extra_error

            missing = missing_extra_error(err, _command_name())
            if missing is None:
                raise
            raise missing from err
    except LivePSSRError as err:
        typer.secho(f"error: {err.message}", fg="red", err=True)
        if err.hint:
            typer.secho(f"  fix: {err.hint}", fg="yellow", err=True)
        _quiet_cut_short_writes()
        sys.exit(2)


def _quiet_cut_short_writes() -> None:
    """The failure is reported: no asyncio noise at exit from zarr writes it cut short.

    zarr-python writes a frame's chunks as asyncio tasks; when one fails (a full disk) its error
    is the one just printed, but the sibling tasks are destroyed when the process ends and asyncio
    would print each ("Task was destroyed but it is pending", "Future exception was never
    retrieved") with a traceback that is not a second failure.
    """
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def _command_name() -> str:
    """``live-pssr acquire`` / ``live-pssr bench hook``: the command being run (for messages)."""
    words = []
    for arg in sys.argv[1:]:
        if arg.startswith("-") or len(words) == (2 if words[:1] == ["bench"] else 1):
            break
        words.append(arg)
    return " ".join(["live-pssr", *words])


def main() -> None:
    """Console entry point."""
    run_reporting_errors(app)


if __name__ == "__main__":
    main()
