"""Styles over time in the engine, the CLI and the API: cross-fades, strength, colour preservation,
blends, and the errors a schedule can raise (fastnst.mixer, fastnst.pipeline, fastnst.webcam)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import fastnst
from fastnst import cli
from fastnst.color import rgb_to_yiq
from fastnst.errors import FastNSTError
from fastnst.images import read_image, write_image
from fastnst.mixer import Mixer, check_strength, plan_styles
from fastnst.models import Arch, TransformerNet
from fastnst.pipeline import Stylizer, stylize_path, stylize_video
from fastnst.styles import save_style
from fastnst.timeline import Entry, Mix, Schedule, make_mix
from fastnst.video import read_frames
from fastnst.webcam import LiveMix, ViewState, handle_key, run_webcam

from .conftest import make_video, media_stats, pattern, smooth_image

TINY = Arch((8, 8, 8), 1)
DARK, BRIGHT = 0.2, 0.8  # the grey levels the two flat test styles paint


def flat_style(path: Path, level: float | tuple[float, float, float]) -> Path:
    """A style whose network paints every pixel one colour (its last convolution: zero weights and
    that colour as bias): which style, or which mixture, a frame shows can be read off its pixels."""
    torch.manual_seed(0)
    net = TransformerNet(TINY)
    last = net.decoder[-1].conv
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(level if isinstance(level, tuple) else (level,) * 3))
    return save_style(path, net, style_name=path.stem, preset="custom")


@pytest.fixture
def flats(tmp_path: Path) -> tuple[Path, Path]:
    return flat_style(tmp_path / "dark.safetensors", DARK), flat_style(tmp_path / "bright.safetensors", BRIGHT)


@pytest.fixture
def textured(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    return save_style(tmp_path / "tex.safetensors", TransformerNet(TINY), style_name="tex", preset="custom")


def two_styles(a: Path, b: Path, change: float, transition: float) -> Schedule:
    return Schedule((Entry(make_mix([(str(a), 1.0)]), 0.0, transition),
                     Entry(make_mix([(str(b), 1.0)]), change, transition)))


def expected_level(schedule: Schedule, t: float, levels: dict[str, float]) -> float:
    mix = schedule.at(t)
    return 255 * sum(w * levels[n] for n, w in mix.weights.items())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


# --------------------------------------------------------------------------------------------------
# Video: a cross-fade in the engine
# --------------------------------------------------------------------------------------------------


def test_crossfade_keeps_frames_times_audio_and_follows_the_schedule(tmp_path: Path, flats) -> None:
    src = make_video(tmp_path / "in.mp4", n=30, fps=10)
    out = tmp_path / "out.mp4"
    sched = two_styles(*flats, change=1.5, transition=1.0)  # fade over [1.0, 2.0] s
    # batches of 4 mix frames of different weights (and frames of one style) in one batch
    res = stylize_video(src, out, schedule=sched, device="cpu", progress=False, batch_size=4, stabilize=0)
    a, b = media_stats(src), media_stats(out)
    assert res.frames == b["frames"] == a["frames"] == 30
    assert np.allclose(b["times"], a["times"], atol=1e-3)
    assert a["audio_packets"] > 10 and abs(b["audio_packets"] - a["audio_packets"]) <= 1
    levels = {str(flats[0]): DARK, str(flats[1]): BRIGHT}
    got = np.array([f.astype(float).mean() for f in read_frames(out)])
    want = np.array([expected_level(sched, t, levels) for t in a["times"]])
    assert np.abs(got - want).max() < 1.5  # every frame is the scheduled mixture
    steps = np.diff(got)
    # the fade climbs in even steps of (0.8-0.2)*255 / (1 s * 10 fps) ≈ 15 levels; no jump
    assert steps.max() < 15.3 + 2 * 1.5 and (steps > -1).all()  # (±1.5 levels per frame: 8-bit YUV)
    assert ((steps > 10) == ((np.array(a["times"][1:]) > 1.0) & (np.array(a["times"][1:]) <= 2.0 + 1e-6))).all()
    assert _leftovers(tmp_path) == []


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_crossfade_on_cuda_with_a_short_last_batch(tmp_path: Path, flats) -> None:
    src = make_video(tmp_path / "in.mp4", n=11, fps=10, audio=None)  # batches 4+4+3: the last one padded
    out = tmp_path / "gpu.mp4"
    sched = two_styles(*flats, change=0.5, transition=0.6)
    res = stylize_video(src, out, schedule=sched, device="cuda", batch_size=4, progress=False, stabilize=0)
    levels = {str(flats[0]): DARK, str(flats[1]): BRIGHT}
    got = np.array([f.astype(float).mean() for f in read_frames(out)])
    assert res.frames == 11 and np.abs(got - [expected_level(sched, i / 10, levels) for i in range(11)]).max() < 1.5


def test_start_keeps_schedule_times_on_the_video_clock(tmp_path: Path, flats) -> None:
    src = make_video(tmp_path / "in.mp4", n=30, fps=10, audio=None)
    out = tmp_path / "seg.mp4"
    sched = two_styles(*flats, change=1.5, transition=1.0)
    res = stylize_video(src, out, schedule=sched, device="cpu", progress=False, stabilize=0, start=1.0,
                        duration=1.5)
    got = [f.astype(float).mean() for f in read_frames(out)]
    assert res.frames == len(got) == 15
    # output frame i is input time 1.0 + i/10: the fade starts at the first output frame
    want = [expected_level(sched, 1.0 + i / 10, {str(flats[0]): DARK, str(flats[1]): BRIGHT}) for i in range(15)]
    assert np.abs(np.array(got) - want).max() < 1.5


def test_change_after_the_segment_is_a_note(tmp_path: Path, flats) -> None:
    src = make_video(tmp_path / "in.mp4", n=30, fps=10, audio=None)
    res = stylize_video(src, tmp_path / "o.mp4", schedule=two_styles(*flats, 2.5, 0.5), device="cpu",
                        progress=False, duration=1.0)
    assert any("after the last frame" in n for n in res.notes)


def test_single_style_output_is_unchanged_by_the_mixer(tmp_path: Path, textured: Path) -> None:
    img = pattern(3, 40, 52)
    mixer = Mixer({"t": Stylizer(textured, device="cpu")})
    assert np.array_equal(mixer(img, Mix({"t": 1.0})), Stylizer(textured, device="cpu")(img))


# --------------------------------------------------------------------------------------------------
# Strength, colour preservation, blends (images, API and CLI)
# --------------------------------------------------------------------------------------------------


def test_strength_zero_returns_the_input(tmp_path: Path, textured: Path) -> None:
    img = smooth_image(45, 61)
    src = write_image(tmp_path / "in.png", img)
    out = tmp_path / "out.png"
    assert cli.main(["stylize", str(src), "-o", str(out), "--style", str(textured), "--strength", "0", "-q",
                     "--device", "cpu", "--work-size", "32"]) == 0
    assert np.abs(read_image(out).astype(int) - img).max() <= 1
    full = Stylizer(textured, device="cpu", work_size=32)(img).astype(float)
    half = stylize_path(src, tmp_path / "half.png", textured, strength=0.5, device="cpu", work_size=32,
                        progress=False)
    # halfway between the input and the full style, to rounding
    assert np.abs(read_image(half.outputs[0]) - (img + full) / 2).max() <= 1.0
    # on tensors too, frame by frame within a batch
    mixer = Mixer({"t": Stylizer(textured, device="cpu", work_size=32)})
    x = torch.from_numpy(np.stack([img, img]))
    y = mixer.stylize_uint8(x, [Mix({"t": 1.0}, 0.0), Mix({"t": 1.0}, 1.0)])
    assert np.abs(y[0].numpy().astype(int) - img).max() <= 1
    assert np.abs(y[1].numpy().astype(float) - full).max() <= 1


def _chroma(img: np.ndarray) -> np.ndarray:
    return rgb_to_yiq(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)[0, 1:].numpy()


def test_preserve_color_keeps_the_input_chroma(tmp_path: Path) -> None:
    red = flat_style(tmp_path / "red.safetensors", (0.9, 0.2, 0.1))
    img = (64 + smooth_image(40, 56) // 2).astype(np.uint8)  # in gamut under any luminance nearby
    src = write_image(tmp_path / "in.png", img)
    kept, styled = tmp_path / "kept.png", tmp_path / "styled.png"
    base = ["--style", str(red), "-q", "--device", "cpu"]
    assert cli.main(["stylize", str(src), "-o", str(kept), "--preserve-color", *base]) == 0
    assert cli.main(["stylize", str(src), "-o", str(styled), *base]) == 0
    k, s = read_image(kept), read_image(styled)
    # chroma: the input's, to 8-bit rounding (and out-of-gamut clamps), where the style's is far off
    assert np.abs(_chroma(k) - _chroma(img)).mean() < 0.01
    assert np.abs(_chroma(s) - _chroma(img)).mean() > 0.1
    # luminance: the style's
    luma = lambda a: rgb_to_yiq(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255)[0, 0].numpy()
    assert np.abs(luma(k) - luma(s)).mean() < np.abs(luma(img) - luma(s)).mean() / 4


def test_blend_on_the_command_line(tmp_path: Path, flats) -> None:
    src = write_image(tmp_path / "in.png", pattern(0, 24, 32))
    out = tmp_path / "blend.png"
    spec = f"{flats[0]}:0.25,{flats[1]}:0.75"
    assert cli.main(["stylize", str(src), "-o", str(out), "--style", spec, "-q", "--device", "cpu"]) == 0
    assert abs(read_image(out).astype(float).mean() - 255 * (0.25 * DARK + 0.75 * BRIGHT)) < 1.0


def test_api_schedule_file_with_strengths(tmp_path: Path, flats) -> None:
    src = make_video(tmp_path / "in.mp4", n=20, fps=10, audio=None)
    toml = tmp_path / "s.toml"
    toml.write_text(f'transition = 0\n[[styles]]\nstyle = "{flats[0].as_posix()}"\n'
                    f'[[styles]]\nstyle = "{flats[1].as_posix()}"\nstart = 1\nstrength = 0.5\n')
    out = tmp_path / "out.mkv"
    fastnst.stylize_video(src, out, schedule=fastnst.load_schedule(toml), device="cpu", progress=False,
                          stabilize=0, crf=0)
    frames = list(read_frames(out))
    inputs = list(read_frames(src))
    assert len(frames) == 20 and abs(frames[0].mean() - 255 * DARK) < 1.5
    # after the cut: half way between the input and the bright style
    want = (inputs[15].astype(float) + 255 * BRIGHT) / 2
    assert np.abs(frames[15] - want).mean() < 2.0


def test_plan_styles_checks_before_loading(tmp_path: Path, textured: Path) -> None:
    with pytest.raises(FastNSTError, match="not both"):
        plan_styles(str(textured), Schedule.single(str(textured)))
    with pytest.raises(FastNSTError, match="Unknown style 'nope'"):
        plan_styles(None, Schedule.from_cli([str(textured), "nope@2"]))
    sched, ready = plan_styles(Stylizer(textured, device="cpu"), strength=0.5)
    assert list(ready) == ["tex"] and sched.at(0).strength == 0.5
    with pytest.raises(FastNSTError, match="strength"):
        check_strength(1.5)


def test_cli_default_transition_matches_the_library() -> None:
    from fastnst.timeline import DEFAULT_TRANSITION

    assert cli.DEFAULT_TRANSITION == DEFAULT_TRANSITION


# --------------------------------------------------------------------------------------------------
# Errors: one sentence, exit 2, nothing written
# --------------------------------------------------------------------------------------------------


def _bad_file(tmp_path: Path, text: str, name: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("overlap", "overlap"),
    ("unknown", "Unknown style"),
    ("past_end", "past the end"),
    ("negative", "negative"),
    ("malformed_json", "not valid JSON"),
    ("malformed_toml", "not valid TOML"),
    ("bad_entry", "needs a 'start'"),
    ("schedule_and_style", "not both"),
    ("first_not_at_zero", "must start at 0"),
])
def test_cli_schedule_errors(tmp_path: Path, flats, capsys, case: str, message: str) -> None:
    src = make_video(tmp_path / "in.mp4", n=20, fps=10)  # 2 s
    a, b = str(flats[0]), str(flats[1])
    args = {
        "overlap": ["--style", a, "--style", f"{b}@0.8", "--style", f"{a}@1.4", "--transition", "1"],
        "unknown": ["--style", a, "--style", "no_such_style@1"],
        "past_end": ["--style", a, "--style", f"{b}@0:05"],
        "negative": ["--style", a, "--style", f"{b}@-1"],
        "malformed_json": ["--schedule", _bad_file(tmp_path, '{"styles": [', "broken.json")],
        "malformed_toml": ["--schedule", _bad_file(tmp_path, "styles = [[", "bad.toml")],
        "bad_entry": ["--schedule", _bad_file(tmp_path, json.dumps([{"style": a}, {"style": b}]), "no_start.json")],
        "schedule_and_style": ["--style", a, "--schedule", _bad_file(tmp_path, json.dumps([{"style": a}]), "good.json")],
        "first_not_at_zero": ["--style", f"{a}@1"],
    }[case]
    out = tmp_path / "out" / "result.mp4"
    rc = cli.main(["stylize", str(src), "-o", str(out), "-q", "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("fastnst: error: ") and err.count("\n") == 1 and message in err
    assert not out.exists() and not out.parent.exists()


# --------------------------------------------------------------------------------------------------
# Webcam: cross-fading keys and strength keys
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
                     record=rec, max_size=None, realtime=False, strength=0.0, preserve_color=True, stabilize=0)
    assert res.frames == 6
    got, inputs = list(read_frames(rec)), list(read_frames(src))
    # strength 0: the input, to the recording's lossy encoding (the styles would be ~60 levels off)
    assert len(got) == 6 and np.abs(got[3].astype(float) - inputs[3]).mean() < 6
    argv = ["webcam", "--camera", str(src), "--no-window", "--max-frames", "2", "--device", "cpu",
            "--style", f"{flats[0]}:0.5,{flats[1]}:0.5", "--strength", "0.5", "--preserve-color", "--fade", "0.2"]
    assert cli.main(argv) == 0
    with pytest.raises(FastNSTError, match="Unknown style"):
        run_webcam(["no_such_style"], camera=str(src), show=False)
