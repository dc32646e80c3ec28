"""The webcam loop, run headless on a video file instead of a camera."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fastnst import cli
from fastnst.errors import FastNSTError
from fastnst.models import Arch, TransformerNet
from fastnst.styles import save_style
from fastnst.video import read_frames
from fastnst.webcam import FrameGrabber, LiveMix, ViewState, check_gui, compose, handle_key, run_webcam

from .conftest import make_video, media_stats, pattern


@pytest.fixture
def two_styles(tmp_path: Path) -> list[Path]:
    torch.manual_seed(0)
    return [save_style(tmp_path / f"s{i}.safetensors", TransformerNet(Arch((8, 8, 8), 1)), style_name=f"s{i}")
            for i in range(2)]


def test_runs_n_frames_headless_and_records(tmp_path: Path, two_styles: list[Path]) -> None:
    src = make_video(tmp_path / "cam.mp4", w=66, h=50, n=30, fps=30, audio=None)
    rec = tmp_path / "rec.mp4"
    res = run_webcam(two_styles, camera=str(src), device="cpu", show=False, max_frames=6, record=rec,
                     max_size=None, realtime=False)
    assert res.frames == 6 and res.record == rec
    s = media_stats(rec)
    assert s["frames"] == 6 and s["size"] == (66, 50)
    assert all(b > a for a, b in zip(s["times"], s["times"][1:]))  # wall-clock stamps, increasing


def test_file_source_runs_to_its_end_without_realtime(tmp_path: Path, two_styles: list[Path]) -> None:
    src = make_video(tmp_path / "cam.mkv", w=40, h=32, n=7, audio=None)
    res = run_webcam(two_styles[:1], camera=str(src), device="cpu", show=False, realtime=False)
    assert res.frames == 7  # realtime=False: a file's frames are all delivered, once


def test_realtime_file_source_drops_but_never_repeats(tmp_path: Path) -> None:
    src = make_video(tmp_path / "cam.mkv", w=40, h=32, n=12, fps=60, audio=None)
    grabber = FrameGrabber(str(src))
    seqs = []
    try:
        seq = 0
        while (got := grabber.read(seq)) is not None:
            seq = got[0]
            seqs.append(seq)
            time.sleep(0.05)  # a slow consumer: 3 frames arrive meanwhile, only the newest is kept
    finally:
        grabber.close()
    assert seqs == sorted(set(seqs)) and seqs[-1] == 12 and len(seqs) < 12


def test_cli_headless(tmp_path: Path, two_styles: list[Path], capsys) -> None:
    src = make_video(tmp_path / "cam.mp4", w=40, h=32, n=20, fps=30, audio=None)
    argv = ["webcam", "--camera", str(src), "--no-window", "--max-frames", "3", "--device", "cpu"]
    for s in two_styles:
        argv += ["--style", str(s)]
    assert cli.main(argv) == 0
    assert "3 frames" in capsys.readouterr().out


def test_window_without_display_is_a_clear_error(tmp_path: Path, two_styles: list[Path], monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(FastNSTError, match="--no-window"):
        check_gui()
    src = make_video(tmp_path / "cam.mp4", w=40, h=32, n=3, audio=None)
    assert cli.main(["webcam", "--camera", str(src), "--style", str(two_styles[0])]) == 2


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(FastNSTError, match="neither"):
        FrameGrabber(str(tmp_path / "missing.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(FastNSTError, match="Cannot open"):
        FrameGrabber(str(bad))


def test_keys() -> None:
    s = ViewState(n_styles=3)
    assert handle_key(s, -1) is s and not s.quit
    handle_key(s, ord("n"))
    assert s.style == 1
    handle_key(s, ord("p"))
    handle_key(s, ord("p"))
    assert s.style == 2
    handle_key(s, ord("1"))
    assert s.style == 0
    handle_key(s, ord("9"))  # no ninth style: ignored
    assert s.style == 0
    handle_key(s, ord(" "))
    assert s.side_by_side
    handle_key(s, ord("s"))
    assert s.snapshot
    handle_key(s, 27)
    assert s.quit
    assert handle_key(ViewState(1), ord("Q")).quit


def test_compose_side_by_side() -> None:
    a, b = pattern(0, 20, 30), pattern(1, 10, 15)
    assert compose(a, b, False) is b
    assert compose(a, b, True).shape == (10, 30, 3)


def test_ctrl_c_stops_and_keeps_the_recording(tmp_path: Path, two_styles: list[Path], monkeypatch) -> None:
    from fastnst.pipeline import Stylizer

    src = make_video(tmp_path / "cam.mp4", w=40, h=32, n=20, audio=None)
    real = Stylizer.__call__
    calls = {"n": 0}

    def interrupt_on_fourth(self, x, *args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, x, *args)

    monkeypatch.setattr(Stylizer, "__call__", interrupt_on_fourth)
    rec = tmp_path / "rec.mkv"
    res = run_webcam(two_styles[:1], camera=str(src), device="cpu", show=False, record=rec, realtime=False)
    assert res.frames == 3 and media_stats(rec)["frames"] == 3


def test_handover_newest_wins_lossless_waits_and_errors_come_after_pending_items() -> None:
    import threading

    from fastnst.webcam import Handover

    h = Handover()
    for i in range(3):
        h.put(i)
    assert h.take() == (3, 2) and h.take(timeout=0.05) is None  # newest wins, nothing twice
    h.put("late")
    h.end(RuntimeError("boom"))
    assert h.take() == (4, "late") and h.take() is None and isinstance(h.error, RuntimeError)

    lossless = Handover(lossless=True)
    lossless.put(1)
    second = threading.Thread(target=lossless.put, args=(2,))
    second.start()
    second.join(timeout=0.2)
    assert second.is_alive()  # waits until the first item is taken
    assert lossless.take() == (1, 1)
    second.join(timeout=2)
    assert lossless.take() == (2, 2)


def test_overlay_draws_outlined_labels_on_a_copy() -> None:
    from fastnst.webcam import overlay

    view = np.full((60, 200, 3), 128, np.uint8)
    out = overlay(view, ["12.0 fps", "strength 1.0"])
    assert (view == 128).all() and out.shape == view.shape  # the input is left alone
    band = out[:50, :120]
    assert (band == 255).all(axis=-1).any() and (band == 0).all(axis=-1).any()  # white text, black outline
    assert (out[50:] == 128).all()  # two lines only


def test_run_webcam_takes_an_options_object(tmp_path: Path, two_styles: list[Path]) -> None:
    from fastnst.options import EngineOptions, WebcamOptions

    src = make_video(tmp_path / "cam.mkv", w=40, h=32, n=5, audio=None)
    o = WebcamOptions(style=[str(two_styles[0])], engine=EngineOptions(device="cpu"), camera=str(src), show=False)
    assert run_webcam(options=o, realtime=False).frames == 5  # the styles come from the options
    assert run_webcam(options=o, realtime=False, max_frames=2).frames == 2  # a keyword overrides a field
    with pytest.raises(FastNSTError, match="at least one"):
        run_webcam([], options=o)
    with pytest.raises(TypeError, match="'bogus'"):
        run_webcam(options=o, bogus=1)


# --------------------------------------------------------------------------------------------------
# Live at the webcam: cross-fading keys and strength keys (fastnst.webcam's LiveMix over a Mixer)
# --------------------------------------------------------------------------------------------------


def test_strength_keys_step_and_clamp() -> None:
    s = ViewState(n_styles=2, strength=0.9)
    handle_key(s, ord("+"))
    assert s.strength == 1.0
    handle_key(s, ord("="))  # the + key without shift
    assert s.strength == 1.0
    for _ in range(3):
        handle_key(s, ord("-"))
    assert s.strength == pytest.approx(0.7)
    for _ in range(12):
        handle_key(s, ord("_"))
    assert s.strength == 0.0


def test_style_keys_crossfade_instead_of_cutting() -> None:
    state = ViewState(n_styles=2)
    live = LiveMix([(("a", 1.0),), (("b", 1.0),)], state, fade=0.5)
    assert live.at(10.0).weights == {"a": 1.0}
    handle_key(state, ord("n"))
    assert live.at(10.0).weights == {"a": 1.0}  # the fade starts when the change is seen
    half = live.at(10.25)
    assert half.weights == pytest.approx({"a": 0.5, "b": 0.5})
    handle_key(state, ord("-"))  # strength changes fade too, from where the blend is
    mid = live.at(10.5)
    assert mid.weights == {"b": 1.0} and mid.strength == pytest.approx(1.0)
    assert live.at(10.75).strength == pytest.approx(0.95) and live.at(11.0).strength == pytest.approx(0.9)


def test_webcam_strength_and_preserve_color(tmp_path: Path, flats, textured: Path) -> None:
    src = make_video(tmp_path / "cam.mp4", w=40, h=32, n=6, fps=30, audio=None)
    rec = tmp_path / "rec.mkv"
    res = run_webcam([f"{flats[0]}:0.5,{flats[1]}:0.5", textured], camera=str(src), device="cpu", show=False,
                     record=rec, max_size=None, realtime=False, strength=0.0, preserve_color=True, stabilize=0,
                     threads=1)
    assert res.frames == 6
    got, inputs = list(read_frames(rec)), list(read_frames(src))
    # strength 0: the input, to the recording's lossy encoding (the styles would be ~60 levels off)
    assert len(got) == 6 and np.abs(got[3].astype(float) - inputs[3]).mean() < 6
    argv = ["webcam", "--camera", str(src), "--no-window", "--max-frames", "2", "--device", "cpu", "--threads", "1",
            "--style", f"{flats[0]}:0.5,{flats[1]}:0.5", "--strength", "0.5", "--preserve-color", "--fade", "0.2"]
    assert cli.main(argv) == 0
    with pytest.raises(FastNSTError, match="Unknown style"):
        run_webcam(["no_such_style"], camera=str(src), show=False)
