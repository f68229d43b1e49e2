"""Model files: safe loading, round trip, and a clear error for every bad model file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live_pssr.enhancer import Enhancer
from live_pssr.errors import ModelFileError
from live_pssr.modelio import (
    ModelSpec,
    check_input_channels,
    load_model,
    read_spec,
    resolve_model,
    save_model,
)
from live_pssr.nets import FastSRNet


def test_round_trip_is_bit_exact(tmp_path, tiny_model):
    x = torch.rand(1, 1, 16, 20)
    save_model(tmp_path / "copy.safetensors", tiny_model.net, tiny_model.spec)
    again = load_model(tmp_path / "copy.safetensors")
    with torch.inference_mode():
        assert torch.equal(tiny_model.net(x), again.net(x))
    assert again.spec == tiny_model.spec and again.sha256 == tiny_model.sha256
    assert again.model_id.startswith("tiny-sr4@")


def test_half_precision_file_loads_as_fp32(tmp_path, tiny_model):
    save_model(tmp_path / "h.safetensors", tiny_model.net, tiny_model.spec, half=True)
    m = load_model(tmp_path / "h.safetensors")
    assert all(p.dtype == torch.float32 for p in m.net.parameters())
    assert (tmp_path / "h.safetensors").stat().st_size < tiny_model.path.stat().st_size


def test_missing_model(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(ModelFileError, match="(?s)no model named 'nope'.*available models"):
        resolve_model("nope")


def test_corrupt_model_file(tmp_path, tiny_model_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(tiny_model_path.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="corrupt") as err:
        load_model(bad)
    assert "retrain" in err.value.hint
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="corrupt"):
        read_spec(junk)


def test_pickle_files_are_never_loaded(tmp_path):
    evil = tmp_path / "model.safetensors"
    torch.save({"x": torch.zeros(1)}, evil)  # a pickle, named like a model
    with pytest.raises(ModelFileError):
        load_model(evil)


def test_incompatible_architecture(tmp_path):
    save_model(tmp_path / "m.safetensors", FastSRNet(width=8),
               ModelSpec("m", "fast-sr", {"width": 4}, upscale=4))
    with pytest.raises(ModelFileError, match="do not fit architecture"):
        load_model(tmp_path / "m.safetensors")
    save_model(tmp_path / "u.safetensors", FastSRNet(width=4), ModelSpec("u", "no-such-net", {}, 4))
    with pytest.raises(ModelFileError, match="unknown network architecture"):
        load_model(tmp_path / "u.safetensors")


def test_file_without_spec(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ModelFileError, match="no live-pssr spec"):
        load_model(tmp_path / "plain.safetensors")


def test_input_channel_mismatch(tiny_model):
    check_input_channels(tiny_model.spec, 1)
    with pytest.raises(ModelFileError, match="3 channels"):
        check_input_channels(tiny_model.spec, 3)


def test_enhancer_keeps_dtype_and_units(tiny_model):
    img = (np.random.default_rng(0).poisson(300, (32, 40)) + 100).astype(np.uint16)
    out = Enhancer(tiny_model).enhance(img)
    assert out.dtype == np.uint16 and out.shape == (128, 160)
    f = Enhancer(tiny_model, out_dtype="float32").enhance(img)
    assert f.dtype == np.float32
    assert abs(float(np.median(f)) - float(np.median(img))) < 0.5 * float(np.median(img))
