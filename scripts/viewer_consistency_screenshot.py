"""Make docs/viewer_consistency.png: the review viewer with the consistency overlay on a simulator run.

A real run (simulated camera, the shipped default model, the live consistency check on, every
frame), stored and closed; then ``live_pssr.viewer.run_review_viewer`` renders (offscreen Qt) the
frame whose error map peaks highest, with the overlay on. CPU only, well under a minute::

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/viewer_consistency_screenshot.py [OUT.png]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make(out: Path, frames: int = 24, size: int = 128, seed: int = 7) -> tuple[Path, int, dict]:
    """Record the run, then write the screenshot; returns (PNG, frame shown, its record)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from live_pssr.enhancer import build_enhancer
    from live_pssr.live.runners import SourceRunner
    from live_pssr.pipeline import LivePipeline, StoreSpec
    from live_pssr.pipeline.checking import ConsistencySpec
    from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope
    from live_pssr.sources import SimulatedSource
    from live_pssr.store import open_store
    from live_pssr.viewer import run_review_viewer

    config = MicroscopeConfig(height=size, width=size, laser_power=0.1, n_networks=40, seed=seed, fps=20)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "sim.ome.zarr"
        pipeline = LivePipeline(build_enhancer("mito-sr4-fast", (size, size), "torch"),
                                StoreSpec(store, pixel_size_um=config.pixel_size_um), policy="complete",
                                consistency=ConsistencySpec(camera=SimulatedMicroscope(config).camera))
        runner = SourceRunner(SimulatedSource(config), pipeline, frames, paced=False).start()
        if not runner.done.wait(300):
            runner.stop()
        summary = pipeline.stop()
        if runner.error is not None or summary.errors:
            raise SystemExit(f"the run failed: {runner.error or summary.errors}")
        r = open_store(store)
        peaks = np.nan_to_num(r.records["consistency_max"], nan=-1.0)
        t = int(np.argmax(peaks))
        record = {k: v[t].item() for k, v in r.records.items() if k.startswith(("consistency", "flagged"))}
        run_review_viewer(store, frame=t, screenshot=out, consistency=True)
    return out, t, record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "docs" / "viewer_consistency.png")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    out, t, record = make(args.out, args.frames, args.size)
    print(f"{out}: frame {t}, {record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
