"""Shared fixtures: tiny synthetic images and isolated caches, so no test touches the network."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

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


# Media made in the tests (videos with a moving pattern and an optional tone)


def pattern(i: int, h: int, w: int) -> np.ndarray:
    """Frame ``i`` of a moving pattern, ``(H,W,3)`` uint8: a bright square sliding right, a gradient."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), np.full_like(x, 60)], -1)
    img = img.astype(np.uint8)
    x0 = (3 * i) % max(w - 8, 1)
    img[2:10, x0:x0 + 8] = 255
    return img


def make_video(path: Path, *, w: int = 66, h: int = 50, n: int = 15, fps: int = 10, audio: str | None = "aac",
               rotation: int = 0, codec: str = "libx264", pix_fmt: str = "yuv420p",
               pts: list[int] | None = None, sample_rate: int = 16000, x264_preset: str = "ultrafast") -> Path:
    """A small video (moving pattern) with optional audio (a 440 Hz tone as long as the video).

    ``pts`` (in 1/fps units) overrides the constant-rate timestamps (variable frame rate).
    """
    import av

    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        vs.codec_context.time_base = Fraction(1, fps)
        if codec == "libx264":
            vs.options = {"preset": x264_preset}
        if rotation:
            vs.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream(audio, rate=sample_rate)
            a.layout = "mono"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(i, h, w), format="rgb24")
            f.pts = pts[i] if pts is not None else i
            f.time_base = Fraction(1, fps)
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a is not None:
            total = round(sample_rate * (pts[-1] + 1 if pts else n) / fps)
            t = np.arange(total) / sample_rate
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            fmt = a.codec_context.format.name
            chunk = 1024
            for k in range(0, total, chunk):
                block = tone[k:k + chunk]
                if fmt.startswith("s16"):
                    block = (block * 32767).astype(np.int16)
                layout_arr = block[None, :]
                frame = av.AudioFrame.from_ndarray(layout_arr, format=fmt, layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = k
                frame.time_base = Fraction(1, sample_rate)
                for p in a.encode(frame):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def media_stats(path: Path) -> dict:
    """Frame count, first/last video times, nominal fps, size, audio packets of a video file."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        times = [float(f.pts * f.time_base) for f in c.decode(v)]
        size = (v.codec_context.width, v.codec_context.height)
        fps = v.average_rate
    audio = 0
    codec = None
    with av.open(str(path)) as c:
        if c.streams.audio:
            codec = c.streams.audio[0].codec_context.name
            audio = sum(1 for p in c.demux(c.streams.audio[0]) if p.size > 0)
    return {"frames": len(times), "times": times, "size": size, "fps": fps, "audio_packets": audio,
            "audio_codec": codec}


def audio_only_file(folder: Path) -> Path:
    """An .m4a holding one AAC frame of silence and no video stream."""
    import av

    path = folder / "tone.m4a"
    with av.open(str(path), "w") as c:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for p in [*a.encode(frame), *a.encode()]:
            c.mux(p)
    return path


@pytest.fixture
def one_thread():
    """Tiny convolutions on a CPU shared with other jobs run ~10x faster single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Styles made in the tests: tiny networks; "flat" ones paint every pixel one colour, so which style
# (or which mixture of styles) produced a frame can be read off its pixels

DARK, BRIGHT = 0.2, 0.8  # the grey levels the two flat test styles paint


def flat_style(path: Path, level: float | tuple[float, float, float]) -> Path:
    """A tiny style whose last convolution has zero weights and ``level`` (grey or RGB in [0,1]) as bias."""
    from fastnst.models import Arch, TransformerNet
    from fastnst.styles import save_style

    torch.manual_seed(0)
    net = TransformerNet(Arch((8, 8, 8), 1))
    last = net.decoder[-1].conv
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(level if isinstance(level, tuple) else (level,) * 3))
    return save_style(path, net, style_name=path.stem, preset="custom")


@pytest.fixture(scope="module")
def flats(tmp_path_factory) -> tuple[Path, Path]:
    """``(dark, bright)``: two flat style files painting :data:`DARK` and :data:`BRIGHT` grey."""
    folder = tmp_path_factory.mktemp("flats")
    return flat_style(folder / "dark.safetensors", DARK), flat_style(folder / "bright.safetensors", BRIGHT)


@pytest.fixture(scope="module")
def textured(tmp_path_factory) -> Path:
    """A tiny style file with random weights (its output has texture)."""
    from fastnst.models import Arch, TransformerNet
    from fastnst.styles import save_style

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("textured") / "tex.safetensors"
    return save_style(path, TransformerNet(Arch((8, 8, 8), 1)), style_name="tex", preset="custom")
