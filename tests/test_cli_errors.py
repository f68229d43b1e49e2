"""Bad command-line input gives a clear error (the problem and the fix, exit status 2), never a traceback.

Commands run through :func:`live_pssr.cli.main`, the console entry point itself (what a user's
``live-pssr ...`` runs), in this process; ``python -m live_pssr`` is checked once in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from live_pssr.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    """``live-pssr ARGS`` through the console entry point: (exit status, stdout + stderr)."""
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps nothing: messages are matched whole
    monkeypatch.setattr(sys, "argv", ["live-pssr", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else code), out.out + out.err


def assert_clear_error(code: int, text: str, *named: str) -> None:
    """Exit status 2, an ``error:`` line and a ``fix:`` line, each of ``named`` in the text, no traceback."""
    assert code == 2, text
    assert "error:" in text and "fix:" in text, text
    assert "Traceback" not in text
    flat = " ".join(text.split())  # rich wraps long lines
    for part in named:
        assert part in flat, (part, text)


def pm_metadata(t: int, **axes) -> dict:
    return {"Camera": "Cam", "ElapsedTime-ms": float(t * 10), "Height": "32", "Width": "32",
            "ImageNumber": str(t), "PixelType": "GRAY16", "PixelSize_um": 0.16,
            "TimeReceivedByCore": f"2026-01-01 12:00:{t:02d}.250000", "Axes": {"time": t, **axes}}


@pytest.fixture
def series_run(tmp_path) -> Path:
    """The root of a multi-dimensional LiveSession's output: one run store per channel."""
    from live_pssr import LiveSession

    session = LiveSession(store=tmp_path / "mda.zarr", enhance=False)
    rng = np.random.default_rng(0)
    for t in range(3):
        for ch in ("DAPI", "GFP"):
            session.pycromanager_hook(rng.integers(100, 400, (32, 32)).astype(np.uint16),
                                      pm_metadata(t, channel=ch))
    session.close()
    return tmp_path / "mda.zarr"


# ------------------------------------------------------------------------------------------ info
def test_info_on_a_series_root_shows_its_streams(capsys, monkeypatch, series_run):
    code, text = run_cli(capsys, monkeypatch, "info", series_run)
    assert code == 0, text
    flat = " ".join(text.split())
    assert "series run of 2 stream(s) split by channel" in flat
    for name in ("channel-DAPI", "channel-GFP"):
        assert name in flat and "channel=" + name.split("-")[1] in flat
    assert f"live-pssr info {series_run / 'channel-DAPI'}" in flat  # points to the stream stores
    code, text = run_cli(capsys, monkeypatch, "info", series_run, "--json")
    doc = json.loads(text)
    assert doc["kind"] == "series" and doc["state"] == "closed"
    assert [(s["name"], s["store"]["frames"]) for s in doc["streams"]] == [("channel-DAPI", 3),
                                                                          ("channel-GFP", 3)]
    # each stream is a run store that info opens on its own
    code, text = run_cli(capsys, monkeypatch, "info", series_run / "channel-GFP", "--json")
    assert code == 0 and json.loads(text)["frames"] == 3


def test_a_series_stream_missing_from_the_index_is_still_listed(capsys, monkeypatch, series_run):
    doc = json.loads((series_run / "zarr.json").read_text())
    doc["attributes"]["live_pssr_series"]["streams"] = doc["attributes"]["live_pssr_series"]["streams"][:1]
    doc["attributes"]["live_pssr_series"]["state"] = "recording"  # as after a crash
    (series_run / "zarr.json").write_text(json.dumps(doc))
    code, text = run_cli(capsys, monkeypatch, "info", series_run)
    assert code == 0, text
    flat = " ".join(text.split())
    assert "channel-GFP" in flat and "missing from the series index" in flat and "did not close" in flat


def test_view_and_open_store_on_a_series_root_name_the_streams(capsys, monkeypatch, series_run, tmp_path):
    code, text = run_cli(capsys, monkeypatch, "view", series_run, "--screenshot", tmp_path / "x.png")
    assert_clear_error(code, text, "is a series of 2 run stores", str(series_run / "channel-DAPI"),
                       f"live-pssr info {series_run}")
    assert not (tmp_path / "x.png").exists()


def test_info_on_paths_that_are_not_stores(capsys, monkeypatch, tmp_path, series_run):
    code, text = run_cli(capsys, monkeypatch, "info", tmp_path / "nowhere.zarr")
    assert_clear_error(code, text, "nowhere.zarr does not exist", "check the path")
    (tmp_path / "notes.txt").write_text("x")
    code, text = run_cli(capsys, monkeypatch, "info", tmp_path / "notes.txt")
    assert_clear_error(code, text, "is a file, not a zarr v3 store")
    (tmp_path / "plain").mkdir()
    code, text = run_cli(capsys, monkeypatch, "info", tmp_path / "plain")
    assert_clear_error(code, text, "not a zarr v3 store (no zarr.json)", "live-pssr demo/acquire")
    # the folder that holds the run: name the stores in it
    code, text = run_cli(capsys, monkeypatch, "info", tmp_path)
    assert_clear_error(code, text, "it is a folder of stores", f"pass one of them: {series_run}")


# ------------------------------------------------------------------------------- entry points
def test_python_dash_m_runs_the_cli_and_the_train_alias(tmp_path):
    """``python -m live_pssr`` is the CLI; ``python -m live_pssr.train`` (torchrun's) is its train command."""
    env_cwd = {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 120}
    r = subprocess.run([sys.executable, "-m", "live_pssr", "models"], **env_cwd)
    assert r.returncode == 0, r.stderr
    assert "mito-sr4-fast" in r.stdout
    for module in (["live_pssr", "train"], ["live_pssr.train"]):
        r = subprocess.run([sys.executable, "-m", *module, "--config", str(tmp_path / "none.yaml")],
                           **env_cwd)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "none.yaml does not exist" in r.stderr and "fix:" in r.stderr



def assert_usage_error(code: int, text: str, option: str, *named: str) -> None:
    """A value the option's declared range refuses: click's usage error (status 2), naming the option."""
    flat = " ".join(text.replace("│", " ").split())
    assert code == 2 and "Traceback" not in text, text
    assert f"Invalid value for '{option}'" in flat, text
    for part in named:
        assert part in flat, (part, text)


def tiny_train_config(tmp_path: Path) -> Path:
    import yaml

    cfg = {
        "name": "tiny",
        "model": {"arch": "fast-sr", "upscale": 4, "in_frames": 1, "arch_kwargs": {"width": 4}},
        "data": {"crop": 16, "val_samples": 2, "sources": [
            {"kind": "sim", "laser_power": [0.05, 0.2], "sequences": 1, "timepoints": 2, "height": 32,
             "width": 32}]},
        "train": {"steps": 1, "batch": 2, "warmup_steps": 0, "val_every": 1, "checkpoint_every": 1,
                  "threads": 1},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# ----------------------------------------------------------------------------------------- train
def test_train_options_that_cannot_work_are_refused_before_training(capsys, monkeypatch, tmp_path):
    cfg = tiny_train_config(tmp_path)
    common = ["train", "--config", cfg, "--checkpoint-dir", tmp_path / "ck", "--quiet"]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.yaml").write_text("name: a\n")
    code, text = run_cli(capsys, monkeypatch, "train", "--config", tmp_path / "configs")
    assert_clear_error(code, text, "is a folder, not a training config file",
                       str(tmp_path / "configs" / "a.yaml"))
    for minutes in ("0", "-1"):
        code, text = run_cli(capsys, monkeypatch, *common, "--out", tmp_path / "m.safetensors",
                             "--max-minutes", minutes)
        assert_clear_error(code, text, f"--max-minutes {minutes} is not a positive time", "--max-minutes 30")
    code, text = run_cli(capsys, monkeypatch, *common, "--out", tmp_path / "m.safetensors", "--device", "tpu")
    assert_clear_error(code, text, "--device 'tpu'", "use cpu, cuda or cuda:N")
    (tmp_path / "outdir").mkdir()
    code, text = run_cli(capsys, monkeypatch, *common, "--out", tmp_path / "outdir")
    assert_clear_error(code, text, "is a folder, not a model file",
                       str(tmp_path / "outdir" / "my-model.safetensors"))
    code, text = run_cli(capsys, monkeypatch, *common, "--out", tmp_path / "m.pt")
    assert_clear_error(code, text, "model files end in .safetensors", str(tmp_path / "m.safetensors"))
    (tmp_path / "file").write_text("x")
    code, text = run_cli(capsys, monkeypatch, "train", "--config", cfg, "--checkpoint-dir", tmp_path / "file",
                         "--out", tmp_path / "m.safetensors", "--quiet")
    assert_clear_error(code, text, "--checkpoint-dir", "is a file, not a folder")
    assert not (tmp_path / "m.safetensors").exists()  # nothing was trained for any of them


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_cuda_without_a_gpu(capsys, monkeypatch, tmp_path):
    code, text = run_cli(capsys, monkeypatch, "train", "--config", tiny_train_config(tmp_path), "--device",
                         "cuda", "--out", tmp_path / "m.safetensors", "--quiet")
    assert_clear_error(code, text, "--device cuda: no CUDA GPU is usable here", "--device cpu")


# -------------------------------------------------------------------------------------- evaluate
@pytest.fixture
def hq_folder(tmp_path) -> Path:
    import tifffile

    folder = tmp_path / "hq"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        tifffile.imwrite(folder / f"im{i}.tif", rng.uniform(50, 1000, (64, 80)).astype(np.uint16))
    return folder


def test_evaluate_bad_values(capsys, monkeypatch, tmp_path, tiny_model_path, hq_folder):
    base = ["evaluate", "--model", tiny_model_path, "--data", hq_folder]
    code, text = run_cli(capsys, monkeypatch, *base, "--json", tmp_path)  # refused before evaluating
    assert_clear_error(code, text, "--json", "is a folder, not a file", str(tmp_path / "result.json"))
    assert "PSNR" not in text
    (tmp_path / "file").write_text("x")
    code, text = run_cli(capsys, monkeypatch, *base, "--json", tmp_path / "file" / "r.json")
    assert_clear_error(code, text, "is a file, not a folder")
    for bad in ("0", "-1"):
        code, text = run_cli(capsys, monkeypatch, *base, "--max-images", bad)
        assert_usage_error(code, text, "--max-images", "greater than or equal to 1")
    code, text = run_cli(capsys, monkeypatch, *base, "--seed", "-1")
    assert_usage_error(code, text, "--seed", "greater than or equal to 0")
    code, text = run_cli(capsys, monkeypatch, *base, "--crappifier", tmp_path)
    assert_clear_error(code, text, "is a folder, not a crappifier config file", "live-pssr calibrate")
    code, text = run_cli(capsys, monkeypatch, *base, "--crappifier", tmp_path / "my_camera.yaml")
    assert_clear_error(code, text, "my_camera.yaml does not exist", "live-pssr calibrate FRAMES --out")
    code, text = run_cli(capsys, monkeypatch, "evaluate", "--model", tiny_model_path, "--data",
                         "sim-timelapse", "--size", "0")
    assert_usage_error(code, text, "--size", "greater than or equal to 16")


def test_a_folder_as_model_lists_what_to_pass(capsys, monkeypatch, tmp_path, tiny_model_path, hq_folder):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.safetensors").write_bytes(tiny_model_path.read_bytes())
    code, text = run_cli(capsys, monkeypatch, "evaluate", "--model", tmp_path / "mine", "--data", hq_folder)
    assert_clear_error(code, text, "is a folder, not a model file", str(tmp_path / "mine" / "a.safetensors"),
                       "mito-sr4-fast")
    assert "does not exist" not in text


# ------------------------------------------------------------------------------------------ models
def test_models_lists_the_rest_when_one_user_model_is_damaged(capsys, monkeypatch, tmp_path, tiny_model_path):
    from safetensors.torch import load_file, save_file

    from live_pssr.modelio import read_spec

    spec = json.loads(read_spec(tiny_model_path).to_json())
    save_file(load_file(str(tiny_model_path)), str(tmp_path / "broken.safetensors"),
              metadata={"live_pssr": json.dumps({**spec, "in_frames": 0})})
    monkeypatch.setenv("LIVE_PSSR_MODELS", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    code, text = run_cli(capsys, monkeypatch, "models")
    assert code == 0, text
    assert "mito-sr4-fast" in text and "broken" in text and "unusable" in text and "in_frames is 0" in text
    code, text = run_cli(capsys, monkeypatch, "models", "broken")
    assert_clear_error(code, text, "in_frames is 0", "re-export")


# --------------------------------------------------------------------------------------- calibrate
def test_calibrate_bad_values(capsys, monkeypatch, tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    base = 20 + 400 * (np.sin(xx / 7.0) * np.cos(yy / 5.0)) ** 2
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, (100 + 2 * rng.poisson(base, (12, 64, 64))).astype(np.uint16))
    np.save(tmp_path / "empty.npy", np.zeros((0, 64, 64), np.uint16))
    out = ["--out", tmp_path / "cal.yaml"]
    code, text = run_cli(capsys, monkeypatch, "calibrate", tmp_path / "empty.npy", *out)
    assert_clear_error(code, text, "empty.npy holds no frames", "repeats of a still field")
    code, text = run_cli(capsys, monkeypatch, "calibrate", stack, *out, "--dark", tmp_path / "empty.npy")
    assert_clear_error(code, text, "--dark", "holds no frames")
    (tmp_path / "folder").mkdir()
    code, text = run_cli(capsys, monkeypatch, "calibrate", stack, "--out", tmp_path / "folder")
    assert_clear_error(code, text, "--out", "is a folder, not a file",
                       str(tmp_path / "folder" / "calibration.yaml"))
    code, text = run_cli(capsys, monkeypatch, "calibrate", stack, *out, "--plot", tmp_path / "folder")
    assert_clear_error(code, text, "--plot", "is a folder, not a file")
    for option, value, rng_text in (("--read-noise", "-1", "greater than or equal to 0"),
                                    ("--offset", "-100", "greater than or equal to 0"),
                                    ("--bit-depth", "0", "greater than or equal to 1"),
                                    ("--bit-depth", "40", "less than or equal to 32"),
                                    ("--seed", "-1", "greater than or equal to 0")):
        code, text = run_cli(capsys, monkeypatch, "calibrate", stack, *out, option, value)
        assert_usage_error(code, text, option, rng_text)
    assert not (tmp_path / "cal.yaml").exists() and not (tmp_path / "folder.png").exists()


# -------------------------------------------------------------------------------------------- view
def test_view_screenshot_into_a_folder(capsys, monkeypatch, series_run, tmp_path):
    store = series_run / "channel-DAPI"
    (tmp_path / "shots").mkdir()
    code, text = run_cli(capsys, monkeypatch, "view", store, "--screenshot", tmp_path / "shots")
    assert_clear_error(code, text, "--screenshot", "is a folder, not a file",
                       str(tmp_path / "shots" / "view.png"))
    (tmp_path / "file").write_text("x")
    code, text = run_cli(capsys, monkeypatch, "view", store, "--screenshot", tmp_path / "file" / "v.png")
    assert_clear_error(code, text, "--screenshot", "is a file, not a folder")


# ------------------------------------------------------------------------------------------- bench
def test_bench_pipeline_creates_a_missing_dir(capsys, monkeypatch, tmp_path, tiny_model_path):
    folder = tmp_path / "scratch" / "disk-under-test"  # neither level exists yet
    code, text = run_cli(capsys, monkeypatch, "bench", "pipeline", "--dir", folder, "--disk-mb", "8",
                         "--frames-512", "2", "--frames-2048", "2", "--live-frames", "2", "--engine", "torch",
                         "--big", "128", "--live-sizes", "32,48",
                         "--model", tiny_model_path, "--json", tmp_path / "out" / "pipeline.json")
    assert code == 0, text
    assert folder.is_dir() and not any(folder.iterdir())  # the output folder stays, its scratch is removed
    rows = json.loads((tmp_path / "out" / "pipeline.json").read_text())["rows"]
    assert [r["test"] for r in rows] == ["disk", "raw-write", "raw-write", "raw-peers", "raw-sustain",
                                         "raw-sustain+enhance"] + ["live"] * 10
    live = [(r["input"], r["policy"], r.get("consistency"), r.get("paced_by")) for r in rows[6:]]
    assert live == [(f"{n}x{n}", *row) for n in (32, 48) for row in
                    (("engine only", None, None), ("complete", False, None), ("complete", True, None),
                     ("preview", True, "engine"), ("preview", True, "pipeline"))]
    assert all(r["ratio_to_engine"] > 0 for r in rows[6:] if r["policy"] == "complete")
    assert rows[3]["tensorstore_fps"] is None or rows[3]["ratio_to_tensorstore"] > 0
    if rows[3]["tensorstore_fps"] is not None:  # one ratio per interleaved round, their median reported
        rounds = rows[3]["ratio_to_tensorstore_rounds"]
        assert len(rounds) == 5
        assert rows[3]["ratio_to_tensorstore"] == pytest.approx(np.median(rounds), abs=1e-3)
    assert rows[3]["one_writer_fps"] > 0 and rows[3]["fps"] > 0


def test_bench_scratch_dir_is_created_or_refused(tmp_path):
    from live_pssr.bench.report import scratch_dir
    from live_pssr.errors import ConfigError

    made = scratch_dir(tmp_path / "a" / "b", "x-")
    assert made.parent == tmp_path / "a" / "b" and made.is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        scratch_dir(tmp_path / "f", "x-")


def hook(**change: str) -> list[str]:
    """A tiny ``bench hook`` command line with ``change`` (option name without dashes -> value)."""
    opts = {"sizes": "32", "frames": "3", "exposure": "1", "backend": "mda", "repeats": "1", **change}
    return ["bench", "hook", "--no-enhance", "--quick", *[x for k, v in opts.items() for x in (f"--{k}", v)]]


def viewer(**change: str) -> list[str]:
    opts = {"size": "32", "repeats": "1", "engine": "torch", **change}
    return ["bench", "viewer", "--quick", *[x for k, v in opts.items() for x in (f"--{k}", v)]]


@pytest.mark.parametrize(("args", "named"), [
    (["bench", "pipeline", "--dir", "{file}"], ["--dir", "is a file, not a folder", "created when missing"]),
    (["bench", "pipeline", "--model", "nope"], ["no model named 'nope'", "available models"]),
    (["bench", "pipeline", "--engine", "nope"], ["--engine 'nope' is not an engine", "choose auto"]),
    (["bench", "pipeline", "--json", "{tmp}"], ["--json", "is a folder, not a file"]),
    (["bench", "engines", "--sizes", "abc", "--models", "random"], ["--sizes 'abc'", "e.g. --sizes 128,256"]),
    (["bench", "engines", "--sizes", "0", "--models", "random"], ["numbers >= 16"]),
    (["bench", "engines", "--sizes", "-16", "--models", "random"], ["numbers >= 16"]),
    (["bench", "engines", "--sizes", "32", "--engines", "bogus", "--models", "random", "--device", "cpu"],
     ["--engines: 'bogus' is not an engine", "eager"]),
    (["bench", "engines", "--sizes", "32", "--device", "tpu", "--models", "random"],
     ["--device 'tpu' is not cpu or cuda", "--device cpu"]),
    (hook(sizes="abc"), ["--sizes 'abc'", "e.g. --sizes 512,2048"]),
    (hook(frames="0"), ["--frames '0'", "numbers >= 2"]),
    (hook(exposure="-5"), ["--exposure '-5'", "numbers >= 0.001"]),
    (hook(timing="bogus"), ["--timing 'bogus' is not one of exposure, fast"]),
    (hook(backend="bogus"), ["--backend 'bogus'", "pycromanager"]),
    (hook(policy="bogus"), ["--policy 'bogus'", "preview"]),
    (hook(dir="{file}"), ["--dir", "is a file"]),
    (viewer(fps="0"), ["--fps 0 must be a number above 0"]),
    (viewer(fps="-1"), ["--fps -1 must be a number above 0"]),
    (viewer(seconds="0"), ["--seconds 0 must be a number above 0"]),
])
def test_bench_bad_values(capsys, monkeypatch, tmp_path, args, named):
    (tmp_path / "file").write_text("x")
    args = [str(a).format(file=tmp_path / "file", tmp=tmp_path) for a in args]
    code, text = run_cli(capsys, monkeypatch, *args)
    assert_clear_error(code, text, *named)
    assert "repeat 1/1" not in text  # refused before anything was measured


@pytest.mark.parametrize(("args", "option"), [
    (hook(threads="0"), "--threads"),
    (viewer(size="0"), "--size"),
    (["bench", "pipeline", "--live-frames", "0"], "--live-frames"),
    (["bench", "pipeline", "--frames-512", "1"], "--frames-512"),
])
def test_bench_values_out_of_range(capsys, monkeypatch, args, option):
    code, text = run_cli(capsys, monkeypatch, *args)
    assert_usage_error(code, text, option, "greater than or equal to")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_engines_on_cuda_without_a_gpu(capsys, monkeypatch):
    code, text = run_cli(capsys, monkeypatch, "bench", "engines", "--device", "cuda", "--sizes", "32",
                         "--models", "random")
    assert_clear_error(code, text, "no CUDA GPU is usable here", "--device cpu")
