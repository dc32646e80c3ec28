"""Evaluation metrics: E_warp on synthetic motion, style/content distances, the evaluator's pictures step,
`fastnst eval` (the drawing itself: test_pictures.py).

Interpretation of "E_warp of a video against a copy of itself is 0": (a) a static video (every frame
identical) scores 0, stylized or not; (b) a moving video scored against an exact copy of itself scores
exactly the input's own E_warp (the floor) — not 0, since flow estimation is imperfect.
"""

from __future__ import annotations

import json
from itertools import pairwise

import cv2
import numpy as np
import pytest
import torch

from fastnst import cli, metrics
from fastnst.errors import FastNSTError
from fastnst.flow import forward_backward_mask
from fastnst.images import read_image, to_tensor, write_image
from fastnst.vgg import VGG19Features

from .conftest import smooth_image


@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    return VGG19Features(metrics.EVAL_TAPS)  # seeded random weights: no download, deterministic


def _texture(h: int = 96, w: int = 128) -> np.ndarray:
    # Blurred so DIS finds sub-pixel-accurate flow on a tiny image.
    return cv2.GaussianBlur(smooth_image(h, w, seed=3), (0, 0), 1.5)


def _translating(n: int = 4, dx: int = 2, dy: int = 1, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Crops of one image moving by (dx, dy) px per frame: frame t(p) = frame t+1(p + (dx, dy))."""
    big = _texture()
    return [np.ascontiguousarray(big[8 - t * dy: 8 - t * dy + h, 20 - t * dx: 20 - t * dx + w])
            for t in range(n)]


def _style() -> np.ndarray:
    return smooth_image(32, 32, seed=7)


def _eval(frames, outputs=None, vgg=None, **kw):
    return metrics.evaluate_frames(frames, outputs, style_image=_style(), device="cpu", vgg=vgg, **kw)


def test_static_video_scores_zero(vgg):
    frames = [smooth_image(48, 64, seed=1)] * 4
    r = _eval(frames, {"copy": list(frames)}, vgg, vgg_every=0)["copy"]
    assert r.frames == 4 and r.pairs == 3 and r.style_distance is None and r.vgg == "none"
    assert r.e_warp < 1e-10 and r.e_warp_input < 1e-10
    assert r.mask_fraction == pytest.approx(1.0)


def test_copy_of_moving_video_scores_exactly_the_floor(vgg):
    frames = _translating()
    r = _eval(frames, {"copy": list(frames)}, vgg, vgg_every=3)["copy"]
    assert r.e_warp == r.e_warp_input and r.e_warp_ratio == 1.0
    assert r.style_distance == r.style_distance_input and r.content_distance == 0.0
    assert r.vgg_frames == 2


def test_exact_translation_flow_gives_zero_error_inside_the_mask():
    a_np, b_np = _translating(2, dx=3, dy=2)
    a, b = to_tensor(a_np), to_tensor(b_np)
    fw = torch.zeros(1, 2, 48, 64)
    fw[:, 0], fw[:, 1] = 3.0, 2.0  # a(p) = b(p + (3, 2))
    mask = forward_backward_mask(fw, -fw)
    assert metrics.warp_error(a, b, fw, mask) < 1e-10
    # The strip that enters the frame is masked out; without the mask it adds error.
    assert float(mask.mean()) < 0.95
    assert metrics.warp_error(a, b, fw, torch.ones_like(mask)) > 1e-4
    assert metrics.warp_error(a, b, fw, torch.zeros_like(mask)) is None


def test_heat_rows_hold_the_warped_frame_and_the_error_that_e_warp_averages():
    a_np, b_np = _translating(2, dx=3, dy=2)
    a, b = to_tensor(a_np), to_tensor(b_np)
    fw = torch.zeros(1, 2, 48, 64)
    fw[:, 0], fw[:, 1] = 3.0, 2.0
    mask = forward_backward_mask(fw, -fw)
    (label, frame_t, warped, emap), = metrics.heat_rows([("out", a, b)], fw)
    assert label == "out" and frame_t is a and warped.shape == a.shape and emap.shape == (48, 64)
    keep = mask[0, 0].numpy() > 0.5
    assert float(emap[keep].mean()) == pytest.approx(metrics.warp_error(a, b, fw, mask), abs=1e-9)
    assert float((warped - a)[0][:, torch.from_numpy(keep)].abs().max()) < 1e-5  # b warped back by the true motion is a
    assert float(emap[~keep].max()) > 1e-3  # outside the mask the error is real, just not counted


def test_translation_stylized_by_identity_is_near_zero_with_dis(vgg):
    frames = _translating(4)
    r = _eval(frames, {"identity": lambda f: f}, None, vgg_every=0)["identity"]
    assert r.pairs == 3 and 0.8 < r.mask_fraction < 1.0  # the entering strip is untrusted
    assert r.e_warp < 1e-4
    assert r.e_warp == r.e_warp_input


def test_independent_noise_frames_score_high(vgg):
    rng = np.random.default_rng(0)
    frames = _translating(4)
    noise = [rng.integers(0, 256, f.shape, dtype=np.uint8) for f in frames]
    r = _eval(frames, {"noise": noise}, vgg, vgg_every=0)["noise"]
    assert r.e_warp > 0.1  # uniform noise: E[(a-b)²] = 1/6
    assert r.e_warp_ratio > 1000
    floor_only = _eval(noise, None, vgg, vgg_every=0)["input"]
    assert floor_only.e_warp is None and floor_only.e_warp_input > 0.05


def test_shot_cut_pairs_are_skipped(vgg):
    frames = _translating(5)
    cut = np.ascontiguousarray(frames[0][::-1, ::-1])  # a different picture: nothing can be tracked
    frames = frames[:3] + [cut, cut]
    r = _eval(frames, {"c": list(frames)}, vgg, vgg_every=0)["c"]
    assert r.skipped_pairs == [2] and r.pairs == 3
    assert r.e_warp_input < 1e-4 and any("shot cut" in n for n in r.notes)
    r0 = _eval(frames, {"c": list(frames)}, vgg, vgg_every=0, min_trusted=0.0)["c"]
    assert r0.pairs == 4 and r0.e_warp_input > 10 * r.e_warp_input


def test_flicker_raises_e_warp_monotonically(vgg):
    frames = _translating(4)
    rng = np.random.default_rng(1)
    values = []
    for amp in (0, 8, 24):
        out = [np.clip(f.astype(int) + rng.integers(-amp, amp + 1, f.shape), 0, 255).astype(np.uint8) for f in frames]
        values.append(_eval(frames, {"o": out}, vgg, vgg_every=0)["o"].e_warp)
    assert values[0] < values[1] < values[2]


def test_distances_zero_for_identical_and_growing_with_perturbation(vgg):
    img = to_tensor(smooth_image(32, 32, seed=2)) * 0.6 + 0.2  # away from 0/1 so noise is not clipped
    noise = torch.randn(img.shape, generator=torch.Generator().manual_seed(0))
    s0, c0 = metrics.image_distances(img, img, img, vgg)
    assert s0 == 0.0 and c0 == 0.0
    targets = metrics.style_targets(vgg, img)
    with torch.no_grad():
        ref = vgg(img)
        feats = [vgg((img + amp * noise).clamp(0, 1)) for amp in (0.01, 0.03, 0.1, 0.2)]
    styles = [metrics.frame_style_distance(f, targets) for f in feats]
    contents = [metrics.content_distance(f, ref) for f in feats]
    assert 0 < styles[0] and all(x < y for x, y in pairwise(styles)), styles
    assert 0 < contents[0] and all(x < y for x, y in pairwise(contents)), contents


def test_style_targets_are_the_grams_of_the_style_layers(vgg):
    from fastnst.losses import gram_matrix

    img = to_tensor(_style())
    targets = metrics.style_targets(vgg, img)
    with torch.no_grad():
        full = vgg(img)
    assert list(targets) == list(metrics.STYLE_LAYERS)
    assert all(torch.equal(targets[k], gram_matrix(full[k])) for k in metrics.STYLE_LAYERS)


def test_shorter_or_other_size_outputs_are_reported(vgg):
    frames = _translating(5)
    small = [cv2.resize(f, (32, 24), interpolation=cv2.INTER_AREA) for f in frames[:3]]
    r = _eval(frames, {"s": small}, vgg, vgg_every=0)["s"]
    assert r.frames == 3 and r.size == (24, 32)
    assert any("ended after 3 frames" in n for n in r.notes)
    assert any("resized" in n for n in r.notes)


def test_stride_and_max_frames(vgg):
    frames = _translating(7, dx=1, dy=0)
    r = _eval(frames, {"c": list(frames)}, vgg, stride=2, max_frames=3, vgg_every=2)["c"]
    assert r.vgg_frames == 2
    assert r.frames == 3 and r.pairs == 2 and r.stride == 2
    with pytest.raises(FastNSTError, match="at least 2"):
        _eval(frames[:1], None, vgg)


def test_pictures_report_and_json(tmp_path, vgg):
    frames = _translating(6)
    reports = _eval(frames, {"a": list(frames), "b": lambda f: 255 - f}, vgg, pictures=tmp_path, grid_frames=3,
                    vgg_every=0)
    assert set(reports) == {"a", "b"}
    for name in ("a", "b"):
        grid = read_image(tmp_path / f"{name}_grid.png")
        assert grid.shape[0] > 2 * 48 and grid.shape[1] > 3 * 64
        heat = read_image(tmp_path / f"{name}_heatmap.png")
        assert heat.shape[0] > 2 * 48 and heat.shape[1] > 3 * 64
        assert reports[name].pictures["grid"].endswith(f"{name}_grid.png")
    text = metrics.format_report(reports["b"])
    assert "E_warp" in text and "style distance" in text
    out = metrics.save_report(list(reports.values()), tmp_path / "r.json")
    data = json.loads(out.read_text())
    assert [d["name"] for d in data] == ["a", "b"] and data[0]["e_warp_ratio"] == 1.0
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_flow_choices(tmp_path):
    with pytest.raises(FastNSTError, match="--raft-weights"):
        metrics.make_flow("raft_small")
    with pytest.raises(FastNSTError, match="Unknown flow"):
        metrics.make_flow("farneback")
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(FastNSTError, match="not a raft_small weights file"):
        metrics.make_flow("raft_small", weights=bad)


def test_raft_small_from_a_local_file(tmp_path):
    from torchvision.models.optical_flow import raft_small

    path = tmp_path / "raft.pth"
    torch.save(raft_small(weights=None).state_dict(), path)  # random weights: shapes and plumbing only
    fn = metrics.RaftFlow("raft_small", weights=path, iterations=2)
    a, b = _translating(2, h=44, w=60)  # not multiples of 8: padded and cropped back
    flow = fn(a, b)
    assert fn.name == "raft_small" and flow.shape == (44, 60, 2) and flow.dtype == np.float32


def _write_video(path, frames, fps=10, codec="mpeg4", pix_fmt="yuv420p"):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_eval_cli_on_video_files(tmp_path, capsys, monkeypatch, vgg):
    # No real weights in tests. Patch metrics' own loader, not fastnst.vgg.load_vgg19: modules that
    # import that name during this test would keep the fake after monkeypatch restores it.
    monkeypatch.setattr(metrics, "_load_vgg", lambda weights, device: vgg)
    video = tmp_path / "in.mp4"
    _write_video(video, _translating(6, h=48, w=64))
    write_image(tmp_path / "style.png", _style())
    rc = cli.main(["eval", str(video), str(video), "--style", str(tmp_path / "style.png"), "--json",
                   str(tmp_path / "r.json"), "--pictures", str(tmp_path / "pics"), "-q", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "E_warp" in out and "input (floor)" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["frames"] == 6 and data["e_warp"] == data["e_warp_input"] and data["content_distance"] == 0.0
    assert (tmp_path / "pics" / "grid.png").is_file() and (tmp_path / "pics" / "heatmap.png").is_file()

    rc = cli.main(["eval", str(video), "--style", str(tmp_path / "style.png"), "-q", "--device", "cpu"])
    assert rc == 0 and "floor only" in capsys.readouterr().out

    before = (tmp_path / "r.json").read_text()  # an existing report is refused before any work
    rc = cli.main(["eval", str(video), "--style", str(tmp_path / "style.png"), "-q", "--json", str(tmp_path / "r.json")])
    assert rc == cli.EXIT_USER_ERROR and "--force" in capsys.readouterr().err
    assert (tmp_path / "r.json").read_text() == before
    rc = cli.main(["eval", str(video), "--style", str(tmp_path / "style.png"), "-q", "--device", "cpu", "--json",
                   str(tmp_path / "r.json"), "--force"])
    assert rc == 0 and json.loads((tmp_path / "r.json").read_text())["frames"] == 6

    rc = cli.main(["eval", str(tmp_path / "nope.mp4"), str(video), "--style", str(tmp_path / "style.png"), "-q"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USER_ERROR and "nope.mp4" in err and len(err.strip().splitlines()) == 1

    rc = cli.main(["eval", str(video), str(video), "--model", "x.safetensors", "--style", str(tmp_path / "style.png")])
    assert rc == cli.EXIT_USER_ERROR and "not both" in capsys.readouterr().err


@pytest.mark.parametrize("name,codec,pix_fmt", [("a.mp4", "mpeg4", "yuv420p"), ("b.mkv", "ffv1", "yuv444p"),
                                                ("c.mkv", "ffv1", "bgr0")])
def test_eval_says_when_a_files_colour_is_subsampled(tmp_path, vgg, name, codec, pix_fmt):
    """A stylized file in 4:2:0 has lost chroma detail that an on-the-fly measurement keeps; the report
    says so, and only for such a file."""
    video = tmp_path / "in.mp4"
    _write_video(video, _translating(4, h=48, w=64))
    out = tmp_path / name
    _write_video(out, _translating(4, h=48, w=64), codec=codec, pix_fmt=pix_fmt)
    r = metrics.evaluate_video(video, out, style_image=_style(), device="cpu", vgg=vgg, vgg_every=99)
    noted = [n for n in r.notes if "reduced resolution" in n]
    assert r.frames == 4
    said = (f"the stylized file stores its colour at reduced resolution ({pix_fmt}): its E_warp includes that "
            "loss, which figures measured on the fly (--model) do not.")
    assert noted == ([said] if pix_fmt == "yuv420p" else [])


def test_eval_with_a_style_model_stylizes_on_the_fly(tmp_path, vgg):
    from fastnst.models import build_model
    from fastnst.styles import save_style

    model = save_style(tmp_path / "m.safetensors", build_model(preset="fast"), style_name="m", preset="fast")
    video = tmp_path / "in.mp4"
    _write_video(video, _translating(4, h=48, w=64))
    r = metrics.evaluate_video(video, style_image=_style(), style_model=model, device="cpu", vgg=vgg,
                               vgg_every=99)
    assert r.frames == 4 and r.size == (48, 64) and "on the fly" in r.stylized
    assert r.e_warp is not None and r.e_warp != r.e_warp_input and r.content_distance > 0
    with pytest.raises(FastNSTError, match="not both"):
        metrics.evaluate_video(video, video, style_image=_style(), style_model=model, vgg=vgg)


def test_eval_of_a_model_reports_with_and_without_stabilisation(tmp_path, vgg):
    """One pass measures the stabilised model and the same model without it; on a translating video
    stabilisation must not raise the flicker, and the report says both."""
    from fastnst.models import build_model
    from fastnst.styles import save_style

    model = save_style(tmp_path / "m.safetensors", build_model(preset="fast"), style_name="m", preset="fast")
    video = tmp_path / "in.mp4"
    _write_video(video, _translating(8, h=48, w=64))
    r = metrics.evaluate_video(video, style_image=_style(), style_model=model, device="cpu", vgg=vgg,
                               vgg_every=99, stabilize=0.8)
    u = r.unstabilized
    assert u is not None and u.e_warp is not None and r.e_warp is not None
    assert r.e_warp <= u.e_warp
    text = metrics.format_report(r)
    assert "no stabilisation" in text and r.to_dict()["unstabilized"]["e_warp"] == u.e_warp
    off = metrics.evaluate_video(video, style_image=_style(), style_model=model, device="cpu", vgg=vgg,
                                 vgg_every=99, stabilize=0)
    assert off.unstabilized is None and off.e_warp == pytest.approx(u.e_warp)


def test_eval_without_vgg_weights_says_how_to_get_them(tmp_path, capsys, monkeypatch):
    from fastnst import vgg as vgg_module

    monkeypatch.setattr(vgg_module, "fetch_torchvision", lambda **k: (_ for _ in ()).throw(FastNSTError("offline")))
    video = tmp_path / "in.mp4"
    _write_video(video, _translating(3, h=48, w=64))
    write_image(tmp_path / "style.png", _style())
    rc = cli.main(["eval", str(video), "--style", str(tmp_path / "style.png"), "-q", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_USER_ERROR and "fastnst vgg fetch" in err and len(err.strip().splitlines()) == 1
    rc = cli.main(["eval", str(video), "--style", str(tmp_path / "style.png"), "-q", "--vgg-every", "0"])
    assert rc == 0 and "E_warp" in capsys.readouterr().out  # E_warp alone needs no VGG
