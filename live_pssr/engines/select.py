"""``--engine auto``: time the engines that can run here, keep the fastest correct one.

:func:`select_engine` is what the live and offline commands call. For a named engine it builds,
prepares and gates it (:mod:`.gate`) and returns it, or raises
:class:`~live_pssr.errors.EngineUnavailableError`. For ``auto`` it:

1. lists candidates for the device (:func:`candidates`): on CUDA TensorRT fp16, eager fp16/fp32
   (and ``torch.compile`` when ``thorough``); on the CPU OpenVINO, ONNX Runtime and eager
   PyTorch in fp32, plus bf16 variants only where the CPU has native bf16 (emulated bf16 is
   8-100x slower). ``torch.compile`` is skipped on the CPU unless ``thorough`` (tens of seconds
   of compilation on small CPUs for little gain);
2. looks up the decision cached for (model, input shape, device, machine, candidates) in
   ``cache_dir('decisions')``; a cached choice is rebuilt, gated and returned without timing;
3. otherwise builds each candidate (a missing package or GPU is a row saying so, not a crash),
   prepares it (timed: compile/export/load), gates it on a calibration frame, times a few runs
   (at least 3, at most 20, about ``budget_s`` seconds), and picks the fastest that passed;
4. logs the table (INFO on ``live_pssr.engines``) and stores the decision.

GPU engines are returned wrapped in :class:`~.cuda_stream.CudaStreamEngine` (pinned buffers,
per-stage streams), and every engine in :class:`~.tiled.AutoTileEngine` when tiling may be
needed (a ``tile`` was asked for, or on CUDA: out-of-memory falls back to tiles).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import EngineUnavailableError
from ..modelio import LoadedModel
from ..tiling import net_alignment
from .base import ENGINES, Engine, describe, make_engine, parse_engine_name
from .cache import cache_dir, cache_key, machine_fingerprint, model_fingerprint, read_json, write_json
from .capabilities import cpu_has_native_bf16, cuda_available, module_available
from .gate import calibration_batch, check_engine, reference_output
from .tiled import tile_shape

log = logging.getLogger("live_pssr.engines")

_DECISION_VERSION = 1
_DEFAULT_PRECISION = {"cpu": "fp32", "cuda": "fp16"}
#: engines that run on the CPU unless a device is given
CPU_ENGINES = ("openvino", "onnxruntime")


@dataclass
class Trial:
    """One candidate's outcome in an ``auto`` calibration."""

    engine: str
    device: str
    precision: str
    status: str  # "ok", "failed gate", "unavailable", "error"
    prepare_s: float | None = None
    p50_ms: float | None = None
    fps: float | None = None
    max_rel_err: float | None = None
    note: str = ""
    hint: str = field(default="", repr=False)  # the fix, when the engine is unavailable

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.device}:{self.precision}"


@dataclass
class Selection:
    """The result of :func:`choose_engine`."""

    engine: Any
    trials: list[Trial] = field(default_factory=list)
    cached: bool = False
    key: str = ""

    def table(self) -> str:
        """A plain-text table of the trials (what ``auto`` logs)."""
        lines = [f"{'engine':34s} {'status':12s} {'prepare s':>9s} {'p50 ms':>8s} {'fps':>7s} "
                 f"{'max rel err':>11s}"]
        for t in self.trials:
            def f(v: float | None, fmt: str) -> str:
                return format(v, fmt) if v is not None else "-"
            lines.append(f"{t.label:34s} {t.status:12s} {f(t.prepare_s, '9.2f')} {f(t.p50_ms, '8.1f')} "
                         f"{f(t.fps, '7.1f')} {f(t.max_rel_err, '11.2g')}  {t.note}")
        return "\n".join(lines)


def normalize_device(device: str | None) -> str:
    """``None`` -> ``cuda`` when a GPU is visible else ``cpu``; ``gpu`` -> ``cuda``."""
    if device is None:
        return "cuda" if cuda_available() else "cpu"
    device = device.lower()
    return "cuda" if device == "gpu" else device


def candidates(device: str, thorough: bool = False) -> list[tuple[str, str, str]]:
    """``(engine, device, precision)`` triples worth timing on ``device`` here."""
    out: list[tuple[str, str, str]] = []
    if device.startswith("cuda"):
        if module_available("torch_tensorrt"):
            out.append(("tensorrt", device, "fp16"))
        if thorough:
            out.append(("compile", device, "fp16"))
        out += [("torch", device, "fp16"), ("torch", device, "fp32")]
        return [c for c in out if c[0] in ENGINES]
    bf16 = cpu_has_native_bf16()
    if module_available("openvino"):
        out.append(("openvino", "cpu", "fp32"))
        if bf16:
            out.append(("openvino", "cpu", "bf16"))
    if module_available("onnxruntime"):
        out.append(("onnxruntime", "cpu", "fp32"))
    out.append(("torch", "cpu", "fp32"))
    if bf16:
        out.append(("torch", "cpu", "bf16"))
    if thorough:
        out.append(("compile", "cpu", "fp32"))
    return [c for c in out if c[0] in ENGINES]


def time_runs(engine: Any, batch: Any, budget_s: float, min_runs: int = 3,
              max_runs: int = 20) -> list[float]:
    """Seconds of each ``engine.run(batch)``: ``min_runs`` at least, then until ``budget_s``/``max_runs``."""
    times: list[float] = []
    t_start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - t_start < budget_s):
        t0 = time.perf_counter()
        engine.run(batch)
        times.append(time.perf_counter() - t0)
    return times


def _build(name: str, model: LoadedModel, device: str, precision: str, shape: tuple[int, ...],
           engine_kwargs: dict[str, Any]) -> Any:
    eng = make_engine(name, model, device=device, precision=precision, **engine_kwargs.get(name, {}))
    eng.prepare(shape)
    return eng


def _wrap(engine: Any, model: LoadedModel, shape: tuple[int, ...], tile: int | None,
          streams: bool) -> Any:
    from .cuda_stream import CudaStreamEngine
    from .tiled import AutoTileEngine

    cuda = str(engine.device).startswith("cuda")
    if cuda and streams and hasattr(engine, "forward_tensor"):
        engine = CudaStreamEngine(engine, max_batch=shape[0])
        engine.input_shape = shape  # inner already prepared; buffers allocate on first use
    if tile is not None or cuda:
        wrapped = AutoTileEngine(engine, model, tile=tile)
        wrapped.input_shape = shape
        engine = wrapped
    return engine


def _trial(name: str, model: LoadedModel, device: str, precision: str, shape: tuple[int, ...],
           batch: np.ndarray, ref: np.ndarray, budget_s: float | None,
           engine_kwargs: dict[str, Any]) -> tuple[Trial, Any]:
    """Build, prepare, gate and (``budget_s`` not None) time one candidate."""
    trial = Trial(name, device, precision, "error")
    try:
        t0 = time.perf_counter()
        eng = _build(name, model, device, precision, shape, engine_kwargs)
        trial.prepare_s = getattr(eng, "prepare_s", None) or (time.perf_counter() - t0)
    except EngineUnavailableError as err:
        trial.status, trial.note, trial.hint = "unavailable", err.message, err.hint
        return trial, None
    except Exception as err:  # a broken backend must not stop the selection
        trial.note = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        return trial, None
    gate = check_engine(eng, model, batch, ref)
    trial.max_rel_err = gate.max_rel_err if np.isfinite(gate.max_rel_err) else None
    if not gate.passed:
        trial.status, trial.note = "failed gate", gate.reason
        return trial, None
    if budget_s is None:
        trial.status = "ok"
        return trial, eng
    try:
        times = time_runs(eng, batch, budget_s)
    except Exception as err:
        trial.note = f"{type(err).__name__} while timing: {err}"
        return trial, None
    trial.p50_ms = float(np.median(times)) * 1e3
    trial.fps = batch.shape[0] / float(np.median(times))
    trial.status = "ok"
    return trial, eng


def choose_engine(
    model: LoadedModel,
    frame_shape: tuple[int, int],
    name: str = "auto",
    device: str | None = None,
    *,
    batch: int = 1,
    tile: int | None = None,
    use_cache: bool = True,
    refresh: bool = False,
    thorough: bool = False,
    budget_s: float = 1.0,
    streams: bool = True,
    calibration_frame: np.ndarray | None = None,
    engine_kwargs: dict[str, dict[str, Any]] | None = None,
) -> Selection:
    """Like :func:`select_engine` but returns the whole :class:`Selection` (trials, cache state)."""
    asked_device = device
    device = normalize_device(device)
    engine_kwargs = engine_kwargs or {}
    h, w = (int(v) for v in frame_shape)
    shape = tile_shape((int(batch), int(model.spec.in_frames), h, w), tile, net_alignment(model.net))
    prep_h, prep_w = shape[2:]
    frame = None
    if calibration_frame is not None:
        frame = np.asarray(calibration_frame, np.float32)[:prep_h, :prep_w]
        if frame.shape != (prep_h, prep_w):
            frame = None
    calib = calibration_batch(shape[1], (prep_h, prep_w), batch=shape[0], frame=frame)
    on_gpu = device.startswith("cuda") and cuda_available()
    ref = reference_output(model, calib, device=device if on_gpu else None)  # big frames: fp32 on the GPU

    base, precision = parse_engine_name(name)
    if base != "auto":
        if asked_device is None and base in CPU_ENGINES:
            device = "cpu"
        precision = precision or _DEFAULT_PRECISION["cuda" if device.startswith("cuda") else "cpu"]
        if base in CPU_ENGINES:
            precision = parse_engine_name(name)[1] or "fp32"
        trial, eng = _trial(base, model, device, precision, shape, calib, ref, None, engine_kwargs)
        if eng is None:
            raise EngineUnavailableError(
                f"engine {trial.label} cannot serve model {model.model_id} ({trial.status}): {trial.note}",
                (f"{trial.hint}; or " if trial.hint else "")
                + "use --engine auto (it picks a working engine) or another --engine")
        log.info("engine %s ready for %s (prepared in %.1f s, max rel err %.2g)", trial.label, shape,
                 trial.prepare_s or 0.0, trial.max_rel_err or 0.0)
        return Selection(_wrap(eng, model, shape, tile, streams), [trial], False, "")

    cands = candidates(device, thorough)
    key = cache_key(version=_DECISION_VERSION, model=model_fingerprint(model), shape=list(shape),
                    device=device, machine=machine_fingerprint(), candidates=cands, kwargs=engine_kwargs)
    path = cache_dir("decisions") / f"{model.spec.name}-{key}.json"
    if use_cache and not refresh:
        cached = read_json(path)
        if cached is not None:
            try:
                trial, eng = _trial(str(cached["engine"]), model, str(cached["device"]),
                                    str(cached["precision"]), shape, calib, ref, None, engine_kwargs)
            except (KeyError, TypeError):
                log.warning("engine decision cache %s is malformed: re-calibrating", path)
            else:
                if eng is not None:
                    trials = [Trial(**t) for t in cached.get("trials", []) if isinstance(t, dict)]
                    log.info("engine auto: using cached choice %s for %s %s (%s)", trial.label,
                             model.model_id, shape, path.name)
                    return Selection(_wrap(eng, model, shape, tile, streams), trials, True, key)
                log.warning("engine auto: cached choice %s no longer works (%s): re-calibrating",
                            trial.label, trial.note)

    trials: list[Trial] = []
    best: tuple[float, Any, Trial] | None = None
    for cname, cdev, cprec in cands:
        trial, eng = _trial(cname, model, cdev, cprec, shape, calib, ref, budget_s, engine_kwargs)
        trials.append(trial)
        if eng is not None and trial.p50_ms is not None and (best is None or trial.p50_ms < best[0]):
            best = (trial.p50_ms, eng, trial)
    if best is None and device.startswith("cuda") and asked_device is None:
        log.warning("engine auto: no GPU engine works here; trying the CPU engines")
        for cname, cdev, cprec in candidates("cpu", thorough):
            trial, eng = _trial(cname, model, cdev, cprec, shape, calib, ref, budget_s, engine_kwargs)
            trials.append(trial)
            if eng is not None and trial.p50_ms is not None and (best is None or trial.p50_ms < best[0]):
                best = (trial.p50_ms, eng, trial)
    if best is None:
        raise EngineUnavailableError(
            f"no engine could run model {model.model_id} for input {shape} on {device}:\n"
            + Selection(None, trials).table(),
            "check the model file; try --device cpu; reinstall onnxruntime/openvino/torch")
    _, eng, chosen = best
    sel = Selection(_wrap(eng, model, shape, tile, streams), trials, False, key)
    log.info("engine auto for %s, input %s on %s:\n%s\n-> picked %s (%.1f fps)", model.model_id, shape,
             device, sel.table(), chosen.label, chosen.fps or 0.0)
    if use_cache:
        write_json(path, {"engine": chosen.engine, "device": chosen.device, "precision": chosen.precision,
                          "model": model.model_id, "input_shape": list(shape),
                          "machine": machine_fingerprint(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                          "trials": [asdict(t) for t in trials]})
    return sel


def select_engine(
    model: LoadedModel,
    frame_shape: tuple[int, int],
    name: str = "auto",
    device: str | None = None,
    **kwargs: Any,
) -> Engine:
    """A prepared, gated engine for ``model`` on ``frame_shape`` frames.

    Parameters
    ----------
    model : LoadedModel
        The model to serve.
    frame_shape : (int, int)
        Camera frame size (H, W).
    name : str
        ``auto`` (fastest correct, cached per model/shape/machine) or an engine name, optionally
        with a precision: ``torch``, ``compile``, ``onnxruntime``, ``openvino``, ``tensorrt``,
        ``openvino:bf16``, ``tensorrt:fp32``, ...
    device : str, optional
        ``cpu`` or ``cuda``; default: ``cuda`` when a GPU is visible.
    **kwargs
        See :func:`choose_engine` (``batch``, ``tile``, ``use_cache``, ``refresh``, ``thorough``,
        ``budget_s``, ``streams``, ``calibration_frame``, ``engine_kwargs``).

    Raises
    ------
    EngineUnavailableError
        The named engine cannot run here or fails the correctness gate; or no engine works.
    """
    sel = choose_engine(model, frame_shape, name, device, **kwargs)
    engine = sel.engine
    try:
        engine.selection = sel
    except AttributeError:
        pass
    log.debug("selected %s", describe(engine))
    return engine


__all__ = ["Selection", "Trial", "candidates", "choose_engine", "normalize_device", "select_engine"]
