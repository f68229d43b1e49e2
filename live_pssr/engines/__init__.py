"""Inference engines: one protocol, several backends, chosen by name or automatically.

An :class:`Engine` wraps a loaded model for one frame shape: ``prepare`` compiles/allocates/warms
up, ``run`` maps a normalised float32 batch ``(B, in_frames, H, W)`` to ``(B, 1, H*s, W*s)``; it
reports ``name``, ``device`` and ``precision``. Backends (each imports its runtime lazily and
raises :class:`~live_pssr.errors.EngineUnavailableError` when it cannot run here):

============  =====================================================  =========================
name          what                                                    precisions
============  =====================================================  =========================
torch         eager PyTorch, channels_last, BatchNorm folded          fp32; fp16/bf16 autocast
compile       ``torch.compile`` (inductor; CUDA graphs on the GPU)    as torch
onnxruntime   ONNX export (cached) + ONNX Runtime                     fp32
openvino      ONNX export (cached) + OpenVINO (CPU, Intel GPU)        fp32; bf16 on AVX512-BF16/AMX
tensorrt      torch-tensorrt Dynamo, engine cache on disk             fp16, fp32
============  =====================================================  =========================

:func:`select_engine` (``name="auto"``) times the candidates, gates them against fp32 eager
(:mod:`.gate`), picks the fastest correct one and caches the decision (:mod:`.select`).
Wrappers: :class:`CudaStreamEngine` (pinned buffers, overlapped streams, GPU normalisation),
:class:`AutoTileEngine` (tiles beyond the compiled shape or after out-of-memory).
"""

from __future__ import annotations

from .base import (
    ENGINES,
    Engine,
    available_engines,
    describe,
    make_engine,
    parse_engine_name,
    register_engine,
)
from .compile_engine import CompileEngine
from .cuda_stream import CudaStreamEngine
from .gate import PRECISION_BOUNDS, GateResult, check_engine, require_gate
from .onnxruntime_engine import OnnxRuntimeEngine
from .openvino_engine import OpenVINOEngine
from .select import Selection, Trial, candidates, choose_engine, select_engine
from .tensorrt_engine import TensorRTEngine
from .tiled import AutoTileEngine
from .torch_engine import TorchEngine

__all__ = [
    "ENGINES",
    "PRECISION_BOUNDS",
    "AutoTileEngine",
    "CompileEngine",
    "CudaStreamEngine",
    "Engine",
    "GateResult",
    "OnnxRuntimeEngine",
    "OpenVINOEngine",
    "Selection",
    "TensorRTEngine",
    "TorchEngine",
    "Trial",
    "available_engines",
    "candidates",
    "check_engine",
    "choose_engine",
    "describe",
    "make_engine",
    "parse_engine_name",
    "register_engine",
    "require_gate",
    "select_engine",
]
