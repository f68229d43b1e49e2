"""live-pssr with its core dependencies only: no Qt, no OpenVINO, no Micro-Manager packages.

A server or a GPU box installs ``pip install live-pssr`` without extras. This module builds such a
virtual environment once (``torch`` as in the development set-up, then ``pip install -e REPO``
without extras: pip resolves the core dependencies; cached under the temp folder by a hash of the
core dependency list, the Python version and the repository path) and runs the library and the
CLI in it: imports, ``--help``, a headless demo with ``--engine auto``, offline ``enhance``; the
optional features say which extra to install. Every run records which modules got imported and
checks that no Qt, OpenVINO or Micro-Manager module is among them.

The first build takes a few minutes (torch comes from pip's local cache or index); later runs
reuse it. Where pip cannot build it (no index reachable), the tests skip and say why.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
#: top-level modules of the optional extras: none may be installed in, or imported by, the core venv
OPTIONAL = ("PySide6", "shiboken6", "qtpy", "pyqtgraph", "PyQt5", "PyQt6", "openvino", "pymmcore_plus",
            "pymmcore", "pycromanager", "useq")
BUILD_TIMEOUT_S = 1200


def _torch_pin() -> str:
    import torch

    return f"torch=={torch.__version__.split('+')[0]}"  # the wheel the development venv already has


def _key() -> str:
    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    text = json.dumps([sys.version_info[:2], sorted(core), _torch_pin(), str(REPO)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _pip(venv: Path, *args: str, log: Path) -> None:
    cmd = [str(_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", *args]
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
    if r.returncode:
        tail = "\n".join(log.read_text().splitlines()[-8:])
        raise RuntimeError(f"pip install {' '.join(args)} failed (exit {r.returncode}):\n{tail}")


def build_venv(root: Path | None = None) -> Path:
    """The core-only venv (built once, reused while its key holds); raises RuntimeError when pip fails."""
    root = root or Path(tempfile.gettempdir())
    venv = root / f"live-pssr-headless-{_key()}"
    done = venv / ".live-pssr-complete"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session on this machine may be building it
        if done.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        log = root / f"{venv.name}.log"
        log.write_text("")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        _pip(venv, "-q", _torch_pin(), log=log)
        _pip(venv, "-q", "-e", str(REPO), log=log)  # no extras: pip resolves the core dependencies
        done.write_text(json.dumps({"key": _key(), "repo": str(REPO)}))
    return venv


@pytest.fixture(scope="module")
def venv() -> Path:
    try:
        path = build_venv()
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"could not build the core-only venv (no package index reachable?): {err}")
    present = subprocess.run(
        [str(_python(path)), "-c", "import importlib.util as u, sys; "
         f"print(' '.join(m for m in {OPTIONAL!r} if u.find_spec(m)))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert not present, f"the core dependencies pulled in optional packages: {present} (see pyproject.toml)"
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH")}
    out["LIVE_PSSR_CACHE"] = str(tmp_path_factory.mktemp("cache"))  # `auto` calibrates here, not in ~
    out["COLUMNS"] = "200"
    return out


#: run the CLI in-process and report, at exit, the optional modules that were imported
_CLI_WITH_MODULES = """
import atexit, json, sys
optional = {optional!r}
def report():
    mods = sorted(m for m in sys.modules if m.split('.')[0] in optional)
    print('IMPORTED-OPTIONAL ' + json.dumps(mods), file=sys.stderr)
    print('IMPORTED-COUNT ' + str(len(sys.modules)), file=sys.stderr)
atexit.register(report)
sys.argv = ['live-pssr'] + {args!r}
from live_pssr.cli import main
main()
"""


def cli(venv: Path, env: dict[str, str], *args: str, cwd: Path | None = None,
        timeout: float = 240) -> tuple[int, str, list[str]]:
    """Run ``live-pssr ARGS`` in the core venv: (exit status, stdout + stderr, optional modules imported)."""
    code = _CLI_WITH_MODULES.format(optional=OPTIONAL, args=list(args))
    r = subprocess.run([str(_python(venv)), "-c", code], capture_output=True, text=True, env=env,
                       cwd=cwd or REPO, timeout=timeout)
    text = r.stdout + r.stderr
    line = next(ln for ln in text.splitlines() if ln.startswith("IMPORTED-OPTIONAL "))
    return r.returncode, text, json.loads(line.removeprefix("IMPORTED-OPTIONAL "))


def test_library_imports_without_optional_packages(venv: Path, env: dict[str, str]) -> None:
    code = f"""
import json, sys
import live_pssr
from live_pssr.pipeline import LivePipeline
from live_pssr.live.session import LiveSession
from live_pssr.enhancer import build_enhancer
import live_pssr.cli, live_pssr.engines, live_pssr.offline, live_pssr.train, live_pssr.store
import live_pssr.viewer, live_pssr.mm, live_pssr.mm.core, live_pssr.live.runners, live_pssr.evaluate
from live_pssr.engines.select import candidates
print(json.dumps({{"optional": sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r}),
                  "cpu_candidates": [c[0] for c in candidates("cpu")],
                  "versions": live_pssr.mm.core.package_versions(), "modules": len(sys.modules)}}))
"""
    r = subprocess.run([str(_python(venv)), "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    assert out["optional"] == []
    assert "openvino" not in out["cpu_candidates"] and "torch" in out["cpu_candidates"]
    assert set(out["versions"].values()) == {None}  # the session records MM versions without needing them


def test_cli_help(venv: Path, env: dict[str, str]) -> None:
    r = subprocess.run([str(venv / "bin" / "live-pssr"), "--help"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    for command in ("demo", "acquire", "view", "enhance", "train", "bench"):
        assert command in r.stdout
    rc, text, optional = cli(venv, env, "bench", "--help")
    assert rc == 0 and optional == [], text


def test_headless_demo_with_auto_engine(venv: Path, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "demo.ome.zarr"
    rc, text, optional = cli(venv, env, "demo", "--headless", "--frames", "5", "--size", "64",
                             "--engine", "auto", "--out", str(out))
    assert rc == 0, text
    assert optional == [], f"imported optional modules: {optional}"
    assert re.search(r"frames acquired\s+5\b", text) and re.search(r"raw written\s+5\b", text), text
    engine = next(ln for ln in text.splitlines() if "policy / engine" in ln).split("/")[-1].strip()
    assert engine.split(":")[0] in ("onnxruntime", "torch"), engine  # auto skipped the missing OpenVINO
    rc, text, optional = cli(venv, env, "info", str(out))
    assert rc == 0 and optional == [], text


def test_offline_enhance_tif(venv: Path, env: dict[str, str], tmp_path: Path) -> None:
    import tifffile

    frames = (100 + np.random.default_rng(0).poisson(200, (2, 32, 40))).astype(np.uint16)
    tifffile.imwrite(tmp_path / "tiny.tif", frames)
    rc, text, optional = cli(venv, env, "enhance", str(tmp_path / "tiny.tif"), "-o",
                             str(tmp_path / "out.tif"))
    assert rc == 0, text
    assert optional == [], f"imported optional modules: {optional}"
    out = tifffile.imread(tmp_path / "out.tif")
    assert out.shape == (2, 128, 160) and out.dtype == np.uint16


@pytest.mark.parametrize(("args", "extra"), [
    (["acquire", "--simulate", "--frames", "2", "--headless", "--out", "{tmp}/a.ome.zarr"], "mm"),
    (["demo", "--headless", "--frames", "2", "--size", "32", "--engine", "openvino",
      "--out", "{tmp}/o.ome.zarr"], "openvino"),
    (["view", "{tmp}/none.ome.zarr"], "viewer"),
    (["bench", "viewer"], "viewer"),
], ids=["acquire", "engine-openvino", "view", "bench-viewer"])
def test_optional_features_name_their_extra(venv: Path, env: dict[str, str], tmp_path: Path,
                                            args: list[str], extra: str) -> None:
    if args[0] == "view":  # a real store, so that the viewer (not the path) is what is missing
        rc, text, _ = cli(venv, env, "demo", "--headless", "--frames", "2", "--size", "32",
                          "--engine", "torch", "--out", str(tmp_path / "none.ome.zarr"))
        assert rc == 0, text
    rc, text, optional = cli(venv, env, *(a.format(tmp=tmp_path) for a in args))
    assert rc == 2, text
    assert f'pip install "live-pssr[{extra}]"' in text, text
    assert "Traceback" not in text, text
    assert not [m for m in optional if m.split(".")[0] in ("PySide6", "openvino", "pymmcore_plus")]


if __name__ == "__main__":  # build (or find) the venv ahead of the tests: python tests/test_headless.py
    print(build_venv())
