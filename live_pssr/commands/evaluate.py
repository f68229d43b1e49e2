"""``live-pssr evaluate --model M --data D``: a model against ground truth, next to its baseline.

Prints a table (model, baseline, difference per metric; flicker for timelapses; the trust signals:
the consistency check's flag rate, score and error-map rank correlation with the true error, and
with ``--tta`` the TTA disagreement) and writes the full result (per image, provenance, machine)
as JSON with ``--json``. Data sets: ``mito-holdout``, ``class-holdout`` (per-class rows),
``fmd-holdout``, ``sim-timelapse`` or a path to high-quality images (see :mod:`live_pssr.evaluate`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import EngineOpt

LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "psnr_norm": "PSNR normalised (dB)",
          "ssim_norm": "SSIM normalised", "frc_px": "FRC resolution (px, lower = finer)",
          "frc_um": "FRC resolution (um, lower = finer)"}


def parse_crappifier(value: str | None, upscale: int) -> dict[str, Any] | None:
    """``--crappifier``: a config file path, an inline YAML mapping, or a kind name."""
    if value is None:
        return None
    import yaml

    from ..errors import ConfigError

    if Path(value).is_file():
        return {"kind": "file", "path": value}
    if value.strip().startswith("{"):
        try:
            cfg = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"--crappifier {value!r} is not a valid YAML mapping ({err})",
                              "write e.g. --crappifier '{kind: camera, photons: 20}'") from err
        if isinstance(cfg, dict):
            cfg.setdefault("scale", upscale)
        return cfg
    if Path(value).is_dir():
        raise ConfigError(f"--crappifier {value} is a folder, not a crappifier config file",
                          "pass the YAML written by `live-pssr calibrate`, '{kind: ..., ...}' or a kind name")
    if value.endswith((".yaml", ".yml")) or os.sep in value:
        raise ConfigError(f"crappifier config file {value} does not exist",
                          "check the path, or write one with `live-pssr calibrate FRAMES --out FILE.yaml`")
    return {"kind": value, "scale": upscale}


def command(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name or .safetensors path.")],
    data: Annotated[str, typer.Option(
        "--data", "-d", metavar="<mito-holdout|class-holdout|fmd-holdout|sim-timelapse|PATH>",
        help="A shipped held-out set, the simulator's timelapse, or a folder/stack of high-quality images.")],
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the full result as JSON.")] = None,
    crappifier: Annotated[str | None, typer.Option(
        help="For PATH data: a crappifier config file, '{kind: ..., ...}', or a kind name.")] = None,
    engine: EngineOpt = "torch",
    seed: Annotated[int, typer.Option(min=0, help="Seed of crappification / simulation.")] = 0,
    frames: Annotated[int, typer.Option(help="sim-timelapse: number of frames.")] = 16,
    size: Annotated[int, typer.Option(min=16, help="sim-timelapse: camera frame size (px).")] = 128,
    max_images: Annotated[int | None, typer.Option(min=1, help="Evaluate only the first N images.")] = None,
    consistency: Annotated[bool, typer.Option(
        "--consistency/--no-consistency", help="Judge the data-consistency check against the truth: "
        "flag rates and how well its error map ranks tiles by true error.")] = True,
    tta: Annotated[bool, typer.Option(
        "--tta", help="Also test-time-augmentation disagreement (4-8 extra enhancements per image).")
    ] = False,
    camera: Annotated[Path | None, typer.Option(
        "--camera", help="The consistency check's noise from a `live-pssr calibrate` YAML "
        "(default: the data's camera where known, else estimated from each frame).")] = None,
    psf_sigma: Annotated[float | None, typer.Option(
        "--psf-sigma", help="The check's forward blur in enhanced pixels (default: the data's, else the "
        "model's training data).")] = None,
    tile_px: Annotated[int, typer.Option(
        "--tile-px", min=2, help="Tile side (camera pixels) of the rank correlations.")] = 16,
) -> None:
    """Score a model (PSNR, SSIM, normalised PSNR/SSIM, FRC, flicker) next to bicubic / the raw input."""
    import json

    from rich.console import Console
    from rich.table import Table

    from ..engines.cache import atomic_write, machine_info
    from ..errors import StoreWriteError
    from ..evaluate import METRICS, evaluate
    from ..modelio import load_model
    from ..store.claim import check_output_file

    console = Console()
    if engine.partition(":")[0] == "auto":
        from ..errors import ConfigError

        raise ConfigError("evaluate scores one engine's output against the truth; --engine auto (chosen "
                          "per frame size) is not available here",
                          "pass a backend: --engine torch (the default, the reference) or e.g. openvino:bf16")
    if json_path is not None:
        check_output_file(json_path, "--json", "result.json")
    loaded = load_model(model)
    crap_cfg = parse_crappifier(crappifier, loaded.spec.upscale)
    result = evaluate(loaded, data, crappifier=crap_cfg, engine=engine, seed=seed, n_frames=frames,
                      size=size, max_images=max_images, consistency=consistency, tta=tta,
                      camera=None if camera is None else str(camera), psf_sigma_px=psf_sigma, tile_px=tile_px)
    base = result["baseline"]
    table = Table(title=f"{result['model']} on {result['data']} ({result['n_images']} images, "
                        f"engine {result['engine']})")
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column(base, justify="right")
    table.add_column("model - " + base, justify="right")
    s = result["summary"]
    for m in METRICS:
        if s["model"][m] is None and s["baseline"][m] is None:
            continue
        table.add_row(LABELS[m], _fmt(s["model"][m]), _fmt(s["baseline"][m]), _fmt(s["delta"][m], sign=True))
    if "flicker" in result:
        f = result["flicker"]
        table.add_row("flicker (1 = changes as the truth)", _fmt(f["model"]), _fmt(f["baseline"]),
                      _fmt(f["delta"], sign=True))
    for cls, part in result.get("by_class", {}).items():  # per image class, where the data has classes
        for m in ("psnr_norm", "ssim_norm"):
            table.add_row(f"{cls} ({part['n_images']}): {LABELS[m]}", _fmt(part["model"][m]),
                          _fmt(part["baseline"][m]), _fmt(part["delta"][m], sign=True))
    for label, m, b in trust_rows(result):
        delta = m - b if m is not None and b is not None else None
        table.add_row(label, _fmt(m), _fmt(b), _fmt(delta, sign=True))
    console.print(table)
    console.print(f"[dim]{result['description']}; {result['time_s']:.1f} s[/dim]")
    if "consistency" in result:
        c = result["consistency"]
        truth = c["truth"]
        console.print(f"[dim]consistency check: forward blur {c['psf_sigma_px']:.3g} px ({c['psf_source']}), "
                      f"noise {c['noise']}; rank correlations over {c['tile_px']}x{c['tile_px']} "
                      f"camera-pixel tiles; the truth itself is flagged in {_pct(truth['flag_rate'])} of "
                      f"{truth['checked']} image(s) (the check's false alarms on this data)[/dim]")
    if json_path is not None:
        try:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(json_path, json.dumps({**result, "machine": machine_info()}, indent=2))
        except OSError as err:
            raise StoreWriteError(f"could not write --json {json_path}: {err.strerror or err}",
                                  "choose a writable path with free space (the table above is the result)"
                                  ) from err
        console.print(f"wrote {json_path}")


def trust_rows(result: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """``(label, model, baseline)`` rows of the trust signals (consistency check, TTA) of a result."""
    rows: list[tuple[str, float | None, float | None]] = []
    c = result.get("consistency")
    if c:
        rows += [("consistency: flag rate", c["model"]["flag_rate"], c["baseline"]["flag_rate"]),
                 ("consistency: score", c["model"]["score"], c["baseline"]["score"]),
                 ("error map ~ true error (rank corr)", c["model"]["rank_corr"], c["baseline"]["rank_corr"])]
    t = result.get("tta")
    if t:
        rows += [("TTA disagreement", t["disagreement"], None),
                 ("TTA spread ~ true error (rank corr)", t["rank_corr"], None)]
    return rows


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f} %"


def _fmt(v: float | None, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.4g}" if sign else f"{v:.4g}"
