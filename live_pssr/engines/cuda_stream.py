"""The GPU data path: pinned buffers and one CUDA stream per stage, so frames overlap.

:class:`CudaStreamEngine` wraps any engine that can run on device tensors (``forward_tensor``:
:class:`~.torch_engine.TorchEngine`, :class:`~.compile_engine.CompileEngine`,
:class:`~.tensorrt_engine.TensorRTEngine`) and is itself an :class:`~.base.Engine`, so the pipeline
uses it unchanged. Per submitted batch::

    host frame --memcpy--> pinned slot --H2D stream--> GPU in  (event)
    compute stream: wait(H2D) -> [uint16 -> float, (x-lo)/(hi-lo)] -> net -> [*(hi-lo)+lo, round, clip]
    D2H stream: wait(compute) -> pinned out slot (event) --> result

``depth`` slots (default 3) of preallocated pinned host and device buffers are used round-robin,
so while frame *n* computes, frame *n+1* uploads and frame *n-1* downloads (:meth:`submit` /
:meth:`result`; :meth:`run` is the synchronous shortcut). After the first frame of a shape no
buffer is allocated per frame (activations come from PyTorch's caching allocator).

:meth:`submit_raw` moves the intensity normalisation onto the GPU: camera integers go up (half
the bytes of float32), are normalised there with the per-frame ``lo, hi``, and the enhanced image
comes back already denormalised in the camera's integer type (a quarter of the bytes of float32 at
4x upscaling: 16 x fewer pixels' worth of float traffic than a float round trip). uint16 travels
as int16 bit patterns (PyTorch's uint16 support on CUDA is minimal).

Batching: a submission carries ``1..max_batch`` frames; a pipeline that falls behind stacks the
frames it has queued (not under the preview policy, which drops them) into one call.

Without CUDA the same code runs synchronously on the CPU (no streams, unpinned buffers): that is
how its bookkeeping and the on-device normalisation maths are tested on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import EngineUnavailableError

log = logging.getLogger("live_pssr.engines")


@dataclass
class _Buffers:
    """Preallocated host (pinned) and device tensors for one input kind and shape."""

    host_in: torch.Tensor
    dev_in: torch.Tensor
    host_out: torch.Tensor
    host_norm: torch.Tensor  # (max_batch, F, 2): lo, 1/(hi-lo) per input frame
    dev_norm: torch.Tensor
    host_den: torch.Tensor  # (max_batch, 2): lo, hi-lo of the frame the output belongs to
    dev_den: torch.Tensor


@dataclass
class _Slot:
    """One in-flight submission's buffers and state."""

    buffers: dict[str, _Buffers] = field(default_factory=dict)
    current: _Buffers | None = None
    done: Any = None
    ticket: int = -1
    collected: bool = True
    n: int = 0
    out_kind: str = "float32"


_IN_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.int16,
              np.dtype(np.float32): torch.float32}


class CudaStreamEngine:
    """Overlapped upload/compute/download around an engine with ``forward_tensor``.

    Parameters
    ----------
    inner : Engine
        An engine exposing ``forward_tensor(x) -> y`` on its ``device`` and its ``model``.
    depth : int
        Submissions in flight (pinned buffer sets).
    max_batch : int
        Most frames per submission.
    """

    def __init__(self, inner: Any, depth: int = 3, max_batch: int = 4) -> None:
        if not hasattr(inner, "forward_tensor") or not hasattr(inner, "model"):
            raise EngineUnavailableError(
                f"engine {getattr(inner, 'name', inner)!r} cannot run on device tensors",
                "wrap a torch, compile or tensorrt engine")
        self.inner = inner
        self.name, self.device, self.precision = inner.name, inner.device, inner.precision
        self.upscale = int(inner.model.spec.upscale)
        self.depth, self.max_batch = max(1, depth), max(1, max_batch)
        self.cuda = str(self.device).startswith("cuda")
        self._dev = torch.device(self.device)
        self._streams: tuple[Any, Any, Any] = (
            tuple(torch.cuda.Stream(self._dev) for _ in range(3)) if self.cuda else (None, None, None))
        self._slots = [_Slot() for _ in range(self.depth)]
        self._ticket = 0
        self._parked: dict[int, np.ndarray] = {}
        self.input_shape: tuple[int, ...] | None = None
        self.prepare_s: float | None = None

    # -- buffers ---------------------------------------------------------------------------
    def _host(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, pin_memory=self.cuda)

    def _buffers(self, slot: _Slot, in_dtype: np.dtype, out_kind: str, shape: tuple[int, ...]) -> _Buffers:
        key = f"{in_dtype}>{out_kind}:{shape[1:]}"  # sized for max_batch: any batch size fits
        buf = slot.buffers.get(key)
        if buf is None:
            _, f, h, w = shape
            t_in = _IN_DTYPES[np.dtype(in_dtype)]
            t_out = {"uint8": torch.uint8, "uint16": torch.int16}.get(out_kind, torch.float32)
            mb, s = self.max_batch, self.upscale
            buf = slot.buffers[key] = _Buffers(
                host_in=self._host((mb, f, h, w), t_in),
                dev_in=torch.empty((mb, f, h, w), dtype=t_in, device=self._dev),
                host_out=self._host((mb, 1, h * s, w * s), t_out),
                host_norm=self._host((mb, f, 2), torch.float32),
                dev_norm=torch.empty((mb, f, 2), dtype=torch.float32, device=self._dev),
                host_den=self._host((mb, 2), torch.float32),
                dev_den=torch.empty((mb, 2), dtype=torch.float32, device=self._dev),
            )
        return buf

    def _stream(self, s: Any) -> contextlib.AbstractContextManager:
        return torch.cuda.stream(s) if self.cuda else contextlib.nullcontext()

    def _event(self, stream: Any) -> Any:
        if not self.cuda:
            return None
        ev = torch.cuda.Event()
        ev.record(stream)
        return ev

    # -- Engine protocol ---------------------------------------------------------------------
    def prepare(self, input_shape: tuple[int, int, int, int]) -> None:
        """Prepare the inner engine and allocate the float path's buffers for ``input_shape``."""
        if self.input_shape == tuple(input_shape):
            return
        self.inner.prepare(tuple(input_shape))
        self.input_shape = tuple(input_shape)
        self.prepare_s = getattr(self.inner, "prepare_s", None)
        self.run(np.zeros(input_shape, np.float32))  # allocates the slots' buffers

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Synchronous float path: ``(B, F, H, W)`` float32 -> ``(B, 1, H*s, W*s)`` float32."""
        return self.result(self.submit(batch))

    # -- asynchronous API ----------------------------------------------------------------------
    def submit(self, batch: np.ndarray) -> int:
        """Queue a normalised float32 ``(B, F, H, W)`` batch; returns a ticket for :meth:`result`."""
        return self._submit(np.asarray(batch, np.float32), None, None, "float32")

    def submit_raw(self, frames: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float,
                   out_dtype: np.dtype | str | None = None) -> int:
        """Queue camera frames ``(B, F, H, W)`` (uint8/uint16), normalised on the device.

        ``lo``/``hi`` are per window frame ``(B, F)``, per batch item ``(B,)`` or scalars (as the
        :class:`~live_pssr.enhancer.Enhancer` computes them); the output is mapped back with the
        newest frame's range into ``out_dtype`` (default: the frames' dtype; float32 allowed).
        """
        frames = np.asarray(frames)
        if frames.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"submit_raw takes uint8/uint16 frames, not {frames.dtype}")
        b, f = frames.shape[:2]
        lo_a = np.broadcast_to(np.asarray(lo, np.float32).reshape(-1, 1) if np.ndim(lo) == 1 else lo, (b, f))
        hi_a = np.broadcast_to(np.asarray(hi, np.float32).reshape(-1, 1) if np.ndim(hi) == 1 else hi, (b, f))
        out = np.dtype(out_dtype or frames.dtype)
        kind = out.name if out in (np.dtype(np.uint8), np.dtype(np.uint16)) else "float32"
        return self._submit(frames, lo_a.astype(np.float32), hi_a.astype(np.float32), kind)

    def _acquire(self) -> _Slot:
        slot = self._slots[self._ticket % self.depth]
        if not slot.collected:  # the caller is `depth` results behind: park the oldest
            self._parked[slot.ticket] = self._collect(slot)
        return slot

    def _submit(self, batch: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None, out_kind: str) -> int:
        b, f, h, w = batch.shape
        if b > self.max_batch:
            raise ValueError(f"batch of {b} frames exceeds max_batch={self.max_batch}")
        raw = lo is not None and hi is not None
        slot = self._acquire()
        buf = self._buffers(slot, batch.dtype, out_kind, (b, f, h, w))
        np.copyto(buf.host_in.numpy()[:b], batch.view(np.int16) if batch.dtype == np.uint16 else batch)
        if raw:
            scale = np.maximum(hi - lo, np.float32(1e-6))
            norm, den = buf.host_norm.numpy(), buf.host_den.numpy()
            norm[:b, :, 0], norm[:b, :, 1] = lo, 1.0 / scale
            den[:b, 0], den[:b, 1] = lo[:, -1], scale[:, -1]
        h2d, comp, d2h = self._streams
        with self._stream(h2d):
            x = buf.dev_in[:b]
            x.copy_(buf.host_in[:b], non_blocking=self.cuda)
            if raw:
                buf.dev_norm[:b].copy_(buf.host_norm[:b], non_blocking=self.cuda)
                buf.dev_den[:b].copy_(buf.host_den[:b], non_blocking=self.cuda)
            uploaded = self._event(h2d)
        with self._stream(comp):
            if self.cuda:
                comp.wait_event(uploaded)
            if raw:
                xi = (x.to(torch.int32) & 0xFFFF) if x.dtype == torch.int16 else x.to(torch.int32)
                nrm = buf.dev_norm[:b].view(b, f, 2, 1, 1)
                x = (xi.float() - nrm[:, :, 0]) * nrm[:, :, 1]
            y = self.inner.forward_tensor(x.float()).float()
            if raw:
                den = buf.dev_den[:b].view(b, 2, 1, 1)
                y = y * den[:, 1:2] + den[:, 0:1]
                if out_kind == "uint8":
                    y = y.round_().clamp_(0.0, 255.0).to(torch.uint8)
                elif out_kind == "uint16":  # int16 bit pattern of the uint16 value
                    y = (y.round_().clamp_(0.0, 65535.0) - 32768.0).to(torch.int16)
            computed = self._event(comp)
        with self._stream(d2h):
            if self.cuda:
                d2h.wait_event(computed)
                y.record_stream(d2h)
            buf.host_out[:b].copy_(y, non_blocking=self.cuda)
            slot.done = self._event(d2h)
        slot.current, slot.ticket, slot.n, slot.out_kind = buf, self._ticket, b, out_kind
        slot.collected = False
        self._ticket += 1
        return slot.ticket

    def _collect(self, slot: _Slot) -> np.ndarray:
        if slot.done is not None:
            slot.done.synchronize()
        slot.collected = True
        out = slot.current.host_out.numpy()[: slot.n]  # type: ignore[union-attr]
        if slot.out_kind == "uint16":
            return out.view(np.uint16) ^ np.uint16(0x8000)  # back to uint16 (a new array)
        return out.copy()

    def result(self, ticket: int) -> np.ndarray:
        """Wait for submission ``ticket`` and return its output (a new array)."""
        if ticket in self._parked:
            return self._parked.pop(ticket)
        slot = self._slots[ticket % self.depth]
        if slot.ticket != ticket or slot.collected:
            raise KeyError(f"ticket {ticket} was already collected or never submitted")
        return self._collect(slot)

    def run_raw(self, frames: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float,
                out_dtype: np.dtype | str | None = None) -> np.ndarray:
        """Synchronous :meth:`submit_raw`."""
        return self.result(self.submit_raw(frames, lo, hi, out_dtype))


__all__ = ["CudaStreamEngine"]
