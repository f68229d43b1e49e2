"""OpenVINO: the model's ONNX export (cached) compiled by OpenVINO's CPU (or Intel GPU) plugin.

OpenVINO's CPU plugin fuses conv+bias+ReLU+residual-add chains and picks JIT kernels for the
machine's ISA (AVX2/AVX-512/AMX); it was the fastest CPU runtime for the fast SR net. Settings
for a live loop: ``PERFORMANCE_HINT=LATENCY`` (one stream, all cores on one frame),
``INFERENCE_NUM_THREADS`` = available cores, an explicit ``INFERENCE_PRECISION_HINT`` (``f32``, or
``bf16`` where the CPU has AVX512-BF16/AMX; OpenVINO would otherwise silently switch to bf16 on
such CPUs) and ``CACHE_DIR`` so compiled blobs are reused on the next start.

Shapes are static: one compiled model per batch size (dynamic batch made OpenVINO's CPU plugin
~2x slower per frame); a new frame size re-prepares the engine (logged).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel
from ._openvino import import_openvino
from .base import register_engine
from .cache import cache_dir
from .capabilities import cpu_cores, install_hint, missing_extra_error
from .onnx_export import load_onnx_cached

log = logging.getLogger("live_pssr.engines")

_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_CAPABILITY = {"bf16": "BF16", "fp16": "FP16"}


class OpenVINOEngine:
    """OpenVINO compiled model(s) for one frame size.

    Parameters
    ----------
    model : LoadedModel
        The model (exported to ONNX once, cached).
    device : str
        ``cpu`` (or ``gpu`` for an Intel GPU).
    precision : str
        ``fp32``; ``bf16``/``fp16`` where the device supports them natively.
    threads : int, optional
        Inference threads (default: the cores available to this process).
    cache : Path, optional
        Folder for the ONNX exports (default: ``cache_dir('onnx')``).
    """

    name = "openvino"

    def __init__(self, model: LoadedModel, device: str = "cpu", precision: str = "fp32",
                 threads: int | None = None, cache: Path | None = None) -> None:
        try:
            ov = import_openvino()  # without its telemetry
        except ImportError as err:  # an optional extra: `auto` skips this engine when it is absent
            missing = missing_extra_error(err, "engine 'openvino'")
            raise EngineUnavailableError(
                missing.message if missing else f"engine 'openvino' does not load: {err}",
                missing.hint if missing else f"{install_hint('openvino')} --force-reinstall") from err
        self._ov = ov
        self.core = ov.Core()
        ov_device = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU"}.get(device.lower())
        if ov_device is None or ov_device not in {d.split(".")[0] for d in self.core.available_devices}:
            raise EngineUnavailableError(
                f"engine 'openvino' cannot run on {device!r} (OpenVINO sees {self.core.available_devices})",
                "use device cpu (NVIDIA GPUs: --engine tensorrt or torch)")
        if precision not in _PRECISION_HINTS:
            raise EngineUnavailableError(f"engine 'openvino' does not support precision {precision!r}",
                                         "use fp32 or bf16")
        if precision in _CAPABILITY:
            caps = self.core.get_property(ov_device, "OPTIMIZATION_CAPABILITIES")
            if _CAPABILITY[precision] not in caps:
                raise EngineUnavailableError(
                    f"{ov_device} has no native {precision} support (capabilities: {', '.join(caps)})",
                    "use precision fp32")
        self.model, self.device, self.precision = model, device, precision
        self.ov_device = ov_device
        self.threads = threads or cpu_cores()
        self.cache = cache
        self._ov_model: Any = None
        self._requests: dict[int, Any] = {}
        self.input_shape: tuple[int, ...] | None = None
        self.prepare_s: float | None = None
        self.cache_hit: bool | None = None

    def _config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[self.precision],
            "CACHE_DIR": str(cache_dir("openvino") if self.cache is None else Path(self.cache) / "openvino"),
        }
        if self.ov_device == "CPU":
            cfg["INFERENCE_NUM_THREADS"] = self.threads
        return cfg

    def _request(self, batch_size: int) -> Any:
        """The infer request compiled for ``batch_size`` frames (compiled on first use)."""
        req = self._requests.get(batch_size)
        if req is None:
            m = self._ov_model.clone()
            m.reshape({0: self._ov.PartialShape([batch_size, *self.input_shape[1:]])})  # type: ignore[index]
            compiled = self.core.compile_model(m, self.ov_device, self._config())
            req = self._requests[batch_size] = compiled.create_infer_request()
        return req

    def prepare(self, input_shape: tuple[int, int, int, int]) -> None:
        """Export (or reuse) the ONNX graph, compile for ``input_shape`` and warm up."""
        if self._ov_model is not None and self.input_shape == tuple(input_shape):
            return
        if self.input_shape is not None:
            log.info("engine %s: frame shape changed %s -> %s: preparing for it", self.name, self.input_shape,
                     tuple(input_shape))
        t0 = time.perf_counter()
        self._ov_model, _, self.cache_hit = load_onnx_cached(
            self.model, tuple(input_shape[1:]), self.core.read_model, directory=self.cache)
        self._requests = {}
        self.input_shape = tuple(input_shape)
        req = self._request(input_shape[0])
        warm = np.zeros(input_shape, np.float32)
        for _ in range(2):
            req.infer({0: warm})
        self.prepare_s = time.perf_counter() - t0

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Map ``(B, in_frames, H, W)`` float32 to ``(B, 1, H*s, W*s)`` float32."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._ov_model is None or batch.shape[1:] != self.input_shape[1:]:  # type: ignore[index]
            self.prepare(batch.shape)
        req = self._request(batch.shape[0])
        req.infer({0: batch}, share_inputs=True)
        return np.array(req.get_output_tensor(0).data, copy=True)


register_engine("openvino", OpenVINOEngine)
