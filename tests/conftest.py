"""Shared fixtures: tiny real models (trained weights are not needed to test plumbing)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small 4x FastSRNet saved as a real model file (random but fixed weights)."""
    from live_pssr.modelio import ModelSpec, save_model
    from live_pssr.nets import FastSRNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny-sr4.safetensors"
    save_model(path, FastSRNet(width=4), ModelSpec("tiny-sr4", "fast-sr", {"width": 4}, upscale=4))
    return path


@pytest.fixture
def tiny_model(tiny_model_path: Path):
    from live_pssr.modelio import load_model

    return load_model(tiny_model_path)


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} not present (only in the development workspace)")
    return REAL_DATA


def camera_frames(n: int, shape: tuple[int, int] = (48, 64), seed: int = 0) -> list[np.ndarray]:
    """Deterministic camera-like uint16 frames (offset + Poisson)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(50, 400, shape)
    return [(100 + rng.poisson(base)).astype(np.uint16) for _ in range(n)]


def wait_for(cond, timeout: float = 30.0) -> None:
    """Poll ``cond()`` until it holds (a bounded wait for another thread; fails when it never does)."""
    import time

    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.002)
    assert cond()


@pytest.fixture(autouse=True)
def _rescue_dir_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames rescued from a failed store (live_pssr.store.rescue) land in the test's tmp folder."""
    monkeypatch.setenv("LIVE_PSSR_RESCUE_DIR", str(tmp_path / "rescued"))
