"""Export a live-pssr model as a BioImage Model Zoo (bioimage.io) package, built with ``bioimageio.spec``.

Steps (each reported through ``progress``):

1. **test tensors**: ``in_frames`` consecutive frames of the simulated microscope
   (:mod:`live_pssr.sim`) at ``test_size`` pixels, enhanced by live-pssr's own
   :class:`~live_pssr.enhancer.Enhancer` (torch engine, float32 out);
2. **ONNX** with a dynamic batch and dynamic y, x (the nets branch on the size only to pad, so the
   graph is traced at a size that needs no padding and declared as ``min + n * step`` with ``step``
   the net's alignment), checked against fp32 eager PyTorch with the engines' correctness gate at
   two sizes; **PyTorch state dict** (``torch.save`` of tensors only: bioimage.io loads it with
   ``weights_only=True``) with the architecture as a source file: the net's own module, which
   imports only torch, minus its registry lines (``from . import register`` and ``register(...)``);
3. **cover** (PNG: raw frame | enhanced, side by side), the model card as documentation, the PSSR
   citation, license and authors; the description is validated and zipped.

Normalisation, and how it differs from live-pssr's: the input's pre-processing is
``ensure_dtype`` float32 then ``scale_range`` per sample over (y, x) with the model's percentiles
(each frame of a multi-frame window by its own range, as live-pssr does). bioimage.io divides by
``hi - lo + 1e-6`` where live-pssr divides by ``hi - lo`` (``hi = lo + 1`` for a flat frame), and
live-pssr estimates the percentiles of frames of 64 px or more on every second pixel (bioimage.io
on all): both within rounding on camera frames. live-pssr maps the output back to intensity units
with the reference frame's range; no bioimage.io post-processing can do that, so the package's
output is the network's output in normalised units (0 = the reference frame's low percentile,
1 = its high percentile) and the test output is the Enhancer's output mapped to those units with
the range bioimage.io computes (``test_size`` stays below 64 px so both see the same percentiles).
"""

from __future__ import annotations

import ast
import copy
import inspect
import io
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engines.gate import PRECISION_BOUNDS, calibration_batch, reference_output, relative_error
from ..enhancer import Enhancer
from ..errors import EngineUnavailableError, ModelFileError
from ..modelio import LoadedModel, load_model
from ..sim import MicroscopeConfig, SimulatedMicroscope
from ..tiling import net_alignment
from ..zoo import CONFIG_KEY

PSSR_CITATION = (
    "Fang, L. et al. Deep learning-based point-scanning super-resolution imaging. "
    "Nature Methods 18, 406-416 (2021)"
)
PSSR_DOI = "10.1038/s41592-021-01080-z"
LICENSE = "BSD-3-Clause"
AUTHORS = ("live-pssr contributors",)
OPSET = 17
#: bioimage.io's scale_range epsilon (bioimageio.core adds it to hi - lo)
EPS = 1e-6
_INSTALL = 'pip install "live-pssr[bioimageio]"'


@dataclass
class ExportResult:
    """What :func:`export_package` wrote."""

    path: Path
    model_id: str
    weights: list[str]
    test_input_shape: tuple[int, ...]
    test_output_shape: tuple[int, ...]
    onnx_max_rel_err: float
    notes: list[str]


def _spec_modules() -> tuple[Any, Any]:
    try:
        import bioimageio.spec as bspec
        from bioimageio.spec.model import v0_5
    except ImportError as err:
        raise ModelFileError("exporting to bioimage.io needs the bioimageio.spec package", _INSTALL) from err
    return bspec, v0_5


def make_test_tensors(
    model: LoadedModel, size: int = 48, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(test_input, test_output, enhanced)``: simulator frames and what bioimage.io must predict for them.

    ``test_input`` is float32 ``(1, in_frames, size, size)`` raw camera counts (oldest frame first),
    ``enhanced`` the Enhancer's output in intensity units ``(size*s, size*s)`` and ``test_output``
    ``(1, 1, size*s, size*s)`` the same in bioimage.io's normalised units (see the module docstring).
    """
    spec = model.spec
    if size >= 64:
        raise ValueError(
            f"test_size {size}: must stay below 64 px (live-pssr subsamples larger frames "
            "for its percentiles, bioimage.io does not)"
        )
    sim = SimulatedMicroscope(
        MicroscopeConfig(height=size, width=size, upscale=max(spec.upscale, 1), seed=seed)
    )
    frames = [sim.frame(t).astype(np.float32) for t in range(spec.in_frames)]
    ref = spec.in_frames // 2 if spec.target_frame == "centre" else spec.in_frames - 1
    enhancer = Enhancer(model, engine="torch", out_dtype=np.float32)
    enhanced = enhancer.enhance_window(frames, ref=ref)
    lo, hi = (float(v) for v in np.percentile(frames[ref], (spec.norm_low, spec.norm_high)))
    test_output = ((enhanced - lo) / (hi - lo + EPS)).astype(np.float32)[None, None]
    return np.stack(frames)[None].astype(np.float32), test_output, enhanced


def standalone_source(net: torch.nn.Module) -> str | None:
    """The source of ``net``'s module as a file importable on its own (``None`` when it is not).

    Lines that register the class in live-pssr's architecture registry (``from . import register``
    and top-level ``register(...)`` calls) are dropped; any other import of live-pssr means the
    module cannot stand alone.
    """
    source = inspect.getsource(inspect.getmodule(type(net)))
    tree = ast.parse(source)
    drop: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level and [a.name for a in node.names] == ["register"]:
            drop.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "register"
        ):
            drop.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in drop:
            continue
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("live_pssr")):
            return None
        if isinstance(node, ast.Import) and any(a.name.startswith("live_pssr") for a in node.names):
            return None
    lines = source.splitlines(keepends=True)
    return "".join(line for i, line in enumerate(lines, 1) if i not in drop)


def write_onnx(model: LoadedModel, path: Path, size: int, align: int) -> float:
    """Trace ``model`` to ONNX (batch, y, x dynamic) and gate it at two sizes; returns the worst error."""
    import onnxruntime as ort

    net = copy.deepcopy(model.net).float().cpu().eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about the (unused) padding branch: expected
        torch.onnx.export(
            net,
            (torch.rand(1, model.spec.in_frames, size, size),),
            str(path),
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch", 2: "y", 3: "x"}, "output": {0: "batch", 2: "y", 3: "x"}},
            do_constant_folding=True,
            dynamo=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for shape in ((size, size), (size + align, size + 2 * align)):
        batch = calibration_batch(model.spec.in_frames, shape, batch=2)
        err = relative_error(session.run(None, {"input": batch})[0], reference_output(model, batch))
        worst = max(worst, err)
        if err > PRECISION_BOUNDS["fp32"]:
            raise EngineUnavailableError(
                f"the ONNX export of {model.model_id} differs from PyTorch at {shape[0]} x {shape[1]} "
                f"(max relative error {err:.3g} > {PRECISION_BOUNDS['fp32']:g})",
                "report the architecture; export without it is not possible",
            )
    return worst


def cover_png(raw: np.ndarray, enhanced: np.ndarray) -> bytes:
    """A 2:1 PNG: the raw frame (nearest-neighbour upsampled) beside the enhanced one, contrast-stretched."""
    from PIL import Image

    s = enhanced.shape[0] // raw.shape[0]
    panels = []
    for img in (np.kron(raw, np.ones((s, s), np.float32)), enhanced):
        lo, hi = np.percentile(img, (0.5, 99.8))
        panels.append(np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8))
    pil = Image.fromarray(np.concatenate(panels, axis=1))
    if pil.width < 256:
        pil = pil.resize((pil.width * 2, pil.height * 2), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def export_package(
    model: LoadedModel | str,
    output: str | Path,
    test_size: int = 48,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Write ``model`` (a name, path or loaded model) as a bioimage.io package ``output`` (.zip)."""
    bspec, v0_5 = _spec_modules()
    say = progress or (lambda _msg: None)
    loaded = load_model(model) if isinstance(model, str | Path) else model
    spec = loaded.spec
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise ModelFileError(
            f"the package name {output} does not end in .zip", f"use -o {output.with_suffix('.zip')}"
        )
    if output.is_dir():
        raise ModelFileError(f"{output} is a folder", "choose a file name for the package, e.g. MODEL.zip")
    align = net_alignment(loaded.net)
    size = -(-test_size // align) * align
    notes: list[str] = []

    with tempfile.TemporaryDirectory(prefix="live-pssr-bioimageio-") as tmp_name:
        tmp = Path(tmp_name)
        say(f"test tensors: {spec.in_frames} simulated frame(s) of {size} x {size}, enhanced by the Enhancer")
        test_in, test_out, enhanced = make_test_tensors(loaded, size)
        np.save(tmp / "test_input.npy", test_in)
        np.save(tmp / "test_output.npy", test_out)
        ref = spec.in_frames // 2 if spec.target_frame == "centre" else spec.in_frames - 1
        (tmp / "cover.png").write_bytes(cover_png(test_in[0, ref], enhanced))

        say(f"ONNX weights (opset {OPSET}, dynamic size), gated against PyTorch")
        onnx_err = write_onnx(loaded, tmp / "weights.onnx", size, align)
        weights: dict[str, Any] = {
            "onnx": v0_5.OnnxWeightsDescr(source=tmp / "weights.onnx", opset_version=OPSET)
        }

        say("PyTorch state-dict weights and the architecture source")
        arch_source = standalone_source(loaded.net)
        if arch_source is None:
            notes.append(
                f"no pytorch_state_dict weights: {type(loaded.net).__name__}'s module imports "
                "live-pssr, so its source cannot stand alone"
            )
        else:
            arch_file = tmp / f"{spec.arch.replace('-', '_')}.py"
            arch_file.write_text(arch_source, encoding="utf-8")
            torch.save(
                {k: v.detach().cpu().contiguous() for k, v in loaded.net.state_dict().items()},
                tmp / "weights.pt",
            )
            weights["pytorch_state_dict"] = v0_5.PytorchStateDictWeightsDescr(
                source=tmp / "weights.pt",
                pytorch_version=v0_5.Version(torch.__version__.split("+")[0]),
                architecture=v0_5.ArchitectureFromFileDescr(
                    source=arch_file, callable=type(loaded.net).__name__, kwargs=dict(spec.arch_kwargs)
                ),
            )

        card = loaded.path.with_suffix(".md")
        doc = tmp / "README.md"
        if card.is_file():
            shutil.copyfile(card, doc)
        else:
            doc.write_text(
                f"# {spec.name}\n\nlive-pssr model `{loaded.model_id}` ({spec.arch}, x{spec.upscale}).\n",
                encoding="utf-8",
            )
        with doc.open("a", encoding="utf-8") as f:
            f.write(_PACKAGE_NOTES.format(low=spec.norm_low, high=spec.norm_high))

        say("describing and validating the package (bioimageio.spec)")
        descr = _describe(v0_5, loaded, tmp, size, align, weights)
        summary = descr.validation_summary
        if summary.status not in ("passed", "valid-format"):
            raise ModelFileError(
                f"bioimageio.spec rejects the description of {spec.name}: {summary.status}",
                "report this with the output of `bioimageio validate` on the package",
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        say(f"writing {output}")
        bspec.save_bioimageio_package(descr, output_path=output)
    return ExportResult(
        path=output,
        model_id=loaded.model_id,
        weights=list(weights),
        test_input_shape=test_in.shape,
        test_output_shape=test_out.shape,
        onnx_max_rel_err=onnx_err,
        notes=notes,
    )


_PACKAGE_NOTES = """

## bioimage.io package

- **Input** `input`: raw camera counts, axes batch, {{channel of 1 | time of N frames, oldest first}}, y, x;
  pre-processing: float32, then `scale_range` per frame over y, x with percentiles {low}/{high}
  (live-pssr's normalisation).
- **Output** `output`: the network's output in *normalised units* (0 = the reference frame's {low}th
  percentile, 1 = its {high}th). For intensity units multiply by (p{high} - p{low}) of the reference
  frame and add p{low}, as live-pssr does; bioimage.io post-processing cannot express that.
- Sizes: y and x of `min + n * step` pixels (step = the network's alignment); other sizes: pad
  (replicate) and crop, as live-pssr does.
- Test tensors: simulated microscope frames (live_pssr.sim) enhanced by live-pssr's Enhancer.
- Cite PSSR: Fang et al., Nature Methods 2021, doi:10.1038/s41592-021-01080-z.
"""


def _describe(
    v0_5: Any, model: LoadedModel, tmp: Path, size: int, align: int, weights: dict[str, Any]
) -> Any:
    spec = model.spec
    batch = v0_5.BatchAxis()
    yx = [
        v0_5.SpaceInputAxis(id=v0_5.AxisId(a), size=v0_5.ParameterizedSize(min=2 * align, step=align))
        for a in ("y", "x")
    ]
    second = (
        v0_5.ChannelAxis(channel_names=[v0_5.Identifier("raw")])
        if spec.in_frames == 1
        else v0_5.TimeInputAxis(size=spec.in_frames)
    )
    ipt = v0_5.InputTensorDescr(
        id=v0_5.TensorId("input"),
        description="raw camera frame(s), oldest first",
        axes=[batch, second, *yx],
        test_tensor=v0_5.FileDescr(source=tmp / "test_input.npy"),
        data=v0_5.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[
            v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32")),
            v0_5.ScaleRangeDescr(
                kwargs=v0_5.ScaleRangeKwargs(
                    axes=[v0_5.AxisId("y"), v0_5.AxisId("x")],
                    min_percentile=spec.norm_low,
                    max_percentile=spec.norm_high,
                )
            ),
        ],
    )
    out_yx = [
        v0_5.SpaceOutputAxis(
            id=v0_5.AxisId(a),
            scale=1.0 / spec.upscale,
            size=v0_5.SizeReference(tensor_id=v0_5.TensorId("input"), axis_id=v0_5.AxisId(a)),
        )
        for a in ("y", "x")
    ]
    out = v0_5.OutputTensorDescr(
        id=v0_5.TensorId("output"),
        description="enhanced frame in normalised units (see the documentation)",
        axes=[v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=[v0_5.Identifier("enhanced")]), *out_yx],
        test_tensor=v0_5.FileDescr(source=tmp / "test_output.npy"),
        data=v0_5.IntervalOrRatioDataDescr(type="float32"),
    )
    task = "denoising" if spec.upscale == 1 else f"{spec.upscale}x super-resolution"
    return v0_5.ModelDescr(
        name=spec.name.replace("-", " "),
        description=f"live-pssr {spec.name}: PSSR-style {task} of low-light fluorescence microscopy frames "
        f"({spec.in_frames} frame(s) in).",
        authors=[v0_5.Author(name=a) for a in AUTHORS],
        cite=[v0_5.CiteEntry(text=PSSR_CITATION, doi=v0_5.Doi(PSSR_DOI))],
        license=v0_5.LicenseId(LICENSE),
        documentation=v0_5.FileDescr(source=tmp / "README.md"),
        covers=[v0_5.FileDescr(source=tmp / "cover.png")],
        tags=[
            "pssr",
            "super-resolution" if spec.upscale > 1 else "denoising",
            "fluorescence-light-microscopy",
            "2d",
            "pytorch",
            "onnx",
            "live-pssr",
        ],
        inputs=[ipt],
        outputs=[out],
        weights=v0_5.WeightsDescr(**weights),
        config=v0_5.Config(**{CONFIG_KEY: asdict(spec)}),
    )


__all__ = [
    "AUTHORS",
    "LICENSE",
    "PSSR_DOI",
    "ExportResult",
    "cover_png",
    "export_package",
    "make_test_tensors",
    "standalone_source",
    "write_onnx",
]
