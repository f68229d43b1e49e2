"""Eager PyTorch: the reference engine, and the base of the ``compile`` engine.

fp32 on the CPU; fp16 or bf16 autocast when asked (on the GPU, or on a CPU with native bf16).
The network is copied (the caller's model stays untouched and usable as the fp32 reference),
BatchNorm layers are folded into their convolutions (:mod:`.fold`), weights and activations use
the channels_last layout (oneDNN/cuDNN's fast path: 1.2-1.6x on CPUs) and every call runs under
``torch.inference_mode``.

:meth:`TorchEngine.forward_tensor` maps device tensors to device tensors with no host copies: the
CUDA stream data path (:mod:`.cuda_stream`) drives it directly.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time

import numpy as np
import torch

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel
from .base import register_engine
from .capabilities import cpu_has_native_bf16
from .fold import fold_batchnorm

log = logging.getLogger("live_pssr.engines")

_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_device(name: str, device: str) -> None:
    """Raise a clear error when ``device`` is CUDA but no GPU is visible."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineUnavailableError(
            f"engine {name!r} on {device} asked for, but no CUDA GPU is visible to PyTorch",
            "use --engine auto (falls back to the CPU), or install the CUDA build of torch (docs/gpu.md)",
        )
    if not (device == "cpu" or device.startswith("cuda")):
        raise EngineUnavailableError(f"engine {name!r} cannot run on device {device!r}", "use cpu or cuda")


class TorchEngine:
    """Eager PyTorch on ``device`` (``cpu`` or ``cuda[:n]``) at ``precision``.

    Parameters
    ----------
    model : LoadedModel
        The model (its network is copied, never modified).
    device : str
        ``cpu`` or ``cuda``/``cuda:N``.
    precision : str
        ``fp32``, ``fp16`` (CUDA) or ``bf16`` (autocast).
    channels_last : bool
        Use the NHWC memory layout for weights and activations.
    fold_bn : bool
        Fold BatchNorm layers into the preceding convolutions.
    """

    name = "torch"

    def __init__(
        self,
        model: LoadedModel,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = True,
        fold_bn: bool = True,
    ) -> None:
        check_device(self.name, device)
        if precision not in _DTYPES:
            raise EngineUnavailableError(f"unknown precision {precision!r} for engine {self.name!r}",
                                         "use fp32, fp16 or bf16")
        if precision == "fp16" and device == "cpu":
            raise EngineUnavailableError("fp16 on the CPU is not supported by eager PyTorch",
                                         "use fp32 (or bf16 on CPUs with AVX512-BF16/AMX)")
        if precision == "bf16" and device == "cpu" and not cpu_has_native_bf16():
            log.warning("bf16 on this CPU is emulated (no AVX512-BF16/AMX): expect it to be much slower")
        self.device, self.precision = device, precision
        self.model = model
        self.channels_last = channels_last
        self._dtype = _DTYPES[precision]
        self._autocast_device = "cuda" if device.startswith("cuda") else "cpu"
        net = copy.deepcopy(model.net).float().eval()
        self.folded = 0
        if fold_bn:
            net, self.folded = fold_batchnorm(net, torch.rand(1, model.spec.in_frames, 32, 32))
        net = net.to(device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        for p in net.parameters():
            p.requires_grad_(False)
        self.net = net
        self.prepare_s: float | None = None
        self.input_shape: tuple[int, ...] | None = None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self._autocast_device, dtype=self._dtype)

    def _backend_flags(self) -> contextlib.AbstractContextManager:
        """On CUDA: cuDNN autotuning for the fixed shape; fp32 means fp32 (TF32 off)."""
        if self._autocast_device != "cuda":
            return contextlib.nullcontext()
        return torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False,
                                          allow_tf32=self.precision != "fp32")

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Run on a float32 tensor already on :attr:`device`; returns the device output tensor."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._backend_flags(), self._autocast():
            return self.net(x)

    def prepare(self, input_shape: tuple[int, int, int, int]) -> None:
        """Warm up (allocator, oneDNN/cuDNN algorithm choice) for ``input_shape`` (once per shape)."""
        if self.input_shape == tuple(input_shape):
            return
        t0 = time.perf_counter()
        for _ in range(2):
            self.run(np.zeros(input_shape, np.float32))
        self.prepare_s = time.perf_counter() - t0
        self.input_shape = tuple(input_shape)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Map ``(B, in_frames, H, W)`` float32 to ``(B, 1, H*s, W*s)`` float32."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        y = self.forward_tensor(x)
        return y.float().cpu().numpy()


register_engine("torch", TorchEngine)
