"""TensorRT through torch-tensorrt's Dynamo path, with an on-disk engine cache.

Build: the network (BatchNorm folded, cast to fp16 for ``precision='fp16'`` so both explicit-
and weak-typing releases of torch-tensorrt build an fp16 engine) is compiled with
``torch_tensorrt.compile(net, ir="dynamo", inputs=[torch_tensorrt.Input(...)])`` for the
acquisition's static shape ``(B, in_frames, H, W)``, or for a dynamic-shape profile (batch
``1..max_batch`` and optionally an ``H, W`` range) when asked. The compiled module is saved with
``torch_tensorrt.save`` (an ExportedProgram) to ``cache_dir('tensorrt')`` under a key made of the
model hash and spec, GPU name and compute capability, TensorRT, torch-tensorrt and torch versions,
shape profile and precision; the next start loads it with ``torch_tensorrt.load`` in seconds
instead of compiling for minutes. A cache file that does not load (corrupt, or written by another
version) is rebuilt. Compilation shows a spinner and reports how long it took.

Only the GPU can exercise this module; here it raises :class:`EngineUnavailableError` with a clear
hint when there is no GPU, torch-tensorrt is missing, or its version does not match torch's.
int8/fp8 need a calibration/quantisation pass (NVIDIA ModelOpt) and are not offered.
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel
from .base import register_engine
from .cache import cache_dir, cache_key, cached_artifact, model_fingerprint
from .fold import fold_batchnorm

log = logging.getLogger("live_pssr.engines")

_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
_INSTALL_HINT = ("install the torch-tensorrt release matching your torch (pip install -e '.[gpu]'; "
                 "see docs/gpu.md), or use --engine auto / torch")


def import_torch_tensorrt() -> Any:
    """Import torch_tensorrt or raise :class:`EngineUnavailableError` saying why and what to do."""
    try:
        import torch_tensorrt
    except ImportError as err:
        if getattr(err, "name", None) in ("torch_tensorrt", "tensorrt"):
            raise EngineUnavailableError("engine 'tensorrt' needs torch-tensorrt, which is not installed",
                                         _INSTALL_HINT) from err
        raise EngineUnavailableError(
            f"torch-tensorrt is installed but does not import ({err}); usually its version does not "
            f"match torch {torch.__version__}", _INSTALL_HINT) from err
    except (OSError, RuntimeError) as err:  # undefined symbols / CUDA library mismatch
        raise EngineUnavailableError(
            f"torch-tensorrt failed to load ({str(err).splitlines()[0]}); usually its version or CUDA "
            f"build does not match torch {torch.__version__}", _INSTALL_HINT) from err
    check_versions(torch.__version__, getattr(torch_tensorrt, "__version__", "0"))
    return torch_tensorrt


def check_versions(torch_version: str, trt_version: str) -> None:
    """torch-tensorrt ``X.Y`` is built for torch ``X.Y``; anything else fails at run time."""
    def major_minor(v: str) -> tuple[str, ...]:
        return tuple(v.split("+")[0].split(".")[:2])

    if major_minor(torch_version) != major_minor(trt_version):
        raise EngineUnavailableError(
            f"torch-tensorrt {trt_version} is built for torch {'.'.join(major_minor(trt_version))}.x, "
            f"but torch {torch_version} is installed",
            f"pip install 'torch-tensorrt=={'.'.join(major_minor(torch_version))}.*' (or the torch matching "
            f"torch-tensorrt); see docs/gpu.md",
        )


class TensorRTEngine:
    """A TensorRT engine (via torch-tensorrt) for one shape profile on one GPU.

    Parameters
    ----------
    model : LoadedModel
        The model (copied; BatchNorm folded before compiling).
    device : str
        ``cuda`` or ``cuda:N``.
    precision : str
        ``fp16`` (default) or ``fp32``.
    max_batch : int
        Largest batch (frames stacked when the pipeline is behind); >1 builds a dynamic batch profile.
    hw_range : ((h_min, w_min), (h_max, w_max)), optional
        Dynamic frame-size profile (the prepared size is the optimum); default: static size.
    cache : Path, optional
        Engine cache folder (default ``cache_dir('tensorrt')``).
    use_cache : bool
        Read and write the engine cache.
    """

    name = "tensorrt"

    def __init__(self, model: LoadedModel, device: str = "cuda", precision: str = "fp16", max_batch: int = 1,
                 hw_range: tuple[tuple[int, int], tuple[int, int]] | None = None, cache: Path | None = None,
                 use_cache: bool = True) -> None:
        if not device.startswith("cuda"):
            raise EngineUnavailableError(f"engine 'tensorrt' runs on NVIDIA GPUs only, not on {device!r}",
                                         "use --engine auto (picks the fastest CPU engine) or --device cuda")
        if not torch.cuda.is_available():
            raise EngineUnavailableError("engine 'tensorrt' needs an NVIDIA GPU, but PyTorch sees none",
                                         "use --engine auto (falls back to the CPU), or install the CUDA "
                                         "build of torch and a driver (docs/gpu.md)")
        if precision not in _TORCH_DTYPES:
            raise EngineUnavailableError(
                f"engine 'tensorrt' offers fp16 and fp32, not {precision!r}",
                "use fp16 (int8/fp8 need a quantisation pass this version does not do)")
        self.trt = import_torch_tensorrt()
        self.model, self.device, self.precision = model, device, precision
        self.max_batch, self.hw_range = max(1, int(max_batch)), hw_range
        self.cache, self.use_cache = cache, use_cache
        self.dtype = _TORCH_DTYPES[precision]
        self.module: Any = None
        self.input_shape: tuple[int, ...] | None = None
        self.prepare_s: float | None = None
        self.cache_hit: bool | None = None

    # -- building --------------------------------------------------------------------------
    def _inputs(self, shape: tuple[int, ...]) -> list[Any]:
        b, f, h, w = shape
        if self.max_batch == 1 and self.hw_range is None:
            return [self.trt.Input(shape=list(shape), dtype=self.dtype)]
        (h0, w0), (h1, w1) = self.hw_range or ((h, w), (h, w))
        return [self.trt.Input(min_shape=[1, f, h0, w0], opt_shape=[b, f, h, w],
                               max_shape=[max(b, self.max_batch), f, h1, w1], dtype=self.dtype)]

    def _key_parts(self, shape: tuple[int, ...]) -> dict[str, Any]:
        try:
            import tensorrt

            trt_version = tensorrt.__version__
        except ImportError:
            trt_version = None
        dev = torch.device(self.device)
        return {
            "model": model_fingerprint(self.model), "shape": list(shape), "precision": self.precision,
            "max_batch": self.max_batch, "hw_range": self.hw_range,
            "gpu": torch.cuda.get_device_name(dev), "capability": list(torch.cuda.get_device_capability(dev)),
            "tensorrt": trt_version, "torch_tensorrt": self.trt.__version__, "torch": torch.__version__,
        }

    def cache_path(self, shape: tuple[int, ...]) -> Path:
        """Where the engine for ``shape`` is (or will be) cached."""
        folder = Path(self.cache) if self.cache is not None else cache_dir("tensorrt")
        _, f, h, w = shape
        key = cache_key(**self._key_parts(shape))
        return folder / f"{self.model.spec.name}-{h}x{w}-{self.precision}-{key}.ep"

    def _precision_kwargs(self) -> dict[str, Any]:
        """fp16: weak-typing releases need ``enabled_precisions``; explicit-typing ones take it from
        the (fp16) weights and inputs and reject the deprecated argument."""
        params = inspect.signature(self.trt.dynamo.compile).parameters
        explicit = params.get("use_explicit_typing")
        if explicit is not None and explicit.default is True:
            return {}
        return {"enabled_precisions": {self.dtype}}

    def _build(self, shape: tuple[int, ...], path: Path) -> None:
        from rich.console import Console

        net = copy.deepcopy(self.model.net).float().eval()
        net, _ = fold_batchnorm(net, torch.rand(1, shape[1], 32, 32))
        net = net.to(self.device).to(self.dtype)
        inputs = self._inputs(shape)
        example = [torch.rand(shape, dtype=self.dtype, device=self.device)]
        t0 = time.perf_counter()
        label = f"building TensorRT engine {self.precision} {tuple(shape)} for {self.model.model_id}"
        with Console(stderr=True).status(f"{label} (first start only; minutes for large models)"):
            try:
                with torch.no_grad():
                    trt_gm = self.trt.compile(net, ir="dynamo", inputs=inputs, min_block_size=1,
                                              **self._precision_kwargs())
                try:
                    # static: example tensors; dynamic profile: the Input objects keep the ranges
                    static = self.max_batch == 1 and self.hw_range is None
                    self.trt.save(trt_gm, str(path), arg_inputs=example if static else inputs)
                except TypeError:  # releases before 2.5 call it ``inputs``
                    self.trt.save(trt_gm, str(path), inputs=example)
            except EngineUnavailableError:
                raise
            except Exception as err:
                raise EngineUnavailableError(
                    f"TensorRT could not compile {self.model.model_id} for {tuple(shape)} {self.precision}: "
                    f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                    "use --engine auto or torch; try precision fp32 or a static shape") from err
        log.info("%s: built in %.1f s, cached at %s", label, time.perf_counter() - t0, path)

    def _load(self, path: Path) -> Any:
        loaded = self.trt.load(str(path))
        module = loaded.module() if hasattr(loaded, "module") else loaded
        return module.to(self.device) if hasattr(module, "to") else module

    # -- Engine protocol ---------------------------------------------------------------------
    def prepare(self, input_shape: tuple[int, int, int, int]) -> None:
        """Load the cached engine for ``input_shape`` or build (and cache) it; warm up."""
        shape = tuple(int(s) for s in input_shape)
        if self.module is not None and self.input_shape == shape:
            return
        t0 = time.perf_counter()
        path = self.cache_path(shape)
        if self.use_cache:
            self.module, self.cache_hit = cached_artifact(
                path, lambda tmp: self._build(shape, tmp), self._load, what="TensorRT engine")
        else:
            tmp = path.with_suffix(".tmp.ep")
            try:
                self._build(shape, tmp)
                self.module, self.cache_hit = self._load(tmp), False
            finally:
                tmp.unlink(missing_ok=True)
        self.input_shape = shape
        x = torch.zeros(shape, dtype=self.dtype, device=self.device)
        with torch.inference_mode():
            for _ in range(3):
                self.module(x)
        torch.cuda.synchronize(self.device)
        self.prepare_s = time.perf_counter() - t0
        if self.cache_hit:
            log.info("loaded cached TensorRT engine %s in %.1f s", path.name, self.prepare_s)

    def _fits(self, shape: tuple[int, ...]) -> bool:
        assert self.input_shape is not None
        b, f, h, w = shape
        if f != self.input_shape[1] or b > max(self.max_batch, self.input_shape[0]):
            return False
        if self.max_batch == 1 and b != self.input_shape[0]:
            return False
        if self.hw_range is None:
            return (h, w) == self.input_shape[2:]
        (h0, w0), (h1, w1) = self.hw_range
        return h0 <= h <= h1 and w0 <= w <= w1

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Run on a tensor already on the GPU (any float dtype); returns the GPU output."""
        with torch.inference_mode():
            return self.module(x.to(self.dtype))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Map ``(B, in_frames, H, W)`` float32 to ``(B, 1, H*s, W*s)`` float32."""
        if self.module is None or not self._fits(batch.shape):
            if self.module is not None:
                log.warning("engine tensorrt: input %s outside the compiled profile %s: rebuilding "
                            "(tile, or build a dynamic profile)", batch.shape, self.input_shape)
            self.prepare(batch.shape)
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device, non_blocking=False)
        return self.forward_tensor(x).float().cpu().numpy()


register_engine("tensorrt", TensorRTEngine)
