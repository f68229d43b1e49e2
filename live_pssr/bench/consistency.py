"""``live-pssr bench consistency``: what the per-frame consistency check costs beside the enhancement.

For each raw frame size: a simulated camera frame, its enhanced frame from the model (the default
``mito-sr4-fast`` through the engine ``auto`` picks, as live), then

- ``enhance_ms``: the model's enhancement of that frame (median of ``repeats``, after a warm-up);
- ``check_ms``: :func:`~live_pssr.consistency.check_consistency` of the pair with the noise
  estimated from the frame (no calibration: the dearer case), ``check_camera_ms`` with the camera's
  noise model given, ``check_psf_ms`` with a forward blur of 1.118 enhanced pixels (the blur of
  PSSR's crappifier; the shipped models default to 0), and, on a CUDA machine, ``check_gpu_ms``
  with the enhanced frame as a CUDA tensor (projected on the GPU, only the raw-size result copied);
- ``ratio_pct``: ``check_ms / enhance_ms`` in %; the target is under 10 %.

Timings are medians over ``repeats`` calls on the same frames (one thread of Python; numpy may use
its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

#: the forward blur of PSSR's fluorescence crappifier at 4x (enhanced pixels)
PSSR_BLUR = 1.118


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up (caches, lazy imports)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def bench_consistency(sizes: Sequence[int] = (256, 512), model: str = "mito-sr4-fast", engine: str = "auto",
                      repeats: int = 20, enhance_repeats: int = 5,
                      json_path: str | Path | None = None) -> list[dict[str, Any]]:
    """Time the consistency check against the model's enhancement at each raw size; print, write JSON."""
    from ..modelio import load_model
    from .report import report

    loaded = load_model(model)
    rows = [_bench_size(loaded, int(size), engine, repeats, enhance_repeats) for size in sizes]
    report("consistency", rows, json_path, columns=[
        "raw", "enhanced", "check_ms", "check_camera_ms", "check_psf_ms", "check_gpu_ms", "enhance_ms",
        "ratio_pct", "engine", "flagged", "score", "max_error", "threshold"])
    return rows


def _bench_size(loaded: Any, size: int, engine: str, repeats: int, enhance_repeats: int) -> dict[str, Any]:
    from ..consistency import check_consistency
    from ..enhancer import build_enhancer
    from ..sim import MicroscopeConfig, SimulatedMicroscope

    up = loaded.spec.upscale
    mic = SimulatedMicroscope(MicroscopeConfig(height=size, width=size, upscale=up))
    raw = mic.frame(0)
    enhancer = build_enhancer(loaded, (size, size), engine, prepare=True)
    enhanced = enhancer.enhance_window([raw])
    enhance_ms = _median_ms(lambda: enhancer.enhance_window([raw]), enhance_repeats)
    result = check_consistency(raw, enhanced, up, model=loaded)
    check_ms = _median_ms(lambda: check_consistency(raw, enhanced, up, model=loaded), repeats)
    camera_ms = _median_ms(lambda: check_consistency(raw, enhanced, up, model=loaded, camera=mic.camera),
                           repeats)
    psf_ms = _median_ms(lambda: check_consistency(raw, enhanced, up, PSSR_BLUR), repeats)
    return {
        "raw": f"{size}x{size}", "enhanced": f"{enhanced.shape[0]}x{enhanced.shape[1]}",
        "check_ms": check_ms, "check_camera_ms": camera_ms, "check_psf_ms": psf_ms,
        "check_gpu_ms": _gpu_ms(raw, enhanced, up, repeats), "enhance_ms": enhance_ms,
        "ratio_pct": 100.0 * check_ms / enhance_ms, "engine": enhancer.engine_name,
        "model": loaded.model_id, "flagged": result.flagged, "score": round(result.score, 4),
        "max_error": round(float(result.error_map.max()), 2), "threshold": round(result.threshold, 2),
    }


def _gpu_ms(raw: np.ndarray, enhanced: np.ndarray, upscale: int, repeats: int) -> float | None:
    """The check with the enhanced frame already on the GPU (as the engine leaves it); None without CUDA."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not torch.cuda.is_available():
        return None
    from ..consistency import check_consistency

    tensor = torch.from_numpy(enhanced.astype(np.float32)).cuda()

    def run() -> None:
        check_consistency(raw, tensor, upscale)
        torch.cuda.synchronize()

    return _median_ms(run, repeats)


def command(
    json_path: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = Path(
        "bench-results/consistency.json"),
    sizes: Annotated[str, typer.Option("--sizes", help="Raw frame sizes (square), comma-separated.")]
    = "256,512",
    model: Annotated[str, typer.Option(help="Model whose enhancement is the reference.")] = "mito-sr4-fast",
    engine: Annotated[str, typer.Option(help="Engine of the enhancement (auto: as live).")] = "auto",
    repeats: Annotated[int, typer.Option(min=1, help="Timed calls of the check per size.")] = 20,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer calls (a smoke test).")] = False,
) -> None:
    """Cost of the per-frame consistency check at 256² and 512², next to the model's enhancement time."""
    from .report import check_engine_name, check_json_path, number_list

    size_list = number_list(sizes, "--sizes", int, 16, "256,512")
    check_engine_name(engine)
    check_json_path(json_path)
    bench_consistency(size_list, model, engine, repeats=3 if quick else repeats,
                      enhance_repeats=1 if quick else 5, json_path=json_path)
