"""Throughput of ``live-pssr enhance`` on a dask ``LocalCluster`` of 1 vs 2 worker processes.

The same job (``--frames`` camera-like uint16 frames of ``--size``², ``--model``, ``--engine``) runs
in-process (1 torch thread) and through :func:`live_pssr.offline.enhance_file` with
``scheduler=`` a ``LocalCluster(n_workers=N, threads_per_worker=1, processes=True)`` for N = 1, 2.
Each cluster first runs a short warm-up job (its workers import torch), then the timed job; the
time is the whole call (connect, model, engine choice, every block, completing the output), as
``live-pssr enhance`` reports it. The outputs are compared with the in-process one (bit-identical
is expected: every run uses 1 torch thread per worker). Prints a table and writes JSON::

    nice .venv/bin/python benchmarks/dask_workers.py [--frames 32 --size 256 --model mito-sr4-fast]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_input(folder: Path, frames: int, size: int) -> Path:
    """A deterministic camera-like uint16 stack (offset + Poisson over a smooth field) as a tif."""
    import tifffile

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 60 + 300 * (0.5 + 0.5 * np.sin(12 * xx) * np.cos(9 * yy))
    stack = np.stack([100 + rng.poisson(base) for _ in range(frames)]).astype(np.uint16)
    path = folder / "in.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TYX"})
    return path


def run(inp: Path, out: Path, args: argparse.Namespace, scheduler: str | None) -> dict[str, Any]:
    from live_pssr.offline import enhance_file

    kw: dict[str, Any] = {"scheduler": scheduler} if scheduler else {}
    t0 = time.perf_counter()
    res = enhance_file(inp, out, model=args.model, engine=args.engine, threads=1, block=args.block, **kw)
    wall = time.perf_counter() - t0
    return {"frames": res.frames, "seconds": wall, "fps": res.frames / wall, "engine": res.engine,
            "workers": res.workers, "scheduler": "in-process" if scheduler is None else "LocalCluster"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--model", default="mito-sr4-fast")
    p.add_argument("--engine", default="torch")
    p.add_argument("--block", type=int, default=4, help="frames per task")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", type=Path, default=REPO / "bench-results" / "dask_workers.json")
    args = p.parse_args(argv)

    import tifffile
    from distributed import LocalCluster

    from live_pssr.engines.cache import machine_info

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dask-bench-") as tmp:
        folder = Path(tmp)
        inp = make_input(folder, args.frames, args.size)
        ref_row = run(inp, folder / "ref.tif", args, None)
        ref = tifffile.imread(folder / "ref.tif")
        rows.append({**ref_row, "n_workers": 0, "identical": True})
        for n in args.workers:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
            try:
                warm = folder / f"warm{n}"  # every worker imports torch before the timed job
                warm.mkdir()
                run(make_input(warm, 2 * n, args.size), warm / "out.tif",
                    argparse.Namespace(**{**vars(args), "block": 1}), cluster.scheduler_address)
                row = run(inp, folder / f"w{n}.tif", args, cluster.scheduler_address)
            finally:
                cluster.close()
            row["n_workers"] = n
            row["identical"] = bool(np.array_equal(tifffile.imread(folder / f"w{n}.tif"), ref))
            rows.append(row)

    by_n = {r["n_workers"]: r for r in rows}
    ratio = by_n[2]["fps"] / by_n[1]["fps"] if 1 in by_n and 2 in by_n else None
    cpu = machine_info()["cpu"]
    print(f"enhance {args.frames} x {args.size}² uint16 frames, {args.model}, engine {rows[0]['engine']}, "
          f"block {args.block}; {cpu}")
    print(f"{'run':<28}{'frames/s':>10}{'seconds':>10}  identical")
    for r in rows:
        n = r["n_workers"]
        name = "in-process (1 thread)" if n == 0 else f"LocalCluster {n} worker proc."
        print(f"{name:<28}{r['fps']:>10.2f}{r['seconds']:>10.2f}  {r['identical']}")
    if ratio is not None:
        print(f"2 workers / 1 worker: {ratio:.2f}x")
    doc = {"benchmark": "dask_workers", "machine": {**machine_info(), "lscpu_model_name": cpu,
                                                    "load_average_1_5_15": list(os.getloadavg())},
           "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "rows": rows, "ratio_2_vs_1": ratio}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
