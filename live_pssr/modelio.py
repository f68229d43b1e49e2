"""Model files: safetensors weights whose header says how to rebuild and use the network.

A model is one ``NAME.safetensors`` file (weights only: loading never unpickles anything) with a
``live_pssr`` metadata entry holding a JSON :class:`ModelSpec` (architecture, its arguments,
upscale, frames in, normalisation, training provenance), beside a ``NAME.md`` model card.

Shipped models live in the repository's top-level ``models/`` folder (installed into the wheel as
``live_pssr/_shipped_models``); ``$LIVE_PSSR_MODELS`` adds a folder of the user's own models.
:func:`resolve_model` turns a name or path into a file, :func:`load_model` into a ready network.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .errors import ModelFileError

SPEC_KEY = "live_pssr"
DEFAULT_MODEL = "mito-sr4-fast"
#: the newest model-file format this version reads
FORMAT_VERSION = 1
TARGET_FRAMES = ("newest", "centre")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network and feed it data."""

    name: str
    arch: str
    arch_kwargs: dict[str, Any]
    upscale: int
    in_frames: int = 1
    #: which frame of a multi-frame window the output belongs to: "newest" (zero-lag live) or "centre"
    target_frame: str = "newest"
    norm_low: float = 1.0
    norm_high: float = 99.8
    #: free-form provenance: data, crappifier, config, scores, training time
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"the spec is a JSON {type(data).__name__}, not an object")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def problems(self) -> list[str]:
        """What makes this spec impossible to use (empty when it is valid); each names its field."""
        out: list[str] = []

        def whole(name: str, value: Any, low: int) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                out.append(f"{name} is {value!r} (must be a whole number >= {low})")

        for name in ("name", "arch"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                out.append(f"{name} is {value!r} (must be a non-empty text)")
        if not isinstance(self.arch_kwargs, dict):
            out.append(f"arch_kwargs is {self.arch_kwargs!r} (must be a mapping of the network's arguments)")
        whole("upscale", self.upscale, 1)
        whole("in_frames", self.in_frames, 1)
        if self.target_frame not in TARGET_FRAMES:
            out.append(f"target_frame is {self.target_frame!r} (must be one of {', '.join(TARGET_FRAMES)})")
        elif (self.target_frame == "centre" and isinstance(self.in_frames, int)
              and self.in_frames >= 1 and self.in_frames % 2 == 0):
            out.append(f"target_frame is 'centre' but in_frames is {self.in_frames} "
                       "(centre needs an odd number)")
        norms_ok = True
        for name in ("norm_low", "norm_high"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or not 0 <= value <= 100):
                out.append(f"{name} is {value!r} (must be a percentile between 0 and 100)")
                norms_ok = False
        if norms_ok and self.norm_low >= self.norm_high:
            out.append(f"norm_low {self.norm_low!r} is not below norm_high {self.norm_high!r} "
                       "(the normalisation range would be empty)")
        if isinstance(self.arch_kwargs, dict):
            for name in ("upscale", "in_frames"):
                if name in self.arch_kwargs and self.arch_kwargs[name] != getattr(self, name):
                    out.append(f"arch_kwargs.{name} is {self.arch_kwargs[name]!r} but {name} is "
                               f"{getattr(self, name)!r} (they must agree)")
        if not isinstance(self.training, dict):
            out.append(f"training is {self.training!r} (must be a mapping)")
        whole("format_version", self.format_version, 1)
        return out


@dataclass
class LoadedModel:
    """A network in eval mode with its spec and identity."""

    net: nn.Module
    spec: ModelSpec
    path: Path
    sha256: str

    @property
    def model_id(self) -> str:
        """``name@hash12``: what stores and benchmarks record."""
        return f"{self.spec.name}@{self.sha256[:12]}"


def model_dirs() -> list[Path]:
    """Folders searched for model names, in order."""
    dirs = []
    if os.environ.get("LIVE_PSSR_MODELS"):
        dirs.append(Path(os.environ["LIVE_PSSR_MODELS"]))
    here = Path(__file__).resolve().parent
    dirs += [here.parent / "models", here / "_shipped_models"]
    return [d for d in dirs if d.is_dir()]


def available_models() -> list[str]:
    """Names of the models found in :func:`model_dirs`."""
    return sorted({p.stem for d in model_dirs() for p in d.glob("*.safetensors")})


def resolve_model(name_or_path: str | Path) -> Path:
    """Return the model file for a shipped/user model name or a path."""
    p, text = Path(name_or_path), str(name_or_path)
    if not text.strip():
        raise ModelFileError("no model given (an empty name)",
                             f"pass a model name: {', '.join(available_models()) or 'none found'}, "
                             "or a path to a .safetensors file")
    path_like = p.suffix == ".safetensors" or os.sep in text
    if p.is_dir():  # a folder: a mistake, unless a bare name that is also a model's name
        found = None if path_like else _named_model(text)
        if found is None:
            raise _folder_error(p)
        return found
    if path_like or p.exists():
        if not p.is_file():
            raise ModelFileError(
                f"model file {p} does not exist",
                f"check the path, or use a model name: {', '.join(available_models()) or 'none'}",
            )
        return p
    found = _named_model(str(name_or_path))
    if found is not None:
        return found
    raise ModelFileError(
        f"no model named {name_or_path!r}",
        f"available models: {', '.join(available_models()) or 'none found'} "
        "(or pass a path to a .safetensors file; $LIVE_PSSR_MODELS adds a folder)",
    )


def _named_model(name: str) -> Path | None:
    for d in model_dirs():
        cand = d / f"{name}.safetensors"
        if cand.is_file():
            return cand
    return None


def _folder_error(folder: Path) -> ModelFileError:
    """A folder was given where a model file is needed: say so, and what to pass instead."""
    files = sorted(folder.glob("*.safetensors"))
    shipped = ", ".join(available_models()) or "none found"
    if files:
        listed = ", ".join(str(f) for f in files[:10])
        listed += f" (and {len(files) - 10} more)" if len(files) > 10 else ""
        hint = f"pass one model file from it: {listed}; or a model name: {shipped}"
    else:
        hint = (f"pass a .safetensors model file (there is none in {folder}) or a model name: {shipped}; "
                "LIVE_PSSR_MODELS=FOLDER adds a folder of models to the names")
    return ModelFileError(f"{folder} is a folder, not a model file", hint)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(path: str | Path, net: nn.Module, spec: ModelSpec, half: bool = False) -> Path:
    """Write ``net``'s weights and ``spec`` to ``path`` (``.safetensors``); ``half`` stores fp16."""
    from safetensors.torch import save_file

    check_spec(spec, f"the spec for {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in net.state_dict().items()
    }
    save_file(state, str(path), metadata={SPEC_KEY: spec.to_json()})
    # safetensors writes 0600 whatever the umask: a model on a shared lab machine must be readable
    # by whoever the umask lets read the user's other files
    path.chmod(0o666 & ~_umask())
    return path


def _umask() -> int:
    """The process's umask: from ``/proc`` where there is one (``os.umask``, the fallback, sets it
    for every thread while it reads it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_spec(path: str | Path) -> ModelSpec:
    """Read only the spec of a model file (cheap: the header)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ModelFileError(
            f"model file {path} is corrupt or not a safetensors file ({err})",
            "re-copy the file, or retrain it with `live-pssr train`",
        ) from err
    if SPEC_KEY not in meta:
        raise ModelFileError(
            f"model file {path} has no live-pssr spec in its header",
            "export models with live_pssr.modelio.save_model (or `live-pssr train`)",
        )
    try:
        spec = ModelSpec.from_json(meta[SPEC_KEY])
    except (json.JSONDecodeError, TypeError) as err:
        raise ModelFileError(f"model file {path} has an unreadable spec ({err})",
                             "re-export the model with this live-pssr version") from err
    check_spec(spec, f"model file {path}")
    return spec


def check_spec(spec: ModelSpec, where: str = "the model spec") -> None:
    """Raise :class:`ModelFileError` naming every impossible field of ``spec`` (``where``: whose)."""
    problems = spec.problems()
    if not problems:
        if spec.format_version > FORMAT_VERSION:
            raise ModelFileError(
                f"{where} has format_version {spec.format_version}; this live-pssr reads up to "
                f"{FORMAT_VERSION}", "upgrade live-pssr (pip install -U live-pssr) to use this model")
        return
    raise ModelFileError(
        f"{where} has an impossible spec: {'; '.join(problems)}",
        "the header was damaged or edited by hand: re-export the model with "
        "live_pssr.modelio.save_model (a valid ModelSpec), retrain it with `live-pssr train`, "
        "or use a shipped model",
    )


def load_model(name_or_path: str | Path = DEFAULT_MODEL, device: str = "cpu") -> LoadedModel:
    """Resolve, read and rebuild a model (fp32, eval mode) safely; a bioimage.io package via :mod:`.zoo`."""
    from safetensors.torch import load_file

    from .nets import build_net
    from .zoo import is_package_path, load_package

    if is_package_path(name_or_path):  # a bioimage.io package (.zip / rdf.yaml): ONNX weights
        return load_package(name_or_path, device)
    path = resolve_model(name_or_path)
    spec = read_spec(path)
    try:
        state = load_file(str(path), device=device)
    except Exception as err:
        raise ModelFileError(
            f"model file {path} is corrupt ({err})",
            "re-copy the file, or retrain it with `live-pssr train`",
        ) from err
    try:
        net = build_net(spec.arch, **spec.arch_kwargs)
    except ValueError as err:  # the architecture rejects its arguments (e.g. in_frames 0)
        if isinstance(err, ModelFileError):
            raise
        raise ModelFileError(
            f"model file {path}: architecture {spec.arch} rejects arch_kwargs {spec.arch_kwargs} ({err})",
            "the header was damaged or edited by hand: re-export or retrain the model",
        ) from err
    for name in ("upscale", "in_frames"):
        built = getattr(net, name, None)
        if isinstance(built, int) and built != getattr(spec, name):
            raise ModelFileError(
                f"model file {path}: the spec says {name} {getattr(spec, name)} but its network "
                f"{spec.arch} {spec.arch_kwargs} is built with {name} {built}",
                f"the header was damaged or edited by hand: re-export the model with arch_kwargs "
                f"{{{name}: {getattr(spec, name)}}} (or retrain it)",
            )
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelFileError(
            f"weights in {path} do not fit architecture {spec.arch} {spec.arch_kwargs}: "
            f"{str(err).splitlines()[0]}",
            "the checkpoint comes from an incompatible architecture; retrain or pick another model",
        ) from err
    net.eval().to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    return LoadedModel(net=net, spec=spec, path=path, sha256=file_sha256(path))


def check_input_channels(spec: ModelSpec, channels: int) -> None:
    """Raise when data with ``channels`` planes per time point cannot feed ``spec``'s network."""
    if channels != 1:
        raise ModelFileError(
            f"model {spec.name} takes one channel (x{spec.in_frames} frames in time) but the data "
            f"has {channels} channels",
            "select one channel (e.g. --channel 1 for mitochondria) or train a model per channel",
        )


__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "ModelSpec",
    "available_models",
    "check_input_channels",
    "check_spec",
    "load_model",
    "read_spec",
    "resolve_model",
    "save_model",
]

