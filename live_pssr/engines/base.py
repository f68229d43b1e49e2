"""The engine protocol and the registry of backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel


@runtime_checkable
class Engine(Protocol):
    """A model ready to run on one device at one precision."""

    name: str
    device: str
    precision: str

    def prepare(self, input_shape: tuple[int, int, int, int]) -> None:
        """Compile/allocate/warm up for ``(B, in_frames, H, W)`` float32 inputs."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Map ``(B, in_frames, H, W)`` float32 to ``(B, 1, H*s, W*s)`` float32."""


EngineFactory = Callable[..., Engine]
ENGINES: dict[str, EngineFactory] = {}


def register_engine(name: str, factory: EngineFactory) -> None:
    """Make a backend available to :func:`make_engine` under ``name``."""
    ENGINES[name] = factory


def available_engines() -> list[str]:
    """Registered backend names (whether they can run here is checked when built)."""
    return sorted(ENGINES)


def make_engine(name: str, model: LoadedModel, **kwargs: object) -> Engine:
    """Build the engine ``name`` for ``model``."""
    try:
        factory = ENGINES[name]
    except KeyError:
        raise EngineUnavailableError(
            f"unknown engine {name!r}", f"choose one of {', '.join(available_engines())}"
        ) from None
    return factory(model, **kwargs)
