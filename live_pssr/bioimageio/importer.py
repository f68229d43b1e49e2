"""Check a bioimage.io package with bioimageio.core (its own ``test_model``), offline.

Loading a package as a live-pssr model is :func:`live_pssr.zoo.load_package` (it must sit at
modelio's layer: ``load_model`` dispatches to it); this module is the consumer-side check:
:func:`run_test_model` runs ``bioimageio.core.test_model`` (validation, then every weight format
on the test tensors and on the parametrised sizes) and returns its summary, and
:func:`check_package` raises a :class:`~live_pssr.errors.ModelFileError` listing what failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelFileError


def run_test_model(path: str | Path, weight_format: str | None = None) -> Any:
    """``bioimageio.core.test_model`` on ``path`` (all weight formats unless ``weight_format``), CPU only."""
    try:
        from bioimageio.core import test_model
    except ImportError as err:
        raise ModelFileError(
            "testing a bioimage.io package needs bioimageio.core", 'pip install "live-pssr[bioimageio]"'
        ) from err
    return test_model(str(path), weight_format=weight_format, devices=["cpu"])


def failures(summary: Any) -> list[str]:
    """The failed checks of a bioimageio validation summary, one line each."""
    out = []
    for d in summary.details:
        if d.status == "failed":
            msgs = [f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in d.errors] or [""]
            out.append(f"{d.name}: {'; '.join(m.splitlines()[0] if m else '' for m in msgs)[:300]}")
    return out


def check_package(path: str | Path) -> Any:
    """:func:`run_test_model`, raising :class:`ModelFileError` naming what failed; returns the summary."""
    summary = run_test_model(path)
    if summary.status != "passed":
        raise ModelFileError(
            f"bioimageio.core's test of {path} failed: " + " | ".join(failures(summary)),
            "re-export the package with this live-pssr version; report it if it persists",
        )
    return summary


__all__ = ["check_package", "failures", "run_test_model"]
