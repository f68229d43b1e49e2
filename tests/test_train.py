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
from live_pssr.train.data import PairDataset, build_sources, to_unit, window_indices

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


# ---------------------------------------------------------------------------------------------
# losses, schedule, EMA, augmentation, crappifier randomisation, fine-tuning


def test_ssim_loss_matches_scikit_image() -> None:
    from skimage.metrics import structural_similarity

    from live_pssr.train.losses import ms_ssim, ssim

    rng = np.random.default_rng(0)
    for shape, noise in [((70, 90), 0.2), ((64, 64), 0.05), ((33, 41), 0.5)]:
        a = rng.random(shape)
        b = np.clip(a + rng.normal(0, noise, shape), 0, 1)
        ref = structural_similarity(
            a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        got = float(ssim(torch.tensor(b)[None, None], torch.tensor(a)[None, None]))
        assert abs(got - ref) < 1e-9, (shape, got, ref)
    x = torch.rand(2, 1, 20, 20, dtype=torch.float64)
    y = x + 0.1 * torch.randn_like(x)
    assert torch.allclose(ms_ssim(x, y), ssim(x, y))  # one scale fits: MS-SSIM is SSIM
    big = torch.rand(2, 1, 128, 128, dtype=torch.float64)
    assert float(ms_ssim(big, big)) == pytest.approx(1.0)
    worse = [float(ms_ssim(big + s * torch.randn_like(big), big)) for s in (0.05, 0.2, 0.5)]
    assert worse[0] > worse[1] > worse[2]
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_lr_schedule_warms_up_then_decays_by_steps_or_time(image_dir: Path) -> None:
    from live_pssr.train.trainer import lr_at

    cfg = parse_config(tiny_config(image_dir, steps=100, warmup_steps=10, lr=1e-3))
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10], strict=False))  # linear warm-up
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # then monotone decay
    assert lrs[55] == pytest.approx(1e-3 * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * 0.5))))
    assert lr_at(100, cfg) == pytest.approx(2e-5)  # ends at 2 % of the peak
    assert lr_at(20, cfg, time_frac=1.0) == pytest.approx(2e-5)  # a time limit anneals too


def test_ema_update_ramps_and_averages() -> None:
    from live_pssr.train.trainer import ema_update

    net, ema = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(1.0)
        ema.weight.fill_(0.0)
    ema_update(ema, net, 0.99, step=0)  # early: d = 1/10
    assert torch.allclose(ema.weight, torch.full_like(ema.weight, 0.9))
    ema_update(ema, net, 0.5, step=10_000)  # late: d = decay
    assert torch.allclose(ema.weight, torch.full_like(ema.weight, 0.95))


NEW_TRAINING = {
    "l1+ssim": lambda c: c["train"].update(loss="l1+ssim"),
    "l1+ms-ssim": lambda c: c["train"].update(loss="l1+ms-ssim"),
    "intensity": lambda c: c["data"].update(intensity={"gamma": [0.7, 1.4], "scale": [0.8, 1.25],
                                                       "shift": [-0.05, 0.05]}),
    "randomized": lambda c: c["data"]["sources"][1].update(crappifier={
        "kind": "randomized", "base": {"kind": "pssr-fluo", "scale": 4},
        "ranges": {"var_factor": [0.2, 1.0], "pre_blur_px": [0.0, 1.0]}}),
    "ema": lambda c: c["train"].update(ema=0.9),
    "zoom": lambda c: c["data"].update(zoom=[0.5, 1.0]),
    "haze": lambda c: c["data"].update(intensity={"haze": [0.0, 0.5]}),
}


@pytest.mark.parametrize("what", list(NEW_TRAINING))
def test_tiny_training_lowers_the_loss_with_each_new_loss_and_augmentation(
    image_dir: Path, tmp_path: Path, what: str
) -> None:
    raw = tiny_config(image_dir, steps=60)
    NEW_TRAINING[what](raw)
    cfg = parse_config(raw)
    res = train(cfg, tmp_path / "m.safetensors", ckpt_dir=tmp_path / "ck", progress=False)
    first, last = np.mean(res.losses[:8]), np.mean(res.losses[-8:])
    assert last < 0.8 * first, (what, first, last)
    assert [h["step"] for h in res.history] == [10, 20, 30, 40, 50, 60]
    assert res.history[-1]["loss"] < res.history[0]["loss"]  # validation improves too
    tr = load_model(tmp_path / "m.safetensors").spec.training
    assert tr["loss"] == cfg.train.loss and len(tr["history"]) == 6


def test_ema_weights_are_validated_and_saved(image_dir: Path, tmp_path: Path) -> None:
    """With EMA the saved model is the EMA copy (checkpointed beside the raw weights), not the raw net."""
    from safetensors.torch import load_file

    cfg = parse_config(tiny_config(image_dir, steps=30, val_every=30, ema=0.8))
    train(cfg, tmp_path / "m.safetensors", ckpt_dir=tmp_path / "ck", progress=False)
    saved = load_file(str(tmp_path / "m.safetensors"))
    raw = load_file(str(tmp_path / "ck" / "last.safetensors"))
    state = torch.load(tmp_path / "ck" / "last.state.pt", weights_only=True)
    assert set(state["ema"]) == set(saved)
    assert all(torch.equal(saved[k], state["ema"][k]) for k in saved)
    assert any(not torch.equal(saved[k], raw[k]) for k in saved)


def test_intensity_augmentation_is_seeded_and_within_its_ranges(image_dir: Path) -> None:
    raw = tiny_config(image_dir)
    raw["data"]["sources"] = raw["data"]["sources"][1:]
    cfg = parse_config(raw)
    sources, weights = build_sources(cfg)
    plain = PairDataset(sources, weights, 16, 10, seed=3)
    fixed = PairDataset(sources, weights, 16, 10, seed=3, contrast=((2.0, 2.0), (0.5, 0.5)))
    for i in range(3):  # the affine is applied to input and target alike
        (x0, y0), (x1, y1) = plain[i], fixed[i]
        assert torch.allclose(x1, 2 * x0 + 0.5, atol=1e-6) and torch.allclose(y1, 2 * y0 + 0.5, atol=1e-6)
    ranged = PairDataset(sources, weights, 16, 10, seed=3, contrast=((0.8, 1.25), (-0.05, 0.05)))
    assert all(torch.equal(ranged[i][0], ranged[i][0]) for i in range(3))  # same index, same sample
    # gamma on still images: per image and refresh period, drawn from the range, seeded
    raw["data"]["intensity"] = {"gamma": [0.5, 2.0]}
    still = build_sources(parse_config(raw))[0][0]
    gammas = set()
    for period in range(12):
        img = still.image(0, period)
        assert np.array_equal(img, still.image(0, period))
        base = still.images[0]
        m = (base > 0.05) & (base < 0.95)
        g = np.log(img[m]) / np.log(base[m])
        assert np.allclose(g, g.mean(), atol=1e-3) and 0.5 <= g.mean() <= 2.0
        gammas.add(round(float(g.mean()), 3))
    assert len(gammas) > 6 and min(gammas) < 0.9 and max(gammas) > 1.1
    # validation sources never augment
    val = build_sources(parse_config(raw), val=True)[0][0]
    assert val.image(0, 3) is val.images[0]


def _still_source(image_dir: Path, **data: Any) -> tuple[Any, Any]:
    """The tiny config with only its still-image source and ``data`` fields set; (config, source)."""
    raw = tiny_config(image_dir)
    raw["data"]["sources"] = raw["data"]["sources"][1:]
    raw["data"].update(data)
    cfg = parse_config(raw)
    return cfg, build_sources(cfg)[0][0]


def test_zoom_augmentation_resamples_within_its_range_seeded_and_only_in_training(
    image_dir: Path,
) -> None:
    from live_pssr.train.data import zoom_out

    cfg, still = _still_source(image_dir, zoom=[0.5, 1.0])
    base = still.images[0]
    sides = set()
    for period in range(12):
        img = still.image(0, period)
        assert np.array_equal(img, still.image(0, period))  # seeded: the same period, the same image
        f = img.shape[0] / base.shape[0]
        assert 0.5 - 4 / base.shape[0] <= f <= 1.0 and img.shape[0] % 4 == 0 and img.shape[1] % 4 == 0
        assert abs(img.mean() - base.mean()) < 0.1 * base.mean()  # resampled, not rescaled in intensity
        sides.add(img.shape)
        x, y = still.sample(np.random.default_rng(period), 16, period * still.refresh)
        assert y.shape[-1] == 4 * x.shape[-1]  # crops cut from the resampled image
    assert len(sides) > 6
    val = build_sources(cfg, val=True)[0][0]
    assert val.image(0, 3) is val.images[0]  # validation never zooms
    # anti-aliased: a pixel-scale checkerboard averages out instead of aliasing into stripes
    board = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)
    small = zoom_out(board, 0.5, 4)
    assert small.shape == (32, 32) and small.std() < 0.1 * board.std()


def test_haze_adds_out_of_focus_light_within_its_range_seeded_and_only_in_training(
    image_dir: Path,
) -> None:
    cfg, still = _still_source(image_dir, intensity={"haze": [0.1, 0.4]})
    base = still.images[0]
    fractions = set()
    for period in range(10):
        img = still.image(0, period)
        assert np.array_equal(img, still.image(0, period))
        added = img - base
        assert added.min() >= 0 and added.std() < base.std()  # smooth, non-negative light
        f = added.max() / base.max()
        assert 0.1 - 1e-5 <= f <= 0.4 + 1e-5
        fractions.add(round(float(f), 3))
    assert len(fractions) > 6
    val = build_sources(cfg, val=True)[0][0]
    assert val.image(0, 3) is val.images[0]


def test_fine_tuning_starts_from_the_init_model(image_dir: Path, tmp_path: Path) -> None:
    base = parse_config(tiny_config(image_dir, steps=3))
    train(base, tmp_path / "base.safetensors", ckpt_dir=tmp_path / "ck0", progress=False)
    cfg = parse_config(tiny_config(image_dir, steps=2, warmup_steps=0, lr=1e-12,
                                   init=str(tmp_path / "base.safetensors")))
    train(cfg, tmp_path / "ft.safetensors", ckpt_dir=tmp_path / "ck1", progress=False)
    a = load_model(tmp_path / "base.safetensors").net.state_dict()
    b = load_model(tmp_path / "ft.safetensors").net.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    other = tiny_config(image_dir, steps=3, init=str(tmp_path / "base.safetensors"))
    other["model"]["arch_kwargs"]["width"] = 8
    with pytest.raises(ModelFileError, match="train.init"):
        train(parse_config(other), tmp_path / "x.safetensors", ckpt_dir=tmp_path / "ck2", progress=False)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (lambda c: c["train"].update(loss="ssim-only"), "train.loss"),
        (lambda c: c["train"].update(ema=1.5), "train.ema"),
        (lambda c: c["train"].update(ssim_weight=2), "train.ssim_weight"),
        (lambda c: c["data"].update(intensity={"gamma": [2.0, 1.0]}), "gamma must be"),
        (lambda c: c["data"].update(zoom=[0.5, 2.0]), "zoom must be"),
        (lambda c: c["data"].update(intensity={"haze": [-0.1, 0.2]}), "haze must be"),
        (lambda c: c["data"].update(intensity={"contrast": [1, 2]}), "data.intensity.contrast"),
        (lambda c: c["data"]["sources"][1].update(crappifier={
            "kind": "randomized", "base": {"kind": "pssr-fluo", "scale": 2}, "ranges": {}}),
         "crappifier scale 2"),
        (lambda c: c["data"]["sources"].append({"kind": "real", "files": ["x.tif"], "average": 0}),
         "average"),
    ],
)
def test_new_config_fields_are_validated(image_dir: Path, patch: Any, field: str) -> None:
    cfg = tiny_config(image_dir)
    patch(cfg)
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, "new.yaml")
    assert field in err.value.message and err.value.hint


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data folder {REAL_DATA} absent")
def test_all_real_classes_train_and_the_holdout_stays_out(image_dir: Path) -> None:
    """The v2 config reads mitochondria, nuclei, actin and lysosomes, never a held-out file."""
    from live_pssr import datasets

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "mito-sr4-fast-v2.yaml")
    files = {f for s in cfg.data.sources if s.kind == "real" for f in s.files}
    assert {"BPAE_actin_bian.tif", "BPAE_nuclei_bian.tif"} <= files
    assert any(f.startswith("lyso_") for f in files)
    assert not files & set(datasets.MITO_HOLDOUT_FILES) and not any(f.startswith("fmd_") for f in files)
    raw = tiny_config(image_dir)
    raw["data"]["sources"] = [{"kind": "real", "files": ["lyso_hela_live_TYX_bohuang_crop1.tif"],
                               "average": 5, "crappifier": {"kind": "pssr-fluo", "scale": 4}}]
    lyso = build_sources(parse_config(raw))[0][0]
    assert len(lyso.images) == 10  # 50 frames, means of 5


def test_card_shows_the_new_training_fields_and_curve(image_dir: Path, tmp_path: Path) -> None:
    from live_pssr.train.card import render_card

    cfg = parse_config(tiny_config(image_dir, steps=20, loss="l1+ms-ssim", ema=0.9))
    train(cfg, tmp_path / "m.safetensors", ckpt_dir=tmp_path / "ck", progress=False)
    card = render_card(tmp_path / "m.safetensors")
    assert "loss `l1+ms-ssim` (SSIM weight 0.84)" in card and "EMA weights (decay 0.9" in card
    assert "Training curve" in card and "| 20 |" in card


def test_fmd_raw_repeats_draw_every_repeat_against_the_mean(real_data) -> None:
    """``raw_repeats``: fields 1-2 train on all 50 raw repeats (seeded); other fields keep one."""
    from live_pssr import datasets
    from live_pssr.train.data import FMDPairs

    norm = (1.0, 99.8)
    plain, many = FMDPairs((1, 3), norm), FMDPairs((1, 3), norm, raw_repeats=True)
    assert [len(d) for d in plain.x] == [1, 1, 1] and [len(d) for d in many.x] == [50, 50, 1]
    np.testing.assert_array_equal(plain.y[0], many.y[0])  # the same target: the 50-frame mean
    mean = datasets.fmd_raw50(1).astype(np.float64).mean(axis=0)
    assert np.abs(mean - many.y[0]).max() < 1.0  # it is the mean of those repeats (8-bit rounding)
    assert not np.array_equal(many.x[0][0][0], many.x[0][1][0])  # 50 different noise draws
    draws = [many.sample(np.random.default_rng(s), 64) for s in range(40)]
    again = [many.sample(np.random.default_rng(s), 64) for s in range(40)]
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
               for a, b in zip(draws, again, strict=True))  # seeded
    x0, y0 = plain.sample(np.random.default_rng(0), 64)
    assert x0.shape == y0.shape == (1, 64, 64) and np.isfinite(y0).all()


def test_a_crappified_fmd_source_trains_super_resolution_on_the_means(real_data, image_dir: Path) -> None:
    """``{kind: fmd, crappifier: ...}``: the 50-frame means are still images for any upscale."""
    from live_pssr import datasets
    from live_pssr.train.data import StillPairs

    raw = tiny_config(image_dir)
    crap = {"kind": "pssr-fluo", "scale": 4}
    raw["data"]["sources"] = [{"kind": "fmd", "fields": [2, 4], "crappifier": crap}]
    src = build_sources(parse_config(raw))[0][0]
    assert isinstance(src, StillPairs) and len(src.images) == 3
    means = [datasets.dark_subtracted(gt) for _, gt in datasets.fmd_pairs([2, 3, 4])]
    assert all(np.allclose(a, to_unit(b)) for a, b in zip(src.images, means, strict=True))
    x, y = src.sample(np.random.default_rng(0), 16)
    assert x.shape == (1, 16, 16) and y.shape == (1, 64, 64)
    # the still-pair options of every crappified source reach the pairs
    raw["data"]["sources"] = [{"kind": "fmd", "fields": [2, 2], "crappifier": crap,
                               "intensity": "same", "mf_shift": 0.5}]
    src = build_sources(parse_config(raw))[0][0]
    assert (src.intensity, src.mf_shift) == ("same", 0.5)
    bad = [({"fields": [1, 2], "crappifier": crap, "raw_repeats": True}, "raw_repeats"),
           ({"fields": [1, 2], "crappifier": {"kind": "pssr-fluo", "scale": 2}}, "crappifier scale 2"),
           ({"fields": [9, 12], "crappifier": crap}, "held-out"),
           ({"fields": [1, 2], "intensity": "same"}, "add a crappifier"),
           ({"fields": [1, 2], "mf_shift": 0.5}, "add a crappifier")]
    for extra, msg in bad:
        raw["data"]["sources"] = [{"kind": "fmd", **extra}]
        with pytest.raises(ConfigError, match=msg):
            parse_config(raw)


# ---------------------------------------------------------------------------------------------
# validation on whole images kept out of training (data.val_sources)


def test_val_sources_validate_on_their_own_images(image_dir: Path, tmp_path: Path) -> None:
    """With ``val_sources`` the validation pairs come only from them; provenance says so."""
    val_dir = tmp_path / "val"
    val_dir.mkdir()
    tifffile.imwrite(val_dir / "v.tif", _still_image(9))
    raw = tiny_config(image_dir, steps=10, val_every=5)
    raw["data"]["val_sources"] = [
        {"kind": "images", "paths": [str(val_dir)], "crappifier": {"kind": "pssr-fluo", "scale": 4}}
    ]
    cfg = parse_config(raw)
    vsources, _ = build_sources(cfg, val=True)
    assert [type(s).__name__ for s in vsources] == ["StillPairs"] and len(vsources[0].images) == 1
    assert np.corrcoef(vsources[0].images[0].ravel(), _still_image(9).ravel())[0, 1] > 0.999
    assert [type(s).__name__ for s in build_sources(cfg)[0]] == ["SimPairs", "StillPairs"]
    # without val_sources the training sources validate (as before)
    assert len(build_sources(parse_config(tiny_config(image_dir)), val=True)[0]) == 2

    train(cfg, tmp_path / "m.safetensors", ckpt_dir=tmp_path / "ck", progress=False)
    tr = load_model(tmp_path / "m.safetensors").spec.training
    assert "kept out of training" in tr["val_note"]
    assert tr["val_data"] == [{"kind": "images", "weight": 1.0, "images": 1,
                               "crappifier": tr["val_data"][0]["crappifier"], "paths": [str(val_dir)]}]
    plain = parse_config(tiny_config(image_dir, steps=4, val_every=2))
    train(plain, tmp_path / "p.safetensors", ckpt_dir=tmp_path / "ck2", progress=False)
    tr = load_model(tmp_path / "p.safetensors").spec.training
    assert "of the training sources" in tr["val_note"] and "val_data" not in tr


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (lambda c, d: c["data"].update(val_sources=[]), "data.val_sources"),
        (lambda c, d: c["data"].update(val_sources=[
            {"kind": "images", "paths": [str(d.parent)], "crappifier": {"kind": "pssr-fluo", "scale": 2}}]),
         "data.val_sources[0] (images): crappifier scale 2"),
        (lambda c, d: c["data"].update(val_sources=[
            {"kind": "images", "paths": [str(d)], "crappifier": {"kind": "pssr-fluo", "scale": 4}}]),
         "which data.sources also trains on"),
        (lambda c, d: c["data"]["sources"].append({"kind": "mito", "files": ["mito_mina_test_image.tif"]}),
         "not a mito training file"),
    ],
)
def test_val_sources_are_validated(image_dir: Path, patch: Any, field: str) -> None:
    cfg = tiny_config(image_dir)
    patch(cfg, image_dir)
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, "val.yaml")
    assert field in err.value.message and err.value.hint


def test_mito_training_and_validation_files_must_not_overlap(image_dir: Path) -> None:
    """A mito source without ``files`` reads every training file, so it overlaps any mito val set."""
    yeast2 = "mito_yeast_ZYX_mitographtools_BuddingYeastGlucose02.tif"
    cfg = tiny_config(image_dir)
    cfg["data"]["sources"].append({"kind": "mito", "crappifier": {"kind": "pssr-fluo", "scale": 4}})
    crap = {"kind": "pssr-fluo", "scale": 4}
    cfg["data"]["val_sources"] = [{"kind": "mito", "files": [yeast2], "crappifier": crap}]
    with pytest.raises(ConfigError, match="which data.sources also trains on") as err:
        parse_config(cfg)
    assert yeast2 in err.value.message
    cfg["data"]["sources"][-1]["files"] = ["BPAE_mito_bian.tif"]
    assert parse_config(cfg).data.val_sources[0].files == [yeast2]


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data folder {REAL_DATA} absent")
def test_mito_files_subset_reads_only_those_files() -> None:
    from live_pssr import datasets

    yeast2 = "mito_yeast_ZYX_mitographtools_BuddingYeastGlucose02.tif"
    names = [n for n, _ in datasets.mito_train_named([yeast2])]
    assert len(names) == datasets.YEAST_PLANES and all(n.startswith(Path(yeast2).stem) for n in names)
    every = [n for n, _ in datasets.mito_train_named()]
    assert set(names) < set(every) and every[0] == "BPAE_mito_bian"
    with pytest.raises(datasets.DataError, match="not mito training files"):
        datasets.mito_train_named(["mito_mina_test_image.tif"])
    v4 = load_config(Path(__file__).resolve().parents[1] / "configs" / "mito-sr4-fast-v4.yaml")
    vs, _ = build_sources(v4, val=True)
    assert len(vs) == 1 and len(vs[0].images) == datasets.YEAST_PLANES


@pytest.mark.parametrize("how", ["same", "file in folder", "relative", "dotdot"])
def test_val_images_inside_training_folders_are_refused(image_dir: Path, monkeypatch: Any, how: str) -> None:
    """Paths are compared resolved, and a file inside a training folder overlaps it."""
    monkeypatch.chdir(image_dir.parent)
    path = {"same": str(image_dir), "file in folder": str(image_dir / "a.tif"),
            "relative": image_dir.name, "dotdot": f"{image_dir.name}/../{image_dir.name}"}[how]
    cfg = tiny_config(image_dir)
    cfg["data"]["val_sources"] = [{"kind": "images", "paths": [path],
                                   "crappifier": {"kind": "pssr-fluo", "scale": 4}}]
    with pytest.raises(ConfigError, match="which data.sources also trains on"):
        parse_config(cfg)


def test_fmd_validation_fields_must_not_overlap_training(image_dir: Path) -> None:
    """FMD fields are ranges: a validation range inside the training range is refused."""
    cfg = tiny_config(image_dir)
    cfg["model"]["upscale"] = 1
    cfg["data"]["sources"] = [{"kind": "fmd", "fields": [1, 10]}]
    cfg["data"]["val_sources"] = [{"kind": "fmd", "fields": [3, 5]}]
    with pytest.raises(ConfigError, match=r"FMD fields \[3, 4, 5\]"):
        parse_config(cfg)
    cfg["data"]["sources"] = [{"kind": "fmd", "fields": [1, 8]}]
    cfg["data"]["val_sources"] = [{"kind": "fmd", "fields": [9, 10]}]
    assert parse_config(cfg).data.val_sources[0].fields == (9, 10)
    cfg["data"]["val_sources"] = [{"kind": "fmd", "fields": [9, 12]}]  # 11-20 are the evaluation's
    with pytest.raises(ConfigError, match="held-out evaluation set"):
        parse_config(cfg)


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data folder {REAL_DATA} absent")
def test_validation_on_the_evaluation_images_is_refused(image_dir: Path) -> None:
    """Choosing the model on the held-out evaluation images would bias its card's scores."""
    from live_pssr import datasets

    for path in (REAL_DATA / "mito_mina_test_image.tif", REAL_DATA):
        cfg = tiny_config(image_dir)
        cfg["data"]["val_sources"] = [{"kind": "images", "paths": [str(path)],
                                       "crappifier": {"kind": "pssr-fluo", "scale": 4}}]
        with pytest.raises(ConfigError, match="held-out evaluation data") as err:
            parse_config(cfg)
        assert datasets.MITO_HOLDOUT_FILES[1] in err.value.message
    # a training images source on a real-data file that a mito validation source reads
    yeast2 = "mito_yeast_ZYX_mitographtools_BuddingYeastGlucose02.tif"
    cfg = tiny_config(image_dir)
    cfg["data"]["sources"].append({"kind": "images", "paths": [str(REAL_DATA / yeast2)],
                                   "crappifier": {"kind": "pssr-fluo", "scale": 4}})
    cfg["data"]["val_sources"] = [{"kind": "mito", "files": [yeast2],
                                   "crappifier": {"kind": "pssr-fluo", "scale": 4}}]
    with pytest.raises(ConfigError, match="which data.sources also trains on"):
        parse_config(cfg)
