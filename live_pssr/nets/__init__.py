"""Network architectures, built by name.

A model file stores ``arch`` (a key of :data:`ARCHITECTURES`) and ``arch_kwargs``; :func:`build_net`
rebuilds the module from them, so a weights file always says how to rebuild itself.

Every network maps ``(B, in_frames, H, W)`` normalised float32 to ``(B, 1, H*upscale, W*upscale)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import ModelFileError
from .fast_sr import FastSRNet

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "fast-sr": FastSRNet,
}


def register(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add an architecture to the registry (used by optional modules)."""
    ARCHITECTURES[name] = factory


def build_net(arch: str, **kwargs: Any) -> nn.Module:
    """Build the network ``arch`` with ``kwargs`` (as stored in a model file)."""
    _load_optional()
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        raise ModelFileError(
            f"unknown network architecture {arch!r}",
            f"use one of {sorted(ARCHITECTURES)}, or upgrade live-pssr if the model is newer",
        ) from None
    try:
        return factory(**kwargs)
    except TypeError as err:
        raise ModelFileError(
            f"architecture {arch!r} does not accept {kwargs}: {err}",
            "the model file was written by an incompatible live-pssr version; retrain or re-export",
        ) from err


def _load_optional() -> None:
    """Import architecture modules that register themselves (kept lazy for fast start-up)."""
    import importlib

    for mod in ("resunet", "multiframe"):
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{mod}":
                raise


__all__ = ["ARCHITECTURES", "FastSRNet", "build_net", "register"]
