"""Frame in, enhanced frame out: normalisation, the multi-frame window, and the engine call.

:class:`Enhancer` is what the live pipeline and offline ``enhance`` call. For each camera frame it
computes the input's percentile range, normalises, pushes the frame into a ring buffer of the
model's ``in_frames`` (a multi-frame model gets a prediction for every frame: until the window is
full, the earliest frame is repeated), runs the engine and maps the output back to the input's
intensity units and dtype (or float32). An output holding NaN or Inf raises
:class:`~live_pssr.errors.EnhancementError` (the live pipeline marks that frame 'failed' with the
reason; nothing is stored as if it were enhanced).

:meth:`Enhancer.enhance_windows` runs several windows as one batch (one engine call of batch
``B``): the live pipeline's ``complete`` policy uses it when frames wait, so a GPU's (or a CPU
engine's) per-call overhead is paid once per batch. Each frame keeps its own normalisation;
the outputs equal ``enhance_window`` of each window within the engine's gate tolerance.

:func:`build_enhancer` is the one factory: a model (name, path or loaded) and an engine name,
chosen and gated by :func:`~live_pssr.engines.select_engine` for the frame size, whatever the
caller (CLI, LiveSession, benchmarks): ``engine="torch"`` means the same everywhere.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .engines import Engine, make_engine
from .errors import EnhancementError
from .modelio import LoadedModel, load_model
from .normalize import denormalize, normalize, percentile_range


class Enhancer:
    """Enhance single camera frames with a loaded model through an engine."""

    def __init__(
        self,
        model: LoadedModel | str = "mito-sr4-fast",
        engine: Engine | str = "torch",
        out_dtype: np.dtype | str | None = None,
    ) -> None:
        self.model = load_model(model) if isinstance(model, str) else model
        self.engine = make_engine(engine, self.model) if isinstance(engine, str) else engine
        self.out_dtype = None if out_dtype is None else np.dtype(out_dtype)
        self.upscale = self.model.spec.upscale
        self.in_frames = self.model.spec.in_frames
        self._window: deque[np.ndarray] = deque(maxlen=self.in_frames)
        self._prepared: tuple[int, ...] | None = None

    @property
    def engine_name(self) -> str:
        return f"{self.engine.name}:{self.engine.device}:{self.engine.precision}"

    def output_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return shape[0] * self.upscale, shape[1] * self.upscale

    def prepare(self, shape: tuple[int, int]) -> None:
        """Compile/warm up the engine for frames of ``shape`` (done once per shape)."""
        full = (1, self.in_frames, *shape)
        if self._prepared != full:
            self.engine.prepare(full)
            self._prepared = full

    def reset(self) -> None:
        """Forget the multi-frame window (new run, or after a gap)."""
        self._window.clear()

    def _normalized(self, image: np.ndarray) -> tuple[np.ndarray, float, float]:
        lo, hi = percentile_range(image, self.model.spec.norm_low, self.model.spec.norm_high)
        return normalize(image, lo, hi), lo, hi

    def _run(self, window: list[np.ndarray], lo: float, hi: float, dtype: np.dtype) -> np.ndarray:
        self.prepare(window[-1].shape)
        y = self.engine.run(np.stack(window)[None])[0, 0]
        return self._output(y, lo, hi, dtype)

    def _output(self, y: np.ndarray, lo: float, hi: float, dtype: np.dtype) -> np.ndarray:
        if not np.isfinite(y).all():
            bad = int(np.size(y) - np.isfinite(y).sum())
            raise EnhancementError(
                f"the model's output holds {bad} NaN/Inf value(s) ({self.engine_name})",
                "the frame is kept raw-only; if it repeats, try --engine torch or another model")
        return denormalize(y, lo, hi, self.out_dtype or dtype)

    def enhance(self, image: np.ndarray) -> np.ndarray:
        """Enhance the next frame of a stream (multi-frame models use the previous frames too).

        Returns ``out_dtype`` (default: the input's dtype), in the input's intensity units.
        """
        x, lo, hi = self._normalized(image)
        if not self._window:
            self._window.extend([x] * self.in_frames)
        else:
            self._window.append(x)
        return self._run(list(self._window), lo, hi, image.dtype)

    def _window_input(self, frames: list[np.ndarray], ref: int) -> tuple[list[np.ndarray], float, float,
                                                                          np.dtype]:
        frames = list(frames)[-self.in_frames:]
        pad = self.in_frames - len(frames)
        frames = [frames[0]] * pad + frames
        normed = [self._normalized(f) for f in frames]
        k = ref if ref < 0 else ref + pad
        return [n[0] for n in normed], normed[k][1], normed[k][2], frames[k].dtype

    def enhance_window(self, frames: list[np.ndarray], ref: int = -1) -> np.ndarray:
        """Enhance one window of ``frames`` (oldest first), statelessly.

        Multi-frame models take the last ``in_frames`` of ``frames``; fewer are padded by
        repeating the oldest. The output belongs to frame ``ref`` of the window (-1: the newest;
        the centre for centre-target models) and is mapped back with that frame's range.
        """
        x, lo, hi, dtype = self._window_input(frames, ref)
        return self._run(x, lo, hi, dtype)

    def enhance_windows(self, windows: list[list[np.ndarray]], ref: int = -1) -> list[np.ndarray]:
        """Enhance several windows in one engine call (batch ``len(windows)``), statelessly.

        Same frame size for all. Raises :class:`~live_pssr.errors.EnhancementError` if any output
        holds NaN/Inf (the caller then enhances the windows one by one to find which).
        """
        if len(windows) == 1:
            return [self.enhance_window(windows[0], ref)]
        inputs = [self._window_input(w, ref) for w in windows]
        self.prepare(inputs[0][0][-1].shape)
        y = self.engine.run(np.stack([np.stack(x) for x, *_ in inputs]))
        return [self._output(y[i, 0], lo, hi, dtype) for i, (_, lo, hi, dtype) in enumerate(inputs)]


def build_enhancer(model: LoadedModel | str, frame_shape: tuple[int, int], engine: str = "auto",
                   prepare: bool = False) -> Enhancer:
    """Load ``model`` (name, path or LoadedModel) and choose its engine for ``frame_shape``.

    Every engine name goes through :func:`~live_pssr.engines.select_engine` (device choice and
    correctness gate). ``prepare``: also compile / warm it up for ``frame_shape`` now.
    """
    from .engines import select_engine

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    enhancer = Enhancer(loaded, select_engine(loaded, frame_shape, name=engine))
    if prepare:
        enhancer.prepare(frame_shape)
    return enhancer
