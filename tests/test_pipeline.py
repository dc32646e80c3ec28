"""The Stylizer and the streaming video engine, on tiny generated videos and a tiny random model."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from fastnst import cli
from fastnst.devices import auto_dtype
from fastnst.errors import FastNSTError
from fastnst.models import Arch, TransformerNet
from fastnst.pipeline import Stylizer, stylize_path, stylize_video
from fastnst.styles import load_style, save_style

from .conftest import (  # also imported from here by older modules
    audio_only_file,
    make_video,
    media_stats,
    pattern,
)

TINY = Arch((8, 8, 8), 1)


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_style(tmp_path / "tiny.safetensors", TransformerNet(TINY), style_name="tiny", preset="custom")


# --------------------------------------------------------------------------------------------------
# Stylizer
# --------------------------------------------------------------------------------------------------


def test_stylizer_numpy_and_tensor(tiny_model: Path) -> None:
    st = Stylizer(tiny_model, device="cpu")
    assert st.dtype == auto_dtype(torch.device("cpu")) and st.name == "tiny"
    img = pattern(0, 37, 45)  # odd: the net pads to a multiple of 4 and crops back
    out = st(img)
    assert out.shape == (37, 45, 3) and out.dtype == np.uint8
    batch = torch.rand(2, 3, 21, 30, dtype=torch.float64)
    y = st(batch)
    assert y.shape == (2, 3, 21, 30) and y.dtype == torch.float64
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    # the numpy path and the tensor path agree (up to uint8 rounding)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    ref = (st(t)[0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(ref - out.astype(np.float64)).max() <= 1


def test_stylizer_accepts_models_without_changing_them(tiny_model: Path) -> None:
    model = load_style(tiny_model)
    net = model.net
    before = {k: v.clone() for k, v in net.state_dict().items()}
    a = Stylizer(model, device="cpu", dtype="bf16")
    b = Stylizer(net, device="cpu")
    assert next(net.parameters()).dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    img = pattern(1, 32, 32)
    assert np.array_equal(b(img), Stylizer(tiny_model, device="cpu")(img))
    assert a(img).shape == (32, 32, 3)


def test_stylizer_max_size_and_scale(tiny_model: Path) -> None:
    img = pattern(0, 50, 80)
    assert Stylizer(tiny_model, device="cpu", max_size=40)(img).shape == (25, 40, 3)
    st = Stylizer(tiny_model, device="cpu", scale=0.5)
    out = st(img)
    assert out.shape == (50, 80, 3)
    # running at half resolution is not the same picture as full resolution
    assert not np.array_equal(out, Stylizer(tiny_model, device="cpu")(img))
    with pytest.raises(FastNSTError):
        Stylizer(tiny_model, device="cpu", scale=0)


# --------------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------------


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def test_stylize_video_keeps_frames_timing_and_audio(tmp_path: Path, tiny_model: Path) -> None:
    src = make_video(tmp_path / "in.mp4", w=66, h=50, n=15, fps=10)
    out = tmp_path / "out.mp4"
    res = stylize_video(src, out, tiny_model, device="cpu", progress=False, batch_size=4)
    a, b = media_stats(src), media_stats(out)
    assert res.frames == 15 and b["frames"] == a["frames"] == 15
    assert b["size"] == (66, 50) and (res.width, res.height) == (66, 50)
    assert b["fps"] == 10 and res.video_fps == 10
    assert np.allclose(b["times"], a["times"], atol=1e-3)
    assert a["audio_packets"] > 10 and b["audio_packets"] == a["audio_packets"]
    assert b["audio_codec"] == "aac" and res.audio_copied == 1 and res.audio_transcoded == 0
    assert _no_leftovers(tmp_path) == []


def _pcm(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])


@pytest.mark.parametrize("batch_size, ext", [(1, "mp4"), (4, "mp4"), (1, "mkv")])
def test_the_sound_is_copied_sample_for_sample_from_its_first_packet(tmp_path: Path, tiny_model: Path,
                                                                      batch_size: int, ext: str) -> None:
    # An AAC track starts with a priming packet stamped before 0 (the encoder's delay). Dropped, the
    # next packet decodes without its overlap: the first 1024 samples came out as silence.
    src = make_video(tmp_path / "in.mp4", n=11)
    with av.open(str(src)) as c:
        assert next(p for p in c.demux(c.streams.audio[0]) if p.size).pts < 0
    out = tmp_path / f"out.{ext}"
    stylize_video(src, out, tiny_model, device="cpu", progress=False, batch_size=batch_size)
    a, b = _pcm(src), _pcm(out)
    assert np.abs(a[:1024]).max() > 0.01
    if ext == "mp4":  # an edit list hides the priming from players, as in the source
        assert a.shape == b.shape and np.array_equal(a, b)
    else:  # Matroska has no negative time: the priming plays first, and the video starts later by as much
        assert len(b) == len(a) + 1024 and np.array_equal(a, b[1024:])
        assert media_stats(out)["times"][0] == pytest.approx(1024 / 16000, abs=1e-3)


def test_odd_size_is_kept_in_yuv444p(tmp_path: Path, tiny_model: Path) -> None:
    src = make_video(tmp_path / "odd.mkv", w=67, h=49, n=6, audio=None, pix_fmt="yuv444p")
    out = tmp_path / "odd_out.mp4"
    res = stylize_video(src, out, tiny_model, device="cpu", progress=False)
    s = media_stats(out)
    assert s["size"] == (67, 49) and s["frames"] == 6 and s["audio_packets"] == 0
    assert (res.width, res.height) == (67, 49) and "yuv444p" in res.size_note
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv444p"


def test_rotation_is_applied_to_the_pixels(tmp_path: Path, tiny_model: Path) -> None:
    src = make_video(tmp_path / "rot.mp4", w=66, h=50, n=5, audio=None, rotation=90)
    out = tmp_path / "rot_out.mp4"
    res = stylize_video(src, out, tiny_model, device="cpu", progress=False)
    assert (res.width, res.height) == (50, 66)
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (50, 66)
        assert not frame.rotation  # upright pixels, no rotation left for the player to apply


def test_variable_frame_rate_is_preserved(tmp_path: Path, tiny_model: Path) -> None:
    pts = [0, 1, 2, 5, 6, 7, 12, 13]
    src = make_video(tmp_path / "vfr.mkv", n=len(pts), pts=pts, audio=None)
    out = tmp_path / "vfr_out.mp4"
    stylize_video(src, out, tiny_model, device="cpu", progress=False)
    assert np.allclose(media_stats(out)["times"], [p / 10 for p in pts], atol=1e-3)


def test_segment_start_duration(tmp_path: Path, tiny_model: Path) -> None:
    src = make_video(tmp_path / "in.mp4", n=20, fps=10)
    out = tmp_path / "seg.mp4"
    res = stylize_video(src, out, tiny_model, device="cpu", progress=False, start=0.5, duration=0.8)
    s = media_stats(out)
    assert res.frames == s["frames"] == 8
    assert s["times"][0] == pytest.approx(0.0, abs=1e-3)
    # about 0.8 s of 16 kHz AAC (1024 samples per packet): 12.5 packets
    assert 11 <= s["audio_packets"] <= 14


def test_audio_the_container_cannot_hold_is_transcoded(tmp_path: Path, tiny_model: Path) -> None:
    src = make_video(tmp_path / "mulaw.avi", n=10, audio="pcm_mulaw", sample_rate=8000)
    out = tmp_path / "out.mp4"
    res = stylize_video(src, out, tiny_model, device="cpu", progress=False)
    s = media_stats(out)
    assert res.audio_transcoded == 1 and any("AAC" in n for n in res.notes)
    assert s["audio_codec"] == "aac" and s["audio_packets"] > 0 and s["frames"] == 10


def test_avi_output_is_renumbered_at_constant_rate(tmp_path: Path, tiny_model: Path) -> None:
    src = make_video(tmp_path / "in.mp4", n=8, audio=None)
    out = tmp_path / "out.avi"
    stylize_video(src, out, tiny_model, device="cpu", progress=False)
    s = media_stats(out)
    # players read AVI+H.264 one frame late (decoder delay); what matters is the even spacing, in order
    assert s["frames"] == 8 and np.allclose(np.diff(s["times"]), 0.1, atol=1e-3)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_leaves_no_file(tmp_path: Path, tiny_model: Path, monkeypatch, exc) -> None:
    src = make_video(tmp_path / "in.mp4", n=15)
    out = tmp_path / "out.mp4"
    real = Stylizer.stylize_uint8
    calls = {"n": 0}

    def flaky(self, frames, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise exc("injected")
        return real(self, frames, *args)

    monkeypatch.setattr(Stylizer, "stylize_uint8", flaky)
    with pytest.raises(exc):
        stylize_video(src, out, tiny_model, device="cpu", progress=False, batch_size=2)
    assert not out.exists() and _no_leftovers(tmp_path) == []


def test_writer_failure_surfaces_and_cleans_up(tmp_path: Path, tiny_model: Path, monkeypatch) -> None:
    from fastnst import video

    src = make_video(tmp_path / "in.mp4", n=12)
    out = tmp_path / "out.mp4"
    real = video.VideoWriter.write

    def broken(self, rgb, pts=None):
        if self.frames == 4:
            raise OSError("disk full (injected)")
        return real(self, rgb, pts)

    monkeypatch.setattr(video.VideoWriter, "write", broken)
    with pytest.raises(OSError, match="injected"):
        stylize_video(src, out, tiny_model, device="cpu", progress=False)
    assert not out.exists() and _no_leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# CLI: images, folders, videos, bad inputs
# --------------------------------------------------------------------------------------------------


def _write_png(path: Path, img: np.ndarray) -> Path:
    from fastnst.images import write_image

    return write_image(path, img)


def test_cli_image_and_folder(tmp_path: Path, tiny_model: Path, capsys) -> None:
    img = _write_png(tmp_path / "a.png", pattern(0, 30, 41))
    out = tmp_path / "a_out.jpg"
    assert cli.main(["stylize", str(img), "-o", str(out), "--style", str(tiny_model), "--device", "cpu", "-q"]) == 0
    from fastnst.images import read_image

    assert read_image(out).shape == (30, 41, 3)
    folder = tmp_path / "photos"
    _write_png(folder / "x.png", pattern(1, 20, 24))
    _write_png(folder / "sub" / "y.webp", pattern(2, 24, 20))
    (folder / "notes.txt").write_text("not an image")
    dst = tmp_path / "styled"
    assert cli.main(["stylize", str(folder), "-o", str(dst), "--style", str(tiny_model), "--device", "cpu",
                     "-q", "--max-size", "16"]) == 0
    assert read_image(dst / "x.png").shape == (13, 16, 3)
    assert read_image(dst / "sub" / "y.webp").shape == (16, 13, 3)
    assert "2 images" in capsys.readouterr().out


def test_cli_video(tmp_path: Path, tiny_model: Path, capsys) -> None:
    src = make_video(tmp_path / "in.mp4", n=8)
    out = tmp_path / "out.mkv"
    rc = cli.main(["stylize", str(src), "-o", str(out), "--style", str(tiny_model), "--device", "cpu", "-q",
                   "--crf", "30", "--preset", "ultrafast", "--scale", "0.5"])
    assert rc == 0
    assert media_stats(out)["frames"] == 8
    text = capsys.readouterr().out
    assert "8 frames" in text and "1 audio stream(s) copied" in text


def _truncated(tmp_path: Path) -> Path:
    src = make_video(tmp_path / "full.mp4", n=15)
    data = src.read_bytes()
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: cut off
    return bad


def _truncated_mkv(tmp_path: Path) -> Path:
    src = make_video(tmp_path / "full.mkv", n=15, audio=None)
    data = src.read_bytes()
    bad = tmp_path / "truncated.mkv"
    bad.write_bytes(data[:300])  # header only: no frame survives
    return bad


def _corrupt(tmp_path: Path) -> Path:
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return bad


def _empty(tmp_path: Path) -> Path:
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    return bad


def _audio_only(tmp_path: Path) -> Path:
    return audio_only_file(tmp_path)


@pytest.mark.parametrize("make_bad", [_truncated, _truncated_mkv, _corrupt, _empty, _audio_only])
def test_cli_bad_video_inputs(tmp_path: Path, tiny_model: Path, capsys, make_bad) -> None:
    bad = make_bad(tmp_path)
    out = tmp_path / "out" / "result.mp4"
    rc = cli.main(["stylize", str(bad), "-o", str(out), "--style", str(tiny_model), "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("fastnst: error: ") and err.count("\n") == 1 and str(bad.name) in err
    assert not out.exists()
    assert not out.parent.exists() or _no_leftovers(out.parent) == []


def test_cli_bad_image_and_missing_input(tmp_path: Path, tiny_model: Path, capsys) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    out = tmp_path / "o.png"
    assert cli.main(["stylize", str(bad), "-o", str(out), "--style", str(tiny_model), "-q"]) == 2
    assert cli.main(["stylize", str(tmp_path / "nope.mp4"), "-o", str(out), "--style", str(tiny_model)]) == 2
    err = capsys.readouterr().err
    assert "Cannot read" in err and "does not exist" in err
    assert not out.exists()


def test_stylize_path_rejects_bad_outputs(tmp_path: Path, tiny_model: Path) -> None:
    src = make_video(tmp_path / "in.mp4", n=3, audio=None)
    with pytest.raises(FastNSTError, match="video extension"):
        stylize_path(src, tmp_path / "out.png", tiny_model, device="cpu", progress=False)
    with pytest.raises(FastNSTError, match="encoder"):
        stylize_video(src, tmp_path / "out.mp4", tiny_model, device="cpu", progress=False, codec="nope264")
    with pytest.raises(FastNSTError, match="overwrite"):
        stylize_video(src, src, tiny_model, device="cpu", progress=False)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_cuda_pipeline_matches_cpu(tmp_path: Path, tiny_model: Path, dtype: str) -> None:
    src = make_video(tmp_path / "in.mp4", n=11)  # 11 frames, batch 4: a padded partial last batch
    cpu, gpu = tmp_path / "cpu.mp4", tmp_path / "gpu.mp4"
    stylize_video(src, cpu, tiny_model, device="cpu", progress=False, crf=0, preset="ultrafast")
    res = stylize_video(src, gpu, tiny_model, device="cuda", dtype=dtype, batch_size=4, progress=False, crf=0,
                        preset="ultrafast")
    assert res.frames == 11 and media_stats(gpu)["audio_packets"] == media_stats(src)["audio_packets"]
    from fastnst.video import read_frames

    for a, b in zip(read_frames(cpu), read_frames(gpu), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < (1.0 if dtype == "fp32" else 3.0)


def test_cuda_batch_size_shrinks_with_the_frame() -> None:
    from fastnst.pipeline import cuda_batch_size

    assert cuda_batch_size(1280, 720) == 8 and cuda_batch_size(1920, 1080) == 8
    assert cuda_batch_size(3840, 2160) == 2 and cuda_batch_size(7680, 4320) == 1
    assert cuda_batch_size(None, None) == 8


def test_options_objects_and_keywords_are_one_api(tmp_path: Path, tiny_model: Path) -> None:
    from fastnst.options import EngineOptions, ModelOptions, VideoOptions

    src = make_video(tmp_path / "in.mp4", n=20, fps=10, audio=None)
    engine = EngineOptions(model=ModelOptions(work_size=32, stabilize=0), device="cpu")
    res = stylize_video(src, tmp_path / "a.mp4", tiny_model, engine=engine,
                        video=VideoOptions(start=0.5, duration=0.8), progress=False, batch_size=3)  # a keyword overrides the options object's field
    assert res.frames == 8 and res.batch_size == 3 and res.work_size is not None and min(res.work_size) == 32
    with pytest.raises(TypeError, match="'bogus'"):
        stylize_video(src, tmp_path / "b.mp4", tiny_model, progress=False, bogus=1)
    with pytest.raises(TypeError, match="'bogus'"):
        stylize_path(src, tmp_path / "b.mp4", tiny_model, progress=False, bogus=1)
    assert not (tmp_path / "b.mp4").exists()


def test_a_video_network_gets_its_prior_even_without_stabilisation(tmp_path, monkeypatch):
    """--stabilize 0 turns the blend off, not the stream: a video network still sees its previous
    output on every frame after the first (the motion is estimated for it alone)."""
    from fastnst.models import PRESETS, TransformerNet
    from fastnst.styles import save_style

    torch.manual_seed(0)
    model = save_style(tmp_path / "v.safetensors", TransformerNet(PRESETS["video"]), style_name="v", preset="video")
    src = make_video(tmp_path / "in.mp4", n=6, audio=None)
    given: list[bool] = []
    network = Stylizer.network
    monkeypatch.setattr(Stylizer, "network",
                        lambda self, work, prior=None: (given.append(prior is not None), network(self, work, prior))[1])
    stylize_video(src, tmp_path / "out.mp4", model, device="cpu", progress=False, stabilize=0.0, runtime="torch")
    assert given == [False] + [True] * 5
