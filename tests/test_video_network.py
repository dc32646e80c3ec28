"""A video network at work (fastnst.models video networks, fed by fastnst.stabilize's priors): strokes
travel with the scene, a cut paints afresh, nothing ghosts, nothing drifts, any size runs.

The network is the shipped ``starry_night_lite`` made a video network (:func:`fastnst.models.expand_to_video`)
with its gate opened as far as it goes, so the output is the carried prior wherever the motion is
trusted: what these tests check is the machinery around any video network (motion once per frame, the
mask, the carry, the gate, cuts), at its most prior-driven. Everything runs at the frames' own size
(``work_size=0``) on PyTorch, so no engine conversion is needed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fastnst.models import PRESETS, TransformerNet, expand_to_video
from fastnst.stabilize import Stabilizer
from fastnst.styles import load_style
from fastnst.stylizer import Stylizer

PER_FRAME = "starry_night_lite"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def video_net() -> TransformerNet:
    base = load_style(PER_FRAME).net
    net = TransformerNet(PRESETS["video"])
    net.load_state_dict(expand_to_video({k: v.float() for k, v in base.state_dict().items()}, net.arch))
    with torch.no_grad():
        net.last_conv.bias[12:].fill_(12.0)  # the gate wide open: keep 95 % of every trusted pixel's prior
    return net.eval()


def _texture(h: int, w: int, seed: int = 0, cell: int = 6) -> np.ndarray:
    import cv2

    coarse = np.random.default_rng(seed).integers(0, 256, (h // cell + 1, w // cell + 1, 3), dtype=np.uint8)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _stylizer(style) -> Stylizer:
    return Stylizer(style, work_size=0, engine="torch", dtype="float32")


def _run(st: Stylizer, frames: list[np.ndarray], stream: Stabilizer | None) -> list[np.ndarray]:
    return [st(f, stream).astype(np.float32) / 255 for f in frames]


def test_output_moves_with_a_translating_texture(video_net):
    """A textured scene slides 2 px a frame: the output of frame t, moved by 2 px, should be the output
    of frame t+1. The video network's error is far below the per-frame network's."""
    big = _texture(80, 200, 1)
    frames = [np.ascontiguousarray(big[:, 60 - 2 * t:180 - 2 * t]) for t in range(14)]

    def error(outs: list[np.ndarray]) -> float:
        # frame t+1 at x+2 shows what frame t showed at x; skip the strip that enters and the borders
        return float(np.median([np.abs(b[8:-8, 12:-8] - a[8:-8, 10:-10]).mean() for a, b in itertools.pairwise(outs[4:])]))

    video = error(_run(_stylizer(video_net), frames, Stabilizer(0.0)))
    per_frame = error(_run(_stylizer(PER_FRAME), frames, None))
    assert video < 0.5 * per_frame, (video, per_frame)


def test_at_a_cut_the_output_is_the_empty_prior_output(video_net):
    st = _stylizer(video_net)
    a, b = _texture(64, 96, 2), _texture(64, 96, 3)
    stream = Stabilizer(0.0)
    _run(st, [a, a, a], stream)
    after_cut = st(b, stream)
    assert stream.cuts == 1
    assert np.array_equal(after_cut, st(b))  # no prior: what a first frame or a still image gets
    st(b, stream)
    assert stream.motion.trust is not None and stream.cuts == 1  # the next frame carries a prior again


def test_an_object_that_moves_away_leaves_no_ghost(video_net):
    """A bright square crosses a still background and leaves: where it passed, the output becomes what
    the background alone gives."""
    bg = _texture(64, 112, 4)
    frames = []
    for i in range(24):
        f = bg.copy()
        x0 = 4 + 6 * i
        if x0 < 112:
            f[20:40, x0:x0 + 20] = (255, 230, 25)
        frames.append(f)
    st = _stylizer(video_net)
    with_square = _run(st, frames, Stabilizer(0.5))[-1]
    alone = _run(st, [bg] * 24, Stabilizer(0.5))[-1]
    path = (slice(20, 40), slice(4, 112))
    assert np.abs(with_square[path] - alone[path]).mean() < 0.03
    assert np.abs(with_square[path] - alone[path]).max() < 0.35


def test_a_static_scene_does_not_drift_or_darken_over_300_frames(video_net):
    frame = _texture(48, 64, 5)
    outs = _run(_stylizer(video_net), [frame] * 300, Stabilizer(0.5))
    start, end = outs[2].mean(axis=(0, 1)), outs[-1].mean(axis=(0, 1))
    assert np.abs(end - start).max() < 1 / 255, (start, end)
    assert end.mean() >= start.mean() - 0.5 / 255


@pytest.mark.parametrize("size", [(2, 2), (9, 13), (37, 45)])
def test_tiny_and_odd_sizes_run_as_a_clip(size, video_net):
    h, w = size
    frames = [_texture(h, w, s) for s in range(3)]
    outs = _run(_stylizer(video_net), frames, Stabilizer(0.5))
    assert all(o.shape == (h, w, 3) and np.isfinite(o).all() for o in outs)
