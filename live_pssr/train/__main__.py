"""``python -m live_pssr.train --config C.yaml`` (what ``torchrun --nproc_per_node=N`` launches)."""

from __future__ import annotations

import sys

import typer

from ..commands.train import command
from ..errors import LivePSSRError


def main() -> None:
    try:
        typer.run(command)
    except LivePSSRError as err:
        typer.secho(f"error: {err.message}", fg="red", err=True)
        if err.hint:
            typer.secho(f"  fix: {err.hint}", fg="yellow", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
