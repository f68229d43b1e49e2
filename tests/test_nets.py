"""Networks: shapes and contracts of fast-sr and pssr-resunet; every shipped model loads and runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from live_pssr.errors import ModelFileError
from live_pssr.nets import ARCHITECTURES, build_net

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "models").glob("*.safetensors"))
EXPECTED_SHIPPED = {"mito-sr4-fast", "mito-sr4-mf", "denoise-fast", "pssr-resunet-sr4"}


@pytest.mark.parametrize(("frames", "scale", "size"), [(1, 4, (32, 32)), (5, 4, (30, 45)), (1, 1, (33, 20))])
def test_fast_sr_shapes(frames: int, scale: int, size: tuple[int, int]) -> None:
    net = build_net("fast-sr", in_frames=frames, upscale=scale, width=8).eval()
    y = net(torch.rand(2, frames, *size))
    assert y.shape == (2, 1, size[0] * scale, size[1] * scale)


def test_fast_sr_residual_is_bilinear_of_reference_frame() -> None:
    """With a zeroed tail the output is exactly the upsampled reference frame (newest or centre)."""
    x = torch.rand(1, 5, 16, 16)
    for ref, idx in ((-1, 4), (2, 2)):
        net = build_net("fast-sr", in_frames=5, upscale=4, width=4, ref_frame=ref).eval()
        torch.nn.init.zeros_(net.tail.weight)
        torch.nn.init.zeros_(net.tail.bias)
        want = F.interpolate(x[:, idx : idx + 1], scale_factor=4, mode="bilinear", align_corners=False)
        torch.testing.assert_close(net(x), want)


@pytest.mark.parametrize("frames", [1, 5])
def test_resunet_forward_shapes(frames: int) -> None:
    net = build_net("pssr-resunet", in_frames=frames, upscale=4, width=0.125).eval()
    with torch.no_grad():
        assert net(torch.rand(2, frames, 32, 32)).shape == (2, 1, 128, 128)
        assert net(torch.rand(1, frames, 20, 27)).shape == (1, 1, 80, 108)  # padded to /32 and cropped


def test_resunet_full_width_is_the_published_size() -> None:
    """Width 1.0 has the ResNet-34 DynamicUnet's ~41 M parameters; 0.25 is 16x smaller."""
    full = sum(p.numel() for p in build_net("pssr-resunet", width=1.0).parameters())
    small = sum(p.numel() for p in build_net("pssr-resunet", width=0.25).parameters())
    assert 40e6 < full < 43e6
    assert 14 < full / small < 18


def test_resunet_layout_and_attention() -> None:
    from live_pssr.nets.resunet import SelfAttention

    net = build_net("pssr-resunet", width=0.25)
    assert [len(s) for s in (net.layer1, net.layer2, net.layer3, net.layer4)] == [3, 4, 6, 3]
    attn = [m for m in net.modules() if isinstance(m, SelfAttention)]
    assert len(attn) == 1  # second decoder block only, as fastai
    x = torch.rand(2, attn[0].value.in_channels, 8, 8)
    torch.testing.assert_close(attn[0](x), x)  # gamma = 0 at init: identity
    no_attn = build_net("pssr-resunet", width=0.25, self_attention=False)
    assert not any(isinstance(m, SelfAttention) for m in no_attn.modules())


def test_icnr_pixel_shuffle_starts_without_checkerboard() -> None:
    """ICNR init: the four sub-pixels of each shuffled 2x2 block are equal (before the blur)."""
    from live_pssr.nets.resunet import PixelShuffleICNR

    ps = PixelShuffleICNR(8, 4, blur=False)
    y = ps(torch.rand(1, 8, 6, 6))
    blocks = y.unfold(2, 2, 2).unfold(3, 2, 2)  # (1, 4, 6, 6, 2, 2)
    torch.testing.assert_close(blocks, blocks[..., :1, :1].expand_as(blocks))


def test_subsampled_shortcut_equals_strided_conv() -> None:
    from live_pssr.nets.resunet import BasicBlock

    blk = BasicBlock(8, 16, stride=2).eval()
    x = torch.rand(2, 8, 20, 20)
    conv = blk.down[0]
    torch.testing.assert_close(blk.down[0](x[..., ::2, ::2]), F.conv2d(x, conv.weight, stride=2))


def test_resunet_trains_in_channels_last() -> None:
    """One CPU training step in channels-last (the trainer's format) runs and gives finite grads."""
    net = build_net("pssr-resunet", width=0.125).to(memory_format=torch.channels_last)
    x = torch.rand(4, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    net(x).square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_unknown_architecture_and_bad_kwargs() -> None:
    assert {"fast-sr", "pssr-resunet"} <= set(ARCHITECTURES)
    with pytest.raises(ModelFileError, match="unknown network architecture"):
        build_net("no-such-net")
    with pytest.raises(ModelFileError, match="does not accept"):
        build_net("pssr-resunet", depth=3)


def test_all_expected_models_ship() -> None:
    assert EXPECTED_SHIPPED <= {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_loads_and_runs(path: Path) -> None:
    from live_pssr.enhancer import Enhancer
    from live_pssr.modelio import load_model

    assert path.stat().st_size < 20e6
    assert path.with_suffix(".md").is_file(), "every shipped model has a model card"
    model = load_model(path)
    spec = model.spec
    assert spec.training.get("train_time_s", 0) > 0 and spec.training.get("config")
    enh = Enhancer(model, out_dtype=np.float32)
    rng = np.random.default_rng(0)
    for _ in range(spec.in_frames + 1):
        frame = (100 + rng.poisson(20, (32, 32))).astype(np.uint16)
        out = enh.enhance(frame)
    assert out.shape == (32 * spec.upscale, 32 * spec.upscale)
    assert np.isfinite(out).all()


# -- fast-sr with NAFNet-style simple-gate blocks ------------------------------------------------


def _conv_macs(net: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of every convolution for one input of ``shape`` (hooks on a real forward)."""
    total = 0

    def hook(mod: torch.nn.Conv2d, _inp: object, out: torch.Tensor) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        total += out.numel() * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(torch.rand(*shape))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize(("frames", "scale", "size"), [(1, 4, (32, 32)), (5, 4, (30, 45)), (1, 1, (33, 20))])
def test_fast_sr_gate_shapes_and_upscale(frames: int, scale: int, size: tuple[int, int]) -> None:
    net = build_net("fast-sr", in_frames=frames, upscale=scale, width=8, block="gate").eval()
    y = net(torch.rand(2, frames, *size))
    assert y.shape == (2, 1, size[0] * scale, size[1] * scale)


def test_fast_sr_gate_blocks_start_as_identity_and_learn() -> None:
    from live_pssr.nets.fast_sr import _GateBlock

    blk = _GateBlock(6)
    x = torch.rand(2, 6, 10, 10)
    torch.testing.assert_close(blk(x), x)  # beta = 0 at init
    with torch.no_grad():
        blk.beta.fill_(1.0)
    a, b = blk.c1(x).chunk(2, dim=1)
    torch.testing.assert_close(blk(x), x + blk.c2(a * b))
    blk.beta.data.zero_()
    blk(x).square().sum().backward()
    assert blk.beta.grad is not None and blk.beta.grad.abs().sum() > 0  # the gate path gets a gradient


@pytest.mark.parametrize("width", [8, 24, 32])
def test_fast_sr_gate_parameter_count(width: int) -> None:
    """Each gate block has 9c^2 + 2c more parameters than a residual block of c channels."""
    res = sum(p.numel() for p in build_net("fast-sr", width=width).parameters())
    gate = sum(p.numel() for p in build_net("fast-sr", width=width, block="gate").parameters())
    chans = [width, 2 * width, 4 * width, 2 * width, width]  # enc0, enc1, mid, dec1, dec0
    assert gate - res == sum(9 * c * c + 2 * c for c in chans)
    if width == 24:
        assert res == 349_072  # mito-sr4-fast's size (its card says 0.349 M)


def test_fast_sr_gate_costs_under_4x_the_live_default() -> None:
    base = _conv_macs(build_net("fast-sr", width=24).eval(), (1, 1, 64, 64))
    for width in (24, 32):
        ratio = _conv_macs(build_net("fast-sr", width=width, block="gate").eval(), (1, 1, 64, 64)) / base
        assert 1.0 < ratio < 4.0, (width, ratio)


def test_fast_sr_gate_bad_block_is_refused() -> None:
    with pytest.raises(ValueError, match="block must be one of"):
        build_net("fast-sr", block="transformer")


@pytest.mark.parametrize("engine_name", ["onnxruntime", "openvino"])
def test_fast_sr_gate_exports_through_the_engines_gate(
    engine_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX export, the CPU runtime and the correctness gate accept the gated network."""
    import importlib.util

    if importlib.util.find_spec(engine_name) is None:
        pytest.skip(f"{engine_name} not installed")
    from live_pssr.engines import make_engine
    from live_pssr.engines.gate import calibration_batch, check_engine
    from live_pssr.modelio import ModelSpec, load_model, save_model

    monkeypatch.setenv("LIVE_PSSR_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    kw = {"in_frames": 1, "upscale": 4, "width": 8, "block": "gate"}
    net = build_net("fast-sr", **kw)
    with torch.no_grad():  # non-zero gates, so the gate path is in the graph's output
        for m in net.modules():
            if hasattr(m, "beta"):
                m.beta.uniform_(0.5, 1.0)
    spec = ModelSpec("gate-sr4", "fast-sr", kw, upscale=4, in_frames=1)
    model = load_model(save_model(tmp_path / "gate-sr4.safetensors", net, spec))
    engine = make_engine(engine_name, model)
    batch = calibration_batch(1, (48, 64))
    engine.prepare(batch.shape)
    res = check_engine(engine, model, batch)
    assert res.passed, res.reason


def _card_score(card: Path, data: str, metric: str) -> float:
    """The model's value in the card's evaluation row ``DATA: METRIC``."""
    for line in card.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == f"{data}: {metric}":
            return float(cells[1])
    raise AssertionError(f"{card.name} has no '{data}: {metric}' row")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_model_reproduces_its_card(path: Path, real_data) -> None:
    """Each shipped file, evaluated again on its card's first held-out set, gives the card's score."""
    from live_pssr.evaluate import evaluate
    from live_pssr.modelio import load_model

    model = load_model(path)
    data = "fmd-holdout" if model.spec.upscale == 1 else "mito-holdout"
    want = _card_score(path.with_suffix(".md"), data, "psnr_norm")
    got = evaluate(model, data, progress=False, consistency=False)["summary"]["model"]["psnr_norm"]
    assert abs(got - want) <= 0.006, (got, want)  # the card rounds to 4 digits (e.g. 28.72 dB)
