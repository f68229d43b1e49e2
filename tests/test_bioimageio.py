"""bioimage.io export and import with the real bioimageio.spec and bioimageio.core (skipped without them).

Every shipped model is exported through the ``export`` command (typer CliRunner) with its
bioimageio.core ``test_model`` run; packages are loaded back through ``load_model`` and run by the
ONNX Runtime engine against the original model; incompatible packages give a ModelFileError.
"""

from __future__ import annotations

import shutil
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.version import Version

pytest.importorskip("bioimageio.core", reason="bioimageio.core is not installed (the [bioimageio] extra)")
if Version(metadata.version("bioimageio.spec")) < Version("0.5.14") and Version(
    metadata.version("pydantic")
) >= Version("2.14"):
    pytest.skip(
        f"bioimageio.spec {metadata.version('bioimageio.spec')} cannot serialise models with pydantic "
        f"{metadata.version('pydantic')} (fixed in spec 0.5.14; bioimageio.core 0.11 pins 0.5.12): "
        "install the [bioimageio] extra's pins (pydantic<2.14)",
        allow_module_level=True,
    )

import typer  # noqa: E402
import yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from live_pssr.bioimageio import export_package, load_package  # noqa: E402
from live_pssr.bioimageio.importer import check_package, failures, run_test_model  # noqa: E402
from live_pssr.commands.export import command  # noqa: E402
from live_pssr.engines.gate import PRECISION_BOUNDS, relative_error, synthetic_frame  # noqa: E402
from live_pssr.enhancer import Enhancer, build_enhancer  # noqa: E402
from live_pssr.errors import ModelFileError  # noqa: E402
from live_pssr.modelio import available_models, load_model  # noqa: E402

SHIPPED = ["mito-sr4-fast", "mito-sr4-mf", "denoise-fast", "pssr-resunet-sr4"]
app = typer.Typer()
app.command()(command)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {}


def _export(packages: dict[str, Path], tmp: Path, name: str) -> Path:
    if name not in packages:
        out = tmp / f"{name}.zip"
        res = CliRunner().invoke(app, [name, "--format", "bioimageio", "-o", str(out), "--test-size", "32"])
        assert res.exit_code == 0, res.output + repr(res.exception)
        assert "bioimageio test passed" in res.output
        packages[name] = out
    return packages[name]


def test_every_shipped_model_is_covered():
    assert set(SHIPPED) <= set(available_models())


@pytest.mark.parametrize("name", SHIPPED)
def test_export_passes_bioimageio_test(name, packages, tmp_path_factory):
    pkg = _export(packages, tmp_path_factory.getbasetemp(), name)
    with zipfile.ZipFile(pkg) as z:
        names = set(z.namelist())
        rdf = yaml.safe_load(z.read("rdf.yaml"))
    assert {
        "weights.onnx",
        "weights.pt",
        "cover.png",
        "README.md",
        "test_input.npy",
        "test_output.npy",
    } <= names
    assert set(rdf["weights"]) == {"onnx", "pytorch_state_dict"}
    assert rdf["cite"][0]["doi"] == "10.1038/s41592-021-01080-z"
    pre = next(p for p in rdf["inputs"][0]["preprocessing"] if p["id"] == "scale_range")
    assert pre["kwargs"]["min_percentile"] == 1.0
    assert pre["kwargs"]["max_percentile"] == 99.8
    spec = load_model(name).spec
    assert rdf["config"]["live_pssr"]["arch"] == spec.arch


def test_bioimageio_core_rejects_a_wrong_test_output(packages, tmp_path_factory, tmp_path):
    """The check can fail: a package whose test output is not what the model predicts does not pass."""
    pkg = _export(packages, tmp_path_factory.getbasetemp(), "mito-sr4-fast")
    folder = tmp_path / "pkg"
    with zipfile.ZipFile(pkg) as z:
        z.extractall(folder)
    wrong = np.load(folder / "test_output.npy")
    np.save(folder / "test_output.npy", np.flip(wrong, axis=-1).copy())
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    rdf["outputs"][0]["test_tensor"].pop("sha256", None)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    summary = run_test_model(folder / "rdf.yaml")
    assert summary.status != "passed"
    assert any(
        "reproduce" in f.lower() or "test output" in f.lower() or "output" in f.lower()
        for f in failures(summary)
    )
    with pytest.raises(ModelFileError, match="test of"):
        check_package(folder / "rdf.yaml")


@pytest.mark.parametrize("name", ["mito-sr4-fast", "mito-sr4-mf"])
def test_round_trip_through_load_model(name, packages, tmp_path_factory):
    pkg = _export(packages, tmp_path_factory.getbasetemp(), name)
    imported = load_model(str(pkg))  # what --model PKG.zip does
    original = load_model(name)
    assert (imported.spec.upscale, imported.spec.in_frames) == (
        original.spec.upscale,
        original.spec.in_frames,
    )
    shape = (44, 52)  # not a multiple of the net's alignment: padded and cropped by the imported net
    frames = [synthetic_frame(shape, seed=s) for s in range(original.spec.in_frames)]
    ours = build_enhancer(imported, shape, engine="onnxruntime")  # gated against the package's own graph
    assert ours.engine.name == "onnxruntime"
    ref = Enhancer(original, engine="torch", out_dtype=np.float32)
    ours.out_dtype = np.dtype(np.float32)
    a, b = ours.enhance_window(frames), ref.enhance_window(frames)
    assert a.shape == b.shape == (shape[0] * 4, shape[1] * 4)
    assert relative_error(a, b) <= PRECISION_BOUNDS["fp32"]


def _edited(packages, tmp_path_factory, tmp_path: Path, edit) -> Path:
    pkg = _export(packages, tmp_path_factory.getbasetemp(), "mito-sr4-fast")
    folder = tmp_path / "pkg"
    with zipfile.ZipFile(pkg) as z:
        z.extractall(folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    edit(rdf)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    return folder


def _no_onnx(rdf):
    del rdf["weights"]["onnx"]


def _zscore(rdf):
    rdf["inputs"][0]["preprocessing"] = [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}]


def _three_d(rdf):
    ax = rdf["inputs"][0]["axes"]
    ax.insert(2, {"type": "space", "id": "z", "size": {"min": 4, "step": 4}})


def _two_inputs(rdf):
    second = dict(rdf["inputs"][0], id="other")
    rdf["inputs"].append(second)


@pytest.mark.parametrize(
    ("edit", "message"),
    [(_no_onnx, "no ONNX weights"), (_zscore, "pre-processing"), (_three_d, "2-D"), (_two_inputs, "2 input")],
)
def test_incompatible_packages_are_clear_errors(edit, message, packages, tmp_path_factory, tmp_path):
    folder = _edited(packages, tmp_path_factory, tmp_path, edit)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(folder)
    assert info.value.hint


def test_not_a_package_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a readable bioimage.io"):
        load_model(bad)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_package(tmp_path / "missing.zip")


def test_export_refuses_a_non_zip_name(tmp_path):
    with pytest.raises(ModelFileError, match=r"\.zip"):
        export_package("denoise-fast", tmp_path / "pkg.tar")
    res = CliRunner().invoke(app, ["denoise-fast", "-o", str(tmp_path / "pkg.tar")])
    assert res.exit_code != 0
    shutil.rmtree(tmp_path, ignore_errors=True)
