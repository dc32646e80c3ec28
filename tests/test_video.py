"""Video edges: probe, read_frames (rotation, resize, segments, timestamps), VideoWriter, audio remux."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fastnst.errors import FastNSTError
from fastnst.fileio import leftovers
from fastnst.video import (
    VideoWriter,
    even_pad,
    iter_decoded,
    open_input,
    probe,
    read_frames,
    write_video,
)

from .conftest import make_video, media_stats, pattern


def test_probe(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", w=66, h=50, n=15, fps=10)
    info = probe(src)
    assert (info.width, info.height) == (66, 50) and info.rotation == 0
    assert info.fps == Fraction(10) and isinstance(info.fps, Fraction)
    assert info.frames == 15 and info.duration == pytest.approx(1.5, abs=0.11)
    assert info.has_audio and info.audio_codec == "aac" and info.codec == "h264"
    assert info.pix_fmt == "yuv420p" and info.chroma_subsampled  # make_video writes H.264 in 4:2:0
    silent = probe(make_video(tmp_path / "silent.mkv", n=3, audio=None))
    assert not silent.has_audio and silent.audio_codec is None and silent.frames > 0


def test_read_frames_shapes_and_content(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", w=66, h=50, n=12, audio=None)
    frames = list(read_frames(src))
    assert len(frames) == 12 and all(f.shape == (50, 66, 3) and f.dtype == np.uint8 for f in frames)
    # lossy, but close to what was encoded; and the square moves
    assert np.abs(frames[3].astype(int) - pattern(3, 50, 66)).mean() < 12
    assert not np.array_equal(frames[0], frames[5])
    small = list(read_frames(src, max_size=33))
    assert small[0].shape == (24, 32, 3) and len(small) == 12  # downscaled sizes are even (4:2:0)


def test_read_frames_segment(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", n=20, fps=10, audio=None)
    seg = list(read_frames(src, start=1.0, duration=0.5))
    assert len(seg) == 5
    full = list(read_frames(src))
    assert np.array_equal(seg[0], full[10])
    with pytest.raises(FastNSTError, match="no decodable video frames after"):
        list(read_frames(src, start=10.0))


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_is_applied(tmp_path: Path, rotation: int) -> None:
    src = make_video(tmp_path / "rot.mp4", w=64, h=48, n=2, audio=None, rotation=rotation)
    info = probe(src)
    assert info.rotation % 360 == rotation % 360
    assert (info.width, info.height) == ((48, 64) if rotation % 180 else (64, 48))
    frame = next(read_frames(src))
    # the bright square sits at the top-left of the coded picture: np.rot90 by the display angle
    expected = np.rot90(pattern(0, 48, 64), round(rotation / 90) % 4)
    assert frame.shape == expected.shape
    assert np.abs(frame.astype(int) - expected).mean() < 12


def test_variable_frame_rate_timestamps(tmp_path: Path) -> None:
    pts = [0, 1, 3, 4, 9]
    src = make_video(tmp_path / "vfr.mkv", n=5, pts=pts, audio=None)
    container, stream = open_input(src)
    with container:
        got = [(d.pts * stream.time_base, d.time) for d in iter_decoded(container, stream)]
    assert [float(t) for t, _ in got] == pytest.approx([p / 10 for p in pts])


def test_reorders_shuffled_avi_timestamps(tmp_path: Path) -> None:
    # AVI keeps no pts: with B-frames the decoder's stamps come out shuffled (1, 4, 3, 5, 2, ...)
    src = make_video(tmp_path / "b.avi", n=20, audio=None, x264_preset="medium")
    with av.open(str(src)) as c:
        raw = [f.pts for f in c.decode(video=0)]
    container, stream = open_input(src)
    with container:
        fixed = [d.pts for d in iter_decoded(container, stream)]
    assert len(fixed) == 20 and fixed == sorted(raw) and all(b > a for a, b in itertools.pairwise(fixed))


def test_audio_packets_are_yielded_in_range(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", n=20, fps=10, sample_rate=16000)
    container, stream = open_input(src)
    with container:
        items = list(iter_decoded(container, stream, audio_streams=list(container.streams.audio), start=0.5,
                                  duration=1.0))
    packets = [i for i in items if isinstance(i, av.Packet)]
    frames = [i for i in items if not isinstance(i, av.Packet)]
    assert len(frames) == 10
    times = [float(p.pts * p.time_base) for p in packets]
    # the first packet may start before 0.5 s, but it ends after it: it holds the segment's first samples
    first_end = float((packets[0].pts + packets[0].duration) * packets[0].time_base)
    assert min(times) >= 0.5 - 1024 / 16000 and first_end > 0.5 and max(times) < 1.5 and 14 <= len(packets) <= 17


@pytest.mark.parametrize("content", [b"", b"garbage" * 100])
def test_bad_files(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(FastNSTError, match="bad.mp4"):
        read_frames(bad)
    with pytest.raises(FastNSTError):
        probe(bad)
    with pytest.raises(FastNSTError, match="does not exist"):
        probe(tmp_path / "missing.mp4")


def test_writer_roundtrip_odd_size_and_atomicity(tmp_path: Path) -> None:
    frames = [pattern(i, 31, 45) for i in range(6)]
    out = write_video(tmp_path / "w.mp4", frames, fps=12, preset="ultrafast")
    s = media_stats(out)
    assert s["frames"] == 6 and s["size"] == (45, 31) and s["fps"] == 12  # 4:4:4 keeps an odd size
    assert even_pad(frames[0]).shape == (32, 46, 3)
    assert leftovers(tmp_path) == []

    target = tmp_path / "never.mp4"
    with pytest.raises(RuntimeError), VideoWriter(target, 32, 32, preset="ultrafast") as w:
        for i in range(40):  # past the encoder's look-ahead, so packets reach the temporary file
            w.write(pattern(i, 32, 32))
        assert leftovers(tmp_path) == [w.tmp] and w.tmp.suffix == ".mp4"
        assert w.tmp.stat().st_size > 0 and not target.exists()
        raise RuntimeError("boom")
    assert not target.exists() and leftovers(tmp_path) == []


def test_duplicate_audio_dts_are_nudged(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", n=10, fps=10)
    container, _stream = open_input(src)
    out = tmp_path / "out.mp4"
    with container:
        a = container.streams.audio[0]
        packets = [p for p in container.demux(a) if p.size > 0]
        packets[3].dts = packets[2].dts  # MP4 refuses this unless fixed
        packets[3].pts = packets[2].pts
        with VideoWriter(out, 32, 32, fps=10, preset="ultrafast") as w:
            assert w.add_audio(a) == "copy"
            w.write(pattern(0, 32, 32), 0)
            for p in packets:
                w.mux_audio(p)
    assert media_stats(out)["audio_packets"] == len(packets)


def test_writer_rejects_bad_codec_and_extension(tmp_path: Path) -> None:
    with pytest.raises(FastNSTError, match="codec"):
        VideoWriter(tmp_path / "x.mp4", 32, 32, codec="no_such_codec")
    with pytest.raises(FastNSTError, match="extension"):
        VideoWriter(tmp_path / "noext", 32, 32)
    assert list(tmp_path.iterdir()) == []


def test_check_encoder_ranges_and_names() -> None:
    from fastnst.video import check_encoder

    assert check_encoder("libx264", 0, "placebo") == "libx264" and check_encoder("h264", 51) == "libx264"
    assert check_encoder("mpeg4") == "mpeg4"
    assert check_encoder("mpeg4", 18, "fast", strict=False) == "mpeg4"  # a writer's defaults are ignored there
    for codec, crf, preset, message in (("libx264", -1, None, "--crf must be from 0"),
                                        ("libx265", 51.5, None, "--crf must be from 0"),
                                        ("libx264", None, "bogus", "--preset must be one of"),
                                        ("mpeg4", None, "fast", "--preset applies to"),
                                        ("mpeg4", 20, "fast", "--crf and --preset apply to"),
                                        ("aac", None, None, "audio codec"), ("nope", None, None, "Unknown")):
        with pytest.raises(FastNSTError, match=message):
            check_encoder(codec, crf, preset)


def test_check_container_by_extension(tmp_path: Path) -> None:
    from fastnst.video import check_container

    assert check_container(tmp_path / "a.MP4", "libx264") == "mp4"
    assert check_container(tmp_path / "a.mkv", "ffv1") == "matroska"
    for name, message in (("a.xyz", "not a video file type"), ("a.png", "not a video file type"),
                          ("a.webm", "cannot hold libx264")):
        with pytest.raises(FastNSTError, match=message):
            check_container(tmp_path / name, "libx264")
    assert list(tmp_path.iterdir()) == []


def test_pixel_format_keeps_odd_sizes_where_the_encoder_can() -> None:
    from fastnst.video import pick_pix_fmt, plan_size

    assert pick_pix_fmt("libx264", 640, 360) == "yuv420p"
    assert pick_pix_fmt("libx264", 333, 101) == pick_pix_fmt("libx265", 334, 101) == "yuv444p"
    assert pick_pix_fmt("mpeg4", 333, 101) == "yuv420p"  # mpeg4 takes odd 4:2:0 sizes
    assert pick_pix_fmt("libx264rgb", 32, 32) in ("bgr0", "bgr24", "rgb24")
    # a downscale lands on even sizes (the 4:2:0 every player plays), never above the cap
    assert plan_size(640, 272, 0, 333).display == (332, 142) and plan_size(67, 49, 0, None).display == (67, 49)


def test_writer_pads_only_where_the_format_needs_it(tmp_path: Path) -> None:
    frames = [pattern(i, 17, 33) for i in range(3)]
    with VideoWriter(tmp_path / "pad.mp4", 33, 17, preset="ultrafast", pix_fmt="yuv420p") as w:
        for f in frames:
            w.write(f)
    assert w.encoded_size == (34, 18) and w.size_note == "padded to even for yuv420p"
    assert media_stats(tmp_path / "pad.mp4")["size"] == (34, 18)
    with VideoWriter(tmp_path / "keep.mkv", 33, 17, codec="ffv1") as w:
        for f in frames:
            w.write(f)
    assert w.encoded_size == (33, 17) and w.size_note == "" and media_stats(tmp_path / "keep.mkv")["size"] == (33, 17)


def test_x265_writes_nothing_to_stderr(tmp_path: Path, capfd) -> None:
    with VideoWriter(tmp_path / "h.mkv", 32, 32, codec="libx265", preset="ultrafast") as w:
        for i in range(3):
            w.write(pattern(i, 32, 32))
    assert capfd.readouterr().err == ""
