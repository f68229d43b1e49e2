"""Training configuration: one YAML file says what to train, on what, and how long.

The file is validated by pydantic models (``extra="forbid"``: a misspelt key is an error, not a
silently ignored default), with ranges on every number and cross-field checks (a denoising model
cannot train on 4x data, FMD pairs have one frame, ...). :func:`load_config` turns every
validation problem into a :class:`~live_pssr.errors.ConfigError` naming the file, the field and
the fix.

Layout (see ``configs/*.yaml``)::

    name: mito-sr4-fast
    model: {arch: fast-sr, upscale: 4, in_frames: 1, arch_kwargs: {width: 24}, target_frame: newest}
    data:
      crop: 64                    # low-res crop side; the target crop is crop * upscale
      sources:
        - {kind: sim, weight: 1.0, laser_power: [0.02, 0.2], sequences: 8}
        - {kind: mito, weight: 1.0, crappifier: {kind: pssr-fluo, scale: 4}}
        - {kind: images, paths: [my_data/], crappifier: {kind: file, path: calib.yaml}}
        - {kind: fmd, fields: [1, 10]}
    train: {steps: 3000, batch: 8, lr: 1e-3, max_minutes: 15, seed: 0}

The whole validated config is stored in the model's ``ModelSpec.training["config"]``, so a model
file says how to reproduce it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError, LivePSSRError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    """Which network to train and how its data is shaped."""

    arch: str = "fast-sr"
    upscale: int = Field(4, ge=1, le=8)
    in_frames: int = Field(1, ge=1, le=9)
    #: extra architecture arguments (``width``, ...); upscale and in_frames are filled in from above
    arch_kwargs: dict[str, Any] = Field(default_factory=dict)
    target_frame: Literal["newest", "centre"] = "newest"
    norm_low: float = Field(1.0, ge=0.0, lt=50.0)
    norm_high: float = Field(99.8, gt=50.0, le=100.0)
    #: store fp16 weights (halves the file; the reference net ships this way)
    half: bool = False

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str) -> str:
        from ..nets import ARCHITECTURES, _load_optional

        _load_optional()
        if v not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {v!r}; use one of {sorted(ARCHITECTURES)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        for key in ("upscale", "in_frames"):
            if key in self.arch_kwargs:
                raise ValueError(f"set {key} in model, not in model.arch_kwargs")
        if self.target_frame == "centre" and self.in_frames % 2 == 0:
            raise ValueError("target_frame 'centre' needs an odd in_frames")
        from ..nets import build_net

        try:  # the network must build from these arguments (a model file will hold them)
            build_net(self.arch, **self.net_kwargs())
        except (ValueError, LivePSSRError) as err:
            raise ValueError(f"arch_kwargs {self.arch_kwargs} do not build {self.arch}: {err}") from None
        return self

    def net_kwargs(self) -> dict[str, Any]:
        """The keyword arguments :func:`live_pssr.nets.build_net` gets (also stored in the spec)."""
        kw = {"in_frames": self.in_frames, "upscale": self.upscale, **self.arch_kwargs}
        if self.arch == "fast-sr" and self.in_frames > 1:
            kw.setdefault("ref_frame", -1 if self.target_frame == "newest" else self.in_frames // 2)
        return kw


class SimSourceConfig(_Strict):
    """The simulated microscope: input ``frame(t)``, target ``ground_truth(t)``."""

    kind: Literal["sim"]
    weight: float = Field(1.0, gt=0)
    #: laser powers are drawn log-uniformly from this range, one per simulated sequence
    laser_power: tuple[float, float] = (0.02, 0.2)
    #: independent simulated specimens (seeds); each gives ``timepoints`` consecutive frames
    sequences: int = Field(6, ge=1, le=1000)
    timepoints: int = Field(12, ge=1, le=1000)
    height: int = Field(128, ge=16, le=2048)
    width: int = Field(128, ge=16, le=2048)
    seed: int = Field(1000, ge=0)
    #: further ``MicroscopeConfig`` fields (photons_high, read_noise, psf_sigma_um, ...)
    microscope: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> SimSourceConfig:
        lo, hi = self.laser_power
        if not 0 < lo <= hi <= 10:
            raise ValueError("laser_power must be [low, high] with 0 < low <= high <= 10")
        for key in ("height", "width", "upscale", "laser_power", "seed"):
            if key in self.microscope:
                raise ValueError(f"set {key} on the sim source itself, not in microscope")
        return self


class StillPairOptions(_Strict):
    """How pairs are made from a high-quality still image (every source that crappifies one)."""

    weight: float = Field(1.0, gt=0)
    #: max sub-pixel shift (low-res pixels) between the frames made for a multi-frame input
    mf_shift: float = Field(0.0, ge=0, le=4)
    #: the target's intensities in the input's units: "fit" = least squares ``input ~ alpha *
    #: downsample(target) + beta`` over each degraded copy (a camera model's gain and offset; the
    #: positive bias PSSR's clipped noise adds to dark areas), "same" = the clean image unchanged
    intensity: Literal["fit", "same"] = "fit"


class CrappifiedSourceBase(StillPairOptions):
    """High-quality still images degraded on the fly by a crappifier."""

    #: ``crappify.make_crappifier`` config; its scale must equal model.upscale
    crappifier: dict[str, Any] = Field(default_factory=lambda: {"kind": "pssr-fluo", "scale": 4})


class ImagesSourceConfig(CrappifiedSourceBase):
    """Folders/files of high-quality images (tif stacks, zarr, OME-Zarr)."""

    kind: Literal["images"]
    #: files or folders; one channel per file (stacks: every plane is an image)
    paths: list[Path] = Field(min_length=1)


class MitoSourceConfig(CrappifiedSourceBase):
    """The registered real high-SNR mitochondria training images (``datasets.mito_train_images``)."""

    kind: Literal["mito"]
    #: a subset of ``datasets.MITO_TRAIN_FILES`` (None = all): keeps one file out of training so a
    #: validation source (``data.val_sources``) can judge on whole images the net never saw
    files: list[str] | None = Field(None, min_length=1)

    @field_validator("files")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        from ..datasets import MITO_TRAIN_FILES

        for name in v or []:
            if name not in MITO_TRAIN_FILES:
                raise ValueError(
                    f"{name!r} is not a mito training file; choose from {list(MITO_TRAIN_FILES)}"
                )
        return v


class RealSourceConfig(CrappifiedSourceBase):
    """Other high-SNR files of the real-data folder (``datasets.real_data_dir()``), by file name.

    For structures beyond mitochondria (e.g. BPAE actin and nuclei): more varied training data.
    The held-out evaluation files are refused.
    """

    kind: Literal["real"]
    files: list[str] = Field(min_length=1)
    #: average this many consecutive planes of a stack into one image (a noisy timelapse such as
    #: the live lysosome crops gives cleaner targets; 1 = every plane as it is)
    average: int = Field(1, ge=1, le=1000)

    @field_validator("files")
    @classmethod
    def _not_held_out(cls, v: list[str]) -> list[str]:
        from ..datasets import FMD_GT, FMD_RAW, MITO_HOLDOUT_FILES

        for name in v:
            if name in MITO_HOLDOUT_FILES or name in (FMD_GT, FMD_RAW) or name.startswith("fmd_"):
                raise ValueError(
                    f"{name} holds evaluation data (held out); use the mito or fmd sources instead"
                )
            if "/" in name or "\\" in name:
                raise ValueError(f"{name!r}: give a file name inside the real-data folder, not a path")
        return v


class FMDSourceConfig(StillPairOptions):
    """Real FMD fields: one raw confocal frame -> the mean of 50 (denoising, upscale 1).

    With a ``crappifier`` the 50-frame means are instead high-quality still images degraded by it
    (any upscale: nuclei for a super-resolution model); the raw frames are then not used, and
    ``mf_shift`` / ``intensity`` apply as for any still source (without one they are refused).
    """

    kind: Literal["fmd"]
    #: inclusive field range; fields 11-20 are the held-out evaluation set
    fields: tuple[int, int] = (1, 10)
    #: also train on every one of the 50 raw repeats of fields 1 and 2 (the only fields whose
    #: repeats are in the data; their mean is the target): 50 noise draws of each instead of one
    raw_repeats: bool = False
    #: ``crappify.make_crappifier`` config: train on the crappified means (None = raw -> mean)
    crappifier: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> FMDSourceConfig:
        if self.crappifier is not None and self.raw_repeats:
            raise ValueError("raw_repeats needs the raw frames; a crappified FMD source uses only the means")
        if self.crappifier is None and ({"mf_shift", "intensity"} & self.model_fields_set):
            raise ValueError(
                "mf_shift and intensity shape crappified pairs; an FMD source without a crappifier "
                "trains on raw frames -> means (add a crappifier or drop them)"
            )
        a, b = self.fields
        if not 1 <= a <= b <= 20:
            raise ValueError("fields must be [first, last] within 1..20")
        if b > 10:
            raise ValueError("FMD fields 11-20 are the held-out evaluation set; train on fields 1-10")
        return self


SourceConfig = Annotated[
    SimSourceConfig | ImagesSourceConfig | MitoSourceConfig | RealSourceConfig | FMDSourceConfig,
    Field(discriminator="kind"),
]


def _range(v: tuple[float, float], name: str, low: float, high: float) -> None:
    a, b = v
    if not low <= a <= b <= high:
        raise ValueError(f"{name} must be [low, high] with {low} <= low <= high <= {high}, got [{a}, {b}]")


class IntensityAugConfig(_Strict):
    """Intensity and contrast augmentation, seeded with the sample (identity by default).

    ``gamma``: the high-quality still image is raised to a power drawn log-uniformly from this
    range (per image and pool refresh, before it is crappified: new contrast between bright and
    faint structures; still sources only). ``haze``: out-of-focus light added to the high-quality
    still image, a wide blur of the image itself (sigma 16 px) scaled to a fraction drawn from
    this range of the image's maximum (per image and refresh, after the gamma, before the
    crappifier: the crappifier's noise then also sits on a bright background, as in widefield
    images; the target keeps the haze, as a widefield truth does). ``scale`` / ``shift``: the
    normalised input and target both become ``a * v + b`` (a drawn uniformly from ``scale``, b
    from ``shift``; every source), so the network sees inputs beyond the exact percentile range
    live frames are normalised to.
    """

    gamma: tuple[float, float] = (1.0, 1.0)
    scale: tuple[float, float] = (1.0, 1.0)
    shift: tuple[float, float] = (0.0, 0.0)
    haze: tuple[float, float] = (0.0, 0.0)

    @model_validator(mode="after")
    def _check(self) -> IntensityAugConfig:
        _range(self.gamma, "gamma", 0.2, 5.0)
        _range(self.haze, "haze", 0.0, 2.0)
        _range(self.scale, "scale", 0.1, 10.0)
        _range(self.shift, "shift", -1.0, 1.0)
        return self


class DataConfig(_Strict):
    """Where training pairs come from and how they are cut."""

    sources: list[SourceConfig] = Field(min_length=1)
    #: low-res (network input) crop side in pixels; the target crop is crop * upscale
    crop: int = Field(64, ge=8, le=1024)
    #: random flips and 90-degree rotations
    augment: bool = True
    #: validation pairs drawn once (fixed seed) from the same sources; sim uses unseen specimens
    val_samples: int = Field(32, ge=1, le=10000)
    #: validate on these sources instead (whole images kept out of ``sources``): the best model is
    #: then chosen on images it never trained on, not on other crops of its training images
    val_sources: list[SourceConfig] | None = Field(None, min_length=1)
    #: target normalisation: "input" = in the input's units with the input frame's percentile range
    #: (outputs come back in the data's units); "own" = by the target's own percentiles
    target_norm: Literal["input", "own"] = "input"
    #: skip crops whose target is nearly empty (fraction of the target's range): avoids training on background
    min_foreground: float = Field(0.0, ge=0, le=1)
    #: intensity/contrast augmentation (None = none)
    intensity: IntensityAugConfig | None = None
    #: resample each high-quality still image to a factor drawn log-uniformly from this range (per
    #: image and pool refresh, before it is crappified; still sources, training only): the same
    #: structures at coarser pixel sizes, as other microscopes sample them. At most 1: enlarging
    #: would blur the target. Measured: it also makes pixel-scale variation rare in the inputs, and
    #: nets trained with it smooth away high-SNR pixel-scale content (configs/mito-sr4-fast-v5zf.yaml).
    zoom: tuple[float, float] = (1.0, 1.0)

    @field_validator("zoom")
    @classmethod
    def _zoom(cls, v: tuple[float, float]) -> tuple[float, float]:
        _range(v, "zoom", 0.1, 1.0)
        return v

    def source_configs(self, val: bool = False) -> list[SourceConfig]:
        """The sources training (``val=False``) or validation reads."""
        return (self.val_sources or self.sources) if val else self.sources


class TrainConfig(_Strict):
    """Optimisation schedule."""

    steps: int = Field(2000, ge=1, le=10_000_000)
    batch: int = Field(8, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0, le=1.0)
    weight_decay: float = Field(1e-4, ge=0, le=1.0)
    warmup_steps: int = Field(100, ge=0)
    #: "l1+ssim" / "l1+ms-ssim": ``(1 - w) L1 + w (1 - (MS-)SSIM)`` (``train.losses``), w = ssim_weight
    loss: Literal["l1", "mse", "l1+ssim", "l1+ms-ssim"] = "l1"
    ssim_weight: float = Field(0.84, ge=0, le=1)
    #: exponential moving average of the weights (decay per step, e.g. 0.999): validated, kept
    #: as the best model and saved from the EMA copy; None = the raw weights
    ema: float | None = Field(None, gt=0, lt=1)
    seed: int = Field(0, ge=0)
    #: stop after this many minutes (the best model so far is kept); None = no limit
    max_minutes: float | None = Field(None, gt=0)
    val_every: int = Field(250, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    #: early stop after this many validations without improvement (None = never)
    patience: int | None = Field(None, ge=1)
    #: DataLoader worker processes (0 = in the training process)
    workers: int = Field(0, ge=0, le=64)
    #: torch threads (None = torch's default)
    threads: int | None = Field(None, ge=1, le=1024)
    #: automatic mixed precision on CUDA (autocast + GradScaler); ignored on CPU
    amp: bool = True
    #: start from the weights of this model (a shipped name such as ``mito-sr4-fast`` or a
    #: ``.safetensors`` path; same architecture and arch_kwargs): fine-tuning
    init: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.warmup_steps >= self.steps and self.steps > 1:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below steps ({self.steps})")
        return self


class Config(_Strict):
    """A whole training run."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    #: one line for the model card's title
    description: str = ""
    #: model-card sections (free text)
    intended_use: str = ""
    limits: str = ""
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _cross(self) -> Config:
        s = self.model.upscale
        named = [("data.sources", src) for src in self.data.sources]
        named += [("data.val_sources", src) for src in self.data.val_sources or []]
        for i, (field, src) in enumerate(named):
            where = f"{field}[{i if field == 'data.sources' else i - len(self.data.sources)}] ({src.kind})"
            crap = src.crappifier if isinstance(src, CrappifiedSourceBase | FMDSourceConfig) else None
            if crap is not None:
                if crap.get("kind") == "randomized" and isinstance(crap.get("base"), dict):
                    crap = crap["base"]
                scale = crap.get("scale")
                if crap.get("kind") != "file" and scale is not None and scale != s:
                    raise ValueError(f"{where}: crappifier scale {scale} differs from model.upscale {s}")
            if isinstance(src, FMDSourceConfig) and src.crappifier is None:
                if s != 1:
                    raise ValueError(f"{where}: FMD pairs are same-size (denoising); needs model.upscale 1")
                if self.model.in_frames != 1:
                    raise ValueError(f"{where}: FMD has one raw frame per field; needs model.in_frames 1")
        if self.data.val_sources:
            _check_validation_apart(self.data.sources, self.data.val_sources)
        return self


def _read_paths(sources: list[Any]) -> tuple[list[Path], set[int]]:
    """The files/folders (resolved) and FMD fields a list of sources reads."""
    from ..datasets import MITO_TRAIN_FILES, real_data_dir

    root = real_data_dir() or Path("<real-data folder>")
    paths: list[Path] = []
    fields: set[int] = set()
    for src in sources:
        if isinstance(src, MitoSourceConfig):
            paths += [(root / f).resolve() for f in src.files or MITO_TRAIN_FILES]
        elif isinstance(src, RealSourceConfig):
            paths += [(root / f).resolve() for f in src.files]
        elif isinstance(src, ImagesSourceConfig):
            paths += [Path(p).expanduser().resolve() for p in src.paths]
        elif isinstance(src, FMDSourceConfig):
            fields |= set(range(src.fields[0], src.fields[1] + 1))
    return paths, fields


def _nested(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _check_validation_apart(train: list[Any], val: list[Any]) -> None:
    """Refuse validation data that training also reads, or that the held-out evaluation uses."""
    from ..datasets import MITO_HOLDOUT_FILES, real_data_dir

    tp, tf = _read_paths(train)
    vp, vf = _read_paths(val)
    shared = sorted({str(v) for v in vp for t in tp if _nested(v, t)})
    if tf & vf:
        shared.append(f"FMD fields {sorted(tf & vf)}")
    if shared:
        raise ValueError(
            f"data.val_sources validates on {shared}, which data.sources also trains on: keep "
            "validation images out of training (e.g. a mito source with 'files' naming the rest)"
        )
    root = real_data_dir()
    held = [(root / f).resolve() for f in MITO_HOLDOUT_FILES] if root else []
    bad = sorted({str(h) for h in held for v in vp if _nested(h, v)})
    if bad:  # (FMD sources refuse fields 11-20 themselves)
        raise ValueError(
            f"data.val_sources reads the held-out evaluation data ({bad}): "
            "choosing the model on its own test images biases its scores; validate on other images"
        )


def _loc(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err["loc"]) or "(top level)"


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate a config mapping; raise :class:`ConfigError` naming ``source`` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a training config must be a mapping, got {type(data).__name__}",
            "see configs/mito-sr4-fast.yaml for the layout",
        )
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        lines = [f"{_loc(e)}: {e['msg']}" for e in err.errors()[:5]]
        raise ConfigError(
            f"{source}: invalid training config: " + "; ".join(lines),
            f"fix field '{_loc(first)}' (see configs/mito-sr4-fast.yaml and the docstrings in "
            "live_pssr/train/config.py for allowed values)",
        ) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML training config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"training config {path} does not exist",
            "pass --config configs/NAME.yaml (shipped configs are in configs/)",
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})", "fix the YAML syntax at the line shown") from err
    return parse_config(data, str(path))


__all__ = [
    "Config",
    "DataConfig",
    "FMDSourceConfig",
    "ImagesSourceConfig",
    "IntensityAugConfig",
    "MitoSourceConfig",
    "RealSourceConfig",
    "ModelConfig",
    "SimSourceConfig",
    "TrainConfig",
    "load_config",
    "parse_config",
]
