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


def _with_header(tmp_path, tiny_model_path, name: str, **changes) -> object:
    """A copy of the tiny model whose header spec has ``changes`` (as a hand edit would make)."""
    import json

    from safetensors.torch import load_file, save_file

    spec = json.loads(read_spec(tiny_model_path).to_json())
    for key, value in changes.items():
        if key.startswith("arch_kwargs."):
            spec["arch_kwargs"][key.split(".", 1)[1]] = value
        else:
            spec[key] = value
    path = tmp_path / f"{name}.safetensors"
    save_file(load_file(str(tiny_model_path)), str(path), metadata={"live_pssr": json.dumps(spec)})
    return path


@pytest.mark.parametrize(("changes", "named"), [
    ({"in_frames": 0}, "in_frames is 0"),
    ({"in_frames": -3}, "in_frames is -3"),
    ({"upscale": 0}, "upscale is 0"),
    ({"upscale": 2.5}, "upscale is 2.5"),
    ({"upscale": "4"}, "upscale is '4'"),
    ({"norm_low": -5.0}, "norm_low is -5.0"),
    ({"norm_high": 250}, "norm_high is 250"),
    ({"norm_low": 99.9, "norm_high": 1.0}, "norm_low 99.9 is not below norm_high 1.0"),
    ({"target_frame": "middle"}, "target_frame is 'middle'"),
    ({"target_frame": "centre", "in_frames": 4}, "centre needs an odd number"),
    ({"arch_kwargs.in_frames": 0}, "arch_kwargs.in_frames is 0 but in_frames is 1"),
    ({"arch": ""}, "arch is ''"),
    ({"arch_kwargs": [4]}, "arch_kwargs is [4]"),
    ({"format_version": 0}, "format_version is 0"),
])
def test_impossible_spec_is_refused_naming_the_field(tmp_path, tiny_model_path, changes, named):
    path = _with_header(tmp_path, tiny_model_path, "bad", **changes)
    for read in (read_spec, load_model):
        with pytest.raises(ModelFileError) as err:
            read(path)
        assert named in err.value.message and str(path) in err.value.message
        assert "re-export" in err.value.hint and "live-pssr train" in err.value.hint


def test_spec_that_disagrees_with_its_network_is_refused(tmp_path, tiny_model_path):
    # the tiny net is built with FastSRNet's default upscale 4: a header saying 2 would mis-size every output
    path = _with_header(tmp_path, tiny_model_path, "x2", upscale=2)
    with pytest.raises(ModelFileError, match="spec says upscale 2 but its network") as err:
        load_model(path)
    assert "arch_kwargs" in err.value.hint
    # arguments the architecture itself rejects: an error naming them, not a ValueError
    path = _with_header(tmp_path, tiny_model_path, "w2", **{"arch_kwargs.width": 2})
    with pytest.raises(ModelFileError, match="rejects arch_kwargs"):
        load_model(path)


def test_newer_format_and_non_object_spec(tmp_path, tiny_model_path):
    from safetensors.torch import load_file, save_file

    path = _with_header(tmp_path, tiny_model_path, "v9", format_version=9)
    with pytest.raises(ModelFileError, match="format_version 9") as err:
        load_model(path)
    assert "upgrade" in err.value.hint
    listed = tmp_path / "list.safetensors"
    save_file(load_file(str(tiny_model_path)), str(listed), metadata={"live_pssr": "[1, 2]"})
    with pytest.raises(ModelFileError, match="unreadable spec"):
        read_spec(listed)


def test_save_model_refuses_an_impossible_spec(tmp_path):
    with pytest.raises(ModelFileError, match="in_frames is 0"):
        save_model(tmp_path / "m.safetensors", FastSRNet(width=4),
                   ModelSpec("m", "fast-sr", {"width": 4}, upscale=4, in_frames=0))
    assert not (tmp_path / "m.safetensors").exists()


def test_a_folder_is_not_a_model_file(tmp_path, tiny_model_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFileError) as err:
        load_model(empty)
    assert "is a folder, not a model file" in err.value.message and "does not exist" not in err.value.message
    assert "none in" in err.value.hint and "mito-sr4-fast" in err.value.hint
    full = tmp_path / "mine"
    full.mkdir()
    (full / "a.safetensors").write_bytes(tiny_model_path.read_bytes())
    (full / "b.safetensors").write_bytes(tiny_model_path.read_bytes())
    with pytest.raises(ModelFileError, match="is a folder") as err:
        resolve_model(str(full) + "/")
    assert str(full / "a.safetensors") in err.value.hint and str(full / "b.safetensors") in err.value.hint
    assert "mito-sr4-fast" in err.value.hint


def test_an_empty_model_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFileError, match="empty name") as err:
        resolve_model("")
    assert "mito-sr4-fast" in err.value.hint


def test_a_folder_named_like_a_model_does_not_hide_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mito-sr4-fast").mkdir()
    assert resolve_model("mito-sr4-fast").suffix == ".safetensors"
    with pytest.raises(ModelFileError, match="is a folder"):
        resolve_model("./mito-sr4-fast")


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_saved_model_has_the_umask_s_permissions(tmp_path, umask, mode):
    """safetensors itself writes 0600; a model on a shared lab machine follows the user's umask."""
    import subprocess
    import sys

    out = tmp_path / "m.safetensors"
    code = ("import os, sys; os.umask(int(sys.argv[2], 8)); "
            "from live_pssr.modelio import ModelSpec, save_model; from live_pssr.nets import FastSRNet; "
            "save_model(sys.argv[1], FastSRNet(width=4), ModelSpec('m', 'fast-sr', {'width': 4}, upscale=4))")
    subprocess.run([sys.executable, "-c", code, str(out), oct(umask)[2:]], check=True)
    assert out.stat().st_mode & 0o777 == mode
    assert load_model(out).spec.name == "m"
