#!/usr/bin/env python
"""The GPU check: every GPU measurement live-pssr needs, in one bounded run (under 8 minutes on an H200).

Run through ``scripts/gpu_check.sh`` (which installs the carried wheels first), or directly::

    python scripts/gpu_check.py --out OUT [--budget-s 450] [--only env,pytest_gpu,...]

Steps, in order (each runs in its own process with a time limit; results go to
``OUT/gpu_check.json``, details to ``OUT/steps/NAME.json``, output to the log ``gpu_check.sh``
writes, ``OUT/gpu_check.log``):

==============  ==================================================================================
env             Python, torch/CUDA/triton/cuDNN, the GPU, core packages present, optional ones absent
                (``import live_pssr`` must load no Qt/OpenVINO/Micro-Manager module), auto's candidates
pytest_gpu      ``pytest -m gpu`` on the test files that have GPU tests (on the CPU: they all skip)
bench_engines   ``live-pssr bench engines --device cuda`` (eager fp32, torch fp32/fp16; shipped models;
                256², 512², 1024²); on the CPU a 32² smoke run of the same command
engines_extra   torch bf16 for every shipped model and ``torch.compile`` (max-autotune: Triton
                autotuning + CUDA graphs) for the default model, at 256², 512², 1024², against eager
                fp32 measured in the same process: round trip (numpy in/out) and device time
live_pipeline   the live pipeline end to end (LivePipeline + store) at 512² -> 2048² (CPU: 128² -> 512²):
                ``auto`` and eager fp32, complete (as fast as possible) and preview (paced) policies:
                fps, p50/p99 latency, ratio to eager fp32
cuda_streams    CudaStreamEngine at 512² fp16 (camera uint16 in, uint16 out): serial vs overlapped
                upload/compute/download, each stage timed alone, overlap efficiency
train_speed     steps/s of the default config's network and data (GPU: fp16 autocast; CPU: the
                baseline, a few steps)
train_quality   a few minutes of training of the default config on the GPU, then its validation
                PSNR/SSIM next to the shipped model's, and both on mito-holdout / sim-timelapse
==============  ==================================================================================

Without CUDA every GPU-only step records ``{"skipped": "no CUDA device (torch.cuda.is_available()
is False)"}``; the others run at a small size (a dry run of the whole script on any machine).
The budget is shared: each step gets at most its own limit and never so much that the later steps
cannot get their minimum; a step that runs past its limit is stopped and its partial results kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NO_CUDA = "no CUDA device (torch.cuda.is_available() is False)"
SIZES = (256, 512, 1024)
REHEARSAL_SIZES = (32, 48)  # --rehearsal: the GPU steps' code on the CPU at tiny sizes
REHEARSAL = "a CPU rehearsal of the GPU step's code at tiny sizes (--rehearsal): not a measurement"
SHIPPED = ("mito-sr4-fast", "mito-sr4-mf", "denoise-fast", "pssr-resunet-sr4")
DEFAULT_MODEL = "mito-sr4-fast"
DEFAULT_CONFIG = REPO / "configs" / "mito-sr4-fast.yaml"
#: core dependencies: importable module -> distribution (pyproject.toml [project] dependencies)
CORE = {
    "numpy": "numpy",
    "scipy": "scipy",
    "torch": "torch",
    "safetensors": "safetensors",
    "zarr": "zarr",
    "numcodecs": "numcodecs",
    "tifffile": "tifffile",
    "typer": "typer",
    "rich": "rich",
    "pydantic": "pydantic",
    "yaml": "pyyaml",
    "psutil": "psutil",
    "dask": "dask",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "matplotlib": "matplotlib",
}
#: not needed by any step here (a missing one is reported, not an error)
CORE_UNUSED_HERE = {"onnx": "exports for the onnxruntime rows", "matplotlib": "calibrate's plot"}
OPTIONAL = (
    "PySide6",
    "shiboken6",
    "qtpy",
    "pyqtgraph",
    "openvino",
    "pymmcore_plus",
    "pymmcore",
    "pycromanager",
    "useq",
    "torch_tensorrt",
)
EXTRA_DISTS = (
    "PySide6-Essentials",
    "qtpy",
    "pyqtgraph",
    "openvino",
    "pymmcore-plus",
    "pycromanager",
    "useq-schema",
    "torch-tensorrt",
    "tensorrt",
    "onnxruntime-gpu",
    "triton",
    "pytest",
)


# ------------------------------------------------------------------------------------------------
# plumbing


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def log(msg: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _r(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else float(f"{v:.{digits}g}")


class Context:
    """What a step gets: its output folder, its deadline, the device, and a way to save partial results."""

    def __init__(self, out: Path, name: str, limit_s: float, cuda: bool, rehearsal: bool = False) -> None:
        self.out, self.name, self.cuda, self.rehearsal = out, name, cuda, rehearsal and not cuda
        self.device = "cuda" if cuda else "cpu"
        #: the GPU steps run: on CUDA, or as a CPU rehearsal of their code at tiny sizes (--rehearsal)
        self.gpu = cuda or self.rehearsal
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + limit_s
        self.result: dict[str, Any] = {}
        self.scratch = Path(
            tempfile.mkdtemp(prefix=f"gpu-check-{name}-", dir=os.environ.get("GPU_CHECK_SCRATCH") or None)
        )

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def save(self, **kw: Any) -> None:
        """Merge ``kw`` into the result and write it (a step stopped at its limit keeps what it saved)."""
        self.result.update(kw)
        _write_json(self.out / "steps" / f"{self.name}.json", self.result)


@dataclass
class Step:
    name: str
    fn: Callable[[Context], dict[str, Any] | None]
    limit_s: float  # the most this step may take (GPU)
    min_s: float  # below this much time left it is skipped
    cuda_only: bool = False
    what: str = ""


# ------------------------------------------------------------------------------------------------
# env


def step_env(ctx: Context) -> dict[str, Any]:
    import importlib
    import importlib.metadata as md

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "pythonpath": os.environ.get("PYTHONPATH", ""),
    }
    import torch

    info["torch"] = torch.__version__
    info["torch_cuda_build"] = torch.version.cuda
    info["cuda_available"] = bool(torch.cuda.is_available())
    info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
            "multiprocessors": props.multi_processor_count,
        }
    core, missing = {}, []
    for module, dist in CORE.items():
        try:
            importlib.import_module(module)
            core[dist] = md.version(dist) if _has_dist(dist) else "imports (no metadata)"
        except Exception as err:  # noqa: BLE001 - a broken package is reported like a missing one
            core[dist] = None
            missing.append(f"{dist}: {type(err).__name__}: {err}")
    info["core"], info["core_missing"] = core, missing
    info["core_missing_unused_here"] = {
        d: CORE_UNUSED_HERE[d] for d in CORE_UNUSED_HERE if core.get(d) is None
    }
    info["others"] = {d: (md.version(d) if _has_dist(d) else None) for d in EXTRA_DISTS}

    import live_pssr
    import live_pssr.cli  # noqa: F401 - every command registered
    import live_pssr.engines  # noqa: F401
    import live_pssr.live.session  # noqa: F401
    import live_pssr.offline  # noqa: F401
    import live_pssr.pipeline  # noqa: F401
    import live_pssr.train  # noqa: F401
    from live_pssr.engines.select import candidates

    info["live_pssr"] = {"version": live_pssr.__version__, "path": str(Path(live_pssr.__file__).parent)}
    info["optional_modules_imported"] = sorted(m for m in sys.modules if m.split(".")[0] in OPTIONAL)
    info["auto_candidates"] = {"cpu": [":".join(c) for c in candidates("cpu")]}
    if info["cuda_available"]:
        info["auto_candidates"]["cuda"] = [":".join(c) for c in candidates("cuda")]
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except Exception as err:  # noqa: BLE001
        info["onnxruntime_providers"] = f"{type(err).__name__}: {err}"
    info["ok"] = (
        not [m for m in missing if m.split(":")[0] not in CORE_UNUSED_HERE]
        and not info["optional_modules_imported"]
    )
    return info


def _available_ram() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _has_dist(dist: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


# ------------------------------------------------------------------------------------------------
# pytest -m gpu


def step_pytest_gpu(ctx: Context) -> dict[str, Any]:
    import xml.etree.ElementTree as ET

    files = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "tests").glob("test_*.py")
        if "mark.gpu" in p.read_text(encoding="utf-8")
    )
    junit = ctx.out / "pytest_gpu.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "gpu",
        "-rs",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        *files,
    ]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    ctx.save(command=" ".join(cmd[1:]), files=files)
    try:
        r = subprocess.run(
            cmd, cwd=REPO, env=env, timeout=max(10.0, ctx.left() - 5), capture_output=True, text=True
        )
    except subprocess.TimeoutExpired as err:
        print(err.stdout or "", err.stderr or "", flush=True)
        return {"status": "timeout", "note": "pytest ran past the step's limit"}
    print(r.stdout[-6000:], r.stderr[-3000:], flush=True)
    out: dict[str, Any] = {"exit_code": r.returncode, "summary": (r.stdout.strip().splitlines() or [""])[-1]}
    if junit.is_file():
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        cases = []
        for case in suite.iter("testcase"):  # type: ignore[union-attr]
            outcome, note = "passed", ""
            for tag in ("failure", "error", "skipped"):
                el = case.find(tag)
                if el is not None:
                    outcome, note = tag, (el.get("message") or "")[:300]
            cases.append(
                {
                    "test": f"{case.get('classname')}::{case.get('name')}",
                    "outcome": outcome,
                    "time_s": float(case.get("time") or 0),
                    "note": note,
                }
            )
        out["counts"] = {
            k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failure", "error", "skipped")
        }
        out["cases"] = cases
    # 0: all passed; 5: none selected. Without CUDA every GPU test skips: that is the expected result
    out["ok"] = (
        r.returncode in (0, 5)
        and not (out.get("counts") or {}).get("failure")
        and not (out.get("counts") or {}).get("error")
    )
    return out


# ------------------------------------------------------------------------------------------------
# engines


def step_bench_engines(ctx: Context) -> dict[str, Any]:
    def bench(args: list[str], json_path: Path) -> tuple[int, float]:
        cmd = [sys.executable, "-m", "live_pssr", "bench", "engines", *args, "--json", str(json_path)]
        log("$ " + " ".join(cmd[1:]))
        t0 = time.perf_counter()
        r = subprocess.run(
            cmd, cwd=REPO, timeout=max(10.0, ctx.left() - 5), env={**os.environ, "COLUMNS": "200"}
        )
        return r.returncode, time.perf_counter() - t0

    if not ctx.cuda:
        path = ctx.out / "bench_engines_cpu_smoke.json"
        rc, dt = bench(
            [
                "--device",
                "cpu",
                "--sizes",
                "32",
                "--models",
                DEFAULT_MODEL,
                "--engines",
                "eager,torch",
                "--quick",
            ],
            path,
        )
        doc = _read_json(path) or {}
        return {
            "skipped": NO_CUDA,
            "cpu_smoke": {
                "command": "bench engines --device cpu --sizes 32 --models mito-sr4-fast "
                "--engines eager,torch --quick",
                "exit_code": rc,
                "wall_s": round(dt, 1),
                "rows": len(doc.get("rows", [])),
                "ok": rc == 0 and bool(doc.get("rows")),
            },
        }
    path = ctx.out / "bench_engines.json"
    rc, dt = bench(
        [
            "--device",
            "cuda",
            "--sizes",
            ",".join(map(str, SIZES)),
            "--models",
            ",".join(SHIPPED),
            "--engines",
            "eager,torch",
        ],
        path,
    )
    doc = _read_json(path) or {}
    keep = (
        "name",
        "size",
        "engine",
        "precision",
        "status",
        "fps",
        "p50_ms",
        "p99_ms",
        "vs_eager",
        "max_rel_err",
        "prepare_s",
        "gflops",
        "note",
    )
    rows = [{k: r[k] for k in keep if k in r} for r in doc.get("rows", [])]
    return {
        "exit_code": rc,
        "wall_s": round(dt, 1),
        "json": path.name,
        "rows": rows,
        "ok": rc == 0 and bool(rows),
    }


def _time_device(
    eng: Any, batch: Any, budget_s: float, min_runs: int = 5, max_runs: int = 200
) -> list[float]:
    """Per-call time of ``forward_tensor`` on a device tensor (no host copies), synchronised."""
    import torch

    x = torch.from_numpy(batch).to(eng.device)
    cuda = str(eng.device).startswith("cuda")
    for _ in range(2):
        eng.forward_tensor(x)
    if cuda:
        torch.cuda.synchronize()
    times: list[float] = []
    t_start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - t_start < budget_s):
        t0 = time.perf_counter()
        eng.forward_tensor(x)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def _stats(times: list[float]) -> dict[str, Any]:
    import numpy as np

    return {
        "runs": len(times),
        "p50_ms": _r(float(np.median(times)) * 1e3),
        "p99_ms": _r(float(np.percentile(times, 99)) * 1e3),
        "fps": _r(1.0 / float(np.median(times))),
    }


def step_engines_extra(ctx: Context) -> dict[str, Any]:
    if not ctx.gpu:
        return {"skipped": NO_CUDA}
    import torch

    from live_pssr.bench.engines import estimate
    from live_pssr.engines import check_engine, make_engine
    from live_pssr.engines.gate import calibration_batch, reference_output
    from live_pssr.engines.select import time_runs
    from live_pssr.errors import EngineUnavailableError
    from live_pssr.modelio import load_model

    sizes = SIZES if ctx.cuda else REHEARSAL_SIZES
    eager = ("eager", "fp32", {"channels_last": False, "fold_bn": False})
    plan: list[tuple[str, int, str, str, dict[str, Any]]] = []
    for size in sizes:  # the default model first (eager fp32 is the reference of the ratios)
        plan += [(DEFAULT_MODEL, size, *eager), (DEFAULT_MODEL, size, "torch", "bf16", {})]
    for size in sizes if ctx.cuda else sizes[:1]:  # max-autotune on CUDA: Triton autotuning + CUDA graphs
        plan.append((DEFAULT_MODEL, size, "compile", "fp16" if ctx.cuda else "fp32", {}))
    for name in SHIPPED[1:]:
        for size in sizes:
            plan += [(name, size, *eager), (name, size, "torch", "bf16", {})]
    models = {n: load_model(n) for n in SHIPPED}
    refs: dict[tuple[str, int], Any] = {}
    rows: list[dict[str, Any]] = []
    for name, size, engine, precision, kw in plan:
        row: dict[str, Any] = {"model": name, "size": f"{size}²", "engine": engine, "precision": precision}
        rows.append(row)
        need = 40.0 if engine == "compile" else 3.0
        if ctx.left() < need:
            row["status"] = f"skipped: time budget ({ctx.left():.0f} s left)"
            ctx.save(rows=rows)
            continue
        model = models[name]
        shape = (1, model.spec.in_frames, size, size)
        _, largest = estimate(model.net, shape)
        free = torch.cuda.mem_get_info()[0] if ctx.cuda else _available_ram()
        if largest > free / 4:  # e.g. the ResUNet's self-attention at 1024² (a 256 GiB tensor)
            row["status"] = f"skipped: largest tensor {largest / 2**30:.1f} GiB, {free / 2**30:.0f} GiB free"
            ctx.save(rows=rows)
            continue
        try:
            if (name, size) not in refs:
                calib = calibration_batch(shape[1], (size, size))
                refs[name, size] = (
                    calib,
                    reference_output(model, calib, device="cuda" if ctx.cuda else None),
                )
            calib, ref = refs[name, size]
            log(f"engines_extra: {name} {size}² {engine}:{precision}")
            backend = "torch" if engine == "eager" else engine  # eager: the torch engine, unfolded, NCHW
            eng = make_engine(backend, model, device=ctx.device, precision=precision, **kw)
            t0 = time.perf_counter()
            eng.prepare(shape)
            row["prepare_s"] = _r(getattr(eng, "prepare_s", None) or time.perf_counter() - t0)
            gate = check_engine(eng, model, calib, ref)
            row["max_rel_err"] = _r(gate.max_rel_err)
            row["gate"] = "passed" if gate.passed else f"failed: {gate.reason}"
            row["round_trip"] = _stats(time_runs(eng, calib, 0.5, min_runs=5, max_runs=100))
            row["device"] = _stats(_time_device(eng, calib, budget_s=0.5))
            row["status"] = "ok"
            if engine != "eager":
                eager = next(
                    (
                        r
                        for r in rows
                        if r["model"] == name
                        and r["size"] == row["size"]
                        and r["engine"] == "eager"
                        and r.get("status") == "ok"
                    ),
                    None,
                )
                if eager:
                    row["vs_eager_round_trip"] = _r(
                        eager["round_trip"]["p50_ms"] / row["round_trip"]["p50_ms"]
                    )
                    row["vs_eager_device"] = _r(eager["device"]["p50_ms"] / row["device"]["p50_ms"])
            del eng
        except EngineUnavailableError as err:
            row.update(status="unavailable", note=err.message[:300])
        except Exception as err:  # noqa: BLE001 - one broken configuration must not stop the others
            row.update(status="error", note=f"{type(err).__name__}: {str(err)[:300]}")
        if ctx.cuda:
            torch.cuda.empty_cache()
        ctx.save(rows=rows)
    return {"rows": rows, "ok": any(r.get("status") == "ok" for r in rows)}


# ------------------------------------------------------------------------------------------------
# the live pipeline


def _pipeline_run(
    enhancer: Any, frames: list[Any], n: int, policy: str, paced_fps: float | None, folder: Path
) -> dict[str, Any]:
    from live_pssr.bench.pipeline import run_live_frames

    out = folder / f"live-{policy}-{time.monotonic_ns()}.ome.zarr"
    s, dt = run_live_frames(enhancer, frames, n, policy, paced_fps, out)
    done = s.enhanced_live + s.enhanced_after
    return {
        "policy": policy,
        "paced_fps": paced_fps,
        "frames": n,
        "enhanced": done,
        "skipped": s.skipped,
        "failed": s.failed,
        "wall_s": _r(dt),
        "camera_fps": _r(s.acquisition_fps),
        "enhanced_fps": _r(done / dt if policy == "complete" else s.enhance_fps),
        "latency_p50_ms": _r(s.latency_p50_ms),
        "latency_p99_ms": _r(s.latency_p99_ms),
        "engine": s.engine,
    }


def step_live_pipeline(ctx: Context) -> dict[str, Any]:
    from live_pssr.engines import select_engine
    from live_pssr.enhancer import Enhancer, build_enhancer
    from live_pssr.modelio import load_model
    from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope

    size, n_complete, n_preview, paced = (512, 300, 150, 100.0) if ctx.cuda else (128, 20, 10, 10.0)
    model = load_model(DEFAULT_MODEL)
    t0 = time.perf_counter()
    mic = SimulatedMicroscope(MicroscopeConfig(height=size, width=size, upscale=model.spec.upscale))
    frames = [mic.frame(t) for t in range(12)]
    res: dict[str, Any] = {
        "model": DEFAULT_MODEL,
        "device": ctx.device,
        "input": f"{size}x{size}",
        "output": f"{size * model.spec.upscale}x{size * model.spec.upscale}",
        "store_folder": str(ctx.scratch),
        "frames_made_s": _r(time.perf_counter() - t0),
        "runs": [],
    }
    builders = {
        "auto": lambda: build_enhancer(model, (size, size), "auto"),
        "eager-fp32": lambda: Enhancer(
            model,
            select_engine(
                model,
                (size, size),
                "torch:fp32",
                device=ctx.device,
                engine_kwargs={"torch": {"channels_last": False, "fold_bn": False}},
            ),
        ),
    }
    for label, build in builders.items():
        if ctx.left() < 10:
            res["runs"].append({"engine": label, "status": f"skipped: time budget ({ctx.left():.0f} s left)"})
            continue
        t0 = time.perf_counter()
        enhancer = build()
        enhancer.enhance_window([frames[0]])  # warm-up outside the timing
        prep = time.perf_counter() - t0
        for policy, n, fps in (("complete", n_complete, None), ("preview", n_preview, paced)):
            log(f"live_pipeline: {label} {policy} {n} frames of {size}²")
            row = {
                "engine_asked": label,
                "prepare_s": _r(prep),
                **_pipeline_run(enhancer, frames, n, policy, fps, ctx.scratch),
            }
            res["runs"].append(row)
            ctx.save(**res)
    by = {(r.get("engine_asked"), r.get("policy")): r for r in res["runs"]}
    a, e = by.get(("auto", "complete")), by.get(("eager-fp32", "complete"))
    if a and e and e.get("enhanced_fps"):
        res["auto_vs_eager_fp32_fps"] = _r(a["enhanced_fps"] / e["enhanced_fps"])
    res["ok"] = bool(a and a.get("enhanced") == a.get("frames") and not a.get("failed"))
    return res


# ------------------------------------------------------------------------------------------------
# the CUDA-stream path


def step_cuda_streams(ctx: Context) -> dict[str, Any]:
    import numpy as np

    from live_pssr.engines import CudaStreamEngine, make_engine
    from live_pssr.modelio import load_model

    model = load_model(DEFAULT_MODEL)
    s = model.spec.upscale
    if not ctx.gpu:  # the same code runs synchronously on the CPU: check its result, time nothing
        inner = make_engine("torch", model, device="cpu", precision="fp32")
        inner.prepare((1, 1, 64, 64))
        eng = CudaStreamEngine(inner, depth=3, max_batch=1)
        frame = (100 + np.random.default_rng(0).poisson(300, (1, 1, 64, 64))).astype(np.uint16)
        out = eng.run_raw(frame, 100.0, 600.0)
        return {
            "skipped": NO_CUDA,
            "cpu_smoke": {
                "out_shape": list(out.shape),
                "out_dtype": str(out.dtype),
                "ok": out.shape == (1, 1, 64 * s, 64 * s) and out.dtype == np.uint16,
            },
        }
    import torch

    size, n, depth = (512, 200, 3) if ctx.cuda else (64, 10, 3)
    dev, cuda = ctx.device, ctx.cuda
    inner = make_engine("torch", model, device=dev, precision="fp16" if cuda else "fp32")
    inner.prepare((1, 1, size, size))
    eng = CudaStreamEngine(inner, depth=depth, max_batch=1)
    rng = np.random.default_rng(0)
    frames = [(100 + rng.poisson(300, (1, 1, size, size))).astype(np.uint16) for _ in range(8)]
    lo, hi = 100.0, 700.0
    for f in frames[:5]:
        eng.run_raw(f, lo, hi)  # buffers, cuDNN choice
    t0 = time.perf_counter()
    for i in range(n):
        eng.run_raw(frames[i % 8], lo, hi)
    serial = (time.perf_counter() - t0) / n
    q: deque[int] = deque()
    t0 = time.perf_counter()
    for i in range(n):
        if len(q) >= depth:
            eng.result(q.popleft())
        q.append(eng.submit_raw(frames[i % 8], lo, hi))
    while q:
        eng.result(q.popleft())
    overlapped = (time.perf_counter() - t0) / n

    def gpu_time(fn: Callable[[], Any], reps: int = 50) -> float:
        fn()
        if not cuda:  # the rehearsal on the CPU
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t0) / reps
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / reps / 1e3

    host_in = torch.empty((1, 1, size, size), dtype=torch.int16, pin_memory=cuda)
    dev_in = torch.empty_like(host_in, device=dev)
    host_out = torch.empty((1, 1, size * s, size * s), dtype=torch.int16, pin_memory=cuda)
    dev_out = torch.empty_like(host_out, device=dev)
    x = torch.rand((1, 1, size, size), device=dev)
    upload = gpu_time(lambda: dev_in.copy_(host_in, non_blocking=cuda))
    compute = gpu_time(lambda: inner.forward_tensor(x))
    download = gpu_time(lambda: host_out.copy_(dev_out, non_blocking=cuda))
    stages = upload + compute + download
    ideal = max(upload, compute, download)
    eff = (serial - overlapped) / (serial - ideal) if serial > ideal else None
    return {
        "model": DEFAULT_MODEL,
        "precision": inner.precision,
        "input": f"{size}x{size} uint16",
        "output": f"{size * s}x{size * s} uint16",
        "frames": n,
        "depth": depth,
        "serial_ms": _r(serial * 1e3),
        "overlapped_ms": _r(overlapped * 1e3),
        "serial_fps": _r(1 / serial),
        "overlapped_fps": _r(1 / overlapped),
        "speedup": _r(serial / overlapped),
        "stage_ms": {
            "upload": _r(upload * 1e3),
            "compute": _r(compute * 1e3),
            "download": _r(download * 1e3),
        },
        "upload_GB_s": _r(host_in.numel() * 2 / upload / 1e9),
        "download_GB_s": _r(host_out.numel() * 2 / download / 1e9),
        "sum_of_stages_ms": _r(stages * 1e3),
        "ideal_ms": _r(ideal * 1e3),
        "overlap_efficiency": _r(eff),
        "note": "serial: submit_raw + result per frame; overlapped: up to `depth` frames in flight; "
        "overlap_efficiency = (serial - overlapped) / (serial - slowest stage), 1 = perfect",
        "ok": True,
    }


# ------------------------------------------------------------------------------------------------
# training


def _default_config(ctx: Context, **train: Any) -> tuple[Any, list[str]]:
    """The default training config with the sources whose data is here; the notes say what was dropped."""
    import yaml

    from live_pssr.errors import LivePSSRError
    from live_pssr.train import parse_config

    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    notes: list[str] = []
    usable = []
    for src in raw["data"]["sources"]:
        try:
            _check_source(src)
            usable.append(src)
        except LivePSSRError as err:
            notes.append(f"dropped source {src['kind']}: {err.message}")
    raw["data"]["sources"] = usable
    raw["train"].update(train)
    return parse_config(raw, str(DEFAULT_CONFIG)), notes


def _check_source(src: dict[str, Any]) -> None:
    from live_pssr import datasets

    if src["kind"] == "mito":
        datasets.mito_train_named()
    elif src["kind"] == "real":
        for f in src.get("files", []):
            datasets.real_data_file(f)
    elif src["kind"] == "fmd":
        datasets.fmd_pairs(src.get("fields", datasets.FMD_TRAIN_FIELDS))


def _train(
    ctx: Context, cfg: Any, minutes: float, device: str | None = None
) -> tuple[Any, list[float], float, float | None]:
    """Train; returns (result, time of each step, wall seconds, seconds before the first step: data)."""
    from live_pssr.train import train

    stamps: list[float] = []
    t0 = time.perf_counter()
    res = train(
        cfg,
        ctx.scratch / "model.safetensors",
        ckpt_dir=ctx.scratch / "ckpt",
        progress=False,
        device=ctx.device,
        max_minutes=minutes,
        on_step=lambda step, loss: stamps.append(time.perf_counter()),
    )
    return res, stamps, time.perf_counter() - t0, (stamps[0] - t0 if stamps else None)


def _rate(stamps: list[float], skip: int) -> float | None:
    """Steps/s from the median time between steps after the first ``skip`` (validation pauses excluded)."""
    import numpy as np

    if len(stamps) <= skip + 2:
        return None
    return 1.0 / float(np.median(np.diff(stamps[skip:])))


def step_train_speed(ctx: Context) -> dict[str, Any]:
    """The CPU baseline of training speed (the GPU's steps/s comes from ``train_quality``)."""
    steps = 20
    cfg, notes = _default_config(ctx, steps=steps, val_every=steps, checkpoint_every=steps, warmup_steps=5)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"val_samples": 4})})  # baseline only
    log(
        f"train_speed: {steps} steps of {cfg.name} on the CPU (batch {cfg.train.batch}, crop {cfg.data.crop})"
    )
    res, stamps, wall, first = _train(ctx, cfg, minutes=max(0.2, (ctx.left() - 15) / 60), device="cpu")
    skip = 2
    return {
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "config": DEFAULT_CONFIG.name,
        "sources": [s.kind for s in cfg.data.sources],
        "notes": notes,
        "batch": cfg.train.batch,
        "crop": cfg.data.crop,
        "steps": res.steps,
        "stopped": res.stopped,
        "wall_s": _r(wall),
        "data_and_first_step_s": _r(first),
        "steps_per_s": _r(_rate(stamps, skip)),
        "steps_per_s_note": f"after the first {skip} steps",
        "val": res.val,
        "ok": res.steps > 0,
    }


def step_train_quality(ctx: Context) -> dict[str, Any]:
    if not ctx.gpu:
        return {"skipped": NO_CUDA}
    from live_pssr.evaluate import evaluate
    from live_pssr.modelio import load_model, read_spec, resolve_model

    minutes = max(0.5, min(2.0, (ctx.left() - 45) / 60))  # and 45 s for data, validation, evaluation
    if ctx.rehearsal:
        minutes = 0.1
    cfg, notes = _default_config(ctx, max_minutes=minutes)
    log(f"train_quality: {cfg.name} for {minutes:.1f} min on {ctx.device}")
    ctx.save(minutes=_r(minutes), sources=[s.kind for s in cfg.data.sources], notes=notes)
    res, stamps, wall, first = _train(ctx, cfg, minutes=minutes)
    shipped = read_spec(resolve_model(DEFAULT_MODEL)).training or {}
    new_spec = read_spec(res.out).training or {}
    out: dict[str, Any] = {
        "minutes": _r(minutes),
        "sources": [s.kind for s in cfg.data.sources],
        "notes": notes,
        "steps": res.steps,
        "best_step": res.best_step,
        "stopped": res.stopped,
        "wall_s": _r(wall),
        "data_and_first_step_s": _r(first),
        "steps_per_s": _r(_rate(stamps, 10)),
        "steps_per_s_note": "median time between steps after the first 10",
        "val": res.val,
        "val_baseline_bicubic": new_spec.get("val_baseline_bicubic"),
        "shipped": {
            "val": shipped.get("val"),
            "steps": shipped.get("steps"),
            "device": shipped.get("device"),
            "train_time_s": shipped.get("train_time_s"),
            "sources": [d.get("kind") for d in shipped.get("data", [])],
        },
        "note": "val: the config's fixed validation crops (the same set as the shipped model's when "
        "every source is present); evaluate: the same held-out data for both models",
    }
    ctx.save(**out)
    evals: dict[str, Any] = {}
    for data in ("mito-holdout", "sim-timelapse"):
        if ctx.left() < 10:
            evals[data] = f"skipped: time budget ({ctx.left():.0f} s left)"
            continue
        try:
            pair = {}
            for label, m in (("new", load_model(res.out)), ("shipped", load_model(DEFAULT_MODEL))):
                r = evaluate(m, data, engine="torch", n_frames=8, size=128, progress=False)
                pair[label] = r["summary"]
            evals[data] = pair
        except Exception as err:  # noqa: BLE001 - e.g. the held-out images were not carried
            evals[data] = f"{type(err).__name__}: {getattr(err, 'message', str(err))[:200]}"
    out["evaluate"] = evals
    out["ok"] = res.steps > 0
    return out


# ------------------------------------------------------------------------------------------------
# the run


STEPS = [
    Step("env", step_env, 60, 5, what="versions, GPU, core packages, no optional module imported"),
    Step("pytest_gpu", step_pytest_gpu, 100, 20, what="pytest -m gpu"),
    Step("bench_engines", step_bench_engines, 150, 40, True, "live-pssr bench engines --device cuda"),
    Step("live_pipeline", step_live_pipeline, 70, 20, what="end-to-end live pipeline, auto vs eager fp32"),
    Step("cuda_streams", step_cuda_streams, 40, 10, True, "upload/compute/download overlap"),
    Step("train_quality", step_train_quality, 200, 150, True, "2 minutes of training on the GPU, quality"),
    Step("engines_extra", step_engines_extra, 180, 40, True, "torch bf16, torch.compile max-autotune"),
    Step("train_speed", step_train_speed, 45, 20, what="training steps/s on the CPU (the baseline)"),
]


def run_child(name: str, out: Path, limit_s: float, cuda: bool, rehearsal: bool = False) -> int:
    step = next(s for s in STEPS if s.name == name)
    ctx = Context(out, name, limit_s, cuda, rehearsal)
    if ctx.rehearsal and step.cuda_only:
        ctx.save(rehearsal=REHEARSAL)
    t0 = time.perf_counter()
    try:
        result = step.fn(ctx) or {}
        ctx.save(**result)
        code = 0
    except Exception as err:  # noqa: BLE001 - recorded, and the next step runs
        traceback.print_exc()
        ctx.save(
            status="failed",
            error=f"{type(err).__name__}: {err}"[:2000],
            traceback=traceback.format_exc()[-4000:],
        )
        code = 1
    finally:
        shutil.rmtree(ctx.scratch, ignore_errors=True)
    ctx.save(wall_s=_r(time.perf_counter() - t0))
    return code


def _status(res: dict[str, Any]) -> str:
    if "skipped" in res:
        return "skipped"
    if res.get("status") in ("failed", "timeout"):
        return res["status"]
    return "ok" if res.get("ok", True) else "problem"


def summarise(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers (the details stay in each step)."""
    env = steps.get("env", {})
    s: dict[str, Any] = {
        "gpu": (env.get("gpu") or {}).get("name"),
        "torch": env.get("torch"),
        "cuda_available": env.get("cuda_available"),
        "optional_modules_imported": env.get("optional_modules_imported"),
        "core_missing": env.get("core_missing"),
    }
    s["pytest_gpu"] = steps.get("pytest_gpu", {}).get("counts")
    rows = steps.get("bench_engines", {}).get("rows") or []
    s["bench_engines_fps"] = {
        f"{r['name']} {r['size']} {r['engine']}:{r['precision']}": r.get("fps")
        for r in rows
        if r.get("name") == DEFAULT_MODEL
    }
    extra = steps.get("engines_extra", {}).get("rows") or []
    s["engines_extra"] = {
        f"{r['model']} {r['size']} {r['engine']}:{r['precision']}": (r.get("round_trip") or {}).get("fps")
        or r.get("status")
        for r in extra
        if r.get("model") == DEFAULT_MODEL
    }
    lp = steps.get("live_pipeline", {})
    s["live_pipeline"] = {
        "input": lp.get("input"),
        "output": lp.get("output"),
        "auto_vs_eager_fp32_fps": lp.get("auto_vs_eager_fp32_fps"),
        "runs": [
            {
                k: r.get(k)
                for k in (
                    "engine_asked",
                    "policy",
                    "engine",
                    "enhanced_fps",
                    "latency_p50_ms",
                    "latency_p99_ms",
                )
            }
            for r in lp.get("runs", [])
        ],
    }
    cs = steps.get("cuda_streams", {})
    s["cuda_streams"] = (
        {k: cs.get(k) for k in ("serial_fps", "overlapped_fps", "speedup", "overlap_efficiency", "stage_ms")}
        if "skipped" not in cs
        else cs.get("skipped")
    )
    ts, tq = steps.get("train_speed", {}), steps.get("train_quality", {})
    s["train_steps_per_s"] = {"cpu": ts.get("steps_per_s"), "cuda": tq.get("steps_per_s")}
    if ts.get("steps_per_s") and tq.get("steps_per_s"):
        s["train_steps_per_s"]["cuda_vs_cpu"] = _r(tq["steps_per_s"] / ts["steps_per_s"])
    s["train_quality"] = tq.get("skipped") or {
        "minutes": tq.get("minutes"),
        "steps": tq.get("steps"),
        "val": tq.get("val"),
        "shipped_val": (tq.get("shipped") or {}).get("val"),
    }
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (gpu_check.json, steps/, logs)")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=float(os.environ.get("GPU_CHECK_BUDGET_S", 450)),
        help="wall-clock budget of all steps together (default 450 s)",
    )
    ap.add_argument("--only", default="", help="comma-separated steps to run (default: all)")
    ap.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step in this process
    ap.add_argument("--limit-s", type=float, default=60.0, help=argparse.SUPPRESS)
    ap.add_argument("--cuda", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument(
        "--rehearsal",
        action="store_true",
        help="without CUDA: run the GPU-only steps' code on the CPU at tiny sizes (checks the script)",
    )
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    if args.step:
        return run_child(args.step, out, args.limit_s, bool(args.cuda), args.rehearsal)

    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "steps", ignore_errors=True)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - {s.name for s in STEPS}
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}; steps: {', '.join(s.name for s in STEPS)}")
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    doc: dict[str, Any] = {
        "rehearsal": REHEARSAL if args.rehearsal else False,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "budget_s": args.budget_s,
        "python": sys.executable,
        "host": platform.node(),
        "steps": {},
    }
    install = _read_json(out / "install.json")
    if install is not None:
        doc["install"] = install
    cuda = False
    todo = [s for s in STEPS if not only or s.name in only or s.name == "env"]
    for i, step in enumerate(todo):
        reserve = sum(s.min_s for s in todo[i + 1 :] if cuda or not s.cuda_only)
        left = deadline - time.perf_counter()
        res: dict[str, Any]
        if step.name != "env" and not doc["steps"].get("env", {}).get("torch"):
            res = {"skipped": "the env step failed (see its error): torch or live_pssr does not import"}
        elif (
            step.cuda_only
            and not cuda
            and not args.rehearsal
            and step.name not in ("bench_engines", "cuda_streams")
        ):
            res = {"skipped": NO_CUDA}  # (those two run a CPU smoke test of their code path instead)
        elif left < step.min_s:
            res = {"skipped": f"time budget: {left:.0f} s left of {args.budget_s:.0f} s"}
        else:
            limit = max(step.min_s, min(step.limit_s, left - reserve))
            log(f"step {step.name} ({step.what}): limit {limit:.0f} s")
            t0 = time.perf_counter()
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--out",
                str(out),
                "--step",
                step.name,
                "--limit-s",
                str(limit),
                "--cuda",
                str(int(cuda)),
                *(["--rehearsal"] if args.rehearsal else []),
            ]
            proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
            try:
                proc.wait(timeout=limit + 20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            res = _read_json(out / "steps" / f"{step.name}.json") or {}
            if proc.returncode not in (0, 1):
                res.update(
                    status="timeout" if proc.returncode == -signal.SIGKILL else "failed",
                    exit_code=proc.returncode,
                    note=f"stopped after {time.perf_counter() - t0:.0f} s (limit {limit:.0f} s); "
                    "the results above are what it had saved",
                )
            res["wall_s"] = _r(time.perf_counter() - t0)
            res["limit_s"] = round(limit)
        if step.name == "env":
            cuda = bool(res.get("cuda_available"))
        res["status"] = _status(res)
        doc["steps"][step.name] = res
        log(
            f"step {step.name}: {res['status']}"
            + (f" ({res['skipped']})" if "skipped" in res else f" in {res.get('wall_s')} s")
        )
        doc["wall_s"] = _r(time.perf_counter() - t_start)
        _write_json(out / "gpu_check.json", doc)
    doc["summary"] = summarise(doc["steps"])
    doc["wall_s"] = _r(time.perf_counter() - t_start)
    doc["ok"] = all(s["status"] in ("ok", "skipped") for s in doc["steps"].values())
    _write_json(out / "gpu_check.json", doc)
    log(f"done in {doc['wall_s']} s: " + ", ".join(f"{k} {v['status']}" for k, v in doc["steps"].items()))
    log(f"wrote {out / 'gpu_check.json'}")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
