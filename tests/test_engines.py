"""Engines: every backend available here against fp32 eager, caches, auto fallback, tiling, CUDA path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from live_pssr.engines import (
    ENGINES,
    AutoTileEngine,
    CudaStreamEngine,
    TorchEngine,
    check_engine,
    choose_engine,
    make_engine,
    select_engine,
)
from live_pssr.engines.capabilities import cpu_has_native_bf16, module_available
from live_pssr.engines.fold import fold_batchnorm
from live_pssr.engines.gate import PRECISION_BOUNDS, calibration_batch, reference_output, relative_error
from live_pssr.engines.onnx_export import onnx_path
from live_pssr.errors import EngineUnavailableError
from live_pssr.modelio import LoadedModel, ModelSpec, load_model, save_model
from live_pssr.nets import FastSRNet

CUDA = torch.cuda.is_available()
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")

CPU_ENGINES = [
    "torch",
    pytest.param("torch:bf16", marks=pytest.mark.skipif(not cpu_has_native_bf16(), reason="no native bf16")),
    pytest.param("onnxruntime", marks=pytest.mark.skipif(not module_available("onnxruntime"),
                                                         reason="onnxruntime not installed")),
    pytest.param("openvino", marks=pytest.mark.skipif(not module_available("openvino"),
                                                      reason="openvino not installed")),
    pytest.param("openvino:bf16", marks=pytest.mark.skipif(
        not (module_available("openvino") and cpu_has_native_bf16()), reason="no native bf16")),
    "compile",
]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LIVE_PSSR_CACHE", str(cache))
    return cache


def _save(tmp_path: Path, name: str, **kw: int) -> LoadedModel:
    torch.manual_seed(1)
    net = FastSRNet(**kw)
    spec = ModelSpec(name, "fast-sr", kw, upscale=kw.get("upscale", 4), in_frames=kw.get("in_frames", 1))
    return load_model(save_model(tmp_path / f"{name}.safetensors", net, spec))


@pytest.fixture
def sr_model(tmp_path: Path) -> LoadedModel:
    """A small 4x FastSRNet (width 8) with fixed random weights, as a real model file."""
    return _save(tmp_path, "small-sr4", width=8)


def _bound(engine: object) -> float:
    return PRECISION_BOUNDS[engine.precision]  # type: ignore[attr-defined]


# -- every engine against eager fp32 ------------------------------------------------------------

@pytest.mark.parametrize("name", CPU_ENGINES)
def test_engine_matches_eager(name: str, sr_model: LoadedModel) -> None:
    engine = make_engine(name, sr_model)
    assert engine.device == "cpu" and engine.precision == (name.split(":")[1] if ":" in name else "fp32")
    shape = (1, 1, 64, 64)
    engine.prepare(shape)
    rng = np.random.default_rng(0)
    random = rng.uniform(-0.2, 1.2, shape).astype(np.float32)
    out = engine.run(random)
    assert out.shape == (1, 1, 256, 256) and out.dtype == np.float32
    assert relative_error(out, reference_output(sr_model, random)) <= _bound(engine)
    res = check_engine(engine, sr_model, calibration_batch(1, (64, 64)))
    assert res.passed, res.reason


@pytest.mark.parametrize("name", ["torch", "onnxruntime", "openvino"])
def test_engine_matches_eager_on_real_image(name: str, sr_model: LoadedModel, real_data: Path) -> None:
    import tifffile

    if name != "torch" and not module_available(name):
        pytest.skip(f"{name} not installed")
    img = tifffile.imread(real_data / "BPAE_mito_bian.tif")[200:280, 300:380]
    batch = calibration_batch(1, img.shape, frame=img)
    engine = make_engine(name, sr_model)
    engine.prepare(batch.shape)
    res = check_engine(engine, sr_model, batch)
    assert res.passed, res.reason
    assert res.max_rel_err < 1e-4


def test_multiframe_batch_through_openvino(tmp_path: Path) -> None:
    model = _save(tmp_path, "mf-sr2", in_frames=3, upscale=2, width=8)
    engine = make_engine("openvino", model)
    engine.prepare((1, 3, 32, 48))
    batch = calibration_batch(3, (32, 48), batch=2)  # a batch size it was not prepared for
    out = engine.run(batch)
    assert out.shape == (2, 1, 64, 96)
    assert relative_error(out, reference_output(model, batch)) <= 1e-4


def test_frame_shape_change_reprepares(sr_model: LoadedModel, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine("onnxruntime", sr_model)
    engine.prepare((1, 1, 64, 64))
    batch = calibration_batch(1, (40, 52))
    with caplog.at_level("INFO", logger="live_pssr.engines"):
        out = engine.run(batch)
    assert "frame shape changed" in caplog.text
    assert relative_error(out, reference_output(sr_model, batch)) <= 1e-4


def test_unknown_engine_and_bad_precision(sr_model: LoadedModel) -> None:
    with pytest.raises(EngineUnavailableError, match="unknown engine"):
        make_engine("nope", sr_model)
    with pytest.raises(EngineUnavailableError, match="fp32 only"):
        make_engine("onnxruntime:fp16", sr_model)
    with pytest.raises(EngineUnavailableError, match="fp16 on the CPU"):
        make_engine("torch:fp16", sr_model, device="cpu")


# -- TensorRT: clear errors here, real tests on a GPU -------------------------------------------

@pytest.mark.skipif(CUDA, reason="checks the no-GPU error")
def test_tensorrt_without_gpu_is_a_clear_error(sr_model: LoadedModel) -> None:
    with pytest.raises(EngineUnavailableError) as err:
        make_engine("tensorrt", sr_model, device="cuda")
    assert "GPU" in err.value.message and "auto" in err.value.hint
    with pytest.raises(EngineUnavailableError, match="NVIDIA GPUs only"):
        make_engine("tensorrt", sr_model, device="cpu")
    with pytest.raises(EngineUnavailableError):
        select_engine(sr_model, (64, 64), name="tensorrt")


def test_torch_tensorrt_missing_or_mismatched(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from live_pssr.engines.tensorrt_engine import check_versions, import_torch_tensorrt

    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # makes the import fail
    with pytest.raises(EngineUnavailableError, match="not installed") as err:
        import_torch_tensorrt()
    assert "docs/gpu.md" in err.value.hint
    with pytest.raises(EngineUnavailableError, match="built for torch 2.4"):
        check_versions("2.5.1+cu124", "2.4.0")
    check_versions("2.5.1+cu124", "2.5.0")


# -- caches ------------------------------------------------------------------------------------

def test_onnx_export_cache_hit_miss_and_corrupt_file(sr_model: LoadedModel, tmp_path: Path) -> None:
    cache = tmp_path / "exports"
    first = make_engine("openvino", sr_model, cache=cache)
    first.prepare((1, 1, 64, 64))
    assert first.cache_hit is False
    path = onnx_path(sr_model, (1, 64, 64), directory=cache)
    assert path.is_file()
    second = make_engine("onnxruntime", sr_model, cache=cache)
    second.prepare((1, 1, 64, 64))
    assert second.cache_hit is True
    path.write_bytes(b"not an onnx file")  # corrupt cache entry: rebuilt, never a crash
    third = make_engine("onnxruntime", sr_model, cache=cache)
    third.prepare((1, 1, 64, 64))
    assert third.cache_hit is False and path.stat().st_size > 1000
    assert check_engine(third, sr_model, calibration_batch(1, (64, 64))).passed


def _only(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
    """Restrict ``auto`` to a few cheap CPU candidates so the test stays fast."""
    import live_pssr.engines.select as sel

    monkeypatch.setattr(sel, "candidates", lambda device, thorough=False: [(n, "cpu", "fp32") for n in names])


def test_auto_decision_cache_hit_miss_corrupt(sr_model: LoadedModel, monkeypatch: pytest.MonkeyPatch,
                                              _cache: Path) -> None:
    _only(monkeypatch, ["torch", "onnxruntime"])
    first = choose_engine(sr_model, (48, 64), budget_s=0.05)
    assert not first.cached and {t.status for t in first.trials} == {"ok"}
    files = list((_cache / "decisions").glob("*.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text())["engine"] == first.engine.name
    second = choose_engine(sr_model, (48, 64), budget_s=0.05)
    assert second.cached and second.engine.name == first.engine.name
    files[0].write_text("{ truncated")
    third = choose_engine(sr_model, (48, 64), budget_s=0.05)
    assert not third.cached and third.engine.name in ("torch", "onnxruntime")
    assert json.loads(files[0].read_text())["engine"] == third.engine.name  # rewritten
    other_shape = choose_engine(sr_model, (32, 32), budget_s=0.05)
    assert not other_shape.cached


class _NaNEngine(TorchEngine):
    """A real engine whose output is corrupted (stands in for a miscompiled backend)."""

    name = "onnxruntime"

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = super().run(batch)
        out[..., 0, 0] = np.nan
        return out


def test_auto_falls_back_when_backends_break(sr_model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    _only(monkeypatch, ["openvino", "onnxruntime", "torch"])

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated broken backend")

    monkeypatch.setitem(ENGINES, "openvino", broken)
    monkeypatch.setitem(ENGINES, "onnxruntime", _NaNEngine)
    sel = choose_engine(sr_model, (32, 32), budget_s=0.05, use_cache=False)
    status = {t.engine: t.status for t in sel.trials}
    assert status == {"openvino": "error", "onnxruntime": "failed gate", "torch": "ok"}
    assert "NaN" in sel.trials[1].note and "simulated" in sel.trials[0].note
    assert sel.engine.name == "torch"
    assert "failed gate" in sel.table()
    with pytest.raises(EngineUnavailableError, match="correctness|failed gate"):
        select_engine(sr_model, (32, 32), name="onnxruntime")
    monkeypatch.setitem(ENGINES, "torch", broken)
    with pytest.raises(EngineUnavailableError, match="no engine could run"):
        choose_engine(sr_model, (32, 32), budget_s=0.05, use_cache=False)


def test_auto_picks_working_engine_end_to_end(sr_model: LoadedModel) -> None:
    """The real candidate list of this machine (no mocks), then an Enhancer on camera frames."""
    from live_pssr.enhancer import Enhancer

    engine = select_engine(sr_model, (48, 64), budget_s=0.05)
    assert engine.selection.trials and any(t.status == "ok" for t in engine.selection.trials)
    enhancer = Enhancer(sr_model, engine)
    frame = (100 + np.random.default_rng(0).poisson(200, (48, 64))).astype(np.uint16)
    out = enhancer.enhance(frame)
    ref = Enhancer(sr_model, "torch").enhance(frame)
    assert out.shape == (192, 256) and out.dtype == np.uint16
    tol = 2 + PRECISION_BOUNDS[engine.precision] * float(ref.max() - ref.min())
    assert np.abs(out.astype(float) - ref.astype(float)).max() <= tol


# -- BatchNorm folding ----------------------------------------------------------------------------

def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 4, 3, padding=1), nn.BatchNorm2d(4))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


def test_fold_batchnorm_exact() -> None:
    net = _bn_net()
    x = torch.rand(2, 1, 16, 16)
    folded, n = fold_batchnorm(net, x[:1])
    assert n == 2 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # original untouched
    with torch.no_grad():
        assert torch.allclose(folded(x), net(x), atol=1e-5)


class _SharedOutput(nn.Module):
    """conv output feeds a BN *and* a skip: folding would change the skip, so it must not happen."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 1, 3, padding=1), nn.BatchNorm2d(1)
        self.bn.running_mean.fill_(0.5)
        self.bn.running_var.fill_(4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_fold_batchnorm_refuses_unsafe_fold() -> None:
    net = _SharedOutput().eval()
    same, n = fold_batchnorm(net, torch.rand(1, 1, 8, 8))
    assert n == 0 and same is net


def test_fold_batchnorm_leaves_a_batch_statistics_norm_alone() -> None:
    """A BatchNorm without running statistics normalises with the batch's own: not foldable."""
    net = _bn_net()
    net[4] = nn.BatchNorm2d(4, track_running_stats=False).eval()
    x = torch.rand(2, 1, 16, 16)
    folded, n = fold_batchnorm(net, x[:1])
    assert n == 1 and isinstance(folded[1], nn.Identity) and isinstance(folded[4], nn.BatchNorm2d)
    with torch.no_grad():
        assert torch.allclose(folded(x), net(x), atol=1e-5)


# -- tiling and out-of-memory ---------------------------------------------------------------------

def test_tiled_engine_equals_untiled(sr_model: LoadedModel) -> None:
    batch = calibration_batch(1, (150, 136))
    ref = reference_output(sr_model, batch)
    inner = make_engine("openvino", sr_model)
    tiled = AutoTileEngine(inner, sr_model, tile=120, overlap=56)
    tiled.prepare(batch.shape)
    assert tiled.tiling and inner.input_shape == (1, 1, 118, 120)  # one shape for all tiles
    out = tiled.run(batch)
    assert relative_error(out, ref) <= 1e-5
    small = batch[..., :100, :100]  # frames that fit go through whole
    assert relative_error(tiled.run(small), reference_output(sr_model, small)) <= 1e-5


def test_tile_overlap_is_measured_and_cached(sr_model: LoadedModel, _cache: Path) -> None:
    from live_pssr.engines.tiled import model_overlap

    overlap, align = model_overlap(sr_model)
    assert (overlap, align) == (56, 4)  # 2 x receptive field 28 of FastSRNet, 2 stride-2 levels
    assert len(list((_cache / "fields").glob("*.json"))) == 1


class _OOMBelow:
    """Wraps a real engine; raises CUDA out-of-memory for tiles larger than ``limit`` pixels."""

    def __init__(self, inner: TorchEngine, limit: int) -> None:
        self.inner, self.limit = inner, limit
        self.name, self.device, self.precision = "torch", "cpu", "fp32"

    def prepare(self, shape: tuple[int, int, int, int]) -> None:
        self.inner.prepare(shape)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if max(batch.shape[-2:]) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.run(batch)


def test_out_of_memory_retries_with_smaller_tiles(sr_model: LoadedModel,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    batch = calibration_batch(1, (160, 160))
    eng = AutoTileEngine(_OOMBelow(TorchEngine(sr_model), 128), sr_model, overlap=56, min_tile=64)
    eng.prepare(batch.shape)
    with caplog.at_level("WARNING", logger="live_pssr.engines"):
        out = eng.run(batch)
    assert eng.tile == 80 and "out of memory" in caplog.text
    assert relative_error(out, reference_output(sr_model, batch)) <= 1e-5
    hopeless = AutoTileEngine(_OOMBelow(TorchEngine(sr_model), 8), sr_model, overlap=24, min_tile=64)
    with pytest.raises(EngineUnavailableError, match="out of memory") as err:
        hopeless.run(batch)
    assert "smaller model" in err.value.hint


# -- the CUDA data path (runs synchronously on the CPU here; overlapped with CUDA) -----------------

def _stream_engine(model: LoadedModel, device: str) -> CudaStreamEngine:
    inner = TorchEngine(model, device=device)
    eng = CudaStreamEngine(inner, depth=2, max_batch=3)
    eng.prepare((1, 1, 32, 40))
    return eng


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, gpu])])
def test_stream_engine_float_and_raw_paths(sr_model: LoadedModel, device: str) -> None:
    from live_pssr.normalize import denormalize, normalize, percentile_range

    eng = _stream_engine(sr_model, device)
    batch = calibration_batch(1, (32, 40), batch=3)
    tickets = [eng.submit(batch[i : i + 1]) for i in range(3)]  # depth 2: the first gets parked
    outs = [eng.result(t) for t in tickets]
    ref = reference_output(sr_model, batch)
    for i, o in enumerate(outs):
        assert relative_error(o, ref[i : i + 1]) <= 1e-4
    with pytest.raises(KeyError):
        eng.result(tickets[0])
    assert relative_error(eng.run(batch), ref) <= 1e-4  # one call, three frames
    rng = np.random.default_rng(3)
    frames = (100 + rng.poisson(300, (2, 1, 32, 40))).astype(np.uint16)
    ranges = [percentile_range(f[0]) for f in frames]
    lo, hi = np.array([r[0] for r in ranges]), np.array([r[1] for r in ranges])
    out16 = eng.run_raw(frames, lo, hi)
    assert out16.dtype == np.uint16 and out16.shape == (2, 1, 128, 160)
    for i in range(2):
        x = normalize(frames[i, 0], lo[i], hi[i])[None, None]
        expect = denormalize(reference_output(sr_model, x)[0, 0], lo[i], hi[i], np.uint16)
        assert np.abs(out16[i, 0].astype(int) - expect.astype(int)).max() <= 1
    outf = eng.run_raw(frames, lo, hi, out_dtype=np.float32)
    assert outf.dtype == np.float32 and np.abs(outf - out16).max() <= 0.5 + 1e-3


# -- GPU-only (skipped without CUDA; must pass on a GPU machine) ------------------------------------

@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("name", ["torch:fp16", "torch:fp32"])
def test_gpu_eager_engines(name: str, sr_model: LoadedModel) -> None:
    engine = make_engine(name, sr_model, device="cuda")
    engine.prepare((1, 1, 64, 64))
    res = check_engine(engine, sr_model, calibration_batch(1, (64, 64)))
    assert res.passed, res.reason


@pytest.mark.gpu
@gpu
def test_gpu_tensorrt_engine_and_cache(sr_model: LoadedModel, tmp_path: Path) -> None:
    if not module_available("torch_tensorrt"):
        pytest.skip("torch-tensorrt not installed")
    first = make_engine("tensorrt", sr_model, device="cuda", cache=tmp_path / "trt")
    first.prepare((1, 1, 64, 64))
    assert first.cache_hit is False
    res = check_engine(first, sr_model, calibration_batch(1, (64, 64)))
    assert res.passed, res.reason
    second = make_engine("tensorrt", sr_model, device="cuda", cache=tmp_path / "trt")
    second.prepare((1, 1, 64, 64))
    assert second.cache_hit is True
    assert check_engine(second, sr_model, calibration_batch(1, (64, 64))).passed
    second.cache_path((1, 1, 64, 64)).write_bytes(b"corrupt")
    third = make_engine("tensorrt", sr_model, device="cuda", cache=tmp_path / "trt")
    third.prepare((1, 1, 64, 64))
    assert third.cache_hit is False


@pytest.mark.gpu
@gpu
def test_gpu_auto_selects_a_gpu_engine(sr_model: LoadedModel) -> None:
    engine = select_engine(sr_model, (64, 64), budget_s=0.2)
    assert engine.device.startswith("cuda")
    assert check_engine(engine, sr_model, calibration_batch(1, (64, 64))).passed


# -- live-pssr bench engines ----------------------------------------------------------------------

def test_bench_engines_command(tmp_path: Path, sr_model: LoadedModel) -> None:
    from typer.testing import CliRunner

    from live_pssr.cli import app

    out = tmp_path / "engines.json"
    result = CliRunner().invoke(app, ["bench", "engines", "--models", str(sr_model.path), "--sizes", "32",
                                      "--quick", "--engines", "eager,torch,onnxruntime,tensorrt",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    by = {(r["engine"], r["precision"]): r for r in rows}
    assert {("eager", "fp32"), ("torch", "fp32"), ("onnxruntime", "fp32")} <= set(by)
    for key in [("eager", "fp32"), ("torch", "fp32"), ("onnxruntime", "fp32")]:
        r = by[key]
        assert r["status"] == "ok" and r["input_shape"] == [1, 1, 32, 32] and r["model"] == sr_model.model_id
        assert r["fps"] > 0 and r["p50_ms"] <= r["p99_ms"] and r["max_rel_err"] <= 1e-3
        assert r["gflop"] > 0 and r["gflops"] > 0 and r["sgemm_gflops"] > 0 and r["pct_sgemm"] > 0
    assert by[("eager", "fp32")]["vs_eager"] == 1.0
    if not CUDA:
        assert by[("tensorrt", "fp16")]["status"] == "unavailable"
    assert sum(bool(r["auto"]) for r in rows) == 1
    assert "auto would pick" in result.output


def test_flop_estimate_matches_hand_count() -> None:
    from live_pssr.bench.engines import estimate

    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 1))
    gflop, largest = estimate(net, (1, 1, 32, 32))
    assert gflop * 1e9 == pytest.approx(2 * 32 * 32 * (8 * 9 + 16 * 8))
    assert largest == 16 * 32 * 32 * 4


def test_select_engine_with_tiles_serves_large_frames(sr_model: LoadedModel) -> None:
    from live_pssr.enhancer import Enhancer

    engine = select_engine(sr_model, (150, 136), name="openvino", tile=120)
    assert isinstance(engine, AutoTileEngine) and engine.inner.input_shape == (1, 1, 118, 120)
    batch = calibration_batch(1, (150, 136))
    assert relative_error(engine.run(batch), reference_output(sr_model, batch)) <= 1e-5
    frame = (100 + np.random.default_rng(1).poisson(150, (150, 136))).astype(np.uint16)
    out = Enhancer(sr_model, engine).enhance(frame)
    assert out.shape == (600, 544) and engine.inner.input_shape == (1, 1, 118, 120)  # no re-prepare
