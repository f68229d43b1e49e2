"""bioimage.io (BioImage Model Zoo) packages as live-pssr models: what ``--model PKG.zip`` loads.

:func:`~live_pssr.modelio.load_model` hands a path that :func:`is_package_path` recognises (a
``.zip``, an ``rdf.yaml`` / ``bioimageio.yaml`` file, or a folder holding one) to
:func:`load_package`. This module sits at modelio's layer (it imports only ``errors`` and
``modelio``), so the dispatch needs no upward import; the export side, which needs the Enhancer
and the simulator, is :mod:`live_pssr.bioimageio`.

A package is compatible when it describes one 2-D image-to-image network with ONNX weights:
one input with axes ``batch, channel|time, y, x`` (channel of size 1, or a time axis of N frames:
an N-frame model), one output ``batch, channel (1), y, x`` spatially ``upscale`` times the input
(or the same size), input pre-processing that is live-pssr's own (optionally ``ensure_dtype``
float32, then ``scale_range`` per sample over y and x; its percentiles become the spec's
``norm_low``/``norm_high``), and no output post-processing beyond ``ensure_dtype`` float32 (the
output is in normalised units; live-pssr maps it back with the input's range). Anything else is a
:class:`~live_pssr.errors.ModelFileError` naming what does not fit and what to do.

The network is :class:`OnnxGraphNet`: a ``torch.nn.Module`` that runs the package's ONNX graph with
ONNX Runtime (eager calls: the correctness gate's reference, the torch engine) and, when traced by
``torch.onnx.export`` (how the ONNX Runtime and OpenVINO engines get their graph), re-emits the
same ONNX nodes, so those engines run the package's own graph. Inputs of any size are padded
(replicate) to the package's size rule (``min + n * step``) and the output cropped back. It has no
gradient: measuring a receptive field (exact tiling without ``--overlap``) is not possible for it.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelFileError
from .modelio import LoadedModel, ModelSpec

#: the ``arch`` of a model loaded from a bioimage.io package
ARCH = "bioimageio-onnx"
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
#: the key of live-pssr's own spec in an exported package's ``config``
CONFIG_KEY = "live_pssr"
_INSTALL = 'pip install "live-pssr[bioimageio]" (bioimageio.spec reads the package)'


def is_package_path(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` names a bioimage.io package (zip, rdf.yaml, or a folder holding one)."""
    p = Path(name_or_path)
    if p.suffix.lower() == ".zip" or p.name.endswith(RDF_NAMES):
        return True
    return p.is_dir() and any((p / n).is_file() for n in RDF_NAMES)


class OnnxGraphNet(nn.Module):
    """An ONNX graph as a torch module (see the module docstring).

    Parameters
    ----------
    onnx_bytes : bytes
        The serialised ONNX model (one input ``(B, in_frames, H, W)``, one output).
    upscale, in_frames : int
        Output size over input size; frames (channels) in.
    size_min, size_step : tuple of int
        The input size rule per spatial axis (y, x): ``min + n * step`` (step 0: exactly ``min``).
    """

    def __init__(
        self,
        onnx_bytes: bytes,
        upscale: int,
        in_frames: int,
        size_min: tuple[int, int] = (1, 1),
        size_step: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        import onnx

        self.onnx_bytes = onnx_bytes
        self.upscale, self.in_frames = upscale, in_frames
        self.size_min, self.size_step = tuple(size_min), tuple(size_step)
        self._graph = onnx.load_model_from_string(onnx_bytes).graph
        self._session: Any = None
        if len(self._graph.input) - len(self._graph.initializer) > 1 or len(self._graph.output) != 1:
            raise ModelFileError(
                "the package's ONNX graph has several inputs or outputs",
                "live-pssr runs networks with one input and one output",
            )

    def __getstate__(self) -> dict[str, Any]:  # deepcopy (engines copy their net): no ORT session
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    def _padded_size(self, n: int, axis: int) -> int:
        low, step = self.size_min[axis], self.size_step[axis]
        if n <= low or step == 0:
            return low if step == 0 or n <= low else n
        return low + -(-(n - low) // step) * step

    def run_onnx(self, x: np.ndarray) -> np.ndarray:
        """The package's graph on a float32 ``(B, in_frames, H, W)`` array (ONNX Runtime, CPU)."""
        if self._session is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.log_severity_level = 3
            self._session = ort.InferenceSession(self.onnx_bytes, so, providers=["CPUExecutionProvider"])
        name = self._session.get_inputs()[0].name
        return self._session.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        ph, pw = self._padded_size(h, 0) - h, self._padded_size(w, 1) - w
        if ph < 0 or pw < 0:
            raise ModelFileError(
                f"frames of {h} x {w} are larger than this package's fixed input size "
                f"{self.size_min[0]} x {self.size_min[1]}",
                "use frames of that size (crop or tile), or a package with a flexible size",
            )
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        y = _Graph.apply(xp.float(), self)
        return y[..., : h * self.upscale, : w * self.upscale] if (ph or pw) else y

    def emit(self, g: Any, x: Any) -> Any:
        """Re-emit the graph's nodes through ``torch.onnx``'s graph context ``g`` (tracing export)."""
        import onnx
        from onnx import numpy_helper
        from torch.onnx.symbolic_helper import _optional_input_placeholder_tensor

        inits = {t.name: t for t in self._graph.initializer}
        inputs = [i.name for i in self._graph.input if i.name not in inits]
        env: dict[str, Any] = {inputs[0]: x}

        def value(name: str) -> Any:
            if not name:
                return _optional_input_placeholder_tensor(g)
            if name not in env:
                env[name] = g.op(
                    "Constant", value_t=torch.from_numpy(numpy_helper.to_array(inits[name]).copy())
                )
            return env[name]

        kinds = {
            onnx.AttributeProto.FLOAT: "f",
            onnx.AttributeProto.INT: "i",
            onnx.AttributeProto.STRING: "s",
            onnx.AttributeProto.TENSOR: "t",
            onnx.AttributeProto.FLOATS: "f",
            onnx.AttributeProto.INTS: "i",
            onnx.AttributeProto.STRINGS: "s",
        }
        for node in self._graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise ModelFileError(
                    f"the package's ONNX graph uses operator {node.domain}::{node.op_type}",
                    "use --engine torch (it runs the graph with ONNX Runtime directly)",
                )
            attrs: dict[str, Any] = {}
            for a in node.attribute:
                if a.type not in kinds:
                    raise ModelFileError(
                        f"the package's ONNX graph has a sub-graph ({node.op_type})",
                        "use --engine torch (it runs the graph with ONNX Runtime directly)",
                    )
                v = onnx.helper.get_attribute_value(a)
                if a.type == onnx.AttributeProto.TENSOR:
                    v = torch.from_numpy(numpy_helper.to_array(v).copy())
                elif a.type == onnx.AttributeProto.STRING:
                    v = v.decode()
                elif a.type == onnx.AttributeProto.STRINGS:
                    v = [s.decode() for s in v]
                attrs[f"{a.name}_{kinds[a.type]}"] = v
            outs = g.op(node.op_type, *[value(n) for n in node.input], outputs=len(node.output), **attrs)
            for name, out in zip(node.output, outs if len(node.output) > 1 else [outs], strict=True):
                env[name] = out
        return env[self._graph.output[0].name]


class _Graph(torch.autograd.Function):
    """Eager: ONNX Runtime runs the graph; traced by ``torch.onnx.export``: :meth:`OnnxGraphNet.emit`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, net: OnnxGraphNet) -> torch.Tensor:  # noqa: ARG004
        return torch.from_numpy(net.run_onnx(x.detach().cpu().numpy())).to(x.device)

    @staticmethod
    def symbolic(g: Any, x: Any, net: OnnxGraphNet) -> Any:
        return net.emit(g, x)


def _bioimageio_spec() -> Any:
    try:
        import bioimageio.spec as bspec
    except ImportError as err:
        raise ModelFileError(
            "reading a bioimage.io package needs the bioimageio.spec package", _INSTALL
        ) from err
    return bspec


def read_package(path: str | Path) -> Any:
    """Load and validate the package's description offline (a ``bioimageio.spec`` v0.5 ModelDescr)."""
    bspec = _bioimageio_spec()
    from bioimageio.spec.model import v0_5

    path = Path(path)
    if not path.exists():
        raise ModelFileError(
            f"bioimage.io package {path} does not exist",
            "check the path (a .zip package, its rdf.yaml, or the folder holding it)",
        )
    source = next((path / n for n in RDF_NAMES if (path / n).is_file()), path) if path.is_dir() else path
    try:
        descr = bspec.load_model_description(source, format_version="latest", perform_io_checks=False)
    except Exception as err:  # a broken zip / yaml: the spec raises several error types
        raise ModelFileError(
            f"{path} is not a readable bioimage.io model package ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})",
            "pass a bioimage.io model package (.zip or rdf.yaml), or a live-pssr model",
        ) from err
    if not isinstance(descr, v0_5.ModelDescr):
        summary = getattr(descr, "validation_summary", None)
        detail = ""
        if summary is not None:
            errors = [f"{'.'.join(map(str, e.loc))}: {e.msg}" for d in summary.details for e in d.errors][:3]
            detail = f" ({'; '.join(errors)})" if errors else ""
        raise ModelFileError(
            f"{path} is not a valid bioimage.io model description{detail}",
            "re-export the package (e.g. `live-pssr export MODEL --format bioimageio`) "
            "or check it with `bioimageio validate`",
        )
    return descr


def _incompatible(path: Path, what: str, hint: str = "") -> ModelFileError:
    return ModelFileError(
        f"bioimage.io package {path} is not a model live-pssr can run: {what}",
        hint
        or "live-pssr runs 2-D image-to-image models with ONNX weights: one input (batch, channel "
        "of 1 or time, y, x) and one output (batch, channel of 1, y, x)",
    )


def _check_axes(path: Path, axes: list[Any], role: str) -> tuple[str, int]:
    """``(kind of the second axis, its size)`` after checking ``batch, channel|time, y, x``."""
    ids = [str(a.id) for a in axes]
    kinds = [a.type for a in axes]
    if kinds.count("space") != 2 or any(i in ids for i in ("z",)):
        raise _incompatible(
            path,
            f"its {role} has axes {ids}: not a 2-D image (y, x)",
            "live-pssr runs 2-D models; a 3-D (z) or 1-D model cannot take camera frames",
        )
    if (
        kinds[:1] != ["batch"]
        or len(axes) != 4
        or kinds[1] not in ("channel", "time")
        or ids[2:] != ["y", "x"]
    ):
        raise _incompatible(
            path,
            f"its {role} has axes {ids} (types {kinds}); live-pssr needs batch, channel "
            "(or time), y, x in that order",
        )
    second = axes[1]
    size = len(second.channel_names) if kinds[1] == "channel" else second.size
    if not isinstance(size, int):
        raise _incompatible(path, f"its {role}'s {ids[1]} axis has no fixed size ({size!r})")
    return kinds[1], size


def _size_rule(axis: Any) -> tuple[int, int]:
    from bioimageio.spec.model import v0_5

    size = axis.size
    if isinstance(size, int):
        return size, 0
    if isinstance(size, v0_5.ParameterizedSize):
        return size.min, size.step
    return 1, 1


def _percentiles(path: Path, pre: list[Any]) -> tuple[float, float]:
    ops = [p for p in pre if p.id != "ensure_dtype"]
    if len(ops) != 1 or ops[0].id != "scale_range":
        raise _incompatible(
            path,
            f"its input pre-processing is {[p.id for p in pre]}; live-pssr normalises each "
            "frame by its own percentiles (scale_range over y and x), so only that fits",
            "use a model trained on percentile-normalised inputs (scale_range), or retrain with "
            "`live-pssr train`",
        )
    kw = ops[0].kwargs
    if kw.reference_tensor is not None or kw.axes is None or {str(a) for a in kw.axes} != {"y", "x"}:
        raise _incompatible(
            path,
            f"its scale_range normalises over axes {kw.axes} (reference "
            f"{kw.reference_tensor}); live-pssr normalises each frame over y and x",
        )
    return float(kw.min_percentile), float(kw.max_percentile)


def load_package(path: str | Path, device: str = "cpu") -> LoadedModel:
    """Load a compatible bioimage.io package as a :class:`~live_pssr.modelio.LoadedModel` (ONNX weights)."""
    path = Path(path)
    descr = read_package(path)
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise _incompatible(path, f"it has {len(descr.inputs)} input(s) and {len(descr.outputs)} output(s)")
    ipt, out = descr.inputs[0], descr.outputs[0]
    kind, frames = _check_axes(path, list(ipt.axes), "input")
    if kind == "channel" and frames != 1:
        raise _incompatible(
            path,
            f"its input has {frames} channels",
            "live-pssr feeds one channel (a multi-frame model describes its frames as a time axis)",
        )
    okind, ochannels = _check_axes(path, list(out.axes), "output")
    if okind != "channel" or ochannels != 1:
        raise _incompatible(
            path, f"its output has a {okind} axis of {ochannels}; live-pssr needs one channel out"
        )
    if descr.weights.onnx is None:
        have = [k for k, v in descr.weights if v is not None]
        raise _incompatible(
            path,
            f"it has no ONNX weights (only {', '.join(have)})",
            "export the model's ONNX weights into the package (e.g. bioimageio.core's "
            "weight converters), then load that package",
        )
    post = [p.id for p in out.postprocessing if not (p.id == "ensure_dtype" and p.kwargs.dtype == "float32")]
    if post:
        raise _incompatible(
            path,
            f"its output post-processing is {post}; live-pssr maps the network's output "
            "back with the input's percentile range itself",
        )
    low, high = _percentiles(path, list(ipt.preprocessing))
    try:
        onnx_bytes = descr.weights.onnx.get_reader().read()
        test_in = _read_array(descr, ipt.test_tensor)
        test_out = _read_array(descr, out.test_tensor)
    except Exception as err:  # a file missing from the zip
        raise ModelFileError(
            f"bioimage.io package {path} is incomplete ({type(err).__name__}: {err})",
            "re-download or re-export the package",
        ) from err
    if test_in.ndim != 4 or test_out.ndim != 4:
        raise _incompatible(path, f"its test tensors have shapes {test_in.shape} -> {test_out.shape}")
    ups = {test_out.shape[2] / test_in.shape[2], test_out.shape[3] / test_in.shape[3]}
    upscale = int(next(iter(ups)))
    if len(ups) != 1 or upscale != next(iter(ups)) or upscale < 1:
        raise _incompatible(
            path, f"its output is not a whole number of times its input ({test_in.shape} -> {test_out.shape})"
        )
    config = dict(getattr(descr.config, "model_extra", None) or {}).get(CONFIG_KEY) or {}
    target = config.get("target_frame", "newest") if isinstance(config, dict) else "newest"
    rules = [_size_rule(a) for a in list(ipt.axes)[2:]]
    net = OnnxGraphNet(onnx_bytes, upscale, frames, (rules[0][0], rules[1][0]), (rules[0][1], rules[1][1]))
    net.eval().to(device)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(descr.id or descr.name)).strip("-") or "bioimageio-model"
    spec = ModelSpec(
        name=name,
        arch=ARCH,
        arch_kwargs={},
        upscale=upscale,
        in_frames=frames,
        target_frame=target,
        norm_low=low,
        norm_high=high,
        training={
            "bioimageio": {
                "name": descr.name,
                "source": str(path),
                "live_pssr": config if isinstance(config, dict) else {},
            }
        },
    )
    problems = spec.problems()
    if problems:
        raise _incompatible(path, "; ".join(problems))
    return LoadedModel(net=net, spec=spec, path=path, sha256=hashlib.sha256(onnx_bytes).hexdigest())


def _read_array(descr: Any, file_descr: Any) -> np.ndarray:
    if file_descr is None:
        raise FileNotFoundError("no test tensor")
    return np.load(io.BytesIO(file_descr.get_reader().read()), allow_pickle=False)


__all__ = ["ARCH", "CONFIG_KEY", "OnnxGraphNet", "is_package_path", "load_package", "read_package"]
