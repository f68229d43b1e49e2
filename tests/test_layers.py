"""No import runs upward: each module imports only from its own layer or below (README, Architecture)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "live_pssr"

#: lowest first, as in the README's architecture section
LAYERS = [
    ["errors", "frames", "normalize", "_shipped_models", "_shipped_configs"],
    ["store", "nets", "modelio", "zoo", "engines", "metrics", "tiling"],
    ["enhancer", "sim", "crappify", "calibrate", "datasets", "mm", "stacks", "consistency", "bioimageio"],
    ["sources", "pipeline"],
    ["live", "viewer", "offline", "train", "evaluate"],
    ["commands", "bench", "cli", "__main__", "napari_plugin"],
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _imports(path: Path) -> list[str]:
    """Top-level live_pssr modules that ``path`` imports (relative or absolute)."""
    rel = path.relative_to(PACKAGE)
    pkg = list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - (node.level - 1)]
            parts = base + (node.module.split(".") if node.module else [])
            out.extend([parts[0]] if parts else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("live_pssr."):
            out.append(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out.extend(a.name.split(".")[1] for a in node.names if a.name.startswith("live_pssr."))
    return out


def test_every_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert tops - {"__init__"} <= set(RANK), f"modules without a layer: {sorted(tops - set(RANK))}"


def test_no_import_runs_upward():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if top == "__init__":
            continue
        for target in _imports(path):
            if target in RANK and RANK[target] > RANK[top]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}: {top} -> {target}")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)
