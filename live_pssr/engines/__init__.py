"""Inference engines: one protocol, several backends, chosen by name (or ``auto``).

An :class:`Engine` wraps a loaded model for one frame shape: ``prepare`` compiles/allocates/warms
up, ``run`` maps a normalised float32 batch ``(B, in_frames, H, W)`` to ``(B, 1, H*s, W*s)``.
Backends register in :data:`ENGINES`; :func:`make_engine` builds one by name.
"""

from __future__ import annotations

from .base import ENGINES, Engine, available_engines, make_engine, register_engine
from .torch_engine import TorchEngine

__all__ = ["ENGINES", "Engine", "TorchEngine", "available_engines", "make_engine", "register_engine"]
