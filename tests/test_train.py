"""Training: config validation, data pairs, a tiny run that learns, save/load, resume, bad input."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
import yaml

from live_pssr.errors import ConfigError, LivePSSRError, ModelFileError
from live_pssr.modelio import load_model, save_model
from live_pssr.train import load_config, parse_config, train
from live_pssr.train.data import PairDataset, build_sources, window_indices

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def _still_image(seed: int = 0, size: int = 128) -> np.ndarray:
    """A filament-like high-quality test image (random blurred lines)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    for _ in range(12):
        y0, x0, y1, x1 = rng.uniform(0, size, 4)
        t = np.linspace(0, 1, 4 * size)
        img[
            np.clip((y0 + t * (y1 - y0)).astype(int), 0, size - 1),
            np.clip((x0 + t * (x1 - x0)).astype(int), 0, size - 1),
        ] = 1.0
    return (gaussian_filter(img, 1.5) * 1000 + 50).astype(np.float32)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hq")
    tifffile.imwrite(d / "a.tif", _still_image(0))
    tifffile.imwrite(d / "b.tif", np.stack([_still_image(1), _still_image(2)]))
    return d


def tiny_config(image_dir: Path, **train: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "model": {"arch": "fast-sr", "upscale": 4, "in_frames": 1, "arch_kwargs": {"width": 4}},
        "data": {
            "crop": 16,
            "val_samples": 4,
            "sources": [
                {
                    "kind": "sim",
                    "laser_power": [0.05, 0.2],
                    "sequences": 2,
                    "timepoints": 2,
                    "height": 32,
                    "width": 32,
                },
                {
                    "kind": "images",
                    "paths": [str(image_dir)],
                    "crappifier": {"kind": "pssr-fluo", "scale": 4},
                },
            ],
        },
        "train": {
            "steps": 40,
            "batch": 4,
            "lr": 3e-3,
            "warmup_steps": 2,
            "val_every": 10,
            "checkpoint_every": 10,
            "threads": 1,
            "seed": 0,
            **train,
        },
    }


# ---------------------------------------------------------------------------------------------
# config


def test_shipped_configs_validate() -> None:
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert {c.stem for c in configs} >= {"mito-sr4-fast", "mito-sr4-mf", "denoise-fast", "pssr-resunet-sr4"}
    for c in configs:
        cfg = load_config(c)
        assert cfg.name == c.stem


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (lambda c: c["train"].update(stesp=3), "train.stesp"),
        (lambda c: c["train"].update(lr=-1), "train.lr"),
        (lambda c: c["data"].update(crop=2), "data.crop"),
        (lambda c: c["model"].update(arch="nope"), "model.arch"),
        (lambda c: c["data"]["sources"][1]["crappifier"].update(scale=2), "crappifier scale 2"),
        (lambda c: c["data"]["sources"].append({"kind": "fmd"}), "needs model.upscale 1"),
        (lambda c: c["data"]["sources"].append({"kind": "fmd", "fields": [5, 15]}), "held-out"),
        (lambda c: c["model"].update(in_frames=4, target_frame="centre"), "odd in_frames"),
        (lambda c: c["data"]["sources"][0].update(kind="webcam"), "data.sources.0"),
        (lambda c: c["train"].update(warmup_steps=50), "warmup_steps"),
        (lambda c: c["model"]["arch_kwargs"].update(width=2), "width>=4"),
        (lambda c: c["model"]["arch_kwargs"].update(depth=4), "depth"),
        (
            lambda c: c["data"]["sources"].append({"kind": "real", "files": ["mito_mina_test_image.tif"]}),
            "held out",
        ),
    ],
)
def test_config_errors_name_file_and_field(image_dir: Path, tmp_path: Path, patch: Any, field: str) -> None:
    cfg = tiny_config(image_dir)
    patch(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in err.value.message and field in err.value.message
    assert err.value.hint


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "list.yaml")


# ---------------------------------------------------------------------------------------------
# data


def test_window_indices() -> None:
    assert window_indices(10, 5, "newest") == [6, 7, 8, 9, 10]
    assert window_indices(10, 5, "centre") == [8, 9, 10, 11, 12]
    assert window_indices(3, 1, "newest") == [3]


def test_intensity_fit_recovers_camera_gain_and_offset() -> None:
    """frame ~ alpha * downsample(truth) + beta: alpha = gain * laser * s^2, beta = offset."""
    from live_pssr.sim import MicroscopeConfig, SimulatedMicroscope
    from live_pssr.train.data import fit_intensity

    mic = SimulatedMicroscope(
        MicroscopeConfig(height=64, width=64, laser_power=0.1, gain=2.0, offset=100, seed=1)
    )
    frame, truth = mic.acquire(0)
    alpha, beta = fit_intensity(frame, truth, 4)
    assert alpha == pytest.approx(2.0 * 0.1 * 16, rel=0.03)
    assert beta == pytest.approx(100, abs=2)


def test_target_in_input_units(image_dir: Path) -> None:
    """With target_norm=input, denormalising the target with the input's range gives the data's units."""
    from live_pssr.train.data import SimPairs

    cfg = parse_config(tiny_config(image_dir))
    sim = SimPairs(cfg.data.sources[0], 4, 1, "newest", (1.0, 99.8), "input")
    x, y = sim.sample(np.random.default_rng(0), 32)
    # the mean of the normalised target matches the mean of the normalised input (same units, same range)
    assert float(y.mean()) == pytest.approx(float(x.mean()), abs=0.05)
    own = SimPairs(cfg.data.sources[0], 4, 1, "newest", (1.0, 99.8), "own")
    _, y_own = own.sample(np.random.default_rng(0), 32)
    assert not np.allclose(y, y_own)


def test_still_intensity_relation() -> None:
    """Degraded copies carry their intensity fit: ~1 for PSSR's crappifier, gain/offset for a camera."""
    from live_pssr.train.data import StillPairs

    imgs = [_still_image(3)]
    pssr = StillPairs("s", imgs, {"kind": "pssr-fluo", "scale": 4}, 4, 1, "newest", (1.0, 99.8))
    cam_cfg = {"kind": "camera", "scale": 4, "photons": 50, "gain": 2.0, "offset": 100}
    cam = StillPairs("c", imgs, cam_cfg, 4, 1, "newest", (1.0, 99.8))
    same = StillPairs("c", imgs, cam_cfg, 4, 1, "newest", (1.0, 99.8), intensity="same")
    alpha, beta = pssr._copy(0, 0, 0)[2]
    assert 0.5 < alpha < 1.2 and 0 <= beta < 0.2  # same units, plus the dark bias of clipped noise
    alpha, beta = cam._copy(0, 0, 0)[2]
    assert beta == pytest.approx(100, abs=3) and alpha > 10
    assert same._copy(0, 0, 0)[2] == (1.0, 0.0)


def test_pairs_are_normalised_and_shaped(image_dir: Path) -> None:
    cfg = parse_config(tiny_config(image_dir))
    sources, weights = build_sources(cfg)
    ds = PairDataset(sources, weights, crop=16, length=8, seed=3)
    for i in range(8):
        x, y = ds[i]
        assert x.shape == (1, 16, 16) and y.shape == (1, 64, 64)
        assert x.dtype == y.dtype == torch.float32
        assert -2 < float(x.mean()) < 2 and -2 < float(y.mean()) < 2
    torch.testing.assert_close(ds[5][0], ds[5][0])  # item i is deterministic
    assert not torch.equal(ds[5][0], ds[6][0])


def test_multiframe_pairs(image_dir: Path) -> None:
    raw = tiny_config(image_dir)
    raw["model"]["in_frames"] = 5
    raw["data"]["sources"][1]["mf_shift"] = 0.3
    cfg = parse_config(raw)
    sources, _ = build_sources(cfg)
    rng = np.random.default_rng(0)
    for src in sources:
        x, y = src.sample(rng, 16)
        assert x.shape == (5, 16, 16) and y.shape == (1, 64, 64)
        assert not np.allclose(x[0], x[-1])  # independent noise (still) / different time (sim)


def test_empty_image_folder_is_a_clear_error(image_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    raw = tiny_config(image_dir)
    raw["data"]["sources"][1]["paths"] = [str(empty)]
    with pytest.raises(LivePSSRError) as err:
        build_sources(parse_config(raw))
    assert str(empty) in err.value.message and err.value.hint


# ---------------------------------------------------------------------------------------------
# training


def test_tiny_training_lowers_loss_and_saves_a_loadable_model(image_dir: Path, tmp_path: Path) -> None:
    cfg = parse_config(tiny_config(image_dir, steps=60))
    out = tmp_path / "tiny.safetensors"
    res = train(cfg, out, ckpt_dir=tmp_path / "ck", progress=False)
    assert res.steps == 60 and res.stopped == "steps"
    first, last = np.mean(res.losses[:8]), np.mean(res.losses[-8:])
    assert last < 0.8 * first, (first, last)
    model = load_model(out)
    tr = model.spec.training
    assert tr["config"]["name"] == "tiny" and tr["train_time_s"] > 0
    assert [d["kind"] for d in tr["data"]] == ["sim", "images"]
    assert tr["data"][1]["crappifier"]["kind"] == "pssr-fluo"
    assert {"psnr", "ssim"} <= set(tr["val"])
    # save/load round trip is bit-exact
    x = torch.rand(1, 1, 24, 20)
    y1 = model.net(x)
    save_model(tmp_path / "again.safetensors", model.net, model.spec)
    y2 = load_model(tmp_path / "again.safetensors").net(x)
    assert torch.equal(y1, y2)
    assert torch.equal(y1, load_model(out).net(x))


def test_resume_continues_from_the_saved_step(image_dir: Path, tmp_path: Path) -> None:
    """An interrupted run resumed from its step-10 checkpoint ends bit-identical to a straight run."""
    cfg = parse_config(tiny_config(image_dir, steps=20))
    straight = train(cfg, tmp_path / "straight.safetensors", ckpt_dir=tmp_path / "ck1", progress=False)

    class Stop(Exception):
        pass

    def stop_at_13(step: int, loss: float) -> None:
        if step == 13:
            raise Stop

    with pytest.raises(Stop):
        train(
            cfg, tmp_path / "cut.safetensors", ckpt_dir=tmp_path / "ck2", progress=False, on_step=stop_at_13
        )
    seen: list[int] = []
    res = train(
        cfg,
        tmp_path / "resumed.safetensors",
        resume=tmp_path / "ck2" / "last.safetensors",
        ckpt_dir=tmp_path / "ck2",
        progress=False,
        on_step=lambda s, _: seen.append(s),
    )
    assert seen[0] == 11 and res.steps == 20
    assert res.losses == straight.losses[10:]
    a = load_model(tmp_path / "straight.safetensors").net.state_dict()
    b = load_model(tmp_path / "resumed.safetensors").net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_from_incompatible_checkpoint(image_dir: Path, tmp_path: Path) -> None:
    cfg = parse_config(tiny_config(image_dir, steps=3))
    train(cfg, tmp_path / "m.safetensors", ckpt_dir=tmp_path / "ck", progress=False)
    other = copy.deepcopy(tiny_config(image_dir, steps=3))
    other["model"]["arch_kwargs"]["width"] = 8
    with pytest.raises(ModelFileError) as err:
        train(parse_config(other), tmp_path / "n.safetensors", resume=tmp_path / "ck", progress=False)
    assert "last.safetensors" in err.value.message and "width" in err.value.message
    with pytest.raises(ModelFileError, match="does not exist"):
        train(cfg, tmp_path / "n.safetensors", resume=tmp_path / "nowhere.safetensors", progress=False)


def test_time_limit_keeps_best_model(image_dir: Path, tmp_path: Path) -> None:
    cfg = parse_config(tiny_config(image_dir, steps=100000, warmup_steps=2))
    res = train(cfg, tmp_path / "t.safetensors", max_minutes=0.02, ckpt_dir=tmp_path / "ck", progress=False)
    assert res.stopped == "time" and res.steps < 100000
    assert load_model(tmp_path / "t.safetensors").spec.training["stopped"] == "time"


def test_cli_train(image_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from live_pssr.cli import app

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(image_dir)))
    out = tmp_path / "cli.safetensors"
    r = CliRunner().invoke(
        app,
        [
            "train",
            "--config",
            str(cfg_path),
            "--out",
            str(out),
            "--steps",
            "5",
            "--checkpoint-dir",
            str(tmp_path / "ck"),
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and load_model(out).spec.training["steps"] == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {sources: []}\n")
    r = CliRunner().invoke(app, ["train", "--config", str(bad)])
    assert isinstance(r.exception, ConfigError) and "data.sources" in str(r.exception)


def test_ddp_two_processes_on_cpu(image_dir: Path, tmp_path: Path) -> None:
    """The multi-GPU path (torchrun, DDP, DistributedSampler) runs with 2 CPU processes (gloo)."""
    import os
    import subprocess
    import sys

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(image_dir, steps=4, val_every=2, checkpoint_every=2)))
    out = tmp_path / "ddp.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "live_pssr",
        "train",
        "--config",
        str(cfg_path),
        "--out",
        str(out),
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("wrote") == 1  # rank 0 reports and writes
    tr = load_model(out).spec.training
    assert tr["steps"] == 4 and tr["device"].endswith("x2")


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data folder {REAL_DATA} absent")
def test_real_sources_keep_holdout_out(image_dir: Path) -> None:
    """The mito source reads only the training split; FMD pairs come from fields 1-10."""
    from live_pssr import datasets

    raw = tiny_config(image_dir)
    raw["data"]["sources"] = [{"kind": "mito", "crappifier": {"kind": "pssr-fluo", "scale": 4}}]
    sources, _ = build_sources(parse_config(raw))
    held = {img.shape for _, img in datasets.mito_holdout_images()}
    assert len(sources[0].images) == len(datasets.mito_train_images())
    assert not held & {im.shape for im in sources[0].images}
    x, y = sources[0].sample(np.random.default_rng(0), 16)
    assert x.shape == (1, 16, 16) and y.shape == (1, 64, 64)
