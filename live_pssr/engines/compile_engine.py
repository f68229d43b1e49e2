"""``torch.compile`` (TorchInductor) on top of the eager engine.

Same network preparation as :class:`~.torch_engine.TorchEngine` (copy, BatchNorm folding,
channels_last, autocast), then ``torch.compile(dynamic=False)``: one specialised graph per input
shape. On CUDA the default mode is ``max-autotune`` (Triton kernel autotuning plus CUDA graphs: no
per-frame launch overhead), on the CPU the default mode (C++/OpenMP kernels around oneDNN).

Compilation happens in :meth:`prepare` (it is timed: ``prepare_s``). A frame shape that changes
mid-run triggers a logged recompilation for the new shape. On 2-core CPUs compilation takes tens
of seconds for little or no gain, so ``auto`` only tries this engine on CUDA (see :mod:`.select`).
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel
from .base import register_engine
from .torch_engine import TorchEngine

log = logging.getLogger("live_pssr.engines")


class CompileEngine(TorchEngine):
    """TorchInductor-compiled network; ``mode`` defaults to ``max-autotune`` on CUDA."""

    name = "compile"

    def __init__(
        self,
        model: LoadedModel,
        device: str = "cpu",
        precision: str = "fp32",
        mode: str | None = None,
        channels_last: bool = True,
        fold_bn: bool = True,
    ) -> None:
        super().__init__(model, device, precision, channels_last=channels_last, fold_bn=fold_bn)
        self.mode = mode if mode is not None else ("max-autotune" if device.startswith("cuda") else None)
        self._cuda_graphs = device.startswith("cuda") and self.mode in ("max-autotune", "reduce-overhead")
        try:
            with warnings.catch_warnings():  # torch's own inductor imports use deprecated torch.jit APIs
                warnings.simplefilter("ignore", DeprecationWarning)
                self._compiled = torch.compile(self.net, mode=self.mode, dynamic=False, fullgraph=False)
        except Exception as err:  # e.g. unsupported Python version or missing compiler
            raise EngineUnavailableError(f"torch.compile is not available here ({err})",
                                         "use --engine auto or --engine torch") from err

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._backend_flags(), self._autocast():
            y = self._compiled(x)
            # CUDA graphs reuse their output buffer on the next call: hand out a private copy
            return y.clone() if self._cuda_graphs else y

    def prepare(self, input_shape: tuple[int, int, int, int]) -> None:
        """Compile for ``input_shape`` (timed) and warm up (once per shape)."""
        if self.input_shape == tuple(input_shape):
            return
        if self.input_shape is not None and tuple(input_shape) != self.input_shape:
            log.info("engine compile: input shape changed %s -> %s, recompiling",
                     self.input_shape, tuple(input_shape))
        t0 = time.perf_counter()
        try:
            for _ in range(3):  # first call compiles; CUDA graphs record on a later one
                self.run(np.zeros(input_shape, np.float32))
        except EngineUnavailableError:
            raise
        except Exception as err:  # inductor needs a C++ compiler (CPU) or Triton (GPU)
            raise EngineUnavailableError(
                f"torch.compile failed for input {tuple(input_shape)}: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}",
                "use --engine auto or --engine torch (a C++ compiler is needed on the CPU, Triton on GPUs)",
            ) from err
        self.prepare_s = time.perf_counter() - t0
        self.input_shape = tuple(input_shape)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.input_shape is not None and tuple(batch.shape) != self.input_shape:
            log.info("engine compile: new input shape %s (prepared %s): compiling for it",
                     tuple(batch.shape), self.input_shape)
            self.input_shape = tuple(batch.shape)
        return super().run(batch)


register_engine("compile", CompileEngine)
