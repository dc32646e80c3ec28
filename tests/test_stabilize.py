"""Inference-time stabilisation (fastnst.stabilize): flicker goes down, no ghost trails, cuts reset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastnst.errors import FastNSTError
from fastnst.stabilize import Stabilizer


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    r = np.random.default_rng(seed)
    coarse = r.random((h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    import cv2

    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()


def _square_scene(n: int, h: int = 64, w: int = 96) -> list[np.ndarray]:
    """A static textured background with a bright square moving right by 6 px a frame, then leaving."""
    bg = _texture(h, w)
    frames = []
    for i in range(n):
        f = bg.copy()
        x0 = 4 + 6 * i
        if x0 < w:
            f[20:40, x0:x0 + 20] = (1.0, 0.9, 0.1)
        frames.append(f)
    return frames


def test_static_scene_flicker_is_reduced() -> None:
    """A still input whose 'stylization' flickers (noise each frame): the output flickers less."""
    bg = _texture(48, 64)
    rng = np.random.default_rng(1)
    stab = Stabilizer(0.5)
    outs = []
    for _ in range(12):
        noisy = (bg + 0.1 * rng.standard_normal(bg.shape).astype(np.float32)).clip(0, 1)
        outs.append(stab(_t(bg), _t(noisy))[0].numpy())
    raw = 0.1 * np.sqrt(2)  # expected frame-to-frame std of the raw noise
    steady = np.std(outs[-1] - outs[-2])
    assert steady < 0.75 * raw


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_no_ghost_trail_after_a_moving_square_has_left(strength: float) -> None:
    """The stylized output is the input itself here, so any residue of the square is a ghost."""
    frames = _square_scene(22)
    stab = Stabilizer(strength)
    out = None
    for f in frames:
        out = stab(_t(f), _t(f))[0].permute(1, 2, 0).numpy()
    last = frames[-1]
    assert np.abs(out - last).max() < 0.03  # the square left the frame: nothing of it remains


def test_cut_resets_the_history() -> None:
    a, b = _texture(48, 64, seed=1), _texture(48, 64, seed=2)
    stab = Stabilizer(0.9)
    stab(_t(a), _t(a))
    stab(_t(a), _t(a))
    out = stab(_t(b), _t(b))[0].permute(1, 2, 0).numpy()
    assert stab.cuts == 1
    assert np.abs(out - b).max() < 1e-6


def test_strength_zero_is_identity_and_bad_strength_refused() -> None:
    x = torch.rand(1, 3, 16, 16)
    y = torch.rand(1, 3, 16, 16)
    stab = Stabilizer(0.0)
    stab(x, y)
    assert torch.equal(stab(x, y), y)
    with pytest.raises(FastNSTError):
        Stabilizer(1.5)


def test_frames_too_small_for_optical_flow_pass_through() -> None:
    stab = Stabilizer(0.5)
    x = torch.rand(1, 3, 2, 2)
    stab(x, x)
    assert torch.equal(stab(x, x * 0.5), x * 0.5)
