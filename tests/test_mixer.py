"""Several styles on one frame stream (fastnst.mixer): per-frame blends, strength, colour preservation,
planning before loading; the same controls on the command line and live at the webcam."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fastnst import cli
from fastnst.color import rgb_to_yiq
from fastnst.errors import FastNSTError
from fastnst.images import read_image, write_image
from fastnst.mixer import Mixer, build_mixer, check_strength, plan_styles, scale_strength
from fastnst.pipeline import Stylizer, stylize_path
from fastnst.timeline import Mix, Schedule

from .conftest import BRIGHT, DARK, flat_style, pattern, smooth_image

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flat_mixer(flats) -> Mixer:
    return Mixer({"dark": Stylizer(flats[0], device="cpu"), "bright": Stylizer(flats[1], device="cpu")})


# --------------------------------------------------------------------------------------------------
# The Mixer on its own
# --------------------------------------------------------------------------------------------------


def test_each_frame_of_a_batch_gets_its_own_blend_and_strength(flat_mixer: Mixer) -> None:
    img = pattern(0, 24, 32)
    frames = torch.from_numpy(np.stack([img] * 4))
    mixes = [Mix({"dark": 1.0}), Mix({"dark": 0.25, "bright": 0.75}), Mix({"bright": 1.0}),
             Mix({"bright": 1.0}, 0.5)]
    out = flat_mixer.stylize_uint8(frames, mixes).numpy().astype(float)
    assert out.shape == (4, 24, 32, 3)
    levels = [255 * DARK, 255 * (0.25 * DARK + 0.75 * BRIGHT), 255 * BRIGHT]
    assert np.abs(out[:3].mean(axis=(1, 2, 3)) - levels).max() < 1.0
    assert np.abs(out[3] - (img + 255 * BRIGHT) / 2).max() <= 1.0  # half strength: halfway to the input


def test_mixer_shares_the_first_styles_working_resolution(flats) -> None:
    a, b = Stylizer(flats[0], device="cpu", work_size=48), Stylizer(flats[1], device="cpu", work_size=96)
    Mixer({"a": a, "b": b})
    assert b.work_size == a.work_size == 48 and b.scale == a.scale


def test_mixer_refusals(flat_mixer: Mixer) -> None:
    img = pattern(0, 16, 16)
    with pytest.raises(FastNSTError, match="'other' was not loaded"):
        flat_mixer(img, Mix({"dark": 0.5, "other": 0.5}))
    with pytest.raises(ValueError, match="2 mixes for a batch of 1"):
        flat_mixer.stylize_batch(torch.rand(1, 3, 16, 16), [Mix({"dark": 1.0})] * 2)
    with pytest.raises(FastNSTError, match="uint8"):
        flat_mixer(img.astype(np.float32), Mix({"dark": 1.0}))
    with pytest.raises(FastNSTError, match="at least one style"):
        Mixer({})


def test_strength_checks_and_scaling() -> None:
    assert check_strength("0.25") == 0.25 and check_strength(1) == 1.0
    for bad in (1.5, -0.1, float("nan"), "strong"):
        with pytest.raises(FastNSTError, match="--strength"):
            check_strength(bad)
    sched = Schedule.single("a", strength=0.8)
    assert scale_strength(sched, 1.0) is sched
    assert scale_strength(sched, 0.5).at(0).strength == pytest.approx(0.4)


def test_build_mixer_loads_each_style_once_and_keeps_ready_ones(flats) -> None:
    ready = Stylizer(flats[1], device="cpu")
    mixer = build_mixer([str(flats[0]), "b", str(flats[0])], {"b": ready}, device="cpu")
    assert mixer.names == [str(flats[0]), "b"] and mixer.stylizers["b"] is ready


def test_single_style_output_is_unchanged_by_the_mixer(textured: Path) -> None:
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
    # fp32: a network compiled for a batch of 2 and one for 1 agree to rounding only in fp32
    full = Stylizer(textured, device="cpu", work_size=32, dtype="fp32")(img).astype(float)
    half = stylize_path(src, tmp_path / "half.png", textured, strength=0.5, device="cpu", work_size=32, dtype="fp32",
                        progress=False)
    # halfway between the input and the full style, to rounding
    assert np.abs(read_image(half.outputs[0]) - (img + full) / 2).max() <= 1.0
    # on tensors too, frame by frame within a batch
    mixer = Mixer({"t": Stylizer(textured, device="cpu", work_size=32, dtype="fp32")})
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


def test_plan_styles_checks_before_loading(tmp_path: Path, textured: Path) -> None:
    with pytest.raises(FastNSTError, match="not both"):
        plan_styles(str(textured), Schedule.single(str(textured)))
    with pytest.raises(FastNSTError, match="Unknown style 'nope'"):
        plan_styles(None, Schedule.from_cli([str(textured), "nope@2"]))
    sched, ready = plan_styles(Stylizer(textured, device="cpu"), strength=0.5)
    assert list(ready) == ["tex"] and sched.at(0).strength == 0.5
    with pytest.raises(FastNSTError, match="strength"):
        check_strength(1.5)


# --------------------------------------------------------------------------------------------------
# Video networks in a mixture
# --------------------------------------------------------------------------------------------------


def _video_stylizer(seed: int = 0) -> Stylizer:
    """An untrained video network whose prior matters (random prior weights, the gate half open)."""
    from fastnst.models import PRESETS, TransformerNet

    torch.manual_seed(seed)
    net = TransformerNet(PRESETS["video"]).eval()
    with torch.no_grad():
        net.first_conv.weight[:, 12:].normal_(0, 0.2)
        net.last_conv.bias[12:].zero_()
    return Stylizer(net, device="cpu", engine="torch", dtype="float32")


def test_a_video_network_keeps_its_prior_through_blends_strength_and_colour(flats) -> None:
    """Across a fade from the video style alone into a blend with strength and colour preservation, the
    video network is given its own previous output on every frame after the first (one key per
    Stylizer, whichever path renders the frame), and the per-frame style never asks for one."""
    from fastnst.stabilize import Stabilizer

    video, plain = _video_stylizer(), Stylizer(flats[0], device="cpu")
    given: list[bool] = []
    network = video.network
    video.network = lambda work, prior=None: (given.append(prior is not None), network(work, prior))[1]
    mixer = Mixer({"v": video, "p": plain})
    stream = Stabilizer(0.5)
    mixes = [Mix({"v": 1.0}), Mix({"v": 1.0}), Mix({"v": 0.5, "p": 0.5}, 0.8), Mix({"v": 0.3, "p": 0.7}, 0.8)]
    for i, mix in enumerate(mixes):
        out = mixer(pattern(i, 40, 56), mix, stream)
        assert out.shape == (40, 56, 3)
    assert given == [False, True, True, True]
    mixer.preserve_color = True
    assert mixer(pattern(4, 40, 56), mixes[-1], stream).shape == (40, 56, 3) and given[-1]
    assert mixer.video and not Mixer({"p": plain}).video


def test_a_batch_through_a_video_network_runs_frame_by_frame() -> None:
    """Frames of one batch are a sequence: each gets the previous one's output as its prior, as if
    they had come one at a time."""
    from fastnst.stabilize import Stabilizer

    st = _video_stylizer(1)
    frames = torch.from_numpy(np.stack([pattern(i, 32, 48) for i in range(4)]))
    batched = st.stylize_uint8(frames, Stabilizer(0.5))
    one_by_one = torch.cat([st.stylize_uint8(frames[i:i + 1], s) for s in [Stabilizer(0.5)] for i in range(4)])
    assert torch.equal(batched, one_by_one)
    assert not torch.equal(batched[1:], st.stylize_uint8(frames)[1:])  # without a stream: no priors
