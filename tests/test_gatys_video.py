"""The reference mode on a video (fastnst.gatys_video), with a small random VGG."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from fastnst import gatys_video as gv
from fastnst.errors import FastNSTError
from fastnst.fileio import leftovers
from fastnst.images import write_image
from fastnst.options import GatysConfig
from fastnst.vgg import VGG19Features

from .conftest import make_video, media_stats, smooth_image

LAYERS = ["relu1_1", "relu2_1", "relu3_1"]
H, W, STEP = 48, 64, 3  # frame size and the pan's step, px a frame

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw) -> GatysConfig:
    base = {"size": W, "steps": 15, "frame_steps": 8, "content_layers": {"relu2_1": 1.0},
            "style_layers": dict.fromkeys(LAYERS, 1.0), "style_weight": 10.0, "tv_weight": 0.1}
    base.update(kw)
    return GatysConfig(**base)


@pytest.fixture(scope="module")
def net() -> VGG19Features:
    torch.manual_seed(0)
    return VGG19Features(LAYERS)


@pytest.fixture(scope="module")
def style() -> torch.Tensor:
    return torch.from_numpy(smooth_image(40, 40, 7)[:, ::-1].copy()).permute(2, 0, 1)[None].float() / 255


def _pan(n: int) -> list[np.ndarray]:
    """A textured scene panning left by STEP px a frame (whole pixels: the true motion is exact)."""
    canvas = smooth_image(H, W + STEP * n, 3)
    return [np.ascontiguousarray(canvas[:, STEP * t:STEP * t + W]) for t in range(n)]


def _moved_error(outs: list[np.ndarray]) -> float:
    """Mean squared change of the scene's pixels from frame to frame along the true motion (the strip
    the pan brings in left out), in [0,1] units."""
    errs = [np.mean(((a[:, STEP:].astype(np.float32) - b[:, :-STEP].astype(np.float32)) / 255) ** 2)
            for a, b in itertools.pairwise(outs)]
    return float(np.mean(errs))


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_strokes_move_with_the_scene(net, style, optimizer: str) -> None:
    frames = _pan(6)
    held = gv.FrameOptimizer([style], _cfg(optimizer=optimizer), net)
    video = [held(f) for f in frames]
    # every frame painted on its own, as the image mode would
    alone = [gv.FrameOptimizer([style], _cfg(optimizer=optimizer), net)(f) for f in frames]
    free = gv.FrameOptimizer([style], _cfg(optimizer=optimizer, temporal_weight=0.0), net)
    unheld = [free(f) for f in frames]
    assert held.cuts == 0
    e_video, e_alone, e_free = _moved_error(video), _moved_error(alone), _moved_error(unheld)
    assert e_video < 0.2 * e_alone, (e_video, e_alone)
    assert e_video < 0.5 * e_free, (e_video, e_free)
    # and it is a painting, not the input carried through
    assert np.mean(np.abs(video[-1].astype(np.float32) - frames[-1])) > 5


def test_after_a_cut_a_frame_is_painted_as_a_first_frame(net, style) -> None:
    a, b = smooth_image(H, W, 1), smooth_image(H, W, 2)[::-1, ::-1].copy()
    stream = gv.FrameOptimizer([style], _cfg(), net)
    stream(a)
    after_cut = stream(b)
    fresh = gv.FrameOptimizer([style], _cfg(), net)(b)
    assert stream.cuts == 1
    assert np.abs(after_cut.astype(int) - fresh.astype(int)).max() <= 1


def test_a_still_scene_neither_drifts_nor_darkens(net, style) -> None:
    frame = smooth_image(H, W, 4)
    stream = gv.FrameOptimizer([style], _cfg(), net)
    outs = [stream(frame).astype(np.float32) for _ in range(12)]
    drift = np.abs(outs[-1].mean(axis=(0, 1)) - outs[1].mean(axis=(0, 1)))
    assert drift.max() < 1.0, drift  # under one 8-bit level in mean colour
    assert np.abs(outs[-1] - outs[1]).mean() < 2.0


@pytest.mark.parametrize(("h", "w"), [(2, 2), (5, 7), (33, 17)])
def test_tiny_and_odd_frames(net, style, h: int, w: int) -> None:
    stream = gv.FrameOptimizer([style], _cfg(size=32, steps=3, frame_steps=2), net)
    for t in range(3):
        out = stream(smooth_image(h, w, t))
        assert out.shape == (h, w, 3) and out.dtype == np.uint8


def test_preserve_color_keeps_each_frames_colours(net, style) -> None:
    from fastnst.gatys import rgb_to_yiq

    frames = _pan(3)
    stream = gv.FrameOptimizer([style], _cfg(preserve_color=True), net)
    for f in frames:
        out = torch.from_numpy(stream(f)).permute(2, 0, 1)[None].float() / 255
        iq_in = rgb_to_yiq(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255)[:, 1:]
        assert (rgb_to_yiq(out)[:, 1:] - iq_in).abs().mean() < 0.02


def test_a_video_keeps_its_frames_times_and_audio(tmp_path: Path, net) -> None:
    src = make_video(tmp_path / "in.mp4", w=40, h=30, n=5)
    style = write_image(tmp_path / "s.png", smooth_image(32, 32, 5))
    r = gv.run_gatys_video(src, [style], tmp_path / "out.mp4", _cfg(size=40, steps=3, frame_steps=2), device="cpu",
                           extractor=net, progress=False)
    got, want = media_stats(r.output), media_stats(src)
    assert (got["frames"], got["times"], got["size"]) == (want["frames"], want["times"], want["size"])
    assert got["audio_packets"] == want["audio_packets"] > 0 and r.audio == {1: "copy"}
    assert r.frames == 5 and r.work == (30, 40)


def test_an_interrupted_run_leaves_nothing(tmp_path: Path, net, monkeypatch) -> None:
    src = make_video(tmp_path / "in.mp4", w=40, h=30, n=5)
    style = write_image(tmp_path / "s.png", smooth_image(32, 32, 5))
    calls = []
    real = gv.FrameOptimizer.__call__

    def stop_at_third(self, frame):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, frame)

    monkeypatch.setattr(gv.FrameOptimizer, "__call__", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        gv.run_gatys_video(src, [style], tmp_path / "out.mp4", _cfg(size=40, steps=2, frame_steps=1), device="cpu",
                           extractor=net, progress=False)
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_refusals_come_before_any_work(tmp_path: Path, net) -> None:
    src = make_video(tmp_path / "in.mp4", w=40, h=30, n=2, audio=None)
    style = write_image(tmp_path / "s.png", smooth_image(32, 32, 5))
    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"keep me")
    cases = [(existing, {}, "already exists"), (tmp_path / "o.png", {}, "video extension"),
             (tmp_path / "o.mp4", {"save_every": 2}, "--save-every"),
             (tmp_path / "o.mp4", {"frame_steps": 0}, "--frame-steps"),
             (tmp_path / "o.mp4", {"temporal_weight": -1.0}, "--temporal-weight")]
    for out, kw, says in cases:
        with pytest.raises(FastNSTError, match=says):
            gv.run_gatys_video(src, [style], out, _cfg(**kw), device="cpu", extractor=net, progress=False)
    assert existing.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "old.mp4", "s.png"]


def test_work_size_scales_the_longer_side() -> None:
    from fastnst.images import longer_side_shape

    assert longer_side_shape(272, 640, 384) == (163, 384)
    assert longer_side_shape(2, 2, 32) == (32, 32)
    assert longer_side_shape(640, 272, 384) == (384, 163)


def test_a_segment_starts_at_zero_with_its_audio(tmp_path: Path, net) -> None:
    src = make_video(tmp_path / "in.mp4", w=40, h=30, n=12)  # 10 frames a second
    style = write_image(tmp_path / "s.png", smooth_image(32, 32, 5))
    r = gv.run_gatys_video(src, [style], tmp_path / "out.mp4", _cfg(size=40, steps=2, frame_steps=1), device="cpu",
                           extractor=net, start=0.4, duration=0.5, progress=False)
    got = media_stats(r.output)
    assert got["frames"] == r.frames == 5 and got["times"][0] == 0.0
    assert got["audio_packets"] > 0


def test_a_video_defaults_to_smoother_strokes_than_an_image(net, style) -> None:
    from fastnst.gatys import IMAGE_TV_WEIGHT, build_loss

    cfg = _cfg(tv_weight=None)  # the default: not given
    assert build_loss(cfg, net).tv_weight == IMAGE_TV_WEIGHT == 1.0
    assert gv.FrameOptimizer([style], cfg, net).loss.tv_weight == gv.VIDEO_TV_WEIGHT == 30.0
    assert gv.FrameOptimizer([style], _cfg(tv_weight=2.0), net).loss.tv_weight == 2.0
    assert GatysConfig().tv_weight is None


def test_a_missing_or_broken_video_is_named_before_the_backbone_is_looked_for(tmp_path: Path, monkeypatch) -> None:
    from fastnst import gatys

    def no_backbone(*a, **k):
        raise AssertionError("the backbone was looked for first")

    monkeypatch.setattr(gatys, "prepare", no_backbone)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    style = write_image(tmp_path / "s.png", smooth_image(32, 32, 5))
    for name, says in (("nope.mp4", "does not exist"), ("broken.mp4", "broken.mp4")):
        with pytest.raises(FastNSTError, match=says):
            gv.run_gatys_video(tmp_path / name, [style], tmp_path / "o.mp4", _cfg(), device="cpu", progress=False)
