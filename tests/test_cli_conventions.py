"""CLI conventions and quiet imports: --version, choices in --help, acquire --sequence, telemetry, logging.

Commands run through typer's ``CliRunner`` (and, for error messages, through the console entry
point :func:`live_pssr.cli.main`, as a user's ``live-pssr ...`` does); ``acquire --sequence`` runs
a real acquisition on the simulated camera of a real ``UniMMCore``; import side effects are
checked in fresh subprocesses.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from live_pssr.cli import app

from .test_cli_errors import run_cli

pytestmark = pytest.mark.filterwarnings("ignore:No-op in MMCore:DeprecationWarning")

PACKAGE = Path(__file__).resolve().parents[1] / "live_pssr"
WIDE = {"COLUMNS": "300"}  # rich wraps help and errors to the terminal: one option per line


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], env=WIDE, catch_exceptions=False)




def _commands() -> list[list[str]]:
    """Every command and bench sub-command, as argv prefixes."""
    group = get_command(app)
    out = []
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        out.extend([[name, sub] for sub in subs] if subs else [[name]])
    return out


# ------------------------------------------------------------------------------------------ --version
def test_version_names_live_pssr_python_and_the_engines():
    res = invoke("--version")
    assert res.exit_code == 0, res.output
    line = res.output.strip()
    assert line.startswith(f"live-pssr {metadata.version('live-pssr')} (Python ")
    for dist in ("torch", "onnxruntime"):
        assert f"{dist} {metadata.version(dist)}" in line
    import live_pssr

    assert live_pssr.__version__ == metadata.version("live-pssr")


def test_version_from_python_m():
    proc = subprocess.run([sys.executable, "-m", "live_pssr", "--version"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **WIDE})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"live-pssr {metadata.version('live-pssr')}")


# ------------------------------------------------------------------------------------------ --help
def test_every_command_has_help_that_lists_its_choices():
    commands = _commands()
    assert ["acquire"] in commands and ["bench", "engines"] in commands
    group = get_command(app)
    for argv in commands:
        res = invoke(*argv, "--help")
        assert res.exit_code == 0, (argv, res.output)
        cmd = group.commands[argv[0]]
        cmd = cmd.commands[argv[1]] if len(argv) > 1 else cmd
        for param in cmd.params:
            descriptor = param.type_descriptor  # typer's record of the option's type
            if descriptor.is_choice:  # an enum option: its values are listed, not just <str>
                listed = "|".join(str(getattr(c, "value", c)) for c in descriptor.choices)
                assert listed in res.output, (argv, param.name, listed)


@pytest.mark.parametrize(("argv", "shown"), [
    (["acquire"], ["<preview|complete>", "<off|commit|SECONDS>", "FILE.yaml|json",
                   "<auto|torch|compile|onnxruntime|openvino|tensorrt>[:fp32|fp16|bf16]"]),
    (["demo"], ["<preview|complete>", "<auto|torch|compile|onnxruntime|openvino|tensorrt>"]),
    (["view"], ["<side|split|blend|enhanced>"]),
    (["calibrate"], ["<auto|temporal|spatial>"]),
    (["train"], ["<cpu|cuda|cuda:N>"]),
])
def test_help_shows_the_values_of_each_option(argv, shown):
    res = invoke(*argv, "--help")
    assert res.exit_code == 0, res.output
    for text in shown:
        assert text in res.output, (text, res.output)


def test_the_listed_names_are_the_real_ones():
    from live_pssr.commands._common import ENGINE_NAMES
    from live_pssr.engines import available_engines

    assert set(ENGINE_NAMES) == {"auto", *available_engines()}
    pytest.importorskip("pyqtgraph")
    from live_pssr.commands.view import DisplayMode
    from live_pssr.viewer import MODES

    assert [m.value for m in DisplayMode] == list(MODES)


@pytest.mark.parametrize(("args", "named"), [
    (["view", "x.ome.zarr", "--mode", "bogus"],
     ["--mode", "'bogus' is not one of", "'side', 'split', 'blend'"]),
    (["calibrate", "x.tif", "--method", "fast"], ["--method", "'fast' is not one of", "'temporal'"]),
    (["demo", "--headless", "--engine", "nope"], ["error: --engine 'nope' is not an engine",
                                                  "fix: choose auto or one of torch, compile"]),
    (["acquire", "--simulate", "--engine", "openvino:fp8"], ["error: --engine 'openvino:fp8': 'fp8' is not a "
                                                            "precision", "fp32, fp16, bf16"]),
])
def test_a_bad_choice_names_the_option_and_the_values(capsys, monkeypatch, tmp_path, args, named):
    monkeypatch.chdir(tmp_path)
    code, text = run_cli(capsys, monkeypatch, *args)
    assert code == 2, text
    assert "Traceback" not in text
    flat = " ".join(text.replace("│", " ").split())
    for part in named:
        assert part in flat, (part, text)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_engine_names_with_a_precision_pass():
    from live_pssr.commands._common import check_engine

    assert check_engine("OpenVINO:BF16") == "openvino:bf16" and check_engine("auto") == "auto"


# ------------------------------------------------------------------------------------ acquire --sequence
def _acquire(tiny_model_path, out: Path, *args: str):
    return invoke("acquire", "--simulate", "--size", "32", "--model", tiny_model_path, "--engine", "torch",
                  "--out", out, "--headless", "--policy", "complete", *args)


def test_acquire_a_yaml_sequence_of_two_channels(tiny_model_path, tmp_path):
    from live_pssr.store import open_store
    from live_pssr.store.reader import series_streams

    seq = tmp_path / "mda.yaml"
    seq.write_text("time_plan: {interval: 0, loops: 3}\nchannels: [LowLaser, HighLaser]\n", encoding="utf-8")
    out = tmp_path / "run"
    res = _acquire(tiny_model_path, out, "--sequence", seq)
    assert res.exit_code == 0, res.output
    assert "sequence mda.yaml: 6 frames (t=3, c=2)" in " ".join(res.output.split())
    streams = series_streams(out)
    assert streams is not None and len(streams) == 2
    readers = {name: open_store(out / name) for name in streams}
    assert all(r.n_frames == 3 and r.status_counts()["live"] + r.status_counts()["after"] == 3
               for r in readers.values())
    low, high = (next(r for n, r in readers.items() if c in n) for c in ("LowLaser", "HighLaser"))
    assert high.raw_frame(0).mean() > 2 * low.raw_frame(0).mean()  # the channel preset was applied
    command = low.run["command"]
    assert command["sequence_file"] == str(seq.resolve()) and command["frames"] == 6
    assert command["sequence"]["channels"] == [{"config": "LowLaser"}, {"config": "HighLaser"}]


def test_acquire_a_json_time_lapse(tiny_model_path, tmp_path):
    from live_pssr.store import open_store

    seq = tmp_path / "mda.json"
    seq.write_text(json.dumps({"time_plan": {"interval": 0.01, "loops": 4}}), encoding="utf-8")
    out = tmp_path / "run.ome.zarr"
    res = _acquire(tiny_model_path, out, "--sequence", seq, "--exposure", "2")
    assert res.exit_code == 0, res.output
    reader = open_store(out)
    assert reader.n_frames == 4 and reader.run["command"]["interval_s"] == pytest.approx(0.01)
    assert np.all(np.diff(reader.records["camera_time_ms"]) > 0)


@pytest.mark.parametrize(("name", "text", "args", "named"), [
    ("mda.yaml", "time_plan: {interval: 0, loops: 3}\n", ["--frames", "5"],
     ["--frames cannot be combined with --sequence", "leave out --frames"]),
    ("mda.yaml", "time_plan: {interval: 0, loops: 3}\n", ["--interval", "1"],
     ["--interval cannot be combined"]),
    ("mda.yaml", "channels: [{config: HighLaser, exposure: 5}]\n", ["--exposure", "3"],
     ["--exposure 3 conflicts", "remove 'exposure'"]),
    ("mda.yaml", "channels: [LowLaser]\n", ["--preset", "Channel=HighLaser"],
     ["--preset Channel=HighLaser conflicts", "its channels set the Channel group"]),
    ("missing.yaml", None, [], ["no such file", "useq-schema MDASequence"]),
    ("mda.txt", "time_plan: {loops: 3}\n", [],
     [".txt is not a sequence file type", "YAML (.yaml, .yml) or JSON"]),
    ("mda.yaml", "time_plan: {loops: 3\n", [], ["is not readable YAML", "line"]),
    ("mda.json", '{"time_plan": ', [], ["is not readable JSON"]),
    ("mda.yaml", "- 1\n- 2\n", [], ["holds list, not an MDASequence mapping"]),
    ("mda.yaml", "tim_plan: {loops: 3}\n", [], ["unknown field(s) tim_plan", "time_plan"]),
    ("mda.yaml", "time_plan: {interval: 0, loops: -3}\n", [],
     ["is not a valid MDASequence", "loops: Input should be greater than 0", "fix the field(s) named"]),
    ("mda.yaml", "metadata: {note: empty}\n", [], ["describes no images"]),
    ("mda.yaml", "channels: [UV]\n", [], ["channel 'UV' of group 'Channel' is not defined", "LowLaser"]),
])
def test_a_bad_sequence_file_or_a_conflict_fails_before_acquiring(capsys, monkeypatch, tiny_model_path,
                                                                  tmp_path, name, text, args, named):
    seq = tmp_path / name
    if text is not None:
        seq.write_text(text, encoding="utf-8")
    out = tmp_path / "run.ome.zarr"
    options = ["--size", "32", "--model", tiny_model_path, "--engine", "torch", "--out", out,
               "--sequence", seq, *args]
    code, output = run_cli(capsys, monkeypatch, "acquire", "--simulate", "--headless", *options)
    assert code == 2, output
    assert "error:" in output and "fix:" in output and "Traceback" not in output
    flat = " ".join(output.split())
    for part in named:
        assert part in flat, (part, output)
    assert not out.exists()


# ------------------------------------------------------------------------------------------ quiet imports
def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    unset = ("CI", "TF_BUILD", "JENKINS_URL", "PYTEST_RUNNING")  # the CI markers decide telemetry too
    base = {k: v for k, v in os.environ.items() if k not in unset}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**base, **env})
    assert proc.returncode == 0, proc.stderr
    return proc


def test_pymmcore_plus_logging_stays_on_its_own_logger(tmp_path):
    """Importing live-pssr's Micro-Manager modules leaves the user's root logger as it was."""
    pytest.importorskip("pymmcore_plus")
    proc = _python(
        "import logging, json\n"
        "logging.basicConfig(level=logging.INFO, format='ROOT %(name)s %(message)s')\n"
        "import live_pssr.mm.camera, live_pssr.mm.core, live_pssr.mm.pycromanager_bridge\n"
        "own = logging.getLogger('pymmcore-plus')\n"
        "logging.getLogger('some.library').debug('debug record')\n"
        "own.info('pymmcore-plus info')\n"
        "print(json.dumps({'root': logging.getLogger().level, 'own': own.level, 'propagate': own.propagate,"
        " 'handlers': sorted(type(h).__name__ for h in own.handlers)}))\n",
        XDG_DATA_HOME=str(tmp_path))  # pymmcore-plus's own log file goes here
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state["root"] == 20  # INFO, as the script set it (pymmcore-plus alone leaves DEBUG)
    assert state["own"] == 10 and state["propagate"] is False  # its file log still gets DEBUG
    assert state["handlers"] == ["RotatingFileHandler", "StreamHandler"]
    assert "ROOT" not in proc.stderr  # neither the debug record nor pymmcore-plus's info reached the root
    log_files = list(tmp_path.rglob("pymmcore-plus.log"))
    assert log_files and "pymmcore-plus info" in log_files[0].read_text(encoding="utf-8")


def test_openvino_is_imported_without_telemetry(tmp_path):
    pytest.importorskip("openvino")
    proc = _python(
        "import json, os\n"
        "from openvino_telemetry.utils.opt_in_checker import OptInChecker\n"
        "default = OptInChecker().check(False, True).name\n"  # no consent file: telemetry on by default
        "from live_pssr.engines.openvino_engine import OpenVINOEngine\n"
        "from live_pssr.engines._openvino import import_openvino\n"
        "ov = import_openvino()\n"
        "import openvino_telemetry as tm\n"
        "print(json.dumps({'default': default, 'consent': tm.Telemetry().consent, 'ci': 'CI' in os.environ,"
        " 'core': bool(ov.Core().available_devices)}))\n",
        HOME=str(tmp_path))
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state == {"default": "NO_FILE", "consent": False, "ci": False, "core": True}
    assert not (tmp_path / "intel").exists()  # no client id written for sending


def test_cache_folder_from_platformdirs_and_the_env_override(monkeypatch, tmp_path):
    from live_pssr.engines.cache import cache_dir, cache_root

    monkeypatch.setenv("LIVE_PSSR_CACHE", str(tmp_path / "mine"))
    assert cache_dir("onnx") == tmp_path / "mine" / "onnx" and (tmp_path / "mine" / "onnx").is_dir()
    monkeypatch.delenv("LIVE_PSSR_CACHE")
    if sys.platform.startswith("linux"):  # platformdirs follows the XDG base directories there
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert cache_root() == tmp_path / "xdg" / "live-pssr"


def _text_io_without_encoding(path: Path) -> list[str]:
    """Calls that open a text file without ``encoding=`` (open / Path.open / read_text / write_text)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("read_text", "write_text"):
            found.append(f"{path.name}:{node.lineno}")
            continue
        if isinstance(func, ast.Name) and func.id == "open":
            mode_at = 1
        elif (isinstance(func, ast.Attribute) and func.attr == "open"
              and not (isinstance(func.value, ast.Name) and func.value.id in ("os", "zarr", "gzip"))):
            mode_at = 0  # Path.open(mode)
        else:
            continue
        modes = [*node.args[mode_at:mode_at + 1], *(k.value for k in node.keywords if k.arg == "mode")]
        mode = next((m.value for m in modes if isinstance(m, ast.Constant)), "r")
        if "b" not in str(mode):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_text_files_are_opened_with_an_explicit_encoding(tmp_path):
    paths = [PACKAGE / "cli.py", PACKAGE / "metrics.py", *(PACKAGE / "commands").glob("*.py"),
             *(PACKAGE / "engines").glob("*.py"), *(PACKAGE / "mm").glob("*.py")]
    found = [hit for p in paths for hit in _text_io_without_encoding(p)]
    assert not found, found
    # the check itself sees what it looks for
    probe = tmp_path / "probe.py"
    probe.write_text("open('a')\nopen('b', 'rb')\nP.read_text()\nP.open('w', encoding='utf-8')\n",
                     encoding="utf-8")
    assert _text_io_without_encoding(probe) == ["probe.py:1", "probe.py:3"]
