"""Export a model to ONNX once per (model, frame shape), cached on disk.

The CPU runtimes (ONNX Runtime, OpenVINO) both read the same ONNX graph. Networks may branch on
the input size in Python (e.g. padding to a multiple of 4), so the graph is traced at the
acquisition frame size (``H``, ``W`` static) with a dynamic batch axis. The file is stored under
``cache_dir('onnx')`` named by a hash of the model (file hash + spec), the input shape, the opset
and the torch version; a corrupt file is detected when the runtime fails to load it and is
re-exported (:func:`~.cache.cached_artifact`).
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel
from .cache import cache_dir, cache_key, cached_artifact, model_fingerprint

log = logging.getLogger("live_pssr.engines")
T = TypeVar("T")

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "frames", "enhanced"
_EXPORTER_VERSION = 1  # bump when the export procedure changes


def onnx_path(model: LoadedModel, in_shape: tuple[int, int, int], opset: int = OPSET,
              directory: Path | None = None) -> Path:
    """Cache location of the export of ``model`` for ``(in_frames, H, W)`` inputs."""
    key = cache_key(model=model_fingerprint(model), shape=list(in_shape), opset=opset,
                    torch=torch.__version__, exporter=_EXPORTER_VERSION)
    return (directory or cache_dir("onnx")) / f"{model.spec.name}-{in_shape[1]}x{in_shape[2]}-{key}.onnx"


def write_onnx(model: LoadedModel, in_shape: tuple[int, int, int], path: Path, opset: int = OPSET) -> None:
    """Trace ``model`` at ``(1, *in_shape)`` and write ONNX to ``path`` (batch axis dynamic)."""
    net = copy.deepcopy(model.net).float().cpu().eval()
    example = torch.rand(1, *in_shape)
    t0 = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on sizes: expected
        try:
            torch.onnx.export(
                net, (example,), str(path), opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True, dynamo=False,
            )
        except Exception as err:
            raise EngineUnavailableError(
                f"could not export model {model.model_id} to ONNX: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}",
                "use --engine torch; report the architecture if it should export",
            ) from err
    log.info("exported %s to ONNX for input %s in %.1f s", model.model_id, in_shape, time.perf_counter() - t0)


def load_onnx_cached(
    model: LoadedModel,
    in_shape: tuple[int, int, int],
    load: Callable[[Path], T],
    directory: Path | None = None,
) -> tuple[T, Path, bool]:
    """Export (or reuse) the ONNX graph and ``load`` it; returns ``(loaded, path, from_cache)``.

    A cached file that ``load`` rejects is deleted and re-exported once.
    """
    path = onnx_path(model, in_shape, directory=directory)
    loaded, hit = cached_artifact(path, lambda tmp: write_onnx(model, in_shape, tmp), load,
                                  what="ONNX export")
    return loaded, path, hit


__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "load_onnx_cached", "onnx_path", "write_onnx"]
