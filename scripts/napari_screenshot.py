"""Render docs/napari.png: a simulated run (shipped model, consistency check on) opened in napari.

Run under a virtual X server (napari needs OpenGL)::

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/napari_screenshot.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from live_pssr.enhancer import build_enhancer
from live_pssr.frames import Frame
from live_pssr.pipeline import LivePipeline, StoreSpec
from live_pssr.pipeline.checking import consistency_spec
from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/napari.png")
SIZE, FRAMES = 128, 12


def main() -> None:
    import napari
    from npe2 import PluginManager, PluginManifest

    import live_pssr.napari_plugin as plugin

    scope = SimulatedMicroscope(MicroscopeConfig(height=SIZE, width=SIZE, laser_power=0.1, seed=5,
                                                n_networks=30))
    run = Path(tempfile.mkdtemp()) / "demo.ome.zarr"
    pipe = LivePipeline(build_enhancer("mito-sr4-fast", (SIZE, SIZE), "torch"),
                        StoreSpec(run, pixel_size_um=0.16), policy="complete",
                        consistency=consistency_spec(True, camera=scope.camera), enhance_queue_size=FRAMES)
    pipe.start()
    for i in range(FRAMES):
        pipe.submit(Frame(i, scope.frame(i), i * 40.0))
    pipe.stop()

    pm = PluginManager.instance()
    if "live-pssr" not in pm:  # not installed with its entry point: register the manifest itself
        pm.register(PluginManifest.from_file(Path(plugin.__file__).parent / "napari.yaml"))
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    viewer.open(str(run), plugin="live-pssr")
    viewer.layers["consistency"].visible = False
    viewer.layers.selection.active = viewer.layers["enhanced"]
    viewer.grid.enabled = True
    viewer.dims.set_current_step(0, FRAMES - 1)
    viewer.window.add_plugin_dock_widget("live-pssr", "Enhance")
    viewer.reset_view()
    napari.qt.get_qapp().processEvents()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False)
    viewer.close()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
