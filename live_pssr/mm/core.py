"""Micro-Manager cores for live-pssr: the simulated system, a hardware configuration, their metadata.

* :func:`simulated_core` builds a real MMCore (pymmcore-plus's ``UniMMCore``) with the
  :class:`~live_pssr.mm.camera.SimulatedCamera` as camera ``Cam``,
  :class:`~live_pssr.mm.stages.SimulatedFocus` as focus drive ``Z`` and
  :class:`~live_pssr.mm.stages.SimulatedXYStage` as XY stage ``XY``, a ``Channel`` group
  (``LowLaser`` = the config's laser power, ``HighLaser`` = 1.0) and a pixel size. Auto-shutter
  is off (there is no shutter device; pymmcore-plus's MDA would otherwise try to close one).
* :func:`load_core` loads a Micro-Manager ``.cfg`` file: ``UniMMCore`` when the file declares
  Python devices (``#py pyDevice,...`` lines), else ``CMMCorePlus`` with the device adapters of
  a Micro-Manager installation.
* :func:`core_metadata` describes the acquisition settings (camera, exposure, pixel size, ROI,
  binning, versions) for the run store.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata as _md
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..sim import MicroscopeConfig

CAMERA, FOCUS, XY_STAGE, CHANNEL_GROUP = "Cam", "Z", "XY", "Channel"
#: the package versions this integration was written and tested against (see pycromanager_bridge)
PACKAGES = ("pymmcore-plus", "pymmcore", "pycromanager", "useq-schema")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the Micro-Manager Python packages (None when missing)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = None
    return out


@contextmanager
def direct_signals() -> Iterator[None]:
    """Cores built inside deliver MDA events on the acquisition thread (psygnal).

    pymmcore-plus picks Qt signals when a QApplication exists (the viewer, napari), and Qt queues
    cross-thread events to the GUI loop: frames would then wait for, or without a running loop
    never reach, the session. live-pssr's hook is thread-safe, so its own cores use direct calls.
    A user's ``$PYMM_SIGNALS_BACKEND`` is respected.
    """
    if "PYMM_SIGNALS_BACKEND" in os.environ:
        yield
        return
    os.environ["PYMM_SIGNALS_BACKEND"] = "psygnal"
    try:
        yield
    finally:
        os.environ.pop("PYMM_SIGNALS_BACKEND", None)


def _empty_adapter_dir() -> str:
    """An empty device-adapter folder: silences pymmcore-plus's search for a Micro-Manager install."""
    path = Path(tempfile.gettempdir()) / "live-pssr-no-adapters"
    path.mkdir(exist_ok=True)
    return str(path)


def simulated_core(
    config: MicroscopeConfig | None = None,
    *,
    exposure_ms: float = 100.0,
    reference_exposure_ms: float = 100.0,
    timing: str = "exposure",
    bank_size: int = 0,
    keep_checksums: bool = False,
    core_class: type | None = None,
) -> Any:
    """A real MMCore with the simulated microscope as a Python camera (see module docstring).

    Parameters
    ----------
    config : MicroscopeConfig, optional
        Sample and camera (sensor ``height`` x ``width``, pixel size, laser power, seed...).
    exposure_ms, reference_exposure_ms, timing, bank_size, keep_checksums
        Passed to :class:`~live_pssr.mm.camera.SimulatedCamera`.
    core_class : type, optional
        A ``UniMMCore`` subclass (pycromanager needs
        :class:`~live_pssr.mm.pycromanager_bridge.SnakeUniMMCore`).

    Returns
    -------
    UniMMCore
        Initialised core; the camera is ``core.getCameraDevice()``'s device (``"Cam"``).
    """
    from ._pymmcore import UniMMCore
    from .camera import SimulatedCamera
    from .stages import SimulatedFocus, SimulatedXYStage

    config = config or MicroscopeConfig()
    with direct_signals():
        core = (core_class or UniMMCore)(mm_path=_empty_adapter_dir())
    camera = SimulatedCamera(config, exposure_ms=exposure_ms, reference_exposure_ms=reference_exposure_ms,
                             timing=timing, bank_size=bank_size, keep_checksums=keep_checksums)
    core.loadPyDevice(CAMERA, camera)
    core.initializeDevice(CAMERA)
    core.setCameraDevice(CAMERA)
    core.loadPyDevice(FOCUS, SimulatedFocus())
    core.initializeDevice(FOCUS)
    core.setFocusDevice(FOCUS)
    core.loadPyDevice(XY_STAGE, SimulatedXYStage())
    core.initializeDevice(XY_STAGE)
    core.setXYStageDevice(XY_STAGE)
    core.defineConfig(CHANNEL_GROUP, "LowLaser", CAMERA, "LaserPower", str(config.laser_power))
    core.defineConfig(CHANNEL_GROUP, "HighLaser", CAMERA, "LaserPower", "1.0")
    core.setChannelGroup(CHANNEL_GROUP)
    core.definePixelSizeConfig("Res")  # no properties: always the current one
    core.setPixelSizeUm("Res", config.pixel_size_um)
    core.setPixelSizeConfig("Res")
    core.setAutoShutter(False)
    return core


def simulated_camera(core: Any) -> Any:
    """The :class:`~live_pssr.mm.camera.SimulatedCamera` instance of a :func:`simulated_core`."""
    from .camera import SimulatedCamera

    label = core.getCameraDevice()
    device = core._pydevices[label]  # noqa: SLF001 - unicore keeps Python devices here
    if not isinstance(device, SimulatedCamera):
        raise TypeError(f"camera {label!r} is not a SimulatedCamera")
    return device


def load_core(config_file: str | Path, mm_path: str | Path | None = None) -> Any:
    """Load a Micro-Manager hardware configuration into a new core.

    Parameters
    ----------
    config_file : path
        A Micro-Manager ``.cfg`` file (as saved by Micro-Manager's Hardware Configuration Wizard).
    mm_path : path, optional
        Micro-Manager installation folder holding the device adapters (default: pymmcore-plus's
        search: ``$MICROMANAGER_PATH``, ``mmcore install`` locations, the application folder).

    Raises
    ------
    ConfigError
        The file is missing or Micro-Manager could not load it (message from MMCore).
    """
    path = Path(config_file).expanduser()
    if not path.is_file():
        raise ConfigError(f"Micro-Manager configuration {path} not found",
                          "pass the .cfg file saved by Micro-Manager's Hardware Configuration Wizard "
                          "(or use --simulate)")
    text = path.read_text(encoding="utf-8", errors="replace")  # only the '#py' lines are read here
    has_py_devices = any(line.lstrip().startswith("#py ") for line in text.splitlines())
    if has_py_devices:
        from ._pymmcore import UniMMCore

        with direct_signals():
            core = UniMMCore(mm_path=str(mm_path) if mm_path else _empty_adapter_dir())
    else:
        from ._pymmcore import CMMCorePlus

        with direct_signals():
            core = CMMCorePlus(mm_path=str(mm_path) if mm_path else None)
    try:
        core.loadSystemConfiguration(str(path.resolve()))
    except Exception as err:  # MMCore raises RuntimeError/OSError/ValueError with its own text
        adapters = core.getDeviceAdapterSearchPaths() if hasattr(core, "getDeviceAdapterSearchPaths") else []
        raise ConfigError(
            f"Micro-Manager could not load {path}: {str(err).strip().splitlines()[-1] if str(err) else err}",
            "check that the file loads in Micro-Manager itself and that its device adapters are "
            f"installed (searched: {', '.join(map(str, adapters)) or 'none'}; pass --mm-path DIR "
            "or run `mmcore install`)",
        ) from err
    if not core.getCameraDevice():
        raise ConfigError(f"{path} defines no camera (Core-Camera is empty)",
                          "set a default camera in the configuration (Property,Core,Camera,<label>)")
    return core


def core_metadata(core: Any) -> dict[str, Any]:
    """Acquisition settings worth storing with a run: camera, exposure, pixel size, ROI, versions."""
    out: dict[str, Any] = {"versions": package_versions()}

    def get(key: str, fn: Any) -> None:
        try:
            out[key] = fn()
        except Exception:  # a device that cannot answer: leave the field out
            pass

    camera = core.getCameraDevice()
    out["camera"] = camera
    get("camera_library", lambda: str(core.getDeviceLibrary(camera)))
    get("camera_name", lambda: str(core.getDeviceName(camera)))
    get("exposure_ms", lambda: float(core.getExposure()))
    get("pixel_size_um", lambda: float(core.getPixelSizeUm()))
    get("roi", lambda: [int(v) for v in core.getROI()])
    get("binning", lambda: str(core.getProperty(camera, "Binning")))
    get("image_shape", lambda: [int(core.getImageHeight()), int(core.getImageWidth())])
    get("bit_depth", lambda: int(core.getImageBitDepth()))
    get("mmcore", lambda: str(core.getVersionInfo()))
    get("device_api", lambda: str(core.getAPIVersionInfo()))
    get("channel_group", lambda: str(core.getChannelGroup()))
    get("focus", lambda: str(core.getFocusDevice()))
    get("system_config", lambda: str(getattr(core, "_last_sys_config", "") or ""))
    return out
