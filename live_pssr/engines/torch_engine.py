"""Eager PyTorch: the reference engine (fp32 on CPU, channels_last, inference mode)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel
from .base import register_engine


class TorchEngine:
    """Eager PyTorch on ``device`` (``cpu`` or ``cuda``); fp16 autocast when asked on CUDA."""

    name = "torch"

    def __init__(self, model: LoadedModel, device: str = "cpu", precision: str = "fp32") -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailableError(
                "engine 'torch' on cuda asked for, but no CUDA GPU is visible to PyTorch",
                "use --engine auto (falls back to the CPU) or install the CUDA build of torch",
            )
        if precision not in ("fp32", "fp16", "bf16"):
            raise EngineUnavailableError(f"unknown precision {precision!r}", "use fp32, fp16 or bf16")
        self.device, self.precision = device, precision
        self.model = model
        self.net = model.net.to(device).to(memory_format=torch.channels_last)
        self._dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]

    def prepare(self, input_shape: tuple[int, int, int, int]) -> None:
        self.run(np.zeros(input_shape, np.float32))

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        if self._dtype is not None:
            dev = "cuda" if self.device.startswith("cuda") else "cpu"
            with torch.autocast(dev, dtype=self._dtype):
                y = self.net(x)
        else:
            y = self.net(x)
        return y.float().cpu().numpy()


register_engine("torch", TorchEngine)
