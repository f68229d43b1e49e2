"""ONNX Runtime: the model exported once to ONNX (cached), run by ORT's CPU (or CUDA) provider.

Session settings for a live loop: all graph optimisations (conv+activation fusion, NCHWc layout
on x86), sequential execution, one intra-op thread per available core, no inter-op threads. The
graph is static in ``H, W`` (the acquisition ROI); a frame of another size re-prepares the engine
(logged) from the export cache. ``onnxruntime-gpu`` adds the CUDA provider (``device='cuda'``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel
from .base import register_engine
from .capabilities import cpu_cores
from .onnx_export import INPUT_NAME, load_onnx_cached

log = logging.getLogger("live_pssr.engines")


class OnnxRuntimeEngine:
    """ONNX Runtime session for one frame size.

    Parameters
    ----------
    model : LoadedModel
        The model to export.
    device : str
        ``cpu`` or ``cuda`` (needs the ``onnxruntime-gpu`` package).
    precision : str
        Only ``fp32``.
    threads : int, optional
        Intra-op threads (default: the cores available to this process).
    cache : Path, optional
        Folder for the ONNX exports (default: ``cache_dir('onnx')``).
    """

    name = "onnxruntime"

    def __init__(self, model: LoadedModel, device: str = "cpu", precision: str = "fp32",
                 threads: int | None = None, cache: Path | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise EngineUnavailableError("engine 'onnxruntime' needs the onnxruntime package",
                                         "pip install onnxruntime (or onnxruntime-gpu)") from err
        if precision != "fp32":
            raise EngineUnavailableError(f"engine 'onnxruntime' runs fp32 only, not {precision}",
                                         "use fp32, or --engine openvino/tensorrt for lower precision")
        providers = ort.get_available_providers()
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in providers:
                raise EngineUnavailableError("engine 'onnxruntime' on cuda needs onnxruntime-gpu",
                                             "pip install onnxruntime-gpu, or use --engine tensorrt/torch")
            self._providers: list[Any] = [("CUDAExecutionProvider", {"device_id": _device_index(device)})]
        elif device == "cpu":
            self._providers = ["CPUExecutionProvider"]
        else:
            raise EngineUnavailableError(f"engine 'onnxruntime' cannot run on {device!r}", "use cpu or cuda")
        self._ort = ort
        self.model, self.device, self.precision = model, device, precision
        self.threads = threads or cpu_cores()
        self.cache = cache
        self.session: Any = None
        self.input_shape: tuple[int, ...] | None = None
        self.prepare_s: float | None = None
        self.cache_hit: bool | None = None

    def _session(self, path: Path) -> Any:
        so = self._ort.SessionOptions()
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        return self._ort.InferenceSession(str(path), so, providers=self._providers)

    def prepare(self, input_shape: tuple[int, int, int, int]) -> None:
        """Export (or reuse) the graph for ``(in_frames, H, W)``, open a session, warm up."""
        if self.session is not None and self.input_shape == tuple(input_shape):
            return
        if self.input_shape is not None:
            log.info("engine %s: frame shape changed %s -> %s: preparing for it", self.name, self.input_shape,
                     tuple(input_shape))
        t0 = time.perf_counter()
        self.session, _, self.cache_hit = load_onnx_cached(
            self.model, tuple(input_shape[1:]), self._session, directory=self.cache)
        self.input_shape = tuple(input_shape)
        warm = np.zeros(input_shape, np.float32)
        for _ in range(2):
            self.session.run(None, {INPUT_NAME: warm})
        self.prepare_s = time.perf_counter() - t0

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Map ``(B, in_frames, H, W)`` float32 to ``(B, 1, H*s, W*s)`` float32."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.session is None or batch.shape[1:] != self.input_shape[1:]:  # type: ignore[index]
            self.prepare(batch.shape)
        return self.session.run(None, {INPUT_NAME: batch})[0]


def _device_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


register_engine("onnxruntime", OnnxRuntimeEngine)
