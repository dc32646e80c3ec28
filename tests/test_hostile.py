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
from fastnst.models import PRESETS, Arch, TransformerNet
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
    """Every file under ``root``, and every empty folder (as ``name/``): a refused run must leave neither."""
    return {str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*")
            if p.is_file() or (p.is_dir() and not any(p.iterdir()))}


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
    assert not os.path.exists(out)  # False, not an error, for a name too long to exist
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


@pytest.mark.parametrize("carry, preset", [("4", "video"), ("-3", "video"), ("9", "lite"), ("5", "video_plain")])
def test_a_bad_carry_is_one_sentence_and_starts_no_run(tmp_path: Path, capsys, carry: str, preset: str) -> None:
    """``--carry`` (the video network's tent): even, negative, or on a network without a gate is refused
    before anything is written."""
    photos, style = tmp_path / "photos", tmp_path / "style.png"
    photos.mkdir()
    write_image(style, smooth_image(16, 16))  # a readable painting: only --carry is wrong
    rc = cli.main(["train", "--content", str(photos), "--style", str(style), "--preset", preset,
                   "--carry", carry, "--out-dir", str(tmp_path / "run")])
    err = one_line(rc, capsys.readouterr().err)
    assert "--carry" in err, err
    assert files(tmp_path) == {"photos/", "style.png"} and not (tmp_path / "run").exists()


def test_an_unknown_temporal_target_in_a_recipe_is_one_sentence_and_starts_no_run(tmp_path: Path, capsys) -> None:
    """``temporal_target`` (what a video network's frame is held to) takes known or prior only."""
    (tmp_path / "photos").mkdir()
    write_image(tmp_path / "style.png", smooth_image(16, 16))
    recipe = tmp_path / "r.toml"
    recipe.write_text('preset = "video"\ntemporal_target = "sideways"\ncontent = ["photos"]\nstyle = ["style.png"]\n')
    rc = cli.main(["train", "--recipe", str(recipe), "--out-dir", str(tmp_path / "run")])
    err = one_line(rc, capsys.readouterr().err)
    assert "temporal_target" in err and "known, prior" in err, err
    assert files(tmp_path) == {"photos/", "style.png", "r.toml"} and not (tmp_path / "run").exists()


@pytest.mark.parametrize("phases, teacher, message", [("0", "starry_night_fast", "from 1 to 8"),
                                                     ("9", "starry_night_fast", "from 1 to 8"),
                                                     ("2", "", "only with a --teacher"),
                                                     ("8", "starry_night_fast", "more than the teacher's grid")])
def test_bad_teacher_phases_are_one_sentence_and_start_no_run(tmp_path: Path, capsys, phases: str, teacher: str,
                                                              message: str) -> None:
    """``--teacher-phases`` (the distillation teacher's mean over its grid): out of range, without a
    teacher, or finer than the teacher's grid (fast: 4 px) is refused before anything is written."""
    photos, style = tmp_path / "photos", tmp_path / "style.png"
    photos.mkdir()
    write_image(style, smooth_image(16, 16))
    write_image(photos / "p.png", smooth_image(40, 40))
    source = ["--teacher", teacher] if teacher else ["--style", str(style)]
    rc = cli.main(["train", "--content", str(photos), *source, "--teacher-phases", phases, "--steps", "1",
                   "--vgg-weights", "random", "--out-dir", str(tmp_path / "run"), "--no-progress"])
    err = one_line(rc, capsys.readouterr().err)
    assert message in err and "--teacher-phases" in err, err
    assert files(tmp_path) == {"photos/p.png", "style.png"} and not (tmp_path / "run").exists()


def test_a_video_plain_network_from_a_network_of_another_shape_is_one_sentence(tmp_path: Path, capsys) -> None:
    """``--preset video_plain --init`` takes a lite style (or a video_plain checkpoint): the fast preset's
    9×9 stem, or the gated video network, cannot start it, and nothing is written."""
    photos, style = tmp_path / "photos", tmp_path / "style.png"
    photos.mkdir()
    write_image(style, smooth_image(16, 16))
    write_image(photos / "p.png", smooth_image(40, 40))
    gated = tmp_path / "gated.safetensors"
    save_style(gated, TransformerNet(PRESETS["video"]), style_name="gated", preset="video")
    for init in (str(REPO / "weights" / "starry_night_fast.safetensors"), str(gated)):
        rc = cli.main(["train", "--content", str(photos), "--style", str(style), "--preset", "video_plain",
                       "--init", init, "--steps", "1", "--vgg-weights", "random", "--out-dir", str(tmp_path / "run"),
                       "--no-progress"])
        err = one_line(rc, capsys.readouterr().err)
        assert "holds a" in err and "video_plain" in err, err
        assert not (tmp_path / "run").exists()


# --- 1-3: folder mode -----------------------------------------------------------------------------


def _photos(folder: Path, names=("a.webp", "b.png", "sub/c.jpg")) -> Path:
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_image(folder / name, smooth_image(24, 32, seed=i))
    return folder


def test_01_folder_mode_never_replaces_an_existing_output(tmp_path: Path, model: Path, capsys) -> None:
    src, out = _photos(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    (out / "a.webp").write_text("keep")
    before = files(tmp_path)
    rc, err = stylize(capsys, src, out, model)
    assert "--force" in one_line(rc, err) and "out/a.webp" in err
    assert files(tmp_path) == before and (out / "a.webp").read_text() == "keep"  # nothing else written either
    rc, err = stylize(capsys, src, out, model, "--force")
    assert rc == 0 and read_image(out / "a.webp").shape == (24, 32, 3), err
    assert files(out) == {"a.webp", "b.png", "sub/c.jpg"}


def test_02_an_output_folder_inside_the_input_folder_is_not_stylized_again(tmp_path: Path, model: Path,
                                                                          capsys) -> None:
    src = _photos(tmp_path / "in")
    for extra in ((), ("--force",)):
        rc, err = stylize(capsys, src, src / "styled", model, *extra)
        assert rc == 0, err
    assert files(src) == {"a.webp", "b.png", "sub/c.jpg", "styled/a.webp", "styled/b.png", "styled/sub/c.jpg"}


def test_03_a_damaged_header_is_refused_before_anything_is_written(tmp_path: Path, model: Path, capsys) -> None:
    src = _photos(tmp_path / "in")
    (src / "c.png").write_bytes(b"not a png at all")
    before = files(tmp_path)
    rc, err = stylize(capsys, src, tmp_path / "out", model)
    assert "in/c.png" in one_line(rc, err) and "nothing was written" in err
    assert files(tmp_path) == before and not (tmp_path / "out").exists()


def test_03_an_image_that_fails_mid_batch_leaves_a_clear_account(tmp_path: Path, model: Path, capsys) -> None:
    """The header reads, the pixels do not: the good ones are written, stdout lists them, stderr's one
    line names the failure on a line of its own (the progress bar is closed first), exit code 2."""
    src = _photos(tmp_path / "in", ("a.webp", "b.png", "c.webp"))
    data = (src / "c.webp").read_bytes()
    (src / "c.webp").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    rc = cli.main(["stylize", str(src), "-o", str(out), "--style", str(model), "--device", "cpu"])  # progress on
    captured = capsys.readouterr()
    assert rc == 2 and "Traceback" not in captured.err
    line = captured.err.rsplit("\n", 2)[-2]  # tqdm redraws with \r: the last line is whole only after a \n
    assert line.startswith("fastnst: error: 1 of 3 images were not written (2 were)") and "in/c.webp" in line
    assert captured.err.count("fastnst: error") == 1
    assert captured.out.splitlines() == [f"wrote {out / 'a.webp'}", f"wrote {out / 'b.png'}"]
    assert files(out) == {"a.webp", "b.png"}


# --- 4: NaN/Inf weights ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_04_nan_or_inf_weights_are_refused_at_load(tmp_path: Path, capsys, bad: float) -> None:
    net = TransformerNet(TINY)
    with torch.no_grad():
        net.decoder[-1].conv.weight[0, 0, 0, 0] = bad
    style = save_style(tmp_path / "diverged.safetensors", net, style_name="diverged")
    image = write_image(tmp_path / "a.png", smooth_image(16, 16))
    refused(capsys, tmp_path, image, style, tmp_path / "o.png", says="diverged.safetensors holds NaN or infinite")


# --- 5: odd sizes ---------------------------------------------------------------------------------


def test_05_an_odd_video_size_is_kept_and_the_summary_says_how(tmp_path: Path, model: Path, capsys) -> None:
    video = make_video(tmp_path / "odd.mkv", w=33, h=17, n=3, audio=None, codec="ffv1", pix_fmt="yuv444p")
    rc = cli.main(["stylize", str(video), "-o", str(tmp_path / "o.mp4"), "--style", str(model), "--device", "cpu",
                   "-q", "--preset", "ultrafast"])
    out = capsys.readouterr().out
    assert rc == 0 and "33x17 (yuv444p, to keep the odd size)" in out and "note: 33x17 is odd" in out
    with av.open(str(tmp_path / "o.mp4")) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height, frame.format.name) == (33, 17, "yuv444p")


def test_05_a_padded_size_is_stated(tmp_path: Path, model: Path, capsys, monkeypatch) -> None:
    """Where the pixel format needs even sizes, the summary gives the size written and why."""
    from fastnst import video as video_mod

    monkeypatch.setattr(video_mod, "pick_pix_fmt", lambda codec, w, h: "yuv420p")
    video = make_video(tmp_path / "odd.mkv", w=33, h=17, n=3, audio=None, codec="ffv1", pix_fmt="yuv444p")
    rc = cli.main(["stylize", str(video), "-o", str(tmp_path / "o.mp4"), "--style", str(model), "--device", "cpu",
                   "-q", "--preset", "ultrafast"])
    out = capsys.readouterr().out
    assert rc == 0 and "wrote" in out and "34x18 (padded to even for yuv420p)" in out, out
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (34, 18)


# --- 6: out of memory -----------------------------------------------------------------------------


def test_06_a_working_size_that_cannot_fit_is_refused_up_front(tmp_path: Path, model: Path, capsys,
                                                               monkeypatch) -> None:
    from fastnst import engine

    monkeypatch.setattr(engine, "available_memory", lambda device: 5_000_000)  # 5 MB left
    image = write_image(tmp_path / "a.png", smooth_image(64, 96))
    video = make_video(tmp_path / "v.mp4", w=96, h=64, n=3, audio=None)
    for src, out in ((image, tmp_path / "o.png"), (video, tmp_path / "o.mp4")):
        # 8 × 96 × 64 px through even a tiny network: tens of MB of activations
        refused(capsys, tmp_path, src, model, out, "--scale", "8", says="lower --scale, --work-size or --max-size")
    rc, err = stylize(capsys, image, tmp_path / "o.png", model)  # the style's own working size fits
    assert rc == 0, err


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 1396703232 bytes. Error code 12 (Cannot allocate memory)"),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    MemoryError(),
])
def test_06_an_allocation_failure_says_what_to_lower(tmp_path: Path, model: Path, capsys, monkeypatch,
                                                    error: BaseException) -> None:
    from fastnst.mixer import Mixer

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(Mixer, "__call__", fail)
    monkeypatch.setattr(Mixer, "stylize_uint8", fail)
    image = write_image(tmp_path / "a.png", smooth_image(24, 32))
    video = make_video(tmp_path / "v.mp4", w=32, h=24, n=3, audio=None)
    for src, out in ((image, tmp_path / "new" / "o.png"), (video, tmp_path / "new" / "o.mp4")):
        refused(capsys, tmp_path, src, model, out, says="Out of memory")
        assert not (tmp_path / "new").exists()


def test_06_other_runtime_errors_are_not_dressed_as_memory(tmp_path: Path, model: Path, monkeypatch) -> None:
    from fastnst.engine import memory_errors

    with pytest.raises(RuntimeError, match="shape mismatch"), memory_errors("x"):
        raise RuntimeError("shape mismatch")


# --- 7, 8, 12: output paths -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["image", "video", "folder"])
def test_07_a_file_used_as_a_folder(tmp_path: Path, model: Path, capsys, kind: str) -> None:
    blocker = tmp_path / "clip.mp4"
    blocker.write_bytes(b"a file, not a folder")
    src = {"image": lambda: write_image(tmp_path / "a.png", smooth_image(16, 16)),
           "video": lambda: make_video(tmp_path / "v.mkv", w=32, h=24, n=2, audio=None),
           "folder": lambda: _photos(tmp_path / "in")}[kind]()
    out = blocker / ("x.mp4" if kind == "video" else "x.png" if kind == "image" else "styled")
    refused(capsys, tmp_path, src, model, out, says="clip.mp4 is a file, not a folder")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("kind", ["image", "video", "folder"])
def test_07_an_output_in_proc(tmp_path: Path, model: Path, capsys, kind: str) -> None:
    src = {"image": lambda: write_image(tmp_path / "a.png", smooth_image(16, 16)),
           "video": lambda: make_video(tmp_path / "v.mkv", w=32, h=24, n=2, audio=None),
           "folder": lambda: _photos(tmp_path / "in")}[kind]()
    out = Path("/proc") / {"image": "x.png", "video": "x.mp4", "folder": "outdir"}[kind]
    refused(capsys, tmp_path, src, model, out, says="/proc/")


@pytest.mark.parametrize("suffix", [".png", ".mp4"])
def test_08_a_legal_long_name_is_written(tmp_path: Path, model: Path, capsys, suffix: str) -> None:
    src = write_image(tmp_path / "a.png", smooth_image(16, 16)) if suffix == ".png" else \
        make_video(tmp_path / "v.mkv", w=32, h=24, n=2, audio=None)
    out = tmp_path / ("a" * (255 - len(suffix)) + suffix)  # 255 bytes: the longest name allowed
    rc, err = stylize(capsys, src, out, model, "--preset", "ultrafast")
    assert rc == 0 and out.is_file(), err
    assert not [f for f in files(tmp_path) if ".part" in f]


def test_08_a_name_over_the_limit_is_one_sentence(tmp_path: Path, model: Path, capsys) -> None:
    image = write_image(tmp_path / "a.png", smooth_image(16, 16))
    video = make_video(tmp_path / "v.mkv", w=32, h=24, n=2, audio=None)
    for src, suffix in ((image, ".png"), (video, ".mp4")):
        refused(capsys, tmp_path, src, model, tmp_path / ("a" * 256 + suffix), says="at most 255")


@pytest.mark.parametrize("kind", ["image", "video"])
def test_12_a_failed_run_leaves_no_folder_behind(tmp_path: Path, model: Path, capsys, monkeypatch,
                                                kind: str) -> None:
    src = write_image(tmp_path / "a.png", smooth_image(16, 16)) if kind == "image" else \
        make_video(tmp_path / "v.mkv", w=32, h=24, n=2, audio=None)
    refused(capsys, tmp_path, src, model, tmp_path / "newdir" / "x.xyz", says=".xyz")
    # a failure after the folder was made (here the encoder) removes the folders this run made
    from fastnst import video as video_mod
    from fastnst.errors import FastNSTError

    def broken(self, *a, **k):
        raise FastNSTError("Encoding failed (Input/output error).")

    monkeypatch.setattr(video_mod.VideoWriter, "write", broken)
    if kind == "video":
        refused(capsys, tmp_path, src, model, tmp_path / "new" / "deeper" / "x.mp4")
    assert not (tmp_path / "newdir").exists() and not (tmp_path / "new").exists()


# --- 9: encoder options ---------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "says"), [
    (("--crf", "-5"), "--crf must be from 0"), (("--crf", "1000"), "--crf must be from 0"),
    (("--crf", "nan"), "--crf must be from 0"), (("--preset", "bogus"), "--preset must be one of ultrafast"),
    (("--codec", "mpeg4", "--crf", "20"), "--crf applies to libx264 and libx265 only"),
    (("--codec", "aac"), "is an audio codec, not a video encoder"),
    (("--codec", "no_such_encoder"), "Unknown or unavailable video encoder"),
])
def test_09_encoder_options_are_checked_before_decoding(tmp_path: Path, model: Path, capsys, extra, says) -> None:
    src = _corrupt(tmp_path)  # decoding it would fail: the refusal must come first
    refused(capsys, tmp_path, src, model, tmp_path / "o.mp4", *extra, says=says)


def test_09_valid_encoder_options_work(tmp_path: Path, model: Path, capsys) -> None:
    video = make_video(tmp_path / "v.mkv", w=32, h=24, n=2, audio=None)
    for extra in (("--crf", "0", "--preset", "ultrafast"), ("--crf", "51.0"), ("--codec", "mpeg4")):
        rc, err = stylize(capsys, video, tmp_path / "o.mp4", model, "--force", *extra)
        assert rc == 0 and err == "", err


# --- 10: eval on tiny frames ----------------------------------------------------------------------


def test_10_eval_on_a_tiny_video_is_one_sentence(tmp_path: Path, capsys) -> None:
    from fastnst import vgg

    weights = vgg.save_weights(vgg.VGGWeights(vgg.VGG19Features(["relu5_1"]).layers.state_dict(), "torchvision",
                                              "test"), tmp_path / "w.safetensors")
    big = make_video(tmp_path / "big.mp4", w=64, h=48, n=4, audio=None)
    tiny = make_video(tmp_path / "tiny.mkv", w=2, h=2, n=4, audio=None, codec="ffv1", pix_fmt="yuv444p")
    style = write_image(tmp_path / "style.png", smooth_image(32, 32))
    for args in ([str(big), str(tiny)], [str(tiny), "--vgg-every", "0"]):
        rc = cli.main(["eval", *args, "--style", str(style), "--vgg-weights", str(weights), "--device", "cpu", "-q"])
        assert "at least 16 px a side" in one_line(rc, capsys.readouterr().err)


# --- 11: export -----------------------------------------------------------------------------------


def test_11_export_checks_the_opset_first_and_prints_nothing(tmp_path: Path, model: Path, capfd) -> None:
    pytest.importorskip("onnx")
    for opset in ("99", "16"):
        rc = cli.main(["export", str(model), "-o", str(tmp_path / "m.onnx"), "--opset", opset])
        captured = capfd.readouterr()  # file descriptors: the TorchScript exporter prints from C++
        assert "--opset must be from 17 to" in one_line(rc, captured.err) and captured.out == ""
    assert files(tmp_path) == {"models/tiny.safetensors"}


def test_11_onnx_export_without_onnx_names_the_extra(tmp_path: Path, model: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    rc = cli.main(["export", str(model), "-o", str(tmp_path / "m.onnx")])
    assert "pip install 'fastnst[onnx]'" in one_line(rc, capsys.readouterr().err)
    assert files(tmp_path) == {"models/tiny.safetensors"}


# --- 13: messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", ["namespace", "code", "junk"])
def test_13_weights_only_refusals_never_advise_weights_only_false(tmp_path: Path, capsys, payload: str) -> None:
    import argparse

    weights = tmp_path / "w.pth"
    if payload == "namespace":
        torch.save({"args": argparse.Namespace(lr=1)}, weights)
    elif payload == "code":
        weights.write_bytes(pickle.dumps({"x": _Payload(tmp_path / "pwned")}))
    else:
        weights.write_bytes(b"junk")
    image = write_image(tmp_path / "a.png", smooth_image(24, 24))
    rc = cli.main(["gatys", str(image), str(image), "-o", str(tmp_path / "o.png"), "--vgg-weights", str(weights),
                   "--steps", "1", "-q"])
    err = one_line(rc, capsys.readouterr().err).replace(str(tmp_path), "TMP")
    assert "TMP/w.pth is not a weights-only torch file" in err
    assert "weights_only" not in err and "trust" not in err and "\x1b" not in err
    if payload == "namespace":
        assert "argparse.Namespace" in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(("extra", "flag"), [(("--stride", "0"), "--stride"), (("--vgg-every", "-1"), "--vgg-every"),
                                             (("--max-frames", "1"), "--max-frames")])
def test_13_eval_errors_name_the_flags(tmp_path: Path, capsys, extra, flag: str) -> None:
    video = make_video(tmp_path / "v.mp4", w=32, h=24, n=3, audio=None)
    style = write_image(tmp_path / "s.png", smooth_image(16, 16))
    rc = cli.main(["eval", str(video), "--style", str(style), "--vgg-every", "0", "-q", *extra])
    err = one_line(rc, capsys.readouterr().err)
    assert flag in err and "vgg_every" not in err and "max_frames" not in err


def test_13_an_infinite_transition_must_be_finite(tmp_path: Path, model: Path, capsys) -> None:
    video = make_video(tmp_path / "v.mp4", w=32, h=24, n=3, audio=None)
    refused(capsys, tmp_path, video, model, tmp_path / "o.mp4", "--transition", "inf", says="must be a finite number")


def test_13_help_texts(capsys) -> None:
    for argv, wanted in ((["webcam", "--help"], ("real-time pace", "dropped", "without audio")),
                         (["train", "--help"], ("--quick",)),
                         (["stylize", "--help"], ("Stylize an image, a folder of images", "at most 8", "0 (lossless) to 51",
                                                  "ultrafast", "placebo"))):
        with pytest.raises(SystemExit) as stop:
            cli.main(argv)
        text = " ".join(capsys.readouterr().out.split())
        assert stop.value.code in (0, None) and all(w in text for w in wanted), (argv, text[:300])


# --------------------------------------------------------------------------------------------------
# Our own round: full disk, read-only folder, a stream that changes, a camera that goes away,
# Unicode and spaces, a reader that leaves
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def small_mount(tmp_path: Path):
    """A tmpfs mounted at ``tmp_path/mnt`` (``mount(size=…, ro=…)``); skipped where mounting is not
    permitted (not root, no CAP_SYS_ADMIN, not Linux)."""
    mounted: list[Path] = []

    def mount(size: str = "24k", *, ro: bool = False) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if ro else "")
        try:
            proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=False,
                                  capture_output=True)
            why = proc.stderr.decode(errors="replace").strip() if proc.returncode else ""
        except OSError as exc:  # no mount program
            why = str(exc)
        if why:
            point.rmdir()
            pytest.skip(f"cannot mount a tmpfs here ({why})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def _noise_png(path: Path, h: int = 96, w: int = 128, seed: int = 0) -> Path:
    """A PNG that does not compress (tens of kB), to fill a small disk."""
    write_image(path, np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return path


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` with one file so that about ``leave`` bytes stay free."""
    st = os.statvfs(disk)
    (disk / ".filler").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))


def test_disk_full_is_one_sentence_and_leaves_no_temporary_file(tmp_path: Path, model: Path, capsys,
                                                                 small_mount) -> None:
    disk = small_mount("256k")
    _fill(disk, 2048)
    image = _noise_png(tmp_path / "a.png")
    video = make_video(tmp_path / "v.mp4", w=128, h=96, n=20, audio="aac")
    for src, out in ((image, disk / "a.png"), (video, disk / "v.mp4")):
        rc, err = stylize(capsys, src, out, model, "--crf", "0", "--preset", "ultrafast")
        assert "No space left on device" in one_line(rc, err) and str(out) in err
        assert files(disk) == {".filler"}
    rc = cli.main(["export", str(model), "-o", str(disk / "m.pt2")])
    assert "No space left on device" in one_line(rc, capsys.readouterr().err) and files(disk) == {".filler"}
    # nor a descriptor held on a deleted temporary file (its space would stay taken until exit)
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.islink(f"/proc/self/fd/{fd}")]
    assert not [t for t in held if t.startswith(str(disk))], held


def test_disk_full_mid_batch_stops_and_says_what_was_written(tmp_path: Path, model: Path, capsys,
                                                             small_mount) -> None:
    src = tmp_path / "in"
    for i in range(3):
        _noise_png(src / f"p{i}.png", 64, 96, seed=i)
    rc, err = stylize(capsys, src / "p0.png", tmp_path / "ref.png", model)
    assert rc == 0, err
    size = (tmp_path / "ref.png").stat().st_size  # the others are about as big
    disk = small_mount("1m")
    _fill(disk, -(-size // 4096) * 4096 + 1024)  # room for the first output, not for a second
    rc = cli.main(["stylize", str(src), "-o", str(disk / "out"), "--style", str(model), "--device", "cpu", "-q"])
    captured = capsys.readouterr()
    err = one_line(rc, captured.err)
    assert captured.out == f"wrote {disk / 'out' / 'p0.png'}\n" and files(disk / "out") == {"p0.png"}
    assert "2 of 3 images were not written (1 were)" in err and "No space left on device" in err
    assert "the remaining 1 were not tried" in err  # p2 would have failed alike


def test_a_read_only_folder_is_refused_before_any_work(tmp_path: Path, model: Path, capsys, small_mount,
                                                      monkeypatch) -> None:
    ro = small_mount("64k", ro=True)
    image = write_image(tmp_path / "a.png", smooth_image(16, 16))
    video = make_video(tmp_path / "v.mkv", w=32, h=24, n=2, audio=None)
    folder = _photos(tmp_path / "in")
    from fastnst.mixer import Mixer

    def no_work(*a, **k):
        raise AssertionError("stylized although the output cannot be written")

    monkeypatch.setattr(Mixer, "__call__", no_work)
    monkeypatch.setattr(Mixer, "stylize_uint8", no_work)
    for src, out in ((image, ro / "a.png"), (video, ro / "v.mp4"), (folder, ro / "styled")):
        refused(capsys, tmp_path, src, model, out, says="Read-only file system")
    rc, err = stylize(capsys, folder, ro, model)  # into the read-only folder itself
    assert "Read-only file system" in one_line(rc, err) and files(ro) == set()
    for argv in (["export", str(model), "-o", str(ro / "m.onnx")],
                 ["eval", str(video), "--style", str(image), "--vgg-every", "0", "-q", "--json", str(ro / "r.json")]):
        assert "Read-only file system" in one_line(cli.main(argv), capsys.readouterr().err)


def _concatenated(tmp_path: Path, sizes: list[tuple[int, int]], audio: str | None = None) -> Path:
    """Transport-stream parts joined byte for byte: each restarts its timestamps (and may change size)."""
    parts = [make_video(tmp_path / f"part{i}.ts", w=w, h=h, n=20, fps=10, audio=audio).read_bytes()
             for i, (w, h) in enumerate(sizes)]
    out = tmp_path / "joined.ts"
    out.write_bytes(b"".join(parts))
    return out


def test_a_stream_that_changes_size_is_fitted_and_said(tmp_path: Path, model: Path, capsys) -> None:
    src = _concatenated(tmp_path, [(64, 48), (96, 80)])
    out = tmp_path / "o.mp4"
    rc = cli.main(["stylize", str(src), "-o", str(out), "--style", str(model), "--device", "cpu", "-q",
                   "--preset", "ultrafast"])
    printed = capsys.readouterr().out
    assert rc == 0 and "the frame size changes to 96x80 at 2.00 s" in printed
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
    assert {(f.width, f.height) for f in frames} == {(64, 48)} and len(frames) == 40
    # the second part continues the first's clock instead of restarting it
    assert np.allclose([float(f.pts * f.time_base) for f in frames], np.arange(40) / 10, atol=0.02)
    # fitted, not stretched: 96x80 in 64x48 leaves black columns (the input's, before the network)
    from fastnst.video import read_frames

    last = list(read_frames(src))[-1]
    assert last.shape == (48, 64, 3) and last[:, :3].max() == 0 and last[:, 30:34].max() > 0  # 58x48, centred


def test_concatenated_audio_keeps_its_clock(tmp_path: Path, model: Path) -> None:
    from fastnst.pipeline import stylize_video

    src = _concatenated(tmp_path, [(64, 48), (64, 48)], audio="aac")
    stylize_video(src, tmp_path / "o.mp4", model, device="cpu", progress=False, preset="ultrafast")
    with av.open(str(tmp_path / "o.mp4")) as c:
        stamps = [float(p.pts * p.time_base) for p in c.demux(audio=0) if p.size]
    gaps = np.diff(stamps)
    assert stamps[-1] > 3.8 and gaps.min() > 0.03 and gaps.max() < 0.1  # 4 s of 64 ms packets, no squeeze


def test_a_camera_that_goes_away(tmp_path: Path, model: Path, capfd) -> None:
    """A truncated file camera is one sentence (and no FFmpeg chatter); a stream that ends mid-way
    ends the session cleanly; a name OpenCV would crash on is refused."""
    import http.server
    import threading

    data = make_video(tmp_path / "v.ts", w=64, h=48, n=40, fps=10, audio=None).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(make_video(tmp_path / "v.mp4", w=64, h=48, n=20, audio=None)
                                       .read_bytes()[:1500])
    base = ["webcam", "--style", str(model), "--device", "cpu", "--no-window"]
    assert "cut.mp4" in one_line(cli.main([*base, "--camera", str(tmp_path / "cut.mp4")]), capfd.readouterr().err)

    class HalfThenHangUp(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])  # then the connection drops

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), HalfThenHangUp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rc = cli.main([*base, "--camera", f"http://127.0.0.1:{server.server_port}/live.ts",
                       "--record", str(tmp_path / "rec.mp4")])
    finally:
        server.shutdown()
    captured = capfd.readouterr()
    assert rc == 0 and captured.err == "" and "recorded" in captured.out, captured
    bad = Path(os.fsdecode(bytes(tmp_path / "cam") + b"\xff.mp4"))
    bad.write_bytes(data)
    assert "not valid UTF-8" in one_line(cli.main([*base, "--camera", str(bad)]), capfd.readouterr().err)


NAMES = ["Café Terrace 🎨", "two  spaces", os.fsdecode(b"raw \xff\xfe bytes")]


@pytest.mark.parametrize("name", NAMES, ids=["unicode", "spaces", "not-utf8"])
def test_unicode_spaces_and_raw_bytes_in_paths(tmp_path: Path, model: Path, capsys, name: str) -> None:
    root = tmp_path / name
    style = root / f"stÿle {name}.safetensors"
    style.parent.mkdir()
    style.write_bytes(model.read_bytes())
    folder = _photos(root / f"in {name}", (f"été {name}.png", f"sub {name}/b.jpg"))
    video = make_video(root / f"vidéo {name}.mkv", w=32, h=24, n=3, audio="aac")
    for src, out in ((folder, root / f"out {name}"), (folder / f"été {name}.png", root / f"ünï {name}.png"),
                     (video, root / f"out {name}" / f"v {name}.mp4")):
        rc, err = stylize(capsys, src, out, style, "--preset", "ultrafast")
        assert rc == 0 and err == "", err
    assert files(root / f"out {name}") == {f"été {name}.png", f"sub {name}/b.jpg", f"v {name}.mp4"}
    assert cli.main(["export", str(style), "-o", str(root / f"m {name}.pt2")]) == 0
    rc = cli.main(["eval", str(video), str(root / f"out {name}" / f"v {name}.mp4"), "--style",
                   str(folder / f"été {name}.png"), "--vgg-every", "0", "-q", "--json", str(root / f"r {name}.json")])
    assert rc == 0 and (root / f"r {name}.json").is_file()
    assert not [f for f in files(tmp_path) if ".part" in f]


def test_a_reader_that_leaves_ends_quietly(tmp_path: Path, model: Path, capsys, monkeypatch) -> None:
    """``fastnst … | head -1``: stdout's reader is gone; no traceback, no error line, exit 141."""
    read, write = os.pipe()
    os.close(read)
    monkeypatch.setattr(sys, "stdout", os.fdopen(write, "w", buffering=1))
    image = write_image(tmp_path / "a.png", smooth_image(16, 16))
    rc = cli.main(["stylize", str(image), "-o", str(tmp_path / "o.png"), "--style", str(model), "-q"])
    assert rc == cli.EXIT_BROKEN_PIPE == 141 and capsys.readouterr().err == ""
    assert (tmp_path / "o.png").is_file()  # the work was done; only the report had nowhere to go


def test_03_an_interrupted_folder_run_says_what_exists(tmp_path: Path, model: Path, capsys, monkeypatch) -> None:
    from fastnst import pipeline

    src, out = _photos(tmp_path / "in"), tmp_path / "out"
    real = pipeline.write_image

    def interrupted_at_the_second(path, image):
        if out.exists() and files(out):
            raise KeyboardInterrupt
        return real(path, image)

    monkeypatch.setattr(pipeline, "write_image", interrupted_at_the_second)
    rc = cli.main(["stylize", str(src), "-o", str(out), "--style", str(model), "--device", "cpu", "-q"])
    captured = capsys.readouterr()
    assert rc == 130 and captured.err == "fastnst: interrupted\n"
    assert captured.out == f"wrote {out / 'a.webp'}\n" and files(out) == {"a.webp"}


# --- the reference mode on a video ----------------------------------------------------------------


def _gatys(capsys, content, style, out, *extra: str) -> tuple[int, str]:
    rc = cli.main(["gatys", str(content), str(style), "-o", str(out), "--device", "cpu", "-q", *extra])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(("out_name", "extra", "says"), [
    ("o.png", (), "needs a video extension"),
    ("o.mp4", ("--save-every", "2"), "--save-every applies to images"),
    ("o.mp4", ("--frame-steps", "0"), "--frame-steps must be at least 1"),
    ("o.mp4", ("--size", "8"), "--size ≥ 16"),
    ("o.mp4", ("--duration", "0"), "--duration must be positive"),
    ("old.mp4", (), "already exists"),
    ("o.xyz", (), ".xyz"),
])
def test_gatys_on_a_video_refuses_in_one_sentence(tmp_path: Path, capsys, out_name: str, extra, says: str) -> None:
    from fastnst import vgg

    weights = vgg.save_weights(vgg.VGGWeights(vgg.VGG19Features(["relu5_1"]).layers.state_dict(), "torchvision",
                                              "test"), tmp_path / "w.safetensors")
    video = make_video(tmp_path / "v.mp4", w=32, h=24, n=3, audio=None)
    style = write_image(tmp_path / "s.png", smooth_image(16, 16))
    (tmp_path / "old.mp4").write_bytes(b"keep")
    before = files(tmp_path)
    rc, err = _gatys(capsys, video, style, tmp_path / out_name, "--vgg-weights", str(weights), "--steps", "1",
                     "--size", "32", *extra)
    assert says in one_line(rc, err)
    assert files(tmp_path) == before and (tmp_path / "old.mp4").read_bytes() == b"keep"


def test_gatys_never_replaces_an_image_without_force(tmp_path: Path, capsys) -> None:
    image = write_image(tmp_path / "a.png", smooth_image(16, 16))
    out = write_image(tmp_path / "o.png", smooth_image(8, 8))
    before = out.read_bytes()
    rc, err = _gatys(capsys, image, image, out, "--steps", "1")
    assert "already exists; pass --force" in one_line(rc, err) and out.read_bytes() == before


def test_gatys_on_an_image_refuses_a_segment(tmp_path: Path, capsys) -> None:
    image = write_image(tmp_path / "a.png", smooth_image(16, 16))
    before = files(tmp_path)
    rc, err = _gatys(capsys, image, image, tmp_path / "o.png", "--duration", "2")
    assert "apply to a video" in one_line(rc, err) and files(tmp_path) == before
