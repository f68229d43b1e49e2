"""Enhance an image layer with a chosen model and engine, in a napari ``thread_worker``.

The GUI thread only reads the choices and adds the result: the model is loaded, its engine
chosen (:func:`~live_pssr.enhancer.build_enhancer`: ``auto`` times and gates the candidates)
and every frame enhanced on the worker thread, which yields its progress after each frame.
Cancel asks the worker to stop at the next frame (``aborted``: nothing is added). A failure on
the worker (``errored``) is shown in napari's notifications and in the widget's status line.
The worker is napari's ``GeneratorWorker`` made directly: napari 0.9.2's ``create_worker`` hooks
an ``errored`` slot of the wrong arity into its activity dock, whose ``TypeError`` then keeps a
failed worker from ever emitting ``finished``.

Frames: the layer's last two axes are the image; every index of its leading axes is a frame
(in order along the first one, so a multi-frame model sees a time-lapse's previous frames; its
window starts afresh for each index of the other leading axes), or only the frame on screen.
The result is a new layer ``<source> enhanced`` whose scale on the spatial axes is the source's
divided by the model's upscale and whose translation follows the pixel-centre convention of
:mod:`._geometry`, so it overlays the source exactly.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import ConfigError, FrameFormatError
from ..normalize import percentile_range
from ._common import engine_choices, model_choices, report_error
from ._geometry import finer_geometry


def frame_indices(lead: tuple[int, ...]) -> list[tuple[tuple[int, ...], bool]]:
    """Every frame index over the leading axes, each with "start the model's window afresh".

    The first leading axis runs fastest (a time-lapse stays in order); the window restarts
    whenever the other leading indices change.
    """
    if not lead:
        return [((), True)]
    out = []
    for rest in np.ndindex(*lead[1:]):
        for t in range(lead[0]):
            out.append(((t, *rest), t == 0))
    return out


def enhance_frames(data: Any, indices: list[tuple[tuple[int, ...], bool]], model: str,
                   engine: str) -> Generator[int, None, dict[str, Any]]:
    """Worker body: build the enhancer, enhance ``data[index]`` for each index, yield progress.

    Returns ``{"data", "upscale", "model", "engine"}`` with ``data`` of shape ``(*leading, H*u, W*u)``.
    """
    from ..enhancer import build_enhancer

    shape = tuple(int(v) for v in data.shape[-2:])
    enhancer = build_enhancer(model, shape, engine)
    u = enhancer.upscale
    yield 0
    out: np.ndarray | None = None
    for done, (index, fresh) in enumerate(indices, start=1):
        if fresh:
            enhancer.reset()
        frame = np.asarray(data[index])
        result = enhancer.enhance(frame)
        if out is None:
            out = np.zeros((*data.shape[:-2], shape[0] * u, shape[1] * u), dtype=result.dtype)
        out[index] = result
        yield done
    return {"data": out, "upscale": u, "model": enhancer.model.model_id, "engine": enhancer.engine_name}


class EnhanceWidget(QWidget):
    """Dock widget: source layer, model, engine, "frame on screen only", Enhance, Cancel, progress."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self.result_layer: Any = None
        self.layer_box = QComboBox()
        self.model_box = QComboBox()
        self.model_box.setEditable(True)  # a .safetensors path may be typed
        self.model_box.addItems(model_choices())
        self.engine_box = QComboBox()
        self.engine_box.addItems(engine_choices())
        self.shown_only = QCheckBox("only the frame on screen")
        self.run_button = QPushButton("Enhance")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.layer_box)
        form.addRow("model", self.model_box)
        form.addRow("engine", self.engine_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        box = QVBoxLayout(self)
        box.addLayout(form)
        box.addWidget(self.shown_only)
        box.addLayout(buttons)
        box.addWidget(self.progress)
        box.addWidget(self.status)
        box.addStretch()

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self._refresh_layers)
        self._refresh_layers()

    # ------------------------------------------------------------------ choices
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _refresh_layers(self, *_: Any) -> None:
        current = self.layer_box.currentText()
        names = [layer.name for layer in self._image_layers()]
        self.layer_box.clear()
        self.layer_box.addItems(names)
        if current in names:
            self.layer_box.setCurrentText(current)

    def _source(self) -> Any:
        name = self.layer_box.currentText()
        layer = next((lyr for lyr in self._image_layers() if lyr.name == name), None)
        if layer is None:
            raise ConfigError("no image layer chosen", "open an image or a run store, then pick it here")
        if layer.rgb:
            raise FrameFormatError(f"layer {name!r} is RGB", "pick a single-channel (grayscale) image layer")
        data = layer.data[0] if layer.multiscale else layer.data
        if data.ndim < 2 or not np.issubdtype(np.dtype(data.dtype), np.number) \
                or np.issubdtype(np.dtype(data.dtype), np.complexfloating):
            raise FrameFormatError(f"layer {name!r} holds {data.ndim}-D {data.dtype} data",
                                   "pick a grayscale image layer of integers or floats")
        return layer, data

    def _frames(self, layer: Any, data: Any) -> tuple[Any, list[tuple[tuple[int, ...], bool]], str]:
        """The data to enhance, its frame indices, and a name suffix (the frame on screen, if any)."""
        lead = tuple(int(v) for v in data.shape[:-2])
        if not self.shown_only.isChecked() or not lead:
            return data, frame_indices(lead), ""
        point = layer.world_to_data(self.viewer.dims.point[-layer.ndim:])
        index = tuple(min(max(int(round(p)), 0), n - 1) for p, n in zip(point[:-2], lead, strict=True))
        return data[index], frame_indices(()), f" {list(index)}"

    # ------------------------------------------------------------------ run
    def run(self) -> Any:
        """Start enhancing the chosen layer; returns the worker (None when the choice is refused)."""
        from napari.qt.threading import GeneratorWorker

        if self.worker is not None:
            return self.worker
        try:
            layer, data = self._source()
            data, indices, suffix = self._frames(layer, data)
        except (ConfigError, FrameFormatError) as err:
            self.status.setText(report_error("cannot enhance", err))
            return None
        model, engine = self.model_box.currentText().strip(), self.engine_box.currentText()
        self.progress.setRange(0, len(indices))
        self.progress.setValue(0)
        self.status.setText(f"loading {model} ({engine})...")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        worker = GeneratorWorker(enhance_frames, data, indices, model, engine)
        worker.yielded.connect(self._progressed)
        worker.returned.connect(lambda out: self._done(layer, out, len(indices), suffix))
        worker.errored.connect(lambda err: self.status.setText(report_error(f"enhancing {layer.name}", err)))
        worker.aborted.connect(lambda: self.status.setText(
            f"cancelled after {self.progress.value()} of {len(indices)} frame(s): nothing added"))
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running enhancement at the next frame (nothing is added)."""
        if self.worker is not None:
            self.worker.quit()

    def _progressed(self, done: int) -> None:
        self.progress.setValue(done)
        self.status.setText(f"enhanced {done} of {self.progress.maximum()} frame(s)")

    def _done(self, source: Any, out: dict[str, Any], n: int, suffix: str) -> None:
        data, u = out["data"], out["upscale"]
        nd = data.ndim  # the source's dims, or its last two for the frame on screen only
        scale, translate = finer_geometry(source.scale[-nd:], source.translate[-nd:], u)
        ref = data[tuple(0 for _ in data.shape[:-2])]
        lo, hi = percentile_range(ref, 0.5, 99.8)
        self.result_layer = self.viewer.add_image(
            data, name=f"{source.name} enhanced{suffix}", scale=scale, translate=translate,
            contrast_limits=(float(lo), float(hi)), colormap=source.colormap.name,
            axis_labels=source.axis_labels[-nd:], units=source.units[-nd:],
            metadata={"live_pssr": {"source": source.name, "model": out["model"], "engine": out["engine"],
                                    "upscale": u}})
        self.status.setText(f"{n} frame(s) enhanced with {out['model']} on {out['engine']} (x{u})")

    def _finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
