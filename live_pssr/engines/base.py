"""The engine protocol and the registry of backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel


@runtime_checkable
class Engine(Protocol):
    """A model ready to run on one device at one precision.

    Engines may also expose ``prepare_s`` (seconds the last ``prepare`` took: compile, export,
    load) and ``forward_tensor(x)`` (device tensor in, device tensor out; used by the CUDA path).
    """

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


def parse_engine_name(spec: str) -> tuple[str, str | None]:
    """Split ``"name[:precision]"`` (e.g. ``openvino:bf16``) into ``(name, precision or None)``."""
    name, _, precision = spec.strip().lower().partition(":")
    return name, (precision or None)


def describe(engine: object) -> str:
    """``name:device:precision`` of an engine (what logs and stores record)."""
    parts = (getattr(engine, a, "?") for a in ("name", "device", "precision"))
    return ":".join(str(p) for p in parts)


def make_engine(name: str, model: LoadedModel, **kwargs: object) -> Engine:
    """Build the engine ``name`` (``name[:precision]`` accepted) for ``model``.

    Raises
    ------
    EngineUnavailableError
        Unknown name, or the backend cannot run here (missing package, no GPU, ...).
    """
    base, precision = parse_engine_name(name)
    if precision is not None:
        kwargs.setdefault("precision", precision)
    try:
        factory = ENGINES[base]
    except KeyError:
        raise EngineUnavailableError(
            f"unknown engine {name!r}", f"choose auto or one of {', '.join(available_engines())}"
        ) from None
    return factory(model, **kwargs)
