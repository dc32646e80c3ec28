"""Helpers shared by the trainer's tests (tests/training/): a tiny photo folder, a tiny config, the run log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fastnst.images import write_image
from fastnst.training.config import TrainConfig

from ..conftest import smooth_image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every trainer test runs single-threaded (see tests/conftest.one_thread)."""


@pytest.fixture
def photos(tmp_path) -> Path:
    """A COCO-like folder (plus a sub-folder) of 10 small photos of different sizes, and a style image."""
    root = tmp_path / "photos"
    for i in range(10):
        write_image(root / ("nested" if i % 3 == 0 else "") / f"img{i:02d}.png", smooth_image(36 + i, 44 - i, i))
    (root / "notes.txt").write_text("not an image")
    style = np.zeros((48, 48, 3), np.uint8)
    style[::6] = (250, 200, 20)  # bold stripes: a style the net can pick up quickly
    style[:, ::8] = (20, 60, 220)
    write_image(tmp_path / "stripes.png", style)
    return root


def tiny_config(root: Path, tmp_path: Path, **overrides) -> TrainConfig:
    """A config for a few-second CPU run on :func:`photos`: tiny net, random VGG, run folder in ``tmp_path``."""
    base = {
        "content": [str(root)], "style": [str(tmp_path / "stripes.png")], "arch": "8,16,16:1", "image_size": 32,
        "batch_size": 2, "steps": 30, "lr": 5e-3, "vgg_weights": "random", "device": "cpu", "workers": 0,
        "log_every": 1, "sample_every": 0, "checkpoint_every": 0, "style_size": 48, "val_images": 2,
        "progress": False, "out_dir": str(tmp_path / "run"), "output": str(tmp_path / "model.safetensors"),
        "style_layers": {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_1": 1.0},
    }
    base.update(overrides)
    return TrainConfig(**base)


def _log(run: Path) -> list[dict]:
    """The rows of a run folder's log.jsonl, one dict per logged step."""
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
