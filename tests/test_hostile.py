"""Hostile inputs, tried as a new user would, through the real CLI.

Every failure must be: exit 2 (130 for Ctrl-C, 143 for SIGTERM), exactly one line on stderr, no
traceback, nothing under the final name and no temporary file left. Inputs are made small and on
the spot; only the signal tests start a real ``python -m fastnst`` process.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from fastnst import cli
from fastnst.images import read_image, write_image
from fastnst.models import Arch, TransformerNet
from fastnst.styles import save_style

from .conftest import audio_only_file, make_video, smooth_image

TINY = Arch((8, 8, 8), 1)
REPO = Path(__file__).resolve().parent.parent

# tiny networks on a shared 2-core CPU: one thread is several times faster than two
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_style(tmp_path / "models" / "tiny.safetensors", TransformerNet(TINY), style_name="tiny")


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def stylize(capsys, src, out, style, *extra: str) -> tuple[int, str]:
    rc = cli.main(["stylize", str(src), "-o", str(out), "--style", str(style), "--device", "cpu", "-q", *extra])
    return rc, capsys.readouterr().err


def assert_refused(rc: int, err: str, root: Path, before: set[str], out: Path, *, code: int = 2,
                   says: str = "") -> None:
    """One line, no traceback, nothing new on disk (neither the output nor a temporary file)."""
    assert rc == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("fastnst: "), err
    assert says.lower() in err.lower(), err
    assert not out.exists()
    assert files(root) == before, files(root) - before


def refused(capsys, tmp_path: Path, src, style, out: Path | None = None, *extra: str, says: str = "") -> None:
    out = out or tmp_path / "out" / "result.mp4"
    before = files(tmp_path)
    rc, err = stylize(capsys, src, out, style, *extra)
    assert_refused(rc, err, tmp_path, before, out, says=says)


# --------------------------------------------------------------------------------------------------
# Broken and impostor inputs
# --------------------------------------------------------------------------------------------------


def _truncated(d: Path) -> Path:
    data = make_video(d / "full.mp4", n=15).read_bytes()
    (d / "full.mp4").unlink()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])  # the moov index is at the end: lost
    return d / "truncated.mp4"


def _corrupt(d: Path) -> Path:
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return d / "corrupt.mp4"


def _empty(d: Path) -> Path:
    (d / "empty.mp4").write_bytes(b"")
    return d / "empty.mp4"


def _text(d: Path) -> Path:
    (d / "notes.mp4").write_text("This is not a video, just a text file with an .mp4 name.\n" * 40)
    return d / "notes.mp4"


def _audio_only(d: Path) -> Path:
    return audio_only_file(d)


def _broken_png(d: Path) -> Path:
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return d / "broken.png"


def _unknown_extension(d: Path) -> Path:
    (d / "data.xyz").write_text("hello")
    return d / "data.xyz"


@pytest.mark.parametrize("make", [_truncated, _corrupt, _empty, _text, _audio_only, _broken_png,
                                  _unknown_extension])
def test_broken_inputs(tmp_path: Path, model: Path, capsys, make) -> None:
    src = make(tmp_path)
    refused(capsys, tmp_path, src, model, says=src.name)


def test_missing_input_file_and_folder(tmp_path: Path, model: Path, capsys) -> None:
    refused(capsys, tmp_path, tmp_path / "nope.mp4", model, says="does not exist")
    refused(capsys, tmp_path, tmp_path / "photos", model, tmp_path / "styled", says="does not exist")


def test_output_in_a_missing_folder_is_created(tmp_path: Path, model: Path, capsys) -> None:
    write_image(tmp_path / "a.png", smooth_image(20, 24))
    rc, err = stylize(capsys, tmp_path / "a.png", tmp_path / "new" / "deeper" / "a.png", model)
    assert rc == 0 and read_image(tmp_path / "new" / "deeper" / "a.png").shape == (20, 24, 3), err


def test_output_is_the_input(tmp_path: Path, model: Path, capsys) -> None:
    video = make_video(tmp_path / "v.mp4", n=3, audio=None)
    image = write_image(tmp_path / "a.png", smooth_image(16, 16))
    video_bytes, image_bytes = video.read_bytes(), image.read_bytes()
    for src in (video, image):
        before = files(tmp_path)
        rc, err = stylize(capsys, src, src, model, "--force")
        assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert files(tmp_path) == before
    assert video.read_bytes() == video_bytes and image.read_bytes() == image_bytes
    folder = tmp_path / "photos"
    write_image(folder / "b.png", smooth_image(16, 16))
    before = files(tmp_path)
    rc, err = stylize(capsys, folder, folder, model)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and files(tmp_path) == before, err


def test_unknown_output_extension(tmp_path: Path, model: Path, capsys) -> None:
    video = make_video(tmp_path / "v.mp4", n=3, audio=None)
    refused(capsys, tmp_path, video, model, tmp_path / "out.xyz", says="out.xyz")
    image = write_image(tmp_path / "a.png", smooth_image(16, 16))
    refused(capsys, tmp_path, image, model, tmp_path / "out.xyz")


def test_start_past_the_end(tmp_path: Path, model: Path, capsys) -> None:
    video = make_video(tmp_path / "v.mp4", n=10, fps=10)  # 1 s
    refused(capsys, tmp_path, video, model, None, "--start", "100")


# --------------------------------------------------------------------------------------------------
# Sizes: tiny, odd, huge
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(2, 2), (17, 33)])
def test_tiny_and_odd_images_work(tmp_path: Path, model: Path, capsys, size) -> None:
    """Not failures: a 2×2 or odd-sized picture is stylized at its own size."""
    h, w = size
    image = write_image(tmp_path / "a.png", smooth_image(h, w))
    rc, err = stylize(capsys, image, tmp_path / "a_out.png", model)
    assert rc == 0, err
    assert read_image(tmp_path / "a_out.png").shape == (h, w, 3)
    assert not [f for f in files(tmp_path) if ".part" in f]


@pytest.mark.parametrize("size", [
    (2, 2),
    (17, 33),
])
def test_tiny_and_odd_videos_work(tmp_path: Path, model: Path, capsys, size) -> None:
    """Not failures: a 2×2 or odd-sized video is stylized (padded to even for yuv420p)."""
    h, w = size
    video = make_video(tmp_path / "v.mkv", w=w, h=h, n=4, audio=None, codec="ffv1", pix_fmt="yuv444p")
    rc, err = stylize(capsys, video, tmp_path / "v_out.mp4", model, "--preset", "ultrafast")
    assert rc == 0, err
    with av.open(str(tmp_path / "v_out.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape[0] in (h, h + 1) and frames[0].shape[1] in (w, w + 1)
    assert not [f for f in files(tmp_path) if ".part" in f]


def _huge_png(path: Path, w: int = 20000, h: int = 20000) -> Path:
    """A valid 1-bit greyscale PNG of w×h black pixels: 50 MB of rows, a few kB of file, 1.2 GB decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    row = b"\x00" * (1 + (w + 7) // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_huge_image_refused_before_decoding(tmp_path: Path, model: Path, capsys, monkeypatch) -> None:
    src = _huge_png(tmp_path / "huge.png")
    import cv2

    def no_decode(*a, **k):  # the cap must act on the header: decoding 1.2 GB is the failure
        raise AssertionError("decoded")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    refused(capsys, tmp_path, src, model, tmp_path / "out.png", says="--max-pixels")


def test_huge_video_frames_refused_before_decoding(tmp_path: Path, model: Path, capsys) -> None:
    # A Y4M header declaring 10000×10000 frames, then one truncated frame: only the header is read.
    src = tmp_path / "huge.y4m"
    src.write_bytes(b"YUV4MPEG2 W10000 H10000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x80" * 4096)
    refused(capsys, tmp_path, src, model, says="megapixel")


def test_first_decoded_frame_is_checked_too(tmp_path: Path) -> None:
    """For containers whose header states no size, the first decoded frame is checked."""
    from fastnst.errors import FastNSTError
    from fastnst.video import iter_decoded, open_input

    video = make_video(tmp_path / "v.mp4", w=64, h=48, n=3, audio=None)
    container, stream = open_input(video, max_pixels=0)  # 0: no limit at the header
    with container, pytest.raises(FastNSTError, match="3072"):
        next(iter_decoded(container, stream, max_pixels=3000))


def test_max_pixels_option_moves_the_cap(tmp_path: Path, model: Path, capsys) -> None:
    image = write_image(tmp_path / "a.png", smooth_image(48, 64))  # 3072 pixels
    refused(capsys, tmp_path, image, model, tmp_path / "o.png", "--max-pixels", "3000", says="3072")
    video = make_video(tmp_path / "v.mp4", w=64, h=48, n=3, audio=None)
    refused(capsys, tmp_path, video, model, tmp_path / "o.mp4", "--max-pixels", "3000", says="3072")
    rc, err = stylize(capsys, image, tmp_path / "o.png", model, "--max-pixels", "4000")
    assert rc == 0 and (tmp_path / "o.png").is_file(), err


# --------------------------------------------------------------------------------------------------
# Style files
# --------------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this runs ``Path(marker).touch()``: proof of code execution if it ever happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("name", ["evil.pth", "evil.pt", "evil.safetensors"])
def test_pickle_weights_with_a_payload_never_run(tmp_path: Path, capsys, name: str) -> None:
    marker = tmp_path / "pwned"
    style = tmp_path / name
    style.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    image = write_image(tmp_path / "a.png", smooth_image(16, 16))
    refused(capsys, tmp_path, image, style, tmp_path / "o.png")
    assert not marker.exists()


def test_garbage_weights(tmp_path: Path, capsys) -> None:
    style = tmp_path / "garbage.safetensors"
    style.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    image = write_image(tmp_path / "a.png", smooth_image(16, 16))
    refused(capsys, tmp_path, image, style, tmp_path / "o.png", says="garbage.safetensors")
    huge_header = tmp_path / "huge_header.safetensors"  # declares a 2**62-byte JSON header
    huge_header.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    refused(capsys, tmp_path, image, huge_header, tmp_path / "o.png")


def test_unknown_style(tmp_path: Path, capsys) -> None:
    image = write_image(tmp_path / "a.png", smooth_image(16, 16))
    refused(capsys, tmp_path, image, "no_such_style_xyz", tmp_path / "o.png", says="no_such_style_xyz")


# --------------------------------------------------------------------------------------------------
# Interrupts: a real process, stopped while it writes
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("long")
    # 320×240 at x264's slowest preset: several seconds of work, so the signal lands mid-run.
    return make_video(d / "long.mp4", w=320, h=240, n=150, fps=25, audio="aac")


def test_sigterm_in_process_cleans_up(tmp_path: Path, model: Path, long_video: Path, capsys) -> None:
    """The SIGTERM handler of ``cli.main`` turns the signal into the Ctrl-C cleanup (fast variant of
    the subprocess test below: same handler, no interpreter start-up)."""
    import threading

    out = tmp_path / "out" / "styled.mp4"
    out.parent.mkdir()
    done = threading.Event()

    def kill_when_writing() -> None:
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            if any(".part" in p.name for p in out.parent.iterdir()):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.02)

    # A SIGTERM that arrived after cli.main restored the handler must not end the test session.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    watcher = threading.Thread(target=kill_when_writing, daemon=True)
    try:
        watcher.start()
        rc = cli.main(["stylize", str(long_video), "-o", str(out), "--style", str(model), "--device", "cpu", "-q",
                       "--preset", "veryslow", "--crf", "0"])
    finally:
        done.set()
        watcher.join()
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert rc == cli.EXIT_TERMINATED == 143 and err == "fastnst: terminated\n", err
    assert list(out.parent.iterdir()) == []


@pytest.mark.slow  # two interpreter start-ups with torch: 5-10 s each
@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_signal_mid_run_cleans_up(tmp_path: Path, model: Path, long_video: Path, sig, code, word) -> None:
    out = tmp_path / "out" / "styled.mp4"
    out.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastnst", "stylize", str(long_video), "-o", str(out), "--style", str(model),
         "--device", "cpu", "-q", "--preset", "veryslow", "--crf", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 90
        while not any(".part" in p.name for p in out.parent.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no temporary output appeared"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert err.strip() == f"fastnst: {word}", err
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("kind", ["video", "image"])
def test_existing_output_is_kept_without_force(tmp_path: Path, model: Path, capsys, kind: str) -> None:
    """An existing output file is never replaced without --force; with it, it is."""
    if kind == "video":
        src = make_video(tmp_path / "in.mp4", w=32, h=24, n=3, audio=None)
        out = tmp_path / "out.mp4"
    else:
        src = tmp_path / "in.png"
        write_image(src, smooth_image(24, 32))
        out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    rc, err = stylize(capsys, src, out, model)
    assert rc == 2 and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == b"precious"
    rc, err = stylize(capsys, src, out, model, "--force", "--preset", "ultrafast")
    assert rc == 0, err
    assert out.read_bytes() != b"precious"


# --------------------------------------------------------------------------------------------------
# Issue 23: the second hostile round
# --------------------------------------------------------------------------------------------------


def one_line(rc: int, err: str, *, code: int = 2) -> str:
    """The error line of a refusal: exit ``code``, one line on stderr, no traceback."""
    assert rc == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("fastnst"), err
    return err.strip()


def test_13_quick_mode_states_an_unreadable_painting_once(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    rc = cli.main(["train", "--quick", "--style", str(bad), "--out-dir", str(tmp_path / "run")])
    err = one_line(rc, capsys.readouterr().err)
    assert err.count(str(bad)) == 1 and err.lower().count("cannot read") == 1, err
    assert files(tmp_path) == {"bad.png"} and not (tmp_path / "run").exists()
