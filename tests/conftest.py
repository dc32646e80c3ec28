"""Shared fixtures: tiny synthetic images and isolated caches, so no test touches the network."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Point fastnst's and torch's caches at empty folders: tests never see real weights or the network."""
    home = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("FASTNST_HOME", str(home / "fastnst"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    torch.manual_seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A (H,W,3) uint8 RGB image with structure at several scales (gradients plus blobs)."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 5 + y / 7)], axis=-1)
    img += 0.15 * r.standard_normal((h, w, 3)).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)
