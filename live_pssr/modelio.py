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
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .errors import ModelFileError

SPEC_KEY = "live_pssr"
DEFAULT_MODEL = "mito-sr4-fast"


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
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


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
    p = Path(name_or_path)
    if p.suffix == ".safetensors" or p.exists() or os.sep in str(name_or_path):
        if not p.is_file():
            raise ModelFileError(
                f"model file {p} does not exist",
                f"check the path, or use a model name: {', '.join(available_models()) or 'none'}",
            )
        return p
    for d in model_dirs():
        cand = d / f"{name_or_path}.safetensors"
        if cand.is_file():
            return cand
    raise ModelFileError(
        f"no model named {name_or_path!r}",
        f"available models: {', '.join(available_models()) or 'none found'} "
        "(or pass a path to a .safetensors file; $LIVE_PSSR_MODELS adds a folder)",
    )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(path: str | Path, net: nn.Module, spec: ModelSpec, half: bool = False) -> Path:
    """Write ``net``'s weights and ``spec`` to ``path`` (``.safetensors``); ``half`` stores fp16."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in net.state_dict().items()
    }
    save_file(state, str(path), metadata={SPEC_KEY: spec.to_json()})
    return path


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
        return ModelSpec.from_json(meta[SPEC_KEY])
    except (json.JSONDecodeError, TypeError) as err:
        raise ModelFileError(f"model file {path} has an unreadable spec ({err})",
                             "re-export the model with this live-pssr version") from err


def load_model(name_or_path: str | Path = DEFAULT_MODEL, device: str = "cpu") -> LoadedModel:
    """Resolve, read and rebuild a model (fp32, eval mode) safely."""
    from safetensors.torch import load_file

    from .nets import build_net

    path = resolve_model(name_or_path)
    spec = read_spec(path)
    try:
        state = load_file(str(path), device=device)
    except Exception as err:
        raise ModelFileError(
            f"model file {path} is corrupt ({err})",
            "re-copy the file, or retrain it with `live-pssr train`",
        ) from err
    net = build_net(spec.arch, **spec.arch_kwargs)
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
    "load_model",
    "read_spec",
    "resolve_model",
    "save_model",
]

