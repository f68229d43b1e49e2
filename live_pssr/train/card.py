"""Model cards: the ``NAME.md`` beside every ``NAME.safetensors``, written from the file itself.

:func:`write_card` reads the model's spec (architecture, normalisation, and the provenance the
trainer stored in ``ModelSpec.training``: config, data sources, crappifiers, time, validation
scores) and renders it as Markdown, with evaluation results (``scores``: data set -> metric ->
value, e.g. from ``live-pssr evaluate``), the trust signals judged against the truth (``trust``:
the consistency check's flag rates and error-map rank correlation, TTA), each held-out class's
worst tile with a picture (``failures``, :mod:`live_pssr.train.failures`) and the config's intended
use and limits. A card is therefore always in step with its weights; ``scripts/train_models.sh``
rewrites them (``--keep-notes`` keeps a card's hand-written Notes section).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ..modelio import file_sha256, load_model


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return out


def _columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Every key of ``rows``, in first-seen order (a table's columns)."""
    cols: list[str] = []
    for row in rows:
        cols += [c for c in row if c not in cols]
    return cols


def render_card(
    model_path: str | Path, scores: dict[str, dict[str, Any]] | None = None, notes: str = "",
    trust: dict[str, dict[str, Any]] | None = None,
    failures: list[dict[str, Any]] | None = None, failures_png: str | None = None,
) -> str:
    """Markdown model card for ``model_path`` (see the module docstring); ``trust``: :func:`trust_rows`.

    ``failures``: the rows of :mod:`live_pssr.train.failures` (each class's worst tile), drawn in
    ``failures_png`` (a path relative to the card).
    """
    m = load_model(model_path)
    spec, tr = m.spec, m.spec.training
    cfg = tr.get("config", {})
    n_params = sum(p.numel() for p in m.net.parameters())
    path = Path(m.path)
    size_mb = path.stat().st_size / 1e6
    precision = "fp16" if cfg.get("model", {}).get("half") else "fp32"
    task = "super-resolution" if spec.upscale > 1 else "denoising"
    target = spec.target_frame if spec.in_frames > 1 else "input"
    lines = [f"# {spec.name}", ""]
    if cfg.get("description"):
        lines += [cfg["description"], ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| file | `{path.name}` ({size_mb:.2f} MB, sha256 `{file_sha256(path)[:16]}...`) |",
        f"| architecture | `{spec.arch}` {json.dumps(spec.arch_kwargs, sort_keys=True)} |",
        f"| parameters | {n_params / 1e6:.3f} M ({precision} weights) |",
        f"| task | {spec.upscale}x {task}, {spec.in_frames} frame(s) in, output for the {target} frame |",
        f"| normalisation | each input frame by its own {spec.norm_low}/{spec.norm_high} percentiles; "
        "output mapped back with the newest input's range |",
        "",
    ]
    if cfg.get("intended_use"):
        lines += ["## Intended use", "", cfg["intended_use"].strip(), ""]
    lines += ["## Training data", ""]
    for d in tr.get("data", []):
        desc = {k: v for k, v in d.items() if k not in ("kind", "weight", "crappifier", "laser_powers")}
        line = f"- **{d['kind']}** (weight {d['weight']}): " + ", ".join(f"{k} {v}" for k, v in desc.items())
        if "laser_powers" in d:
            line += f", laser powers {min(d['laser_powers'])}-{max(d['laser_powers'])} (log-uniform)"
        if "crappifier" in d:
            line += f"; crappifier `{json.dumps(d['crappifier'], sort_keys=True)}`"
        lines.append(line)
    for d in tr.get("val_data", []):  # validation on images kept out of training
        files = d.get("files") or d.get("paths") or d.get("fields") or ""
        lines.append(f"- validation only (never trained on): **{d['kind']}** {files}"
                     + (f", {d['images']} images" if "images" in d else ""))
    lines += [
        "",
        "Held out of training: the `mito-holdout` images (HeLa mito channel, MiNA test image) "
        "and FMD fields 11-20 (see `live_pssr/datasets.py`).",
        "",
    ]
    threads = f", {tr['threads']} thread(s) of {tr.get('cpu_count')} cores" if tr.get("threads") else ""
    if not threads and cfg.get("train", {}).get("threads"):
        threads = f", {cfg['train']['threads']} thread(s)"
    lines += [
        "## Training",
        "",
        f"- {tr.get('steps', '?')} steps (stopped: {tr.get('stopped', '?')}), best validation at step "
        f"{tr.get('best_step', '?')}; **training time {tr.get('train_time_s', 0) / 60:.1f} min** on "
        f"{tr.get('device', '?')} ({tr.get('cpu', '?')}{threads}, torch {tr.get('torch', '?')})",
        f"- validation ({tr.get('val_note', '')}): "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in tr.get("val", {}).items() if k != "step")
        + f"; {'bicubic' if spec.upscale > 1 else 'raw input'}: "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in tr.get("val_baseline_bicubic", {}).items()),
    ]
    tcfg, dcfg = cfg.get("train", {}), cfg.get("data", {})
    how = [f"loss `{tr.get('loss', tcfg.get('loss', '?'))}`"]
    if str(tcfg.get("loss", "")).startswith("l1+"):
        how[-1] += f" (SSIM weight {tcfg.get('ssim_weight')})"
    if tcfg.get("ema"):
        how.append(f"EMA weights (decay {tcfg['ema']}; validated and saved from the EMA copy)")
    if tcfg.get("init"):
        how.append(f"fine-tuned from `{tcfg['init']}`")
    if dcfg.get("intensity"):
        how.append(f"intensity augmentation `{json.dumps(dcfg['intensity'], sort_keys=True)}`")
    zoom = [float(z) for z in dcfg.get("zoom", (1.0, 1.0))]
    if zoom != [1.0, 1.0]:
        how.append(f"zoom augmentation (still images resampled to {zoom[0]:g}-{zoom[1]:g} of their size)")
    lines += ["- " + "; ".join(how), ""]
    hist = tr.get("history") or []
    if hist:  # the curve, at most ~12 rows
        every = max(1, -(-len(hist) // 12))
        rows = hist[::every] + ([hist[-1]] if (len(hist) - 1) % every else [])
        lines += ["Training curve (validation on the fixed crops; train loss smoothed):", ""]
        lines += _table(rows, ["step", "time_s", "lr", "train_loss", "loss", "psnr", "ssim"]) + [""]
    if scores:
        lines += [
            "## Evaluation",
            "",
            "`live-pssr evaluate` (seed 0; `_norm` = after CSBDeep percentile normalisation and affine "
            "fit; flicker: frame-to-frame change relative to the truth's, lower is steadier):",
            "",
        ]
        cols = _columns(scores.values())
        rows = [{"data / metric": name, **row} for name, row in scores.items()]
        lines += _table(rows, ["data / metric", *cols]) + [""]
    if trust:
        lines += [
            "## How far the output can be trusted",
            "",
            TRUST_TEXT,
            "",
        ]
        lines += _table([{"data": name, **row} for name, row in trust.items()], ["data", *TRUST_COLUMNS])
        lines += [""]
    if failures:
        base = "bicubic" if spec.upscale > 1 else "the raw input"
        shown = "raw input, bicubic, model, truth" if spec.upscale > 1 else "raw input, model, truth"
        lines += [
            "## Known failure modes",
            "",
            f"For each held-out image class, the output tile where the model does worst against {base}: "
            f"the largest ratio of the model's mean squared error to {base}'s, both against the truth "
            "and normalised to it over the whole image, among tiles with signal. A negative gap "
            f"means the model loses to {base} there. The picture shows those tiles ({shown} and "
            "the model's error; `python -m live_pssr.train.card MODEL --failures DATA`).",
            "",
        ]
        if failures_png:
            lines += [f"![worst tile per held-out class]({failures_png})", ""]
        lines += _table(failures, _columns(failures)) + [""]
    if notes:
        lines += [notes.strip(), ""]
    if cfg.get("limits"):
        lines += ["## Limits", "", cfg["limits"].strip(), ""]
    lines += [
        "## Reproduce",
        "",
        "```sh",
        f"live-pssr train --config configs/{spec.name}.yaml --out models/{spec.name}.safetensors",
        "```",
        "",
        "<details><summary>Full training config</summary>",
        "",
        "```yaml",
        yaml.safe_dump(cfg, sort_keys=False).rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def evaluation_results(model_path: str | Path, data_sets: list[str], seed: int = 0,
                       tta: bool = True) -> dict[str, dict[str, Any]]:
    """``live_pssr.evaluate.evaluate`` of the model on each data set (with the trust signals)."""
    from ..evaluate import evaluate

    return {name: evaluate(str(model_path), name, seed=seed, progress=False, tta=tta) for name in data_sets}


def _r(v: Any, nd: int = 3) -> Any:
    return "-" if v is None else round(float(v), nd)


#: columns of the card's trust table
TRUST_COLUMNS = ["flag rate model / baseline / truth", "score model", "error map rank corr model / baseline",
                 "TTA disagreement", "TTA spread rank corr"]
#: what the trust table shows
TRUST_TEXT = (
    "`live-pssr evaluate` (seed 0) judges the two trust signals against the truth. *Consistency check* "
    "(`live_pssr.consistency`, run live and by `enhance --consistency`): does the output, taken back to the "
    "camera, explain the raw frame within its noise? Flag rate of the model's output, of the baseline's "
    "(bicubic; the raw frame for a denoiser) and of the truth itself (a control: on PSSR-crappified data the "
    "truth is not the expectation of its raw frame, and FMD's 50-frame mean is not exactly that of its "
    "raw frame, so the check flags them too), and the rank correlation of its error map with the true "
    "error `|pred' - truth'|` (CSBDeep-normalised) over 16x16 camera-pixel tiles. *TTA* (`enhance --tta`, "
    "`evaluate --tta`): the model's disagreement with itself under flips and rotations, and the same rank "
    "correlation of its spread. The consistency check only sees errors the camera can see above its "
    "noise (where it flags, the output is inconsistent with the data); TTA ranks regions by how unsure "
    "the model is, which follows the true error far more closely.")


def trust_rows(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows of the card's trust table (consistency check and TTA) from :func:`evaluation_results`."""
    rows: dict[str, dict[str, Any]] = {}
    for name, res in results.items():
        c, t = res.get("consistency"), res.get("tta")
        if not c:
            continue
        n = c["model"]["checked"]
        row = {
            TRUST_COLUMNS[0]: " / ".join(str(_r(c[w]["flag_rate"], 2))
                                         for w in ("model", "baseline", "truth")) + f" ({n} images)",
            TRUST_COLUMNS[1]: _r(c["model"]["score"], 4),
            TRUST_COLUMNS[2]: f"{_r(c['model']['rank_corr'])} / {_r(c['baseline']['rank_corr'])}",
        }
        if t:
            row[TRUST_COLUMNS[3]] = _r(t["disagreement"], 4)
            row[TRUST_COLUMNS[4]] = _r(t["rank_corr"])
        rows[name] = row
    return rows


def _delta_row(part: dict[str, dict[str, float]], baseline: str, metric: str) -> dict[str, float]:
    """One card row: ``part``'s model, baseline and delta values of ``metric``, rounded."""
    return {"model": round(part["model"][metric], 4), baseline: round(part["baseline"][metric], 4),
            "delta": round(part["delta"][metric], 4)}


def evaluation_rows(model_path: str | Path, data_sets: list[str], seed: int = 0,
                    results: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Rows of model/baseline/delta metrics per data set (``results``: already evaluated ones)."""
    if results is None:
        results = evaluation_results(model_path, data_sets, seed, tta=False)
    rows: dict[str, dict[str, Any]] = {}
    for name in data_sets:
        res = results[name]
        base = res["baseline"]
        summ = res["summary"]
        for metric in ("psnr", "ssim", "psnr_norm", "ssim_norm"):
            if summ["model"].get(metric) is not None:
                rows[f"{name}: {metric}"] = _delta_row(summ, base, metric)
        for cls, part in res.get("by_class", {}).items():  # per image class (class-holdout)
            for metric in ("psnr", "ssim", "psnr_norm", "ssim_norm"):
                if part["model"].get(metric) is not None:
                    rows[f"{name}: {cls} ({part['n_images']}) {metric}"] = _delta_row(part, base, metric)
        if "flicker" in res:
            fl = res["flicker"]
            rows[f"{name}: flicker"] = {"model": round(fl["model"], 4), base: round(fl["baseline"], 4),
                                        "delta": round(fl["delta"], 4)}
    return rows


def write_card(
    model_path: str | Path,
    scores: dict[str, dict[str, Any]] | None = None,
    notes: str = "",
    out: str | Path | None = None,
    trust: dict[str, dict[str, Any]] | None = None,
    failures: list[dict[str, Any]] | None = None, failures_png: str | None = None,
) -> Path:
    """Write the card next to the model (``NAME.md``) or to ``out``."""
    out = Path(out) if out else Path(model_path).with_suffix(".md")
    out.write_text(render_card(model_path, scores, notes, trust, failures, failures_png))
    return out


def card_notes(card: str | Path) -> str:
    """The ``## Notes`` section of an existing card (heading included; "" when it has none)."""
    path = Path(card)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    start = text.find("\n## Notes\n")
    if start < 0:
        return ""
    end = text.find("\n## ", start + 1)
    return text[start + 1: end if end >= 0 else len(text)].strip()


def main(argv: list[str] | None = None) -> None:
    """``python -m live_pssr.train.card MODEL [--eval DATA ...] [--failures DATA ...] [--notes TEXT |
    --keep-notes] [--no-tta]``."""
    import argparse

    ap = argparse.ArgumentParser(description="(Re)write a model card, evaluating the model on --eval data.")
    ap.add_argument("model")
    ap.add_argument("--eval", action="append", default=[],
                    help="mito-holdout | class-holdout | fmd-holdout | sim-timelapse")
    ap.add_argument("--notes", default="")
    ap.add_argument("--keep-notes", action="store_true", help="keep the Notes of the card being replaced")
    ap.add_argument("--no-tta", action="store_true", help="leave TTA out of the trust table (faster)")
    ap.add_argument("--failures", action="append", default=[], metavar="DATA",
                    help="find each image class's worst tile on DATA (repeatable), draw them to "
                    "NAME-failures.png and add the card's 'Known failure modes' section")
    args = ap.parse_args(argv)
    notes = args.notes
    if args.keep_notes and not notes:
        notes = card_notes(Path(args.model).with_suffix(".md"))
    scores = trust = None
    if args.eval:
        results = evaluation_results(args.model, args.eval, tta=not args.no_tta)
        scores = evaluation_rows(args.model, args.eval, results=results)
        trust = trust_rows(results)
    failures = png = None
    if args.failures:
        from .failures import failure_figure

        model = Path(args.model)
        png_path = model.with_name(f"{model.stem}-failures.png")
        found = failure_figure(model, args.failures, png_path)
        if found:
            failures, png = [f.row() for f in found], png_path.name
        else:
            print(f"no image of {', '.join(args.failures)} is as large as one tile: no failure section")
    print(write_card(args.model, scores, notes, trust=trust, failures=failures, failures_png=png))


if __name__ == "__main__":
    main()


__all__ = ["card_notes", "evaluation_results", "evaluation_rows", "render_card", "trust_rows", "write_card"]
