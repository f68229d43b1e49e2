"""Training: validated YAML configs, on-the-fly crappified data, and the training loop.

``live-pssr train --config configs/NAME.yaml`` (or ``python -m live_pssr.train --config ...``, which
``torchrun`` uses for multi-GPU runs) reads a :class:`~live_pssr.train.config.Config`, draws pairs
from :mod:`live_pssr.train.data` and runs :func:`live_pssr.train.trainer.train`, which writes a model
file whose spec records the config, data, crappifier, time and scores.
"""

from __future__ import annotations

from .config import Config, load_config, parse_config
from .trainer import TrainResult, train

__all__ = ["Config", "TrainResult", "load_config", "parse_config", "train"]
