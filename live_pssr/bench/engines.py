"""``live-pssr bench engines``: every engine x model x frame size, against the machine's own peak.

For each model (shipped ones by default; a random-weight ``FastSRNet`` shaped like the default
live model when none is installed) and input size (128², 256², 512², 1024²) every engine
configuration that can run here is built, prepared (timed: export/compile/load), checked by the
correctness gate (max error relative to fp32 eager on a calibration frame); then all engines of
one (model, size) are timed round-robin, one run each per round with one 2048² ``torch.mm`` in
every round, so that on a shared machine a load change hits every row (and the sgemm reference)
alike. Rows: ``engine``, ``precision``, ``device``, ``model``, ``input_shape``, ``fps``, ``p50_ms``,
``p99_ms``, ``gflop`` (per frame, counted by ``torch.utils.flop_counter`` on the meta device),
``gflops`` (achieved), ``sgemm_gflops`` and ``pct_sgemm`` (the machine's fp32 ``torch.mm``
2048x2048 speed on all available cores, measured in the same rounds, and the share of it
reached), ``prepare_s``, ``max_rel_err``, ``vs_eager`` (speed-up over plain eager fp32: contiguous
layout, no BatchNorm folding) and ``auto`` (the row ``--engine auto`` would pick: the fastest
gated one among its candidates).

Configurations whose largest single tensor would not fit in a quarter of the free memory (e.g.
PSSR's self-attention at large outputs) are listed as skipped instead of crashing the machine.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

DEFAULT_SIZES = "128,256,512,1024"


def sgemm_gflops(n: int = 2048, threads: int | None = None, seconds: float = 1.0) -> float:
    """The machine's fp32 matrix-multiply speed (GFLOP/s) with ``threads`` torch threads."""
    import torch

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a, b = torch.rand(n, n), torch.rand(n, n)
        for _ in range(2):
            torch.mm(a, b)
        times: list[float] = []
        t_end = time.perf_counter() + seconds
        while len(times) < 3 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t0)
        return 2 * n**3 / float(np.median(times)) / 1e9
    finally:
        torch.set_num_threads(old)


def estimate(net: Any, shape: tuple[int, ...]) -> tuple[float, int]:
    """``(GFLOP, largest tensor bytes)`` of one forward pass, computed on the meta device."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    largest = [0]

    class _Largest(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, tuple | list) else (out,):
                if isinstance(t, torch.Tensor):
                    largest[0] = max(largest[0], t.numel() * t.element_size())
            return out

    meta = copy.deepcopy(net).to("meta")
    with torch.no_grad(), FlopCounterMode(display=False) as fc, _Largest():
        meta(torch.empty(shape, device="meta"))
    return fc.get_total_flops() / 1e9, largest[0]


def configs(device: str, quick: bool) -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(label, engine, precision, kwargs)`` to measure on ``device``."""
    from ..engines.capabilities import cpu_has_native_bf16

    if device.startswith("cuda"):
        out = [("eager", "torch", "fp32", {"channels_last": False, "fold_bn": False}),
               ("torch", "torch", "fp32", {}), ("torch", "torch", "fp16", {}),
               ("tensorrt", "tensorrt", "fp16", {}), ("onnxruntime", "onnxruntime", "fp32", {})]
        if not quick:
            out.append(("compile", "compile", "fp16", {}))
        return out
    bf16 = cpu_has_native_bf16()
    out = [("eager", "torch", "fp32", {"channels_last": False, "fold_bn": False}),
           ("torch", "torch", "fp32", {})]
    if bf16:
        out.append(("torch", "torch", "bf16", {}))
    out += [("onnxruntime", "onnxruntime", "fp32", {}), ("openvino", "openvino", "fp32", {})]
    if bf16:
        out.append(("openvino", "openvino", "bf16", {}))
    if not quick:
        out.append(("compile", "compile", "fp32", {}))
    out.append(("tensorrt", "tensorrt", "fp16", {}))  # listed so its absence is reported
    return out


def check_device(device: str) -> str:
    """``--device``: cpu, or cuda[:N] on a machine with that GPU (else every row would be 'unavailable')."""
    from ..engines.capabilities import cuda_available
    from ..errors import ConfigError, EngineUnavailableError

    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"--device {device!r} is not cpu or cuda", "use --device cpu or --device cuda")
    if device.startswith("cuda") and not cuda_available():
        raise EngineUnavailableError(f"--device {device}: no CUDA GPU is usable here",
                                     "use --device cpu, or run on a GPU machine with the CUDA build of torch")
    return device


def _models(spec: str | None, tmp: Path) -> list[Any]:
    from ..modelio import DEFAULT_MODEL, ModelSpec, available_models, load_model, save_model
    from ..nets import FastSRNet

    names = [s.strip() for s in spec.split(",") if s.strip()] if spec else available_models()
    out = []
    for name in names or ["random"]:
        if name == "random":
            import torch

            torch.manual_seed(0)
            kw = {"in_frames": 1, "upscale": 4, "width": 24}
            path = save_model(tmp / "random-fast-sr4.safetensors", FastSRNet(**kw),
                              ModelSpec(f"{DEFAULT_MODEL}(random)", "fast-sr", kw, upscale=4))
            out.append(load_model(path))
        else:
            out.append(load_model(name))
    return out


def _sig(v: float, digits: int = 3) -> float:
    """``v`` rounded to ``digits`` significant digits (small numbers stay non-zero)."""
    return float(f"{v:.{digits}g}")


SGEMM_N = 2048


def interleaved(ready: list[tuple[dict[str, Any], Any]], batch: np.ndarray, budget_s: float, min_runs: int,
                max_runs: int) -> tuple[list[list[float]], list[float]]:
    """Run every engine once per round (plus one 2048² ``torch.mm``) until the budget is spent.

    Returns per-engine wall times and the sgemm times, all in seconds.
    """
    import torch

    from ..engines.capabilities import cpu_cores

    a, b = torch.rand(SGEMM_N, SGEMM_N), torch.rand(SGEMM_N, SGEMM_N)
    threads = torch.get_num_threads()
    times: list[list[float]] = [[] for _ in ready]
    sgemm: list[float] = []
    t_start = time.perf_counter()
    rounds = 0
    while rounds < max_runs and (rounds < min_runs or time.perf_counter() - t_start < budget_s):
        for i, (_, eng) in enumerate(ready):
            t0 = time.perf_counter()
            eng.run(batch)
            times[i].append(time.perf_counter() - t0)
        torch.set_num_threads(cpu_cores())
        t0 = time.perf_counter()
        torch.mm(a, b)
        sgemm.append(time.perf_counter() - t0)
        torch.set_num_threads(threads)
        rounds += 1
    return times, sgemm


def run_bench(models: list[Any], sizes: list[int], device: str, quick: bool, engines: list[str] | None,
              progress: bool = True) -> tuple[list[dict[str, Any]], float]:
    """Measure every configuration; returns ``(rows, sgemm GFLOP/s of the first measurement)``."""
    import psutil
    from rich.progress import Progress

    from ..engines import check_engine, make_engine
    from ..engines.capabilities import cpu_cores
    from ..engines.gate import calibration_batch, reference_output
    from ..engines.select import candidates
    from ..errors import EngineUnavailableError

    sgemm = sgemm_gflops(threads=cpu_cores())
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cfgs = [c for c in configs(device, quick) if engines is None or c[0] in engines or c[1] in engines]
    auto_set = {(e, p) for e, _, p in candidates(device)}
    budget, min_runs, max_runs = (0.6, 3, 10) if quick else (2.0, 5, 40)
    rows: list[dict[str, Any]] = []
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("engines", total=len(models) * len(sizes) * len(cfgs))
        for model in models:
            for size in sizes:
                shape = (1, model.spec.in_frames, size, size)
                gflop, largest = estimate(model.net, shape)
                too_big = largest > psutil.virtual_memory().available / 4
                calib = None if too_big else calibration_batch(shape[1], (size, size))
                ref = None if calib is None else reference_output(model, calib)
                group: list[dict[str, Any]] = []
                ready: list[tuple[dict[str, Any], Any]] = []
                for label, name, precision, kw in cfgs:  # 1) build, prepare (timed), gate
                    bar.update(task, description=f"{model.spec.name} {size}² {label}:{precision}")
                    row: dict[str, Any] = {
                        "engine": label, "precision": precision, "device": device, "model": model.model_id,
                        "name": model.spec.name, "size": f"{size}²",
                        "input_shape": list(shape), "output_shape": [size * model.spec.upscale] * 2,
                        "gflop": round(gflop, 3), "load_avg_1m": load1,
                    }
                    group.append(row)
                    bar.advance(task)
                    if too_big:
                        row.update(status="skipped", note=f"largest tensor {largest / 2**30:.1f} GiB")
                        continue
                    try:
                        eng = make_engine(name, model, device=device, precision=precision, **kw)
                        t0 = time.perf_counter()
                        eng.prepare(shape)
                        prep = getattr(eng, "prepare_s", None) or time.perf_counter() - t0
                        row["prepare_s"] = round(prep, 3)
                    except EngineUnavailableError as err:
                        row.update(status="unavailable", note=err.message)
                        continue
                    except Exception as err:  # report a broken backend, measure the others
                        row.update(status="error", note=f"{type(err).__name__}: {str(err)[:200]}")
                        continue
                    gate = check_engine(eng, model, calib, ref)
                    err = gate.max_rel_err
                    row["max_rel_err"] = float(f"{err:.3g}") if np.isfinite(err) else None
                    row["status"] = "ok" if gate.passed else "failed gate"
                    ready.append((row, eng))
                # 2) time them round-robin with an sgemm in every round: on a shared machine the load
                # changes during the run, and this keeps the ratios between rows (and to sgemm) fair
                bar.update(task, description=f"{model.spec.name} {size}² timing {len(ready)} engines")
                budget_all = budget * max(1, len(ready))
                times, sgemm_times = interleaved(ready, calib, budget_all, min_runs, max_runs)
                sgemm = 2 * SGEMM_N**3 / float(np.median(sgemm_times)) / 1e9 if sgemm_times else sgemm
                for (row, _), ts in zip(ready, times, strict=True):
                    med = float(np.median(ts))
                    row.update(runs=len(ts), fps=round(1 / med, 2), p50_ms=round(med * 1e3, 2),
                               p99_ms=round(float(np.percentile(ts, 99)) * 1e3, 2),
                               gflops=_sig(gflop / med), pct_sgemm=_sig(100 * gflop / med / sgemm))
                for row in group:
                    row["sgemm_gflops"] = round(sgemm, 1)
                del ready
                eager = next((r for r in group if r["engine"] == "eager" and r.get("fps")), None)
                ok = [r for r in group
                      if r.get("status") == "ok" and (r["engine"], r["precision"]) in auto_set]
                best = max(ok, key=lambda r: r["fps"], default=None)
                for r in group:
                    if eager and r.get("fps"):
                        r["vs_eager"] = round(r["fps"] / eager["fps"], 2)
                    r["auto"] = r is best
                rows += group
    return rows, sgemm


#: table columns (the JSON rows hold more: model id, input/output shape, device, sgemm, load, notes)
COLUMNS = ["name", "size", "engine", "precision", "status", "fps", "p50_ms", "p99_ms", "gflops", "pct_sgemm",
           "vs_eager", "prepare_s", "max_rel_err", "auto"]


def command(
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the rows as JSON here.")] = None,
    models: Annotated[str | None, typer.Option(
        "--models", help="Comma-separated model names/paths ('random' = random-weight default net); "
        "default: all installed models.")] = None,
    sizes: Annotated[str, typer.Option("--sizes", help="Input frame sizes (square), comma-separated.")]
    = DEFAULT_SIZES,
    quick: Annotated[bool, typer.Option("--quick", help="128² and 256² only, fewer runs, no torch.compile.")]
    = False,
    engines: Annotated[str | None, typer.Option(
        "--engines", help="Only these engines (e.g. eager,openvino,onnxruntime).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda (default: cuda if present).")]
    = None,
) -> None:
    """Time every engine on every model and frame size; print a table and write JSON."""
    from rich.console import Console

    from ..engines.select import normalize_device
    from .report import check_json_path, number_list, report

    dev = check_device(normalize_device(device))
    size_list = number_list(sizes, "--sizes", int, 16, "128,256")
    if engines:
        known = sorted({c[0] for c in configs(dev, False)} | {c[1] for c in configs(dev, False)})
        for name in (e.strip() for e in engines.split(",")):
            if name not in known:
                from ..errors import ConfigError

                raise ConfigError(f"--engines: {name!r} is not an engine benchmarked on {dev}",
                                  f"use some of {', '.join(known)} (comma-separated)")
    check_json_path(json_path)
    if quick and sizes == DEFAULT_SIZES:
        size_list = [128, 256]
    with tempfile.TemporaryDirectory() as tmp:
        loaded = _models(models, Path(tmp))
        rows, sgemm = run_bench(loaded, size_list, dev, quick,
                                [e.strip() for e in engines.split(",")] if engines else None)
    report("engines", rows, json_path, columns=COLUMNS)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    Console().print(f"sgemm (torch.mm 2048² fp32) at start: {sgemm:.0f} GFLOP/s (per-row values are measured "
                    f"between the runs); load average now {load}")
    for r in rows:
        if r.get("auto"):
            Console().print(f"auto would pick for {r['model']} {r['size']}: {r['engine']}:{r['precision']} "
                            f"{r['fps']} fps = {r['gflops']} GFLOP/s = {r['pct_sgemm']} % of sgemm "
                            f"({r['sgemm_gflops']} GFLOP/s), {r.get('vs_eager')}x eager")
